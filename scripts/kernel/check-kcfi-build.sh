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
# cached beside it. The modules are built into target/kcfi-modules (Kbuild's MO=), so the plain
# build in kmod_*/ is left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/lib.sh
plain=$(scripts/kernel/build.sh | tail -n 1)
case "$(basename "$plain")" in linux-6.*) llvm=1 ;; *) llvm=-19 ;; esac
cfi="$plain-cfi"
mk=(make -C "$cfi" LLVM="$llvm" -j"$(nproc)")
if [ ! -f "$cfi/.synergy-cfi-prepared" ]; then
  log "preparing a CONFIG_CFI=y copy of $(basename "$plain")"
  rm -rf "$cfi"
  cp -a "$plain" "$cfi"
  rm -f "$cfi/.synergy-built"
  "$cfi/scripts/config" --file "$cfi/.config" --enable CFI
  "${mk[@]}" olddefconfig >/dev/null
  grep -qx 'CONFIG_CFI=y' "$cfi/.config" || { log "FAIL: CONFIG_CFI=y did not survive olddefconfig (clang without -fsanitize=kcfi?)"; exit 1; }
  "${mk[@]}" modules_prepare >&2
  touch "$cfi/.synergy-cfi-prepared"
fi
out="$root/target/kcfi-modules"
rm -rf "$out"
mkdir -p "$out"
log "building the modules against the CONFIG_CFI=y tree (into $out)"
# modpost cannot check symbols against a vmlinux that was not rebuilt: its warnings are expected.
"${mk[@]}" M="$root" MO="$out" KBUILD_MODPOST_WARN=1 modules >&2
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
