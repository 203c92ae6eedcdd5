#!/usr/bin/env bash
# Builds the small Rust-enabled x86-64 test kernel the QEMU harness boots, from Debian's
# linux-source package, and caches the build tree outside the repository:
#   ${SYNERGY_CACHE:-$HOME/.cache/synergy}/kernel/linux-<version>-<key>/
# keyed by the source package version, the config fragments, synergy's patches (patches/<series>/),
# the toolchain and these scripts, so a second run is a no-op. Prints the build directory (usable as KDIR) on its last line.
#
#   SYNERGY_KERNEL=7.3   kernel source series (7.3 default; 6.12 also supported)
#   SYNERGY_KERNEL_VARIANT=plain|kasan
#                        kasan adds KASAN (generic) to the same fragment: every out-of-bounds or
#                        use-after-free access of the modules is reported (and fails the run)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
series=${SYNERGY_KERNEL:-7.3}
variant=${SYNERGY_KERNEL_VARIANT:-plain}
case "$variant" in
  plain) fragment_extra="" ;;
  # tinyconfig sets SLUB_TINY, which KASAN excludes.
  kasan) fragment_extra=$'CONFIG_KASAN=y\nCONFIG_KASAN_GENERIC=y\nCONFIG_KASAN_INLINE=y\n# CONFIG_SLUB_TINY is not set' ;;
  *) echo "[kernel] SYNERGY_KERNEL_VARIANT=$variant: expected plain or kasan" >&2; exit 2 ;;
esac
cache=${SYNERGY_CACHE:-$HOME/.cache/synergy}
jobs=${SYNERGY_JOBS:-$(nproc)}
log() { echo "[kernel] $*" >&2; }

. "$here/source-lib.sh"
kernel_toolchain
kernel_install_deps qemu-system-x86 patch
pkgver=$(kernel_source_version)

toolchain="$(rustc --version) | $(bindgen --version) | $(clang${llvm#1} --version 2>/dev/null | head -1)"
key=$( { echo "$pkgver"; cat "$here/modules.config" "$here/synergy.config"; echo "$fragment_extra"; echo "$toolchain"
         kernel_patches_digest; cat "$0" "$here/source-lib.sh"; } | sha256sum | cut -c1-16)
suffix=$([ "$variant" = plain ] || echo "-$variant")
kdir="$cache/kernel/linux-$series$suffix-$key"
if [ -f "$kdir/.synergy-built" ]; then
  log "cached: $kdir"
  echo "$kdir"
  exit 0
fi

# A build without the stamp is incomplete: start over from the source and synergy's patches
# (patches/<series>/: the CR4-shadow export kmod_uintr needs, and bindgen keeping
# sched_statistics' alignment, which check-bindings-layout.sh below verifies for every type).
kernel_unpack "$(kernel_source_tarball "$pkgver")" "$kdir"
mk=(make -C "$kdir" LLVM="$llvm" -j"$jobs")
"${mk[@]}" rustavailable >&2
"${mk[@]}" tinyconfig >/dev/null
# The modules' needs, the harness's, and the variant's; each must survive olddefconfig.
kernel_merge_fragment "$kdir" "$here/modules.config" "$here/synergy.config" <(printf '%s\n' "$fragment_extra")
log "building bzImage and modules with $jobs jobs"
"${mk[@]}" bzImage modules >&2
"$here/check-bindings-layout.sh" "$kdir"
touch "$kdir/.synergy-built"
log "built: $kdir"
echo "$kdir"
