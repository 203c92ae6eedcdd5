//! A green thread's XSAVE area: where the preemption entry saves the thread's extended state
//! (x87, SSE, AVX, AVX-512, ...) when it is preempted, allocated with the thread instead of
//! carved out of its stack, so that a request deep in its stack can still be preempted (issue
//! 39, item 8). One per thread is enough: the entry is never re-entered on the same thread while
//! the area holds a saved state (the word stays disarmed until after `XRSTOR` has read it back;
//! `preempt::entry`).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;

/// XSAVE's alignment requirement.
const ALIGN: usize = 64;

/// An owned, zeroed, 64-byte-aligned buffer of at least the XSAVE size it was made for (the
/// header zeroed, as XRSTOR requires of an area XSAVE has not written yet).
pub struct SaveArea {
    ptr: Option<NonNull<u8>>,
    layout: Layout,
}

// SAFETY: an owned allocation; moving its ownership between threads is fine.
unsafe impl Send for SaveArea {}

impl SaveArea {
    /// An area of `bytes` (0: none, for a process that never preempts).
    pub fn new(bytes: usize) -> io::Result<SaveArea> {
        let layout = Layout::from_size_align(bytes.max(ALIGN).next_multiple_of(ALIGN), ALIGN)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if bytes == 0 {
            return Ok(SaveArea { ptr: None, layout });
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "cannot allocate an XSAVE area"))?;
        Ok(SaveArea { ptr: Some(ptr), layout })
    }

    /// Its address (0 if there is none).
    pub fn addr(&self) -> u64 {
        self.ptr.map_or(0, |p| p.as_ptr() as u64)
    }
}

impl Drop for SaveArea {
    fn drop(&mut self) {
        if let Some(p) = self.ptr {
            // SAFETY: allocated by `alloc_zeroed` with this layout, freed once.
            unsafe { dealloc(p.as_ptr(), self.layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_are_aligned_zeroed_and_empty_when_asked_for_nothing() {
        let a = SaveArea::new(2_696).unwrap();
        assert_eq!(a.addr() % 64, 0);
        // SAFETY: the area has at least 2,696 bytes.
        let bytes = unsafe { std::slice::from_raw_parts(a.addr() as *const u8, 2_696) };
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(SaveArea::new(0).unwrap().addr(), 0);
    }
}
