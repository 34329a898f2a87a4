//! Which group addresses snooping learns at all.

use std::net::Ipv4Addr;

use xsnoop_dataplane::wire::is_link_local_multicast;

/// Whether membership of `group` is learned: a multicast address outside 224.0.0.0/24, which is
/// always flooded and never snooped (RFC 4541 §2.1.2(2)).
pub fn is_snoopable_group(group: Ipv4Addr) -> bool {
    group.is_multicast() && !is_link_local_multicast(group)
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
}
