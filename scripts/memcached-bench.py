#!/usr/bin/env python3
"""Debian's memcached and synergy's memcached service side by side (issue 42), driven by the same
open-loop load generator over UDP or TCP (memcached/examples/mcload.rs, `--transport`), one server
after the other, on the same CPUs, at loads that are fractions of memcached's measured capacity.

Run by scripts/memcached-bench.sh (which builds the binaries); writes RESULTS_DIR/results.json,
results.csv and latency.svg (short-GET p99.9 against load, one line per server) and
throughput.svg (achieved against offered).

Definitions (the issue's): capacity is the highest offered load at which memcached answers at
least 99% of the requests at a valid point (at most 5% late sends); loads are fractions of it.
memcached runs with -t equal to the server's CPUs, -c 4096, -m 1024.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_udp(port, timeout=10.0):
    """Until the server answers a UDP `version` (memcached frame header)."""
    deadline = time.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.time() < deadline:
            s.sendto(b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n", ("127.0.0.1", port))
            try:
                if b"VERSION" in s.recv(2048):
                    return
            except OSError:
                pass
        raise SystemExit(f"no server answered on udp port {port}")


def wait_tcp(port, timeout=10.0):
    """Until the server answers `version` on a TCP connection."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"version\r\n")
                if b"VERSION" in s.recv(2048):
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no server answered on tcp port {port}")


def wait_ready(args, port):
    (wait_tcp if args.transport == "tcp" else wait_udp)(port)


class Server:
    def __init__(self, name, argv):
        self.name, self.argv = name, argv
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_list(text):
    """CPUs from a list such as `2-5,8`."""
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def servers(args, port):
    ports = ["-U", str(port), "-p", "0"] if args.transport == "udp" else ["-U", "0", "-p", str(port)]
    mc = lambda t, cpus: ["taskset", "-c", cpus, args.memcached, *ports, "-l", "127.0.0.1",
                          "-t", str(t), "-c", "4096", "-m", "1024", "-u", "root"]
    if args.server_cpus:
        # Several server CPUs (the 16-core machine): memcached gets all of them (-t = their count);
        # synergy's timer core takes the first and its workers the rest, so both servers use the
        # same CPUs; the generator runs on CPUs of its own.
        cpus = cpu_list(args.server_cpus)
        workers = cpus[1:]
        syn = lambda mode: [args.synergy, "serve", "--app", "memcached", "--transport", args.transport,
                            "--bind", f"127.0.0.1:{port}", "--workers", str(len(workers)),
                            "--worker-cores", ",".join(map(str, workers)), "--timer-core", str(cpus[0]),
                            "--preempt", mode, "--memory-mb", "1024"]
        return [
            Server(f"memcached -t {len(cpus)}", mc(len(cpus), args.server_cpus)),
            Server("synergy none", syn("none")),
            Server("synergy signal", syn("signal")),
            Server("synergy ci+signal", syn("ci+signal")),
        ]
    cpu_server, cpu_gen = args.server_cpu, args.generator_cpu
    syn = lambda mode: [args.synergy, "serve", "--app", "memcached", "--transport", args.transport,
                        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-cores", str(cpu_server),
                        "--timer-core", str(cpu_gen), "--timer-yield", "always", "--preempt", mode,
                        "--memory-mb", "1024"]
    return [
        Server("memcached -t 1", mc(1, str(cpu_server))),
        Server("memcached -t 2", mc(2, f"{cpu_gen},{cpu_server}")),
        Server("synergy none", syn("none")),
        Server("synergy signal", syn("signal")),
        Server("synergy ci+signal", syn("ci+signal")),
    ]


def load(args, port, rates, populate):
    gen_cpus = args.generator_cpus or str(args.generator_cpu)
    argv = ["taskset", "-c", gen_cpus, args.mcload, "--target", f"127.0.0.1:{port}",
            "--workload", args.workload, "--keys", str(args.keys), "--rps", ",".join(str(int(r)) for r in rates),
            "--duration-ms", str(args.duration_ms), "--seed", str(args.seed), "--transport", args.transport]
    if populate:
        argv.append("--populate")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"mcload failed: {out.stderr}")
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def answered(p):
    return p["completed"] / p["sent"] if p["sent"] else 0.0


