//! LevelDB served by synergy (the thesis's real application, §6.2.2): GET of one key (short) and
//! SCAN over every entry (long, marked with feedback so only it is ever preempted).
//!
//! Why Debian's libleveldb 1.23 through its C API rather than a pure-Rust LevelDB: it is the
//! version and code the thesis ran, and being C++ it exercises what the thesis's design must
//! handle in real applications — `std::mutex` (pthread) locks taken inside preemptible requests
//! and `malloc` from C++ — through the interposition shims (crate `synergy-interpose`), which a Rust
//! port would bypass.
//!
//! Requests: kind `LEVELDB_GET` with a key, kind `LEVELDB_SCAN` without one. Replies: status 0
//! with the value as the body and its digest (`store::digest`) as the reply's value (GET), or
//! the entries as the body, as many as fit in `SCAN_BODY_MAX` bytes (`Store::scan_into`'s
//! format), with the digest of every key and value in order (SCAN); or an error status: unknown
//! kind, GET without a key or SCAN with one, key absent, LevelDB error.

mod ffi;
pub mod store;

use super::Handler;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
pub use store::{version, ScanDigest, Store, StoreError};
use synergy::clock;
use synergy::request::{status, Body, Reply, Request};
use synergy_eval::report::Summary;
use synergy_eval::workload::{key_name, LEVELDB_GET, LEVELDB_SCAN, THESIS_LEVELDB_GET_NS, THESIS_LEVELDB_SCAN_NS};

/// Reply status: the key is not in the store.
pub const STATUS_NOT_FOUND: u32 = 17;
/// Reply status: a GET without a key, or a SCAN with one.
pub const STATUS_BAD_KEY: u32 = 18;
/// Reply status: LevelDB reported an error.
pub const STATUS_STORE_ERROR: u32 = 19;
/// The most bytes of entries a SCAN's reply carries: what one UDP reply datagram holds. The
/// reply's value (the digest) and the count cover every entry.
pub const SCAN_BODY_MAX: usize = 65_507 - 64;

/// The outcome of one request, as the handler would reply it: (status, value), with the GET's
/// value or the SCAN's entries appended to `body`.
///
/// Instrumented for compiler interrupts (`--preempt ci+signal`): the probe at entry is this
/// handler's only yield point in Rust. A GET is over before a quantum ends; a SCAN runs in
/// LevelDB's C++, which has no probes, so under `ci+signal` the timer core's request goes
/// unanswered and the fallback signal preempts it (docs/leveldb.md).
#[synergy::preemptible]
pub fn serve(store: &Store, req: &Request, body: &mut Body) -> (u32, u64) {
    let result = match req.kind {
        LEVELDB_GET if req.key.is_empty() => return (STATUS_BAD_KEY, 0),
        LEVELDB_GET => store.get_into(req.key.as_bytes(), Some(body)).map(|v| v.ok_or(STATUS_NOT_FOUND)),
        LEVELDB_SCAN if !req.key.is_empty() => return (STATUS_BAD_KEY, 0),
        LEVELDB_SCAN => {
            // SAFETY: the scan keeps its state in locals and LevelDB's heap objects; the pthread
            // mutexes and malloc calls of LevelDB's read path go through synergy-interpose's
            // shims (a `Store` exists only once `ensure_linked` confirmed them), which pin the
            // code to its worker while a lock is held or the allocator runs.
            // The body's buffer is taken before the region (the scan only fills it).
            if body.capacity() < SCAN_BODY_MAX {
                *body = Body::with_capacity(SCAN_BODY_MAX);
            }
            unsafe { synergy::feedback_start() };
            let r = store.scan_into(body, SCAN_BODY_MAX);
            synergy::feedback_finished();
            r.map(|d| Ok(d.digest))
        }
        _ => return (status::UNKNOWN_KIND, 0),
    };
    match result {
        Ok(Ok(value)) => (status::OK, value),
        Ok(Err(st)) => (st, 0),
        Err(_) => (STATUS_STORE_ERROR, 0),
    }
}

/// The request handler serving `store`.
pub fn handler(store: Arc<Store>) -> Handler {
    // SAFETY: as for the SCAN in `serve`: LevelDB's read path (GET and SCAN) takes its locks and
    // allocates through synergy-interpose's shims, which pin it to its worker meanwhile, and
    // keeps no thread-local state across them; the rest is local computation.
    unsafe {
        Handler::new(Arc::new(move |req: Request| {
            let mut body = Body::new();
            let (st, value) = serve(&store, &req, &mut body);
            let _ = synergy::send(Reply::to(&req).with_status(st).with_value(value).with_body_buf(body));
        }))
    }
}

