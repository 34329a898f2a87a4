//! What the engine promises after every step, checked from the outside: its own invariant
//! report, the control-frame output, the data-forwarding answers of the table, and agreement
//! between the table and the MDB (RFC 3376 §6.3 filter semantics, RFC 4541 §2.1.2 forwarding).
//! Any violation panics so libFuzzer records the input.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use xsnoop_control::engine::model::Version;
use xsnoop_control::engine::{Engine, MdbFilterMode, MrouterMode, Output};
use xsnoop_dataplane::{PortId, PortSet};

use crate::setup::{GROUPS, PORTS, SOURCES};

/// A source no port ever lists: it gets the "any source" answer.
const UNLISTED_SOURCE: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);

fn port_id(engine: &Engine, name: &str) -> PortId {
    let i = engine.config().ports.iter().position(|p| p.name == name);
    let i = i.unwrap_or_else(|| panic!("mdb names unknown port {name}"));
    PortId::try_from(i).unwrap_or_else(|_| panic!("port index {i} out of range"))
}

/// Everything that must hold after one step whose input arrived on `ingress` (port, VLAN), if
/// it was a frame.
pub fn step(engine: &Engine, ingress: Option<(PortId, u16)>, out: &Output) {
    let bad = engine.invariant_violations();
    assert!(bad.is_empty(), "engine invariants broken: {bad:?}");
    assert_eq!(
        *engine.table(),
        engine.recompute_table(),
        "incremental table"
    );
    let now = engine.now();
    if let Some(d) = engine.next_deadline() {
        assert!(d > now, "deadline {d:?} left unprocessed at {now:?}");
    }
    output(engine, ingress, out);
    data_forwarding(engine);
    table_matches_mdb(engine);
}

/// A control frame never goes back out of its ingress port or outside its VLAN (RFC 4541
/// §2.1.1); our queries go only to ports of their VLAN, in a version the VLAN speaks.
fn output(engine: &Engine, ingress: Option<(PortId, u16)>, out: &Output) {
    let t = engine.table();
    if let Some((port, vlan)) = ingress {
        assert!(!out.forward.contains(port), "control frame back to ingress");
        let vports = t.vlans.get(&vlan).map(|v| v.ports).unwrap_or_default();
        assert_eq!(
            out.forward.difference(vports),
            PortSet::EMPTY,
            "forward outside the VLAN"
        );
    } else {
        assert!(out.forward.is_empty(), "forwarding without a frame");
    }
    for tx in &out.transmit {
        let v = t
            .vlans
            .get(&tx.vlan)
            .unwrap_or_else(|| panic!("query into unknown VLAN {}", tx.vlan));
        assert!(!tx.ports.is_empty(), "query to no port");
        assert_eq!(
            tx.ports.difference(v.ports),
            PortSet::EMPTY,
            "query outside VLAN"
        );
        let cfg = engine
            .config()
            .vlans
            .iter()
            .find(|c| c.id == tx.vlan)
            .unwrap_or_else(|| panic!("query into unconfigured VLAN {}", tx.vlan));
        assert!(cfg.querier, "query sent in a VLAN without our querier");
        assert!(tx.query.version <= cfg.igmp_version, "query too new");
        if tx.query.group.is_some() {
            assert_eq!(tx.ports.len(), 1, "group queries go out of one port");
            assert_ne!(tx.query.version, Version::V1, "v1 has no group queries");
        } else {
            assert!(tx.query.sources.is_empty(), "general query with sources");
        }
        if tx.query.version != Version::V3 {
            assert!(tx.query.sources.is_empty(), "sources in a v1/v2 query");
        }
    }
}

