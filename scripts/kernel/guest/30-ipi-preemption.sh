# The runtime preempting through kmod_ipi: the same integration tests as on the host, with
# SYNERGY_TEST_PREEMPT=ipi; then unload refused while in use, and load/unload cycles.
# The modules: /modules in the QEMU guest; SYNERGY_MODULES elsewhere (synergy validate).
modules=${SYNERGY_MODULES:-/modules}
insmod "$modules"/kmod_ipi.ko
export SYNERGY_TEST_PREEMPT=ipi
synergy-test-preemption --test-threads=1 short_request_overtakes
SYNERGY_STRESS_PREEMPTIONS=20000 synergy-test-stress --test-threads=1 a_million_preemptions_with --nocapture
# Only SSE live when preempted through ipi_stub, AVX state live after (issue 23).
SYNERGY_LIVE_STATE_PREEMPTED=500 synergy-test-live_state --test-threads=1 --nocapture
# Compiler interrupts, and the ci+ipi hybrid falling back to kmod_ipi (issue 17).
synergy-test-compiler_interrupts --test-threads=1
SYNERGY_STRESS_CI_PREEMPTIONS=5000 synergy-test-stress --test-threads=1 a_million_preemptions_under --nocapture
synergy-test-alloc_lock --test-threads=1 one_worker --nocapture
# Every scheduling policy (--policy) with kmod_ipi delivering the preemptions.
synergy-test-policies --test-threads=1
# Preemptible regions and green-thread-locals; a short soak (panics, lock contention, flat memory).
synergy-test-regions --test-threads=1
SYNERGY_SOAK_SECS=10 synergy-test-soak --test-threads=1 --nocapture
synergy run --preempt ipi --duration-ms 300
# Unloading while a process has the device open is refused.
exec 3</dev/synergy_ipi
if rmmod kmod_ipi 2>/dev/null; then echo "rmmod succeeded while /dev/synergy_ipi was open"; exit 1; fi
exec 3<&-
rmmod kmod_ipi
for i in 1 2 3; do insmod "$modules"/kmod_ipi.ko; synergy-ktest ipi-version; rmmod kmod_ipi; done
