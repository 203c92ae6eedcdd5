//! `kv`: an in-memory store over UDP in safe Rust: GET key, SET key=body, and SCAN from a key (the
//! entries and value bytes), which runs in the cooperative tier and yields at its probes.
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::{Arc, RwLock};
use synergy::{feedback_finished, feedback_start_cooperative, request::status, send, Config, Reply, Request};
use synergy_net::server::UdpServer;

pub const GET: u32 = 0;
pub const SET: u32 = 1;
pub const SCAN: u32 = 2;
pub const NOT_FOUND: u32 = 17; // applications' own statuses start above 16
type Store = Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>;

/// 64 entries per read lock, a probe between batches: no lock is held across a probe (as none is
/// held across an `.await`), so a GET or SET that overtakes the SCAN never waits for it.
#[synergy::preemptible]
fn scan(store: &Store, from: &[u8]) -> (u64, u64) {
    let (mut entries, mut bytes, mut start) = (0, 0, Included(from.to_vec()));
    loop {
        let map = store.read().unwrap();
        let batch: Vec<_> = map.range((start, Unbounded)).take(64).map(|(k, v)| (k.clone(), v.len())).collect();
        drop(map);
        let Some((last, _)) = batch.last() else { return (entries, bytes) };
        (start, entries) = (Excluded(last.clone()), entries + batch.len() as u64);
        bytes += batch.iter().map(|(_, n)| *n as u64).sum::<u64>();
    }
}

pub fn start(bind: SocketAddrV4, config: &Config) -> Result<UdpServer, synergy::StartError> {
    let store = Store::default();
    UdpServer::serve(config, bind, move |req: Request| {
        let key = req.key.as_bytes().to_vec();
        let reply = match req.kind {
            GET => match store.read().unwrap().get(&key) {
                Some(v) => Reply::to(&req).with_body(v),
                None => Reply::to(&req).with_status(NOT_FOUND),
            },
            SET => {
                store.write().unwrap().insert(key, req.body().to_vec());
                Reply::to(&req)
            }
            SCAN => {
                feedback_start_cooperative();
                let (entries, bytes) = scan(&store, &key);
                feedback_finished();
                Reply::to(&req).with_value(entries).with_body(&bytes.to_le_bytes())
            }
            _ => Reply::to(&req).with_status(status::UNKNOWN_KIND),
        };
        let _ = send(reply); // an error: the server is shutting down
    })
}

#[allow(dead_code)] // the tests include this file for `start`
fn main() {
    let server = start("127.0.0.1:7001".parse().unwrap(), &Config::default()).expect("kv starts");
    println!("kv: serving on {}", server.local_addr());
    loop {
        std::thread::park();
    }
}
