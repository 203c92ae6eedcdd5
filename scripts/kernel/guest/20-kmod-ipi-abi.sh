# kmod_ipi ABI: every bad-input case, ownership between processes, kill -9 of a registered
# process followed by reuse of its CPU, pid namespaces, concurrent unregistration; deliveries
# into a restartable sequence (aborted as a signal would), a refused redirect there (the section
# keeps its abort), a registration inherited across execve (refused, dropped), bursts of sends to three receivers;
# closing the file with deliveries under way; killing a process during deliveries and removing
# the module at the first moment the kernel allows, 50 times.
# The modules: /modules in the QEMU guest; SYNERGY_MODULES elsewhere (synergy validate).
modules=${SYNERGY_MODULES:-/modules}
insmod "$modules"/kmod_ipi.ko
synergy-ktest ipi-version
synergy-ktest ipi-bad-input
synergy-ktest ipi-foreign
synergy-ktest ipi-pidns
synergy-ktest ipi-unregister-storm
synergy-ktest ipi-rseq
synergy-ktest ipi-rseq-refused
synergy-ktest ipi-exec
synergy-ktest ipi-send-burst
synergy-ktest ipi-close-during-delivery
synergy-ktest ipi-rmmod-race "$modules"/kmod_ipi.ko 50
rmmod kmod_ipi
