//! Green-thread stacks: anonymous mappings with a PROT_NONE guard page below, so an overflow
//! faults instead of silently corrupting a neighbour.

use std::io;

/// An mmap'd green-thread stack with a PROT_NONE guard page below it.
pub struct Stack {
    base: *mut u8,
    mapped: usize,
}

// SAFETY: a Stack is an owned mapping; moving its ownership between threads is fine.
unsafe impl Send for Stack {}

/// The system's page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

impl Stack {
    /// A stack with at least `size` usable bytes plus one guard page.
    pub fn new(size: usize) -> io::Result<Stack> {
        let page = page_size();
        let usable = size.div_ceil(page) * page;
        let mapped = usable + page;
        // SAFETY: anonymous private mapping, no address hint; checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first page lies inside the mapping we just created.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping exactly what we mapped.
            unsafe { libc::munmap(base, mapped) };
            return Err(err);
        }
        Ok(Stack { base: base as *mut u8, mapped })
    }

    /// One past the highest usable byte.
    pub fn top(&self) -> usize {
        self.base as usize + self.mapped
    }

    /// Lowest usable byte (just above the guard page).
    pub fn bottom(&self) -> usize {
        self.base as usize + page_size()
    }

    /// Whether `addr` lies in the usable part of this stack (the guard page excluded).
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.bottom() && addr < self.top()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this Stack owns; nothing runs on it any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.mapped) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_range_is_writable_and_page_aligned() {
        let s = Stack::new(10_000).unwrap();
        assert_eq!(s.top() % page_size(), 0);
        assert!(s.top() - s.bottom() >= 10_000);
        // SAFETY: within the usable range.
        unsafe {
            ((s.top() - 8) as *mut u64).write(7);
            (s.bottom() as *mut u8).write(1);
        }
        assert!(s.contains(s.bottom()) && !s.contains(s.bottom() - 1) && !s.contains(s.top()));
    }
}
