//! Property tests: on random port maps, tables, link states and frames (built by the wire
//! builders, tagged with any VID, then randomly mutated), the pipeline never panics, egress never
//! contains the ingress port, a down port or a port outside the VLAN, and every egress copy,
//! rewritten for its port, re-parses into the same VLAN with the same L3 bytes (and is the
//! received frame unchanged exactly on the ports `Egress::unchanged_for` names).

use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::forward::{process_with_memo, rewrite_in_place, rewrite_into, FlowMemo, PortVlanConfig};
use crate::table::{GroupEntry, VlanId};
use crate::wire::{parse_frame, ReportV2Builder, L3};

const NPORTS: PortId = 8;
const GROUPS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(239, 1, 1, 1),
    Ipv4Addr::new(239, 2, 2, 2),
    Ipv4Addr::new(224, 0, 0, 251),
    Ipv4Addr::new(232, 1, 1, 1),
];
const SOURCES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(10, 0, 0, 2),
    Ipv4Addr::new(10, 0, 0, 3),
];

fn port_cfg() -> impl Strategy<Value = PortVlanConfig> {
    prop_oneof![
        (1u16..=4).prop_map(|vlan| PortVlanConfig::Access { vlan }),
        (
            prop::collection::vec(1u16..=4, 0..4),
            prop::option::of(1u16..=4)
        )
            .prop_map(|(allowed, native)| PortVlanConfig::Trunk { allowed, native }),
    ]
}

fn mask() -> impl Strategy<Value = PortSet> {
    // One bit beyond the configured ports, so tables naming unknown ports are covered.
    (0u128..(1 << (NPORTS + 1))).prop_map(PortSet::from_bits)
}

fn group_entry() -> impl Strategy<Value = GroupEntry> {
    (
        mask(),
        prop::collection::vec((0..SOURCES.len(), mask()), 0..3),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(any_source, by, flood)| GroupEntry {
            any_source,
            by_source: by
                .into_iter()
                .map(|(i, m)| (SOURCES[i], m))
                .collect::<crate::fasthash::FastMap<_, _>>(),
            flood,
        })
}

fn vlan_table() -> impl Strategy<Value = VlanTable> {
    (
        mask(),
        any::<bool>(),
        mask(),
        mask(),
        prop::collection::vec((0..GROUPS.len(), group_entry()), 0..3),
    )
        .prop_map(
            |(ports, snooping, mrouters, flood_unregistered, groups)| VlanTable {
                ports,
                snooping,
                mrouters,
                flood_unregistered,
                groups: groups.into_iter().map(|(i, g)| (GROUPS[i], g)).collect(),
            },
        )
}

/// VLANs 1..=3 are each in the table with probability 0.85; 4 never is.
fn table() -> impl Strategy<Value = ForwardingTable> {
    prop::collection::vec(prop::option::weighted(0.85, vlan_table()), 3).prop_map(|v| {
        ForwardingTable {
            vlans: (1u16..)
                .zip(v)
                .filter_map(|(id, t)| t.map(|t| (id, t)))
                .collect(),
        }
    })
}

/// Each port down with probability 0.15 (one bit beyond the configured ports too).
fn down() -> impl Strategy<Value = PortSet> {
    prop::collection::vec(prop::bool::weighted(0.15), NPORTS as usize + 1)
        .prop_map(|v| (0..).zip(v).filter_map(|(p, d)| d.then_some(p)).collect())
}

#[derive(Clone, Debug)]
enum Kind {
    Data { src: usize, group: usize },
    ArpRequest,
    Unicast { dst: u8 },
    Report,
    Ipv6Multicast,
    Random(Vec<u8>),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => (0..SOURCES.len(), 0..GROUPS.len()).prop_map(|(src, group)| Kind::Data { src, group }),
        2 => Just(Kind::ArpRequest),
        3 => (1u8..6).prop_map(|dst| Kind::Unicast { dst }),
        1 => Just(Kind::Report),
        1 => Just(Kind::Ipv6Multicast),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Kind::Random),
    ]
}

#[derive(Clone, Debug)]
struct Rx {
    ingress: PortId,
    src: u8,
    kind: Kind,
    /// None: untagged; Some(vid, pcp).
    tag: Option<(u16, u8)>,
    /// (position, xor) pairs applied after building.
    flips: Vec<(usize, u8)>,
    /// Seconds to advance the clock before this frame.
    wait: u64,
}

