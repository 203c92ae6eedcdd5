//! A memcached-compatible service on synergy (issue 42): memcached's text protocol over TCP
//! ([`text`]), served from a bounded store ([`store`]) by a synergy runtime.
//!
//! ```no_run
//! let config = synergy::Config::default();
//! let server = synergy_memcached::serve(&config, "127.0.0.1:11211".parse().unwrap(), &synergy_memcached::Params::default())
//!     .expect("memcached service starts");
//! println!("serving memcached on {}", server.local_addr());
//! ```
//!
//! Preemption where it pays: a get of more than [`text::LONG_GET_KEYS`] keys is a long request
//! (`feedback_start` around its lookups, so a short GET on another connection is never stuck
//! behind it); everything else is short. Replies on one connection leave in request order
//! (the TCP transport's sequencer), as memcached's clients expect. docs/memcached.md lists what
//! is supported and how it differs from memcached 1.6.18.

#![deny(missing_docs)]

pub mod both;
pub mod loadgen;
pub mod meta;
pub mod slabs;
pub mod store;
pub mod text;
pub mod udp;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddrV4;
use std::sync::Arc;
use store::{Arith, Store, Stored};

use synergy::request::{Reply, Request};
use synergy::{Body, Config, StartError};
use synergy_net::server::TcpServer;
use text::{Command, StoreOp, TextCodec};

/// What `serve` needs besides the runtime's configuration.
#[derive(Debug, Clone)]
pub struct Params {
    /// The store's memory limit (memcached's `-m`, in bytes; default 64 MiB as memcached's).
    pub memory_limit: usize,
    /// The largest item (memcached's `-I`, default 1 MiB): key, value and header together.
    pub item_max: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params { memory_limit: 64 << 20, item_max: 1 << 20 }
    }
}

/// The version `version` answers.
pub const VERSION: &str = concat!("1.6.18-synergy-", env!("CARGO_PKG_VERSION"));

/// Starts the service on `bind`.
pub fn serve(config: &Config, bind: SocketAddrV4, p: &Params) -> Result<TcpServer, StartError> {
    raise_fd_limit();
    let store = Arc::new(Store::new(p.memory_limit));
    let codec = Arc::new(TextCodec { max_value: p.item_max.saturating_sub(store::ITEM_HEADER) });
    let max_value = codec.max_value;
    TcpServer::serve(config, bind, codec, handler(store, max_value))
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, as memcached raises it for
/// `-c` connections: each connection is a file descriptor, and Debian's default soft limit
/// (1,024) would refuse the 1,025th client. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `l` is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return 0;
    }
    if l.rlim_cur < l.rlim_max {
        let raised = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
        // SAFETY: a valid rlimit; raising the soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
        log::warn!("cannot raise RLIMIT_NOFILE to {}: {}", l.rlim_max, std::io::Error::last_os_error());
    }
    l.rlim_cur
}

/// The service over UDP (memcached's frame header; `udp`).
pub struct UdpService {
    /// The runtime serving it.
    pub runtime: synergy::Runtime,
    /// Its UDP transport.
    pub transport: Arc<udp::MemcachedUdp>,
}

impl UdpService {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.transport.local_addr()
    }

    /// Stops receiving, finishes what was admitted, and returns the counters.
    pub fn shutdown(self) -> (synergy::stats::RunStats, udp::UdpCounts) {
        self.transport.close();
        let stats = self.runtime.shutdown();
        (stats, self.transport.counts())
    }
}

/// Starts the service over UDP on `bind`.
pub fn serve_udp(config: &Config, bind: SocketAddrV4, p: &Params) -> Result<UdpService, StartError> {
    let store = Arc::new(Store::new(p.memory_limit));
    let max_value = p.item_max.saturating_sub(store::ITEM_HEADER);
    let transport = Arc::new(bind_udp(bind, config.workers, max_value)?);
    let runtime =
        synergy::Runtime::builder(config).transport(transport.clone()).handler(handler(store, max_value)).start()?;
    Ok(UdpService { runtime, transport })
}

