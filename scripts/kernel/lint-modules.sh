#!/usr/bin/env bash
# The kernel's own checks on synergy's modules (kmod_ipi, kmod_uintr, kmod_common and the uapi
# files they include), run by the kernel test bench:
#  1. rustfmt --check with the kernel tree's .rustfmt.toml (the kernel's `make rustfmtcheck`
#     covers only its own tree, not external modules);
#  2. a CLIPPY=1 build (clippy-driver with the kernel's lint set), failing on any warning;
#  3. the task_work callbacks end in a tail jump to module_put (check-module-put-tail.py).
# The .ko files it leaves are ordinary builds (clippy-driver compiles as rustc does).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/lib.sh
KDIR=${KDIR:-$(scripts/kernel/build.sh | tail -n 1)}
case "$(basename "$KDIR")" in linux-6.*) llvm=1 ;; *) llvm=-19 ;; esac

log "rustfmt --check (kernel style) on the modules"
rustfmt --check --edition 2021 --config-path "$KDIR/.rustfmt.toml" kmod_ipi/kmod_ipi_main.rs kmod_uintr/kmod_uintr_main.rs kmod_uintr/hw.rs kmod_common/*.rs

log "CLIPPY=1 build of the modules"
# Force the modules' objects to be rebuilt by clippy-driver. Not `make M=... clean`: with the
# repository root as the external module directory, Kbuild's clean deletes every *.o and *.a
# below it, cargo's target/ included (cargo then fails to link the DPDK shim it built).
rm -f kmod_ipi/*.o kmod_ipi/.*.cmd kmod_uintr/*.o kmod_uintr/.*.cmd
out=$(make -C "$KDIR" M="$root" LLVM="${LLVM:-$llvm}" CLIPPY=1 RUSTFLAGS_MODULE="--cfg synergy_test_build" -j"$(nproc)" modules 2>&1) || {
  echo "$out" >&2
  log "FAIL: the CLIPPY=1 module build failed"
  exit 1
}
if echo "$out" | grep -q 'warning'; then
  echo "$out" | grep -A12 'warning' >&2
  log "FAIL: clippy warnings in the kernel modules"
  exit 1
fi
log "task_work and IPI callbacks drop their module reference with a tail jump"
python3 scripts/kernel/check-module-put-tail.py kmod_ipi/kmod_ipi.ko:7deliver kmod_ipi/kmod_ipi.ko:11ipi_handler kmod_uintr/kmod_uintr.ko:13teardown_work >&2
log "kernel modules: rustfmt and clippy clean; module_put tail jumps in place"
