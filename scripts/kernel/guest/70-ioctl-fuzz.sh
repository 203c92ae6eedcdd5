# The ioctl fuzzer: 50 (SYNERGY_FUZZ_CYCLES) insmod/rmmod cycles of both modules (kmod_uintr on its fake backend here),
# each followed by SYNERGY_FUZZ_PER_CYCLE (2,000; 20,000 on the KASAN kernel) random ioctls per
# module from forked processes that fork, exec, exit threads and are killed with SIGKILL at random
# moments: 100,000 per module in all (1,000,000 on KASAN, where SYNERGY_FUZZ_LIFETIME_SPACING=5
# makes those events 5 times rarer per ioctl: they, not the ioctls, were most of its time). Any splat fails the run (on the KASAN kernel: any invalid access). The modules
# must unload after every cycle (no reference leaked by a killed or crashed process).
# The modules: /modules in the QEMU guest; SYNERGY_MODULES elsewhere (synergy validate).
modules=${SYNERGY_MODULES:-/modules}
# kmod_uintr runs on its fake backend where this is the QEMU bench's test build, so that the
# fuzzer's valid registrations reach its logic instead of stopping at EOPNOTSUPP (issue 40).
uintr_args=
[ -z "${SYNERGY_MODULES:-}" ] && uintr_args=fake_hardware=1
rm -f /tmp/fuzz-ipi.tsv /tmp/fuzz-uintr.tsv
for i in $(seq 1 "${SYNERGY_FUZZ_CYCLES:-50}"); do
  insmod "$modules"/kmod_ipi.ko
  # shellcheck disable=SC2086 # empty or one word
  insmod "$modules"/kmod_uintr.ko $uintr_args
  SYNERGY_FUZZ_TABLE=/tmp/fuzz-ipi.tsv synergy-ktest fuzz ipi "${SYNERGY_FUZZ_PER_CYCLE:-2000}" "$i"
  SYNERGY_FUZZ_TABLE=/tmp/fuzz-uintr.tsv synergy-ktest fuzz uintr "${SYNERGY_FUZZ_PER_CYCLE:-2000}" "$i"
  rmmod kmod_uintr
  rmmod kmod_ipi
done
# The ioctl x outcome table over all 50 cycles: each module's own ioctls must have reached
# success and each of their documented errors (issue 40, item 11); kmod_uintr's only on its fake
# backend (on a real CPU without UINTR every registration stops at EOPNOTSUPP).
synergy-ktest fuzz-report ipi /tmp/fuzz-ipi.tsv --documented
if [ -n "$uintr_args" ]; then
  synergy-ktest fuzz-report uintr /tmp/fuzz-uintr.tsv --documented
else
  synergy-ktest fuzz-report uintr /tmp/fuzz-uintr.tsv
fi
