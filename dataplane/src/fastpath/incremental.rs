//! A sync that costs what changed: the planner of [`super::plan`] rerun only where the table
//! moved since the last sync.
//!
//! Why: [`super::plan::desired_with`] builds every key of every VLAN (a `Vec` per key) and
//! [`super::diff::diff`] walks all of them; with 10 000 groups one join took ~15 ms and with
//! 100 000 ~200 ms (release, this machine), against issue 7's "a join is forwarding within a
//! millisecond". [`Tracker`] keeps, per VLAN, the VLAN-wide inputs of its plan
//! (`VlanHead`) and a mirror of the group entries it planned. On the next table:
//!
//! - a VLAN whose head, scope coverage and admission are unchanged has only its changed groups
//!   planned, and only their keys diffed. Which groups changed comes from the caller's hint (a
//!   [`TableDelta`] listing every entry published since the last sync: O(changes), the way a
//!   join at 100 000 groups stays far under a millisecond) or, without one, from comparing
//!   the VLAN group by group (one hash lookup and an equality per group, ~10 MB of reads at
//!   100 000 groups);
//! - anything VLAN-wide (ports, mrouters, `flood_unregistered`, snooping, port map, interface
//!   indexes, admission under `FP_MAX_KEYS`) replans that VLAN whole;
//! - a VLAN that enters the scope is planned whole, one that leaves it (or the table) loses
//!   all its keys; a port that goes down or changes its VLANs replans only the VLANs whose
//!   head it changes;
//! - a first sync, or a sync after a failure ([`Tracker::invalidate`]), replans everything,
//!   exactly as the pure planner does.
//!
//! The pure planner stays the reference: the property test in `incremental_tests.rs` checks
//! that random sequences of tables leave the same applied state, with no extra operation, as
//! the full replan.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::diff::{diff, diff_ranges, KeyRange, MapOp};
use super::plan::{
    self, group_keys, usable_ports, vlan_head, Caps, Desired, EgressSet, Scope, VlanHead,
};
use crate::forward::portmap::{PortMap, MAX_VID, MIN_VID};
use crate::table::{ForwardingTable, GroupEntry, TableDelta, VlanId, VlanTable};
use crate::xdp::abi::{FpKey, FP_KIND_ANY, FP_KIND_SOURCE, FP_UNICAST};

/// What one VLAN's last plan was made from.
#[derive(Clone, Debug)]
struct Memo {
    head: VlanHead,
    /// The VLAN table as planned (groups mirrored one by one on incremental syncs).
    table: VlanTable,
    /// `fp_groups` keys the VLAN needs.
    keys: Keys,
    /// Whether it fit (else it is in `overflowed` and has no keys in the kernel).
    admitted: bool,
}

/// The result of [`Tracker::plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Planned {
    /// The operations, in [`super::diff`]'s safe order.
    pub ops: Vec<MapOp>,
    /// In-scope VLANs left to userspace because `fp_groups` or `fp_unicast` is full.
    pub overflowed: Vec<VlanId>,
    /// Whether everything was replanned (first sync, new scope or ports, after a failure).
    pub full: bool,
    /// Groups planned one by one (in VLANs not replanned whole).
    pub groups_replanned: usize,
    /// VLANs replanned whole.
    pub vlans_replanned: usize,
    /// VLANs whose changed groups were taken from the hint, without comparing their groups.
    pub vlans_hinted: usize,
}

/// Remembers what the last plan was made from, so the next one replans only what changed.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    /// The memos describe `applied` exactly (false at first, and after a failed apply).
    valid: bool,
    /// Every in-scope VLAN of the last table, admitted or not.
    vlans: BTreeMap<VlanId, Memo>,
    /// The map capacities the admission rule uses.
    caps: Caps,
    /// Debug builds compare every hint with the full group scan and panic on a group the hint
    /// missed (a stale kernel key); tests of the hinted path alone turn that off. Release
    /// builds never scan when hinted.
    trust_hints: bool,
}

/// How one VLAN is planned this time.
enum Work {
    /// All its keys (new, VLAN-wide change, or admission changed).
    Whole,
    /// Only these groups changed (group, its entry now if still present).
    Groups(Vec<Ipv4Addr>),
}

