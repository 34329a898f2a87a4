//! The planner and the diff, without a kernel: tables in, map contents and operations out.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::diff::{diff, record, MapOp};
use super::plan::{desired, key, Desired, DevEntry, EgressProg, EgressSet, Scope};
use crate::fasthash::FastMap;
use crate::forward::portmap::{PortMap, PortVlanConfig};
use crate::portset::{PortId, PortSet};
use crate::table::{ForwardingTable, GroupEntry, VlanTable};
use crate::xdp::abi::{
    FpPort, FpVlan, FP_KIND_ANY, FP_KIND_FLOOD, FP_KIND_SOURCE, FP_KIND_UNREG, FP_ON,
    FP_PORT_ACCESS, FP_PORT_TRUNK, FP_SNOOPING, FP_SOURCES, FP_TAGGED,
};

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const G1: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const G2: Ipv4Addr = Ipv4Addr::new(239, 2, 2, 2);
const S1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const S2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn ps(p: &[PortId]) -> PortSet {
    p.iter().copied().collect()
}

/// Ports 0..=4 access VLAN 10 (ifindex 100 + port).
fn access_ports() -> (PortMap, Vec<u32>) {
    let cfg = PortVlanConfig::Access { vlan: 10 };
    let pm = PortMap::from_configs((0..5).map(|p| (p, &cfg))).unwrap();
    (pm, (0..5).map(|p| 100 + p).collect())
}

fn vlan10(groups: FastMap<Ipv4Addr, GroupEntry>) -> ForwardingTable {
    let v = VlanTable {
        ports: ps(&[0, 1, 2, 3, 4]),
        snooping: true,
        mrouters: ps(&[4]),
        flood_unregistered: ps(&[3]),
        groups,
    };
    ForwardingTable {
        vlans: [(10, v)].into_iter().collect(),
    }
}

fn group(any: &[PortId], by_source: &[(Ipv4Addr, &[PortId])]) -> GroupEntry {
    GroupEntry {
        any_source: ps(any),
        by_source: by_source.iter().map(|(s, p)| (*s, ps(p))).collect(),
        flood: false,
    }
}

/// Untagged egress entries for `ports` (interface 100 + port); shared with the list tests.
pub(super) fn plain(ports: &[PortId]) -> EgressSet {
    ports
        .iter()
        .map(|&p| DevEntry {
            port: p,
            ifindex: 100 + u32::from(p),
            prog: EgressProg::Plain,
        })
        .collect()
}

fn ports_of(d: &Desired, k: super::FpKey) -> Option<Vec<PortId>> {
    d.maps.get(&k).map(|e| e.iter().map(|e| e.port).collect())
}

