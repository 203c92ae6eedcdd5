#!/usr/bin/env bash
# Checks that every C type the kernel crate's bindings describe has, in Rust, the layout the C
# compiler gives it. The kernel generates its bindings with `--no-layout-tests`; this regenerates
# them with bindgen's layout assertions (offset of each field, size and alignment of each type,
# as libclang computes them) from the very command line the build used, and compiles them with
# the build's own rustc command line. Any disagreement is a compile error naming the type and
# field. Usage: check-bindings-layout.sh KDIR (a built Rust-enabled kernel tree).
#
# Why: bindgen 0.73 emits a struct with no fields but an alignment attribute (e.g. `struct
# sched_statistics {} ____cacheline_aligned` without CONFIG_SCHEDSTATS) as a 1-aligned Rust
# struct, which moved every `task_struct` field after `stats` 48 bytes (docs/kernel-bench.md).
set -euo pipefail
kdir=$(cd "${1:?usage: check-bindings-layout.sh KDIR}" && pwd)
tools=${SYNERGY_CACHE:-$HOME/.cache/synergy}/tools
export PATH="$tools/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log() { echo "[bindings-layout] $*" >&2; }

gen=$(sed -n 's/^savedcmd_rust\/bindings\/bindings_generated.rs := //p' "$kdir/rust/bindings/.bindings_generated.rs.cmd")
build=$(sed -n 's/^savedcmd_rust\/bindings.o := //p' "$kdir/rust/.bindings.o.cmd")
[ -n "$gen" ] && [ -n "$build" ] || { log "$kdir has no recorded bindgen/rustc command lines"; exit 1; }
case "$gen" in *--no-layout-tests*) ;; *) log "unexpected bindgen command line (no --no-layout-tests)"; exit 1 ;; esac

# The bindgen command: layout tests on, output and dependency file redirected, the trailing sed
# (which renames RUST_CONST_HELPER_ constants) kept as a separate step below.
gen=${gen%%; sed*}
gen=${gen//--no-layout-tests/}
gen=${gen//-o rust\/bindings\/bindings_generated.rs/-o $work/bindings_generated.rs}
gen=${gen//-Wp,-MMD,rust\/bindings\/.bindings_generated.rs.d/}
gen=${gen//\$(pound)/#}
(cd "$kdir" && eval "$gen") >"$work/bindgen.log" 2>&1 || { cat "$work/bindgen.log" >&2; log "bindgen failed"; exit 1; }
sed -Ei 's/pub const RUST_CONST_HELPER_([a-zA-Z0-9_]*)/pub const \1/g' "$work/bindings_generated.rs"

# The bindings crate's root, including the regenerated file instead of the build's.
python3 - "$kdir/rust/bindings/lib.rs" "$work/lib.rs" "$work/bindings_generated.rs" <<'PY'
import re, sys
src, dst, gen = sys.argv[1:]
s = open(src).read()
pat = re.compile(r'include!\(concat!\(\s*env!\("OBJTREE"\),\s*"/rust/bindings/bindings_generated.rs"\s*\)\);')
s, n = pat.subn('include!("%s");' % gen, s)
if n != 1:
    sys.exit("lib.rs: expected one include of bindings_generated.rs, found %d" % n)
open(dst, "w").write(s)
PY
build=${build//--emit=dep-info=rust\/.bindings.o.d --emit=obj=rust\/bindings.o --emit=metadata=rust\/libbindings.rmeta/--emit=metadata=$work/libbindings.rmeta}
build=${build//rust\/bindings\/lib.rs/$work\/lib.rs}
case "$build" in *"$work/lib.rs"*"$work/libbindings.rmeta"*|*"$work/libbindings.rmeta"*"$work/lib.rs"*) ;;
  *) log "unexpected rustc command line for rust/bindings.o"; exit 1 ;; esac
if ! (cd "$kdir" && export RUSTC_BOOTSTRAP=1 && eval "$build") >"$work/rustc.log" 2>&1; then
  grep -A4 '^error' "$work/rustc.log" >&2 || cat "$work/rustc.log" >&2
  log "FAIL: the Rust bindings disagree with the C compiler's layout (above: type and field)"
  exit 1
fi
n=$(grep -c 'Offset of field: ' "$work/bindings_generated.rs" || true)
log "ok: $n field offsets and every size and alignment agree with the C compiler"
