//! Request and reply bodies: byte buffers recycled through lock-free pools.
//!
//! A [`Body`] owns its bytes. An empty body (the default, and every request of the synthetic
//! workloads) holds no buffer at all: a request without a body costs what it did before bodies
//! existed, plus moving three words. A body with bytes takes its buffer from a pool of the
//! smallest size class that fits, and gives it back when it is dropped, so that a server in
//! steady state allocates nothing per request: the transport fills a request's body from a pooled
//! buffer, the handler builds its reply body in another, and both return to the pools when the
//! reply has been sent.
//!
//! Why global pools and not one per worker: a request may finish on another worker than the one
//! that received it (stealing, the global wait queue), and a buffer is freed wherever its body is
//! dropped, so a per-worker pool would drain on one worker and overflow on another. The pools are
//! the runtime's bounded MPMC ring ([`crate::queue::Ring`]), which is lock-free and never
//! allocates: a body may be taken or dropped from any thread, inside a handler that is preempted
//! half-way through the push or the pop, with no lock held and no thread-local state touched (a
//! thread-local free list would be reentered by the next request a preemption runs on the same
//! OS thread).
//!
//! Size classes are powers of two from [`Body::MIN_POOLED`] to [`Body::MAX_POOLED`] bytes; each
//! class keeps at most [`POOL_BYTES_PER_CLASS`] bytes of idle buffers (at least 16 buffers), so
//! the idle memory the pools can hold is bounded (about 11 × 4 MiB). A larger buffer, or one
//! whose pool is full, goes back to the allocator.

use crate::queue::Ring;
use std::sync::OnceLock;

/// Idle bytes each size class may keep.
pub const POOL_BYTES_PER_CLASS: usize = 4 << 20;

const CLASSES: usize = (Body::MAX_POOLED.trailing_zeros() - Body::MIN_POOLED.trailing_zeros() + 1) as usize;

static POOLS: OnceLock<[Ring<Vec<u8>>; CLASSES]> = OnceLock::new();

/// The pools, made on first use. While a `OnceLock` initializes it is an OS lock: a request
/// preempted inside the initialization would park holding it, and the next request on the same
/// worker that touches a body would block its OS thread in the lock's futex for good (the
/// deadlock the live-state test's own lazy static caused in CI stop 49). So the pools are made
/// when a runtime starts (`init`, before any handler runs), and a first use elsewhere makes them
/// with preemption disabled.
fn pools() -> &'static [Ring<Vec<u8>>; CLASSES] {
    POOLS.get().unwrap_or_else(|| {
        crate::preempt::without_preemption(|| {
            POOLS.get_or_init(|| {
                std::array::from_fn(|c| Ring::with_capacity((POOL_BYTES_PER_CLASS / (Body::MIN_POOLED << c)).max(16)))
            })
        })
    })
}

/// Makes the pools now (a runtime's start), so that no handler initializes them.
pub(crate) fn init() {
    pools();
}

/// Whether the pools exist yet (for the test that they are made before any handler runs).
#[doc(hidden)]
pub fn pools_ready() -> bool {
    POOLS.get().is_some()
}

/// The class whose buffers hold `len` bytes: the smallest power of two ≥ `len` (None above
/// `MAX_POOLED`).
fn class_for_len(len: usize) -> Option<usize> {
    (len <= Body::MAX_POOLED).then(|| {
        (len.max(Body::MIN_POOLED).next_power_of_two().trailing_zeros() - Body::MIN_POOLED.trailing_zeros()) as usize
    })
}

/// The class a buffer of `capacity` bytes can serve: the largest power of two ≤ `capacity`
/// (None below `MIN_POOLED` or above `2 × MAX_POOLED`, which go back to the allocator).
fn class_for_capacity(capacity: usize) -> Option<usize> {
    if !(Body::MIN_POOLED..2 * Body::MAX_POOLED).contains(&capacity) {
        return None;
    }
    let floor = usize::BITS - 1 - capacity.leading_zeros();
    Some((floor - Body::MIN_POOLED.trailing_zeros()) as usize)
}

/// The bytes a request or a reply carries besides its fixed fields.
///
/// Dereferences to `[u8]`. Build one with [`Body::from_slice`], or with
/// [`Body::with_capacity`] and then [`Body::extend_from_slice`] or [`Body::as_mut_vec`] (which
/// gives the buffer's `Vec<u8>`: growing it past its capacity reallocates, and the bigger
/// buffer then joins its own size class when the body is dropped).
#[derive(Default)]
pub struct Body {
    /// Capacity 0: the empty body, which owns no allocation.
    buf: Vec<u8>,
}

