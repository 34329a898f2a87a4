//! Kernel-timestamped capture for the latency benchmarks: an `AF_PACKET` socket bound to one
//! interface with `SO_TIMESTAMPNS`, so every frame carries the time the kernel saw it (on
//! receive: when the interface's NAPI handed it to the stack; on transmit: when the interface's
//! transmit path passed it to the taps), not the time this process got round to reading it.
//! All namespaces share `CLOCK_REALTIME`, so stamps taken on the sender's and on a receiver's
//! interface can be subtracted.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// Why a timestamped capture failed.
#[derive(Debug, thiserror::Error)]
pub enum TstampError {
    /// A socket call failed.
    #[error("{what}: {source}")]
    Os {
        /// The call.
        what: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The interface does not exist in the calling thread's namespace.
    #[error("no interface {0:?} here")]
    NoInterface(String),
    /// A frame arrived without the kernel timestamp asked for.
    #[error("frame without SCM_TIMESTAMPNS")]
    NoTimestamp,
}

fn os(what: &'static str) -> TstampError {
    TstampError::Os {
        what,
        source: io::Error::last_os_error(),
    }
}

/// One captured frame: its first bytes, its direction and the kernel's timestamp.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Kernel timestamp, nanoseconds of `CLOCK_REALTIME`.
    pub ns: i128,
    /// Sent by this interface (`PACKET_OUTGOING`) rather than received.
    pub outgoing: bool,
    /// The frame's first [`SNAP`] bytes (enough for the headers and a sequence number).
    pub head: Vec<u8>,
}

/// Bytes of each frame kept: Ethernet + IPv4 with options + UDP/IGMP + 16 B of payload.
pub const SNAP: usize = 96;

/// An `AF_PACKET` socket with kernel timestamps on one interface.
#[derive(Debug)]
pub struct StampCapture {
    fd: OwnedFd,
}

impl StampCapture {
    /// Opens the capture on `ifname` in the calling thread's namespace (call it inside
    /// `Netns::run`; the socket stays in that namespace afterwards), with a 16 MiB receive
    /// buffer so a reader that falls behind for a moment loses nothing.
    pub fn open_here(ifname: &str) -> Result<StampCapture, TstampError> {
        let name = std::ffi::CString::new(ifname)
            .map_err(|_| TstampError::NoInterface(ifname.to_owned()))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(TstampError::NoInterface(ifname.to_owned()));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if raw < 0 {
            return Err(os("socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        set(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one,
            "SO_TIMESTAMPNS",
        )?;
        let buf: libc::c_int = 16 << 20;
        set(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &buf,
            "SO_RCVBUFFORCE",
        )?;
        // SAFETY: sockaddr_ll is plain data; all zeroes is valid before the fields are set.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
        // SAFETY: `sll` is a valid sockaddr_ll of the length passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os("bind(AF_PACKET)"));
        }
        Ok(StampCapture { fd })
    }

    /// Discards everything queued so far (frames from before the measurement).
    pub fn drain(&self) -> Result<usize, TstampError> {
        let mut n = 0;
        while self.recv(0)?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Reads frames until `deadline`, keeping those `keep` accepts.
    pub fn collect_until(
        &self,
        deadline: Instant,
        mut keep: impl FnMut(&Stamped) -> bool,
    ) -> Result<Vec<Stamped>, TstampError> {
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Whatever is already queued still belongs to the window.
                while let Some(f) = self.recv(0)? {
                    if keep(&f) {
                        out.push(f);
                    }
                }
                return Ok(out);
            }
            let ms = i32::try_from(left.as_millis().clamp(1, 1000)).unwrap_or(1000);
            if let Some(f) = self.recv(ms)? {
                if keep(&f) {
                    out.push(f);
                }
            }
        }
    }

