#!/usr/bin/env bash
# By hand, not in CI: runs the kmod_uintr guest test (scripts/kernel/guest/50-kmod-uintr.sh) on
# Bochs's emulated Sapphire Rapids, a CPU *with* Intel user interrupts, which neither this
# project's AMD hosts nor QEMU's TCG provide. On it the test goes beyond the refusal checks:
# user interrupts end to end through the module (synergy-ktest uintr-deliver), then the runtime
# preempting with --preempt=uintr.
#
# Needs a Bochs built from its GitHub sources (master has UINTR; Debian's bochs 2.7 does not),
# configured as kmod_uintr/README.md says, and the guest files of one earlier
# scripts/kernel/qemu-test.sh run (target/kernel-test/initramfs):
#   BOCHS_DIR=/path/to/bochs scripts/kernel/bochs-uintr.sh
# The serial console goes to target/kernel-test/bochs/serial.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/lib.sh
bochs_dir=${BOCHS_DIR:?set BOCHS_DIR to a Bochs source tree built with --enable-uintr}
[ -x "$bochs_dir/bochs" ] || { log "no bochs binary in $bochs_dir"; exit 1; }
grep -q 'define BX_SUPPORT_UINTR 1' "$bochs_dir/config.h" || { log "$bochs_dir was not configured with --enable-uintr"; exit 1; }
initramfs=target/kernel-test/initramfs
[ -x "$initramfs/init" ] || { log "run scripts/kernel/qemu-test.sh once first: it builds the guest files into $initramfs"; exit 1; }
apt_install isolinux syslinux-common xorriso
kdir=$(scripts/kernel/build.sh | tail -n 1)

out=target/kernel-test/bochs
rm -rf "$out"
mkdir -p "$out/rd" "$out/iso/isolinux"
cp -a "$initramfs/." "$out/rd/"
# Only the kmod_uintr test, from this checkout: Bochs emulates about 100x slower than the host.
rm -f "$out/rd/tests/"*.sh
cp scripts/kernel/guest/50-kmod-uintr.sh "$out/rd/tests/"
cp scripts/kernel/guest/init "$out/rd/init"
# The module, the binaries and the runtime's preemption test, rebuilt from this checkout.
mapfile -t modules < <(KDIR="$kdir" scripts/kernel/modules.sh)
cp "${modules[@]}" "$out/rd/modules/"
static=(--release --target x86_64-unknown-linux-gnu --target-dir target/static)
export RUSTFLAGS="-C target-feature=+crt-static"
cargo build --quiet "${static[@]}" -p synergy -p synergy-ktest
cp target/static/x86_64-unknown-linux-gnu/release/{synergy,synergy-ktest} "$out/rd/bin/"
mapfile -t tests < <(cargo test --quiet --no-run "${static[@]}" -p synergy --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"] \
       and m["target"]["name"] in ("preemption", "stress", "alloc_lock", "policies"):
        print(m["target"]["name"], m["executable"])')
unset RUSTFLAGS
[ ${#tests[@]} -eq 4 ] || { log "expected 4 runtime test executables, found: ${tests[*]}"; exit 1; }
for t in "${tests[@]}"; do
  cp "${t#* }" "$out/rd/bin/synergy-test-${t%% *}"
done
(cd "$out/rd" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/iso/isolinux/initrd.gz"
cp "$kdir/arch/x86/boot/bzImage" "$out/iso/isolinux/"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$out/iso/isolinux/"
cat > "$out/iso/isolinux/isolinux.cfg" <<'CFG'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL bzImage
  APPEND initrd=initrd.gz console=ttyS0,115200 panic=-1 tsc=reliable synergy.emulator=bochs
CFG
xorriso -as mkisofs -quiet -o "$out/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
  -no-emul-boot -boot-load-size 4 -boot-info-table "$out/iso"
cat > "$out/bochsrc" <<RC
megs: 1024
cpu: model=sapphire_rapids, count=2, ips=200000000
romimage: file=$bochs_dir/bios/BIOS-bochs-latest
vgaromimage: file=$bochs_dir/bios/VGABIOS-lgpl/VGABIOS-lgpl-latest.bin
display_library: nogui
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-slave: type=cdrom, path=$root/$out/boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$root/$out/serial.txt
clock: sync=none, time0=local
log: $root/$out/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
RC
log "booting $(basename "$kdir") in Bochs (sapphire_rapids, 2 CPUs); console: $out/serial.txt"
set +e
timeout "${SYNERGY_BOCHS_TIMEOUT:-3600}" "$bochs_dir/bochs" -q -f "$out/bochsrc" </dev/null >"$out/bochs.out" 2>&1
set -e
log=$out/serial.txt
splat='(BUG:|WARNING:|Oops|general protection fault|Kernel panic|kernel BUG|Call Trace:|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|INFO: task .* blocked|rcu: INFO|UBSAN:|KASAN:)'
if grep -Eq "$splat" "$log"; then
  log "FAIL: the kernel reported a problem:"
  grep -En "$splat" "$log" | head -20 >&2
  exit 1
fi
grep -q 'kmod_uintr: loaded.*UINTR enabled' "$log" || { log "FAIL: kmod_uintr did not enable UINTR (is the CPU model sapphire_rapids?)"; exit 1; }
grep -q '^SYNERGY-GUEST-EXIT=0' "$log" || { log "FAIL: the guest test failed or did not finish; see $log"; exit 1; }
grep -E 'ktest|SYNERGY-TEST|^test |stress:' "$log" >&2
# Files the guest printed between SYNERGY-FILE-BEGIN/END markers (the microbenchmark's results).
python3 - "$log" "$out/results" <<'PY'
import os, sys
log, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
name, buf = None, []
for line in open(log, errors="replace"):
    line = line.rstrip("\r\n")
    if line.startswith("SYNERGY-FILE-BEGIN "):
        name, buf = line.split(" ", 1)[1], []
    elif line.startswith("SYNERGY-FILE-END ") and name:
        open(os.path.join(dest, name), "w").write("\n".join(buf) + "\n")
        print(f"[synergy] guest result: {dest}/{name}", file=sys.stderr)
        name = None
    elif name is not None:
        buf.append(line)
PY
log "PASS: kmod_uintr and --preempt=uintr on an emulated CPU with UINTR"
