#!/usr/bin/env bash
# Builds installable Debian packages of a Rust-enabled kernel for a real server, and synergy's
# kernel modules against it:
#   linux-image-<release>_*.deb, linux-headers-<release>_*.deb, linux-libc-dev_*.deb
#                                    (the kernel's own `make bindeb-pkg`)
#   synergy-modules-<release>_*.deb  kmod_ipi.ko and kmod_uintr.ko under
#                                    /lib/modules/<release>/updates/synergy/ (depmod on install)
# from Debian's linux-source-<series> with synergy's patches (scripts/kernel/patches/<series>/,
# applied with `patch`; the build stops if one does not apply) and a configuration made of
#   a base configuration:  --config running   the running kernel's (/boot/config-$(uname -r) or
#                                             /proc/config.gz); the default, else `debian`
#                          --config debian    Debian's own for this series (linux-config-<series>)
#                          --config test      tinyconfig + synergy.config: the QEMU test kernel's
#                                             (what CI packages, in about ten minutes)
#                          --config FILE      any .config
#   plus scripts/kernel/modules.config (Rust, x2APIC, KVM for PREEMPT_NOTIFIERS, rseq, ...), every
#   =y/=m line of which must survive olddefconfig.
# For a distribution configuration the certificates it names (SYSTEM_TRUSTED_KEYS,
# SYSTEM_REVOCATION_KEYS) are cleared, since they exist only in the distribution's build tree, and
# debug information is turned off (it doubles the build time and triples the packages) unless
# --keep-debug-info is given. The release gets the suffix -synergy (LOCALVERSION).
#
#   scripts/kernel/package.sh [--config running|debian|test|FILE] [--out DIR] [--keep-debug-info]
#
#   --out DIR   where the .deb files are copied (default target/kernel-packages)
#   SYNERGY_KERNEL=7.3, SYNERGY_JOBS=N, SYNERGY_CACHE=DIR as for build.sh.
# The build tree is cached under $SYNERGY_CACHE/package/<key>/, keyed like build.sh's; a second
# run with the same inputs only re-checks and re-copies the packages. Install on the server with
#   dpkg -i linux-image-*.deb synergy-modules-*.deb  (then reboot into the -synergy kernel)
# and check it with scripts/validate-hardware.sh. docs/hardware.md has the whole procedure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
series=${SYNERGY_KERNEL:-7.3}
cache=${SYNERGY_CACHE:-$HOME/.cache/synergy}
jobs=${SYNERGY_JOBS:-$(nproc)}
. "$root/scripts/lib.sh"
log() { echo "[package] $*" >&2; }
die() { log "$*"; exit 1; }

config=running
out=$root/target/kernel-packages
keep_debug=0
while [ $# -gt 0 ]; do
  case "$1" in
    --config) [ $# -ge 2 ] || die "--config needs a value: running, debian, test or a file"; config=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --keep-debug-info) keep_debug=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

. "$here/source-lib.sh"
kernel_toolchain
# What the kernel's debian/control names (dpkg-buildpackage checks it for binary packages).
kernel_install_deps dpkg-dev debhelper libdw-dev rsync kmod patch
pkgver=$(kernel_source_version)

# The base configuration, as a file.
base=$(mktemp)
trap 'rm -f "$base"' EXIT
case "$config" in
  running)
    if [ -r "/boot/config-$(uname -r)" ]; then
      cp "/boot/config-$(uname -r)" "$base"; config_desc="running kernel's (/boot/config-$(uname -r))"
    elif [ -r /proc/config.gz ]; then
      zcat /proc/config.gz > "$base"; config_desc="running kernel's (/proc/config.gz, $(uname -r))"
    else
      log "the running kernel ($(uname -r)) publishes no configuration: using Debian's"
      config=debian
    fi ;;