fn rx() -> impl Strategy<Value = Rx> {
    (
        prop_oneof![9 => 0..NPORTS, 1 => NPORTS..NPORTS + 2],
        1u8..6,
        kind(),
        prop_oneof![
            2 => Just(None),
            2 => (1u16..=4, 0u8..8).prop_map(Some),
            1 => (prop_oneof![Just(0u16), Just(5u16), Just(4095u16)], 0u8..8).prop_map(Some),
        ],
        prop_oneof![
            4 => Just(Vec::new()),
            1 => prop::collection::vec((0usize..80, 1u8..=255), 1..3),
        ],
        prop_oneof![5 => Just(0u64), 1 => 0u64..400],
    )
        .prop_map(|(ingress, src, kind, tag, flips, wait)| Rx {
            ingress,
            src,
            kind,
            tag,
            flips,
            wait,
        })
}

fn build(r: &Rx) -> Vec<u8> {
    let src = host(r.src);
    let mut f = match &r.kind {
        Kind::Data { src: s, group } => udp(src, SOURCES[*s], GROUPS[*group], None),
        Kind::ArpRequest => arp_request(src, None),
        Kind::Unicast { dst } => arp_reply(host(*dst), src, None),
        Kind::Report => to_vec(&ReportV2Builder {
            src_mac: src,
            src_ip: Ipv4Addr::new(10, 0, 0, r.src),
            group: GROUPS[0],
            vlan: None,
        })
        .unwrap(),
        Kind::Ipv6Multicast => raw(
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            src,
            None,
            0x86dd,
            &[0; 40],
        ),
        Kind::Random(b) => b.clone(),
    };
    if let (Some((vid, pcp)), true) = (r.tag, f.len() >= 12) {
        let tci = (u16::from(pcp) << 13) | vid;
        let mut t = vec![0x81, 0x00];
        t.extend_from_slice(&tci.to_be_bytes());
        f.splice(12..12, t);
    }
    for &(at, x) in &r.flips {
        if let Some(b) = f.get_mut(at) {
            *b ^= x;
        }
    }
    f
}

fn check(sw: &mut Switch, r: &Rx) -> Result<(), TestCaseError> {
    sw.now += Duration::from_secs(r.wait);
    let f = build(r);
    let d = sw.rx(r.ingress, &f);
    let parsed = parse_frame(&f);
    match d {
        Decision::Drop(_) => {}
        Decision::Punt { vlan } => {
            let p = parsed.map_err(|e| TestCaseError::fail(format!("punted unparsable: {e}")))?;
            let control = matches!(p.l3, L3::Igmp { .. } | L3::PimHello { .. });
            prop_assert!(control, "punted a non-control frame");
            prop_assert_eq!(sw.ports.ingress_vlan(r.ingress, &p), Ok(vlan));
        }
        Decision::Forward(e) => {
            let p =
                parsed.map_err(|e| TestCaseError::fail(format!("forwarded unparsable: {e}")))?;
            let vlan: VlanId = e.vlan;
            prop_assert_eq!(sw.ports.ingress_vlan(r.ingress, &p), Ok(vlan));
            let control = matches!(p.l3, L3::Igmp { .. } | L3::PimHello { .. });
            prop_assert!(!control, "IGMP forwarded");
            prop_assert!(!e.ports.contains(r.ingress), "egress has the ingress port");
            prop_assert!(
                e.ports.intersection(sw.down).is_empty(),
                "egress has a down port"
            );
            let domain = sw.ports.members(vlan).intersection(
                sw.table
                    .vlans
                    .get(&vlan)
                    .map(|v| v.ports)
                    .unwrap_or_default(),
            );
            prop_assert_eq!(
                e.ports.difference(domain),
                PortSet::EMPTY,
                "egress leaves the VLAN"
            );
            prop_assert_eq!(e.untagged.difference(e.ports), PortSet::EMPTY);
            for port in e.ports.iter() {
                let tag = e
                    .tag_for(port)
                    .ok_or_else(|| TestCaseError::fail("no tag action"))?;
                prop_assert_eq!(Some(tag), sw.ports.egress_tag(port, vlan));
                let mut out = [0u8; 256];
                let n = rewrite_into(&f, tag, &mut out)
                    .map_err(|e| TestCaseError::fail(format!("rewrite: {e}")))?;
                // The worker puts the received frame itself on exactly these ports' rings.
                prop_assert_eq!(
                    e.unchanged_for(p.vlan.map(|t| t.vid)).contains(port),
                    out[..n] == f[..],
                    "unchanged on port {}",
                    port
                );
                let back = parse_frame(&out[..n])
                    .map_err(|e| TestCaseError::fail(format!("re-parse: {e}")))?;
                prop_assert_eq!(
                    sw.ports.ingress_vlan(port, &back),
                    Ok(vlan),
                    "port {}",
                    port
                );
                prop_assert_eq!(&out[back.l3_offset..n], &f[p.l3_offset..]);
                prop_assert_eq!((back.src, back.dst, back.l3), (p.src, p.dst, p.l3));
                let mut buf = [0u8; 300];
                buf[8..8 + f.len()].copy_from_slice(&f);
                let range = rewrite_in_place(&mut buf, 8..8 + f.len(), tag)
                    .map_err(|e| TestCaseError::fail(format!("in place: {e}")))?;
                prop_assert_eq!(&buf[range], &out[..n]);
            }
        }
    }
    Ok(())
}

