#!/usr/bin/env bash
# Regenerates docs/results/microbench-*: the interrupt-path microbenchmark with --preempt=signal
# on this machine (500k runs per method), and — if the QEMU bench ran (scripts/test.sh or
# scripts/kernel/qemu-test.sh) — the guest's --preempt=ipi run (a functional check under TCG).
# Extra arguments go to `synergy bench interrupt` (e.g. --runs 1000000 --sender-cpu 2 --receiver-cpu 3).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
cargo build --release --quiet -p synergy-cli
out=docs/results
mkdir -p "$out"
./target/release/synergy bench interrupt --preempt signal \
  --out "$out" --name microbench-signal "$@" |
  tee "$out/microbench-signal.txt"
guest=target/kernel-test/plain/results
if [ -f "$guest/microbench-ipi.json" ]; then
  cp "$guest"/microbench-ipi.{json,csv,svg} "$out/"
  log "copied the QEMU guest's ipi run from $guest"
else
  log "no QEMU guest results in $guest (run scripts/kernel/qemu-test.sh for the ipi path)"
fi
