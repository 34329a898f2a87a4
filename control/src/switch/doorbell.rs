//! The worker's doorbell: an eventfd the CPU thread rings after queueing a transmit request, so
//! the idle worker, asleep in `poll` on its AF_XDP sockets, wakes for it at once instead of at
//! its next poll timeout (a query or a report forwarded to router ports, RFC 4541 §2.1.1, no
//! longer waits up to that timeout), and the timeout can be long enough that an idle worker
//! hardly wakes the switch CPU.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking eventfd counter: [`Doorbell::ring`] adds one, [`Doorbell::drain`] resets it.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new doorbell (an `EFD_NONBLOCK | EFD_CLOEXEC` eventfd).
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor this process owns and nothing else closes.
        Ok(Doorbell {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Wakes whoever polls [`Doorbell::raw_fd`] for reading (a full counter is still readable,
    /// so a failed write loses nothing).
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                std::ptr::from_ref(&one).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// Resets the counter, so the next poll sleeps until the next ring.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::from_mut(&mut v).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// The descriptor to poll (valid while this doorbell lives).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }

    #[test]
    fn a_ring_wakes_a_poller_until_drained() {
        let d = Doorbell::new().unwrap();
        assert!(!readable(d.raw_fd()));
        d.ring();
        d.ring();
        assert!(readable(d.raw_fd()));
        d.drain();
        assert!(!readable(d.raw_fd()));
        // Draining an empty doorbell neither blocks nor breaks it.
        d.drain();
        d.ring();
        assert!(readable(d.raw_fd()));
    }
}
