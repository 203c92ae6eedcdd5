# kmod_ipi ABI: every bad-input case, ownership between processes, kill -9 of a registered
# process followed by reuse of its CPU.
insmod /modules/kmod_ipi.ko
synergy-ktest ipi-version
synergy-ktest ipi-bad-input
synergy-ktest ipi-foreign
rmmod kmod_ipi
