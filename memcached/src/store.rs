//! The item store: a hash table in shards, each behind a `synergy::sync::Mutex` (a contended
//! lock yields the green thread; a holder is never preempted), with memcached's expiry rules,
//! CAS uniques and flags, and a memory limit over the whole store enforced by CLOCK eviction.
//!
//! Memory is charged as memcached charges it: each item costs the chunk of the slab class
//! memcached would put it in ([`crate::slabs`]), so a limit holds as many items as memcached's
//! `-m` does. The limit is the store's, not a shard's: a store that goes over it after a write
//! evicts from the shards in turn (one lock at a time, never two held together), taking dead
//! items (expired, flushed) before live ones. The hasher is SipHash with fixed keys
//! (`DefaultHasher::new`): a process-wide random key would come from thread-local state at
//! construction, and the table must be built before any request runs anyway.
//!
//! Dead items are taken back three ways, as memcached's are: a read or write of the key finds
//! it dead; the eviction hand meets it; or a write finds its slab class about to need a page more
//! than it has had while some item may have died since the last look (an expiry or a flush has
//! come due), and sweeps the store first. memcached's LRU crawler does that sweep in a thread of
//! its own; here the write that needs the memory pays for it, and only when a death is due.

use crate::slabs::{self, Classes, Placement};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use synergy::sync::{Mutex, MutexGuard};

/// What memcached charges per item besides key and value, at least (`slabs::item_total`
/// without the key; the item size limit is checked against value plus this).
pub const ITEM_HEADER: usize = 48;
const SHARDS: usize = 64;

/// An item as stored.
#[derive(Debug, Clone)]
pub struct Item {
    /// The value, without its "\r\n".
    pub value: Vec<u8>,
    /// The client's flags.
    pub flags: u32,
    /// Expiry on the store's clock (seconds since it started); 0 = never; negative = expired.
    pub expires: i64,
    /// Its CAS unique (new with every write).
    pub cas: u64,
    /// When it was stored (store clock), for a delayed `flush_all`.
    stored: i64,
    /// Seen since the CLOCK hand last passed (it is spared once).
    referenced: bool,
    /// What the meta protocol reads and marks.
    pub meta: ItemMeta,
}

/// An item's state for the meta protocol (memcached's `it_flags` bits and access time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemMeta {
    /// Read since it was stored (`ITEM_FETCHED`; meta `h`).
    pub fetched: bool,
    /// Last read (store clock; meta `l`).
    pub accessed: i64,
    /// Marked stale by `md <key> I` (`ITEM_STALE`; meta `X`).
    pub stale: bool,
    /// A client has been handed the right to recache it (`ITEM_TOKEN_SENT`; meta `W`/`Z`).
    pub token_sent: bool,
    /// Its key came base64-encoded (meta `b`) and is handed back so.
    pub key_binary: bool,
}

struct Shard {
    map: HashMap<Vec<u8>, Item, BuildHasherDefault<DefaultHasher>>,
    /// Keys in insertion order, for the CLOCK hand (a key may appear after it was deleted: the
    /// hand skips what the map no longer holds).
    clock: VecDeque<Vec<u8>>,
}

/// Statistics memcached names the same way.
#[derive(Debug, Default)]
pub struct Counters {
    /// memcached's `cmd_get`.
    pub cmd_get: AtomicU64,
    /// memcached's `cmd_set`.
    pub cmd_set: AtomicU64,
    /// memcached's `cmd_touch`.
    pub cmd_touch: AtomicU64,
    /// memcached's `cmd_flush`.
    pub cmd_flush: AtomicU64,
    /// memcached's `get_hits`.
    pub get_hits: AtomicU64,
    /// memcached's `get_misses`.
    pub get_misses: AtomicU64,
    /// memcached's `get_expired`.
    pub get_expired: AtomicU64,
    /// memcached's `get_flushed`.
    pub get_flushed: AtomicU64,
    /// memcached's `delete_hits`.
    pub delete_hits: AtomicU64,
    /// memcached's `delete_misses`.
    pub delete_misses: AtomicU64,
    /// memcached's `incr_hits`.
    pub incr_hits: AtomicU64,
    /// memcached's `incr_misses`.
    pub incr_misses: AtomicU64,
    /// memcached's `decr_hits`.
    pub decr_hits: AtomicU64,
    /// memcached's `decr_misses`.
    pub decr_misses: AtomicU64,
    /// memcached's `cas_hits`.
    pub cas_hits: AtomicU64,
    /// memcached's `cas_misses`.
    pub cas_misses: AtomicU64,
    /// memcached's `cas_badval`.
    pub cas_badval: AtomicU64,
    /// memcached's `touch_hits`.
    pub touch_hits: AtomicU64,
    /// memcached's `touch_misses`.
    pub touch_misses: AtomicU64,
    /// memcached's `total_items`.
    pub total_items: AtomicU64,
    /// memcached's `evictions`.
    pub evictions: AtomicU64,
}

