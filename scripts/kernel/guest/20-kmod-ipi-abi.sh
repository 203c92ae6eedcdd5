# kmod_ipi ABI: every bad-input case, ownership between processes, kill -9 of a registered
# process followed by reuse of its CPU, pid namespaces, concurrent unregistration.
insmod /modules/kmod_ipi.ko
synergy-ktest ipi-version
synergy-ktest ipi-bad-input
synergy-ktest ipi-foreign
synergy-ktest ipi-pidns
synergy-ktest ipi-unregister-storm
rmmod kmod_ipi
