//! From the maps as applied to the maps as desired: the list of map operations, in an order that
//! keeps every frame correct while they are applied one by one.
//!
//! The order (each step only after the previous one):
//! 1. new or changed port classifications (a port's frames may start to use the fast path only
//!    once their VLAN is on, step 4);
//! 2. VLANs already on that gain tagged egress ports get `FP_TAGGED` first, so the metadata is
//!    there before any egress program of step 3 reads it;
//! 3. every new or changed egress set: the applier points the key at a replication list that
//!    holds exactly the set — a list another key already uses, a pooled list filled completely
//!    before the key names it (nobody ever sees a half-built set), or the key's own list edited
//!    in place, new ports first and leavers last, so a frame sees a set between old ∩ new and
//!    old ∪ new, and none sees a leaver once the edit returns (`super::lists` has the rules).
//!    None of this touches a map-in-map, which would wait ~10 ms for an RCU grace period;
//! 4. the final VLAN states (a VLAN turns on only now that all its maps exist; one turning off
//!    stops using them now);
//!    Unicast egress entries (`fp_unicast`) are written here too;
//! 5. stale keys (and unicast entries) are deleted (their VLAN is off, or lookups fall back to the key that step 3
//!    already updated: a dropped (S,G) key falls back to (G), a dropped (G) to unregistered);
//! 6. removed ports are cleared.
//!
//! So when `sync` returns, no new frame can reach a port that left; a frame already in flight
//! during the update may still use the previous set: "never to a port that left more than one
//! update ago".

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::xdp::abi::{FpKey, FpPort, FpVlan, FP_ON, FP_TAGGED};

use super::plan::{Desired, DevEntry, EgressSet};
use crate::table::VlanId;

/// One change to the kernel maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Write `fp_ports[slot]` (zeroes = not a fast-path port).
    SetPort {
        /// Port slot.
        slot: u32,
        /// New value.
        port: FpPort,
    },
    /// Write `fp_vlans[vlan]` (zeroes = off).
    SetVlan {
        /// VLAN id.
        vlan: VlanId,
        /// New value.
        state: FpVlan,
    },
    /// Point `key` at a replication list holding exactly `entries`.
    PutMap {
        /// Outer key.
        key: FpKey,
        /// The egress ports.
        entries: EgressSet,
    },
    /// Delete `key` from `fp_groups`.
    DeleteMap {
        /// Outer key.
        key: FpKey,
    },
    /// Write `fp_unicast[key]` (before the VLAN's `FP_UNICAST` turns on).
    SetUnicast {
        /// VLAN × MAX_SLOTS + port.
        key: u32,
        /// The port.
        entry: DevEntry,
    },
    /// Delete `fp_unicast[key]` (after the VLAN stopped using it).
    DeleteUnicast {
        /// VLAN × MAX_SLOTS + port.
        key: u32,
    },
}

/// An inclusive range of `fp_groups` keys (keys sort by VLAN, kind, group, source).
pub type KeyRange = std::ops::RangeInclusive<FpKey>;

/// The operations that turn `old` (what the kernel holds) into `new`, in the safe order above.
/// Empty when the two agree.
pub fn diff(old: &Desired, new: &Desired) -> Vec<MapOp> {
    diff_in(old, new, None)
}

/// [`diff`] with the `fp_groups` keys compared only inside `ranges` (sorted, disjoint); ports,
/// VLAN states and unicast entries are compared whole (they are small). The result equals
/// [`diff`]'s when `old` and `new` agree on every key outside `ranges`: this is how a sync
/// costs what changed, not what the table holds.
pub fn diff_ranges(old: &Desired, new: &Desired, ranges: &[KeyRange]) -> Vec<MapOp> {
    diff_in(old, new, Some(ranges))
}

/// The keys of `m` inside `ranges`, or all of them.
fn keys_in<'a, V>(
    m: &'a BTreeMap<FpKey, V>,
    ranges: Option<&'a [KeyRange]>,
) -> Box<dyn Iterator<Item = (&'a FpKey, &'a V)> + 'a> {
    match ranges {
        None => Box::new(m.iter()),
        Some(r) => Box::new(r.iter().flat_map(move |r| m.range(r.clone()))),
    }
}

