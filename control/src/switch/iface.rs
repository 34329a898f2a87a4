//! What run mode asks the kernel about its interfaces: existence, MAC address and link state.
//!
//! Everything is answered in the calling thread's network namespace (ioctls on a datagram
//! socket created here), which is the switch's: `/sys/class/net` would show the namespace
//! sysfs was mounted in, not necessarily ours.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use xsnoop_dataplane::wire::MacAddr;

/// Why an interface question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    /// The name cannot be an interface name (too long, NUL inside).
    #[error("{0:?} is not a valid interface name (at most 15 octets)")]
    BadName(String),
    /// No interface of that name in this network namespace.
    #[error("interface {0} does not exist in this network namespace; check `ip link`, or start xsnoop inside the switch's namespace (ip netns exec NS xsnoop run ...)")]
    Missing(String),
    /// The ioctl socket or the ioctl itself failed.
    #[error("{what} on {ifname}: {source}")]
    Io {
        /// The request.
        what: &'static str,
        /// The interface.
        ifname: String,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// The interface index of `name`, or [`IfaceError::Missing`].
pub fn ifindex(name: &str) -> Result<u32, IfaceError> {
    let c = CString::new(name).map_err(|_| IfaceError::BadName(name.into()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(IfaceError::Missing(name.into()))
    } else {
        Ok(idx)
    }
}

fn ifreq(name: &str) -> Result<libc::ifreq, IfaceError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(IfaceError::BadName(name.into()));
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn ioctl(name: &str, what: &'static str, request: libc::Ioctl) -> Result<libc::ifreq, IfaceError> {
    let mut req = ifreq(name)?;
    let io = |source| IfaceError::Io {
        what,
        ifname: name.into(),
        source,
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is a valid ifreq for this request, living for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODEV) {
            return Err(IfaceError::Missing(name.into()));
        }
        return Err(io(e));
    }
    Ok(req)
}

/// Kernel `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// How many receive queues `name` uses (`ETHTOOL_GCHANNELS`: rx + combined channels); `None`
/// when the driver does not say.
pub fn rx_queues(name: &str) -> Option<u32> {
    let mut req = ifreq(name).ok()?;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    req.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` names the interface and points at `ch`, an ethtool_channels that lives for
    // the duration of the call, as SIOCETHTOOL with ETHTOOL_GCHANNELS expects.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    (rc == 0).then(|| ch.rx_count.saturating_add(ch.combined_count).max(1))
}

/// The MAC address of `name` (`SIOCGIFHWADDR`).
pub fn mac_address(name: &str) -> Result<MacAddr, IfaceError> {
    let req = ioctl(name, "SIOCGIFHWADDR", libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR fills the ifru_hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(MacAddr(mac))
}

/// Whether `name` is administratively up and has carrier (`IFF_UP` and `IFF_RUNNING` from
/// `SIOCGIFFLAGS`): what a switch means by "link up".
pub fn link_up(name: &str) -> Result<bool, IfaceError> {
    let req = ioctl(name, "SIOCGIFFLAGS", libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS fills the ifru_flags member of the union.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// Frames and octets `name` has transmitted (`/sys/class/net/NAME/statistics/tx_packets`
/// and `tx_bytes`): everything the port sent, whether the AF_XDP workers or the kernel's XDP
/// redirect sent it. `None` when sysfs does not say (not mounted for this namespace).
pub fn tx_counters(name: &str) -> Option<(u64, u64)> {
    if name.contains('/') || name.contains("..") {
        return None;
    }
    let read = |what: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{what}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("tx_packets")?, read("tx_bytes")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_and_unknown_names_are_named() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert!(link_up("lo").unwrap());
        assert_eq!(mac_address("lo").unwrap(), MacAddr([0; 6]));
        let e = ifindex("nosuchif0").unwrap_err().to_string();
        assert!(e.contains("nosuchif0") && e.contains("ip link"), "{e}");
        assert!(matches!(link_up("nosuchif0"), Err(IfaceError::Missing(_))));
        assert!(matches!(
            link_up("a-name-longer-than-15"),
            Err(IfaceError::BadName(_))
        ));
    }
}
