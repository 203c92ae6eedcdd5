#!/usr/bin/env bash
# One command to validate a server for synergy: builds the (static) binaries, finds synergy's
# kernel modules for the running kernel (installed from scripts/kernel/package.sh's
# synergy-modules package, or built here against /lib/modules/$(uname -r)/build), then runs
# `synergy validate`: CPU (UINTR, x2APIC, invariant TSC), kernel configuration and CR4-shadow
# export, the modules' own tests (the QEMU bench's guest scripts), the interrupt-path
# microbenchmark of every supported mode beside thesis Table 5.1, and the demo per mode.
#
#   sudo scripts/validate-hardware.sh [--modules DIR] [--out DIR] [other `synergy validate` options]
#
# Writes DIR/report.md and report.json (default target/validate) with the microbenchmark's
# JSON/CSV/SVG, prints the list of what is missing, and exits 1 if anything is (0 when the
# machine runs every mode). docs/hardware.md walks through a server from bare metal to this.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/kernel/guest-lib.sh
require_cargo
apt_install gcc libc6-dev kmod python3

out=target/validate
modules=
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --modules) modules=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

bin="$out/bin"
rm -rf "$bin"
build_static_binaries "$bin"

# The modules: given, installed, or built against the running kernel's headers.
release=$(uname -r)
if [ -z "$modules" ] && ! modinfo -k "$release" -n kmod_ipi >/dev/null 2>&1; then
  kbuild="/lib/modules/$release/build"
  if [ -f "$kbuild/Makefile" ]; then
    llvm=1
    command -v clang-19 >/dev/null 2>&1 && llvm=-19
    modules=$(cd "$out" && pwd)/modules
    rm -rf "$modules"
    mkdir -p "$modules"
    log "building synergy's modules against $kbuild (LLVM=$llvm)"
    copy_module_sources "$modules/build"
    if make -C "$kbuild" M="$modules/build" LLVM="$llvm" -j"$(nproc)" modules >&2; then
      cp "$modules/build/kmod_ipi/kmod_ipi.ko" "$modules/build/kmod_uintr/kmod_uintr.ko" "$modules/"
    else
      log "the modules did not build against $kbuild (see above); the report says what is missing"
      modules=
    fi
  else
    log "no synergy modules installed for $release and no headers at $kbuild to build them"
  fi
fi

set +e
"$bin/synergy" validate --out "$out" --guest-scripts scripts/kernel/guest --bin-dir "$(cd "$bin" && pwd)" \
  ${modules:+--modules "$modules"} "${args[@]}"
rc=$?
set -e
exit "$rc"
