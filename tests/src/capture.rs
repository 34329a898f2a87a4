//! Raw L2 access to one interface with an `AF_PACKET` socket: capture every frame with a
//! deadline, and inject crafted frames.
//!
//! The kernel moves a received 802.1Q tag out of the frame into metadata before packet sockets
//! see it; the capture asks for that metadata (`PACKET_AUXDATA`) and puts the tag back, so tests
//! see the bytes that were on the wire.

use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Result, TestbedError};
use crate::netns::Netns;
use crate::sock;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_AUXDATA: i32 = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Kernel `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AuxData {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame as on the wire (Ethernet header first, VLAN tag restored, no FCS).
    pub bytes: Vec<u8>,
    /// `true` if the frame was sent by this interface rather than received.
    pub outgoing: bool,
    /// When the capture read it.
    pub at: Instant,
}

/// An `AF_PACKET` socket bound to one interface of one namespace.
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
    ifindex: u32,
}

impl Capture {
    /// Opens a capture on `ifname` inside `ns` with a large receive buffer (4 MiB, forced), so a
    /// burst is not lost while the test is busy elsewhere.
    pub fn open(ns: &Netns, ifname: &str) -> Result<Capture> {
        ns.run(|| Capture::open_here(ifname))?
    }

    /// Like [`Capture::open`] in the calling thread's namespace.
    pub fn open_here(ifname: &str) -> Result<Capture> {
        // Protocol 0 until bound: the socket must not queue frames from other interfaces.
        let fd = sock::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        let ifindex = sock::ifindex(ifname)?;
        let size: libc::c_int = 4 << 20;
        sock::setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size,
            "SO_RCVBUFFORCE",
        )
        .or_else(|_| {
            sock::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size, "SO_RCVBUF")
        })?;
        let one: libc::c_int = 1;
        sock::setsockopt(
            &fd,
            libc::SOL_PACKET,
            PACKET_AUXDATA,
            &one,
            "PACKET_AUXDATA",
        )?;
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex =
            i32::try_from(ifindex).map_err(|_| TestbedError::BadName(ifname.into()))?;
        // SAFETY: `sll` is a valid sockaddr_ll of the stated size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(TestbedError::last_os(format!("bind AF_PACKET to {ifname}")));
        }
        Ok(Capture { fd, ifindex })
    }

    /// The next frame, or `None` once `deadline` passes.
    pub fn next_frame(&self, deadline: Instant) -> Result<Option<Frame>> {
        loop {
            if !sock::poll_readable(&self.fd, sock::ms_until(deadline))? {
                return Ok(None);
            }
            if let Some(f) = self.recv_one()? {
                return Ok(Some(f));
            }
        }
    }

    /// All frames that arrive within `window` from now.
    pub fn collect(&self, window: Duration) -> Result<Vec<Frame>> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(f) = self.next_frame(deadline)? {
            out.push(f);
        }
        Ok(out)
    }

    /// How many received (not sent) frames within `window` satisfy `pred`: counting multicast data
    /// on a port, e.g. to prove that nothing leaks to a non-member.
    pub fn count(&self, window: Duration, mut pred: impl FnMut(&[u8]) -> bool) -> Result<usize> {
        Ok(self
            .collect(window)?
            .iter()
            .filter(|f| !f.outgoing && pred(&f.bytes))
            .count())
    }

    /// Frames (received, not sent) until one satisfies `pred` or `deadline` passes; returns all
    /// frames read, the matching one last, and whether one matched.
    pub fn until(
        &self,
        deadline: Instant,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> Result<(Vec<Frame>, bool)> {
        let mut out = Vec::new();
        while let Some(f) = self.next_frame(deadline)? {
            let hit = !f.outgoing && pred(&f.bytes);
            out.push(f);
            if hit {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// Discards everything queued so far.
    pub fn drain(&self) -> Result<usize> {
        let mut n = 0;
        while sock::poll_readable(&self.fd, 0)? {
            self.recv_one()?;
            n += 1;
        }
        Ok(n)
    }

    /// Transmits `frame` (a complete Ethernet frame, no FCS) out of the interface.
    pub fn inject(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: `frame` is a valid buffer of `frame.len()` bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(TestbedError::last_os("send on AF_PACKET"));
        }
        if usize::try_from(n).ok() != Some(frame.len()) {
            return Err(TestbedError::Parse(format!(
                "short send: {n} of {}",
                frame.len()
            )));
        }
        Ok(())
    }

    /// The interface index the capture is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn recv_one(&self) -> Result<Option<Frame>> {
        let mut buf = vec![0u8; 65536 + 4];
        // Leave 4 bytes of headroom for a restored VLAN tag.
        let mut iov = libc::iovec {
            iov_base: buf[4..].as_mut_ptr().cast(),
            iov_len: buf.len() - 4,
        };
        // SAFETY: zeroed sockaddr_ll / msghdr are valid; pointers set below outlive the call.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        let mut cbuf = [0u64; 16];
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>();
        // SAFETY: `msg` describes valid buffers.
        let n = unsafe {
            libc::recvmsg(
                self.fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(TestbedError::io("recvmsg on AF_PACKET", e));
        }
        let len = usize::try_from(n).unwrap_or(0).min(buf.len() - 4);
        let mut aux = None;
        // SAFETY: walking the control messages the kernel wrote into `cbuf` via the CMSG macros.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                    aux = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c) as *const AuxData
                    ));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let mut start = 4;
        if let Some(a) = aux {
            if a.tp_status & TP_STATUS_VLAN_VALID != 0 && len >= 12 {
                let tpid = if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    a.tp_vlan_tpid
                } else {
                    0x8100
                };
                // Move the two MAC addresses 4 bytes left and put TPID + TCI after them.
                buf.copy_within(4..16, 0);
                buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                buf[14..16].copy_from_slice(&a.tp_vlan_tci.to_be_bytes());
                start = 0;
            }
        }
        let bytes = buf[start..4 + len].to_vec();
        Ok(Some(Frame {
            bytes,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
            at: Instant::now(),
        }))
    }
}
