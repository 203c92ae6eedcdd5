#!/usr/bin/env bash
# memcached's own protocol test files (t/*.t, Perl, `prove`) against synergy's memcached service
# (issue 42). The harness can target a running server (T_MEMD_USE_DAEMON=host:port) but still
# wants a `memcached-debug` binary: it is built from Debian's memcached source package (fetched
# with `apt-get source`, a deb-src entry for Debian's own archive added if missing), as the kernel
# is built from Debian's source. Each file gets a fresh server (the files assume one). The files
# that cannot apply are listed in SKIP with the reason; every other protocol file must pass.
#
#   scripts/memcached-t.sh [--synergy target/release/synergy]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
synergy=target/release/synergy
[ "${1:-}" = --synergy ] && synergy=$2
cache=${SYNERGY_CACHE:-$HOME/.cache/synergy}/memcached-src
apt_install perl libevent-dev gcc make dpkg-dev
if [ ! -x "$cache/memcached-1.6.18/memcached-debug" ]; then
  if ! apt-cache showsrc memcached >/dev/null 2>&1 || [ -z "$(apt-cache showsrc memcached 2>/dev/null)" ]; then
    log "adding a deb-src entry for Debian's archive (memcached's source package)"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/synergy-src.sources
    apt-get update -qq
  fi
  rm -rf "$cache" && mkdir -p "$cache"
  (cd "$cache" && apt-get source -qq memcached >/dev/null 2>&1)
  dir=$(find "$cache" -maxdepth 1 -type d -name 'memcached-1.*' | head -n 1)
  [ -n "$dir" ] || { log "apt-get source memcached gave no source tree"; exit 1; }
  [ "$dir" = "$cache/memcached-1.6.18" ] || ln -sfn "$dir" "$cache/memcached-1.6.18"
  log "building memcached-debug (the harness wants it) in $dir"
  (cd "$dir" && ./configure -q >/dev/null && make -s -j"$(nproc)" memcached-debug >/dev/null)
fi
src=$cache/memcached-1.6.18
# The one harness patch (the test files are run as shipped): extstore needs a server started
# with extstore's arguments, which daemon mode cannot pass, so in daemon mode the harness says
# extstore is not supported and metaget.t skips its extstore block (as it does for a build
# without extstore) instead of waiting forever for items to reach a store that is not there.
harness=$src/t/lib/MemcachedTest.pm
if ! grep -q 'synergy: no extstore in daemon mode' "$harness"; then
  sed -i 's|^sub supports_extstore {$|sub supports_extstore {\n    return 0 if $ENV{T_MEMD_USE_DAEMON}; # synergy: no extstore in daemon mode|' "$harness"
  grep -q 'synergy: no extstore in daemon mode' "$harness" || { log "could not patch $harness"; exit 1; }
fi
[ -x "$synergy" ] || cargo build --release -p synergy-cli --bin synergy
# The protocol files. Not run: binary*/sasl/extstore/TLS/proxy (protocols and features not
# served), and these, each for its reason:
declare -A SKIP=(
  [flush-all]="test 25 restarts the server with -F (flush_all disabled); the harness ignores per-test arguments in daemon mode"
  [issue_50]="starts memcached with -B binary (the binary protocol only, which is not served) and checks that garbage is dropped"
  [issue_61]="starts memcached with -R 1 and counts conn_yields: a connection's pipelined requests are admitted one by one into synergy's queues, there is no per-event request budget to yield"
  [issue_67]="starts memcached binaries of its own with port and socket arguments (memcached's command line, not its protocol)"
)
# In daemon mode the harness ignores the arguments a file gives new_memcached(); the files whose
# assertions depend on them get the same setting on synergy's command line here.
declare -A ARGS=(
  [issue_22]="--memory-mb 3"
)
FILES=(getset incrdecr noreply cas flags touch getandtouch flush-all metaget bogus-commands malicious-commands
       issue_104 issue_108 issue_14 issue_152 issue_163 issue_183 issue_192 issue_22 issue_29 issue_3 issue_41
       issue_42 issue_50 issue_61 issue_67 issue_68 issue_70)
passed=0 failed=0 skipped=0
for f in "${FILES[@]}"; do
  if [ -n "${SKIP[$f]:-}" ]; then
    echo "SKIP t/$f.t: ${SKIP[$f]}"; skipped=$((skipped + 1)); continue
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # shellcheck disable=SC2086 # ARGS holds several words on purpose
  "$synergy" serve --app memcached --bind "127.0.0.1:$port" --workers 1 ${ARGS[$f]:---memory-mb 64} \
    >/tmp/synergy-t-$$.log 2>&1 &
  pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  if (cd "$src" && T_MEMD_USE_DAEMON="127.0.0.1:$port" timeout 30 prove "t/$f.t" >/tmp/prove-$$.log 2>&1); then
    echo "PASS t/$f.t"; passed=$((passed + 1))
  else
    echo "FAIL t/$f.t"; sed 's/^/    /' /tmp/prove-$$.log | tail -20; failed=$((failed + 1))
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
rm -f /tmp/synergy-t-$$.log /tmp/prove-$$.log
echo "memcached t/*.t against synergy: $passed passed, $failed failed, $skipped skipped (listed above)"
[ "$failed" = 0 ]
