//! The UMEM's memory: one anonymous, page-aligned, pre-faulted mapping that lives as long as
//! the sockets using it (the kernel reads and writes it behind our back).

use std::io;
use std::ptr::NonNull;

/// An anonymous private mapping, unmapped on drop.
#[derive(Debug)]
pub(super) struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access is synchronised by the owner
// (`AfXdp` is used from one thread at a time through `&mut`).
unsafe impl Send for Area {}

impl Area {
    /// Maps `len` bytes (rounded up to pages by the kernel), populated so the first packets do not
    /// page-fault.
    pub(super) fn new(len: usize) -> io::Result<Area> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty UMEM"));
        }
        // SAFETY: anonymous mapping request with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Area { ptr, len })
    }

    /// The whole area as a raw slice pointer (what xdpilone registers).
    pub(super) fn as_raw(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// Bytes `range` of the area, if inside it.
    pub(super) fn get(&self, start: usize, len: usize) -> Option<&[u8]> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: [start, end) lies inside the live mapping; the kernel writes only frames that
        // are in a fill ring, and callers only read frames they hold.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), len) })
    }

    /// Mutable bytes `range` of the area, if inside it.
    pub(super) fn get_mut(&mut self, start: usize, len: usize) -> Option<&mut [u8]> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: as in `get`, and `&mut self` excludes other borrows from this side.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(start), len) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; sockets registered on it are dropped
        // before (field order in `AfXdp`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
