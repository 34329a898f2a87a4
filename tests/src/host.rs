//! An IGMP host made of real kernel sockets: joins, source-specific joins, source blocks and
//! leaves go through the kernel's own IGMP implementation, so the reports on the wire are what
//! a real Linux host sends (RFC 3376 §5 host side, RFC 2236 §3 for v2, per `force_igmp_version`).
//!
//! A membership lives exactly as long as its [`Membership`] (closing the socket leaves the group).
//! Every constructor takes the namespace and creates its socket inside it.

use std::mem::zeroed;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Result, TestbedError};
use crate::netns::Netns;
use crate::sock;

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(a.octets()),
    }
}

/// The first IPv4 address of interface `name` in the calling thread's namespace
/// (`IP_ADD_SOURCE_MEMBERSHIP` and `IP_BLOCK_SOURCE` name the interface by address).
pub fn iface_ipv4(name: &str) -> Result<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(TestbedError::last_os("getifaddrs"));
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null and points to at least a sockaddr header.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if n.to_bytes() == name.as_bytes() && family == libc::AF_INET {
            // SAFETY: family AF_INET means the storage is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()));
            break;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    found.ok_or_else(|| TestbedError::BadName(format!("interface {name} has no IPv4 address")))
}

fn udp_socket(port: u16) -> Result<UdpSocket> {
    let fd: OwnedFd = sock::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let one: libc::c_int = 1;
    sock::setsockopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &one,
        "SO_REUSEADDR",
    )?;
    // SAFETY: zeroed sockaddr_in is a valid value; fields are set below.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr = in_addr(Ipv4Addr::UNSPECIFIED);
    // SAFETY: `sa` is a valid sockaddr_in of the stated length.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(TestbedError::last_os(format!("bind UDP port {port}")));
    }
    // SAFETY: ownership of the descriptor moves into the UdpSocket.
    Ok(unsafe { UdpSocket::from_raw_fd(fd.into_raw_fd()) })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    /// Any-source membership (IP_ADD_MEMBERSHIP): EXCLUDE {} in RFC 3376 terms.
    Any,
    /// Source-specific membership (IP_ADD_SOURCE_MEMBERSHIP): INCLUDE {source}.
    Source(Ipv4Addr),
}

/// One group membership held by a real kernel socket; dropping it closes the socket, which
/// makes the kernel leave the group (and send the leave/state-change report).
#[derive(Debug)]
pub struct Membership {
    sock: UdpSocket,
    group: Ipv4Addr,
    iface: Ipv4Addr,
    filter: Filter,
}

