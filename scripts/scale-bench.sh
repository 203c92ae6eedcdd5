#!/usr/bin/env bash
# Multi-core runs of the real runtime beside the simulator (issue 20), as one self-contained job:
# `synergy sweep scale` places the timer core and N workers itself (default: every CPU but four),
# measures this machine's preemption cost, sweeps the real server (kernel UDP, loopback) over a
# load grid on the High, Extreme and ZippyDB workloads with Synergy and the baselines, in every
# preemption mode the machine has (signal; ipi and uintr where their modules are loaded), and
# simulates the same workers with that cost. It writes scale.json/.csv/.svg, machine.txt (lscpu,
# kernel) and prints the table of the highest load under the 50x SLO per system, real beside
# simulated, with the reason where they disagree.
#
#   scripts/scale-bench.sh [--bin PATH] [--quick] [other `synergy sweep scale` options]
#
#   --bin PATH   a synergy binary to run (e.g. the static one carried to a machine without Rust);
#                default: build the static binary here (target/static/...)
#   --quick      a short run (2 loads, 300 ms points, synergy and c-FCFS): CI's 1-worker check
#   OUT=DIR      where results go (default target/scale-bench); on the lent 16-core machine the
#                device tool sets OUT. The default grid took over 330 s at 12 workers on the
#                16-vCPU machine; --workloads high,zippydb --loads 0.2,0.4,0.6,0.8
#                --duration-ms 600 --sim-requests 100000 took 41 s.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/scale-bench}
bin=
quick=()
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --quick) quick=(--loads 0.3,0.6 --duration-ms 300 --warmup-ms 100 --policies synergy,cfcfs
                    --sim-requests 50000 --microbench-runs 5000); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -z "$bin" ]; then
  . scripts/lib.sh
  require_cargo
  apt_install gcc libc6-dev
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --target x86_64-unknown-linux-gnu \
    --target-dir target/static -p synergy-cli
  bin=target/static/x86_64-unknown-linux-gnu/release/synergy
fi
mkdir -p "$out"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)"
  echo "nproc: $(nproc)"
  lscpu 2>/dev/null || grep -m1 'model name' /proc/cpuinfo
} > "$out/machine.txt"
"$bin" sweep scale --out "$out" "${quick[@]}" "${args[@]}" | tee "$out/table.txt"
for f in scale.json scale.csv scale.svg table.txt machine.txt; do
  [ -s "$out/$f" ] || { echo "[scale-bench] $out/$f was not written" >&2; exit 1; }
done
# Every (workload, policy, mode) has its row, with both numbers.
rows=$(($(wc -l < "$out/scale.csv") - 1))
[ "$rows" -gt 0 ] || { echo "[scale-bench] no rows in $out/scale.csv" >&2; exit 1; }
echo "[scale-bench] $rows rows in $out/scale.{json,csv,svg}" >&2
