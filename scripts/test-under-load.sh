#!/usr/bin/env bash
# Runs the runtime, dataplane and apps test suites (the same tests as CI, none skipped, the
# million-preemption targets kept) beside `stress-ng --cpu <number of CPUs>`, RUNS times in a
# row (default 3): every run must pass. Run it before any change that touches a test with threads
# or time (CONTRIBUTING.md). It writes a summary to target/test-under-load/summary.txt.
#
#   scripts/test-under-load.sh [--runs N] [--profile test|release]
#
# The release profile is allowed (issue 38): the test assertions are the same, only faster.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
runs=3
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    *) log "unknown argument $1 (expected --runs N, --profile test|release)"; exit 2 ;;
  esac
done
bash scripts/cpu-report.sh
require_cargo
apt_install stress-ng gcc libc6-dev libdpdk-dev pkg-config iproute2 libleveldb-dev
features=synergy-net/dpdk,synergy-apps/leveldb
packages=(-p synergy -p synergy-net -p synergy-apps)
profile_flag=()
[ "$profile" = release ] && profile_flag=(--release)
out=target/test-under-load
mkdir -p "$out"
log "building the test binaries ($profile)"
cargo test "${packages[@]}" --features "$features" "${profile_flag[@]}" --no-run
cpus=$(nproc)
summary="$out/summary.txt"
{
  bash scripts/cpu-report.sh
  echo "runs: $runs, profile: $profile, beside stress-ng --cpu $cpus"
} > "$summary"
passed=0
for run in $(seq 1 "$runs"); do
  stress-ng --cpu "$cpus" --timeout 0 --quiet &
  stress=$!
  t0=$(date +%s)
  set +e
  cargo test "${packages[@]}" --features "$features" "${profile_flag[@]}" > "$out/run-$run.log" 2>&1
  rc=$?
  set -e
  kill "$stress" 2>/dev/null || true
  wait "$stress" 2>/dev/null || true
  secs=$(( $(date +%s) - t0 ))
  results=$(grep -E '^test result:' "$out/run-$run.log" | awk '{p+=$4; f+=$6} END {print p" passed, "f" failed"}')
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    echo "run $run: pass in ${secs} s ($results)" | tee -a "$summary"
  else
    echo "run $run: FAIL (exit $rc) in ${secs} s ($results); log $out/run-$run.log" | tee -a "$summary"
    grep -E "panicked at|FAILED|failures:" "$out/run-$run.log" | head -20 | tee -a "$summary"
  fi
done
echo "test-under-load: $passed of $runs runs passed" | tee -a "$summary"
[ "$passed" = "$runs" ]
