# kmod_ipi ABI: every bad-input case, ownership between processes, kill -9 of a registered
# process followed by reuse of its CPU, pid namespaces, concurrent unregistration; deliveries
# into a restartable sequence (aborted as a signal would), bursts of sends to three receivers.
insmod /modules/kmod_ipi.ko
synergy-ktest ipi-version
synergy-ktest ipi-bad-input
synergy-ktest ipi-foreign
synergy-ktest ipi-pidns
synergy-ktest ipi-unregister-storm
synergy-ktest ipi-rseq
synergy-ktest ipi-send-burst
rmmod kmod_ipi
