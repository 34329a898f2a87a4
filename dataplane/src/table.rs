//! The forwarding table: what the control plane tells the dataplane, and nothing more.
//!
//! The control plane (the switch CPU) computes a complete [`ForwardingTable`] from its snooping
//! state and publishes it through a [`TableHandle`]. Workers load the current snapshot without
//! locks (an atomic pointer load) and never see a half-updated table; publishing never waits for
//! readers. The decision rules of RFC 4541 §2.1.2 for multicast data live in
//! [`ForwardingTable::multicast_egress`], so the AF_XDP path, the in-kernel path and `explain` all
//! answer from one function. What changed between two tables is a [`TableDelta`].

mod delta;

pub use delta::{TableDelta, MAX_LOGGED_ENTRIES};

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::fasthash::FastMap;
use crate::portset::{PortId, PortSet};
use crate::wire::is_link_local_multicast;

/// An 802.1Q VLAN id (1..=4094). Untagged frames on an access port belong to its access VLAN.
pub type VlanId = u16;

/// Everything the dataplane needs to forward in one VLAN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VlanTable {
    /// All ports that carry this VLAN (the flood domain).
    pub ports: PortSet,
    /// False when snooping is off in this VLAN: all multicast is flooded like broadcast.
    pub snooping: bool,
    /// Multicast-router ports (learned, or configured `mrouter = "always"`).
    pub mrouters: PortSet,
    /// Ports that also receive unregistered multicast (`flood_unregistered`, RFC 4541 §2.1.2(3)).
    pub flood_unregistered: PortSet,
    /// Registered groups.
    pub groups: FastMap<Ipv4Addr, GroupEntry>,
}

/// The egress ports of one registered (VLAN, group).
///
/// IGMPv3 source filters are folded into two answers (RFC 4541 §2.1.2(7): forward the superset of
/// what the hosts behind a port asked for): `by_source` holds the exact egress set for every source
/// that some port names in an INCLUDE or EXCLUDE list; any other source goes to `any_source`, the
/// ports in EXCLUDE mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupEntry {
    /// Egress ports for a source no port lists.
    pub any_source: PortSet,
    /// Egress ports for sources that some port lists.
    pub by_source: FastMap<Ipv4Addr, PortSet>,
    /// The group could not be admitted because a table limit was hit and the VLAN's policy is
    /// `flood`: its traffic goes to every port of the VLAN.
    pub flood: bool,
}

impl GroupEntry {
    /// Member ports that want traffic from `source` (mrouter ports not included).
    pub fn members_for(&self, source: Ipv4Addr) -> PortSet {
        self.by_source
            .get(&source)
            .copied()
            .unwrap_or(self.any_source)
    }
}

/// Which rule chose the egress ports of a multicast frame (for `explain` and counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MulticastRule {
    /// The VLAN is not configured on the switch: dropped.
    UnknownVlan,
    /// Snooping is disabled in the VLAN: flooded.
    SnoopingDisabled,
    /// 224.0.0.0/24 is never snooped: flooded to all ports (RFC 4541 §2.1.2(2)).
    LinkLocal,
    /// A registered group: members whose filter admits the source, plus mrouter ports
    /// (RFC 4541 §2.1.2(1), (7)).
    Registered,
    /// A group flooded because it overflowed a table limit under the `flood` policy.
    OverflowFlood,
    /// No member: mrouter ports plus `flood_unregistered` ports (RFC 4541 §2.1.2(3)).
    Unregistered,
}

/// A complete, immutable forwarding table for the whole switch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardingTable {
    /// Per-VLAN tables; a VLAN absent here is not configured.
    pub vlans: FastMap<VlanId, VlanTable>,
}

impl ForwardingTable {
    /// The egress ports of a non-IGMP IPv4 multicast frame from `source` to `group` that arrived
    /// on `ingress` in `vlan`, and the rule that chose them. Never includes `ingress`.
    pub fn multicast_egress(
        &self,
        vlan: VlanId,
        ingress: PortId,
        source: Ipv4Addr,
        group: Ipv4Addr,
    ) -> (PortSet, MulticastRule) {
        let Some(v) = self.vlans.get(&vlan) else {
            return (PortSet::EMPTY, MulticastRule::UnknownVlan);
        };
        let (ports, rule) = if !v.snooping {
            (v.ports, MulticastRule::SnoopingDisabled)
        } else if is_link_local_multicast(group) {
            (v.ports, MulticastRule::LinkLocal)
        } else {
            match v.groups.get(&group) {
                Some(g) if g.flood => (v.ports, MulticastRule::OverflowFlood),
                Some(g) => (
                    g.members_for(source).union(v.mrouters),
                    MulticastRule::Registered,
                ),
                None => (
                    v.mrouters.union(v.flood_unregistered),
                    MulticastRule::Unregistered,
                ),
            }
        };
        // Members and mrouters are always ports of the VLAN; the intersection guards against a
        // table that says otherwise.
        (ports.intersection(v.ports).without(ingress), rule)
    }
}