/// The port map of ports `0..` configured as `cfgs` says (`None`: not a switch port).
fn port_map(cfgs: &[Option<PortVlanConfig>]) -> PortMap {
    PortMap::from_configs(
        cfgs.iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i as PortId, c))),
    )
    .unwrap()
}

/// 512 cases by default; `PROPTEST_CASES` sets a longer soak.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn pipeline_invariants_hold(
        cfgs in prop::collection::vec(prop::option::weighted(0.9, port_cfg()), NPORTS as usize),
        table in table(),
        down in down(),
        frames in prop::collection::vec(rx(), 1..24),
    ) {
        let ports = port_map(&cfgs);
        let mut sw = Switch::new();
        sw.ports = ports;
        sw.table = table;
        sw.down = down;
        for r in &frames {
            check(&mut sw, r)?;
        }
    }

    /// The worker's flow memo is only a shortcut: on any switch and any sequence of frames
    /// (a few frames repeated back to back and interleaved, damaged ones among them, the clock
    /// moving on between some), every decision, the learned stations, the FDB's counters and
    /// the notices to other workers come out as without it.
    #[test]
    fn the_flow_memo_changes_no_decision_and_no_fdb_state(
        cfgs in prop::collection::vec(prop::option::weighted(0.9, port_cfg()), NPORTS as usize),
        table in table(),
        down in down(),
        pool in prop::collection::vec(rx(), 1..6),
        picks in prop::collection::vec((0usize..6, 1usize..5), 1..30),
    ) {
        let ports = port_map(&cfgs);
        // Room for only a few stations, and notices on, so refusals and announcements count.
        let fdb = Fdb::new(crate::forward::FdbConfig {
            capacity: 2,
            announce: true,
            ..Default::default()
        });
        let (mut plain, mut memoed) = (fdb.clone(), fdb);
        let inputs = Inputs { table: &table, ports: &ports, down };
        let mut memo = FlowMemo::default();
        let mut now = Duration::from_secs(1000);
        for (i, times) in picks {
            let r = &pool[i % pool.len()];
            let f = build(r);
            for _ in 0..times {
                now += Duration::from_secs(r.wait);
                let want = process(&inputs, &mut plain, now, r.ingress, &f);
                let got = process_with_memo(&inputs, &mut memoed, now, r.ingress, &f, &mut memo);
                prop_assert_eq!(got, want);
            }
        }
        let sorted = |f: &Fdb| {
            let mut e = f.entries(now);
            e.sort_by_key(|e| (e.vlan, e.mac.0));
            e
        };
        prop_assert_eq!(sorted(&memoed), sorted(&plain));
        prop_assert_eq!(memoed.stats(), plain.stats());
        prop_assert_eq!(
            memoed.take_notices().collect::<Vec<_>>(),
            plain.take_notices().collect::<Vec<_>>()
        );
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), port in 0..NPORTS) {
        let mut sw = Switch::new();
        let _ = sw.rx(port, &bytes);
        let mut out = [0u8; 256];
        for tag in [crate::forward::EgressTag::Untagged, crate::forward::EgressTag::Tagged(7)] {
            let _ = rewrite_into(&bytes, tag, &mut out);
            let mut b = bytes.clone();
            let len = b.len();
            let _ = rewrite_in_place(&mut b, 0..len, tag);
        }
    }
}
