#!/usr/bin/env bash
# Builds synergy's kernel modules (top-level Kbuild) against the cached test kernel, or against
# KDIR if set (a user's own Rust-enabled kernel build). Prints the .ko paths.
#   SYNERGY_TEST_BUILD=1  build for the test bench (--cfg synergy_test_build: kmod_uintr's
#                         fake_hardware parameter)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${KDIR:-}" ]; then
  KDIR=$("$root/scripts/kernel/build.sh" | tail -n 1)
fi
# The toolchain the kernel was built with: LLVM=-19 for 7.x (clang >= 17), LLVM=1 for 6.12.
if [ -z "${LLVM:-}" ]; then
  case "$(basename "$KDIR")" in linux-6.*) LLVM=1 ;; *) LLVM=-19 ;; esac
fi
# SYNERGY_TEST_BUILD=1 (the QEMU bench, the kernel lint): kmod_uintr gets its fake-hardware
# parameter (kmod_uintr/hw.rs). Never set for the package build.
test_build=()
[ "${SYNERGY_TEST_BUILD:-0}" = 1 ] && test_build=(RUSTFLAGS_MODULE="--cfg synergy_test_build")
make -C "$KDIR" M="$root" LLVM="$LLVM" -j"$(nproc)" "${test_build[@]}" modules >&2
find "$root"/kmod_* -maxdepth 1 -name '*.ko' | sort
