#!/usr/bin/env bash
# The 10-minute soak of issue 15 (runtime/tests/soak.rs, which CI runs for 20 s): 2 workers, the
# preemption mechanism of SYNERGY_TEST_PREEMPT (default signal), a High-like mixed load, handler
# panics and lock contention; every reply checked, resident memory and green threads flat.
# SYNERGY_SOAK_SECS overrides the length (default 600). Prints the run's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
export SYNERGY_SOAK_SECS="${SYNERGY_SOAK_SECS:-600}"
log "soak: ${SYNERGY_SOAK_SECS} s on $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
cargo test --release -p synergy --test soak -- --nocapture