impl Counters {
    /// `stats reset`: every counter back to zero (what the store holds is not a counter).
    pub fn reset(&self) {
        for c in [
            &self.cmd_get,
            &self.cmd_set,
            &self.cmd_touch,
            &self.cmd_flush,
            &self.get_hits,
            &self.get_misses,
            &self.get_expired,
            &self.get_flushed,
            &self.delete_hits,
            &self.delete_misses,
            &self.incr_hits,
            &self.incr_misses,
            &self.decr_hits,
            &self.decr_misses,
            &self.cas_hits,
            &self.cas_misses,
            &self.cas_badval,
            &self.touch_hits,
            &self.touch_misses,
            &self.total_items,
            &self.evictions,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The store.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    /// The memory limit: chunk bytes all items together may be charged.
    limit: usize,
    /// Chunk bytes charged now (may pass `limit` by the writes in flight until they evict).
    charged: AtomicUsize,
    /// The shard the eviction hand visits next.
    hand: AtomicUsize,
    next_cas: AtomicU64,
    /// A delayed `flush_all`: items stored until this time (store clock) are dead from then on;
    /// 0 = none.
    flushed_before: AtomicU64,
    /// An immediate `flush_all`: items with a CAS unique below this are dead (memcached's
    /// `oldest_cas`: a write in the same second after the flush survives it); 0 = none.
    flushed_cas: AtomicU64,
    /// The earliest time (store clock) an item may have died since the last sweep: the least
    /// expiry set since, or a flush's time; `i64::MAX` when none is due.
    next_death: AtomicI64,
    started: std::time::Instant,
    started_unix: i64,
    /// memcached's counters.
    pub counters: Counters,
    /// The slab classes items are charged in, with their counters.
    pub classes: Classes,
}

/// How a storage command fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// `STORED`.
    Stored,
    /// `NOT_STORED`: the condition (add, replace, append, prepend) did not hold.
    NotStored,
    /// `EXISTS`: the CAS unique did not match.
    Exists,
    /// `NOT_FOUND`: a cas on nothing.
    NotFound,
}

/// How an incr/decr fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arith {
    /// The new number.
    Value(u64),
    /// No live item.
    NotFound,
    /// The value is not a decimal number.
    NonNumeric,
}

/// incr/decr's arithmetic on a stored value, as memcached: the value must be a decimal u64
/// (leading spaces allowed, trailing ones too); incr wraps at 2^64, decr stops at 0; a result
/// not longer than the old value is written over it padded with spaces (memcached updates in
/// place). The new number and the value to store.
pub fn arith_value(old: &[u8], incr: bool, delta: u64) -> Option<(u64, Vec<u8>)> {
    let text = std::str::from_utf8(old).ok()?;
    let n = text.trim_start().trim_end_matches(' ').parse::<u64>().ok()?;
    let new = if incr { n.wrapping_add(delta) } else { n.saturating_sub(delta) };
    let mut value = new.to_string().into_bytes();
    if value.len() < old.len() {
        value.resize(old.len(), b' ');
    }
    Some((new, value))
}

fn shard_of(key: &[u8]) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

