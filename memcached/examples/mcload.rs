//! `mcload`: the open-loop memcached load generator (`synergy_memcached::loadgen`) as a command,
//! for scripts/memcached-bench.sh: one JSON line per point on stdout.
//!
//! ```sh
//! mcload --target 127.0.0.1:11211 --workload usr-long --keys 100000 --populate \
//!        --rps 20000,40000 --duration-ms 3000 [--transport udp|tcp] [--sockets N]
//! ```

use std::net::SocketAddrV4;
use std::time::Duration;
use synergy_memcached::loadgen::{populate, run, LoadParams, Proto, Workload};

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fail = |why: String| -> ! {
        eprintln!("mcload: {why}");
        std::process::exit(2)
    };
    let target: SocketAddrV4 =
        arg(&args, "--target").unwrap_or("127.0.0.1:11211").parse().unwrap_or_else(|e| fail(format!("--target: {e}")));
    let workload = arg(&args, "--workload").unwrap_or("usr");
    let workload = Workload::named(workload).unwrap_or_else(|| fail(format!("--workload {workload}: usr or usr-long")));
    let num = |name: &str, default: u64| -> u64 {
        arg(&args, name).map_or(default, |v| v.parse().unwrap_or_else(|e| fail(format!("{name} {v}: {e}"))))
    };
    let proto = arg(&args, "--transport").unwrap_or("udp");
    let proto = Proto::named(proto).unwrap_or_else(|| fail(format!("--transport {proto}: udp or tcp")));
    let keys = num("--keys", 100_000);
    if args.iter().any(|a| a == "--populate") {
        populate(target, keys, proto).unwrap_or_else(|e| fail(format!("populating {target}: {e}")));
    }
    let rates: Vec<f64> = arg(&args, "--rps")
        .unwrap_or("10000")
        .split(',')
        .map(|r| r.parse().unwrap_or_else(|e| fail(format!("--rps {r}: {e}"))))
        .collect();
    for rps in rates {
        let p = LoadParams {
            target,
            workload,
            rps,
            duration: Duration::from_millis(num("--duration-ms", 3_000)),
            warmup: Duration::from_millis(num("--warmup-ms", 500)),
            keys,
            sockets: num("--sockets", if proto == Proto::Tcp { 4 } else { 1 }) as usize,
            proto,
            seed: num("--seed", 1),
        };
        match run(&p) {
            Ok(r) => println!("{}", r.to_json()),
            Err(e) => fail(format!("{target} at {rps} requests/s: {e}")),
        }
    }
}
