#!/usr/bin/env bash
# Prints where a run happens: the CPU's vendor, family/model and name, and the features the
# project branches on (xsavec, avx2, avx512f, amx, uintr, and whether a hypervisor is present).
# scripts/test.sh and scripts/test-under-load.sh print it first, so every CI log says which CPU
# it ran on (the host CPU changes between runs: AMD or Intel).
set -euo pipefail
info=/proc/cpuinfo
field() { sed -n "s/^$1[[:space:]]*: //p" "$info" | head -n 1; }
flags=" $(field flags) "
has() { case "$flags" in *" $1 "*) echo yes ;; *) echo no ;; esac; }
echo "[synergy] CPU: $(field vendor_id) family $(field 'cpu family') model $(field model) ($(field 'model name')), $(nproc) CPUs"
echo "[synergy] CPU features: xsavec=$(has xsavec) avx2=$(has avx2) avx512f=$(has avx512f) amx_tile=$(has amx_tile) uintr=$(has uintr) hypervisor=$(has hypervisor)"
