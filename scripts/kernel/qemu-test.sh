#!/usr/bin/env bash
# The kernel test bench: boots the cached Rust-enabled test kernel in QEMU (TCG, -smp 4, x2APIC)
# with an initramfs holding synergy's modules, its static binaries and the guest test scripts
# (scripts/kernel/guest/), streams the serial console, and exits with the guest's status — or
# fails if the kernel printed any oops, BUG, WARNING or lockdep report, or the guest never finished.
#
#   SYNERGY_QEMU_TIMEOUT=900   seconds before the guest counts as hung
#   SYNERGY_KDIR=/path         boot this already built kernel tree instead of the cached one
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/lib.sh
require_cargo
apt_install busybox-static cpio gzip

kdir=${SYNERGY_KDIR:-$(scripts/kernel/build.sh | tail -n 1)}
mapfile -t modules < <(KDIR="$kdir" scripts/kernel/modules.sh)
[ ${#modules[@]} -gt 0 ] || { log "no kernel module was built"; exit 1; }
qemu=$(scripts/kernel/qemu.sh)

log "building static guest binaries"
static=(--release --target x86_64-unknown-linux-gnu --target-dir target/static)
export RUSTFLAGS="-C target-feature=+crt-static"
cargo build --quiet "${static[@]}" -p synergy -p synergy-ktest
bindir=target/static/x86_64-unknown-linux-gnu/release
# The runtime's integration tests, to run inside the guest with SYNERGY_TEST_PREEMPT=ipi.
mapfile -t tests < <(cargo test --quiet --no-run "${static[@]}" -p synergy --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"] \
       and m["target"]["name"] in ("preemption", "stress", "alloc_lock", "policies"):
        print(m["target"]["name"], m["executable"])')
unset RUSTFLAGS
[ ${#tests[@]} -eq 4 ] || { log "expected 4 runtime test executables, found: ${tests[*]}"; exit 1; }

out=target/kernel-test
rm -rf "$out/initramfs"
mkdir -p "$out/initramfs"/{bin,modules,tests}
cp /bin/busybox "$out/initramfs/bin/busybox"
cp scripts/kernel/guest/init "$out/initramfs/init"
cp scripts/kernel/guest/*.sh "$out/initramfs/tests/"
cp "${modules[@]}" "$out/initramfs/modules/"
cp "$bindir/synergy" "$bindir/synergy-ktest" "$out/initramfs/bin/"
for t in "${tests[@]}"; do
  cp "${t#* }" "$out/initramfs/bin/synergy-test-${t%% *}"
done
chmod +x "$out/initramfs/init"
(cd "$out/initramfs" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initramfs.cpio.gz"

log="$out/console.log"
log "booting $(basename "$kdir") in QEMU (TCG, 4 CPUs); console: $log"
set +e
# tsc=reliable: under TCG the clocksource watchdog soon declares the TSC unstable and the kernel
# falls back to the HPET, whose every read is an emulated MMIO exit: clock_gettime then costs
# microseconds and the runtime's time-based spins and timer core crawl.
timeout "${SYNERGY_QEMU_TIMEOUT:-900}" "$qemu" -machine q35 -accel tcg -cpu max,+x2apic -smp 4 -m 1024 \
  -device intel-iommu,intremap=on,eim=on \
  -nographic -no-reboot -kernel "$kdir/arch/x86/boot/bzImage" -initrd "$out/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 loglevel=7 tsc=reliable" </dev/null 2>&1 | tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e

splat='(BUG:|WARNING:|Oops|general protection fault|Kernel panic|kernel BUG|Call Trace:|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|INFO: task .* blocked|rcu: INFO|UBSAN:|KASAN:)'
if grep -Eq "$splat" "$log"; then
  log "FAIL: the kernel reported a problem:"
  grep -En "$splat" "$log" | head -20 >&2
  exit 1
fi
guest_rc=$(sed -n 's/^SYNERGY-GUEST-EXIT=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$guest_rc" ]; then
  log "FAIL: the guest did not finish (qemu exit $qemu_rc; timeout or crash)"
  exit 1
fi
if ! grep -q 'x2apic enabled\|Switched APIC routing to.*x2apic\|APIC: Switched to x2apic' "$log"; then
  log "FAIL: the guest did not run in x2APIC mode"
  exit 1
fi
# Files the guest printed between SYNERGY-FILE-BEGIN/END markers (benchmark results).
python3 - "$log" "$out/results" <<'PY'
import os, sys
log, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
name, lines = None, []
for line in open(log, errors="replace"):
    line = line.rstrip("\r\n")
    if line.startswith("SYNERGY-FILE-BEGIN "):
        name, lines = os.path.basename(line.split(" ", 1)[1]), []
    elif line.startswith("SYNERGY-FILE-END ") and name:
        open(os.path.join(dest, name), "w").write("\n".join(lines) + "\n")
        print(f"[synergy] guest result: {dest}/{name}", file=sys.stderr)
        name = None
    elif name is not None and not line.startswith("["):
        lines.append(line)
PY
passed=$(grep -c '^SYNERGY-TEST-PASS' "$log" || true)
failed=$(grep -c '^SYNERGY-TEST-FAIL' "$log" || true)
echo "kernel tests: $passed passed, $failed failed"
exit "$guest_rc"
