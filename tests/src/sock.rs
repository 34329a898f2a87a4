//! Thin, checked wrappers over the socket system calls the testbed needs (libc only).

use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Result, TestbedError};

/// `socket(domain, ty | SOCK_CLOEXEC, proto)` as an owned fd.
pub fn socket(domain: i32, ty: i32, proto: i32) -> Result<OwnedFd> {
    // SAFETY: plain system call; the result is checked before being wrapped.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(TestbedError::last_os(format!(
            "socket({domain}, {ty}, {proto})"
        )));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with a plain-old-data value.
pub fn setsockopt<T: Copy>(
    fd: &impl AsRawFd,
    level: i32,
    name: i32,
    val: &T,
    what: &str,
) -> Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| TestbedError::BadName(format!("{what}: option too large")))?;
    // SAFETY: `val` points to a live `T` of `len` bytes for the duration of the call.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (val as *const T).cast(), len) };
    if rc != 0 {
        return Err(TestbedError::last_os(what.to_owned()));
    }
    Ok(())
}

/// Index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).map_err(|_| TestbedError::BadName(format!("interface {name:?}")))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(TestbedError::last_os(format!("if_nametoindex({name})")));
    }
    Ok(idx)
}

/// Waits until `fd` is readable or `timeout_ms` passes; `Ok(false)` on timeout.
pub fn poll_readable(fd: &impl AsRawFd, timeout_ms: i32) -> Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(TestbedError::io("poll", e));
        }
        return Ok(rc > 0);
    }
}

/// Milliseconds left until `deadline`, clamped to `0..=i32::MAX`.
pub fn ms_until(deadline: std::time::Instant) -> i32 {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
}
