//! Real clients nobody here wrote, against the service (issue 42): libmemcached-tools' `memccp`,
//! `memccat` and `memcflush` (a file in, the same bytes out, then gone), `memcaslap`
//! (4 connections, 90% get / 10% set, over TCP) and `memccapable -a` (the ASCII conformance
//! checker), each with a check of what was read back or of the server's own counts. Needs Debian's `libmemcached-tools` (`scripts/test.sh` installs it);
//! without it the tests fail and say so.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;

#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

/// One server at a time: both pin their worker to the same CPU.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config() -> synergy::Config {
    let mut config = synergy::Config::default();
    let allowed = synergy::cpu::allowed_cpus();
    if allowed.len() >= 2 {
        config.timer_core = Some(allowed[0]);
        config.worker_cores = Some(vec![allowed[1]]);
    }
    config
}

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name}: {e}: the client tests need Debian's libmemcached-tools (apt-get install libmemcached-tools; scripts/test.sh does)")
    })
}

#[test]
fn memccp_stores_a_file_memccat_reads_it_back_and_memcflush_clears_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = synergy_memcached::serve(&config(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &Default::default())
        .expect("the service starts");
    let servers = format!("--servers=127.0.0.1:{}", server.local_addr().port());
    let dir = std::env::temp_dir().join(format!("synergy-memccp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("payload.bin");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let cp = tool("memccp", &[&servers, file.to_str().unwrap()]);
    assert!(cp.status.success(), "memccp: {}", String::from_utf8_lossy(&cp.stderr));
    let cat = tool("memccat", &[&servers, "payload.bin"]);
    assert!(cat.status.success(), "memccat: {}", String::from_utf8_lossy(&cat.stderr));
    // memccat ends each value it prints with a newline.
    assert!(
        cat.stdout.strip_suffix(b"\n") == Some(&bytes[..]),
        "memccat read {} bytes back, not the 200,000 stored",
        cat.stdout.len()
    );
    let flush = tool("memcflush", &[&servers]);
    assert!(flush.status.success(), "memcflush: {}", String::from_utf8_lossy(&flush.stderr));
    let gone = tool("memccat", &[&servers, "payload.bin"]);
    assert!(gone.stdout.is_empty(), "the item survived flush_all");
    std::fs::remove_dir_all(&dir).unwrap();
    let (_, tcp) = server.shutdown();
    assert_eq!((tcp.malformed, tcp.reply_errors), (0, 0), "{tcp:?}");
}

#[test]
fn memcaslap_runs_against_the_service_without_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = synergy_memcached::serve(&config(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &Default::default())
        .expect("the service starts");
    let target = format!("127.0.0.1:{}", server.local_addr().port());
    // A count, not a time (`-x`): the 100,000 operations on any machine, however slow.
    let out = tool("memcaslap", &["-s", &target, "-T", "1", "-c", "4", "-x", "100000"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "memcaslap: {text}{}", String::from_utf8_lossy(&out.stderr));
    let ops: u64 = text
        .lines()
        .find_map(|l| l.split("Ops: ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no 'Ops:' in memcaslap's output: {text}"));
    let misses: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("get_misses: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no get_misses in memcaslap's output: {text}"));
    let (stats, tcp) = server.shutdown();
    eprintln!("memcaslap: {ops} operations, {misses} get misses; server {tcp:?}");
    assert!(ops >= 100_000, "{text}");
    assert!(tcp.requests >= 100_000, "{tcp:?}");
    // memcaslap sets each object before it gets it, and 64 MiB hold its window: every get hits.
    assert_eq!(misses, 0, "{text}");
    // Every request the server parsed was answered, none malformed, on memcaslap's 4 connections.
    assert_eq!((tcp.accepted, tcp.malformed, tcp.reply_errors), (4, 0, 0), "{tcp:?}");
    assert_eq!(tcp.requests, tcp.replies, "{tcp:?}");
    assert_eq!(stats.total.completed, tcp.requests);
}

/// libmemcached-tools' conformance checker, ASCII protocol: every test passes. Failed before
/// `version foo bar` was answered as memcached does (16 of 27 tests use it as a sync point).
#[test]
fn memccapable_ascii_passes_every_test() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = synergy_memcached::serve(&config(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &Default::default())
        .expect("the service starts");
    let port = server.local_addr().port().to_string();
    let out = tool("memccapable", &["-a", "-h", "127.0.0.1", "-p", &port, "-t", "10"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (_, tcp) = server.shutdown();
    assert!(out.status.success() && text.contains("All tests passed"), "memccapable -a:\n{text}");
    let passed = text.matches("[pass]").count();
    eprintln!("memccapable -a: {passed} tests passed; server {tcp:?}");
    assert!(passed >= 27, "{text}");
    assert_eq!(tcp.reply_errors, 0, "{tcp:?}");
}

/// Python's `pymemcache` (Debian's python3-pymemcache, run with Debian's own python3): store,
/// add, replace, append, prepend, gets/cas (current and stale), incr/decr, set_many/get_many, a
/// 512 KB value of every byte value, touch, delete, stats, version, flush_all, each answer
/// checked by `tests/clients/pymemcache_check.py`.
#[test]
fn pymemcache_reads_back_what_it_wrote() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = synergy_memcached::serve(&config(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &Default::default())
        .expect("the service starts");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/pymemcache_check.py");
    let port = server.local_addr().port().to_string();
    let out = Command::new("/usr/bin/python3").args([script, &port]).output().unwrap_or_else(|e| {
        panic!("/usr/bin/python3: {e}: needs Debian's python3 and python3-pymemcache (scripts/test.sh installs them)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (_, tcp) = server.shutdown();
    assert!(out.status.success(), "pymemcache: {text}");
    assert!(text.contains("pymemcache: 29 checks passed"), "{text}");
    assert_eq!((tcp.malformed, tcp.reply_errors), (0, 0), "{tcp:?}");
}

/// The side-by-side benchmark's load generator over TCP (`loadgen`, Proto::Tcp) against the TCP
/// service at a low rate: after `populate` every key hits, and every measured request of the
/// mixed workload (GETs and SETs on 3 connections, 100-200-key multi-gets on a fourth) is
/// answered exactly once, in order on its connection; the server counted them all.
#[test]
fn the_open_loop_generator_gets_every_reply_over_tcp() {
    use std::time::Duration;
    use synergy_memcached::loadgen::{populate, run, LoadParams, Proto, Workload, MULTI_GET};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = synergy_memcached::serve(&config(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &Default::default())
        .expect("the service starts");
    let target = server.local_addr();
    populate(target, 5_000, Proto::Tcp).expect("every key stored");
    let p = LoadParams {
        target,
        workload: Workload::UsrLong,
        rps: 2_000.0,
        duration: Duration::from_millis(1_500),
        warmup: Duration::from_millis(200),
        keys: 5_000,
        sockets: 3,
        seed: 7,
        proto: Proto::Tcp,
    };
    let r = run(&p).expect("the run");
    eprintln!("{}", r.to_json());
    let (_, tcp) = server.shutdown();
    assert!(r.sent > 2_000, "{r:?}");
    assert_eq!(r.completed, r.sent, "every measured request answered: {r:?}; server {tcp:?}");
    assert_eq!(r.get_misses, 0, "every key was stored: {r:?}");
    assert!(r.classes[MULTI_GET].completed > 0, "the mix has multi-gets: {r:?}");
    assert_eq!((tcp.accepted, tcp.malformed, tcp.reply_errors), (5, 0, 0), "populate's and the run's 4: {tcp:?}");
    assert_eq!(tcp.requests, tcp.replies, "{tcp:?}");
}
