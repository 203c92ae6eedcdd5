# kmod_uintr. On QEMU's TCG (a CPU without UINTR): it loads, reports UINTR as CPUID does, answers
# every bad argument with its errno and every valid registration with EOPNOTSUPP, and unloads;
# twice; the runtime's --preempt=uintr names what is missing. On a CPU with UINTR (by hand, in
# Bochs: scripts/kernel/bochs-uintr.sh) the same checks accept valid registrations, and user
# interrupts are then tested end to end: the module alone, then the runtime preempting with them.
for i in 1 2; do
  insmod /modules/kmod_uintr.ko
  test -c /dev/synergy_uintr
  ls -l /dev/synergy_uintr | grep -q '^crw-------'
  synergy-ktest uintr-refusal
  rmmod kmod_uintr
  test ! -e /dev/synergy_uintr
done
insmod /modules/kmod_uintr.ko
if dmesg | grep -q 'kmod_uintr: loaded.*UINTR enabled'; then
  synergy-ktest uintr-deliver
  export SYNERGY_TEST_PREEMPT=uintr
  synergy-test-preemption --test-threads=1 short_request_overtakes
  synergy demo --preempt uintr --duration-ms 300
  unset SYNERGY_TEST_PREEMPT
else
  # The runtime names what is missing.
  if synergy demo --preempt uintr --duration-ms 10 2>/tmp/err; then echo "--preempt uintr must fail here"; exit 1; fi
  grep -q "uintr" /tmp/err
  cat /tmp/err
fi
rmmod kmod_uintr
test ! -e /dev/synergy_uintr