/// Every `fp_groups` key of VLAN `vid`.
fn vlan_range(vid: VlanId) -> KeyRange {
    let lo = FpKey {
        vlan: vid,
        ..FpKey::default()
    };
    let hi = FpKey {
        vlan: vid,
        kind: u16::MAX,
        group: [u8::MAX; 4],
        source: [u8::MAX; 4],
    };
    lo..=hi
}

/// Group `g`'s keys in VLAN `vid`: its (S,G) keys, then its (*,G) key (the order keys sort in).
fn group_ranges(vid: VlanId, g: Ipv4Addr) -> [KeyRange; 2] {
    let any = Ipv4Addr::UNSPECIFIED;
    let bcast = Ipv4Addr::BROADCAST;
    let g_key = plan::key(vid, FP_KIND_ANY, g, any);
    [
        plan::key(vid, FP_KIND_SOURCE, g, any)..=plan::key(vid, FP_KIND_SOURCE, g, bcast),
        g_key..=g_key,
    ]
}

/// The groups of VLAN `vid` the hint names whose entry really differs between `old` and `new`:
/// O(named groups), whatever the VLAN holds. Correct only if the hint names every changed
/// group (a [`TableDelta`] is complete by contract).
fn hinted_groups(
    vid: VlanId,
    old: &VlanTable,
    new: &VlanTable,
    hint: &TableDelta,
) -> Vec<Ipv4Addr> {
    hint.groups_of(vid)
        .filter(|g| old.groups.get(g) != new.groups.get(g))
        .collect()
}

/// Debug builds: panics when `hinted` (from [`hinted_groups`]) is not exactly what the full
/// scan finds, naming the groups the hint missed. A missed group would keep a stale key in the
/// kernel: frames to a port that left.
fn check_hint(vid: VlanId, old: &VlanTable, new: &VlanTable, hinted: &[Ipv4Addr]) {
    let mut scanned = changed_groups(old, new);
    scanned.sort_unstable();
    let mut hinted = hinted.to_vec();
    hinted.sort_unstable();
    if scanned != hinted {
        let missed: Vec<&Ipv4Addr> = scanned.iter().filter(|g| !hinted.contains(g)).collect();
        panic!("the table delta missed changed groups of VLAN {vid}: {missed:?} (hinted {} groups, the scan found {})", hinted.len(), scanned.len());
    }
}

/// How many `fp_groups` keys a VLAN (or one group) needs, and how many of them are (S,G)
/// keys: the VLAN's `FP_SOURCES` flag says whether any is (see [`plan::vlan_flags`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Keys {
    all: usize,
    sources: usize,
}

impl Keys {
    fn plus(self, o: Keys) -> Keys {
        Keys {
            all: self.all.saturating_add(o.all),
            sources: self.sources.saturating_add(o.sources),
        }
    }
    fn minus(self, o: Keys) -> Keys {
        Keys {
            all: self.all.saturating_sub(o.all),
            sources: self.sources.saturating_sub(o.sources),
        }
    }
}

/// The keys group `g` needs with entry `e` under `head`.
fn group_key_count(vid: VlanId, g: Ipv4Addr, e: Option<&GroupEntry>, head: &VlanHead) -> Keys {
    let mut keys = Vec::new();
    if let Some(e) = e {
        group_keys(vid, g, e, head, &mut keys);
    }
    Keys {
        all: keys.len(),
        sources: keys.iter().filter(|(k, _)| plan::is_source_key(k)).count(),
    }
}

/// The groups whose entry differs between `old` and `new` (added, removed or changed): one
/// lookup per group of `new`, and a scan of `old` only when some group is gone. (Walking both
/// maps side by side, when they iterate in the same order, was measured no faster: at 100 000
/// groups both are ~1 ms, bound by reading ~10 MB of each table.)
pub(super) fn changed_groups(old: &VlanTable, new: &VlanTable) -> Vec<Ipv4Addr> {
    let mut changed = Vec::new();
    let mut matched = 0usize;
    for (g, e) in new.groups.iter() {
        match old.groups.get(g) {
            Some(o) => {
                matched += 1;
                if o != e {
                    changed.push(*g);
                }
            }
            None => changed.push(*g),
        }
    }
    // Removed groups: scan the old ones only until all of them are found.
    let mut missing = old.groups.len().saturating_sub(matched);
    for g in old.groups.keys() {
        if missing == 0 {
            break;
        }
        if !new.groups.contains_key(g) {
            changed.push(*g);
            missing -= 1;
        }
    }
    changed
}

