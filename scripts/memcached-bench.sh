#!/usr/bin/env bash
# Debian's memcached beside synergy's memcached service (issue 42): builds `synergy` and the
# open-loop memcached load generator (memcached/examples/mcload.rs), then runs
# scripts/memcached-bench.py: memcached's capacity, then memcached -t 1, memcached -t 2 and
# synergy --preempt none|signal|ci+signal one after the other at fractions of it, oslat on the
# server's CPU as the noise floor. Results: target/memcached-bench/{results.json,results.csv,
# latency.svg,throughput.svg}. docs/memcached.md explains the setup and shows the results.
#
#   scripts/memcached-bench.sh [--workload usr|usr-long] [--transport udp|tcp] [--rounds N] [--loads 0.1,0.3,...]
#                              [--duration-ms MS] [--keys N] [--server-cpu C] [--generator-cpu C]
#                              [--server-cpus LIST --generator-cpus LIST] [--memcached PATH] [--oslat PATH]
# --server-cpus (e.g. 2-9) is the many-CPU comparison: memcached -t <count> on those CPUs, synergy's
# timer core on the first and its workers on the rest, the generator on --generator-cpus; with
# --memcached/--oslat naming carried binaries, scripts/memcached-bench.py runs without a build
# (the 16-core machine, issue 44).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
apt_install memcached rt-tests python3 util-linux
cargo build --release -p synergy-cli --bin synergy
cargo build --release -p synergy-memcached --example mcload
out=${SYNERGY_BENCH_OUT:-target/memcached-bench}
exec /usr/bin/python3 scripts/memcached-bench.py --synergy target/release/synergy \
  --mcload target/release/examples/mcload --out "$out" "$@"