#[test]
fn every_forwarding_class_gets_exactly_the_ports_of_the_afxdp_rule() {
    let (pm, ifx) = access_ports();
    let groups = [
        (G1, group(&[1], &[(S1, &[1, 2]), (S2, &[1])])),
        (
            G2,
            GroupEntry {
                flood: true,
                ..GroupEntry::default()
            },
        ),
    ]
    .into_iter()
    .collect();
    let t = vlan10(groups);
    let d = desired(&t, &pm, &ifx, &Scope::All);

    // Every port is an access port of VLAN 10.
    for slot in 0..5 {
        assert_eq!(
            d.ports.get(&slot),
            Some(&FpPort {
                pvid: 10,
                mode: FP_PORT_ACCESS,
                pad: 0
            })
        );
    }
    let v = d.vlans.get(&10).unwrap();
    assert_eq!(
        v.flags,
        FP_ON | FP_SNOOPING | FP_SOURCES,
        "no tagged port, no metadata; (S1,G1) has a key"
    );
    assert_eq!(v.members, [0b11111, 0]);

    // The kernel's answer for each frame must equal multicast_egress (which removes the
    // ingress port; the kernel does that with BPF_F_EXCLUDE_INGRESS). Like the kernel, it
    // looks up (S,G) keys only in a VLAN flagged FP_SOURCES.
    let kernel = |s: Ipv4Addr, g: Ipv4Addr| -> Vec<PortId> {
        Some(())
            .filter(|_| v.flags & FP_SOURCES != 0)
            .and_then(|_| ports_of(&d, key(10, FP_KIND_SOURCE, g, s)))
            .or_else(|| ports_of(&d, key(10, FP_KIND_ANY, g, ANY)))
            .or_else(|| ports_of(&d, key(10, FP_KIND_UNREG, ANY, ANY)))
            .unwrap()
    };
    for g in [G1, G2, Ipv4Addr::new(239, 9, 9, 9)] {
        for s in [S1, S2, Ipv4Addr::new(10, 9, 9, 9)] {
            for ingress in 0..5 {
                let (want, _) = t.multicast_egress(10, ingress, s, g);
                let got: PortSet = kernel(s, g).into_iter().collect();
                assert_eq!(got.without(ingress), want, "S={s} G={g} in={ingress}");
            }
        }
    }
    // Exact keys: (S1,G1) differs from (*,G1) = {1,4}; (S2,G1) equals it and gets no key.
    assert_eq!(
        ports_of(&d, key(10, FP_KIND_ANY, G1, ANY)),
        Some(vec![1, 4])
    );
    assert_eq!(
        ports_of(&d, key(10, FP_KIND_SOURCE, G1, S1)),
        Some(vec![1, 2, 4])
    );
    assert_eq!(ports_of(&d, key(10, FP_KIND_SOURCE, G1, S2)), None);
    assert_eq!(
        ports_of(&d, key(10, FP_KIND_ANY, G2, ANY)),
        Some(vec![0, 1, 2, 3, 4]),
        "overflow flood"
    );
    assert_eq!(
        ports_of(&d, key(10, FP_KIND_FLOOD, ANY, ANY)),
        Some(vec![0, 1, 2, 3, 4])
    );
    assert_eq!(
        ports_of(&d, key(10, FP_KIND_UNREG, ANY, ANY)),
        Some(vec![3, 4])
    );
    assert_eq!(d.maps.len(), 5);
    assert_eq!(
        d.maps.get(&key(10, FP_KIND_UNREG, ANY, ANY)),
        Some(&plain(&[3, 4]))
    );
}

#[test]
fn only_a_vlan_with_source_keys_makes_the_kernel_look_them_up() {
    let (pm, ifx) = access_ports();
    let flags = |t: &ForwardingTable| desired(t, &pm, &ifx, &Scope::All).vlans[&10].flags;
    // (*,G) joins only (IGMPv2, or IGMPv3 EXCLUDE {}): no (S,G) key, no (S,G) lookup.
    let mut t = vlan10([(G1, group(&[1, 2], &[]))].into_iter().collect());
    assert_eq!(flags(&t) & FP_SOURCES, 0);
    // A source whose egress equals the any-source set needs no key either.
    t = vlan10([(G1, group(&[1], &[(S1, &[1])]))].into_iter().collect());
    assert_eq!(flags(&t) & FP_SOURCES, 0);
    // INCLUDE {S1} on port 2 beside (*,G1) on port 1: (S1,G1) has its own key.
    t = vlan10([(G1, group(&[1], &[(S1, &[1, 2])]))].into_iter().collect());
    assert_eq!(flags(&t) & FP_SOURCES, FP_SOURCES);
}

#[test]
fn a_member_that_wants_nothing_still_gets_a_key_so_it_is_not_unregistered() {
    let (pm, ifx) = access_ports();
    // INCLUDE {S1} on port 1 only: any other source goes nowhere but the mrouter.
    let mut t = vlan10([(G1, group(&[], &[(S1, &[1])]))].into_iter().collect());
    t.vlans.get_mut(&10).unwrap().mrouters = PortSet::EMPTY;
    let d = desired(&t, &pm, &ifx, &Scope::All);
    assert_eq!(ports_of(&d, key(10, FP_KIND_ANY, G1, ANY)), Some(vec![]));
    assert_eq!(ports_of(&d, key(10, FP_KIND_SOURCE, G1, S1)), Some(vec![1]));
}

