#!/usr/bin/env bash
# The per-request cost of request and reply bodies (issue 41), side by side in one run: the
# runtime alone, without a network (runtime/examples/request_cost.rs: an in-process channel
# transport, one pinned worker answering at once, the submitter on the other CPU), as ns per
# request over REQUESTS requests:
#   * `base`: the last revision before bodies (BASE), Request a 120-byte Copy struct;
#   * `today-N`: this revision with an N-byte body each way (moved back into the reply), N = 0,
#     64, 1024, 16384.
# ROUNDS rounds, the order rotated every round; the ratio today-0 / base is taken within each
# round. The kernel UDP path's own costs (the body's copy out of the receive buffer, sendmsg) are
# not in this number: docs/dataplane.md says what they are.
# Writes docs/results/body-bench.{json,csv,svg}.
#
#   SYNERGY_BODY_BASE=e8b033b  revision without bodies
#   ROUNDS=7  REQUESTS=2000000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
base_rev=${SYNERGY_BODY_BASE:-e8b033b}
rounds=${ROUNDS:-7}
requests=${REQUESTS:-2000000}
work=target/body-bench
raw=$work/raw
mkdir -p "$raw"
rm -f "$raw"/*

log "building this revision's request_cost"
cargo build --release --quiet -p synergy --example request_cost
today=./target/release/examples/request_cost
if [ ! -d "$work/base-src" ]; then
  git worktree add --detach "$work/base-src" "$base_rev" >/dev/null
fi
git -C "$work/base-src" checkout --quiet --detach "$base_rev"
# The same program, with the body left out (the baseline has no Body).
cp runtime/examples/request_cost.rs "$work/base-src/runtime/examples/request_cost.rs"
log "building it against $(git -C "$work/base-src" rev-parse --short HEAD) (no bodies)"
(cd "$work/base-src" && RUSTFLAGS="--cfg synergy_no_bodies" CARGO_TARGET_DIR="$PWD/../base-target" \
  cargo build --release --quiet -p synergy --example request_cost)
base=$work/base-target/release/examples/request_cost

configs=(base today-0 today-64 today-1024 today-16384)
for r in $(seq 1 "$rounds"); do
  n=${#configs[@]}
  for i in $(seq 0 $((n - 1))); do
    c=${configs[$(((i + r) % n))]}
    case $c in
      base) "$base" 0 "$requests" >"$raw/$c-r$r.json" ;;
      today-*) "$today" "${c#today-}" "$requests" >"$raw/$c-r$r.json" ;;
    esac
  done
  log "round $r of $rounds done"
done

python3 - "$raw" "$rounds" "$base_rev" "$(bash scripts/cpu-report.sh 2>&1 | head -1)" <<'EOF'
import json, statistics, sys
raw, rounds, base_rev, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
configs = ["base", "today-0", "today-64", "today-1024", "today-16384"]
rows = []
for c in configs:
    ns = [json.load(open(f"{raw}/{c}-r{r}.json"))["ns_per_request"] for r in range(1, rounds + 1)]
    rows.append({"config": c, "ns_per_request": statistics.median(ns), "ns_per_request_rounds": ns})
by = {r["config"]: r for r in rows}
ratios = [t / b for t, b in zip(by["today-0"]["ns_per_request_rounds"], by["base"]["ns_per_request_rounds"])]
result = {"cpu": cpu, "base_revision": base_rev, "rounds": rounds, "rows": rows,
          "today0_over_base_per_round": ratios, "today0_over_base_median": statistics.median(ratios)}
json.dump(result, open("docs/results/body-bench.json", "w"), indent=2)
with open("docs/results/body-bench.csv", "w") as f:
    f.write("config,ns_per_request," + ",".join(f"r{i}" for i in range(1, rounds + 1)) + "\n")
    for r in rows:
        f.write(f"{r['config']},{r['ns_per_request']:.1f}," + ",".join(f"{v:.1f}" for v in r["ns_per_request_rounds"]) + "\n")
w, h, left, top, bar = 600, 320, 70, 30, 70
peak = max(max(r["ns_per_request_rounds"]) for r in rows) * 1.15
y = lambda v: top + (h - top - 50) * (1 - v / peak)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
       f'<text x="{left}" y="18">Runtime cost per request, in process, 1 worker ({cpu}); {rounds} rounds</text>',
       f'<line x1="{left}" y1="{y(0)}" x2="{w - 10}" y2="{y(0)}" stroke="black"/>']
for k in range(6):
    v = peak * k / 6
    svg.append(f'<text x="{left - 5}" y="{y(v) + 4}" text-anchor="end">{v:.0f} ns</text>')
for i, r in enumerate(rows):
    x = left + 20 + i * (bar + 25)
    v0 = r["ns_per_request"]
    svg.append(f'<rect x="{x}" y="{y(v0)}" width="{bar}" height="{y(0) - y(v0)}" fill="#4a7ab5"/>')
    for v in r["ns_per_request_rounds"]:
        svg.append(f'<line x1="{x + 10}" x2="{x + bar - 10}" y1="{y(v)}" y2="{y(v)}" stroke="#d04a02"/>')
    svg.append(f'<text x="{x + bar / 2}" y="{y(0) + 16}" text-anchor="middle">{r["config"]}</text>')
svg.append(f'<text x="{left}" y="{h - 8}">bars: median; ticks: each round. today-0 / base: {statistics.median(ratios):.3f} (median of per-round ratios)</text></svg>')
open("docs/results/body-bench.svg", "w").write("\n".join(svg))
print(f"{cpu}; today-0 / base per round: {', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f})")
for r in rows:
    print(f"{r['config']:>12}: {r['ns_per_request']:7.1f} ns per request (rounds: {', '.join(f'{v:.0f}' for v in r['ns_per_request_rounds'])})")
EOF
log "wrote docs/results/body-bench.{json,csv,svg}"
