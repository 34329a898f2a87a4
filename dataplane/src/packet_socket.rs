//! A switch port on an `AF_PACKET` socket: the slow, portable port backend.
//!
//! The AF_XDP ports are the fast path; this backend exists for the snoop-only mode (the engine
//! runs on real interfaces, learns from real IGMP and sends real queries, without forwarding) and
//! for tools that need raw L2 I/O on an interface (the testbed's captures). A classic BPF filter
//! keeps the kernel from copying frames the caller does not want.
//!
//! The kernel moves a received 802.1Q tag out of the frame into metadata before packet sockets
//! see it; [`PacketSocket::recv`] asks for that metadata (`PACKET_AUXDATA`) and puts the tag back,
//! so callers parse the bytes that were on the wire and a tagged frame is never mistaken for an
//! untagged one.

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

/// How a [`PacketSocket`] is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    /// Which frames are received.
    pub filter: CaptureFilter,
    /// Also receive the frames this host sends on the interface (a capture wants them; a switch
    /// port must not see its own transmissions).
    pub outgoing: bool,
    /// Receive buffer size in bytes (forced past `rmem_max` when privileged); `None` keeps the
    /// default.
    pub rcvbuf: Option<usize>,
}

/// One received frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Received<'a> {
    /// The frame as it was on the wire: Ethernet header first, 802.1Q tag restored, no FCS.
    pub frame: &'a [u8],
    /// The frame was sent by this host rather than received.
    pub outgoing: bool,
}

/// Headroom kept in front of a received frame so a stripped 802.1Q tag can be put back.
const TAG_HEADROOM: usize = 4;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// A raw L2 socket bound to one interface, non-blocking.
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
    /// Opens a switch-port socket on interface `name`: receives what `filter` admits, never its
    /// own transmissions.
    pub fn open(name: &str, filter: CaptureFilter) -> io::Result<PacketSocket> {
        Self::open_with(
            name,
            SocketOptions {
                filter,
                outgoing: false,
                rcvbuf: None,
            },
        )
    }

    /// Opens a socket on interface `name` with explicit options.
    pub fn open_with(name: &str, opts: SocketOptions) -> io::Result<PacketSocket> {
        let ifindex = ifindex(name)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0 until bound: the socket must not queue frames from other interfaces in the
        // moment between socket() and bind().
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = PacketSocket { fd, ifindex };
        if let Some(size) = opts.rcvbuf {
            let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size)
                .or_else(|_| sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &size))?;
        }
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_AUXDATA, &1i32)?;
        if opts.filter == CaptureFilter::IgmpAndPim {
            let prog = igmp_pim_filter();
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            sock.setsockopt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        }
        if !opts.outgoing {
            // Our own transmissions must not come back as receptions (Linux ≥ 4.20).
            sock.setsockopt(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32)?;
        }
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

    /// Receives one frame into `buf`; `Ok(None)` when nothing is waiting. The frame starts a few
    /// octets into `buf` (room to restore a tag); frames longer than the rest of `buf` are
    /// truncated (the caller's parser then rejects them as truncated).
    pub fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Option<Received<'a>>> {
        if buf.len() <= TAG_HEADROOM {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let room = buf.len() - TAG_HEADROOM;
        let mut iov = libc::iovec {
            iov_base: buf[TAG_HEADROOM..].as_mut_ptr().cast(),
            iov_len: room,
        };
        // SAFETY: all-zero sockaddr_ll and msghdr are valid; the pointers set below outlive the
        // call.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut cbuf = [0u64; 16];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: `msg` describes buffers valid for the duration of the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let len = usize::try_from(n).unwrap_or(0).min(room);
        let mut aux: Option<libc::tpacket_auxdata> = None;
        // SAFETY: walks the control messages the kernel wrote into `cbuf`, with the CMSG macros
        // over the `msg` that describes it; the payload is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    aux = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c) as *const libc::tpacket_auxdata
                    ));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let outgoing = from.sll_pkttype == libc::PACKET_OUTGOING;
        let mut start = TAG_HEADROOM;
        if let Some(a) = aux.filter(|a| a.tp_status & TP_STATUS_VLAN_VALID != 0 && len >= 12) {
            let tpid = if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                a.tp_vlan_tpid
            } else {
                0x8100
            };
            // Move the two MAC addresses 4 octets left and put TPID + TCI after them.
            buf.copy_within(TAG_HEADROOM..TAG_HEADROOM + 12, 0);
            buf[12..14].copy_from_slice(&tpid.to_be_bytes());
            buf[14..16].copy_from_slice(&a.tp_vlan_tci.to_be_bytes());
            start = 0;
        }
        Ok(buf
            .get(start..TAG_HEADROOM + len)
            .map(|frame| Received { frame, outgoing }))
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
