//! A switch port on an `AF_PACKET` socket: the slow, portable port backend.
//!
//! The AF_XDP ports are the fast path; this backend exists for the snoop-only mode (the engine
//! runs on real interfaces, learns from real IGMP and sends real queries, without forwarding) and
//! for tools that need raw L2 I/O on an interface. A classic BPF filter keeps the kernel from
//! copying frames the caller does not want.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Which frames the socket receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFilter {
    /// Every frame.
    All,
    /// Only IPv4 frames carrying IGMP (protocol 2) or PIM (protocol 103): what the snooping
    /// engine needs. Filtered in the kernel.
    IgmpAndPim,
}

/// A raw L2 socket bound to one interface, non-blocking, that never sees its own transmissions.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Kernel index of interface `name` in the caller's network namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}"),
        ));
    }
    i32::try_from(idx).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Classic BPF: accept IPv4 with protocol 2 (IGMP) or 103 (PIM), drop everything else.
/// VLAN tags are stripped into metadata by the kernel before filters run, so offsets are fixed.
fn igmp_pim_filter() -> [libc::sock_filter; 7] {
    const LDH_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LDB_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        ins(LDH_ABS, 0, 0, 12),   // ethertype
        ins(JEQ_K, 0, 4, 0x0800), // IPv4? else drop
        ins(LDB_ABS, 0, 0, 23),   // IPv4 protocol
        ins(JEQ_K, 1, 0, 2),      // IGMP -> accept
        ins(JEQ_K, 0, 1, 103),    // PIM -> accept, else drop
        ins(RET_K, 0, 0, 0xffff), // accept
        ins(RET_K, 0, 0, 0),      // drop
    ]
}

impl PacketSocket {
    /// Opens a socket on interface `name` receiving what `filter` admits.
    pub fn open(name: &str, filter: CaptureFilter) -> io::Result<PacketSocket> {
        let ifindex = ifindex(name)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = PacketSocket { fd, ifindex };
        if filter == CaptureFilter::IgmpAndPim {
            let prog = igmp_pim_filter();
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            sock.setsockopt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        }
        // Our own transmissions must not come back as receptions (Linux ≥ 4.20).
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32)?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        cvt(unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(sock)
    }

    fn setsockopt<T>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` points to a live T and its exact size is passed.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                value as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }

    /// The interface's kernel index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// The interface's hardware address, as the kernel reports it for the bound socket. Unlike
    /// sysfs, this is right in whatever network namespace the socket was opened.
    pub fn hardware_address(&self) -> io::Result<[u8; 6]> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `sll` is writable for `len` bytes and `len` is a valid in/out length.
        cvt(unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut len,
            )
        })?;
        if sll.sll_halen != 6 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "interface has no 6-octet hardware address",
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&sll.sll_addr[..6]);
        Ok(mac)
    }

    /// Receives one frame into `buf`; `Ok(None)` when nothing is waiting. Frames longer than
    /// `buf` are truncated to its length (the caller's parser then rejects them as truncated).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }

    /// Transmits one complete Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
        }
        Ok(())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
