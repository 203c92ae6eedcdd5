//! The DPDK data plane end to end on a virtual device (needs the `dpdk` feature and root): a veth
//! pair, DPDK's net_af_packet driver on one end with a software IPv4 address, and the kernel UDP
//! load generator on the other end (a static neighbour entry replaces ARP). Every id must be
//! answered exactly once. EAL runs without hugepages (`--no-huge --no-shconf`). One test per
//! process: DPDK's EAL can be initialised only once.
#![cfg(feature = "dpdk")]

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;
use synergy_eval::workload::{Workload, WorkloadName};
use synergy_net::dpdk::DpdkParams;
use synergy_net::loadgen::{self, LoadgenParams};
use synergy_net::server::DpdkServer;

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A veth pair, removed on drop.
struct Veth {
    a: String,
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.a]).output();
    }
}

#[test]
fn dpdk_af_packet_answers_every_request_exactly_once() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (to create a veth pair and open AF_PACKET sockets); CI runs it as root");
    }
    let tag = std::process::id() % 10_000;
    let (a, b) = (format!("sydp{tag}a"), format!("sydp{tag}b"));
    let _ = Command::new("ip").args(["link", "del", &a]).output();
    ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    let veth = Veth { a: a.clone() };
    ip(&["link", "set", &a, "up"]);
    ip(&["link", "set", &b, "up"]);
    // A /30 of its own per run, so parallel runs on one machine do not collide.
    let net = 10 + (tag % 200) as u8;
    let server_ip = Ipv4Addr::new(10, 99, net, 1);
    let client_cidr = format!("10.99.{net}.2/30");
    ip(&["addr", "add", &client_cidr, "dev", &b]);
    let mac = std::fs::read_to_string(format!("/sys/class/net/{a}/address")).unwrap();
    ip(&["neigh", "replace", &server_ip.to_string(), "lladdr", mac.trim(), "dev", &b, "nud", "permanent"]);

    let params = DpdkParams {
        eal_args: [
            "--no-huge",
            "--no-shconf",
            "--no-pci",
            "-m",
            "256",
            "--log-level=error",
            &format!("--vdev=net_af_packet0,iface={a},qpairs=1"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        device: "net_af_packet0".into(),
        ip: server_ip,
        port: 7000,
        workers: 1,
    };
    let server = DpdkServer::start(
        &common::one_worker(),
        &params,
        synergy_apps::synthetic::handler(Workload::named(WorkloadName::High).types),
    )
    .expect("start the DPDK server");
    let lp = LoadgenParams {
        target: SocketAddrV4::new(server_ip, 7000),
        workload: Workload::named(WorkloadName::High),
        rps: 2_000.0,
        duration: Duration::from_millis(1_000),
        warmup: Duration::from_millis(50),
        grace: Duration::from_secs(3),
        flows: 8,
        seed: 3,
        keep_samples: false,
        obey_credits: false,
        cpu: None,
        step: None,
        body_bytes: 0,
    };
    let r = loadgen::run(&lp).expect("loadgen");
    let (stats, c) = server.shutdown();
    drop(veth);
    let warmup_ns = lp.warmup.as_nanos() as u64;
    let measured = loadgen::schedule(&lp).iter().filter(|req| req.arrival_ns >= warmup_ns).count() as u64;
    assert_eq!(r.sent, measured, "every measured arrival of the schedule was sent: {r:?}");
    assert_eq!((r.answered, r.lost, r.duplicates, r.bad_replies, r.error_replies), (r.sent, 0, 0, 0, 0), "{r:?}");
    assert_eq!(c.malformed, 0, "{c:?}");
    assert_eq!(c.replies, stats.total.completed, "one reply per request: {c:?} {stats:?}");
    assert_eq!(c.reply_errors, 0, "{c:?}");
}