def capacity(args):
    """The highest offered load memcached (the first server: -t 1, or -t with every server CPU)
    answers >= 99% of at a valid point (a sweep up by 20% steps from 10,000 requests/s until it
    fails twice)."""
    port = free_port()
    best, rps, fails, points = 0.0, 10_000.0, 0, []
    first = servers(args, port)[0]
    with Server(first.name, first.argv):
        wait_ready(args, port)
        load(args, port, [1000], populate=True)
        while fails < 2 and rps < 2_000_000:
            p = load(args, port, [rps], populate=False)[0]
            points.append(p)
            if p["valid"] and answered(p) >= 0.99:
                best, fails = rps, 0
            else:
                fails += 1
            rps *= 1.2
    return best, points


OSLAT = "oslat"


def oslat(cpu, seconds):
    """The machine's noise floor on `cpu` (Debian's rt-tests): the longest a busy loop there was
    kept from running, and how many 1 us samples took longer than 10 us."""
    path = f"/tmp/synergy-oslat-{os.getpid()}.json"
    try:
        subprocess.run([OSLAT, "-c", str(cpu), "-D", str(seconds), f"--json={path}"], capture_output=True, text=True)
        t = next(iter(json.load(open(path))["thread"].values()))
        over10 = sum(n for us, n in t["histogram"].items() if int(us) > 10)
        return {"cpu": cpu, "seconds": seconds, "min_us": t["min"], "avg_us": t["avg"], "max_us": t["max"],
                "samples_over_10us": over10}
    except (OSError, ValueError, KeyError, StopIteration) as e:
        print(f"oslat on CPU {cpu} did not run ({e}): the noise floor is missing from the results", flush=True)
        return {"cpu": cpu, "seconds": seconds, "error": str(e)}
    finally:
        if os.path.exists(path):
            os.remove(path)


