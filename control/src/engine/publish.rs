//! Publishing the forwarding table at the cost of the change, not of the table.
//!
//! The engine keeps its [`ForwardingTable`] up to date one (VLAN, group) at a time, but a
//! published snapshot is immutable: copying the whole table for every join, leave or expiry costs
//! O(groups) with an allocation per entry (about 3 ms at 100 000 groups). Instead the engine logs
//! *which* entries changed ([`TableDelta`]) and the [`Publisher`] keeps two tables: the one
//! readers see and a spare (the snapshot published before it). At each publication the spare is
//! brought up to date in place, entry by entry, once no reader holds it any more, and swapped in;
//! only when a reader still holds it, or the change was wholesale (a reconfiguration), is the
//! whole table copied. The published table keeps its type and meaning.
//!
//! The same log serves a consumer that keeps its own copy of the published table: the
//! publisher accumulates every published delta ([`Publisher::unsynced`]) until that consumer
//! says it caught up ([`Publisher::synced`]), so the kernel fast path replans the groups that
//! changed instead of comparing all of them (issue 7: a join at 100 000 groups in microseconds).

use std::sync::{Arc, Weak};

use xsnoop_dataplane::{ForwardingTable, TableHandle};

use super::core::Engine;

/// The delta type lives with the table it describes (the dataplane crate), so the kernel fast
/// path can take the engine's log as a hint; re-exported here, where the engine logs it.
pub use xsnoop_dataplane::table::{TableDelta, MAX_LOGGED_ENTRIES};

/// Logs into `delta` every difference between `old` and `new` (the tables before and after a
/// reconfiguration) and says whether there was any. A reconfiguration recomputes the whole
/// table anyway; logging the differing entries lets the publication copy only those, so a
/// runtime `static add` at 100 000 groups does not also copy the whole table.
pub fn diff_into(old: &ForwardingTable, new: &ForwardingTable, delta: &mut TableDelta) -> bool {
    if old.vlans.len() != new.vlans.len() || new.vlans.keys().any(|v| !old.vlans.contains_key(v)) {
        delta.set_all();
        return true;
    }
    let mut changed = false;
    for (&vlan, n) in &new.vlans {
        let Some(o) = old.vlans.get(&vlan) else {
            continue;
        };
        if o.ports != n.ports
            || o.snooping != n.snooping
            || o.mrouters != n.mrouters
            || o.flood_unregistered != n.flood_unregistered
        {
            delta.vlan(vlan);
            changed = true;
        }
        for (g, e) in &n.groups {
            if o.groups.get(g) != Some(e) {
                delta.group(vlan, *g);
                changed = true;
            }
        }
        for g in o.groups.keys() {
            if !n.groups.contains_key(g) {
                delta.group(vlan, *g);
                changed = true;
            }
        }
    }
    changed
}

/// Brings `stale` up to `current` by copying only the entries `delta` names. False (and `stale`
/// possibly half-updated) when the delta cannot be applied entry by entry: the caller copies
/// the whole table then.
fn apply(stale: &mut ForwardingTable, current: &ForwardingTable, delta: &TableDelta) -> bool {
    if delta.all || stale.vlans.len() != current.vlans.len() {
        return false;
    }
    for vlan in &delta.vlans {
        let (Some(s), Some(c)) = (stale.vlans.get_mut(vlan), current.vlans.get(vlan)) else {
            return false;
        };
        s.ports = c.ports;
        s.snooping = c.snooping;
        s.mrouters = c.mrouters;
        s.flood_unregistered = c.flood_unregistered;
    }
    for (vlan, group) in &delta.groups {
        let (Some(s), Some(c)) = (stale.vlans.get_mut(vlan), current.vlans.get(vlan)) else {
            return false;
        };
        match c.groups.get(group) {
            Some(e) => match s.groups.get_mut(group) {
                Some(old) => old.clone_from(e),
                None => {
                    s.groups.insert(*group, e.clone());
                }
            },
            None => {
                s.groups.remove(group);
            }
        }
    }
    true
}

/// How the last publication was made (the structural cost a test can assert without timing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Entries copied into the reused spare table (0 when the whole table was copied).
    pub entries_copied: usize,
    /// The whole table was copied (first publication, wholesale change, or a reader still held
    /// the spare).
    pub full_copy: bool,
}

/// Publishes the engine's table through a [`TableHandle`] incrementally (see the module doc).
#[derive(Debug)]
pub struct Publisher {
    /// The snapshot replaced by the last publication, to be reused.
    spare: Option<Arc<ForwardingTable>>,
    /// What the spare misses relative to the last published table.
    behind: TableDelta,
    /// Every change published since a consumer of the published table last caught up
    /// ([`Publisher::unsynced`]): the kernel fast path replans only these groups instead of
    /// comparing 100 000 of them. Everything at first.
    unsynced: TableDelta,
    /// The last table this publisher published: a replaced table that is not it (someone else
    /// published in between) is rebuilt in full. Weak, so its address cannot be reused while
    /// compared; it never points at the spare, so `Arc::get_mut` on the spare still works.
    last: Weak<ForwardingTable>,
    /// Publications that copied the whole table.
    full_copies: u64,
    /// Publications that reused the spare.
    reused: u64,
    report: PublishReport,
}

