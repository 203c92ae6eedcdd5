#!/usr/bin/env bash
# Runs every test of the project:
#  1. cargo test: scheduling-policy and data-structure unit tests; the runtime's preemption, stress
#     (>= 1,000,000 preemptions), migration, allocation/lock and CLI tests; the uapi ABI pins;
#  2. the kernel test bench: builds (or reuses) the Rust-enabled test kernel and the modules, boots
#     QEMU and runs the guest tests (needs root for its apt installs; fails loudly without).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
apt_install gcc libc6-dev
log "cargo test --workspace"
cargo test --workspace
log "kernel test bench (QEMU)"
bash scripts/kernel/qemu-test.sh
