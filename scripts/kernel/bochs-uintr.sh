#!/usr/bin/env bash
# By hand, not in CI: runs the kmod_uintr guest test (scripts/kernel/guest/50-kmod-uintr.sh) on
# Bochs's emulated Sapphire Rapids, a CPU *with* Intel user interrupts, which neither this
# project's AMD hosts nor QEMU's TCG provide. On it the test goes beyond the refusal checks:
# user interrupts end to end through the module (synergy-ktest uintr-deliver), then the runtime
# preempting with --preempt=uintr.
#
# Needs a Bochs built from its GitHub sources (master has UINTR; Debian's bochs 2.7 does not),
# configured as kmod_uintr/README.md says:
#   BOCHS_DIR=/path/to/bochs scripts/kernel/bochs-uintr.sh
# The serial console goes to target/kernel-test/bochs/serial.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/lib.sh
. scripts/kernel/guest-lib.sh
require_cargo
bochs_dir=${BOCHS_DIR:?set BOCHS_DIR to a Bochs source tree built with --enable-uintr}
[ -x "$bochs_dir/bochs" ] || { log "no bochs binary in $bochs_dir"; exit 1; }
grep -q 'define BX_SUPPORT_UINTR 1' "$bochs_dir/config.h" || { log "$bochs_dir was not configured with --enable-uintr"; exit 1; }
apt_install isolinux syslinux-common xorriso
kdir=$(scripts/kernel/build.sh | tail -n 1)

out=target/kernel-test/bochs
rm -rf "$out"
mkdir -p "$out/iso/isolinux"
# Only the kmod_uintr test: Bochs emulates about 100x slower than the host.
build_initramfs "$out/rd" "$kdir" scripts/kernel/guest/50-kmod-uintr.sh
pack_initramfs "$out/rd" "$out/iso/isolinux/initrd.gz"
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
fail_on_splat "$log"
grep -q 'kmod_uintr: loaded.*UINTR enabled' "$log" || { log "FAIL: kmod_uintr did not enable UINTR (is the CPU model sapphire_rapids?)"; exit 1; }
grep -q '^SYNERGY-GUEST-EXIT=0' "$log" || { log "FAIL: the guest test failed or did not finish; see $log"; exit 1; }
grep -E 'ktest|SYNERGY-TEST|^test |stress:' "$log" >&2
# Files the guest printed between SYNERGY-FILE-BEGIN/END markers (the microbenchmark's results).
extract_guest_files "$log" "$out/results"
log "PASS: kmod_uintr and --preempt=uintr on an emulated CPU with UINTR"