/// Data frames never leave by their ingress port nor outside their VLAN.
fn data_forwarding(engine: &Engine) {
    let t = engine.table();
    for (&vlan, v) in &t.vlans {
        for ingress in 0..=PORTS {
            for g in GROUPS.iter() {
                for s in SOURCES.iter().take(2).chain([&UNLISTED_SOURCE]) {
                    let (egress, _) = t.multicast_egress(vlan, ingress, *s, *g);
                    assert!(!egress.contains(ingress), "data back to ingress");
                    assert_eq!(egress.difference(v.ports), PortSet::EMPTY, "data off-VLAN");
                }
            }
        }
    }
}

/// Every member port in the table has a port-group row in the MDB (an expired port-group
/// forwards nothing), and for each source the table's members are exactly the ports whose MDB
/// filter admits it: INCLUDE forwards listed unblocked sources, EXCLUDE all but blocked ones
/// (RFC 3376 §6.3).
fn table_matches_mdb(engine: &Engine) {
    let now = engine.now();
    let mdb = engine.mdb(now);
    let mut rows: BTreeMap<(u16, Ipv4Addr), PortSet> = BTreeMap::new();
    for r in mdb.iter().filter(|r| r.source.is_none()) {
        rows.entry((r.vlan, r.group))
            .or_default()
            .insert(port_id(engine, &r.port));
        if r.filter_mode == MdbFilterMode::Exclude && !r.is_static {
            assert!(
                r.expires_ms.is_some_and(|m| m > 0),
                "EXCLUDE without a group timer: {r:?}"
            );
        }
    }
    for (&vlan, v) in &engine.table().vlans {
        for (g, e) in &v.groups {
            let mut members = e.any_source;
            for p in e.by_source.values() {
                members = members.union(*p);
            }
            let have = rows.get(&(vlan, *g)).copied().unwrap_or_default();
            assert_eq!(
                members.difference(have),
                PortSet::EMPTY,
                "{vlan}/{g}: ports without state forward"
            );
            if e.flood {
                continue;
            }
            for s in SOURCES.iter().chain([&UNLISTED_SOURCE]) {
                let mut want = PortSet::EMPTY;
                for r in mdb
                    .iter()
                    .filter(|r| r.vlan == vlan && r.group == *g && r.source.is_none())
                {
                    let row = mdb.iter().find(|x| {
                        x.vlan == vlan
                            && x.group == *g
                            && x.port == r.port
                            && x.is_static == r.is_static
                            && x.source == Some(*s)
                    });
                    let admits = match r.filter_mode {
                        MdbFilterMode::Include => row.is_some_and(|x| !x.blocked),
                        MdbFilterMode::Exclude => row.is_none_or(|x| !x.blocked),
                    };
                    if admits {
                        want.insert(port_id(engine, &r.port));
                    }
                }
                assert_eq!(
                    e.members_for(*s),
                    want,
                    "{vlan}/{g} source {s}: table vs mdb"
                );
            }
        }
    }
}

/// After silence longer than every interval: nothing learned survives. Only management's static
/// groups and `mrouter = always` ports remain.
pub fn after_silence(engine: &Engine) {
    let learned: Vec<_> = engine
        .mdb(engine.now())
        .into_iter()
        .filter(|r| !r.is_static)
        .collect();
    assert!(learned.is_empty(), "state survived its timers: {learned:?}");
    let cfg = engine.config();
    let always: PortSet = cfg
        .ports
        .iter()
        .enumerate()
        .filter(|(_, p)| p.mrouter == MrouterMode::Always)
        .filter_map(|(i, _)| PortId::try_from(i).ok())
        .collect();
    for (&vlan, v) in &engine.table().vlans {
        for (g, e) in &v.groups {
            assert!(
                cfg.static_groups
                    .iter()
                    .any(|s| s.vlan == vlan && s.group == *g),
                "group {vlan}/{g} survived its timers"
            );
            assert!(!e.flood, "static group {vlan}/{g} flooded");
        }
        assert_eq!(
            v.mrouters.difference(always),
            PortSet::EMPTY,
            "learned router ports survived their timers in VLAN {vlan}"
        );
    }
}