esac
case "$config" in
  running) ;;
  debian)
    cfgver=$(kernel_candidate "linux-config-$series")
    tmp=$(mktemp -d)
    kernel_download "linux-config-$series" "$cfgver" "$tmp"
    dpkg -x "$tmp"/linux-config-"$series"_*.deb "$tmp/x"
    xz -dc "$tmp/x/usr/src/linux-config-$series/config.amd64_none_amd64.xz" > "$base" ||
      die "linux-config-$series $cfgver has no config.amd64_none_amd64.xz"
    rm -rf "$tmp"
    config_desc="Debian's (linux-config-$series $cfgver, amd64)" ;;
  test) : > "$base"; config_desc="the QEMU test kernel's (tinyconfig + synergy.config)" ;;
  *)
    [ -r "$config" ] || die "--config $config: not running, debian, test, or a readable file"
    cp "$config" "$base"; config_desc="$config" ;;
esac
log "base configuration: $config_desc"

toolchain="$(rustc --version) | $(bindgen --version) | $(clang${llvm#1} --version 2>/dev/null | head -1)"
key=$( { echo "$pkgver $config $keep_debug"; cat "$base" "$here/modules.config"
         [ "$config" != test ] || cat "$here/synergy.config" "$here/build.sh"; echo "$toolchain"; kernel_patches_digest
         sed '/^# ---- the cache key covers this script down to this line/q' "$0"; cat "$here/source-lib.sh"
       } | sha256sum | cut -c1-16)
work="$cache/package/linux-$series-$key"
kdir="$work/linux"   # bindeb-pkg writes the packages next to the tree, into $work
mk=(make -C "$kdir" LLVM="$llvm" -j"$jobs")

if [ ! -f "$work/.synergy-packaged" ]; then
  rm -rf "$work"
  fragments=("$here/modules.config")
  if [ "$config" = test ]; then
    # The test configuration is the QEMU test kernel's (same source, patches, fragments and
    # toolchain: build.sh's cache key) plus LOCALVERSION: start from a copy of that built tree
    # (mtimes kept), so make rebuilds only what the release string reaches instead of the
    # whole kernel (about 7 of a cold CI run's minutes; build.sh builds it first if absent).
    plain=$(SYNERGY_CACHE="$cache" SYNERGY_JOBS="$jobs" "$here/build.sh" | tail -n 1)
    log "starting from the QEMU test kernel's build: $plain"
    mkdir -p "$work"
    cp -a "$plain" "$kdir"
    rm -f "$kdir/.synergy-built"
    fragments+=("$here/synergy.config")
  else
    kernel_unpack "$(kernel_source_tarball "$pkgver")" "$kdir"
    "${mk[@]}" rustavailable >&2
    cp "$base" "$kdir/.config"
    cfg() { "$kdir/scripts/config" --file "$kdir/.config" "$@"; }
    # Certificates named by a distribution's configuration live in its own build tree.
    cfg --set-str SYSTEM_TRUSTED_KEYS "" --set-str SYSTEM_REVOCATION_KEYS ""
    if [ "$keep_debug" = 0 ]; then
      cfg --disable DEBUG_INFO --disable DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT --disable DEBUG_INFO_DWARF4 \
          --disable DEBUG_INFO_DWARF5 --disable DEBUG_INFO_BTF --enable DEBUG_INFO_NONE
    fi
    # KVM selects PREEMPT_NOTIFIERS (kmod_uintr); a configuration without KVM gets it as modules.
    if ! grep -Eq '^CONFIG_KVM=(y|m)$' "$base"; then
      printf 'CONFIG_KVM=m\nCONFIG_KVM_INTEL=m\nCONFIG_KVM_AMD=m\n' > "$work/kvm.config"
      fragments+=("$work/kvm.config")
    fi
  fi
  printf 'CONFIG_LOCALVERSION="-synergy"\n# CONFIG_LOCALVERSION_AUTO is not set\n' > "$work/release.config"
  fragments+=("$work/release.config")
  kernel_merge_fragment "$kdir" "${fragments[@]}"
  grep -qx 'CONFIG_PREEMPT_NOTIFIERS=y' "$kdir/.config" || die "config: PREEMPT_NOTIFIERS is off (enable KVM)"
  log "make bindeb-pkg with $jobs jobs (a distribution configuration takes hours on few cores)"
  start=$(date +%s)
  "${mk[@]}" bindeb-pkg >&2
  echo $(( $(date +%s) - start )) > "$work/build-seconds"
  touch "$work/.synergy-packaged"
