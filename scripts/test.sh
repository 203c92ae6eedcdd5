#!/usr/bin/env bash
# Runs every check and test of the project:
#  0. formatting (cargo fmt --check, the workspace's rustfmt.toml), clippy with -D warnings
#     on every target and feature, and every library's API docs (rustdoc, -D warnings);
#  1. cargo test, with the DPDK transport compiled in: scheduling-policy and data-structure unit
#     tests; the runtime's preemption, stress (>= 1,000,000 preemptions), migration,
#     allocation/lock and CLI tests; the wire protocol, kernel-UDP end-to-end and overload tests;
#     DPDK end to end on a veth pair (net_af_packet, needs root); LevelDB GET/SCAN under
#     preemption with the malloc/pthread_mutex interposition shims (Debian's libleveldb);
#     the uapi ABI pins; the panic storm once more with std as a shared library; memcached's
#     own protocol test files (t/*.t) against synergy's memcached service;
#  2. the kernel test bench: builds (or reuses) the Rust-enabled test kernel, checks the modules
#     with the kernel's rustfmt settings and a CLIPPY=1 build (no warnings allowed), boots QEMU and
#     runs the guest tests (needs root for its apt installs; fails loudly without);
#  3. the kit for real servers: scripts/kernel/package.sh on the test configuration (Debian
#     packages of the kernel and of the modules, checked), scripts/validate-hardware.sh on this
#     machine (its report must list exactly what is missing, and its exit status say so), and
#     scripts/scale-bench.sh at one worker (real runtime beside the simulator).
# CONTRIBUTING.md says how to run each step alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# Each step's wall time goes to target/ci-steps.tsv and is printed at the end, pass or fail, so
# that a CI log says where a cold run's minutes went (docs/kernel-bench.md keeps the table).
steps_file=target/ci-steps.tsv
mkdir -p target
: >"$steps_file"
step_name="set-up" step_start=$(date +%s) run_start=$step_start
step() {
  local now
  now=$(date +%s)
  printf '%s\t%d\n' "$step_name" $((now - step_start)) >>"$steps_file"
  step_name=$1 step_start=$now
  log "$1"
}
report_steps() {
  local rc=$? now
  now=$(date +%s)
  printf '%s\t%d\n' "$step_name" $((now - step_start)) >>"$steps_file"
  log "step times (s), exit status $rc, $((now - run_start)) s in all:"
  column -t -s $'\t' "$steps_file" >&2 || cat "$steps_file" >&2
}
trap report_steps EXIT
bash scripts/cpu-report.sh
require_cargo
apt_install gcc binutils libc6-dev libdpdk-dev pkg-config iproute2 libleveldb-dev memcached libmemcached-tools python3 python3-pymemcache
features=synergy-cli/dpdk,synergy-cli/leveldb,synergy-net/dpdk,synergy-apps/leveldb
require_cargo_tool fmt rustfmt
require_cargo_tool clippy clippy
step "cargo fmt --all -- --check"
cargo fmt --all -- --check
step "cargo clippy --workspace --all-targets --features $features -- -D warnings"
cargo clippy --workspace --all-targets --features "$features" -- -D warnings
step "cargo doc --workspace --no-deps --lib (every library's API docs, links checked: -D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --lib --features "$features"
step "cargo test --workspace --features $features"
cargo test --workspace --features "$features"
step "panic guard with std as a shared library (-C prefer-dynamic: tests/panic_storm.rs)"
# std then lives in libstd-*.so, whose symbol table the runtime must find instead of the
# executable's (issue 39, item 1); cargo puts the toolchain's library directory on the path.
RUSTFLAGS="-C prefer-dynamic" CARGO_TARGET_DIR=target/prefer-dynamic cargo test -p synergy --test panic_storm
step "loom model checks (--cfg loom): the ring, parking, the wait slot, the channel and Notify"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p synergy --release --lib loom_tests
step "memcached's own protocol test files against synergy (scripts/memcached-t.sh)"
# memcached's t/*.t (Perl) in daemon mode against `synergy serve --app memcached`, with the
# memcached-debug its harness wants built from Debian's source package (issue 42).
scripts/memcached-t.sh --synergy target/debug/synergy
step "kernel modules: the kernel's rustfmt and clippy"
bash scripts/kernel/lint-modules.sh
step "kernel modules built for a kCFI kernel (CONFIG_CFI=y, build only: scripts/kernel/check-kcfi-build.sh)"
bash scripts/kernel/check-kcfi-build.sh
step "kernel test bench (QEMU)"
bash scripts/kernel/qemu-test.sh
step "kernel packages for the test configuration (scripts/kernel/package.sh --config test)"
bash scripts/kernel/package.sh --config test --out target/kernel-packages
step "the synergy tools package (scripts/package-tools.sh: binary, completions, man page, examples, docs; checked)"
bash scripts/package-tools.sh
step "hardware validation of this machine (scripts/validate-hardware.sh)"
set +e
bash scripts/validate-hardware.sh --runs 20000 --demo-ms 300
rc=$?
set -e
python3 - "$rc" target/validate/report.json <<'PY'
import json, sys
rc, report = int(sys.argv[1]), json.load(open(sys.argv[2]))
bad = [c["id"] for c in report["checks"] if c["status"] in ("missing", "fail")]
assert report["problems"] == bad, (report["problems"], bad)
assert rc == (1 if bad else 0), f"exit status {rc} with problems {bad}"
assert "## Interrupt paths beside thesis Table 5.1" in open("target/validate/report.md").read()
print(f"validate-hardware: exit {rc}; missing or failed here: {', '.join(bad) or 'nothing'}")
PY
step "real runtime beside the simulator at one worker (scripts/scale-bench.sh --workers 1 --quick)"
bash scripts/scale-bench.sh --workers 1 --quick