#[test]
fn snooping_off_and_link_local_groups_only_flood() {
    let (pm, ifx) = access_ports();
    let mut t = vlan10(
        [
            (G1, group(&[1], &[])),
            (Ipv4Addr::new(224, 0, 0, 251), group(&[2], &[])),
        ]
        .into_iter()
        .collect(),
    );
    let d = desired(&t, &pm, &ifx, &Scope::All);
    assert_eq!(
        ports_of(&d, key(10, FP_KIND_ANY, Ipv4Addr::new(224, 0, 0, 251), ANY)),
        None,
        "224.0.0.0/24 is never looked up"
    );
    t.vlans.get_mut(&10).unwrap().snooping = false;
    let d = desired(&t, &pm, &ifx, &Scope::All);
    assert_eq!(d.vlans.get(&10).unwrap().flags, FP_ON);
    assert_eq!(d.maps.len(), 2, "flood + unregistered only: {:?}", d.maps);
}

#[test]
fn scope_ports_without_ifindex_and_unconfigured_ports_are_left_out() {
    let (pm, mut ifx) = access_ports();
    ifx[2] = 0;
    let t = vlan10([(G1, group(&[1, 2], &[]))].into_iter().collect());
    assert_eq!(desired(&t, &pm, &ifx, &Scope::Off), Desired::default());
    let only = Scope::Vlans(BTreeSet::from([20]));
    assert!(desired(&t, &pm, &ifx, &only).vlans.is_empty());
    let d = desired(&t, &pm, &ifx[..4], &Scope::Vlans(BTreeSet::from([10])));
    assert_eq!(ports_of(&d, key(10, FP_KIND_ANY, G1, ANY)), Some(vec![1]));
    assert_eq!(
        ports_of(&d, key(10, FP_KIND_FLOOD, ANY, ANY)),
        Some(vec![0, 1, 3])
    );
    assert!(!d.ports.contains_key(&2) && !d.ports.contains_key(&4));
    assert_eq!(d.vlans.get(&10).unwrap().members, [0b1011, 0]);
}

#[test]
fn trunk_ports_get_the_tag_program_and_the_vlan_carries_metadata() {
    let access = PortVlanConfig::Access { vlan: 10 };
    let trunk = PortVlanConfig::Trunk {
        allowed: vec![10, 20],
        native: Some(30),
    };
    let pm = PortMap::from_configs([(0, &access), (1, &access), (2, &trunk)]).unwrap();
    let ifx = [100, 101, 102];
    let mut t = vlan10([(G1, group(&[1, 2], &[]))].into_iter().collect());
    let v = t.vlans.get_mut(&10).unwrap();
    v.ports = ps(&[0, 1, 2]);
    v.mrouters = PortSet::EMPTY;
    v.flood_unregistered = PortSet::EMPTY;
    let d = desired(&t, &pm, &ifx, &Scope::All);
    assert_eq!(
        d.ports.get(&2),
        Some(&FpPort {
            pvid: 30,
            mode: FP_PORT_TRUNK,
            pad: 0
        })
    );
    assert_eq!(
        d.vlans.get(&10).unwrap().flags,
        FP_ON | FP_SNOOPING | FP_TAGGED
    );
    let e = d.maps.get(&key(10, FP_KIND_ANY, G1, ANY)).unwrap();
    assert_eq!(
        e.iter().map(|e| (e.port, e.prog)).collect::<Vec<_>>(),
        vec![(1, EgressProg::Untagged), (2, EgressProg::Tag)]
    );
}

fn apply_all(state: &mut Desired, ops: &[MapOp]) {
    for op in ops {
        record(state, op);
    }
}