impl Default for Publisher {
    fn default() -> Publisher {
        Publisher {
            spare: None,
            behind: TableDelta::default(),
            unsynced: TableDelta::everything(),
            last: Weak::new(),
            full_copies: 0,
            reused: 0,
            report: PublishReport::default(),
        }
    }
}

impl Publisher {
    /// A publisher with no spare yet (its first publication copies the table).
    pub fn new() -> Publisher {
        Publisher::default()
    }

    /// Publishes `engine`'s table to `handle`; cost O(changed entries) when the spare is free.
    pub fn publish(&mut self, engine: &mut Engine, handle: &TableHandle) -> PublishReport {
        let delta = engine.take_table_delta();
        self.unsynced.merge(&delta);
        let current = engine.table();
        let mut pending = std::mem::take(&mut self.behind);
        pending.merge(&delta);
        let mut copied = None;
        if let Some(mut spare) = self.spare.take() {
            if let Some(t) = Arc::get_mut(&mut spare) {
                if apply(t, current, &pending) {
                    copied = Some(pending.groups.len());
                } else {
                    t.clone_from(current);
                }
                self.spare = Some(spare);
            }
        }
        let next = match self.spare.take() {
            Some(t) => t,
            None => Arc::new(current.clone()),
        };
        let weak = Arc::downgrade(&next);
        let old = handle.swap(next);
        // The replaced table misses this publication's changes, or everything when it was not
        // ours.
        self.behind = if std::ptr::eq(Arc::as_ptr(&old), self.last.as_ptr()) {
            delta
        } else {
            // Someone else's table was in the handle: a consumer may have read it.
            self.unsynced.set_all();
            TableDelta::everything()
        };
        self.last = weak;
        self.spare = Some(old);
        self.report = PublishReport {
            entries_copied: copied.unwrap_or(0),
            full_copy: copied.is_none(),
        };
        if copied.is_some() {
            self.reused += 1;
        } else {
            self.full_copies += 1;
        }
        self.report
    }

    /// Every change published since the last [`Publisher::synced`] (everything before the
    /// first): what a consumer that keeps its own copy of the table, like the kernel fast path,
    /// must look at. Two publications between its syncs are both in it.
    pub fn unsynced(&self) -> &TableDelta {
        &self.unsynced
    }

    /// The consumer now holds the published table: forget what [`Publisher::unsynced`] listed.
    /// Call it only after the consumer succeeded (after a failure it must see them again).
    pub fn synced(&mut self) {
        self.unsynced = TableDelta::default();
    }

    /// Makes [`Publisher::unsynced`] say "everything" (a change the log does not describe
    /// entry by entry, like a reconfiguration that may also change the port map).
    pub fn resync_all(&mut self) {
        self.unsynced.set_all();
    }

    /// How the last publication was made.
    pub fn last_report(&self) -> PublishReport {
        self.report
    }

    /// Publications that copied the whole table, and publications that reused the spare.
    pub fn counts(&self) -> (u64, u64) {
        (self.full_copies, self.reused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use xsnoop_dataplane::{GroupEntry, PortSet, VlanTable};

    fn g(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(239, 1, 1, i)
    }

    fn table(groups: &[(u8, u16)]) -> ForwardingTable {
        let v = VlanTable {
            snooping: true,
            groups: groups
                .iter()
                .map(|&(i, p)| {
                    (
                        g(i),
                        GroupEntry {
                            any_source: [p].into_iter().collect::<PortSet>(),
                            ..GroupEntry::default()
                        },
                    )
                })
                .collect(),
            ..VlanTable::default()
        };
        ForwardingTable {
            vlans: [(1, v)].into_iter().collect(),
        }
    }

    #[test]
    fn diff_logs_exactly_the_changed_entries_and_apply_replays_them() {
        let old = table(&[(1, 1), (2, 2), (3, 3)]);
        let mut new = table(&[(1, 1), (2, 5), (4, 4)]);
        if let Some(v) = new.vlans.get_mut(&1) {
            v.mrouters = [7].into_iter().collect();
        }
        let mut d = TableDelta::default();
        assert!(diff_into(&old, &new, &mut d));
        assert!(!d.all);
        assert_eq!(
            d.groups,
            [(1, g(2)), (1, g(3)), (1, g(4))].into_iter().collect()
        );
        assert_eq!(d.vlans, [1].into_iter().collect());
        let mut stale = old.clone();
        assert!(apply(&mut stale, &new, &d));
        assert_eq!(stale, new);
        let mut none = TableDelta::default();
        assert!(!diff_into(&new, &new, &mut none));
        assert!(none.is_empty());
    }

    #[test]
    fn a_new_vlan_or_an_overflowing_log_means_everything() {
        let old = table(&[(1, 1)]);
        let mut new = old.clone();
        new.vlans.insert(2, VlanTable::default());
        let mut d = TableDelta::default();
        assert!(diff_into(&old, &new, &mut d));
        assert!(d.all);
        assert!(!apply(&mut old.clone(), &new, &d));

        let mut d = TableDelta::default();
        for i in 0..=MAX_LOGGED_ENTRIES {
            let i = u32::try_from(i).unwrap_or(0);
            d.group(1, Ipv4Addr::from(0xEF00_0000 | i));
        }
        assert!(d.all && d.groups.is_empty(), "the log stays bounded");
    }
}
