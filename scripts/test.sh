#!/usr/bin/env bash
# Runs every check and test of the project:
#  0. formatting (cargo fmt --check, the workspace's rustfmt.toml) and clippy with -D warnings
#     on every target and feature;
#  1. cargo test, with the DPDK transport compiled in: scheduling-policy and data-structure unit
#     tests; the runtime's preemption, stress (>= 1,000,000 preemptions), migration,
#     allocation/lock and CLI tests; the wire protocol, kernel-UDP end-to-end and overload tests;
#     DPDK end to end on a veth pair (net_af_packet, needs root); LevelDB GET/SCAN under
#     preemption with the malloc/pthread_mutex interposition shims (Debian's libleveldb);
#     the uapi ABI pins;
#  2. the kernel test bench: builds (or reuses) the Rust-enabled test kernel, checks the modules
#     with the kernel's rustfmt settings and a CLIPPY=1 build (no warnings allowed), boots QEMU and
#     runs the guest tests (needs root for its apt installs; fails loudly without).
# CONTRIBUTING.md says how to run each step alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
apt_install gcc libc6-dev libdpdk-dev pkg-config iproute2 libleveldb-dev
features=synergy-cli/dpdk,synergy-cli/leveldb,synergy-net/dpdk,synergy-apps/leveldb
require_cargo_tool fmt rustfmt
require_cargo_tool clippy clippy
log "cargo fmt --all -- --check"
cargo fmt --all -- --check
log "cargo clippy --workspace --all-targets --features $features -- -D warnings"
cargo clippy --workspace --all-targets --features "$features" -- -D warnings
log "cargo test --workspace --features $features"
cargo test --workspace --features "$features"
log "loom model checks of the lock-free ring (--cfg loom)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p synergy --release --lib loom_tests
log "kernel modules: the kernel's rustfmt and clippy"
bash scripts/kernel/lint-modules.sh
log "kernel test bench (QEMU)"
bash scripts/kernel/qemu-test.sh