#[test]
fn diff_of_equal_tables_is_empty_and_replaying_it_reaches_the_target() {
    let (pm, ifx) = access_ports();
    let t = vlan10([(G1, group(&[1], &[(S1, &[1, 2])]))].into_iter().collect());
    let d = desired(&t, &pm, &ifx, &Scope::All);
    assert!(diff(&d, &d).is_empty());
    let ops = diff(&Desired::default(), &d);
    let mut s = Desired::default();
    apply_all(&mut s, &ops);
    s.overflowed = d.overflowed.clone();
    assert_eq!(s, d);
    // Down again: everything goes, ports last.
    let ops = diff(&d, &Desired::default());
    assert!(matches!(ops.last(), Some(MapOp::SetPort { port, .. }) if *port == FpPort::default()));
    apply_all(&mut s, &ops);
    assert_eq!(s, Desired::default());
}

#[test]
fn a_join_changes_only_its_group_and_a_leave_only_removes() {
    let (pm, ifx) = access_ports();
    let before = desired(
        &vlan10([(G1, group(&[1], &[]))].into_iter().collect()),
        &pm,
        &ifx,
        &Scope::All,
    );
    // Port 2 joins G1: one key gets a new egress set, nothing else.
    let joined = desired(
        &vlan10([(G1, group(&[1, 2], &[]))].into_iter().collect()),
        &pm,
        &ifx,
        &Scope::All,
    );
    assert_eq!(
        diff(&before, &joined),
        vec![MapOp::PutMap {
            key: key(10, FP_KIND_ANY, G1, ANY),
            entries: plain(&[1, 2, 4])
        }]
    );
    // A new group G2: one put.
    let two = desired(
        &vlan10(
            [(G1, group(&[1, 2], &[])), (G2, group(&[3], &[]))]
                .into_iter()
                .collect(),
        ),
        &pm,
        &ifx,
        &Scope::All,
    );
    assert_eq!(
        diff(&joined, &two),
        vec![MapOp::PutMap {
            key: key(10, FP_KIND_ANY, G2, ANY),
            entries: plain(&[3, 4])
        }]
    );
    // Everybody leaves G2: its key is deleted (it is unregistered again).
    assert_eq!(
        diff(&two, &joined),
        vec![MapOp::DeleteMap {
            key: key(10, FP_KIND_ANY, G2, ANY)
        }]
    );
}

#[test]
fn order_maps_before_the_vlan_turns_on_and_deletes_after_it_turns_off() {
    let (pm, ifx) = access_ports();
    let t = vlan10([(G1, group(&[1], &[(S1, &[2])]))].into_iter().collect());
    let on = desired(&t, &pm, &ifx, &Scope::All);
    let ops = diff(&Desired::default(), &on);
    let pos = |pred: &dyn Fn(&MapOp) -> bool| ops.iter().position(pred).unwrap();
    let vlan_on = pos(&|o| matches!(o, MapOp::SetVlan { state, .. } if state.flags & FP_ON != 0));
    let last_put = ops
        .iter()
        .rposition(|o| matches!(o, MapOp::PutMap { .. }))
        .unwrap();
    let first_port = pos(&|o| matches!(o, MapOp::SetPort { .. }));
    assert!(first_port < last_put && last_put < vlan_on, "{ops:?}");

    let ops = diff(&on, &Desired::default());
    let vlan_off = ops
        .iter()
        .position(|o| matches!(o, MapOp::SetVlan { state, .. } if *state == FpVlan::default()))
        .unwrap();
    let first_delete = ops
        .iter()
        .position(|o| matches!(o, MapOp::DeleteMap { .. }))
        .unwrap();
    assert!(vlan_off < first_delete, "{ops:?}");
}