impl Tracker {
    /// A tracker for maps of capacities `caps` (tests: small, so overflow is exercised).
    #[cfg(test)]
    pub(super) fn with_caps(caps: Caps) -> Tracker {
        Tracker {
            caps,
            ..Tracker::default()
        }
    }

    /// The same tracker, taking hints on trust even in debug builds (tests of the hinted path
    /// itself: a wrong hint must show in the result, not in the debug check).
    #[cfg(test)]
    pub(super) fn trusting_hints(self) -> Tracker {
        Tracker {
            trust_hints: true,
            ..self
        }
    }

    /// Forgets everything: the next [`Tracker::plan`] replans the whole table. Call it when
    /// applying the last plan failed part-way (the applied state is then a prefix of it).
    pub fn invalidate(&mut self) {
        self.valid = false;
        self.vlans.clear();
    }

    /// The operations that take `applied` (what the kernel holds, as the last plan left it) to
    /// what [`plan::desired_with`] would compute for these inputs, and the overflowed VLANs.
    /// Assumes the operations will be applied; else call [`Tracker::invalidate`].
    ///
    /// `hint`, when given, must name every (VLAN, group) entry and every VLAN whose own fields
    /// differ between `table` and the table of the last plan (a superset is fine). A VLAN it
    /// names no VLAN-wide change for, whose head is unchanged, then has only the hinted groups
    /// compared and replanned; a hint saying `all`, a VLAN-wide change, a new head or admission,
    /// or no hint compare the VLAN group by group as before. Debug builds check the hint.
    // The planner's inputs plus the hint, each one named at the call: a struct would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &mut self,
        table: &ForwardingTable,
        pm: &PortMap,
        ifindex_of_port: &[u32],
        scope: &Scope,
        unicast: bool,
        applied: &Desired,
        hint: Option<&TableDelta>,
    ) -> Planned {
        let hint = hint.filter(|h| !h.all);
        if *scope == Scope::Off {
            self.invalidate();
            return Planned {
                ops: diff(applied, &Desired::default()),
                full: true,
                ..Planned::default()
            };
        }
        let (usable, ports) = usable_ports(pm, ifindex_of_port);
        // A new scope, unicast setting or port set needs no full replan: each VLAN's head
        // holds what its keys depend on (members and domain cut to the usable ports), a VLAN
        // that left the scope is swept below, and ports, VLAN states and unicast entries are
        // compared whole anyway. So a port going down replans only its VLANs.
        let full = !self.valid;
        if full {
            self.vlans.clear();
        }
        let mut vids: Vec<VlanId> = table.vlans.keys().copied().collect();
        vids.sort_unstable();
        // VLANs whose changed groups came from the hint alone.
        let mut out_hinted = 0usize;
        // Per in-scope VLAN: its head, its table, what to replan, and how many keys it needs.
        let mut work: Vec<(VlanId, VlanHead, &VlanTable, Work, Keys)> = Vec::new();
        for vid in vids {
            let Some(vt) = table.vlans.get(&vid) else {
                continue;
            };
            if !scope.covers(vid) || !(MIN_VID..=MAX_VID).contains(&vid) {
                continue;
            }
            let head = vlan_head(vt, vid, pm, usable, ifindex_of_port);
            let memo = self.vlans.get(&vid).filter(|m| m.head == head);
            let (w, keys) = match memo {
                Some(m) if !head.snooping => (Work::Groups(Vec::new()), m.keys),
                Some(m) => {
                    let changed = match hint {
                        Some(h) if !h.vlans.contains(&vid) => {
                            let hinted = hinted_groups(vid, &m.table, vt, h);
                            if cfg!(debug_assertions) && !self.trust_hints {
                                check_hint(vid, &m.table, vt, &hinted);
                            }
                            out_hinted += 1;
                            hinted
                        }
                        _ => changed_groups(&m.table, vt),
                    };
                    let mut keys = m.keys;
                    for g in &changed {
                        keys = keys
                            .minus(group_key_count(vid, *g, m.table.groups.get(g), &head))
                            .plus(group_key_count(vid, *g, vt.groups.get(g), &head));
                    }
                    (Work::Groups(changed), keys)
                }
                None => {
                    let mut keys = Keys { all: 2, sources: 0 };
                    if head.snooping {
                        for (g, e) in vt.groups.iter() {
                            keys = keys.plus(group_key_count(vid, *g, Some(e), &head));
                        }
                    }
                    (Work::Whole, keys)
                }
            };
            work.push((vid, head, vt, w, keys));
        }

        let mut want = Desired {
            ports,
            ..Desired::default()
        };
        let mut ranges: Vec<KeyRange> = Vec::new();
        let mut out = Planned {
            full,
            vlans_hinted: out_hinted,
            ..Planned::default()
        };
        let (mut total, mut uni_total) = (0usize, 0usize);
        let mut memos: BTreeMap<VlanId, Memo> = BTreeMap::new();
        for (vid, head, vt, w, keys) in work {
            // The same admission rule as the pure planner: in VLAN order, while they fit.
            let uni = head.domain.len();
            let admitted = total + keys.all <= self.caps.keys
                && !(unicast && uni_total + uni > self.caps.unicast);
            let prev = self.vlans.remove(&vid);
            let was_admitted = prev.as_ref().is_some_and(|m| m.admitted);
            if admitted {
                total += keys.all;
                let mut state = head.state;
                state.flags |= plan::vlan_flags(keys.sources > 0);
                if unicast {
                    uni_total += uni;
                    state.flags |= FP_UNICAST;
                    want.unicast.extend(head.unicast(vid));
                }
                want.vlans.insert(vid, state);
            } else {
                out.overflowed.push(vid);
            }
            let memo = match (w, prev) {
                (Work::Groups(changed), Some(mut m)) if admitted == was_admitted => {
                    if admitted && head.snooping {
                        let mut planned = Vec::new();
                        for g in &changed {
                            if let Some(e) = vt.groups.get(g) {
                                group_keys(vid, *g, e, &head, &mut planned);
                            }
                            ranges.extend(group_ranges(vid, *g));
                        }
                        want.maps.extend(planned);
                    }
                    out.groups_replanned += changed.len();
                    for g in changed {
                        match vt.groups.get(&g) {
                            Some(e) => m.table.groups.insert(g, e.clone()),
                            None => m.table.groups.remove(&g),
                        };
                    }
                    m.table.ports = vt.ports;
                    m.table.mrouters = vt.mrouters;
                    m.table.flood_unregistered = vt.flood_unregistered;
                    m.table.snooping = vt.snooping;
                    m.keys = keys;
                    m
                }
                _ => {
                    out.vlans_replanned += 1;
                    ranges.push(vlan_range(vid));
                    if admitted {
                        want.maps.extend(head.keys(vid));
                        if head.snooping {
                            let mut planned = Vec::new();
                            for (g, e) in vt.groups.iter() {
                                group_keys(vid, *g, e, &head, &mut planned);
                            }
                            // Built in bulk from sorted keys, and merged in one pass when it
                            // outweighs the rest (so many VLANs cost no quadratic merging): a
                            // VLAN of 100 000 groups costs no 100 000 single inserts.
                            let mut vlan: BTreeMap<FpKey, EgressSet> =
                                planned.into_iter().collect();
                            if vlan.len() > want.maps.len() {
                                want.maps.append(&mut vlan);
                            } else {
                                want.maps.extend(vlan);
                            }
                        }
                    }
                    Memo {
                        head,
                        table: vt.clone(),
                        keys,
                        admitted,
                    }
                }
            };
            memos.insert(vid, Memo { admitted, ..memo });
        }
        // VLANs gone from the table or the scope: nothing of theirs stays.
        for vid in self.vlans.keys() {
            ranges.push(vlan_range(*vid));
        }
        ranges.sort_unstable_by(|a, b| a.start().cmp(b.start()));
        out.ops = if full {
            // Every key is compared: a failed sync's leftovers outside any VLAN go too.
            diff(applied, &want)
        } else {
            // Every key outside `ranges` belongs to an unchanged group of an unchanged VLAN:
            // the kernel already holds it as planned.
            diff_ranges(applied, &want, &ranges)
        };
        self.vlans = memos;
        self.valid = true;
        out
    }
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