impl Store {
    /// A store whose items may be charged at most `limit_bytes` (see the module's comment).
    pub fn new(limit_bytes: usize) -> Store {
        let started_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        Store {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard { map: HashMap::default(), clock: VecDeque::new() }))
                .collect(),
            limit: limit_bytes.max(1),
            charged: AtomicUsize::new(0),
            hand: AtomicUsize::new(0),
            next_cas: AtomicU64::new(1),
            flushed_before: AtomicU64::new(0),
            flushed_cas: AtomicU64::new(0),
            next_death: AtomicI64::new(i64::MAX),
            started: std::time::Instant::now(),
            started_unix,
            counters: Counters::default(),
            classes: Classes::new(),
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

    /// Whether `item` was flushed (it is dead even if its expiry is not due).
    fn flushed(&self, item: &Item) -> bool {
        let flushed = self.flushed_before.load(Ordering::Acquire) as i64;
        (flushed > 0 && self.now() >= flushed && item.stored <= flushed)
            || item.cas < self.flushed_cas.load(Ordering::Acquire)
    }

    fn live(&self, item: &Item) -> bool {
        let now = self.now();
        item.expires >= 0 && (item.expires == 0 || item.expires > now) && !self.flushed(item)
    }

    /// Notes that some item may die at `when` (store clock): the next write that needs a page
    /// from then on sweeps first.
    fn death_due(&self, when: i64) {
        self.next_death.fetch_min(when.max(0), Ordering::Relaxed);
    }

    fn placement(&self, key: &[u8], item: &Item) -> (Placement, usize) {
        let total = slabs::item_total(key.len(), item.flags, item.value.len());
        (self.classes.place(total), total)
    }