/// The service over TCP and UDP at once (memcached's `-p` and `-U` together): one runtime and
/// one store behind both (`both::TcpAndUdp`).
pub struct TcpAndUdpService {
    /// The runtime serving both.
    pub runtime: synergy::Runtime,
    /// The two transports as one.
    pub transport: Arc<both::TcpAndUdp>,
}

impl TcpAndUdpService {
    /// The TCP and the UDP address.
    pub fn local_addrs(&self) -> (SocketAddrV4, SocketAddrV4) {
        (self.transport.tcp.local_addr(), self.transport.udp.local_addr())
    }

    /// Stops both, finishes what was admitted, and returns the counters.
    pub fn shutdown(self) -> (synergy::stats::RunStats, synergy_net::stream::tcp::TcpSnapshot, udp::UdpCounts) {
        self.transport.tcp.close();
        self.transport.udp.close();
        let stats = self.runtime.shutdown();
        (stats, self.transport.tcp.counters(), self.transport.udp.counts())
    }
}

/// Starts the service on TCP `tcp` and UDP `udp` at once.
pub fn serve_tcp_and_udp(
    config: &Config,
    tcp: SocketAddrV4,
    udp: SocketAddrV4,
    p: &Params,
) -> Result<TcpAndUdpService, StartError> {
    raise_fd_limit();
    let store = Arc::new(Store::new(p.memory_limit));
    let max_value = p.item_max.saturating_sub(store::ITEM_HEADER);
    let codec = Arc::new(TextCodec { max_value });
    let tcp = Arc::new(
        synergy_net::stream::tcp::TcpTransport::bind(tcp, config.workers, codec)
            .map_err(|e| StartError::Worker(format!("memcached TCP transport: {e}")))?,
    );
    let udp = Arc::new(bind_udp(udp, config.workers, max_value)?);
    let transport = Arc::new(both::TcpAndUdp::new(tcp, udp, config.workers));
    let runtime =
        synergy::Runtime::builder(config).transport(transport.clone()).handler(handler(store, max_value)).start()?;
    Ok(TcpAndUdpService { runtime, transport })
}

fn bind_udp(bind: SocketAddrV4, workers: usize, max_value: usize) -> Result<udp::MemcachedUdp, StartError> {
    udp::MemcachedUdp::bind(bind, workers, max_value)
        .map_err(|e| StartError::Worker(format!("memcached UDP transport: {e}")))
}

/// The request handler over `store`: runs the request, sends memcached's reply.
fn handler(store: Arc<Store>, max_value: usize) -> impl Fn(Request) + Send + Sync + 'static {
    move |req: Request| {
        let mut out = Body::with_capacity(64);
        handle(&store, &req, max_value, &mut out);
        let _ = synergy::send(Reply::to(&req).with_body_buf(out));
    }
}

