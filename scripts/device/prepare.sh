#!/usr/bin/env bash
# Prepares what the lent 16-core machine needs for issue 44's runs (scripts/device/run-16cpu.sh),
# which has no Rust toolchain, no apt and no network: a static `synergy` and `mcload` (glibc
# static, debug info stripped but symbols kept: the panic guard finds std's panic count by symbol,
# and a fully stripped binary would pin preempted requests to their worker), Debian's memcached and
# rt-tests' oslat with the shared libraries `ldd` lists beside them (run with LD_LIBRARY_PATH).
# Everything goes to target/device/ (about 45 MiB; the device tool carries at most 64 MiB):
#
#   scripts/device/prepare.sh
#   device run: carry ["target/device"], command "bash scripts/device/run-16cpu.sh", timeout_s 600
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
require_cargo
apt_install gcc libc6-dev memcached rt-tests binutils
dest=target/device
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib"
static=(--release --target x86_64-unknown-linux-gnu --target-dir target/static)
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet "${static[@]}" -p synergy-cli
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet "${static[@]}" -p synergy-memcached --example mcload
bindir=target/static/x86_64-unknown-linux-gnu/release
cp "$bindir/synergy" "$bindir/examples/mcload" "$dest/bin/"
strip --strip-debug "$dest/bin/synergy" "$dest/bin/mcload"
for tool in memcached oslat; do
  path=$(command -v "$tool")
  cp "$path" "$dest/bin/"
  # Every shared library but the C library and the loader, which the device has.
  ldd "$path" | awk '/=> \// {print $3}' | grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" "$dest/lib/"; done
done
{
  echo "prepared $(date -u +%FT%TZ) at $(git rev-parse --short HEAD)"
  "$dest/bin/synergy" --version 2>/dev/null || true
  memcached -V
  dpkg-query -W -f='${Package} ${Version}\n' memcached rt-tests 2>/dev/null || true
} > "$dest/VERSIONS"
du -sh "$dest" >&2
log "carry target/device and run: bash scripts/device/run-16cpu.sh"