    /// The item under `key`, if live (`touch`: with its expiry set anew).
    pub fn get(&self, key: &[u8], touch: Option<i64>) -> Option<Item> {
        let mut s = self.shards[shard_of(key)].lock();
        let live = s.map.get(key).map(|i| (self.live(i), self.flushed(i)));
        match live {
            Some((true, _)) => {
                let expires = touch.map(|e| self.expiry(e));
                let now = self.now();
                let item = s.map.get_mut(key).expect("present");
                item.referenced = true;
                item.meta.fetched = true;
                item.meta.accessed = now;
                if let Some(e) = expires {
                    item.expires = e;
                    if e != 0 {
                        self.death_due(e);
                    }
                }
                Some(item.clone())
            }
            Some((false, flushed)) => {
                self.remove(&mut s, key);
                let c = if flushed { &self.counters.get_flushed } else { &self.counters.get_expired };
                c.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    /// Unlinks `key`'s item and lets go of its charge.
    fn remove(&self, s: &mut Shard, key: &[u8]) -> Option<Item> {
        let item = s.map.remove(key)?;
        let (p, total) = self.placement(key, &item);
        self.classes.give_back(p, total);
        self.charged.fetch_sub(self.classes.charge(p), Ordering::Relaxed);
        Some(item)
    }

    /// Whether `key` holds a live item; a dead one is unlinked (counted as reclaimed when a
    /// write takes its place, `reclaim`).
    fn live_in(&self, s: &mut Shard, key: &[u8], reclaim: bool) -> bool {
        match s.map.get(key).map(|i| self.live(i)) {
            Some(true) => true,
            Some(false) => {
                if let Some(item) = self.remove(s, key) {
                    if reclaim {
                        let (p, _) = self.placement(key, &item);
                        self.classes.stats(p.class).reclaimed.fetch_add(1, Ordering::Relaxed);
                    }
                }
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
        self.reclaim_before_growth(self.classes.place(slabs::item_total(key.len(), flags, data.len())));
        let r = {
            let mut s = self.shards[shard_of(key)].lock();
            let present = self.live_in(&mut s, key, true);
            let (value, flags, expires) = match op {
                Set => (data.to_vec(), flags, self.expiry(exptime)),
                Add if present => return Stored::NotStored,
                Add => (data.to_vec(), flags, self.expiry(exptime)),
                Replace if !present => return Stored::NotStored,
                Replace => (data.to_vec(), flags, self.expiry(exptime)),
                Append | Prepend if !present => return Stored::NotStored,
                Append | Prepend => {
                    let old = s.map.get(key).expect("present");
                    let v =
                        if op == Append { [&old.value[..], data].concat() } else { [data, &old.value[..]].concat() };
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
            let meta = ItemMeta { accessed: self.now(), ..ItemMeta::default() };
            self.put(&mut s, key, Item { value, flags, expires, cas: 0, stored: 0, referenced: false, meta });
            Stored::Stored
        };
        self.make_room(key);
        r
    }

    /// Links `item` under `key` with a new CAS unique, charging it (the caller then calls
    /// `make_room`, with no shard locked).
    fn put(&self, s: &mut Shard, key: &[u8], mut item: Item) {
        item.cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
        item.stored = self.now();
        if item.expires != 0 {
            self.death_due(item.expires);
        }
        let (p, total) = self.placement(key, &item);
        if let Some(old) = s.map.insert(key.to_vec(), item) {
            let (op, ototal) = self.placement(key, &old);
            self.classes.give_back(op, ototal);
            self.charged.fetch_sub(self.classes.charge(op), Ordering::Relaxed);
        } else {
            s.clock.push_back(key.to_vec());
        }
        self.classes.take(p, total);
        self.charged.fetch_add(self.classes.charge(p), Ordering::Relaxed);
        self.counters.total_items.fetch_add(1, Ordering::Relaxed);
    }

    /// Brings the store back within its limit after a write: the hand visits the shards in
    /// turn, one lock at a time, each visit taking one item (never `keep`, the item just
    /// written) until the charge fits or no shard has anything left to give (two rounds with
    /// nothing taken: the first unmarks every referenced item, the second would take them).
    fn make_room(&self, keep: &[u8]) {
        let mut empty_visits = 0;
        while self.charged.load(Ordering::Relaxed) > self.limit && empty_visits <= 2 * SHARDS {
            let i = self.hand.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let mut s = self.shards[i].lock();
            if self.evict_one(&mut s, keep) {
                empty_visits = 0;
            } else {
                empty_visits += 1;
            }
        }
    }

    /// CLOCK in one shard: the hand passes keys in insertion order, taking the first dead item
    /// (reclaimed) or unreferenced live one (evicted), sparing and unmarking referenced ones.
    fn evict_one(&self, s: &mut Shard, keep: &[u8]) -> bool {
        // Each key at most once a visit: a referenced item spared now waits for the hand's next
        // round, and the hand goes on to the next shard.
        let mut left = s.clock.len();
        while left > 0 {
            left -= 1;
            let Some(k) = s.clock.pop_front() else { return false };
            let Some(item) = s.map.get_mut(&k) else { continue };
            let dead = !self.live(item);
            if !dead && (k == keep || item.referenced) {
                item.referenced = false;
                s.clock.push_back(k);
                continue;
            }
            let item = self.remove(s, &k).expect("present");
            let (p, _) = self.placement(&k, &item);
            if dead {
                self.classes.stats(p.class).reclaimed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.classes.stats(p.class).evicted.fetch_add(1, Ordering::Relaxed);
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        }
        false
    }

    /// Before a write whose class would need a page more than it has had: if an expiry or a
    /// flush has come due since the last sweep, sweep the store of dead items (memcached takes
    /// an expired item's memory before it takes a new page).
    fn reclaim_before_growth(&self, p: Placement) {
        if !self.classes.needs_page(p) || self.next_death.load(Ordering::Relaxed) > self.now() {
            return;
        }
        self.next_death.store(i64::MAX, Ordering::Relaxed);
        let pending_flush = self.flushed_before.load(Ordering::Acquire) as i64;
        if pending_flush > self.now() {
            self.death_due(pending_flush);
        }
        for shard in self.shards.iter() {
            let mut s = shard.lock();
            let dead: Vec<Vec<u8>> = s.map.iter().filter(|(_, i)| !self.live(i)).map(|(k, _)| k.clone()).collect();
            for k in dead {
                let item = self.remove(&mut s, &k).expect("present");
                let (p, _) = self.placement(&k, &item);
                self.classes.stats(p.class).reclaimed.fetch_add(1, Ordering::Relaxed);
            }
            for item in s.map.values() {
                if item.expires > 0 {
                    self.death_due(item.expires);
                }
            }
            let Shard { map, clock } = &mut *s;
            clock.retain(|k| map.contains_key(k));
        }
    }

    /// Before a write of an item of this size outside `store`: what `store` does first (see
    /// `reclaim_before_growth`).
    pub fn prepare_write(&self, key_len: usize, flags: u32, value_len: usize) {
        self.reclaim_before_growth(self.classes.place(slabs::item_total(key_len, flags, value_len)));
    }

    /// `key`'s shard, locked, for a command that reads and changes an item in one step (the
    /// meta protocol's).
    pub fn lock<'a>(&'a self, key: &'a [u8]) -> Locked<'a> {
        Locked { store: self, shard: Some(self.shards[shard_of(key)].lock()), key, wrote: false }
    }

    /// Removes a SET's old value that a too-large replacement failed to replace (memcached does,
    /// so that a failed SET leaves no stale value).
    pub fn unlink(&self, key: &[u8]) {
        let mut s = self.shards[shard_of(key)].lock();
        self.remove(&mut s, key);
    }

    /// `delete`: whether a live item was there.
    pub fn delete(&self, key: &[u8]) -> bool {
        let mut s = self.shards[shard_of(key)].lock();
        let hit = self.live_in(&mut s, key, false) && self.remove(&mut s, key).is_some();
        let c = if hit { &self.counters.delete_hits } else { &self.counters.delete_misses };
        c.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// `touch`: sets a live item's exptime; whether there was one.
    pub fn touch(&self, key: &[u8], exptime: i64) -> bool {
        self.counters.cmd_touch.fetch_add(1, Ordering::Relaxed);
        let hit = self.get(key, Some(exptime)).is_some();
        let c = if hit { &self.counters.touch_hits } else { &self.counters.touch_misses };
        c.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// incr/decr as memcached (`arith_value`).
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64) -> Arith {
        let (hits, misses) = if incr {
            (&self.counters.incr_hits, &self.counters.incr_misses)
        } else {
            (&self.counters.decr_hits, &self.counters.decr_misses)
        };
        let new = {
            let mut s = self.shards[shard_of(key)].lock();
            if !self.live_in(&mut s, key, false) {
                misses.fetch_add(1, Ordering::Relaxed);
                return Arith::NotFound;
            }
            let item = s.map.get(key).expect("present");
            let Some((new, value)) = arith_value(&item.value, incr, delta) else { return Arith::NonNumeric };
            hits.fetch_add(1, Ordering::Relaxed);
            let item = Item { value, ..item.clone() };
            self.put(&mut s, key, item);
            new
        };
        self.make_room(key);
        Arith::Value(new)
    }

    /// `flush_all [delay]`: every item stored until then is dead from then on. Nothing is
    /// unlinked here (a flush of a million items would hold the store for milliseconds): the
    /// dead are taken back as they are met, as memcached's are.
    pub fn flush_all(&self, delay: i64) {
        self.counters.cmd_flush.fetch_add(1, Ordering::Relaxed);
        if delay > 0 {
            let when = self.expiry(delay).max(1);
            self.flushed_before.store(when as u64, Ordering::Release);
            self.death_due(when);
            return;
        }
        // An immediate flush replaces a pending delayed one, as memcached's oldest_live does.
        self.flushed_before.store(0, Ordering::Release);
        self.flushed_cas.store(self.next_cas.load(Ordering::Relaxed), Ordering::Release);
        self.death_due(0);
    }

    /// (items, bytes) held now, dead ones not yet taken back included (as memcached's
    /// `curr_items` and `bytes`: `bytes` is the sum of the items' `ITEM_ntotal`).
    pub fn usage(&self) -> (u64, u64) {
        (0..self.classes.len()).fold((0, 0), |(n, b), i| {
            let s = self.classes.stats(i + 1);
            (n + s.number.load(Ordering::Relaxed), b + s.mem_requested.load(Ordering::Relaxed))
        })
    }

    /// Chunk bytes charged now.
    pub fn charged(&self) -> usize {
        self.charged.load(Ordering::Relaxed)
    }

    /// The memory limit, in chunk bytes.
    pub fn limit_bytes(&self) -> usize {
        self.limit
    }
}

/// One key's shard, locked (`Store::lock`). The item's value and size change only through
/// `link` (which charges it); its metadata through `meta`, `set_expiry` and `new_cas`. Dropping
/// it unlocks the shard and then, if it linked an item, evicts as a write must.
pub struct Locked<'a> {
    store: &'a Store,
    shard: Option<MutexGuard<'a, Shard>>,
    key: &'a [u8],
    wrote: bool,
}

impl Locked<'_> {
    fn shard(&mut self) -> &mut Shard {
        self.shard.as_mut().expect("held until drop")
    }

    /// The store's clock.
    pub fn now(&self) -> i64 {
        self.store.now()
    }

    /// The live item under the key; a dead one is unlinked (and counted as memcached's get
    /// counts it).
    pub fn item(&mut self) -> Option<&Item> {
        let (store, key) = (self.store, self.key);
        let state = self.shard().map.get(key).map(|i| (store.live(i), store.flushed(i)));
        match state {
            Some((true, _)) => self.shard.as_ref().expect("held").map.get(key),
            Some((false, flushed)) => {
                store.remove(self.shard(), key);
                let c = if flushed { &store.counters.get_flushed } else { &store.counters.get_expired };
                c.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    /// The item linked under the key, live or not: what a command goes on reading after it
    /// found the item live with `item` (its own `T` may have just made it expire, and memcached
    /// answers the rest of the command from the item it holds).
    pub fn current(&self) -> Option<&Item> {
        self.shard.as_ref().expect("held until drop").map.get(self.key)
    }

    /// The current item's metadata, to mark.
    pub fn meta(&mut self) -> Option<&mut ItemMeta> {
        let key = self.key;
        self.shard().map.get_mut(key).map(|i| &mut i.meta)
    }

    /// Sets the current item's expiry to `expires` (store clock, as `Store::expiry` gives it).
    pub fn set_expiry(&mut self, expires: i64) {
        let key = self.key;
        if let Some(i) = self.shard().map.get_mut(key) {
            i.expires = expires;
        }
        if expires != 0 {
            self.store.death_due(expires);
        }
    }

    /// Gives the current item a new CAS unique and returns it.
    pub fn new_cas(&mut self) -> Option<u64> {
        let cas = self.store.next_cas.fetch_add(1, Ordering::Relaxed);
        let key = self.key;
        self.shard().map.get_mut(key).map(|i| {
            i.cas = cas;
            cas
        })
    }

    /// Links a new item under the key (replacing any), charged; returns its CAS unique.
    pub fn link(&mut self, value: Vec<u8>, flags: u32, expires: i64, meta: ItemMeta) -> u64 {
        let (store, key) = (self.store, self.key);
        let meta = ItemMeta { accessed: store.now(), ..meta };
        store.put(self.shard(), key, Item { value, flags, expires, cas: 0, stored: 0, referenced: false, meta });
        self.wrote = true;
        self.shard.as_ref().expect("held").map.get(key).expect("just linked").cas
    }

    /// Unlinks the item; whether there was a live one.
    pub fn unlink(&mut self) -> bool {
        let live = self.item().is_some();
        let (store, key) = (self.store, self.key);
        store.remove(self.shard(), key);
        live
    }

    /// The slab class the live item is charged in, and its `ITEM_ntotal` (meta `me`).
    pub fn placement(&mut self) -> Option<(usize, usize)> {
        let (store, key) = (self.store, self.key);
        let item = self.item()?;
        let (p, total) = store.placement(key, item);
        Some((p.class, total))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        drop(self.shard.take());
        if self.wrote {
            self.store.make_room(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::StoreOp;

    #[test]
    fn eviction_keeps_the_store_within_its_limit_and_spares_referenced_items() {
        let s = Store::new(64_000);
        s.store(StoreOp::Set, b"hot", 0, 0, &[1u8; 100], 0);
        for i in 0..10_000u32 {
            s.store(StoreOp::Set, format!("key{i}").as_bytes(), 0, 0, &[7u8; 100], 0);
            // Read more often than the hand comes round to its shard (every 64 evictions).
            if i % 10 == 0 {
                assert!(s.get(b"hot", None).is_some(), "a referenced item was evicted at {i}");
            }
        }
        let (items, _) = s.usage();
        assert!(s.charged() <= s.limit_bytes(), "{} charged over {}", s.charged(), s.limit_bytes());
        // 64,000 bytes of 192-byte chunks: the store is full, not a shard's share of it.
        assert_eq!(items, 64_000 / 192);
        assert_eq!(s.counters.evictions.load(Ordering::Relaxed), 10_001 - items);
        // The last one stored is there.
        assert!(s.get(b"key9999", None).is_some());
    }

    /// The hand's two rounds: when every item was read since it last passed, the first round
    /// unmarks them and the second takes one; the store never stays over its limit.
    #[test]
    fn a_store_whose_items_were_all_read_still_evicts() {
        let s = Store::new(64_000);
        for i in 0..333 {
            s.store(StoreOp::Set, format!("key{i}").as_bytes(), 0, 0, &[7u8; 100], 0);
        }
        for i in 0..333 {
            assert!(s.get(format!("key{i}").as_bytes(), None).is_some());
        }
        s.store(StoreOp::Set, b"new", 0, 0, &[7u8; 100], 0);
        assert!(s.charged() <= s.limit_bytes());
        assert_eq!(s.counters.evictions.load(Ordering::Relaxed), 1);
    }

    /// memcached's t/issue_22.t with `-m 3`: 66,560-byte values cost 82,792-byte chunks, so 37
    /// fit; once full, each SET evicts exactly one.
    #[test]
    fn a_full_store_evicts_one_item_per_item_stored() {
        let s = Store::new(3 << 20);
        let value = vec![b'B'; 66_560];
        for i in 0..40 {
            assert_eq!(s.store(StoreOp::Set, format!("key{i}").as_bytes(), 0, 0, &value, 0), Stored::Stored);
        }
        assert_eq!(s.usage().0, 37);
        assert_eq!(s.classes.stats(31).evicted.load(Ordering::Relaxed), 3);
        s.counters.reset();
        s.classes.reset();
        for i in 40..80 {
            s.store(StoreOp::Set, format!("key{i}").as_bytes(), 0, 0, &value, 0);
        }
        assert_eq!(s.classes.stats(31).evicted.load(Ordering::Relaxed), 40);
        assert_eq!(s.counters.evictions.load(Ordering::Relaxed), 40);
    }

    /// memcached's t/issue_183.t: after `flush_all`, a SET of the same key takes back the flushed
    /// item (reclaimed), and a SET in the same second after the flush survives it.
    #[test]
    fn a_flush_is_lazy_and_its_items_are_reclaimed() {
        let s = Store::new(1 << 20);
        s.store(StoreOp::Set, b"key", 0, 0, b"1", 0);
        s.store(StoreOp::Set, b"other", 0, 0, b"1", 0);
        s.flush_all(0);
        assert_eq!(s.usage().0, 2, "nothing unlinked by the flush itself");
        s.store(StoreOp::Set, b"key", 0, 0, b"2", 0);
        assert_eq!(s.classes.stats(1).reclaimed.load(Ordering::Relaxed), 1);
        assert_eq!(s.get(b"key", None).unwrap().value, b"2", "written after the flush");
        assert!(s.get(b"other", None).is_none());
        assert_eq!(s.counters.get_flushed.load(Ordering::Relaxed), 1);
    }

    /// memcached's t/issue_14.t: expired items' memory is taken back before a class takes a page
    /// more, so storing as many again after they expired needs no new page.
    #[test]
    fn expired_items_are_swept_before_a_class_grows() {
        let s = Store::new(64 << 20);
        let value = vec![b'B'; 66_560];
        for i in 0..10 {
            s.store(StoreOp::Set, format!("key{i}").as_bytes(), 0, -1, &value, 0);
        }
        assert_eq!(s.classes.malloced(), 1 << 20);
        for i in 10..20 {
            s.store(StoreOp::Set, format!("key{i}").as_bytes(), 0, 0, &value, 0);
        }
        assert_eq!(s.classes.malloced(), 1 << 20, "the expired items' chunks were used again");
        assert_eq!(s.usage().0, 10);
        assert_eq!(s.classes.stats(31).reclaimed.load(Ordering::Relaxed), 10);
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
