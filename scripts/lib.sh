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