/// Runs one request against `store`, appending memcached's reply to `out`.
pub fn handle(store: &Store, req: &Request, max_value: usize, out: &mut Body) {
    let Some(cmd) = text::parse(req.body(), req.kind) else {
        out.extend_from_slice(b"ERROR\r\n");
        return;
    };
    let o = out.as_mut_vec();
    match cmd {
        Command::Get { keys, cas, touch } => {
            let long = req.kind == text::kind::LONG_GET;
            if long {
                // SAFETY: the lookups use locals, the store's synergy::sync::Mutexes and the
                // allocator (PreemptSafeAlloc in the binary); no thread-local state, no OS lock.
                unsafe { synergy::feedback_start() };
            }
            for key in keys {
                store.counters.cmd_get.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if touch.is_some() {
                    store.counters.cmd_touch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                match store.get(key, touch) {
                    Some(item) => {
                        store.counters.get_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        o.extend_from_slice(b"VALUE ");
                        o.extend_from_slice(key);
                        if cas {
                            let _ = write!(o, " {} {} {}\r\n", item.flags, item.value.len(), item.cas);
                        } else {
                            let _ = write!(o, " {} {}\r\n", item.flags, item.value.len());
                        }
                        o.extend_from_slice(&item.value);
                        o.extend_from_slice(b"\r\n");
                    }
                    None => {
                        store.counters.get_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            if long {
                synergy::feedback_finished();
            }
            o.extend_from_slice(b"END\r\n");
        }
        Command::Store { op, key, flags, exptime, data, cas, noreply } => {
            store.counters.cmd_set.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = if data.len() > max_value {
                Stored::NotStored
            } else {
                store.store(op, key, flags, exptime, data, cas)
            };
            if !noreply {
                o.extend_from_slice(match r {
                    Stored::Stored => b"STORED\r\n",
                    Stored::NotStored => b"NOT_STORED\r\n",
                    Stored::Exists => b"EXISTS\r\n",
                    Stored::NotFound => b"NOT_FOUND\r\n",
                });
            }
        }
        Command::TooLarge { op, key } => {
            store.counters.cmd_set.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if op == StoreOp::Set {
                store.unlink(key);
            }
            o.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
        }
        Command::Delete { key, noreply } => {
            let hit = store.delete(key);
            if !noreply {
                o.extend_from_slice(if hit { b"DELETED\r\n" } else { b"NOT_FOUND\r\n" });
            }
        }
        Command::Arith { incr, key, delta, noreply } => {
            let r = store.arith(key, incr, delta);
            if !noreply {
                match r {
                    Arith::Value(v) => {
                        let _ = write!(o, "{v}\r\n");
                    }
                    Arith::NotFound => o.extend_from_slice(b"NOT_FOUND\r\n"),
                    Arith::NonNumeric => {
                        o.extend_from_slice(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
                    }
                }
            }
        }
        Command::Touch { key, exptime, noreply } => {
            let hit = store.touch(key, exptime);
            if !noreply {
                o.extend_from_slice(if hit { b"TOUCHED\r\n" } else { b"NOT_FOUND\r\n" });
            }
        }
        Command::FlushAll { delay, noreply } => {
            store.flush_all(delay);
            if !noreply {
                o.extend_from_slice(b"OK\r\n");
            }
        }
        Command::Version => {
            let _ = write!(o, "VERSION {VERSION}\r\n");
        }
        Command::Verbosity { noreply } => {
            if !noreply {
                o.extend_from_slice(b"OK\r\n");
            }
        }
        Command::Stats { arg, detail } => stats(store, arg, detail, o),
        Command::MetaNoop => o.extend_from_slice(b"MN\r\n"),
        Command::MetaGet { key, flags } => meta::get(store, key, &flags, o),
        Command::MetaDebug { key, flags } => meta::debug(store, key, &flags, o),
        Command::MetaSet { key, data, flags } => meta::set(store, key, data, &flags, o),
        Command::MetaDelete { key, flags } => meta::delete(store, key, &flags, o),
        Command::MetaArith { key, flags } => meta::arith(store, key, &flags, o),
    }
}

fn stats(store: &Store, arg: Option<&[u8]>, detail: Option<&[u8]>, o: &mut Vec<u8>) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut s = String::new();
    match arg {
        None => {
            let c = &store.counters;
            let (items, bytes) = store.usage();
            let mut stat = |name: &str, v: &dyn std::fmt::Display| {
                let _ = write!(s, "STAT {name} {v}\r\n");
            };
            stat("pid", &std::process::id());
            stat("uptime", &store.uptime());
            stat("version", &VERSION);
            stat("pointer_size", &64);
            stat("cmd_get", &c.cmd_get.load(Relaxed));
            stat("cmd_set", &c.cmd_set.load(Relaxed));
            stat("cmd_flush", &c.cmd_flush.load(Relaxed));
            stat("cmd_touch", &c.cmd_touch.load(Relaxed));
            stat("get_hits", &c.get_hits.load(Relaxed));
            stat("get_misses", &c.get_misses.load(Relaxed));
            stat("get_expired", &c.get_expired.load(Relaxed));
            stat("delete_misses", &c.delete_misses.load(Relaxed));
            stat("delete_hits", &c.delete_hits.load(Relaxed));
            stat("incr_misses", &c.incr_misses.load(Relaxed));
            stat("incr_hits", &c.incr_hits.load(Relaxed));
            stat("decr_misses", &c.decr_misses.load(Relaxed));
            stat("decr_hits", &c.decr_hits.load(Relaxed));
            stat("cas_misses", &c.cas_misses.load(Relaxed));
            stat("cas_hits", &c.cas_hits.load(Relaxed));
            stat("cas_badval", &c.cas_badval.load(Relaxed));
            stat("touch_hits", &c.touch_hits.load(Relaxed));
            stat("touch_misses", &c.touch_misses.load(Relaxed));
            stat("limit_maxbytes", &store.limit_bytes());
            stat("bytes", &bytes);
            stat("curr_items", &items);
            stat("total_items", &c.total_items.load(Relaxed));
            stat("evictions", &c.evictions.load(Relaxed));
            stat(
                "reclaimed",
                &(1..=store.classes.len()).map(|i| store.classes.stats(i).reclaimed.load(Relaxed)).sum::<u64>(),
            );
            stat("get_flushed", &c.get_flushed.load(Relaxed));
        }
        Some(b"settings") => {
            let _ = write!(
                s,
                "STAT maxbytes {}\r\nSTAT evictions on\r\nSTAT cas_enabled yes\r\nSTAT growth_factor 1.25\r\n\
                 STAT chunk_size 48\r\nSTAT slab_page_size {}\r\nSTAT slab_chunk_max {}\r\n",
                store.limit_bytes(),
                slabs::PAGE_SIZE,
                slabs::CHUNK_MAX
            );
        }
        // memcached's slab classes as the store charges items in them (`slabs`): the classes
        // that hold or held items, memcached's names; per-class hit counters are not kept.
        Some(b"slabs") => {
            let cl = &store.classes;
            let mut active = 0;
            for i in 1..=cl.len() {
                let st = cl.stats(i);
                let pages = st.pages.load(Relaxed);
                if pages == 0 {
                    continue;
                }
                active += 1;
                let total = pages * cl.per_page(i) as u64;
                let used = st.used_chunks.load(Relaxed);
                let _ = write!(
                    s,
                    "STAT {i}:chunk_size {}\r\nSTAT {i}:chunks_per_page {}\r\nSTAT {i}:total_pages {pages}\r\n\
                     STAT {i}:total_chunks {total}\r\nSTAT {i}:used_chunks {used}\r\nSTAT {i}:free_chunks {}\r\n\
                     STAT {i}:free_chunks_end 0\r\n",
                    cl.chunk_size(i),
                    cl.per_page(i),
                    total.saturating_sub(used),
                );
            }
            let _ = write!(s, "STAT active_slabs {active}\r\nSTAT total_malloced {}\r\n", cl.malloced());
        }
        Some(b"items") => {
            let cl = &store.classes;
            for i in 1..=cl.len() {
                let st = cl.stats(i);
                let number = st.number.load(Relaxed);
                if number == 0 {
                    continue;
                }
                let _ = write!(
                    s,
                    "STAT items:{i}:number {number}\r\nSTAT items:{i}:mem_requested {}\r\n\
                     STAT items:{i}:evicted {}\r\nSTAT items:{i}:reclaimed {}\r\n",
                    st.mem_requested.load(Relaxed),
                    st.evicted.load(Relaxed),
                    st.reclaimed.load(Relaxed),
                );
            }
        }
        // No size histogram is kept (memcached's own default: `-o track_sizes` off).
        Some(b"sizes") => s.push_str("STAT sizes_status disabled\r\n"),
        Some(b"reset") => {
            store.counters.reset();
            store.classes.reset();
            o.extend_from_slice(b"RESET\r\n");
            return;
        }
        // Per-prefix detail is not collected (as memcached with `stats detail off`, its
        // default): on/off are acknowledged, a dump is empty.
        Some(b"detail") => {
            o.extend_from_slice(match detail {
                Some(b"on" | b"off") => b"OK\r\n",
                Some(b"dump") => b"END\r\n",
                _ => b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            });
            return;
        }
        Some(_) => {
            o.extend_from_slice(b"ERROR\r\n");
            return;
        }
    }
    o.extend_from_slice(s.as_bytes());
    o.extend_from_slice(b"END\r\n");
}
