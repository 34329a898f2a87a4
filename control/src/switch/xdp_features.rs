//! Which ports can take frames the kernel redirects to them: the `netdev` generic-netlink
//! family's `xdp-features` of each interface (Linux ≥ 6.3).
//!
//! The in-kernel fast path replicates with `bpf_redirect_map`, which hands each copy to the
//! egress driver's `ndo_xdp_xmit`. A driver without it, or a veth whose peer has neither GRO on
//! nor an XDP program (the peer then has no NAPI to receive into), drops every such copy and no
//! counter says so. The kernel tells exactly this per interface, in the switch's own namespace:
//! the `NETDEV_XDP_ACT_NDO_XMIT` bit, which veth sets and clears as its peer changes. So the
//! daemon can choose the dataplane per VLAN without seeing the peer's namespace, and follow
//! changes while it runs.
//!
//! One request per interface over a `NETLINK_GENERIC` socket; replies are parsed with bounds
//! checks only (a reply is kernel input, but never trusted to be well formed).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `NETDEV_XDP_ACT_BASIC`: XDP_PASS/DROP/ABORTED in the driver (native XDP).
pub const ACT_BASIC: u64 = 1 << 0;
/// `NETDEV_XDP_ACT_REDIRECT`: the driver's XDP can redirect (the ingress side of the fast path).
pub const ACT_REDIRECT: u64 = 1 << 1;
/// `NETDEV_XDP_ACT_NDO_XMIT`: the interface accepts redirected frames (the egress side).
pub const ACT_NDO_XMIT: u64 = 1 << 2;
/// `NETDEV_XDP_ACT_XSK_ZEROCOPY`: AF_XDP zero-copy.
pub const ACT_XSK_ZEROCOPY: u64 = 1 << 3;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Why the features could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XdpFeaturesError {
    /// The netlink socket could not be opened or used.
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel has no `netdev` family (Linux < 6.3): features are unknown.
    #[error("the kernel has no netdev netlink family (Linux 6.3 or later reports XDP features)")]
    NoFamily,
    /// The kernel refused the request (errno), e.g. no such interface.
    #[error("the kernel refused the request: {0}")]
    Refused(std::io::Error),
    /// A reply that does not parse.
    #[error("malformed netlink reply: {0}")]
    Malformed(&'static str),
}

/// The XDP abilities of one interface, as the kernel reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpFeatures(pub u64);

impl XdpFeatures {
    /// Whether frames redirected by XDP can leave through this interface.
    pub fn accepts_redirects(self) -> bool {
        self.0 & ACT_NDO_XMIT != 0
    }

    /// Whether the driver runs XDP natively and can redirect from it.
    pub fn redirects_natively(self) -> bool {
        self.0 & (ACT_BASIC | ACT_REDIRECT) == ACT_BASIC | ACT_REDIRECT
    }

    /// Whether the driver offers AF_XDP zero-copy.
    pub fn zero_copy(self) -> bool {
        self.0 & ACT_XSK_ZEROCOPY != 0
    }
}

/// A generic-netlink socket bound to the `netdev` family, in the calling thread's network
/// namespace (the switch's); reusable for any number of queries.
pub struct NetdevSocket {
    fd: OwnedFd,
    family: u16,
    /// The family's `mgmt` multicast group: device changes, XDP features included.
    mgmt_group: Option<u32>,
    seq: u32,
}

impl std::fmt::Debug for NetdevSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetdevSocket")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl NetdevSocket {
    /// Opens the socket and resolves the family id.
    pub fn open() -> Result<NetdevSocket, XdpFeaturesError> {
        let fd = genl_socket(0)?;
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval for the duration of the call. A failure only
        // leaves the socket blocking without a timeout; the kernel answers at once anyway.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let mut s = NetdevSocket {
            fd,
            family: 0,
            mgmt_group: None,
            seq: 0,
        };
        let reply = s
            .request(
                GENL_ID_CTRL,
                CTRL_CMD_GETFAMILY,
                CTRL_ATTR_FAMILY_NAME,
                b"netdev\0",
            )
            .map_err(|e| match e {
                XdpFeaturesError::Refused(_) => XdpFeaturesError::NoFamily,
                e => e,
            })?;
        let id = attr(&reply, CTRL_ATTR_FAMILY_ID)
            .and_then(|v| v.get(..2))
            .and_then(|b| b.try_into().ok())
            .map(u16::from_ne_bytes)
            .ok_or(XdpFeaturesError::Malformed("no family id"))?;
        s.family = id;
        // A nested array: each element nests a name and an id.
        s.mgmt_group = attr(&reply, CTRL_ATTR_MCAST_GROUPS).and_then(|groups| {
            attrs(groups)
                .map(|(_, g)| g)
                .find(|g| attr(g, CTRL_ATTR_MCAST_GRP_NAME) == Some(&b"mgmt\0"[..]))
                .and_then(|g| attr(g, CTRL_ATTR_MCAST_GRP_ID))
                .and_then(|v| v.get(..4))
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        });
        Ok(s)
    }

    /// A socket that hears the kernel announce device changes (`dev-change-ntf` on the
    /// family's `mgmt` group), e.g. a veth peer turning GRO on or off, so the daemon re-reads
    /// the features at once instead of at its next poll.
    pub fn subscribe(&self) -> Result<NetdevEvents, XdpFeaturesError> {
        let group = self
            .mgmt_group
            .ok_or(XdpFeaturesError::Malformed("no mgmt multicast group"))?;
        let fd = genl_socket(libc::SOCK_NONBLOCK)?;
        // A netlink socket gets multicast only once bound (port id chosen by the kernel).
        // SAFETY: sockaddr_nl is plain data; all-zero with the family set is a valid address.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid sockaddr_nl of the given length for the duration of the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `group` is a valid u32 for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                (&group as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(NetdevEvents { fd })
    }

    /// The XDP features of interface `ifindex`.
    pub fn features(&mut self, ifindex: u32) -> Result<XdpFeatures, XdpFeaturesError> {
        let reply = self.request(
            self.family,
            NETDEV_CMD_DEV_GET,
            NETDEV_A_DEV_IFINDEX,
            &ifindex.to_ne_bytes(),
        )?;
        attr(&reply, NETDEV_A_DEV_XDP_FEATURES)
            .and_then(|v| v.get(..8))
            .and_then(|b| b.try_into().ok())
            .map(|b| XdpFeatures(u64::from_ne_bytes(b)))
            .ok_or(XdpFeaturesError::Malformed("no xdp-features attribute"))
    }

    /// Sends one request with one attribute and returns the reply's attributes.
    fn request(
        &mut self,
        family: u16,
        cmd: u8,
        attr_type: u16,
        value: &[u8],
    ) -> Result<Vec<u8>, XdpFeaturesError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = encode(family, cmd, self.seq, attr_type, value);
        // SAFETY: `msg` is a valid buffer of its length; the kernel is the destination (address
        // 0) because an unbound netlink socket sends to the kernel by default.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is writable for its whole length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
            match decode(buf.get(..n).unwrap_or_default(), self.seq)? {
                Some(attrs) => return Ok(attrs.to_vec()),
                None => continue, // a stale reply to an earlier, timed-out request
            }
        }
    }
}