def svg_lines(path, title, xlabel, ylabel, series, logy=False):
    """A plain line chart: series = {name: [(x, y, valid)]}; invalid points are drawn hollow."""
    import math
    w, h, l, r, t, b = 760, 420, 80, 190, 40, 50
    xs = [x for s in series.values() for x, _, _ in s] or [0, 1]
    ys = [y for s in series.values() for _, y, _ in s if y > 0] or [1]
    x0, x1 = 0, max(xs) * 1.05
    fy = (lambda v: math.log10(max(v, 1e-9))) if logy else (lambda v: v)
    y0, y1 = (fy(min(ys)) - 0.1, fy(max(ys)) + 0.1) if logy else (0, max(ys) * 1.1)
    X = lambda x: l + (x - x0) / (x1 - x0) * (w - l - r)
    Y = lambda y: h - b - (fy(y) - y0) / (y1 - y0) * (h - t - b)
    colors = ["#1b6ca8", "#7f7f7f", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
         f'<line x1="{l}" y1="{h-b}" x2="{w-r}" y2="{h-b}" stroke="black"/>',
         f'<line x1="{l}" y1="{t}" x2="{l}" y2="{h-b}" stroke="black"/>',
         f'<text x="{(l+w-r)/2}" y="{h-12}" text-anchor="middle">{xlabel}</text>',
         f'<text x="16" y="{(t+h-b)/2}" transform="rotate(-90 16 {(t+h-b)/2})" text-anchor="middle">{ylabel}</text>']
    for i in range(6):
        xv = x0 + (x1 - x0) * i / 5
        o.append(f'<text x="{X(xv)}" y="{h-b+16}" text-anchor="middle">{xv:.2g}</text>')
        yv = y0 + (y1 - y0) * i / 5
        label = f"{10**yv:.3g}" if logy else f"{yv:.3g}"
        o.append(f'<text x="{l-6}" y="{h-b-(h-t-b)*i/5+4}" text-anchor="end">{label}</text>')
    for k, (name, pts) in enumerate(series.items()):
        c = colors[k % len(colors)]
        pts = sorted(p for p in pts if p[1] > 0)
        if pts:
            o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                     % (c, " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y, _ in pts)))
        for x, y, valid in pts:
            o.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4" fill="{c if valid else "white"}" stroke="{c}"/>')
        o.append(f'<rect x="{w-r+14}" y="{t+18*k}" width="12" height="12" fill="{c}"/>')
        o.append(f'<text x="{w-r+32}" y="{t+18*k+10}">{name}</text>')
    o.append(f'<text x="{w-r+14}" y="{t+18*len(series)+14}" font-size="10">hollow: invalid point</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synergy", required=True)
    ap.add_argument("--mcload", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workload", default="usr-long", choices=["usr", "usr-long"])
    ap.add_argument("--transport", default="udp", choices=["udp", "tcp"])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--duration-ms", type=int, default=3000)
    ap.add_argument("--loads", default="0.1,0.3,0.5,0.7,0.9")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--generator-cpu", type=int, default=0)
    ap.add_argument("--server-cpus", help="several server CPUs, e.g. 2-9: memcached -t <count> on all of "
                    "them; synergy's timer core on the first, its workers on the rest (the 16-core run)")
    ap.add_argument("--generator-cpus", help="the load generator's CPUs, e.g. 10-13 (default --generator-cpu)")
    ap.add_argument("--memcached", default="memcached", help="the memcached binary (a carried one on the device)")
    ap.add_argument("--oslat", default="oslat", help="rt-tests' oslat binary")
    args = ap.parse_args()
    global OSLAT
    OSLAT = args.oslat
    os.makedirs(args.out, exist_ok=True)
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    noise_cpu = cpu_list(args.server_cpus)[-1] if args.server_cpus else args.server_cpu
    noise = oslat(noise_cpu, 5)
    cap, cap_points = capacity(args)
    if cap == 0:
        raise SystemExit("memcached answered < 99% even at 10,000 requests/s: no capacity to scale by")
    fractions = [float(f) for f in args.loads.split(",")]
    rows = []
    for rnd in range(args.rounds):
        for srv in servers(args, 0):
            port = free_port()
            argv = servers(args, port)[[s.name for s in servers(args, 0)].index(srv.name)].argv
            with Server(srv.name, argv):
                wait_ready(args, port)
                load(args, port, [1000], populate=True)
                for p, frac in zip(load(args, port, [cap * f for f in fractions], populate=False), fractions):
                    get = next(c for c in p["classes"] if c["class"] == "get")
                    mget = next(c for c in p["classes"] if c["class"] == "multiget")
                    rows.append({"round": rnd, "server": srv.name, "load": frac, "offered_rps": p["offered_rps"],
                                 "achieved_rps": p["achieved_rps"], "answered": answered(p),
                                 "late_fraction": p["late_fraction"], "valid": p["valid"],
                                 "get_p50_us": get["p50_ns"] / 1e3, "get_p99_us": get["p99_ns"] / 1e3,
                                 "get_p999_us": get["p999_ns"] / 1e3, "multiget_p999_us": mget["p999_ns"] / 1e3,
                                 "get_misses": p["get_misses"]})
                    print(f"{srv.name:18} load {frac:.1f} ({p['offered_rps']:.0f}/s): answered {answered(p):.4f}, "
                          f"late {p['late_fraction']:.3f}{'' if p['valid'] else ' INVALID'}, GET p50/p99/p99.9 "
                          f"{get['p50_ns']/1e3:.1f}/{get['p99_ns']/1e3:.1f}/{get['p999_ns']/1e3:.1f} us",
                          flush=True)
    result = {"cpu_model": cpu_model, "workload": args.workload, "transport": args.transport, "keys": args.keys,
              "duration_ms": args.duration_ms, "capacity_rps": cap, "capacity_points": cap_points,
              "server_cpu": args.server_cpu, "generator_cpu": args.generator_cpu,
              "server_cpus": args.server_cpus, "generator_cpus": args.generator_cpus,
              "timer_core_cpu": cpu_list(args.server_cpus)[0] if args.server_cpus else args.generator_cpu,
              "oslat": noise, "rows": rows}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "results.csv"), "w") as f:
        keys = list(rows[0].keys())
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(str(r[k]) for k in keys) + "\n")
    names = list(dict.fromkeys(r["server"] for r in rows))
    med = lambda v: sorted(v)[len(v) // 2]
    lat, thr = {}, {}
    for n in names:
        for frac in fractions:
            rs = [r for r in rows if r["server"] == n and r["load"] == frac]
            lat.setdefault(n, []).append((frac, med([r["get_p999_us"] for r in rs]), all(r["valid"] for r in rs)))
            thr.setdefault(n, []).append((med([r["offered_rps"] for r in rs]), med([r["achieved_rps"] for r in rs]),
                                          all(r["valid"] for r in rs)))
    svg_lines(os.path.join(args.out, "latency.svg"),
              f"short GET p99.9, {args.workload} over {args.transport}, capacity {cap:.0f}/s ({cpu_model})",
              f"load (fraction of {names[0]}'s capacity)", "GET p99.9 (us, log)", lat, logy=True)
    svg_lines(os.path.join(args.out, "throughput.svg"), f"achieved against offered, {args.workload} over {args.transport}",
              "offered (requests/s)", "achieved (requests/s)", thr)
    print(f"capacity {cap:.0f} requests/s; oslat on CPU {noise_cpu}: {noise}")
    print(f"wrote {args.out}/results.json, results.csv, latency.svg, throughput.svg")


if __name__ == "__main__":
    sys.exit(main())