impl Membership {
    /// Joins `group` on interface `ifname` of `ns` with `IP_ADD_MEMBERSHIP` (any source),
    /// receiving on UDP `port` (0 = any free port, when only the join matters).
    pub fn join(ns: &Netns, ifname: &str, group: Ipv4Addr, port: u16) -> Result<Membership> {
        ns.run(|| -> Result<Membership> {
            let iface = iface_ipv4(ifname)?;
            let sock = udp_socket(port)?;
            let mreq = libc::ip_mreq {
                imr_multiaddr: in_addr(group),
                imr_interface: in_addr(iface),
            };
            sock::setsockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_ADD_MEMBERSHIP,
                &mreq,
                "IP_ADD_MEMBERSHIP",
            )?;
            Ok(Membership {
                sock,
                group,
                iface,
                filter: Filter::Any,
            })
        })?
    }

    /// Joins (`source`, `group`) on `ifname` with `IP_ADD_SOURCE_MEMBERSHIP` (INCLUDE mode).
    pub fn join_source(
        ns: &Netns,
        ifname: &str,
        group: Ipv4Addr,
        source: Ipv4Addr,
        port: u16,
    ) -> Result<Membership> {
        ns.run(|| -> Result<Membership> {
            let iface = iface_ipv4(ifname)?;
            let sock = udp_socket(port)?;
            let m = source_req(group, iface, source);
            sock::setsockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_ADD_SOURCE_MEMBERSHIP,
                &m,
                "IP_ADD_SOURCE_MEMBERSHIP",
            )?;
            Ok(Membership {
                sock,
                group,
                iface,
                filter: Filter::Source(source),
            })
        })?
    }

    /// The group this membership is for.
    pub fn group(&self) -> Ipv4Addr {
        self.group
    }

    /// Blocks `source` on an any-source membership (`IP_BLOCK_SOURCE`): EXCLUDE {source}.
    pub fn block_source(&self, source: Ipv4Addr) -> Result<()> {
        let m = source_req(self.group, self.iface, source);
        sock::setsockopt(
            &self.sock,
            libc::IPPROTO_IP,
            libc::IP_BLOCK_SOURCE,
            &m,
            "IP_BLOCK_SOURCE",
        )
    }

    /// Undoes [`Membership::block_source`] (`IP_UNBLOCK_SOURCE`).
    pub fn unblock_source(&self, source: Ipv4Addr) -> Result<()> {
        let m = source_req(self.group, self.iface, source);
        sock::setsockopt(
            &self.sock,
            libc::IPPROTO_IP,
            libc::IP_UNBLOCK_SOURCE,
            &m,
            "IP_UNBLOCK_SOURCE",
        )
    }

    /// Leaves explicitly (`IP_DROP_MEMBERSHIP` / `IP_DROP_SOURCE_MEMBERSHIP`) before closing.
    pub fn leave(self) -> Result<()> {
        match self.filter {
            Filter::Any => {
                let mreq = libc::ip_mreq {
                    imr_multiaddr: in_addr(self.group),
                    imr_interface: in_addr(self.iface),
                };
                sock::setsockopt(
                    &self.sock,
                    libc::IPPROTO_IP,
                    libc::IP_DROP_MEMBERSHIP,
                    &mreq,
                    "IP_DROP_MEMBERSHIP",
                )
            }
            Filter::Source(s) => {
                let m = source_req(self.group, self.iface, s);
                sock::setsockopt(
                    &self.sock,
                    libc::IPPROTO_IP,
                    libc::IP_DROP_SOURCE_MEMBERSHIP,
                    &m,
                    "IP_DROP_SOURCE_MEMBERSHIP",
                )
            }
        }
    }

    /// Receives one datagram, or `None` when `timeout` passes first.
    pub fn recv(&self, timeout: Duration) -> Result<Option<(Vec<u8>, SocketAddrV4)>> {
        if !sock::poll_readable(&self.sock, sock::ms_until(Instant::now() + timeout))? {
            return Ok(None);
        }
        let mut buf = vec![0u8; 65536];
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .map_err(|e| TestbedError::io("recv_from", e))?;
        buf.truncate(n);
        match from {
            std::net::SocketAddr::V4(a) => Ok(Some((buf, a))),
            std::net::SocketAddr::V6(a) => Err(TestbedError::Parse(format!("IPv6 sender {a}"))),
        }
    }

    /// Counts datagrams arriving until no datagram has come for `quiet` (or `max` total passed).
    pub fn count(&self, quiet: Duration, max: Duration) -> Result<usize> {
        let end = Instant::now() + max;
        let mut n = 0;
        while Instant::now() < end {
            let wait = quiet.min(end.saturating_duration_since(Instant::now()));
            match self.recv(wait)? {
                Some(_) => n += 1,
                None => break,
            }
        }
        Ok(n)
    }
}

fn source_req(group: Ipv4Addr, iface: Ipv4Addr, source: Ipv4Addr) -> libc::ip_mreq_source {
    libc::ip_mreq_source {
        imr_multiaddr: in_addr(group),
        imr_interface: in_addr(iface),
        imr_sourceaddr: in_addr(source),
    }
}

/// A multicast UDP sender bound to one interface (`IP_MULTICAST_IF`), loopback off.
#[derive(Debug)]
pub struct Sender {
    sock: UdpSocket,
}

impl Sender {
    /// A sender on `ifname` of `ns` with IP TTL `ttl`.
    pub fn new(ns: &Netns, ifname: &str, ttl: u8) -> Result<Sender> {
        ns.run(|| -> Result<Sender> {
            let sock = udp_socket(0)?;
            let idx = sock::ifindex(ifname)?;
            let mreqn = libc::ip_mreqn {
                imr_multiaddr: in_addr(Ipv4Addr::UNSPECIFIED),
                imr_address: in_addr(Ipv4Addr::UNSPECIFIED),
                imr_ifindex: i32::try_from(idx)
                    .map_err(|_| TestbedError::BadName(ifname.into()))?,
            };
            sock::setsockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_IF,
                &mreqn,
                "IP_MULTICAST_IF",
            )?;
            let t = libc::c_int::from(ttl);
            sock::setsockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_TTL,
                &t,
                "IP_MULTICAST_TTL",
            )?;
            let zero: libc::c_int = 0;
            sock::setsockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_LOOP,
                &zero,
                "IP_MULTICAST_LOOP",
            )?;
            Ok(Sender { sock })
        })?
    }

    /// Sends one datagram to `group:port`.
    pub fn send(&self, group: Ipv4Addr, port: u16, payload: &[u8]) -> Result<()> {
        self.sock
            .send_to(payload, SocketAddrV4::new(group, port))
            .map(|_| ())
            .map_err(|e| TestbedError::io(format!("send to {group}:{port}"), e))
    }
}
