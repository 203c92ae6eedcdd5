# kmod_ipi: load, root-only device node, ioctl round trip (and bad pointer / unknown ioctl),
# unload, and a second load/unload cycle.
# The modules: /modules in the QEMU guest; SYNERGY_MODULES elsewhere (synergy validate).
modules=${SYNERGY_MODULES:-/modules}
insmod "$modules"/kmod_ipi.ko
test -c /dev/synergy_ipi
ls -l /dev/synergy_ipi
ls -l /dev/synergy_ipi | grep -q '^crw-------'
synergy-ktest ipi-version
rmmod kmod_ipi
test ! -e /dev/synergy_ipi
insmod "$modules"/kmod_ipi.ko
synergy-ktest ipi-version
rmmod kmod_ipi
