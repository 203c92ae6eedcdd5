# The ioctl fuzzer: 50 insmod/rmmod cycles of both modules, each followed by 2,000 random ioctls
# per module from forked processes (some killed with SIGKILL at random moments): 100,000 per
# module in all. Any splat fails the run (on the KASAN kernel: any invalid access). The modules
# must unload after every cycle (no reference leaked by a killed or crashed process).
# The modules: /modules in the QEMU guest; SYNERGY_MODULES elsewhere (synergy validate).
modules=${SYNERGY_MODULES:-/modules}
for i in $(seq 1 50); do
  insmod "$modules"/kmod_ipi.ko
  insmod "$modules"/kmod_uintr.ko
  synergy-ktest fuzz ipi 2000 "$i"
  synergy-ktest fuzz uintr 2000 "$i"
  rmmod kmod_uintr
  rmmod kmod_ipi
done
