//! memcached's slab classes, as the store's way of charging memory and as what `stats slabs`
//! and `stats items` report.
//!
//! memcached keeps items in chunks of fixed sizes (its slab classes: 96 bytes, then each class
//! 1.25 times the one before, 8-byte aligned, up to half a 1 MiB page), cut from 1 MiB pages. The
//! store here keeps items in a hash table, but it charges each one the chunk memcached would
//! give it, so that `-m N` holds as many items as memcached's `-m N` does (an item of 66,623
//! bytes costs an 82,792-byte chunk in both), and it reports the classes under memcached's
//! names. The model's limits, in docs/memcached.md: the memory limit applies to the chunks held
//! (memcached's applies to pages, which it hands to classes for good, so here one class never
//! starves another), and an item over half a page is charged whole chunks of the largest class
//! (memcached chains chunks of several classes for it).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// memcached's slab page (`-o slab_page_size`, default 1 MiB).
pub const PAGE_SIZE: usize = 1 << 20;
/// The largest chunk (`slab_chunk_max`: half a page).
pub const CHUNK_MAX: usize = PAGE_SIZE / 2;
/// `sizeof(item)` on a 64-bit build: links, times, sizes and flags before the key.
const ITEM_STRUCT: usize = 48;
/// The CAS unique stored with each item (memcached's default, `-C` not given).
const CAS_SIZE: usize = 8;

/// memcached's `ITEM_ntotal` for an item: its header, the key and its NUL, the client flags
/// when not zero, the value with its "\r\n", the CAS unique.
pub fn item_total(key_len: usize, flags: u32, value_len: usize) -> usize {
    ITEM_STRUCT + key_len + 1 + if flags != 0 { 4 } else { 0 } + value_len + 2 + CAS_SIZE
}

/// Where an item of some total size goes: its class (1-based, as memcached numbers them) and how
/// many of that class's chunks it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The class, 1-based.
    pub class: usize,
    /// Chunks of it the item takes.
    pub chunks: usize,
}

/// One class's counters. `number`, `used_chunks` and `mem_requested` are state (what is held
/// now); `evicted` and `reclaimed` count events and are cleared by `stats reset`; `pages` is the
/// most pages the class has needed at once (memcached never gives a page back).
#[derive(Debug, Default)]
pub struct ClassStats {
    /// Items held (`items:N:number`).
    pub number: AtomicU64,
    /// Chunks held (`N:used_chunks`).
    pub used_chunks: AtomicU64,
    /// The items' `ITEM_ntotal` summed (`items:N:mem_requested`).
    pub mem_requested: AtomicU64,
    /// The most pages needed at once (`N:total_pages`).
    pub pages: AtomicU64,
    /// Live items taken to make room (`items:N:evicted`).
    pub evicted: AtomicU64,
    /// Dead items taken back (`items:N:reclaimed`).
    pub reclaimed: AtomicU64,
}

/// The classes and their counters.
pub struct Classes {
    /// Chunk size of class `i + 1`.
    sizes: Vec<usize>,
    stats: Vec<ClassStats>,
}

impl Default for Classes {
    fn default() -> Classes {
        Classes::new()
    }
}

impl Classes {
    /// memcached's default classes (`slabs_init` with factor 1.25 and chunk size 48): 39 of them,
    /// 96 bytes to 512 KiB.
    pub fn new() -> Classes {
        let mut sizes = Vec::new();
        let mut size = ITEM_STRUCT + 48;
        // memcached's loop: stop once the next size would reach the largest chunk; sizes are
        // aligned to 8 and grow by the factor, truncated as its unsigned int is.
        while (size as f64) < CHUNK_MAX as f64 / 1.25 {
            size = size.next_multiple_of(8);
            sizes.push(size);
            size = (size as f64 * 1.25) as usize;
        }
        sizes.push(CHUNK_MAX);
        let stats = sizes.iter().map(|_| ClassStats::default()).collect();
        Classes { sizes, stats }
    }

    /// How many classes there are.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Never: there is always at least the largest class.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Class `class`'s chunk size.
    pub fn chunk_size(&self, class: usize) -> usize {
        self.sizes[class - 1]
    }

    /// How many of class `class`'s chunks one page holds.
    pub fn per_page(&self, class: usize) -> usize {
        PAGE_SIZE / self.chunk_size(class)
    }

    /// Class `class`'s counters.
    pub fn stats(&self, class: usize) -> &ClassStats {
        &self.stats[class - 1]
    }