/// A `NETLINK_GENERIC` socket with `flags` (e.g. `SOCK_NONBLOCK`) besides close-on-exec.
fn genl_socket(flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
            libc::NETLINK_GENERIC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Device-change announcements from the kernel (see [`NetdevSocket::subscribe`]).
pub struct NetdevEvents {
    fd: OwnedFd,
}

impl std::fmt::Debug for NetdevEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetdevEvents").finish_non_exhaustive()
    }
}

impl NetdevEvents {
    /// Whether any announcement arrived since the last call (all pending ones are read; a
    /// full socket buffer, which drops some, also counts as "something changed").
    pub fn changed(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut any = false;
        loop {
            // SAFETY: `buf` is writable for its whole length; the socket is non-blocking.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            let e = std::io::Error::last_os_error();
            return any || (n < 0 && e.raw_os_error() == Some(libc::ENOBUFS));
        }
    }
}

/// One netlink message: header, generic-netlink header, one attribute (padded to 4).
fn encode(family: u16, cmd: u8, seq: u32, attr_type: u16, value: &[u8]) -> Vec<u8> {
    let attr_len = 4 + value.len();
    let padded = (attr_len + 3) & !3;
    let total = NLMSG_HDRLEN + GENL_HDRLEN + padded;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.extend_from_slice(&[cmd, 1, 0, 0]); // cmd, version, reserved
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&attr_type.to_ne_bytes());
    m.extend_from_slice(value);
    m.resize(total, 0);
    m
}

