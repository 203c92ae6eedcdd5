//! The item store: a hash table in shards, each behind a `synergy::sync::Mutex` (a contended
//! lock yields the green thread; a holder is never preempted), with a memory limit enforced by
//! CLOCK eviction per shard, memcached's expiry rules, CAS uniques and flags.
//!
//! Memory is counted as memcached counts an item (key, value and a 48-byte header), against the
//! limit divided evenly over the shards. The hasher is SipHash with fixed keys
//! (`DefaultHasher::new`): a process-wide random key would come from thread-local state at
//! construction, and the table must be built before any request runs anyway.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use synergy::sync::Mutex;

/// What memcached charges per item besides key and value.
pub const ITEM_HEADER: usize = 48;
const SHARDS: usize = 64;

/// An item as stored.
#[derive(Debug, Clone)]
pub struct Item {
    pub value: Vec<u8>,
    pub flags: u32,
    /// Expiry on the store's clock (seconds since it started); 0 = never; negative = expired.
    pub expires: i64,
    pub cas: u64,
    /// When it was stored (store clock), for a delayed `flush_all`.
    stored: i64,
    /// Seen since the CLOCK hand last passed (it is spared once).
    referenced: bool,
}

impl Item {
    fn size(&self, key: &[u8]) -> usize {
        key.len() + self.value.len() + ITEM_HEADER
    }
}

struct Shard {
    map: HashMap<Vec<u8>, Item, BuildHasherDefault<DefaultHasher>>,
    /// Keys in insertion order, for the CLOCK hand (a key may appear after it was deleted: the
    /// hand skips what the map no longer holds).
    clock: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// Statistics memcached names the same way.
#[derive(Debug, Default)]
pub struct Counters {
    pub cmd_get: AtomicU64,
    pub cmd_set: AtomicU64,
    pub cmd_touch: AtomicU64,
    pub cmd_flush: AtomicU64,
    pub get_hits: AtomicU64,
    pub get_misses: AtomicU64,
    pub get_expired: AtomicU64,
    pub delete_hits: AtomicU64,
    pub delete_misses: AtomicU64,
    pub incr_hits: AtomicU64,
    pub incr_misses: AtomicU64,
    pub decr_hits: AtomicU64,
    pub decr_misses: AtomicU64,
    pub cas_hits: AtomicU64,
    pub cas_misses: AtomicU64,
    pub cas_badval: AtomicU64,
    pub touch_hits: AtomicU64,
    pub touch_misses: AtomicU64,
    pub total_items: AtomicU64,
    pub evictions: AtomicU64,
}

/// The store.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    limit_per_shard: usize,
    next_cas: AtomicU64,
    /// Items stored before this (store clock, seconds) are invalid (`flush_all`); 0 = none.
    flushed_before: AtomicU64,
    started: std::time::Instant,
    started_unix: i64,
    pub counters: Counters,
}

/// How a storage command fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    NotStored,
    Exists,
    NotFound,
}

/// How an incr/decr fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arith {
    Value(u64),
    NotFound,
    NonNumeric,
}

fn shard_of(key: &[u8]) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

