#!/usr/bin/env bash
# Builds the small Rust-enabled x86-64 test kernel the QEMU harness boots, from Debian's
# linux-source package, and caches the build tree outside the repository:
#   ${SYNERGY_CACHE:-$HOME/.cache/synergy}/kernel/linux-<version>-<key>/
# keyed by the source package version, the config fragment, the toolchain and this script, so a
# second run is a no-op. Prints the build directory (usable as KDIR) on its last line.
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

# LLVM: 7.x needs clang >= 17 (Debian 12 has clang-19); 6.12 builds with the default clang-14.
case "$series" in
  6.12) llvm=1; llvm_pkgs="clang lld llvm"; suite=bookworm ;;
  *)    llvm=-19; llvm_pkgs="clang-19 lld-19 llvm-19"; suite=trixie-backports ;;
esac

need_pkgs="$llvm_pkgs make bc bison flex libelf-dev libssl-dev cpio xz-utils gzip python3 qemu-system-x86"
missing=$(for p in $need_pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  log "installing: $missing"
  [ "$(id -u)" = 0 ] || { log "need root to apt-get install $missing"; exit 1; }
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
fi

# Rust for Linux needs the standard library's source and bindgen.
rustup component list --installed 2>/dev/null | grep -q '^rust-src' || { log "adding rust-src"; rustup component add rust-src >&2; }
tools="$cache/tools"
if [ ! -x "$tools/bin/bindgen" ]; then
  log "building bindgen-cli (once)"
  cargo install --locked --root "$tools" bindgen-cli >&2
fi
export PATH="$tools/bin:$PATH"

# Source package: fetched with a private apt configuration, so the system's sources stay as they are.
apt_dir="$cache/apt-$suite"
apt_opts=(-o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
          -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$apt_dir/archives")
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/src"
echo "deb http://deb.debian.org/debian $suite main" > "$apt_dir/sources.list"
pkgver=$(apt-cache "${apt_opts[@]}" policy "linux-source-$series" 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$pkgver" ] || [ "$pkgver" = "(none)" ]; then
  apt-get "${apt_opts[@]}" update -qq >&2
  pkgver=$(apt-cache "${apt_opts[@]}" policy "linux-source-$series" | awk '/Candidate:/ {print $2}')
fi
[ -n "$pkgver" ] && [ "$pkgver" != "(none)" ] || { log "linux-source-$series not found in Debian $suite"; exit 1; }

toolchain="$(rustc --version) | $(bindgen --version) | $(clang${llvm#1} --version 2>/dev/null | head -1)"
key=$( { echo "$pkgver"; cat "$here/synergy.config"; echo "$fragment_extra"; echo "$toolchain"; cat "$0"; } | sha256sum | cut -c1-16)
suffix=$([ "$variant" = plain ] || echo "-$variant")
kdir="$cache/kernel/linux-$series$suffix-$key"
if [ -f "$kdir/.synergy-built" ]; then
  log "cached: $kdir"
  echo "$kdir"
  exit 0
fi

tarball="$cache/src/linux-source-$series-$pkgver.tar.xz"
if [ ! -f "$tarball" ]; then
  log "downloading linux-source-$series $pkgver"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get "${apt_opts[@]}" download "linux-source-$series=$pkgver" >&2)
  dpkg -x "$tmp"/linux-source-"$series"_*.deb "$tmp/x"
  mv "$tmp/x/usr/src/linux-source-$series.tar.xz" "$tarball"
  rm -rf "$tmp"
fi

log "unpacking into $kdir"
rm -rf "$kdir"   # a build without the stamp is incomplete: start over
mkdir -p "$kdir"
tar -xf "$tarball" -C "$kdir" --strip-components=1
# kmod_uintr sets CR4.UINTR through the kernel's CR4 shadow (cr4_update_irqsoff/cr4_read_shadow);
# writing CR4 behind the shadow's back would be undone by the kernel's next CR4 update. 7.x
# exports these to KVM only (and, with KVM built in, to no one): export them to kmod_uintr too.
common="$kdir/arch/x86/kernel/cpu/common.c"
for sym in cr4_update_irqsoff cr4_read_shadow; do
  if grep -q "^EXPORT_SYMBOL_FOR_KVM($sym);" "$common"; then
    sed -i "s/^EXPORT_SYMBOL_FOR_KVM($sym);/#if IS_MODULE(CONFIG_KVM)\nEXPORT_SYMBOL_FOR_MODULES($sym, \"kvm,kvm-amd,kvm-intel,kmod_uintr\");\n#else\nEXPORT_SYMBOL_FOR_MODULES($sym, \"kmod_uintr\");\n#endif/" "$common"
  elif ! grep -Eq "^EXPORT_SYMBOL(_GPL)?\($sym\);" "$common"; then
    # kmod_uintr builds against 7.x only (misc devices); elsewhere this is a note, not an error.
    case "$series" in 7.*) log "cannot find how $common exports $sym: kmod_uintr needs it"; exit 1 ;;
                      *) log "note: $sym is not exported here; kmod_uintr would not load" ;; esac
  fi
done
# bindgen (0.73 at least) drops the alignment of a struct that has no fields but an alignment
# attribute: `struct sched_statistics {} ____cacheline_aligned` (CONFIG_SCHEDSTATS off) became a
# 1-aligned Rust struct, so every `task_struct` field after `stats` sat 48 bytes early in Rust
# (the kernel crate's `Task::pid()` read another field). An opaque type keeps size and alignment.
# check-bindings-layout.sh below proves no other type is affected.
params="$kdir/rust/bindgen_parameters"
grep -qx -- '--opaque-type sched_statistics' "$params" ||
  printf '\n# synergy: empty but cacheline-aligned without CONFIG_SCHEDSTATS (bindgen drops the alignment)\n--opaque-type sched_statistics\n' >> "$params"
mk=(make -C "$kdir" LLVM="$llvm" -j"$jobs")
"${mk[@]}" rustavailable >&2
"${mk[@]}" tinyconfig >/dev/null
fragment="$kdir/.synergy.config"
{ cat "$here/synergy.config"; [ -z "$fragment_extra" ] || printf '%s\n' "$fragment_extra"; } > "$fragment"
"$kdir/scripts/kconfig/merge_config.sh" -m -O "$kdir" "$kdir/.config" "$fragment" >/dev/null
"${mk[@]}" olddefconfig >/dev/null
# Every option of the fragment must have survived olddefconfig (a dropped dependency is an error).
fail=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=y|CONFIG_*=m)
    grep -qx "$line" "$kdir/.config" || { log "config: $line did not take effect"; fail=1; } ;;
  esac
done < "$fragment"
[ "$fail" = 0 ] || exit 1
log "building bzImage and modules with $jobs jobs"
"${mk[@]}" bzImage modules >&2
"$here/check-bindings-layout.sh" "$kdir"
touch "$kdir/.synergy-built"
log "built: $kdir"
echo "$kdir"