fn diff_in(old: &Desired, new: &Desired, ranges: Option<&[KeyRange]>) -> Vec<MapOp> {
    let mut ops = Vec::new();
    // 1. ports added or changed
    for (slot, p) in &new.ports {
        if old.ports.get(slot) != Some(p) {
            ops.push(MapOp::SetPort {
                slot: *slot,
                port: *p,
            });
        }
    }
    // 2. metadata before the egress programs that read it
    for (vid, v) in &new.vlans {
        if let Some(o) = old.vlans.get(vid) {
            if o.flags & FP_ON != 0 && v.flags & FP_TAGGED != 0 && o.flags & FP_TAGGED == 0 {
                let mut state = *o;
                state.flags |= FP_TAGGED;
                ops.push(MapOp::SetVlan { vlan: *vid, state });
            }
        }
    }
    // 3. new and changed egress sets, each complete before it becomes visible
    let gone = compare_keys(
        keys_in(&old.maps, ranges),
        keys_in(&new.maps, ranges),
        &mut ops,
    );
    for (key, entry) in &new.unicast {
        if old.unicast.get(key) != Some(entry) {
            ops.push(MapOp::SetUnicast {
                key: *key,
                entry: *entry,
            });
        }
    }
    // 4. final VLAN states; VLANs no longer present are switched off
    for (vid, v) in &new.vlans {
        if old.vlans.get(vid) != Some(v) {
            ops.push(MapOp::SetVlan {
                vlan: *vid,
                state: *v,
            });
        }
    }
    for vid in old.vlans.keys() {
        if !new.vlans.contains_key(vid) {
            ops.push(MapOp::SetVlan {
                vlan: *vid,
                state: FpVlan::default(),
            });
        }
    }
    // 5. stale keys
    ops.extend(gone.into_iter().map(|key| MapOp::DeleteMap { key }));
    for key in old.unicast.keys() {
        if !new.unicast.contains_key(key) {
            ops.push(MapOp::DeleteUnicast { key: *key });
        }
    }
    // 6. removed ports
    for slot in old.ports.keys() {
        if !new.ports.contains_key(slot) {
            ops.push(MapOp::SetPort {
                slot: *slot,
                port: FpPort::default(),
            });
        }
    }
    ops
}

/// Walks the keys of `old` and `new` (each in key order) together: pushes a `PutMap` for every
/// key `new` has with a set `old` lacks, and returns the keys only `old` has. One pass over both
/// maps rather than a lookup per key: a VLAN-wide change compares 100 000 keys.
fn compare_keys<'a>(
    old: impl Iterator<Item = (&'a FpKey, &'a EgressSet)>,
    new: impl Iterator<Item = (&'a FpKey, &'a EgressSet)>,
    ops: &mut Vec<MapOp>,
) -> Vec<FpKey> {
    let (mut old, mut new) = (old.peekable(), new.peekable());
    let mut gone = Vec::new();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((o, _)), Some((n, _))) => o.cmp(n),
        };
        match order {
            Ordering::Less => gone.extend(old.next().map(|(k, _)| *k)),
            Ordering::Greater => ops.extend(new.next().map(|(k, e)| MapOp::PutMap {
                key: *k,
                entries: e.clone(),
            })),
            Ordering::Equal => {
                if let (Some((_, was)), Some((k, e))) = (old.next(), new.next()) {
                    if was != e {
                        ops.push(MapOp::PutMap {
                            key: *k,
                            entries: e.clone(),
                        });
                    }
                }
            }
        }
    }
    gone
}

/// Records in `state` that `op` was applied, so that after a failure part-way the next diff
/// starts from what the kernel really holds.
pub fn record(state: &mut Desired, op: &MapOp) {
    match op {
        MapOp::SetPort { slot, port } => {
            if *port == FpPort::default() {
                state.ports.remove(slot);
            } else {
                state.ports.insert(*slot, *port);
            }
        }
        MapOp::SetVlan { vlan, state: v } => {
            if *v == FpVlan::default() {
                state.vlans.remove(vlan);
            } else {
                state.vlans.insert(*vlan, *v);
            }
        }
        MapOp::PutMap { key, entries } => match state.maps.get_mut(key) {
            Some(e) => *e = entries.clone(),
            None => {
                state.maps.insert(*key, entries.clone());
            }
        },
        MapOp::DeleteMap { key } => {
            state.maps.remove(key);
        }
        MapOp::SetUnicast { key, entry } => {
            state.unicast.insert(*key, *entry);
        }
        MapOp::DeleteUnicast { key } => {
            state.unicast.remove(key);
        }
    }
}