impl Store {
    /// A store holding at most `limit_bytes` of items.
    pub fn new(limit_bytes: usize) -> Store {
        let started_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        Store {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard { map: HashMap::default(), clock: VecDeque::new(), bytes: 0 }))
                .collect(),
            limit_per_shard: (limit_bytes / SHARDS).max(1),
            next_cas: AtomicU64::new(1),
            flushed_before: AtomicU64::new(0),
            started: std::time::Instant::now(),
            started_unix,
            counters: Counters::default(),
        }
    }

    /// The store's clock: whole seconds since it started (memcached's `current_time`).
    pub fn now(&self) -> i64 {
        self.started.elapsed().as_secs() as i64 + 1
    }

    /// An item's remaining time to live in seconds, -1 if it never expires (meta `t`).
    pub fn ttl(&self, item: &Item) -> i64 {
        if item.expires == 0 {
            -1
        } else {
            (item.expires - self.now()).max(0)
        }
    }

    /// Seconds the store has run.
    pub fn uptime(&self) -> i64 {
        self.started.elapsed().as_secs() as i64
    }

    /// memcached's expiry rule: 0 never; negative already expired; up to 30 days relative;
    /// beyond, an absolute Unix time.
    pub fn expiry(&self, exptime: i64) -> i64 {
        match exptime {
            0 => 0,
            e if e < 0 => -1,
            e if e <= crate::text::REALTIME_MAXDELTA => self.now() + e,
            e => (e - self.started_unix).clamp(1, i64::MAX / 2),
        }
    }

    fn live(&self, item: &Item) -> bool {
        let now = self.now();
        let flushed = self.flushed_before.load(Ordering::Acquire) as i64;
        item.expires >= 0
            && (item.expires == 0 || item.expires > now)
            && !(flushed > 0 && now >= flushed && item.stored <= flushed)
    }

    /// The item under `key`, if live (`touch`: with its expiry set anew).
    pub fn get(&self, key: &[u8], touch: Option<i64>) -> Option<Item> {
        let mut s = self.shards[shard_of(key)].lock();
        let live = s.map.get(key).map(|i| self.live(i));
        match live {
            Some(true) => {
                let expires = touch.map(|e| self.expiry(e));
                let item = s.map.get_mut(key).expect("present");
                item.referenced = true;
                if let Some(e) = expires {
                    item.expires = e;
                }
                Some(item.clone())
            }
            Some(false) => {
                self.remove(&mut s, key);
                self.counters.get_expired.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    fn remove(&self, s: &mut Shard, key: &[u8]) -> Option<Item> {
        let item = s.map.remove(key)?;
        s.bytes -= item.size(key);
        Some(item)
    }

    fn live_in(&self, s: &mut Shard, key: &[u8]) -> bool {
        match s.map.get(key).map(|i| self.live(i)) {
            Some(true) => true,
            Some(false) => {
                self.remove(s, key);
                false
            }
            None => false,
        }
    }

    /// A storage command.
    pub fn store(
        &self,
        op: crate::text::StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        data: &[u8],
        cas: u64,
    ) -> Stored {
        use crate::text::StoreOp::*;
        let mut s = self.shards[shard_of(key)].lock();
        let present = self.live_in(&mut s, key);
        let (value, flags, expires) = match op {
            Set => (data.to_vec(), flags, self.expiry(exptime)),
            Add if present => return Stored::NotStored,
            Add => (data.to_vec(), flags, self.expiry(exptime)),
            Replace if !present => return Stored::NotStored,
            Replace => (data.to_vec(), flags, self.expiry(exptime)),
            Append | Prepend if !present => return Stored::NotStored,
            Append | Prepend => {
                let old = s.map.get(key).expect("present");
                let v = if op == Append { [&old.value[..], data].concat() } else { [data, &old.value[..]].concat() };
                (v, old.flags, old.expires)
            }
            Cas if !present => {
                self.counters.cas_misses.fetch_add(1, Ordering::Relaxed);
                return Stored::NotFound;
            }
            Cas => {
                if s.map.get(key).expect("present").cas != cas {
                    self.counters.cas_badval.fetch_add(1, Ordering::Relaxed);
                    return Stored::Exists;
                }
                self.counters.cas_hits.fetch_add(1, Ordering::Relaxed);
                (data.to_vec(), flags, self.expiry(exptime))
            }
        };
        self.put(&mut s, key, Item { value, flags, expires, cas: 0, stored: 0, referenced: false });
        Stored::Stored
    }

    fn put(&self, s: &mut Shard, key: &[u8], mut item: Item) {
        item.cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
        item.stored = self.now();
        let size = item.size(key);
        if let Some(old) = s.map.insert(key.to_vec(), item) {
            s.bytes -= old.size(key);
        } else {
            s.clock.push_back(key.to_vec());
        }
        s.bytes += size;
        self.counters.total_items.fetch_add(1, Ordering::Relaxed);
        self.evict(s, key);
    }

    /// CLOCK: the hand passes keys in insertion order, sparing (and unmarking) those referenced
    /// since, until the shard is within its limit (never evicting `keep`, the item just stored).
    fn evict(&self, s: &mut Shard, keep: &[u8]) {
        let mut spared = 0;
        while s.bytes > self.limit_per_shard && spared <= 2 * s.clock.len() {
            let Some(k) = s.clock.pop_front() else { break };
            let Some(item) = s.map.get_mut(&k) else { continue };
            if k == keep || item.referenced {
                item.referenced = false;
                s.clock.push_back(k);
                spared += 1;
                continue;
            }
            self.remove(s, &k);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes a SET's old value that a too-large replacement failed to replace (memcached does,
    /// so that a failed SET leaves no stale value).
    pub fn unlink(&self, key: &[u8]) {
        let mut s = self.shards[shard_of(key)].lock();
        self.remove(&mut s, key);
    }

    pub fn delete(&self, key: &[u8]) -> bool {
        let mut s = self.shards[shard_of(key)].lock();
        let hit = self.live_in(&mut s, key) && self.remove(&mut s, key).is_some();
        let c = if hit { &self.counters.delete_hits } else { &self.counters.delete_misses };
        c.fetch_add(1, Ordering::Relaxed);
        hit
    }

    pub fn touch(&self, key: &[u8], exptime: i64) -> bool {
        self.counters.cmd_touch.fetch_add(1, Ordering::Relaxed);
        let hit = self.get(key, Some(exptime)).is_some();
        let c = if hit { &self.counters.touch_hits } else { &self.counters.touch_misses };
        c.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// incr/decr as memcached: the value must be a decimal u64 (leading spaces allowed, trailing
    /// ones too); incr wraps at 2^64, decr stops at 0; a result not longer than the old value is
    /// written over it padded with spaces (memcached updates in place).
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64) -> Arith {
        let mut s = self.shards[shard_of(key)].lock();
        let (hits, misses) = if incr {
            (&self.counters.incr_hits, &self.counters.incr_misses)
        } else {
            (&self.counters.decr_hits, &self.counters.decr_misses)
        };
        if !self.live_in(&mut s, key) {
            misses.fetch_add(1, Ordering::Relaxed);
            return Arith::NotFound;
        }
        let item = s.map.get(key).expect("present");
        let text = std::str::from_utf8(&item.value).unwrap_or("x");
        let Ok(old) = text.trim_start().trim_end_matches(' ').parse::<u64>() else { return Arith::NonNumeric };
        hits.fetch_add(1, Ordering::Relaxed);
        let new = if incr { old.wrapping_add(delta) } else { old.saturating_sub(delta) };
        let mut value = new.to_string().into_bytes();
        if value.len() < item.value.len() {
            value.resize(item.value.len(), b' ');
        }
        let item = Item { value, ..item.clone() };
        self.put(&mut s, key, item);
        Arith::Value(new)
    }

    /// `flush_all [delay]`: every item stored until then is invalid from then on.
    pub fn flush_all(&self, delay: i64) {
        self.counters.cmd_flush.fetch_add(1, Ordering::Relaxed);
        if delay > 0 {
            // From then on, items stored until then are invalid.
            self.flushed_before.store(self.expiry(delay).max(1) as u64, Ordering::Release);
            return;
        }
        for shard in self.shards.iter() {
            let mut s = shard.lock();
            s.map.clear();
            s.clock.clear();
            s.bytes = 0;
        }
    }

    /// (items, bytes) now.
    pub fn usage(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            let s = s.lock();
            (n + s.map.len() as u64, b + s.bytes as u64)
        })
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_per_shard * SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::StoreOp;

    #[test]
    fn eviction_keeps_each_shard_within_its_limit_and_spares_referenced_items() {
        let s = Store::new(SHARDS * 1_000);
        for i in 0..10_000u32 {
            s.store(StoreOp::Set, format!("key{i}").as_bytes(), 0, 0, &[7u8; 100], 0);
        }
        let (items, bytes) = s.usage();
        assert!(bytes as usize <= s.limit_bytes(), "{bytes} bytes over {}", s.limit_bytes());
        assert!(items > 0 && s.counters.evictions.load(Ordering::Relaxed) == 10_000 - items);
        // The last one stored is there.
        assert!(s.get(b"key9999", None).is_some());
    }

    #[test]
    fn arithmetic_follows_memcached() {
        let s = Store::new(1 << 20);
        s.store(StoreOp::Set, b"n", 0, 0, b"10", 0);
        assert_eq!(s.arith(b"n", true, u64::MAX), Arith::Value(9));
        assert_eq!(s.get(b"n", None).unwrap().value, b"9 ");
        assert_eq!(s.arith(b"n", false, 100), Arith::Value(0));
        s.store(StoreOp::Set, b"m", 0, 0, b"12a", 0);
        assert_eq!(s.arith(b"m", true, 1), Arith::NonNumeric);
        assert_eq!(s.arith(b"nope", true, 1), Arith::NotFound);
        s.store(StoreOp::Set, b"w", 0, 0, b"99", 0);
        assert_eq!(s.arith(b"w", true, 1), Arith::Value(100));
        assert_eq!(s.get(b"w", None).unwrap().value, b"100");
    }

    #[test]
    fn expiry_and_cas() {
        let s = Store::new(1 << 20);
        s.store(StoreOp::Set, b"gone", 0, -1, b"x", 0);
        assert!(s.get(b"gone", None).is_none());
        s.store(StoreOp::Set, b"k", 3, 100, b"v", 0);
        let cas = s.get(b"k", None).unwrap().cas;
        assert_eq!(s.store(StoreOp::Cas, b"k", 0, 0, b"w", cas + 1), Stored::Exists);
        assert_eq!(s.store(StoreOp::Cas, b"k", 0, 0, b"w", cas), Stored::Stored);
        assert_eq!(s.store(StoreOp::Cas, b"nope", 0, 0, b"w", 1), Stored::NotFound);
        assert_eq!(s.expiry(0), 0);
        assert_eq!(s.expiry(10), s.now() + 10);
    }
}
