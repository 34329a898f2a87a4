//! The incremental sync against the reference: after every step of a random sequence of tables,
//! port maps, interfaces, scopes and capacities, applying [`Tracker::plan`]'s operations leaves
//! exactly what the pure planner wants, with as many operations as the full diff (none
//! redundant, none missing). With a hint (the entries the steps changed, logged as the engine
//! logs them) the tracker plans exactly what it plans by scanning.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::{Planned, Tracker};
use crate::fastpath::diff::{diff, record};
use crate::fastpath::plan::{desired_capped, Caps, Desired, Scope};
use crate::forward::portmap::{PortMap, PortVlanConfig};
use crate::portset::{PortId, PortSet};
use crate::table::{ForwardingTable, GroupEntry, TableDelta, VlanId, VlanTable};

const VLANS: [VlanId; 3] = [10, 20, 30];
const PORTS: u16 = 6;

fn group(i: u8) -> Ipv4Addr {
    match i % 8 {
        // Never snooped: 224.0.0.0/24 and a unicast address (RFC 4541 §2.1.2 (2)).
        6 => Ipv4Addr::new(224, 0, 0, 251),
        7 => Ipv4Addr::new(10, 1, 1, 1),
        n => Ipv4Addr::new(239, 1, 1, n + 1),
    }
}

fn source(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i % 3 + 1)
}

fn set(bits: u8) -> PortSet {
    (0..PORTS)
        .filter(|p| bits >> p & 1 == 1)
        .collect::<PortSet>()
}

/// One change between two syncs.
#[derive(Clone, Debug)]
enum Step {
    Join {
        v: u8,
        g: u8,
        port: u8,
    },
    Leave {
        v: u8,
        g: u8,
        port: u8,
    },
    Sources {
        v: u8,
        g: u8,
        s: u8,
        bits: u8,
    },
    DropSource {
        v: u8,
        g: u8,
        s: u8,
    },
    Remove {
        v: u8,
        g: u8,
    },
    Flood {
        v: u8,
        g: u8,
        on: bool,
    },
    Mrouters {
        v: u8,
        bits: u8,
    },
    Unreg {
        v: u8,
        bits: u8,
    },
    Snooping {
        v: u8,
        on: bool,
    },
    VlanPorts {
        v: u8,
        bits: u8,
    },
    DropVlan {
        v: u8,
    },
    PortCfg {
        port: u8,
        cfg: u8,
    },
    Ifindex {
        port: u8,
        ifx: u8,
    },
    Scope {
        which: u8,
    },
    Unicast {
        on: bool,
    },
    /// Several changes published as one table.
    Batch(Vec<Step>),
}

