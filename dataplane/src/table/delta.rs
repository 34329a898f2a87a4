//! What changed in a [`super::ForwardingTable`] between two snapshots, named entry by entry.
//!
//! Why here: the engine that changes the table knows exactly which (VLAN, group) entries it
//! touched, and every consumer of the published table (the publisher's spare snapshot, the
//! kernel fast path) would otherwise have to rediscover them by comparing two tables of up to
//! 100 000 groups. The table's own crate names the delta so that both sides, the control plane
//! that logs it and the dataplane that uses it as a hint, speak of one type.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::VlanId;

/// More logged entries than this and the log gives up and says "everything": a caller that never
/// takes the log must not make it grow with every change.
pub const MAX_LOGGED_ENTRIES: usize = 65_536;

/// What changed in a table since some earlier snapshot: a complete list, or "everything".
///
/// A delta must name *every* entry that differs (naming unchanged ones too is harmless): a
/// consumer that trusts it, like the fast path's incremental sync, leaves anything unnamed as
/// it was, so a missed group means stale forwarding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableDelta {
    /// Anything may have changed (start-up, reconfiguration, an overflowing log).
    pub all: bool,
    /// (VLAN, group) entries inserted, changed or removed.
    pub groups: BTreeSet<(VlanId, Ipv4Addr)>,
    /// VLANs whose own fields (ports, snooping, router ports, flood ports) changed.
    pub vlans: BTreeSet<VlanId>,
}

impl TableDelta {
    /// A delta that says "everything".
    pub fn everything() -> TableDelta {
        TableDelta {
            all: true,
            ..TableDelta::default()
        }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all && self.groups.is_empty() && self.vlans.is_empty()
    }

    /// Logs a change to one (VLAN, group) entry.
    pub fn group(&mut self, vlan: VlanId, group: Ipv4Addr) {
        if !self.all {
            self.groups.insert((vlan, group));
            if self.groups.len() > MAX_LOGGED_ENTRIES {
                self.set_all();
            }
        }
    }

    /// Logs a change to a VLAN's own fields.
    pub fn vlan(&mut self, vlan: VlanId) {
        if !self.all {
            self.vlans.insert(vlan);
        }
    }

    /// Logs a wholesale change.
    pub fn set_all(&mut self) {
        *self = TableDelta::everything();
    }

    /// Adds `other`'s changes to these (a consumer that skipped a snapshot sees both).
    pub fn merge(&mut self, other: &TableDelta) {
        if other.all {
            self.set_all();
            return;
        }
        for &(v, g) in &other.groups {
            self.group(v, g);
        }
        for &v in &other.vlans {
            self.vlan(v);
        }
    }

    /// The logged groups of VLAN `vlan`, in address order (a range of the set: O(log n + k),
    /// whatever the other VLANs logged). Meaningless when [`TableDelta::all`] is set.
    pub fn groups_of(&self, vlan: VlanId) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.groups
            .range((vlan, Ipv4Addr::UNSPECIFIED)..=(vlan, Ipv4Addr::BROADCAST))
            .map(|&(_, g)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(239, 1, 1, i)
    }

    #[test]
    fn merging_keeps_both_logs_and_everything_wins() {
        let mut a = TableDelta::default();
        a.group(1, g(1));
        let mut b = TableDelta::default();
        b.group(1, g(2));
        b.group(2, g(1));
        b.vlan(3);
        a.merge(&b);
        assert_eq!(a.groups.len(), 3);
        assert_eq!(a.vlans, [3].into_iter().collect());
        a.merge(&TableDelta::everything());
        assert!(a.all && a.groups.is_empty());
        a.group(1, g(9));
        assert!(a.groups.is_empty(), "everything stays everything");
        assert!(!a.is_empty());
    }

    #[test]
    fn groups_of_one_vlan_leave_the_neighbours_out() {
        let mut d = TableDelta::default();
        for (v, i) in [(1, 5), (2, 0), (2, 255), (2, 7), (3, 1)] {
            d.group(v, g(i));
        }
        d.group(2, Ipv4Addr::UNSPECIFIED);
        d.group(2, Ipv4Addr::BROADCAST);
        let got: Vec<Ipv4Addr> = d.groups_of(2).collect();
        assert_eq!(
            got,
            vec![
                Ipv4Addr::UNSPECIFIED,
                g(0),
                g(7),
                g(255),
                Ipv4Addr::BROADCAST
            ]
        );
        assert_eq!(d.groups_of(4).count(), 0);
    }

    #[test]
    fn an_overflowing_log_means_everything() {
        let mut d = TableDelta::default();
        for i in 0..=MAX_LOGGED_ENTRIES {
            let i = u32::try_from(i).unwrap_or(0);
            d.group(1, Ipv4Addr::from(0xEF00_0000 | i));
        }
        assert!(d.all && d.groups.is_empty(), "the log stays bounded");
    }
}
