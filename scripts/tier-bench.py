#!/usr/bin/env python3
"""The cooperative tier's tail cost against the preemptive tier (issue 41, item 3): the demo's
High workload (`synergy run --workload high`), long requests under `feedback_start` (any
instruction, any worker) or `feedback_start_cooperative` (only at the probes of `long_work`, on
their own worker), ROUNDS alternating rounds in one run; reports each round's short-request
p99.9 latency and overall p99.9 slowdown, and the median ratio cooperative / preemptive.

    scripts/tier-bench.py --synergy target/release/synergy [--rounds 5] [--load 0.6] [--out DIR]

Writes DIR/tiers.json, tiers.csv and tiers.svg (per-round short p99.9, both tiers).
"""
import argparse
import json
import os
import subprocess
import tempfile


def run(args, tier, seed):
    with tempfile.TemporaryDirectory() as d:
        argv = [args.synergy, "run", "--workload", "high", "--load", str(args.load), "--duration-ms",
                str(args.duration_ms), "--seed", str(seed), "--preempt", args.preempt, "--tier", tier,
                "--out", d]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: {out.stderr}")
        r = json.load(open(f"{d}/run.json"))[0]
    short = next(c for c in r["classes"] if not c["long"])
    long = next(c for c in r["classes"] if c["long"])
    return {"tier": tier, "seed": seed, "short_p999_us": short["latency"]["p999_ns"] / 1e3,
            "long_p999_us": long["latency"]["p999_ns"] / 1e3,
            "overall_slowdown_p999": r["overall_slowdown_p999"], "answered": r["answered"],
            "requests": r["requests"], "preemptions": r["stats"]["total"]["preemptions"],
            "migrations": r["stats"]["total"]["migrations"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synergy", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--load", type=float, default=0.6)
    ap.add_argument("--duration-ms", type=int, default=2000)
    ap.add_argument("--preempt", default="signal")
    ap.add_argument("--out", default="target/tier-bench")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for rnd in range(args.rounds):
        for tier in ("preemptive", "cooperative"):
            row = run(args, tier, 1 + rnd)
            row["round"] = rnd
            rows.append(row)
            print(f"round {rnd} {tier:11}: short p99.9 {row['short_p999_us']:9.1f} us, long p99.9 "
                  f"{row['long_p999_us']:9.1f} us, overall p99.9 slowdown {row['overall_slowdown_p999']:8.1f}, "
                  f"{row['preemptions']} preemptions, {row['migrations']} migrations", flush=True)
    med = lambda v: sorted(v)[len(v) // 2]
    ratio = lambda key: med([c[key] / p[key] for p, c in zip(rows[0::2], rows[1::2]) if p[key] > 0])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    summary = {"cpu_model": cpu, "load": args.load, "preempt": args.preempt, "rounds": args.rounds,
               "median_ratio_short_p999": ratio("short_p999_us"), "median_ratio_long_p999": ratio("long_p999_us"),
               "median_ratio_overall_slowdown_p999": ratio("overall_slowdown_p999"), "rows": rows}
    json.dump(summary, open(os.path.join(args.out, "tiers.json"), "w"), indent=1)
    with open(os.path.join(args.out, "tiers.csv"), "w") as f:
        keys = list(rows[0].keys())
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(str(r[k]) for k in keys) + "\n")
    # Per-round bars of the short requests' p99.9, both tiers side by side.
    w, h, l, b, t = 640, 320, 70, 40, 40
    top = max(r["short_p999_us"] for r in rows) * 1.1 or 1
    bw = (w - l - 20) / (2 * args.rounds + args.rounds)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">short-request p99.9 (us), High, load {args.load}: '
         f'preemptive (blue) vs cooperative (orange); median ratio {summary["median_ratio_short_p999"]:.2f}</text>',
         f'<line x1="{l}" y1="{h-b}" x2="{w-10}" y2="{h-b}" stroke="black"/>']
    for i, r in enumerate(rows):
        x = l + (r["round"] * 3 + (0 if r["tier"] == "preemptive" else 1)) * bw
        hh = (h - b - t) * r["short_p999_us"] / top
        color = "#1b6ca8" if r["tier"] == "preemptive" else "#ff7f0e"
        o.append(f'<rect x="{x:.1f}" y="{h-b-hh:.1f}" width="{bw*0.9:.1f}" height="{hh:.1f}" fill="{color}"/>')
        if r["tier"] == "preemptive":
            o.append(f'<text x="{x+bw:.1f}" y="{h-b+16}" text-anchor="middle">round {r["round"]}</text>')
    for i in range(5):
        yv = top * i / 4
        o.append(f'<text x="{l-6}" y="{h-b-(h-b-t)*i/4+4:.1f}" text-anchor="end">{yv:.0f}</text>')
    o.append("</svg>")
    open(os.path.join(args.out, "tiers.svg"), "w").write("\n".join(o))
    print(f"median cooperative/preemptive: short p99.9 {summary['median_ratio_short_p999']:.3f}, long p99.9 "
          f"{summary['median_ratio_long_p999']:.3f}, overall slowdown {summary['median_ratio_overall_slowdown_p999']:.3f} "
          f"({cpu}); wrote {args.out}/tiers.json, tiers.csv, tiers.svg")


if __name__ == "__main__":
    main()
