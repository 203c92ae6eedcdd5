# The interrupt-path microbenchmark through kmod_ipi (a functional check under TCG: the numbers
# say nothing about hardware). Its JSON and CSV are copied out through the console.
# The modules: /modules in the QEMU guest; SYNERGY_MODULES elsewhere (synergy validate).
modules=${SYNERGY_MODULES:-/modules}
insmod "$modules"/kmod_ipi.ko
synergy-microbench-emit ipi
rmmod kmod_ipi