#[test]
fn gaining_a_tagged_port_sets_the_metadata_flag_before_the_tag_programs() {
    let access = PortVlanConfig::Access { vlan: 10 };
    let trunk = PortVlanConfig::Trunk {
        allowed: vec![10],
        native: None,
    };
    let ifx = [100, 101, 102];
    let mut t = vlan10([(G1, group(&[1, 2], &[]))].into_iter().collect());
    let v = t.vlans.get_mut(&10).unwrap();
    v.ports = ps(&[0, 1, 2]);
    let pm_a = PortMap::from_configs([(0, &access), (1, &access), (2, &access)]).unwrap();
    let pm_t = PortMap::from_configs([(0, &access), (1, &access), (2, &trunk)]).unwrap();
    let a = desired(&t, &pm_a, &ifx, &Scope::All);
    let b = desired(&t, &pm_t, &ifx, &Scope::All);
    let ops = diff(&a, &b);
    let meta = ops
        .iter()
        .position(|o| matches!(o, MapOp::SetVlan { state, .. } if state.flags & FP_TAGGED != 0))
        .unwrap();
    let tag_put = ops
        .iter()
        .position(|o| {
            matches!(o, MapOp::PutMap { entries, .. }
                if entries.iter().any(|e| e.prog == EgressProg::Tag))
        })
        .unwrap();
    assert!(meta < tag_put, "{ops:?}");
    // And the reverse: the flag goes only after the programs are gone.
    let ops = diff(&b, &a);
    let last_put = ops
        .iter()
        .rposition(|o| matches!(o, MapOp::PutMap { .. }))
        .unwrap();
    let unflag = ops
        .iter()
        .position(|o| matches!(o, MapOp::SetVlan { state, .. } if state.flags & FP_TAGGED == 0))
        .unwrap();
    assert!(last_put < unflag, "{ops:?}");
}

#[test]
fn a_table_too_big_for_the_outer_map_leaves_whole_vlans_to_userspace() {
    let (pm, ifx) = access_ports();
    let groups: FastMap<Ipv4Addr, GroupEntry> = (0..crate::xdp::abi::FP_MAX_KEYS)
        .map(|i| {
            let [_, b, c, d] = i.to_be_bytes();
            (Ipv4Addr::new(239, b, c, d), group(&[1], &[]))
        })
        .collect();
    let t = vlan10(groups);
    let d = desired(&t, &pm, &ifx, &Scope::All);
    assert_eq!(d.overflowed, vec![10]);
    assert!(d.vlans.is_empty() && d.maps.is_empty());
}

#[test]
fn unicast_entries_exist_before_the_vlan_flag_and_go_after_it() {
    use super::plan::desired_with;
    use crate::xdp::abi::{unicast_key, FP_UNICAST};
    let (pm, ifx) = access_ports();
    let t = vlan10(FastMap::default());
    let multicast_only = desired(&t, &pm, &ifx, &Scope::All);
    assert!(multicast_only.unicast.is_empty());
    let on = desired_with(&t, &pm, &ifx, &Scope::All, true);
    assert_eq!(
        on.vlans.get(&10).unwrap().flags,
        FP_ON | FP_SNOOPING | FP_UNICAST
    );
    assert_eq!(on.unicast.len(), 5);
    assert_eq!(
        on.unicast.get(&unicast_key(10, 3)),
        Some(&DevEntry {
            port: 3,
            ifindex: 103,
            prog: EgressProg::Plain
        })
    );
    let ops = diff(&multicast_only, &on);
    let flag = ops
        .iter()
        .position(|o| matches!(o, MapOp::SetVlan { state, .. } if state.flags & FP_UNICAST != 0))
        .unwrap();
    assert!(
        ops[..flag]
            .iter()
            .filter(|o| matches!(o, MapOp::SetUnicast { .. }))
            .count()
            == 5
    );
    let ops = diff(&on, &multicast_only);
    let unflag = ops
        .iter()
        .position(|o| matches!(o, MapOp::SetVlan { .. }))
        .unwrap();
    assert!(
        ops[unflag..]
            .iter()
            .filter(|o| matches!(o, MapOp::DeleteUnicast { .. }))
            .count()
            == 5
    );
}