/// Where the store goes by default: tmpfs, one directory per process.
pub fn default_dir() -> PathBuf {
    PathBuf::from(format!("/dev/shm/synergy-leveldb-{}", std::process::id()))
}

/// Whether `dir`'s parent is a tmpfs (so no disk I/O is measured); `None` if it cannot tell.
pub fn on_tmpfs(dir: &std::path::Path) -> Option<bool> {
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let c = std::ffi::CString::new(parent.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs fills the zeroed struct for a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type == TMPFS_MAGIC)
}

/// Service times of GET and SCAN on this machine, as Table 6.1 reports them.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceTimes {
    /// The LevelDB library measured (`major.minor`).
    pub leveldb_version: String,
    /// Entries in the store.
    pub entries: u32,
    /// GET service times.
    pub get: Summary,
    /// SCAN service times.
    pub scan: Summary,
    /// The thesis's means (Table 6.1), for comparison.
    pub thesis_get_ns: f64,
    /// The thesis's SCAN mean.
    pub thesis_scan_ns: f64,
}

/// Why the service times could not be measured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasureError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key the store was created with is missing.
    #[error("key {0:?} missing from the store")]
    Missing(String),
    /// A SCAN read another number of entries than the store holds.
    #[error("SCAN read {read} entries, the store has {entries}")]
    ScanCount {
        /// Entries the SCAN read.
        read: u64,
        /// Entries the store holds.
        entries: u32,
    },
    /// No GET or no SCAN was asked for.
    #[error("need at least one GET and one SCAN to time")]
    NothingToTime,
}

