# Shared by scripts/kernel/build.sh (the QEMU test kernel) and scripts/kernel/package.sh (Debian
# packages for a real server): the toolchain a Rust-enabled kernel needs, Debian's kernel source,
# and synergy's patches to it. Source it; it defines functions only.
#
# Callers set: series (7.3 or 6.12), cache (the cache root), and a `log` function.

# kernel_toolchain: sets llvm (the LLVM= make argument), llvm_pkgs and suite (the Debian suite
# with linux-source-$series) for $series.
kernel_toolchain() {
  # 7.x needs clang >= 17 (Debian 12 has clang-19 in backports); 6.12 builds with clang-14.
  case "$series" in
    6.12) llvm=1; llvm_pkgs="clang lld llvm"; suite=bookworm ;;
    *)    llvm=-19; llvm_pkgs="clang-19 lld-19 llvm-19"; suite=trixie-backports ;;
  esac
}

# kernel_install_deps PKG...: installs the build dependencies plus PKG (root only), rust-src and
# a bindgen-cli of the project's own (under $cache/tools, put first on PATH).
kernel_install_deps() {
  local need_pkgs="$llvm_pkgs make bc bison flex libelf-dev libssl-dev cpio xz-utils gzip python3 $*"
  local missing p
  missing=$(for p in $need_pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
  if [ -n "$missing" ]; then
    log "installing: $missing"
    [ "$(id -u)" = 0 ] || { log "need root to apt-get install $missing"; exit 1; }
    apt-get update -qq >&2
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  fi
  # Rust for Linux needs the standard library's source and bindgen.
  rustup component list --installed 2>/dev/null | grep -q '^rust-src' || { log "adding rust-src"; rustup component add rust-src >&2; }
  local tools="$cache/tools"
  if [ ! -x "$tools/bin/bindgen" ]; then
    log "building bindgen-cli (once)"
    cargo install --locked --root "$tools" bindgen-cli >&2
  fi
  export PATH="$tools/bin:$PATH"
}

# kernel_apt_opts: sets apt_opts, a private apt configuration for $suite, so the system's own
# sources stay as they are.
kernel_apt_opts() {
  local apt_dir="$cache/apt-$suite"
  apt_opts=(-o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
            -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$apt_dir/archives")
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
  echo "deb http://deb.debian.org/debian $suite main" > "$apt_dir/sources.list"
}

# kernel_candidate PACKAGE: prints PACKAGE's candidate version in $suite (updating the private
# lists once if needed); fails loudly when the suite has no such package.
kernel_candidate() {
  local pkg=$1 ver
  kernel_apt_opts
  ver=$(apt-cache "${apt_opts[@]}" policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    apt-get "${apt_opts[@]}" update -qq >&2
    ver=$(apt-cache "${apt_opts[@]}" policy "$pkg" | awk '/Candidate:/ {print $2}')
  fi
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || { log "$pkg not found in Debian $suite"; exit 1; }
  echo "$ver"
}

# kernel_download PACKAGE VERSION DIR: downloads the .deb into DIR (private apt configuration).
kernel_download() {
  kernel_apt_opts
  (cd "$3" && apt-get "${apt_opts[@]}" download "$1=$2" >&2)
}

# kernel_source_version: prints linux-source-$series's version in $suite.
kernel_source_version() { kernel_candidate "linux-source-$series"; }

# kernel_source_tarball VERSION: prints the path of linux-source-$series VERSION's tarball,
# downloading it once into $cache/src.
kernel_source_tarball() {
  local pkgver=$1
  local tarball="$cache/src/linux-source-$series-$pkgver.tar.xz"
  if [ ! -f "$tarball" ]; then
    log "downloading linux-source-$series $pkgver"
    mkdir -p "$cache/src"
    local tmp
    tmp=$(mktemp -d)
    kernel_download "linux-source-$series" "$pkgver" "$tmp"
    dpkg -x "$tmp"/linux-source-"$series"_*.deb "$tmp/x"
    mv "$tmp/x/usr/src/linux-source-$series.tar.xz" "$tarball"
    rm -rf "$tmp"
  fi
  echo "$tarball"
}

# kernel_patches_dir: the directory of synergy's patches for $series.
kernel_patches_dir() { echo "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/patches/$series"; }

# kernel_patches_digest: a digest of every patch for $series (part of the build caches' keys).
kernel_patches_digest() {
  local dir
  dir=$(kernel_patches_dir)
  if [ -d "$dir" ]; then cat "$dir"/*.patch; fi | sha256sum | cut -c1-16
}

# kernel_unpack TARBALL DIR: unpacks the source into DIR (emptied first) and applies synergy's
# patches for $series in order, failing loudly if one does not apply exactly.
kernel_unpack() {
  local tarball=$1 dir=$2
  log "unpacking into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  tar -xf "$tarball" -C "$dir" --strip-components=1
  local patches p
  patches=$(kernel_patches_dir)
  if [ ! -d "$patches" ]; then
    # kmod_uintr needs the CR4-shadow export (7.x); kmod_ipi builds without any patch.
    log "note: no synergy patches for Linux $series ($patches): kmod_uintr will not load there"
    return 0
  fi
  for p in "$patches"/*.patch; do
    log "applying $(basename "$p")"
    # --forward and --batch: a patch already applied or not applying exactly is an error, never
    # a question; no fuzz, so a changed context fails instead of landing somewhere else.
    patch -d "$dir" -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch -s < "$p" >&2 || {
      log "FAIL: $p does not apply to linux-source-$series (see the rejects above)"
      exit 1
    }
  done
}

# kernel_merge_fragment KDIR FRAGMENT...: merges the fragments into KDIR/.config, resolves it
# with olddefconfig and fails if any =y/=m option of the fragments did not take effect (a
# dropped dependency). Needs $llvm and $jobs.
kernel_merge_fragment() {
  local kdir=$1
  shift
  local merged="$kdir/.synergy.config"
  cat "$@" > "$merged"
  "$kdir/scripts/kconfig/merge_config.sh" -m -O "$kdir" "$kdir/.config" "$merged" >/dev/null
  make -C "$kdir" LLVM="$llvm" olddefconfig >/dev/null
  local fail=0 line
  while IFS= read -r line; do
    case "$line" in CONFIG_*=y|CONFIG_*=m)
      grep -qx "$line" "$kdir/.config" || { log "config: $line did not take effect"; fail=1; } ;;
    esac
  done < "$merged"
  [ "$fail" = 0 ] || exit 1
}
