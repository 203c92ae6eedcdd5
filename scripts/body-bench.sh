#!/usr/bin/env bash
# The per-request cost of request and reply bodies (issue 41), side by side in one run: the real
# server over kernel UDP on loopback, one worker, `synergy sweep` at one low load (so latency is
# the path's cost, not queueing), ROUNDS rounds with the order rotated every round:
#   * `base` / `today`: the synthetic application with no body, served by the last revision
#     before bodies existed (BASE, built here in a git worktree) and by this one: what bodies cost
#     a request that has none (Request no longer Copy, a Body in every request and reply);
#   * `echo-N`: this revision's echo application with an N-byte body each way, N = 0, 64, 1024,
#     16384.
# Writes docs/results/body-bench.{json,csv,svg} (medians over the rounds, with every round's value),
# the raw sweeps under target/body-bench/raw.
#
#   SYNERGY_BODY_BASE=e8b033b  revision without bodies
#   ROUNDS=5  LOAD=0.25 (fraction of one worker's High capacity, 19,802 req/s)  DURATION_MS=2000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
base_rev=${SYNERGY_BODY_BASE:-e8b033b}
rounds=${ROUNDS:-5}
load=${LOAD:-0.25}
duration=${DURATION_MS:-2000}
work=target/body-bench
raw=$work/raw
mkdir -p "$raw"
rm -f "$raw"/*.json

log "building this revision"
cargo build --release --quiet -p synergy-cli
today=./target/release/synergy
if [ ! -d "$work/base-src" ]; then
  git worktree add --detach "$work/base-src" "$base_rev" >/dev/null
fi
git -C "$work/base-src" checkout --quiet --detach "$base_rev"
log "building the baseline $(git -C "$work/base-src" rev-parse --short HEAD) (no bodies)"
(cd "$work/base-src" && CARGO_TARGET_DIR="$PWD/../base-target" cargo build --release --quiet -p synergy-cli)
base=$work/base-target/release/synergy

# run NAME BINARY ARGS...: one sweep point.
run() {
  local name=$1 bin=$2
  shift 2
  "$bin" sweep --workers 1 --loads "$load" --modes signal --duration-ms "$duration" --warmup-ms 200 \
    --out-dir "$raw" --name "$name" "$@" >/dev/null 2>"$raw/$name.log" ||
    { cat "$raw/$name.log" >&2; log "$name failed"; exit 1; }
}

configs=(base today echo-0 echo-64 echo-1024 echo-16384)
for r in $(seq 1 "$rounds"); do
  # Rotate the order each round, so no configuration always runs first or last.
  n=${#configs[@]}
  for i in $(seq 0 $((n - 1))); do
    c=${configs[$(((i + r) % n))]}
    case $c in
      base) run "base-r$r" "$base" --app synthetic ;;
      today) run "today-r$r" "$today" --app synthetic ;;
      echo-*) run "$c-r$r" "$today" --app echo --body-bytes "${c#echo-}" ;;
    esac
  done
  log "round $r of $rounds done"
done

python3 - "$raw" "$rounds" "$base_rev" "$(bash scripts/cpu-report.sh 2>&1 | head -1)" <<'EOF'
import json, statistics, sys
raw, rounds, base_rev, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
configs = ["base", "today", "echo-0", "echo-64", "echo-1024", "echo-16384"]
rows = []
for c in configs:
    p50, p99 = [], []
    for r in range(1, rounds + 1):
        pt = json.load(open(f"{raw}/{c}-r{r}.json"))["points"][0]
        assert pt["lost"] == 0 and pt["bad_replies"] == 0, (c, r, pt["lost"], pt["bad_replies"])
        # base/today: the short requests (1 µs of work); echo: every request (nothing to do).
        cls = pt["classes"][0] if c in ("base", "today") else None
        p50.append(cls["p50_ns"] if cls else pt["end_to_end_p50_ns"])
        p99.append(cls["p99_ns"] if cls else pt["end_to_end_p99_ns"])
    rows.append({"config": c, "p50_ns": statistics.median(p50), "p99_ns": statistics.median(p99),
                 "p50_ns_rounds": p50, "p99_ns_rounds": p99})
by = {r["config"]: r for r in rows}
ratios = [t / b for t, b in zip(by["today"]["p50_ns_rounds"], by["base"]["p50_ns_rounds"])]
result = {"cpu": cpu, "base_revision": base_rev, "rounds": rounds, "rows": rows,
          "today_over_base_p50_per_round": ratios, "today_over_base_p50_median": statistics.median(ratios)}
json.dump(result, open("docs/results/body-bench.json", "w"), indent=2)
with open("docs/results/body-bench.csv", "w") as f:
    f.write("config,p50_ns,p99_ns," + ",".join(f"p50_r{i}" for i in range(1, rounds + 1)) + "\n")
    for r in rows:
        f.write(f"{r['config']},{r['p50_ns']:.0f},{r['p99_ns']:.0f}," + ",".join(str(v) for v in r["p50_ns_rounds"]) + "\n")
# SVG: one bar per configuration (median p50), a tick per round.
w, h, left, top, bar = 640, 320, 70, 30, 60
peak = max(max(r["p50_ns_rounds"]) for r in rows) * 1.15
y = lambda v: top + (h - top - 50) * (1 - v / peak)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
       f'<text x="{left}" y="18">Round trip p50 over loopback UDP, 1 worker ({cpu}); {rounds} rounds</text>',
       f'<line x1="{left}" y1="{y(0)}" x2="{w - 10}" y2="{y(0)}" stroke="black"/>']
for k in range(5):
    v = peak * k / 5
    svg.append(f'<text x="{left - 5}" y="{y(v) + 4}" text-anchor="end">{v / 1000:.0f} µs</text>')
for i, r in enumerate(rows):
    x = left + 20 + i * (bar + 20)
    svg.append(f'<rect x="{x}" y="{y(r["p50_ns"])}" width="{bar}" height="{y(0) - y(r["p50_ns"])}" fill="#4a7ab5"/>')
    for v in r["p50_ns_rounds"]:
        svg.append(f'<line x1="{x + 10}" x2="{x + bar - 10}" y1="{y(v)}" y2="{y(v)}" stroke="#d04a02"/>')
    svg.append(f'<text x="{x + bar / 2}" y="{y(0) + 16}" text-anchor="middle">{r["config"]}</text>')
svg.append(f'<text x="{left}" y="{h - 8}">bars: median; ticks: each round. today/base p50: {statistics.median(ratios):.3f}</text></svg>')
open("docs/results/body-bench.svg", "w").write("\n".join(svg))
print(f"{cpu}; today/base p50 per round: {', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f})")
for r in rows:
    print(f"{r['config']:>11}: p50 {r['p50_ns'] / 1000:7.1f} µs  p99 {r['p99_ns'] / 1000:7.1f} µs")
EOF
log "wrote docs/results/body-bench.{json,csv,svg}"