/// Times `gets` GETs of uniformly random keys and `scans` SCANs, one at a time on this thread
/// (each timed on its own, so the mean is the service time a worker sees). `entries` is the
/// store's size.
pub fn measure_service_times(
    store: &Store,
    entries: u32,
    gets: usize,
    scans: usize,
    seed: u64,
) -> Result<ServiceTimes, MeasureError> {
    let mut rng = synergy_eval::rng::SplitMix64::new(seed);
    let mut get_ns = Vec::with_capacity(gets);
    for _ in 0..gets {
        let k = key_name((rng.next_u64() % u64::from(entries.max(1))) as u32);
        let t = clock::now_ns();
        let v = store.get(k.as_bytes())?;
        get_ns.push(clock::now_ns() - t);
        if v.is_none() {
            return Err(MeasureError::Missing(String::from_utf8_lossy(k.as_bytes()).into_owned()));
        }
    }
    let mut scan_ns = Vec::with_capacity(scans);
    for _ in 0..scans {
        let t = clock::now_ns();
        let d = store.scan()?;
        scan_ns.push(clock::now_ns() - t);
        if d.entries != u64::from(entries) {
            return Err(MeasureError::ScanCount { read: d.entries, entries });
        }
    }
    if get_ns.is_empty() || scan_ns.is_empty() {
        return Err(MeasureError::NothingToTime);
    }
    Ok(ServiceTimes {
        leveldb_version: version(),
        entries,
        get: Summary::of(get_ns),
        scan: Summary::of(scan_ns),
        thesis_get_ns: THESIS_LEVELDB_GET_NS as f64,
        thesis_scan_ns: THESIS_LEVELDB_SCAN_NS as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use synergy::request::Key;
    use synergy_eval::workload::LEVELDB_ENTRIES;

    fn serve_(s: &Store, r: &Request) -> (u32, u64) {
        serve(s, r, &mut Body::new())
    }

    /// The entries of a SCAN body (`Store::scan_into`'s format).
    fn entries(mut b: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let take = |b: &mut &[u8]| {
            let n = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
            let field = b[4..4 + n].to_vec();
            *b = &b[4 + n..];
            field
        };
        while !b.is_empty() {
            let k = take(&mut b);
            let v = take(&mut b);
            out.push((k, v));
        }
        out
    }

    #[test]
    fn a_get_answers_the_value_and_a_scan_the_entries_that_fit() {
        let s = temp_store("bodies", 10);
        let mut body = Body::new();
        let get = Request { kind: LEVELDB_GET, key: Key::new(b"key-000003").unwrap(), ..Request::default() };
        let (st, digest) = serve(&s, &get, &mut body);
        assert_eq!((st, body.as_slice()), (status::OK, &store::value_for(3)[..]));
        assert_eq!(digest, store::digest(store::DIGEST_SEED, &store::value_for(3)));
        let mut body = Body::new();
        let (st, digest) = serve(&s, &Request { kind: LEVELDB_SCAN, ..Request::default() }, &mut body);
        assert_eq!((st, digest), (status::OK, s.scan().unwrap().digest));
        let want: Vec<(Vec<u8>, Vec<u8>)> =
            (0..10).map(|i| (key_name(i).as_bytes().to_vec(), store::value_for(i).to_vec())).collect();
        assert_eq!(entries(&body), want, "every entry, in key order");
        // A bound cuts at an entry's boundary; the digest still covers everything.
        let one = 8 + key_name(0).as_bytes().len() + store::value_for(0).len();
        let mut cut = Body::with_capacity(3 * one);
        let d = s.scan_into(&mut cut, 3 * one - 1).unwrap();
        assert_eq!((d.entries, d.digest), (10, digest));
        assert_eq!(entries(&cut), want[..2].to_vec());
    }

    fn temp_store(test: &str, entries: u32) -> Store {
        let dir = std::env::temp_dir().join(format!("synergy-leveldb-{test}-{}", std::process::id()));
        Store::create(&dir, entries).expect("create a LevelDB store")
    }

    #[test]
    fn store_holds_what_was_loaded_and_scans_in_order() {
        let s = temp_store("contents", LEVELDB_ENTRIES);
        assert_eq!(version(), "1.23");
        for i in [0, 1, 500, LEVELDB_ENTRIES - 1] {
            let want = store::digest(store::DIGEST_SEED, &store::value_for(i));
            assert_eq!(s.get(key_name(i).as_bytes()).unwrap(), Some(want), "key {i}");
        }
        assert_eq!(s.get(key_name(LEVELDB_ENTRIES).as_bytes()).unwrap(), None);
        assert_eq!(s.get(b"").unwrap(), None);
        // The SCAN digest is the digest of every entry in index order (keys sort that way).
        let mut want = store::DIGEST_SEED;
        for i in 0..LEVELDB_ENTRIES {
            want = store::digest(store::digest(want, key_name(i).as_bytes()), &store::value_for(i));
        }
        assert_eq!(s.scan().unwrap(), ScanDigest { entries: u64::from(LEVELDB_ENTRIES), digest: want });
        let path = s.path().to_path_buf();
        drop(s);
        assert!(!path.exists(), "the store removes its directory");
    }

    #[test]
    fn bad_requests_get_error_statuses() {
        let s = temp_store("statuses", 10);
        let get = |key: &[u8]| Request { kind: LEVELDB_GET, key: Key::new(key).unwrap(), ..Request::default() };
        assert_eq!(serve_(&s, &get(b"key-000003")).0, status::OK);
        assert_eq!(serve_(&s, &get(b"key-000010")), (STATUS_NOT_FOUND, 0));
        assert_eq!(serve_(&s, &get(b"no such key")), (STATUS_NOT_FOUND, 0));
        assert_eq!(serve_(&s, &get(&[0xff; 64])), (STATUS_NOT_FOUND, 0));
        assert_eq!(serve_(&s, &get(b"")), (STATUS_BAD_KEY, 0), "GET without a key");
        let scan_with_key = Request { kind: LEVELDB_SCAN, key: Key::new(b"k").unwrap(), ..Request::default() };
        assert_eq!(serve_(&s, &scan_with_key), (STATUS_BAD_KEY, 0));
        assert_eq!(serve_(&s, &Request { kind: 2, ..Request::default() }), (status::UNKNOWN_KIND, 0));
        let (st, v) = serve_(&s, &Request { kind: LEVELDB_SCAN, ..Request::default() });
        assert_eq!((st, v), (status::OK, s.scan().unwrap().digest));
    }

    #[test]
    fn service_times_are_measured_and_checked() {
        let s = temp_store("timing", LEVELDB_ENTRIES);
        let t = measure_service_times(&s, LEVELDB_ENTRIES, 2000, 20, 1).unwrap();
        assert_eq!((t.get.count, t.scan.count), (2000, 20));
        // Medians: one long deschedule among 2,000 GETs moves their mean, not their median
        // (issue 38, C19). A SCAN reads every entry, a GET one.
        assert!(t.get.p50_ns > 0 && t.scan.p50_ns > t.get.p50_ns, "{t:?}");
        // A store smaller than claimed is caught.
        assert!(measure_service_times(&s, LEVELDB_ENTRIES + 1, 10, 1, 1).is_err());
    }
}
