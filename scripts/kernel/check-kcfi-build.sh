#!/usr/bin/env bash
# Builds synergy's kernel modules against a CONFIG_CFI=y configuration of the test kernel (build
# only, nothing boots) and checks in the disassembly that the kCFI variant of the callbacks that
# drop a module reference was built (issue 40, item 9): on a kCFI kernel every indirect call
# checks a type hash placed before its target (`__cfi_<name>`), which the naked tail-call
# trampolines of kmod_common/module_put_tail.rs cannot carry, so the first task_work or IPI
# callback would trap. The option is CONFIG_CFI since Linux 6.18 (CONFIG_CFI_CLANG is only a
# transitional symbol): a module keyed on CONFIG_CFI_CLANG alone built the naked variant here.
#
# The CFI tree is a copy of the cached plain test kernel's build tree with CONFIG_CFI=y and
# `make modules_prepare` (the Rust core and kernel crates rebuilt with -fsanitize=kcfi); it is
# cached beside it. The modules are built from a copy of their sources in target/kcfi-modules, so
# the plain build in kmod_*/ is left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/lib.sh
plain=$(scripts/kernel/build.sh | tail -n 1)
# The toolchain build.sh uses (clang, and bindgen on PATH: without it Kconfig finds Rust
# unavailable and drops CONFIG_RUST).
series=${SYNERGY_KERNEL:-7.3}
cache=${SYNERGY_CACHE:-$HOME/.cache/synergy}
. scripts/kernel/source-lib.sh
kernel_toolchain
kernel_install_deps
cfi="$plain-cfi"
mk=(make -C "$cfi" LLVM="$llvm" -j"$(nproc)")
if [ ! -f "$cfi/.synergy-cfi-prepared" ]; then
  log "preparing a CONFIG_CFI=y copy of $(basename "$plain")"
  rm -rf "$cfi"
  cp -a "$plain" "$cfi"
  rm -f "$cfi/.synergy-built"
  # Rust under kCFI needs integer-normalised type hashes (RUST depends on !CFI ||
  # CFI_ICALL_NORMALIZE_INTEGERS): without it olddefconfig silently drops CONFIG_RUST.
  "$cfi/scripts/config" --file "$cfi/.config" --enable CFI --enable CFI_ICALL_NORMALIZE_INTEGERS
  "${mk[@]}" olddefconfig >/dev/null
  for want in CONFIG_CFI=y CONFIG_RUST=y; do
    grep -qx "$want" "$cfi/.config" || { log "FAIL: $want did not survive olddefconfig"; exit 1; }
  done
  "${mk[@]}" modules_prepare >&2
  touch "$cfi/.synergy-cfi-prepared"
fi
# A clean copy of the modules' sources (the checkout's kmod_*/ hold the plain build's objects,
# which Kbuild refuses to mix with another configuration's).
out="$root/target/kcfi-modules"
rm -rf "$out"
mkdir -p "$out"
git ls-files -z Kbuild kmod_ipi kmod_uintr kmod_common uapi/src | tar --null -T - -cf - | tar -xf - -C "$out"
log "building the modules against the CONFIG_CFI=y tree (in $out)"
# modpost cannot check symbols against a vmlinux that was not rebuilt: its warnings are expected.
"${mk[@]}" M="$out" KBUILD_MODPOST_WARN=1 modules >&2
python3 - "$out" <<'PY'
import re, subprocess, sys
out = sys.argv[1]
# The callbacks that drop a module reference (kmod_common/module_put_tail.rs), by mangled-name suffix.
want = {"kmod_ipi/kmod_ipi.ko": ["7deliver", "11ipi_handler"], "kmod_uintr/kmod_uintr.ko": ["13teardown_work"]}
failed = False
for ko, names in want.items():
    syms = subprocess.run(["nm", f"{out}/{ko}"], check=True, capture_output=True, text=True).stdout.split("\n")
    for n in names:
        fn = [s for s in syms if re.search(r" [tT] (?!__cfi_)\S*" + n + r"(E|$)", s)]
        hashed = [s for s in syms if re.search(r" [tT] __cfi_\S*" + n + r"(E|$)", s)]
        if len(fn) != 1 or len(hashed) != 1:
            print(f"FAIL {ko} *{n}: {len(fn)} function(s), {len(hashed)} kCFI type-hash preamble(s) (__cfi_*): "
                  "the naked trampoline was built for a kCFI kernel", file=sys.stderr)
            failed = True
        else:
            print(f"ok {ko} *{n}: has its kCFI preamble {hashed[0].split()[-1]}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
log "kCFI build check passed"
