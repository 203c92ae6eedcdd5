#!/usr/bin/env bash
# Issue 44's runs on the lent 16-core machine, as one script under 10 minutes (the device tool's
# limit per command), each step with its own time cap so that a slow step costs only itself and
# partial output still comes back. Needs target/device/ from scripts/device/prepare.sh (carried)
# and nothing else: no build, no apt, no network. Writes $OUT/summary.txt (every step's status,
# time and the lines that matter) and $OUT/16cpu-results.tar.gz (every step's files), two files,
# within what the device tool returns (8 files, two folders deep).
#
#   device run: carry ["target/device"], command "bash scripts/device/run-16cpu.sh", timeout_s 600
#
# Steps and caps (s): lscpu and validate 45, bench ctx 30, microbench signal+ci 75, the real
# runtime beside the simulator at 12 workers (High, ZippyDB; synergy, shinjuku, c-FCFS) 210, the
# overload comparisons (burst: spin/park/coupled; overload: none/credits) at loads crossing
# capacity 90, memcached beside synergy on 8 server CPUs 120. Sum 570.
set -uo pipefail
cd "$(dirname "$0")/../.."
dev=target/device
out=${OUT:-target/device-out}
res="$out/16cpu"
mkdir -p "$res"
export LD_LIBRARY_PATH="$PWD/$dev/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$PWD/$dev/bin/synergy"
summary="$out/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
# step NAME CAP_S COMMAND...: runs COMMAND with its output in $res/NAME.log, capped.
step() {
  local name=$1 cap=$2
  shift 2
  local t0=$SECONDS rc
  timeout --kill-after=5 "$cap" "$@" > "$res/$name.log" 2>&1
  rc=$?
  note "step $name: exit $rc ($([ $rc = 124 ] && echo "TIMED OUT at ${cap} s" || echo "$((SECONDS - t0)) s"))"
  tail -n 15 "$res/$name.log" | sed 's/^/    /' >> "$summary"
}
[ -x "$bin" ] || { note "no $bin: run scripts/device/prepare.sh here and carry target/device"; exit 1; }
note "16-core run, $(date -u +%FT%TZ), $(nproc) CPUs"
cat "$dev/VERSIONS" >> "$summary" 2>/dev/null
lscpu > "$res/lscpu.txt" 2>&1
grep -E "Model name|^CPU\(s\)|Thread|NUMA node\(s\)|Flags" "$res/lscpu.txt" | cut -c1-200 | tee -a "$summary"

# 1. validate with the carried binary. Skipped parts need a build or apt here: the module build
# and load (no kernel headers, no insmod of our modules), the guest scripts, the runtime's test
# executables; `validate` reports them as not run.
step validate 45 "$bin" validate --out "$res/validate" --runs 100000 --demo-ms 500
# 2. the context switch and the interrupt paths, each with its baseline in the same run.
step bench-ctx 30 "$bin" bench ctx --rounds 9 --out "$res" --name ctx
step microbench 75 "$bin" bench interrupt --preempt signal,ci --runs 200000 \
  --out "$res" --name microbench
# 3. 12 workers plus the timer core, real beside simulated. The green-thread pool: 32,768 (the
# 2026-11-27 runs exhausted 4,096 from 60% load: every preempted long request holds a green
# thread until it resumes, and the wait queue's capacity is the budget; 32,768 threads of
# 64 KiB stacks reserve 2 GiB of the machine's 128).
step scale 210 env OUT="$res/scale" bash scripts/scale-bench.sh --bin "$bin" --workers 12 \
  --workloads high,zippydb --policies synergy,shinjuku,cfcfs --loads 0.2,0.4,0.6,0.8,0.9 \
  --duration-ms 500 --sim-requests 100000 --microbench-runs 20000 --max-green-threads 32768
# 4. parked against polling workers, coupled against uncoupled core allocation (sweep burst:
# spin, park, park + CoreSync coupling, a step load crossing capacity), and overload control
# (none against credits) at loads below and above capacity.
step burst 50 "$bin" sweep burst --workers 12 --low 0.3 --high 1.3 --duration-ms 2000 --out "$res"
step overload 40 "$bin" sweep overload --workers 12 --loads 0.5,1.0,1.5 --duration-ms 800 --out "$res"
# 5. memcached (-t 8) beside synergy (timer core + 7 workers) on CPUs 2-9, the generator on 10-13.
if [ -x "$dev/bin/memcached" ] && command -v python3 >/dev/null; then
  step memcached 120 python3 scripts/memcached-bench.py --synergy "$bin" --mcload "$PWD/$dev/bin/mcload" \
    --memcached "$PWD/$dev/bin/memcached" --oslat "$PWD/$dev/bin/oslat" --out "$res/memcached" \
    --server-cpus 2-9 --generator-cpus 10-13 --loads 0.3,0.5,0.7,0.9 --duration-ms 1500 --transport udp
else
  note "step memcached: SKIPPED (no carried memcached or no python3 on this machine)"
fi
tar -czf "$out/16cpu-results.tar.gz" -C "$out" 16cpu
note "wrote $out/summary.txt and $out/16cpu-results.tar.gz ($(du -h "$out/16cpu-results.tar.gz" | cut -f1))"
