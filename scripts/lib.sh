# Shared by the project's scripts: checks for the toolchain a fresh Debian 12 machine of this
# project has (cargo via rustup) and installs the Debian packages a step needs.

log() { echo "[synergy] $*" >&2; }

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || {
    log "cargo not found: install Rust with rustup (https://rustup.rs) and re-run"
    exit 1
  }
}

# require_cargo_tool SUBCOMMAND COMPONENT: fails loudly unless `cargo SUBCOMMAND` works.
require_cargo_tool() {
  cargo "$1" --version >/dev/null 2>&1 || {
    log "cargo $1 not found: install it with \`rustup component add $2\` and re-run"
    exit 1
  }
}

# apt_install PKG...: installs the packages that are missing (root only).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or install them)"
    exit 1
  fi
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# copy_module_sources DEST: copies the kernel modules' sources (the top-level Kbuild, kmod_*/,
# uapi/src/: Rust, C and Kbuild files only) into DEST, emptied first. Kbuild refuses to build an
# external module out of tree (MO=) while the source tree holds an in-tree build's
# modules.order, and the QEMU bench builds in the tree: a clean copy serves any other kernel.
copy_module_sources() {
  local root dest=$1
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  rm -rf "$dest"
  mkdir -p "$dest"
  (cd "$root" && find Kbuild kmod_ipi kmod_uintr kmod_common uapi/src -type f \
      \( -name Kbuild -o -name '*.rs' -o -name '*.c' -o -name '*.h' \) ! -name '*.mod.c' -print0 |
    tar --null -cf - -T -) | tar -xf - -C "$dest"
}