fi
release=$(make -s -C "$kdir" LLVM="$llvm" kernelrelease)
log "kernel $release built in $(cat "$work/build-seconds") s ($work)"

# ---- the cache key covers this script down to this line: what follows runs every time ----
# synergy's modules against the packaged tree, from a clean copy of their sources (the
# repository may hold the QEMU bench's in-tree build, which Kbuild will not mix with another).
modbuild="$work/modules"
copy_module_sources "$modbuild"
make -C "$kdir" M="$modbuild" LLVM="$llvm" -j"$jobs" modules >&2
staging="$work/synergy-modules"
rm -rf "$staging"
mkdir -p "$staging/DEBIAN" "$staging/lib/modules/$release/updates/synergy"
for m in kmod_ipi kmod_uintr; do
  ko="$modbuild/$m/$m.ko"
  [ -f "$ko" ] || die "$ko was not built"
  vermagic=$(modinfo -F vermagic "$ko")
  [ "${vermagic%% *}" = "$release" ] || die "$ko: vermagic '$vermagic' is not for $release"
  install -m 0644 "$ko" "$staging/lib/modules/$release/updates/synergy/"
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/cli/Cargo.toml" | head -n 1)
rev=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
image_deb=$(find "$work" -maxdepth 1 -name "linux-image-${release}_*.deb" ! -name '*-dbg_*' | head -n 1)
[ -n "$image_deb" ] || die "bindeb-pkg made no linux-image-$release package in $work"
image_version=$(dpkg-deb -f "$image_deb" Version)
cat > "$staging/DEBIAN/control" <<EOF
Package: synergy-modules-$release
Version: $version+git.$rev
Architecture: amd64
Maintainer: synergy <synergy@localhost>
Depends: linux-image-$release (= $image_version)
Section: kernel
Priority: optional
Description: synergy's kernel modules (kmod_ipi, kmod_uintr) for Linux $release
 Direct-APIC-ID IPIs (kmod_ipi) and Intel user-interrupt set-up (kmod_uintr) for synergy's
 --preempt=ipi and --preempt=uintr. Load with modprobe kmod_ipi / modprobe kmod_uintr.
EOF
printf '#!/bin/sh\nset -e\ndepmod -a %s\n' "$release" > "$staging/DEBIAN/postinst"
printf '#!/bin/sh\nset -e\ndepmod -a %s 2>/dev/null || true\n' "$release" > "$staging/DEBIAN/postrm"
chmod 0755 "$staging/DEBIAN/postinst" "$staging/DEBIAN/postrm"
modules_deb="$work/synergy-modules-${release}_${version}+git.${rev}_amd64.deb"
rm -f "$work"/synergy-modules-*.deb
dpkg-deb --root-owner-group --build "$staging" "$modules_deb" >&2

# What a server installs must be there: the kernel image, its modules' vermagic, both modules.
# (Listings are read whole: `grep -q` closing a pipe early fails dpkg-deb under pipefail.)
image_files=$(dpkg-deb -c "$image_deb")
grep -q "boot/vmlinuz-$release\$" <<< "$image_files" || die "$image_deb holds no boot/vmlinuz-$release"
modules_files=$(dpkg-deb -c "$modules_deb")
for m in kmod_ipi kmod_uintr; do
  grep -q "lib/modules/$release/updates/synergy/$m.ko\$" <<< "$modules_files" || die "$modules_deb lacks $m.ko"
done
grep -q '^CONFIG_RUST=y$' "$kdir/.config" || die "the packaged kernel has no CONFIG_RUST"

mkdir -p "$out"
rm -f "$out"/*.deb
cp "$work"/*.deb "$out/"
{
  echo "release=$release"
  echo "base_config=$config_desc"
  echo "source=linux-source-$series $pkgver"
  echo "patches=$(cd "$(kernel_patches_dir)" 2>/dev/null && echo *.patch)"
  echo "build_seconds=$(cat "$work/build-seconds")"
  echo "jobs=$jobs"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
} > "$out/package.txt"
log "packages in $out:"
(cd "$out" && ls -1 ./*.deb) >&2
echo "$out"