impl Body {
    /// The smallest buffer the pools keep (a smaller body still gets a buffer this large).
    pub const MIN_POOLED: usize = 64;
    /// The largest size class; a body longer than this gets a buffer of its own, freed with it.
    pub const MAX_POOLED: usize = 64 << 10;

    /// The empty body; allocates nothing.
    pub const fn new() -> Body {
        Body { buf: Vec::new() }
    }

    /// An empty body with room for `capacity` bytes, from the pools where that size is pooled.
    pub fn with_capacity(capacity: usize) -> Body {
        if capacity == 0 {
            return Body::new();
        }
        let Some(class) = class_for_len(capacity) else {
            return Body { buf: Vec::with_capacity(capacity) };
        };
        let buf = pools()[class].pop().unwrap_or_else(|| Vec::with_capacity(Body::MIN_POOLED << class));
        debug_assert!(buf.is_empty() && buf.capacity() >= capacity);
        Body { buf }
    }

    /// A body holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Body {
        let mut b = Body::with_capacity(bytes.len());
        b.buf.extend_from_slice(bytes);
        b
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Appends `bytes` (from the pools if the body had no buffer yet).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.buf.capacity() == 0 && !bytes.is_empty() {
            *self = Body::with_capacity(bytes.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer itself, to write into (`std::io::Write`, `resize`, ...). Reserve what you will
    /// write with [`Body::with_capacity`] first to stay within one pooled buffer.
    pub fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes the buffer holds without growing.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let Some(class) = class_for_capacity(self.buf.capacity()) else { return };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        // A full pool hands the buffer back, which then goes to the allocator.
        let _ = pools()[class].push(buf);
    }
}

impl Clone for Body {
    fn clone(&self) -> Body {
        Body::from_slice(&self.buf)
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.buf == other.buf
    }
}

impl Eq for Body {}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 32;
        let head = &self.buf[..self.buf.len().min(SHOWN)];
        write!(f, "Body({} bytes: {:?}", self.buf.len(), String::from_utf8_lossy(head))?;
        f.write_str(if self.buf.len() > SHOWN { "...)" } else { ")" })
    }
}

impl std::io::Write for Body {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Body {
        Body::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_pooled_length_and_capacity() {
        assert_eq!(class_for_len(0), Some(0));
        assert_eq!(class_for_len(64), Some(0));
        assert_eq!(class_for_len(65), Some(1));
        assert_eq!(class_for_len(Body::MAX_POOLED), Some(CLASSES - 1));
        assert_eq!(class_for_len(Body::MAX_POOLED + 1), None);
        for len in 1..=Body::MAX_POOLED {
            let c = class_for_len(len).unwrap();
            // A class-c buffer holds the length, and is found again from its capacity.
            assert!(Body::MIN_POOLED << c >= len);
            assert_eq!(class_for_capacity(Body::MIN_POOLED << c), Some(c));
        }
        assert_eq!(class_for_capacity(63), None);
        assert_eq!(class_for_capacity(127), Some(0), "a grown buffer serves the class it covers");
        assert_eq!(class_for_capacity(2 * Body::MAX_POOLED), None);
    }

    #[test]
    fn a_dropped_body_is_reused_and_comes_back_empty() {
        // A class no other test in this binary uses (the pools are global).
        let len = 3_000;
        let b = Body::from_slice(&vec![7u8; len]);
        let ptr = b.as_ptr();
        assert_eq!((b.len(), b.capacity()), (len, 4096));
        drop(b);
        let again = Body::with_capacity(len);
        assert_eq!(again.as_ptr(), ptr, "the same buffer, from the pool");
        assert!(again.is_empty());
    }

    #[test]
    fn the_empty_body_owns_nothing_and_bodies_compare_by_bytes() {
        let e = Body::new();
        assert_eq!((e.len(), e.capacity()), (0, 0));
        assert_eq!(Body::with_capacity(0).capacity(), 0);
        let mut w = Body::new();
        std::io::Write::write_all(&mut w, b"hello").unwrap();
        assert_eq!(w, Body::from_slice(b"hello"));
        assert_eq!(w.clone().as_slice(), b"hello");
        assert_eq!(format!("{w:?}"), "Body(5 bytes: \"hello\")");
        let big = Body::from_slice(&vec![1u8; Body::MAX_POOLED + 1]);
        assert_eq!(big.len(), Body::MAX_POOLED + 1);
    }
}