    /// The smallest class whose chunk holds `total` bytes (memcached's `slabs_clsid`); beyond
    /// the largest chunk, as many largest chunks as it takes.
    pub fn place(&self, total: usize) -> Placement {
        match self.sizes.iter().position(|&s| s >= total) {
            Some(i) => Placement { class: i + 1, chunks: 1 },
            None => Placement { class: self.sizes.len(), chunks: total.div_ceil(CHUNK_MAX) },
        }
    }

    /// The bytes `p` is charged: its chunks whole.
    pub fn charge(&self, p: Placement) -> usize {
        p.chunks * self.chunk_size(p.class)
    }

    /// Whether taking `p` would need a page more than its class has had.
    pub fn needs_page(&self, p: Placement) -> bool {
        let s = self.stats(p.class);
        let used = s.used_chunks.load(Relaxed) as usize + p.chunks;
        used > s.pages.load(Relaxed) as usize * self.per_page(p.class)
    }

    /// Counts an item of `total` bytes placed at `p` as held.
    pub fn take(&self, p: Placement, total: usize) {
        let s = self.stats(p.class);
        let used = s.used_chunks.fetch_add(p.chunks as u64, Relaxed) + p.chunks as u64;
        s.pages.fetch_max(used.div_ceil(self.per_page(p.class) as u64), Relaxed);
        s.number.fetch_add(1, Relaxed);
        s.mem_requested.fetch_add(total as u64, Relaxed);
    }

    /// Counts an item of `total` bytes placed at `p` as let go.
    pub fn give_back(&self, p: Placement, total: usize) {
        let s = self.stats(p.class);
        s.used_chunks.fetch_sub(p.chunks as u64, Relaxed);
        s.number.fetch_sub(1, Relaxed);
        s.mem_requested.fetch_sub(total as u64, Relaxed);
    }

    /// The pages all classes have taken, in bytes (memcached's `total_malloced`).
    pub fn malloced(&self) -> u64 {
        self.stats.iter().map(|s| s.pages.load(Relaxed)).sum::<u64>() * PAGE_SIZE as u64
    }

    /// Clears the event counters (`stats reset`).
    pub fn reset(&self) {
        for s in &self.stats {
            s.evicted.store(0, Relaxed);
            s.reclaimed.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes memcached 1.6.18 prints with `-vv` for its defaults.
    #[test]
    fn classes_are_memcacheds_defaults() {
        let c = Classes::new();
        assert_eq!(c.len(), 39);
        assert_eq!((c.chunk_size(1), c.chunk_size(2), c.chunk_size(3)), (96, 120, 152));
        assert_eq!((c.chunk_size(30), c.chunk_size(31), c.chunk_size(38)), (66232, 82792, 394840));
        assert_eq!(c.chunk_size(39), CHUNK_MAX);
        assert_eq!((c.per_page(1), c.per_page(31)), (10922, 12));
    }

    /// memcached's t/issue_29.t and t/issue_163.t: an empty value under a short key is class 1; a
    /// 66,560-byte value class 31.
    #[test]
    fn items_go_where_memcached_puts_them() {
        let c = Classes::new();
        assert_eq!(c.place(item_total(7, 0, 0)), Placement { class: 1, chunks: 1 });
        assert_eq!(c.place(item_total(3, 0, 66560)), Placement { class: 31, chunks: 1 });
        assert_eq!(c.place(item_total(3, 1, 1 << 20)), Placement { class: 39, chunks: 3 });
        assert_eq!(c.charge(c.place(item_total(3, 0, 66560))), 82792);
    }

    #[test]
    fn pages_are_a_high_water_mark() {
        let c = Classes::new();
        let p = c.place(item_total(4, 0, 66560));
        assert!(c.needs_page(p));
        for _ in 0..12 {
            c.take(p, 100);
        }
        assert!(c.needs_page(p), "a 13th chunk needs a second page");
        c.give_back(p, 100);
        assert!(!c.needs_page(p));
        assert_eq!(c.malloced(), PAGE_SIZE as u64);
        c.take(p, 100);
        c.take(p, 100);
        assert_eq!(c.malloced(), 2 * PAGE_SIZE as u64);
        for _ in 0..13 {
            c.give_back(p, 100);
        }
        assert_eq!(c.malloced(), 2 * PAGE_SIZE as u64, "pages are kept");
    }
}