fn leaf() -> impl Strategy<Value = Step> {
    let v = 0u8..3;
    let g = 0u8..8;
    prop_oneof![
        6 => (v.clone(), g.clone(), 0u8..6).prop_map(|(v, g, port)| Step::Join { v, g, port }),
        4 => (v.clone(), g.clone(), 0u8..6).prop_map(|(v, g, port)| Step::Leave { v, g, port }),
        3 => (v.clone(), g.clone(), 0u8..3, any::<u8>())
            .prop_map(|(v, g, s, bits)| Step::Sources { v, g, s, bits }),
        1 => (v.clone(), g.clone(), 0u8..3).prop_map(|(v, g, s)| Step::DropSource { v, g, s }),
        2 => (v.clone(), g.clone()).prop_map(|(v, g)| Step::Remove { v, g }),
        1 => (v.clone(), g, any::<bool>()).prop_map(|(v, g, on)| Step::Flood { v, g, on }),
        1 => (v.clone(), any::<u8>()).prop_map(|(v, bits)| Step::Mrouters { v, bits }),
        1 => (v.clone(), any::<u8>()).prop_map(|(v, bits)| Step::Unreg { v, bits }),
        1 => (v.clone(), any::<bool>()).prop_map(|(v, on)| Step::Snooping { v, on }),
        1 => (v.clone(), any::<u8>()).prop_map(|(v, bits)| Step::VlanPorts { v, bits }),
        1 => v.prop_map(|v| Step::DropVlan { v }),
        1 => (0u8..6, 0u8..4).prop_map(|(port, cfg)| Step::PortCfg { port, cfg }),
        1 => (0u8..6, 0u8..3).prop_map(|(port, ifx)| Step::Ifindex { port, ifx }),
        1 => (0u8..4).prop_map(|which| Step::Scope { which }),
        1 => any::<bool>().prop_map(|on| Step::Unicast { on }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => leaf(),
        1 => prop::collection::vec(leaf(), 2..6).prop_map(Step::Batch),
    ]
}

/// Everything the fast path is synced from.
struct World {
    table: ForwardingTable,
    cfgs: Vec<PortVlanConfig>,
    ifx: Vec<u32>,
    scope: Scope,
    unicast: bool,
    /// The table entries changed since the last sync, logged per step like the engine does
    /// (a no-op step may log an entry that did not change: a hint may be a superset).
    delta: TableDelta,
}

fn port_cfg(which: u8) -> PortVlanConfig {
    match which {
        0 => PortVlanConfig::Access { vlan: 10 },
        1 => PortVlanConfig::Access { vlan: 20 },
        2 => PortVlanConfig::Trunk {
            allowed: vec![10, 20, 30],
            native: None,
        },
        _ => PortVlanConfig::Trunk {
            allowed: vec![10, 30],
            native: Some(10),
        },
    }
}

impl World {
    fn new() -> World {
        World {
            table: ForwardingTable::default(),
            cfgs: (0..PORTS)
                .map(|p| port_cfg(u8::try_from(p % 4).unwrap()))
                .collect(),
            ifx: (0..u32::from(PORTS)).map(|p| 100 + p).collect(),
            scope: Scope::All,
            unicast: false,
            delta: TableDelta::default(),
        }
    }

    /// `tracker`'s plan for this world, from `applied`, told `hint`.
    fn plan(&self, tracker: &mut Tracker, applied: &Desired, hint: Option<&TableDelta>) -> Planned {
        let pm = self.pm();
        tracker.plan(
            &self.table,
            &pm,
            &self.ifx,
            &self.scope,
            self.unicast,
            applied,
            hint,
        )
    }

    fn pm(&self) -> PortMap {
        PortMap::from_configs(
            self.cfgs
                .iter()
                .enumerate()
                .map(|(p, c)| (PortId::try_from(p).unwrap(), c)),
        )
        .unwrap()
    }

    fn vlan(&mut self, v: u8) -> &mut VlanTable {
        let vid = VLANS[usize::from(v) % VLANS.len()];
        if !self.table.vlans.contains_key(&vid) {
            self.delta.vlan(vid);
        }
        self.table.vlans.entry(vid).or_insert_with(|| VlanTable {
            ports: set(0b11_1111),
            snooping: true,
            ..VlanTable::default()
        })
    }

    /// Logs what step `s` changes in the table, as the engine would.
    fn log(&mut self, s: &Step) {
        let vid = |v: &u8| VLANS[usize::from(*v) % VLANS.len()];
        match s {
            Step::Join { v, g, .. }
            | Step::Leave { v, g, .. }
            | Step::Sources { v, g, .. }
            | Step::DropSource { v, g, .. }
            | Step::Remove { v, g }
            | Step::Flood { v, g, .. } => self.delta.group(vid(v), group(*g)),
            Step::Mrouters { v, .. }
            | Step::Unreg { v, .. }
            | Step::Snooping { v, .. }
            | Step::VlanPorts { v, .. }
            | Step::DropVlan { v } => self.delta.vlan(vid(v)),
            // Port map, interfaces, scope and the unicast setting are not table entries.
            Step::PortCfg { .. }
            | Step::Ifindex { .. }
            | Step::Scope { .. }
            | Step::Unicast { .. } => {}
            Step::Batch(steps) => steps.iter().for_each(|s| self.log(s)),
        }
    }

    fn apply(&mut self, s: &Step) {
        self.log(s);
        match s {
            Step::Join { v, g, port } => {
                let e = self.vlan(*v).groups.entry(group(*g)).or_default();
                e.any_source.insert(PortId::from(*port));
            }
            Step::Leave { v, g, port } => {
                if let Some(e) = self.vlan(*v).groups.get_mut(&group(*g)) {
                    e.any_source.remove(PortId::from(*port));
                }
            }
            Step::Sources { v, g, s, bits } => {
                let e = self.vlan(*v).groups.entry(group(*g)).or_default();
                e.by_source.insert(source(*s), set(*bits));
            }
            Step::DropSource { v, g, s } => {
                if let Some(e) = self.vlan(*v).groups.get_mut(&group(*g)) {
                    e.by_source.remove(&source(*s));
                }
            }
            Step::Remove { v, g } => {
                self.vlan(*v).groups.remove(&group(*g));
            }
            Step::Flood { v, g, on } => {
                let e: &mut GroupEntry = self.vlan(*v).groups.entry(group(*g)).or_default();
                e.flood = *on;
            }
            Step::Mrouters { v, bits } => self.vlan(*v).mrouters = set(*bits),
            Step::Unreg { v, bits } => self.vlan(*v).flood_unregistered = set(*bits),
            Step::Snooping { v, on } => self.vlan(*v).snooping = *on,
            Step::VlanPorts { v, bits } => self.vlan(*v).ports = set(*bits),
            Step::DropVlan { v } => {
                self.table
                    .vlans
                    .remove(&VLANS[usize::from(*v) % VLANS.len()]);
            }
            Step::PortCfg { port, cfg } => self.cfgs[usize::from(*port)] = port_cfg(*cfg),
            Step::Ifindex { port, ifx } => {
                self.ifx[usize::from(*port)] = match ifx {
                    0 => 0, // down: out of every egress set
                    1 => 100 + u32::from(*port),
                    _ => 200 + u32::from(*port),
                }
            }
            Step::Scope { which } => {
                self.scope = match which {
                    0 => Scope::Off,
                    1 => Scope::Vlans(BTreeSet::from([10, 20])),
                    _ => Scope::All,
                }
            }
            Step::Unicast { on } => self.unicast = *on,
            Step::Batch(steps) => steps.iter().for_each(|s| self.apply(s)),
        }
    }
}

fn same_maps(a: &Desired, b: &Desired) -> bool {
    a.ports == b.ports && a.vlans == b.vlans && a.maps == b.maps && a.unicast == b.unicast
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn incremental_sync_reaches_what_the_full_replan_wants(
        steps in prop::collection::vec(step(), 1..60),
        keys in 4usize..40,
        unicast_cap in 2usize..14,
    ) {
        let caps = Caps { keys, unicast: unicast_cap };
        let mut world = World::new();
        let mut tracker = Tracker::with_caps(caps);
        let mut applied = Desired::default();
        for (i, s) in steps.iter().enumerate() {
            world.apply(s);
            let pm = world.pm();
            let want = desired_capped(&world.table, &pm, &world.ifx, &world.scope, world.unicast, caps);
            let full_ops = diff(&applied, &want);
            let planned = tracker.plan(&world.table, &pm, &world.ifx, &world.scope, world.unicast, &applied, None);
            for op in &planned.ops {
                record(&mut applied, op);
            }
            prop_assert!(
                same_maps(&applied, &want),
                "step {i} {s:?}: applied {applied:#?}\nwant {want:#?}"
            );
            prop_assert_eq!(&planned.overflowed, &want.overflowed, "step {} {:?}", i, s);
            prop_assert_eq!(planned.ops.len(), full_ops.len(), "step {} {:?}: {:?} vs {:?}", i, s, planned.ops, full_ops);
        }
    }
}

/// How a sync is told what changed.
#[derive(Clone, Copy, Debug)]
enum Sync {
    /// No sync after this step: its changes wait for the next one (two publications, one sync).
    Skip,
    /// No hint: the tracker scans.
    Unhinted,
    /// A hint saying "everything".
    All,
    /// The entries logged since the last sync.
    Hinted,
}

fn sync_mode() -> impl Strategy<Value = Sync> {
    prop_oneof![
        2 => Just(Sync::Skip),
        1 => Just(Sync::Unhinted),
        1 => Just(Sync::All),
        6 => Just(Sync::Hinted),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A tracker that takes the logged entries on trust (no debug scan) plans, step for step,
    /// the very operations of one that scans, and both reach what the full replan wants. Logs
    /// accumulate over skipped syncs; the hint is cleared only after a sync.
    #[test]
    fn a_hinted_sync_plans_what_the_scan_plans(
        steps in prop::collection::vec((step(), sync_mode()), 1..60),
        keys in 4usize..40,
        unicast_cap in 2usize..14,
    ) {
        let caps = Caps { keys, unicast: unicast_cap };
        let mut world = World::new();
        let mut hinted = Tracker::with_caps(caps).trusting_hints();
        let mut scanning = Tracker::with_caps(caps);
        let (mut applied, mut applied_scan) = (Desired::default(), Desired::default());
        let last = steps.len() - 1;
        for (i, (s, mode)) in steps.iter().enumerate() {
            world.apply(s);
            let mode = match mode {
                Sync::Skip if i == last => Sync::Hinted,
                m => *m,
            };
            let hint = match mode {
                Sync::Skip => continue,
                Sync::Unhinted => None,
                Sync::All => Some(TableDelta::everything()),
                Sync::Hinted => Some(world.delta.clone()),
            };
            world.delta = TableDelta::default();
            let pm = world.pm();
            let want = desired_capped(&world.table, &pm, &world.ifx, &world.scope, world.unicast, caps);
            let got = hinted.plan(&world.table, &pm, &world.ifx, &world.scope, world.unicast, &applied, hint.as_ref());
            let scan = scanning.plan(&world.table, &pm, &world.ifx, &world.scope, world.unicast, &applied_scan, None);
            for op in &got.ops {
                record(&mut applied, op);
            }
            for op in &scan.ops {
                record(&mut applied_scan, op);
            }
            prop_assert!(
                same_maps(&applied, &want),
                "step {i} {s:?} {mode:?}: applied {applied:#?}\nwant {want:#?}"
            );
            prop_assert_eq!(&got.ops, &scan.ops, "step {} {:?} {:?}", i, s, mode);
            prop_assert_eq!(&got.overflowed, &want.overflowed, "step {} {:?}", i, s);
            prop_assert_eq!(got.groups_replanned, scan.groups_replanned, "step {} {:?} {:?}", i, s, mode);
            prop_assert_eq!(got.vlans_replanned, scan.vlans_replanned, "step {} {:?} {:?}", i, s, mode);
        }
    }
}

/// A trusted hint is all the tracker looks at: a change it does not name is not planned (what
/// makes a hinted join cost nothing per installed group, and why the hint must be complete).
#[test]
fn a_trusted_hint_is_all_the_tracker_looks_at() {
    let mut world = World::new();
    for g in 0..5u8 {
        world.apply(&Step::Join { v: 0, g, port: 1 });
    }
    world.apply(&Step::Join {
        v: 1,
        g: 0,
        port: 1,
    });
    world.apply(&Step::Join {
        v: 2,
        g: 0,
        port: 2,
    });
    let mut tracker = Tracker::default().trusting_hints();
    let mut applied = Desired::default();
    let first = world.plan(&mut tracker, &applied, None);
    first.ops.iter().for_each(|op| record(&mut applied, op));
    world.delta = TableDelta::default();
    world.apply(&Step::Join {
        v: 0,
        g: 1,
        port: 2,
    });
    world.apply(&Step::Join {
        v: 0,
        g: 2,
        port: 3,
    });
    let mut partial = TableDelta::default();
    partial.group(10, group(1));
    let next = world.plan(&mut tracker, &applied, Some(&partial));
    assert_eq!(
        (next.vlans_hinted, next.groups_replanned),
        (3, 1),
        "{next:?}"
    );
    assert_eq!(next.ops.len(), 1, "only the named group: {:?}", next.ops);
    // The full hint brings in the other one; the unnamed VLANs 20 and 30 stay untouched.
    next.ops.iter().for_each(|op| record(&mut applied, op));
    let rest = world.plan(&mut tracker, &applied, Some(&world.delta));
    assert_eq!(
        (rest.vlans_hinted, rest.groups_replanned),
        (3, 1),
        "{rest:?}"
    );
    assert_eq!(rest.ops.len(), 1, "{:?}", rest.ops);
}

/// Debug builds compare an untrusted hint with the scan: a hint that misses a changed group
/// panics, naming it (in release the scan is skipped).
#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "missed changed groups of VLAN 10: [239.1.1.3]")]
fn debug_builds_catch_a_hint_that_misses_a_group() {
    let mut world = World::new();
    world.apply(&Step::Join {
        v: 0,
        g: 0,
        port: 1,
    });
    let mut tracker = Tracker::default();
    let mut applied = Desired::default();
    let first = world.plan(&mut tracker, &applied, None);
    first.ops.iter().for_each(|op| record(&mut applied, op));
    world.apply(&Step::Join {
        v: 0,
        g: 2,
        port: 2,
    });
    let mut missing = TableDelta::default();
    missing.group(10, group(0));
    world.plan(&mut tracker, &applied, Some(&missing));
}

/// One join in a VLAN of 1 000 groups replans one group, not the VLAN.
#[test]
fn a_join_replans_one_group() {
    let mut world = World::new();
    for g in 0..250u8 {
        for v in 0..3u8 {
            world.apply(&Step::Join { v, g: 0, port: 1 });
        }
        let vt = world.vlan(0);
        vt.groups.insert(
            Ipv4Addr::new(239, 2, g, 1),
            GroupEntry {
                any_source: set(0b110),
                ..GroupEntry::default()
            },
        );
    }
    let mut tracker = Tracker::default();
    let mut applied = Desired::default();
    let first = world.plan(&mut tracker, &applied, None);
    assert!(first.full);
    first.ops.iter().for_each(|op| record(&mut applied, op));
    world.apply(&Step::Join {
        v: 0,
        g: 3,
        port: 2,
    });
    let next = world.plan(&mut tracker, &applied, None);
    assert!(!next.full, "{next:?}");
    assert_eq!(next.groups_replanned, 1, "{next:?}");
    assert_eq!(next.vlans_replanned, 0, "{next:?}");
    assert_eq!(next.ops.len(), 1, "{:?}", next.ops);
    // A VLAN-wide change (an mrouter on port 1, an access port of VLAN 20) replans that VLAN
    // only; one on port 0, outside VLAN 20, changes nothing.
    next.ops.iter().for_each(|op| record(&mut applied, op));
    world.apply(&Step::Mrouters { v: 1, bits: 0b1 });
    let outside = world.plan(&mut tracker, &applied, None);
    assert!(
        outside.ops.is_empty() && outside.vlans_replanned == 0,
        "{outside:?}"
    );
    world.apply(&Step::Mrouters { v: 1, bits: 0b10 });
    let wide = world.plan(&mut tracker, &applied, None);
    assert!(!wide.full);
    assert_eq!(wide.vlans_replanned, 1, "{wide:?}");
    assert_eq!(wide.groups_replanned, 0, "{wide:?}");
    assert!(!wide.ops.is_empty());
}

proptest! {
    /// The side-by-side walk finds exactly the added, removed and changed groups, once each,
    /// whether the two maps iterate in the same order (a clone changed like the original) or
    /// not (another capacity, another hasher seed).
    #[test]
    fn changed_groups_are_found_once_each_in_any_iteration_order(
        base in prop::collection::btree_map(0u16..400, 0u8..8, 0..300),
        edits in prop::collection::vec((0u16..400, prop::option::of(0u8..8)), 0..40),
        layout in 0u8..3,
    ) {
        use super::changed_groups;
        use crate::fasthash::FastMap;
        let g = |i: u16| Ipv4Addr::from(0xef00_0000 + u32::from(i));
        let e = |bits: u8| GroupEntry { any_source: set(bits), ..GroupEntry::default() };
        let old = VlanTable {
            groups: base.iter().map(|(i, b)| (g(*i), e(*b))).collect(),
            ..VlanTable::default()
        };
        let mut new = match layout {
            0 => old.clone(),
            1 => {
                let mut groups = FastMap::with_capacity_and_hasher(2048, Default::default());
                groups.extend(old.groups.iter().map(|(k, v)| (*k, v.clone())));
                VlanTable { groups, ..VlanTable::default() }
            }
            _ => VlanTable {
                groups: old.groups.iter().map(|(k, v)| (*k, v.clone())).collect(),
                ..VlanTable::default()
            },
        };
        for (i, edit) in &edits {
            match edit {
                Some(b) => new.groups.insert(g(*i), e(*b)),
                None => new.groups.remove(&g(*i)),
            };
        }
        let mut want: Vec<Ipv4Addr> = old
            .groups
            .keys()
            .chain(new.groups.keys())
            .filter(|k| old.groups.get(k) != new.groups.get(k))
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut got = changed_groups(&old, &new);
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want);
    }
}
