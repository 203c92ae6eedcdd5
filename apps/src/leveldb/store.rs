//! A LevelDB database on tmpfs, preloaded like the thesis's (§6.2.2): `entries` unique keys
//! (`workload::key_name`), each with a value derived from its index, written and then compacted
//! into sorted tables, as in a store loaded earlier and reopened. Reads only from then on: GET one
//! key, SCAN every entry in order. Both return a digest of what they read, which a client
//! can check against a sequential run.

use super::ffi::*;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use synergy::Body;
use synergy_eval::workload::key_name;

/// Bytes per value: what a small-object key-value store holds (the thesis does not say).
pub const VALUE_LEN: usize = 100;

/// The value stored under `key_name(i)`: printable, distinct per key.
pub fn value_for(i: u32) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(i);
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = b'a' + (x % 26) as u8;
    }
    v
}

/// Folds `bytes` into the digest `h` (start from `DIGEST_SEED`): FNV-1a's multiply-xor, but over
/// 8-byte words and with the length mixed in. Byte-wise FNV is latency-bound at ~1 ns per byte,
/// which would make SCAN (110 KB read) measure the digest rather than LevelDB.
pub fn digest(mut h: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(PRIME).rotate_left(23);
        i += 8;
    }
    let mut tail = [0u8; 8];
    tail[..bytes.len() - i].copy_from_slice(&bytes[i..]);
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(PRIME).rotate_left(23);
    (h ^ bytes.len() as u64).wrapping_mul(PRIME)
}

/// The digest's starting value (FNV-1a's offset basis).
pub const DIGEST_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// What a SCAN read: entries in order and the digest of every key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanDigest {
    /// Entries read.
    pub entries: u64,
    /// The digest of their keys and values, in order.
    pub digest: u64,
}

/// A LevelDB database opened through its C API.
pub struct Store {
    db: *mut leveldb_t,
    options: *mut leveldb_options_t,
    read: *mut leveldb_readoptions_t,
    dir: CString,
    path: PathBuf,
}

// SAFETY: a leveldb_t is safe for concurrent use by multiple threads (LevelDB's documented
// guarantee for DB); the option objects are only read after creation.
unsafe impl Send for Store {}
// SAFETY: as above.
unsafe impl Sync for Store {}

/// Why the LevelDB store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// LevelDB's locks and allocations would bypass the runtime's shims.
    #[error(transparent)]
    Interpose(#[from] synergy_interpose::ShimsNotExported),
    /// The directory's path holds a NUL byte.
    #[error("{}: NUL in path", .0.display())]
    NulInPath(PathBuf),
    /// LevelDB reported an error.
    #[error("LevelDB at {}: {message}", path.display())]
    LevelDb {
        /// The database.
        path: PathBuf,
        /// LevelDB's message.
        message: String,
    },
}

/// Takes the error LevelDB reported through `err`, if any.
fn take_error(err: *mut libc::c_char) -> Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: LevelDB sets errptr to a malloc'ed NUL-terminated string, ours to free.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    // SAFETY: as above.
    unsafe { leveldb_free(err.cast()) };
    Err(msg)
}