/// The published forwarding table: one writer (the control plane), any number of lock-free readers.
#[derive(Clone, Default)]
pub struct TableHandle(Arc<ArcSwap<ForwardingTable>>);

impl TableHandle {
    /// A handle holding `table`.
    pub fn new(table: ForwardingTable) -> Self {
        TableHandle(Arc::new(ArcSwap::from_pointee(table)))
    }

    /// The current snapshot. Cheap and lock-free; hold it for a batch of frames, not forever.
    pub fn load(&self) -> Guard<Arc<ForwardingTable>> {
        self.0.load()
    }

    /// Replaces the table; readers switch over atomically at their next [`TableHandle::load`].
    pub fn publish(&self, table: ForwardingTable) {
        self.0.store(Arc::new(table));
    }

    /// Publishes `table` and hands back the snapshot it replaces, so a publisher can bring that
    /// one up to date in place once no reader holds it (`Arc::get_mut`) instead of cloning the
    /// whole table for every change: with 100 000 groups a clone costs milliseconds.
    pub fn swap(&self, table: Arc<ForwardingTable>) -> Arc<ForwardingTable> {
        self.0.swap(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(ports: &[PortId]) -> PortSet {
        ports.iter().copied().collect()
    }

    fn table() -> ForwardingTable {
        let mut groups = FastMap::default();
        let s1 = Ipv4Addr::new(10, 0, 0, 1);
        groups.insert(
            Ipv4Addr::new(239, 1, 1, 1),
            GroupEntry {
                any_source: ps(&[1]),
                by_source: [(s1, ps(&[1, 2]))].into_iter().collect(),
                flood: false,
            },
        );
        groups.insert(
            Ipv4Addr::new(239, 9, 9, 9),
            GroupEntry {
                flood: true,
                ..Default::default()
            },
        );
        let v = VlanTable {
            ports: ps(&[0, 1, 2, 3, 4]),
            snooping: true,
            mrouters: ps(&[4]),
            flood_unregistered: ps(&[3]),
            groups,
        };
        ForwardingTable {
            vlans: [(1, v)].into_iter().collect(),
        }
    }

    #[test]
    fn rfc4541_data_forwarding_classes() {
        let t = table();
        let s1 = Ipv4Addr::new(10, 0, 0, 1);
        let s2 = Ipv4Addr::new(10, 0, 0, 2);
        let g = Ipv4Addr::new(239, 1, 1, 1);
        assert_eq!(
            t.multicast_egress(1, 0, s1, g),
            (ps(&[1, 2, 4]), MulticastRule::Registered)
        );
        assert_eq!(
            t.multicast_egress(1, 0, s2, g),
            (ps(&[1, 4]), MulticastRule::Registered)
        );
        assert_eq!(
            t.multicast_egress(1, 0, s1, Ipv4Addr::new(239, 2, 2, 2)),
            (ps(&[3, 4]), MulticastRule::Unregistered)
        );
        assert_eq!(
            t.multicast_egress(1, 0, s1, Ipv4Addr::new(224, 0, 0, 251)),
            (ps(&[1, 2, 3, 4]), MulticastRule::LinkLocal)
        );
        assert_eq!(
            t.multicast_egress(1, 2, s1, Ipv4Addr::new(239, 9, 9, 9)),
            (ps(&[0, 1, 3, 4]), MulticastRule::OverflowFlood)
        );
        assert_eq!(
            t.multicast_egress(7, 0, s1, g),
            (PortSet::EMPTY, MulticastRule::UnknownVlan)
        );
    }

    #[test]
    fn never_back_out_of_the_ingress_port() {
        let t = table();
        let g = Ipv4Addr::new(239, 1, 1, 1);
        let (ports, _) = t.multicast_egress(1, 4, Ipv4Addr::new(10, 0, 0, 1), g);
        assert!(!ports.contains(4));
        assert_eq!(ports, ps(&[1, 2]));
    }

    #[test]
    fn publish_swaps_atomically_for_readers() {
        let h = TableHandle::default();
        let before = h.load();
        h.publish(table());
        assert!(before.vlans.is_empty(), "a held snapshot never changes");
        assert!(h.load().vlans.contains_key(&1));
    }

    #[test]
    fn swap_returns_the_replaced_snapshot_and_frees_it_for_reuse() {
        let h = TableHandle::new(table());
        let mut old = h.swap(Arc::new(ForwardingTable::default()));
        assert!(old.vlans.contains_key(&1), "the replaced table comes back");
        assert!(h.load().vlans.is_empty());
        assert!(
            Arc::get_mut(&mut old).is_some(),
            "no reader holds the replaced table"
        );
        let guard = h.load();
        let mut now_old = h.swap(old);
        assert!(
            Arc::get_mut(&mut now_old).is_none(),
            "a reader's snapshot is never reused under it"
        );
        drop(guard);
        assert!(Arc::get_mut(&mut now_old).is_some());
    }
}
