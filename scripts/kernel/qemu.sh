#!/usr/bin/env bash
# Prints the path of a qemu-system-x86_64 whose TCG emulates x2APIC (QEMU >= 8.0). Debian 12's own
# QEMU is 7.2, so QEMU 10 is installed from bookworm-backports through a private apt
# configuration (the system's apt sources are not changed).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
have() { command -v qemu-system-x86_64 >/dev/null && qemu-system-x86_64 --version | awk 'NR==1 {split($4,v,"."); exit !(v[1] >= 8)}'; }
if ! have; then
  [ "$(id -u)" = 0 ] || { log "need root to install QEMU >= 8 from bookworm-backports"; exit 1; }
  d=${SYNERGY_CACHE:-$HOME/.cache/synergy}/apt-bookworm-bpo
  mkdir -p "$d/parts" "$d/lists/partial"
  cp /etc/apt/sources.list.d/*.sources "$d/parts/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$d/parts/base.list"
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$d/parts/backports.list"
  opts=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$d/parts" -o Dir::State::Lists="$d/lists")
  log "installing QEMU from bookworm-backports"
  apt-get "${opts[@]}" update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y -qq --no-install-recommends \
    -t bookworm-backports qemu-system-x86 >&2
  have || { log "QEMU >= 8 still not available"; exit 1; }
fi
command -v qemu-system-x86_64
