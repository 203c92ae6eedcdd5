# CPU hotplug with both modules loaded: a CPU holding a kmod_ipi receiver goes offline and comes
# back three times; kmod_uintr's hotplug callback prepares it each time it comes online (CR4.UINTR
# where the CPU has UINTR), counted in its VERSION answer; kmod_ipi refuses sends while it is away.
# The modules: /modules in the QEMU guest; SYNERGY_MODULES elsewhere (synergy validate).
modules=${SYNERGY_MODULES:-/modules}
insmod "$modules"/kmod_ipi.ko
insmod "$modules"/kmod_uintr.ko
synergy-ktest cpu-hotplug
echo "60: ktest exited; rmmod kmod_uintr"
rmmod kmod_uintr
echo "60: rmmod kmod_ipi"
rmmod kmod_ipi
