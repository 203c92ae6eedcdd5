# kmod_uintr (on QEMU's TCG: a CPU without UINTR; by hand also in Bochs with UINTR): it loads, reports UINTR as CPUID does, answers every
# bad argument with its errno and every valid registration with EOPNOTSUPP, and unloads; twice.
for i in 1 2; do
  insmod /modules/kmod_uintr.ko
  test -c /dev/synergy_uintr
  ls -l /dev/synergy_uintr | grep -q '^crw-------'
  synergy-ktest uintr-refusal
  rmmod kmod_uintr
  test ! -e /dev/synergy_uintr
done
# The runtime names what is missing.
if synergy demo --preempt uintr --duration-ms 10 2>/tmp/err; then echo "--preempt uintr must fail here"; exit 1; fi
grep -q "uintr" /tmp/err
