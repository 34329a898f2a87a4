//! Which group addresses snooping learns at all.

use std::net::Ipv4Addr;

use xsnoop_dataplane::wire::is_link_local_multicast;

/// Whether membership of `group` is learned: a multicast address outside 224.0.0.0/24, which is
/// always flooded and never snooped (RFC 4541 §2.1.2(2)).
pub fn is_snoopable_group(group: Ipv4Addr) -> bool {
    group.is_multicast() && !is_link_local_multicast(group)
}

/// Whether `source` can be the source of multicast data: a unicast host address. 0.0.0.0,
/// broadcast, loopback, multicast and the reserved 240.0.0.0/4 never are (RFC 1112 §4; RFC 1122
/// §3.2.1.3), so a record listing them is broken or hostile and those entries are dropped.
pub fn is_valid_source(source: Ipv4Addr) -> bool {
    !(source.is_unspecified()
        || source.is_broadcast()
        || source.is_loopback()
        || source.is_multicast()
        || source.octets()[0] >= 240)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_unicast_groups_are_not_snooped() {
        assert!(is_snoopable_group(Ipv4Addr::new(239, 1, 1, 1)));
        assert!(is_snoopable_group(Ipv4Addr::new(224, 0, 1, 1)));
        assert!(!is_snoopable_group(Ipv4Addr::new(224, 0, 0, 251)));
        assert!(!is_snoopable_group(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!is_snoopable_group(Ipv4Addr::BROADCAST));
    }

    #[test]
    fn only_unicast_host_addresses_are_sources() {
        assert!(is_valid_source(Ipv4Addr::new(10, 0, 0, 9)));
        for bad in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(239, 1, 1, 1),
            Ipv4Addr::new(240, 0, 0, 1),
        ] {
            assert!(!is_valid_source(bad), "{bad}");
        }
    }
}
