#!/usr/bin/env bash
# Builds synergy's kernel modules (top-level Kbuild) against the cached test kernel, or against
# KDIR if set (a user's own Rust-enabled kernel build). Prints the .ko paths.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${KDIR:-}" ]; then
  KDIR=$("$root/scripts/kernel/build.sh" | tail -n 1)
fi
# The toolchain the kernel was built with: LLVM=-19 for 7.x (clang >= 17), LLVM=1 for 6.12.
if [ -z "${LLVM:-}" ]; then
  case "$(basename "$KDIR")" in linux-6.*) LLVM=1 ;; *) LLVM=-19 ;; esac
fi
make -C "$KDIR" M="$root" LLVM="$LLVM" -j"$(nproc)" modules >&2
find "$root"/kmod_* -maxdepth 1 -name '*.ko' | sort
