# The interrupt-path microbenchmark through kmod_ipi (a functional check under TCG: the numbers
# say nothing about hardware). Its JSON and CSV are copied out through the console.
insmod /modules/kmod_ipi.ko
synergy-microbench-emit ipi
rmmod kmod_ipi
