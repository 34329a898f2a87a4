//! IPv4 multicast addressing: well-known groups and the group → MAC mapping (RFC 1112 §6.4).

use core::net::Ipv4Addr;

use super::MacAddr;

/// ALL-SYSTEMS, destination of general queries (RFC 2236 §2).
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// ALL-ROUTERS, destination of IGMPv2 leaves (RFC 2236 §3).
pub const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);
/// ALL-PIM-ROUTERS, destination of PIM Hellos (RFC 7761 §4.3.1).
pub const ALL_PIM_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 13);
/// IGMPv3-capable routers, destination of v3 reports (RFC 3376 §4.2.14).
pub const IGMPV3_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
/// ALL-SNOOPERS, destination of MRD advertisements and terminations (RFC 4286 §6).
pub const ALL_SNOOPERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 106);

/// 224.0.0.0/4: whether a destination is a group at all.
pub const fn is_multicast(ip: Ipv4Addr) -> bool {
    ip.octets()[0] & 0xf0 == 0xe0
}

/// 224.0.0.0/24, the link-local control block: RFC 4541 §2.1.2(2) says always flood, never
/// snoop-prune.
pub const fn is_link_local_multicast(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 224 && o[1] == 0 && o[2] == 0
}

/// The Ethernet group address carrying an IPv4 group: 01:00:5e plus its low 23 bits
/// (RFC 1112 §6.4). 32 groups share each MAC, so forwarding must key on the IP group.
pub const fn multicast_mac(group: Ipv4Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_drops_the_25th_bit() {
        assert_eq!(
            multicast_mac(Ipv4Addr::new(224, 0, 0, 1)),
            MacAddr([1, 0, 0x5e, 0, 0, 1])
        );
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            MacAddr([1, 0, 0x5e, 1, 2, 3])
        );
        assert_eq!(
            multicast_mac(Ipv4Addr::new(224, 1, 2, 3)),
            multicast_mac(Ipv4Addr::new(239, 129, 2, 3))
        );
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 255, 255, 250)),
            MacAddr([1, 0, 0x5e, 0x7f, 0xff, 0xfa])
        );
    }

    #[test]
    fn classes() {
        assert!(is_multicast(Ipv4Addr::new(224, 0, 0, 0)));
        assert!(is_multicast(Ipv4Addr::new(239, 255, 255, 255)));
        assert!(!is_multicast(Ipv4Addr::new(223, 255, 255, 255)));
        assert!(!is_multicast(Ipv4Addr::new(240, 0, 0, 0)));
        assert!(is_link_local_multicast(ALL_SNOOPERS));
        assert!(!is_link_local_multicast(Ipv4Addr::new(224, 0, 1, 1)));
        assert!(!is_link_local_multicast(Ipv4Addr::new(10, 0, 0, 1)));
    }
}