impl Store {
    /// Creates a fresh database at `dir` (anything there before is destroyed) with `entries`
    /// entries. `dir` should be on tmpfs (e.g. /dev/shm) so that no disk I/O is measured.
    pub fn create(dir: &Path, entries: u32) -> Result<Store, StoreError> {
        // LevelDB's locks and allocations must go through the shims from here on.
        synergy_interpose::ensure_linked()?;
        let cdir =
            CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| StoreError::NulInPath(dir.to_path_buf()))?;
        // SAFETY: creating and configuring option objects; freed in Drop.
        let (options, read, write) = unsafe {
            let o = leveldb_options_create();
            leveldb_options_set_create_if_missing(o, 1);
            (o, leveldb_readoptions_create(), leveldb_writeoptions_create())
        };
        let mut err = ptr::null_mut();
        // SAFETY: valid options and path; a missing database is not an error for destroy.
        unsafe { leveldb_destroy_db(options, cdir.as_ptr(), &mut err) };
        let destroyed = take_error(err);
        let mut err = ptr::null_mut();
        // SAFETY: as above.
        let db = unsafe { leveldb_open(options, cdir.as_ptr(), &mut err) };
        let opened = destroyed.and(take_error(err));
        let store = Store { db, options, read, dir: cdir, path: dir.to_path_buf() };
        let loaded = opened.and_then(|()| store.preload(write, entries));
        // SAFETY: created above, no longer used.
        unsafe { leveldb_writeoptions_destroy(write) };
        loaded.map(|()| store).map_err(|message| StoreError::LevelDb { path: dir.to_path_buf(), message })
    }

    fn preload(&self, write: *mut leveldb_writeoptions_t, entries: u32) -> Result<(), String> {
        for i in 0..entries {
            let (k, v) = (key_name(i), value_for(i));
            let mut err = ptr::null_mut();
            // SAFETY: open db, valid buffers of the given lengths.
            unsafe {
                leveldb_put(
                    self.db,
                    write,
                    k.as_bytes().as_ptr().cast(),
                    k.as_bytes().len(),
                    v.as_ptr().cast(),
                    v.len(),
                    &mut err,
                )
            };
            take_error(err)?;
        }
        // Moves everything out of the memtable into sorted tables (null bounds = the whole range).
        // SAFETY: open db; null start/limit are LevelDB's "unbounded".
        unsafe { leveldb_compact_range(self.db, ptr::null(), 0, ptr::null(), 0) };
        Ok(())
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GET: the digest of `key`'s value, or `None` if the key is absent.
    pub fn get(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        self.get_into(key, None)
    }

    /// GET: as `get`, also appending the value to `out` if there is one.
    pub fn get_into(&self, key: &[u8], out: Option<&mut Body>) -> Result<Option<u64>, StoreError> {
        let mut len = 0usize;
        let mut err = ptr::null_mut();
        // SAFETY: open db; key buffer of its length; LevelDB returns a malloc'ed copy or null.
        let v = unsafe { leveldb_get(self.db, self.read, key.as_ptr().cast(), key.len(), &mut len, &mut err) };
        take_error(err).map_err(|message| StoreError::LevelDb { path: self.path.clone(), message })?;
        if v.is_null() {
            return Ok(None);
        }
        // SAFETY: v holds len bytes until freed below.
        let value = unsafe { std::slice::from_raw_parts(v.cast::<u8>(), len) };
        let d = digest(DIGEST_SEED, value);
        if let Some(out) = out {
            out.extend_from_slice(value);
        }
        // SAFETY: v came from LevelDB's allocator, freed once.
        unsafe { leveldb_free(v.cast()) };
        Ok(Some(d))
    }

    /// SCAN: every entry, in key order.
    pub fn scan(&self) -> Result<ScanDigest, StoreError> {
        self.scan_into(&mut Body::new(), 0)
    }

    /// SCAN: as `scan`, also appending to `out` the entries, in key order, as long as they fit in
    /// `max` bytes in all: each as `u32` key length (little-endian), key, `u32` value length,
    /// value. The digest and count cover every entry, whatever fitted.
    pub fn scan_into(&self, out: &mut Body, max: usize) -> Result<ScanDigest, StoreError> {
        let mut full = false;
        // SAFETY: open db; the iterator is destroyed before returning.
        let it = unsafe { leveldb_create_iterator(self.db, self.read) };
        let mut d = ScanDigest { entries: 0, digest: DIGEST_SEED };
        // SAFETY: `it` is live; key/value pointers are valid until the next move of the iterator.
        unsafe {
            leveldb_iter_seek_to_first(it);
            while leveldb_iter_valid(it) != 0 {
                let (mut kl, mut vl) = (0usize, 0usize);
                let k = leveldb_iter_key(it, &mut kl);
                let v = leveldb_iter_value(it, &mut vl);
                let (key, value) =
                    (std::slice::from_raw_parts(k.cast::<u8>(), kl), std::slice::from_raw_parts(v.cast::<u8>(), vl));
                d.digest = digest(digest(d.digest, key), value);
                if !full && out.len() + 8 + kl + vl <= max {
                    out.extend_from_slice(&(kl as u32).to_le_bytes());
                    out.extend_from_slice(key);
                    out.extend_from_slice(&(vl as u32).to_le_bytes());
                    out.extend_from_slice(value);
                } else {
                    full = true;
                }
                d.entries += 1;
                leveldb_iter_next(it);
            }
        }
        let mut err = ptr::null_mut();
        // SAFETY: live iterator, destroyed once.
        unsafe {
            leveldb_iter_get_error(it, &mut err);
            leveldb_iter_destroy(it);
        }
        take_error(err).map_err(|message| StoreError::LevelDb { path: self.path.clone(), message })?;
        Ok(d)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: each object was created in `create` and is released once; no reader is left
        // (the runtime that served from this store has been shut down: it holds an Arc).
        unsafe {
            if !self.db.is_null() {
                leveldb_close(self.db);
            }
            let mut err = ptr::null_mut();
            leveldb_destroy_db(self.options, self.dir.as_ptr(), &mut err);
            let _ = take_error(err);
            leveldb_readoptions_destroy(self.read);
            leveldb_options_destroy(self.options);
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// LevelDB's version, e.g. "1.23".
pub fn version() -> String {
    // SAFETY: plain getters.
    unsafe { format!("{}.{}", leveldb_major_version(), leveldb_minor_version()) }
}