    /// The next frame within `timeout_ms` (0 = only if one is queued).
    fn recv(&self, timeout_ms: i32) -> Result<Option<Stamped>, TstampError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(TstampError::Os {
                what: "poll",
                source: e,
            });
        }
        if rc == 0 {
            return Ok(None);
        }
        let mut data = [0u8; SNAP];
        // u64 alignment for the cmsg headers.
        let mut control = [0u64; 16];
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; every pointer is set below to live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points at buffers that live across the call, with their true lengths.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(TstampError::Os {
                what: "recvmsg",
                source: e,
            });
        }
        let len = usize::try_from(n).unwrap_or(0).min(SNAP);
        let mut stamp = None;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
        // msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    stamp = Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let ns = stamp.ok_or(TstampError::NoTimestamp)?;
        Ok(Some(Stamped {
            ns,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
            head: data.get(..len).unwrap_or_default().to_vec(),
        }))
    }
}

fn set<T>(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    value: &T,
    what: &'static str,
) -> Result<(), TstampError> {
    // SAFETY: `value` points at a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os(what));
    }
    Ok(())
}

/// What a captured frame is, as far as the latency benchmarks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A latency-probe datagram to UDP port `port` with sequence number `seq`.
    Probe {
        /// Sequence number from the payload.
        seq: u64,
    },
    /// An IGMP membership report (v1 0x12, v2 0x16, v3 0x22; the bench's hosts run IGMPv2,
    /// so a v3 report is never a leave here).
    Report,
    /// An IGMPv2 leave (0x17).
    Leave,
    /// Anything else.
    Other,
}

/// Payload magic of a latency probe.
pub const MAGIC: &[u8; 8] = b"XSLAT-01";

/// Classifies an untagged IPv4 frame: a probe to UDP `port` (payload [`MAGIC`] + big-endian
/// sequence number) or an IGMP message; anything else is [`Kind::Other`].
pub fn classify(frame: &[u8], port: u16) -> Kind {
    let Some(&[0x08, 0x00]) = frame.get(12..14) else {
        return Kind::Other;
    };
    let Some(&vihl) = frame.get(14) else {
        return Kind::Other;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let l4 = 14 + ihl;
    match frame.get(23) {
        Some(17) => {
            let dport = frame
                .get(l4 + 2..l4 + 4)
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            let magic = frame.get(l4 + 8..l4 + 16);
            let seq = frame
                .get(l4 + 16..l4 + 24)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            match (dport, magic, seq) {
                (Some(p), Some(m), Some(seq)) if p == port && m == MAGIC => Kind::Probe { seq },
                _ => Kind::Other,
            }
        }
        Some(2) => match frame.get(l4) {
            Some(0x12 | 0x16 | 0x22) => Kind::Report,
            Some(0x17) => Kind::Leave,
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use xsnoop_dataplane::wire::{to_vec, LeaveBuilder, MacAddr, ReportV2Builder, UdpDataBuilder};

    #[test]
    fn probes_reports_and_leaves_are_told_apart() {
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&42u64.to_be_bytes());
        let probe = to_vec(&UdpDataBuilder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            group: Ipv4Addr::new(239, 1, 1, 1),
            src_port: 5000,
            dst_port: 5000,
            ttl: 1,
            payload: &payload,
            vlan: None,
        })
        .unwrap();
        assert_eq!(classify(&probe, 5000), Kind::Probe { seq: 42 });
        assert_eq!(classify(&probe, 5001), Kind::Other);
        let report = to_vec(&ReportV2Builder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            group: Ipv4Addr::new(239, 1, 1, 1),
            vlan: None,
        })
        .unwrap();
        assert_eq!(classify(&report, 5000), Kind::Report);
        let leave = to_vec(&LeaveBuilder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            group: Ipv4Addr::new(239, 1, 1, 1),
            vlan: None,
        })
        .unwrap();
        assert_eq!(classify(&leave, 5000), Kind::Leave);
        assert_eq!(classify(&probe[..40], 5000), Kind::Other);
    }
}
