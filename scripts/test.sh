#!/usr/bin/env bash
# Runs every test of the project:
#  1. cargo test, with the DPDK transport compiled in: scheduling-policy and data-structure unit
#     tests; the runtime's preemption, stress (>= 1,000,000 preemptions), migration,
#     allocation/lock and CLI tests; the wire protocol, kernel-UDP end-to-end and overload tests;
#     DPDK end to end on a veth pair (net_af_packet, needs root); LevelDB GET/SCAN under
#     preemption with the malloc/pthread_mutex interposition shims (Debian's libleveldb);
#     the uapi ABI pins;
#  2. the kernel test bench: builds (or reuses) the Rust-enabled test kernel and the modules, boots
#     QEMU and runs the guest tests (needs root for its apt installs; fails loudly without).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
apt_install gcc libc6-dev libdpdk-dev pkg-config iproute2 libleveldb-dev
features=synergy-cli/dpdk,synergy-cli/leveldb,synergy-net/dpdk,synergy-apps/leveldb
log "cargo test --workspace --features $features"
cargo test --workspace --features "$features"
log "kernel test bench (QEMU)"
bash scripts/kernel/qemu-test.sh
