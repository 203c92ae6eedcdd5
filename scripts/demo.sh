#!/usr/bin/env bash
# The main job on its embedded default: builds synergy and runs the in-process demo (High
# workload, one worker, --preempt=signal next to --preempt=none), printing a latency table.
# Extra arguments go to `synergy run` (e.g. --workload extreme --load 0.7 --out results).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
apt_install gcc libc6-dev
cargo build --release --quiet -p synergy-cli
exec ./target/release/synergy run "$@"