/// The attributes of the reply to request `seq` in `buf` (`None`: the message answers another
/// request); an error message becomes [`XdpFeaturesError::Refused`].
fn decode(buf: &[u8], seq: u32) -> Result<Option<&[u8]>, XdpFeaturesError> {
    let u32_at = |at: usize| -> Option<u32> {
        buf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    if buf.len() < NLMSG_HDRLEN {
        return Err(XdpFeaturesError::Malformed("short header"));
    }
    let len = u32_at(0).ok_or(XdpFeaturesError::Malformed("short header"))? as usize;
    let kind = buf
        .get(4..6)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(XdpFeaturesError::Malformed("short header"))?;
    if u32_at(8) != Some(seq) {
        return Ok(None);
    }
    let body = buf
        .get(NLMSG_HDRLEN..len.min(buf.len()))
        .ok_or(XdpFeaturesError::Malformed("length beyond the datagram"))?;
    if kind == NLMSG_ERROR {
        let errno = body
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .ok_or(XdpFeaturesError::Malformed("short error"))?;
        return Err(XdpFeaturesError::Refused(
            std::io::Error::from_raw_os_error(errno.saturating_neg()),
        ));
    }
    body.get(GENL_HDRLEN..)
        .map(Some)
        .ok_or(XdpFeaturesError::Malformed("short generic header"))
}

/// The (type, value) attributes in `attrs`, in order; the walk ends at the first header that
/// is short or points past the buffer.
fn attrs(attrs: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = attrs.get(at..at + 4)?;
        let len = usize::from(u16::from_ne_bytes([*h.first()?, *h.get(1)?]));
        let kind = u16::from_ne_bytes([*h.get(2)?, *h.get(3)?]) & NLA_TYPE_MASK;
        if len < 4 {
            return None;
        }
        let value = attrs.get(at + 4..at + len)?;
        at += (len + 3) & !3;
        Some((kind, value))
    })
}

/// The value of the first attribute of type `want` in `attrs`.
fn attr(buf: &[u8], want: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == want).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_found_and_bounds_are_kept() {
        let msg = encode(0x20, 1, 7, NETDEV_A_DEV_IFINDEX, &5u32.to_ne_bytes());
        assert_eq!(msg.len(), 16 + 4 + 8);
        let attrs = msg.get(20..).unwrap();
        assert_eq!(
            attr(attrs, NETDEV_A_DEV_IFINDEX),
            Some(&5u32.to_ne_bytes()[..])
        );
        assert_eq!(attr(attrs, 9), None);
        // A length pointing past the buffer, or below the header, ends the walk.
        assert_eq!(attr(&[200, 0, 1, 0, 1, 2], 1), None);
        assert_eq!(attr(&[2, 0, 1, 0], 1), None);
        assert_eq!(attr(&[], 1), None);
        // Truncated replies are errors, not panics; a foreign sequence number is skipped.
        assert!(decode(&msg[..10], 7).is_err());
        assert!(matches!(decode(&msg, 8), Ok(None)));
        assert!(matches!(decode(&msg, 7), Ok(Some(_))));
    }

    #[test]
    fn loopback_features_are_reported_by_this_kernel() {
        let Ok(mut s) = NetdevSocket::open() else {
            eprintln!("skipped: no netdev netlink family here");
            return;
        };
        // Loopback has no XDP features but is answered; a missing interface is refused.
        let lo = s.features(1).expect("lo");
        assert!(!lo.accepts_redirects());
        assert!(matches!(
            s.features(u32::MAX - 1),
            Err(XdpFeaturesError::Refused(_))
        ));
    }
}
