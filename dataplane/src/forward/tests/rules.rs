//! One test per decision rule, through the whole pipeline (`process`), on real frame bytes.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::forward::{
    classify_error, rewrite_into, Counters, DropReason, Egress, EgressTag, ForwardReason, Learn,
};
use crate::table::VlanId;
use crate::wire::igmp::RecordKind;
use crate::wire::{
    checksum, mcast, parse_frame, IgmpRepr, IgmpVersion, LeaveBuilder, MrdAdvertisementBuilder,
    PimHelloBuilder, QueryBuilder, RawIgmpBuilder, RecordSpec, ReportV1Builder, ReportV2Builder,
    ReportV3Builder, WireError,
};

fn fwd(d: Decision) -> Egress {
    match d {
        Decision::Forward(e) => e,
        other => panic!("expected Forward, got {other:?}"),
    }
}

fn report_v2(src: MacAddr, vid: Option<u16>) -> Vec<u8> {
    to_vec(&ReportV2Builder {
        src_mac: src,
        src_ip: Ipv4Addr::new(10, 0, 0, 7),
        group: G_REG,
        vlan: vid.map(|v| VlanTag::new(v, 0)),
    })
    .unwrap()
}

/// Recomputes the IPv4 header checksum of an untagged frame after a test edited the header.
fn fix_ip_checksum(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24] = 0;
    f[25] = 0;
    let c = checksum::checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn igmp_mrd_and_pim_hello_are_punted_in_their_vlan() {
    let mut sw = Switch::new();
    let q = to_vec(&QueryBuilder {
        version: IgmpVersion::V3,
        src_mac: host(30),
        src_ip: Ipv4Addr::new(10, 0, 0, 254),
        group: None,
        sources: &[],
        max_resp: Duration::from_secs(10),
        s_flag: false,
        qrv: 2,
        qqi: Duration::from_secs(125),
        vlan: Some(VlanTag::new(20, 0)),
    })
    .unwrap();
    let v3 = to_vec(&ReportV3Builder {
        src_mac: host(31),
        src_ip: Ipv4Addr::new(10, 0, 0, 31),
        records: &[RecordSpec {
            kind: RecordKind::ChangeToExclude,
            group: G_UNREG,
            sources: &[],
            aux_data: &[],
        }],
        vlan: None,
    })
    .unwrap();
    let v1 = to_vec(&ReportV1Builder {
        src_mac: host(32),
        src_ip: Ipv4Addr::new(10, 0, 0, 32),
        group: G_REG,
        vlan: None,
    })
    .unwrap();
    let leave = to_vec(&LeaveBuilder {
        src_mac: host(33),
        src_ip: Ipv4Addr::new(10, 0, 0, 33),
        group: G_REG,
        vlan: Some(VlanTag::new(10, 0)),
    })
    .unwrap();
    let mrd = to_vec(&MrdAdvertisementBuilder {
        src_mac: host(34),
        src_ip: Ipv4Addr::new(10, 0, 0, 34),
        adv_interval: 20,
        qqi: 125,
        qrv: 2,
        vlan: None,
    })
    .unwrap();
    let pim = to_vec(&PimHelloBuilder {
        src_mac: host(35),
        src_ip: Ipv4Addr::new(10, 0, 0, 35),
        holdtime: 105,
        vlan: Some(VlanTag::new(10, 0)),
    })
    .unwrap();
    let unknown_type = to_vec(&RawIgmpBuilder {
        src_mac: host(36),
        src_ip: Ipv4Addr::new(10, 0, 0, 36),
        dst_ip: mcast::ALL_SYSTEMS,
        msg: IgmpRepr::Unknown { igmp_type: 0x99 },
        vlan: None,
    })
    .unwrap();
    assert_eq!(sw.rx(3, &q), Decision::Punt { vlan: 20 });
    assert_eq!(
        sw.rx(0, &report_v2(host(1), None)),
        Decision::Punt { vlan: 10 }
    );
    assert_eq!(sw.rx(2, &v3), Decision::Punt { vlan: 20 });
    assert_eq!(sw.rx(4, &v1), Decision::Punt { vlan: 10 }, "native VLAN");
    assert_eq!(sw.rx(3, &leave), Decision::Punt { vlan: 10 });
    assert_eq!(sw.rx(1, &mrd), Decision::Punt { vlan: 10 });
    assert_eq!(sw.rx(3, &pim), Decision::Punt { vlan: 10 });
    assert_eq!(
        sw.rx(5, &unknown_type),
        Decision::Punt { vlan: 10 },
        "unknown IGMP types too"
    );
    // IGMP on a port whose VLAN is not allowed is not punted.
    assert_eq!(
        sw.rx(0, &report_v2(host(1), Some(20))),
        Decision::Drop(DropReason::TaggedOnAccess)
    );
    // Punted frames are still sources of learning.
    assert_eq!(sw.fdb.lookup(20, host(30), sw.now), Some(3));
    assert_eq!(sw.fdb.lookup(10, host(1), sw.now), Some(0));
}

#[test]
fn malformed_igmp_is_dropped_never_learned_rfc4541_2_1_1_5() {
    let good = report_v2(host(9), None);
    assert_eq!(parse_frame(&good).map(|_| ()), Ok(()));
    // 14 Ethernet + 24 IPv4 (with Router Alert): IGMP starts at 38.
    let mut bad_igmp_sum = good.clone();
    bad_igmp_sum[38 + 2] ^= 0x01;
    let mut bad_ip_sum = good.clone();
    bad_ip_sum[24] ^= 0x01;
    let mut fragment = good.clone();
    fragment[14 + 6] |= 0x20; // MF
    fix_ip_checksum(&mut fragment);
    let mut past_end = good.clone();
    past_end[14 + 3] += 4; // total length beyond the frame
    fix_ip_checksum(&mut past_end);
    let truncated_igmp = {
        // Total length cut to 2 octets of IGMP.
        let mut f = good.clone();
        f[14 + 3] -= 6;
        fix_ip_checksum(&mut f);
        f.truncate(f.len() - 6);
        f
    };
    for (name, f) in [
        ("bad IGMP checksum", bad_igmp_sum),
        ("bad IP checksum", bad_ip_sum),
        ("fragment", fragment),
        ("length past frame", past_end),
        ("truncated IGMP", truncated_igmp),
    ] {
        let mut sw = Switch::new();
        assert!(
            parse_frame(&f).is_err(),
            "{name}: the parser must refuse it"
        );
        assert_eq!(
            sw.rx(0, &f),
            Decision::Drop(DropReason::MalformedIgmp),
            "{name}"
        );
        assert!(sw.fdb.is_empty(), "{name}: nothing learned from it");
    }
}

#[test]
fn broken_non_igmp_ipv4_is_dropped_rfc4541_2_1_2_6() {
    let mut sw = Switch::new();
    let good = udp(host(1), S_OTHER, G_REG, None);
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;
    assert_eq!(
        sw.rx(0, &bad_sum),
        Decision::Drop(DropReason::BadIpChecksum)
    );
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    fix_ip_checksum(&mut bad_ihl);
    assert_eq!(
        sw.rx(0, &bad_ihl),
        Decision::Drop(DropReason::BadIpv4Header)
    );
    let mut v6_in_v4 = good.clone();
    v6_in_v4[14] = 0x65;
    assert_eq!(
        sw.rx(0, &v6_in_v4),
        Decision::Drop(DropReason::BadIpv4Header)
    );
    // Unicast too: no receiver would accept it.
    let mut uni = raw(host(2), host(1), None, 0x0800, &good[14..]);
    uni[24] ^= 0xff;
    assert_eq!(sw.rx(0, &uni), Decision::Drop(DropReason::BadIpChecksum));
    assert!(sw.fdb.is_empty());
    // The same frame, intact, is forwarded.
    assert!(matches!(sw.rx(0, &good), Decision::Forward(_)));
}

#[test]
fn bad_pim_hello_is_dropped() {
    let mut sw = Switch::new();
    let mut f = to_vec(&PimHelloBuilder {
        src_mac: host(35),
        src_ip: Ipv4Addr::new(10, 0, 0, 35),
        holdtime: 105,
        vlan: None,
    })
    .unwrap();
    let last = f.len() - 1;
    f[last] ^= 0x55;
    assert_eq!(sw.rx(0, &f), Decision::Drop(DropReason::MalformedPim));
}

#[test]
fn l2_damage_qinq_and_runts() {
    let mut sw = Switch::new();
    assert_eq!(
        sw.rx(0, &[0u8; 13]),
        Decision::Drop(DropReason::TruncatedEthernet)
    );
    let tagged = raw(MacAddr::BROADCAST, host(1), Some(10), 0x0806, &[]);
    assert_eq!(
        sw.rx(3, &tagged[..16]),
        Decision::Drop(DropReason::TruncatedVlan)
    );
    let qinq = raw(MacAddr::BROADCAST, host(1), Some(10), 0x8100, &[0, 5, 8, 6]);
    assert_eq!(sw.rx(3, &qinq), Decision::Drop(DropReason::Qinq));
    let ad = raw(MacAddr::BROADCAST, host(1), None, 0x88a8, &[0, 5, 8, 6]);
    assert_eq!(sw.rx(3, &ad), Decision::Drop(DropReason::Qinq));
    assert!(sw.fdb.is_empty());
}

#[test]
fn classify_error_reads_the_protocol_behind_a_tag() {
    let f = to_vec(&ReportV2Builder {
        src_mac: host(1),
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        group: G_REG,
        vlan: Some(VlanTag::new(10, 0)),
    })
    .unwrap();
    assert_eq!(
        classify_error(&f, WireError::BadIpChecksum),
        DropReason::MalformedIgmp
    );
    let u = udp(host(1), S_OTHER, G_REG, Some(10));
    assert_eq!(
        classify_error(&u, WireError::BadIpChecksum),
        DropReason::BadIpChecksum
    );
    assert_eq!(
        classify_error(
            &u[..20],
            WireError::Truncated {
                layer: crate::wire::Layer::Ipv4
            }
        ),
        DropReason::BadIpv4Header
    );
}

#[test]
fn registered_group_goes_to_members_and_mrouters_with_tagging() {
    let mut sw = Switch::new();
    // From access port 0: members {1} + mrouter 3 (trunk, tagged).
    let e = fwd(sw.rx(0, &udp(host(1), S_OTHER, G_REG, None)));
    assert_eq!(e.reason, ForwardReason::McRegistered);
    assert_eq!(e.vlan, 10);
    assert_eq!(e.ports, ps(&[1, 3]));
    assert_eq!(e.tag_for(1), Some(EgressTag::Untagged));
    assert_eq!(e.tag_for(3), Some(EgressTag::Tagged(10)));
    assert_eq!(e.tag_for(0), None);
    // A listed source reaches port 5 as well (RFC 4541 §2.1.2(7) superset).
    let e = fwd(sw.rx(0, &udp(host(1), S_LISTED, G_REG, None)));
    assert_eq!(e.ports, ps(&[1, 3, 5]));
    // Tagged from the trunk mrouter: members only, never back to 3.
    let e = fwd(sw.rx(3, &udp(host(2), S_OTHER, G_REG, Some(10))));
    assert_eq!(e.ports, ps(&[1]));
    assert_eq!(e.untagged, ps(&[1]));
    // The member's link goes down: only the router port remains.
    sw.down = ps(&[1]);
    let e = fwd(sw.rx(0, &udp(host(1), S_OTHER, G_REG, None)));
    assert_eq!(e.ports, ps(&[3]));
}

#[test]
fn unregistered_group_goes_to_mrouters_only_rfc4541_2_1_2_3() {
    let mut sw = Switch::new();
    let e = fwd(sw.rx(0, &udp(host(1), S_OTHER, G_UNREG, None)));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[3]), ForwardReason::McUnregistered)
    );
    let e = fwd(sw.rx(3, &udp(host(2), S_OTHER, G_UNREG, Some(10))));
    assert_eq!(
        e.ports,
        PortSet::EMPTY,
        "the only router port is the ingress"
    );
    // VLAN 20 has no router port: nowhere.
    let e = fwd(sw.rx(2, &udp(host(3), S_OTHER, G_UNREG, None)));
    assert_eq!((e.vlan, e.ports), (20, PortSet::EMPTY));
    let mut c = Counters::default();
    c.record(&Decision::Forward(e));
    assert_eq!(c.forwarded_nowhere(), 1);
}

#[test]
fn link_local_and_unsnooped_multicast_flood_rfc4541_2_1_2_2() {
    let mut sw = Switch::new();
    let mdns = Ipv4Addr::new(224, 0, 0, 251);
    let e = fwd(sw.rx(0, &udp(host(1), S_OTHER, mdns, None)));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[1, 3, 4, 5]), ForwardReason::McLinkLocal)
    );
    assert_eq!(
        e.untagged,
        ps(&[1, 4, 5]),
        "4 sends its native VLAN untagged"
    );
    assert_eq!(e.tagged(), ps(&[3]));
    sw.table.vlans.get_mut(&10).unwrap().snooping = false;
    let e = fwd(sw.rx(0, &udp(host(1), S_OTHER, G_UNREG, None)));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[1, 3, 4, 5]), ForwardReason::McSnoopingDisabled)
    );
}

#[test]
fn broadcast_floods_the_vlan_only() {
    let mut sw = Switch::new();
    let e = fwd(sw.rx(0, &arp_request(host(1), None)));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[1, 3, 4, 5]), ForwardReason::Broadcast)
    );
    let e = fwd(sw.rx(2, &arp_request(host(2), None)));
    assert_eq!((e.vlan, e.ports), (20, ps(&[3, 4])));
    assert_eq!(
        e.untagged,
        PortSet::EMPTY,
        "VLAN 20 leaves both trunks tagged"
    );
    let e = fwd(sw.rx(4, &arp_request(host(3), Some(20))));
    assert_eq!(e.ports, ps(&[2, 3]));
    sw.down = ps(&[3, 5]);
    let e = fwd(sw.rx(0, &arp_request(host(1), None)));
    assert_eq!(e.ports, ps(&[1, 4]), "down ports never egress");
}

#[test]
fn non_ip_multicast_floods_but_reserved_l2_groups_are_not_relayed() {
    let mut sw = Switch::new();
    let v6 = raw(
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        host(1),
        None,
        0x86dd,
        &[0x60; 40],
    );
    let e = fwd(sw.rx(0, &v6));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[1, 3, 4, 5]), ForwardReason::L2Multicast)
    );
    let mrp = raw(
        MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x21]),
        host(1),
        None,
        0x88e3,
        &[0; 30],
    );
    assert_eq!(fwd(sw.rx(0, &mrp)).reason, ForwardReason::L2Multicast);
    for last in [0x00, 0x01, 0x02, 0x03, 0x0e] {
        let f = raw(
            MacAddr([0x01, 0x80, 0xc2, 0, 0, last]),
            host(1),
            None,
            0x88cc,
            &[0; 30],
        );
        assert_eq!(sw.rx(0, &f), Decision::Drop(DropReason::ReservedL2Group));
    }
    // An IPv4 packet to a non-group address inside a group MAC: plain L2 multicast.
    let mut odd = udp(host(1), S_OTHER, G_REG, None);
    odd[30..34].copy_from_slice(&[10, 9, 9, 9]);
    fix_ip_checksum(&mut odd);
    let e = fwd(sw.rx(0, &odd));
    assert_eq!(e.reason, ForwardReason::L2Multicast);
}

#[test]
fn unknown_ethertype_is_an_l2_frame() {
    let mut sw = Switch::new();
    let f = raw(host(2), host(1), None, 0x88b5, b"local experimental");
    let e = fwd(sw.rx(0, &f));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[1, 3, 4, 5]), ForwardReason::UnknownUnicast)
    );
}

#[test]
fn unicast_learning_known_unknown_same_port_and_moves() {
    let mut sw = Switch::new();
    let (a, b) = (host(1), host(2));
    // b unknown: flood.
    let e = fwd(sw.rx(0, &arp_reply(b, a, None)));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[1, 3, 4, 5]), ForwardReason::UnknownUnicast)
    );
    // b answers from trunk 3; a was learned on 0.
    let e = fwd(sw.rx(3, &arp_reply(a, b, Some(10))));
    assert_eq!((e.ports, e.reason), (ps(&[0]), ForwardReason::KnownUnicast));
    assert_eq!(e.tag_for(0), Some(EgressTag::Untagged));
    let e = fwd(sw.rx(0, &arp_reply(b, a, None)));
    assert_eq!(
        (e.ports, e.tag_for(3)),
        (ps(&[3]), Some(EgressTag::Tagged(10)))
    );
    // To a station behind the ingress port: filtered.
    let c = host(3);
    sw.rx(0, &arp_request(c, None));
    assert_eq!(
        sw.rx(0, &arp_reply(c, a, None)),
        Decision::Drop(DropReason::SamePort)
    );
    // a moves to port 5.
    sw.rx(5, &arp_request(a, None));
    assert_eq!(sw.fdb.lookup(10, a, sw.now), Some(5));
    assert_eq!(sw.fdb.stats().moved, 1);
    let e = fwd(sw.rx(3, &arp_reply(a, b, Some(10))));
    assert_eq!(e.ports, ps(&[5]));
    // Same MAC in another VLAN is another station.
    let e = fwd(sw.rx(3, &arp_reply(a, b, Some(20))));
    assert_eq!(e.reason, ForwardReason::UnknownUnicast);
    assert_eq!(e.ports, ps(&[2, 4]));
}

#[test]
fn known_unicast_to_a_down_or_foreign_port_floods_instead() {
    let mut sw = Switch::new();
    let (a, b) = (host(1), host(2));
    sw.rx(1, &arp_request(b, None));
    sw.down = ps(&[1]);
    let e = fwd(sw.rx(0, &arp_reply(b, a, None)));
    assert_eq!(
        (e.ports, e.reason),
        (ps(&[3, 4, 5]), ForwardReason::UnknownUnicast)
    );
    // Port 1 leaves VLAN 10 before the FDB is flushed.
    sw.down = PortSet::EMPTY;
    sw.ports
        .set_port(1, &PortVlanConfig::Access { vlan: 20 })
        .unwrap();
    let e = fwd(sw.rx(0, &arp_reply(b, a, None)));
    assert_eq!(e.reason, ForwardReason::UnknownUnicast);
    assert!(!e.ports.contains(1));
}

#[test]
fn fdb_ageing_through_the_pipeline() {
    let mut sw = Switch::new();
    let (a, b) = (host(1), host(2));
    sw.rx(1, &arp_request(b, None));
    sw.now += Duration::from_secs(299);
    assert_eq!(fwd(sw.rx(0, &arp_reply(b, a, None))).ports, ps(&[1]));
    sw.now += Duration::from_secs(1);
    assert_eq!(
        fwd(sw.rx(0, &arp_reply(b, a, None))).reason,
        ForwardReason::UnknownUnicast,
        "b aged out after 300 s of silence"
    );
    assert_eq!(sw.fdb.flush_port(0), 1, "a is still learned on 0");
}

#[test]
fn vlan_admission_on_access_and_trunk_ports() {
    let mut sw = Switch::new();
    let bc = |vid| arp_request(host(1), vid);
    assert_eq!(
        sw.rx(0, &bc(Some(10))),
        Decision::Drop(DropReason::TaggedOnAccess)
    );
    assert_eq!(fwd(sw.rx(0, &bc(Some(0)))).vlan, 10, "priority-tagged");
    assert_eq!(
        sw.rx(3, &bc(None)),
        Decision::Drop(DropReason::UntaggedOnTrunk)
    );
    assert_eq!(
        sw.rx(3, &bc(Some(0))),
        Decision::Drop(DropReason::UntaggedOnTrunk)
    );
    assert_eq!(
        sw.rx(3, &bc(Some(30))),
        Decision::Drop(DropReason::VlanNotAllowed)
    );
    assert_eq!(
        sw.rx(3, &bc(Some(4095))),
        Decision::Drop(DropReason::ReservedVid)
    );
    assert_eq!(fwd(sw.rx(4, &bc(None))).vlan, 10, "native");
    assert_eq!(fwd(sw.rx(4, &bc(Some(20)))).vlan, 20);
    assert_eq!(sw.rx(9, &bc(None)), Decision::Drop(DropReason::UnknownPort));
    // Admitted by the port map but not in the table.
    assert_eq!(
        sw.rx(6, &bc(None)),
        Decision::Drop(DropReason::VlanNotConfigured)
    );
    assert_eq!(
        sw.rx(4, &bc(Some(30))),
        Decision::Drop(DropReason::VlanNotConfigured)
    );
    // Nothing was learned from refused frames: only the two admitted VLAN 10/20 ones.
    assert_eq!(sw.fdb.len(), 2);
}

#[test]
fn table_ports_outside_the_port_map_vlan_are_never_egress() {
    let mut sw = Switch::new();
    // A table that (wrongly) lists port 2 (access 20) in VLAN 10 as member and mrouter.
    let v = sw.table.vlans.get_mut(&10).unwrap();
    v.ports.insert(2);
    v.mrouters.insert(2);
    let e = fwd(sw.rx(0, &arp_request(host(1), None)));
    assert!(!e.ports.contains(2));
    let e = fwd(sw.rx(0, &udp(host(1), S_OTHER, G_UNREG, None)));
    assert_eq!(e.ports, ps(&[3]));
}

#[test]
fn invalid_sources_are_dropped_and_never_learned() {
    let mut sw = Switch::new();
    for src in [
        MacAddr::ZERO,
        MacAddr::BROADCAST,
        MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
    ] {
        let f = raw(host(2), src, None, 0x0806, &[0; 28]);
        assert_eq!(sw.rx(0, &f), Decision::Drop(DropReason::InvalidSourceMac));
    }
    assert!(sw.fdb.is_empty());
    assert_eq!(
        sw.fdb.learn(10, MacAddr::BROADCAST, 0, sw.now),
        Learn::InvalidMac
    );
}

#[test]
fn ingress_down_is_dropped_before_parsing() {
    let mut sw = Switch::new();
    sw.down = ps(&[0]);
    assert_eq!(sw.rx(0, &[0u8; 3]), Decision::Drop(DropReason::IngressDown));
    assert_eq!(
        sw.rx(0, &arp_request(host(1), None)),
        Decision::Drop(DropReason::IngressDown)
    );
    assert!(sw.fdb.is_empty());
}

#[test]
fn counters_follow_decisions() {
    let mut sw = Switch::new();
    let mut c = Counters::default();
    let frames: Vec<(PortId, Vec<u8>)> = vec![
        (0, report_v2(host(1), None)),
        (0, udp(host(1), S_OTHER, G_REG, None)),
        (0, udp(host(1), S_OTHER, G_REG, None)),
        (0, arp_request(host(1), Some(10))),
        (3, arp_request(host(1), None)),
        (0, arp_request(host(1), None)),
    ];
    for (p, f) in &frames {
        let d = sw.rx(*p, f);
        c.record(&d);
    }
    assert_eq!(c.punts(), 1);
    assert_eq!(c.forwards(ForwardReason::McRegistered), 2);
    assert_eq!(c.forwards(ForwardReason::Broadcast), 1);
    assert_eq!(c.drops(DropReason::TaggedOnAccess), 1);
    assert_eq!(c.drops(DropReason::UntaggedOnTrunk), 1);
    assert_eq!(c.drops(DropReason::MalformedIgmp), 0);
    let snap = c.snapshot();
    assert!(snap.contains(&("drop_tagged_on_access".to_string(), 1)));
    assert!(snap.contains(&("fwd_mc_registered".to_string(), 2)));
    assert!(snap.contains(&("punt".to_string(), 1)));
}

/// Egress copies for every port, rewritten and re-parsed: the payload is untouched and each
/// copy would be classified back into the frame's VLAN by the port that sends it.
#[test]
fn forwarded_copies_rewrite_and_reparse_in_their_vlan() {
    let mut sw = Switch::new();
    let cases: Vec<(PortId, Vec<u8>, VlanId)> = vec![
        (0, udp(host(1), S_LISTED, G_REG, None), 10),
        (3, udp(host(2), S_LISTED, G_REG, Some(10)), 10),
        (4, arp_request(host(3), None), 10),
        (4, arp_request(host(3), Some(20)), 20),
        (0, arp_request(host(4), Some(0)), 10),
    ];
    for (ingress, f, vlan) in cases {
        let e = fwd(sw.rx(ingress, &f));
        assert_eq!(e.vlan, vlan);
        assert!(!e.ports.is_empty());
        let original = parse_frame(&f).unwrap();
        let payload = &f[original.l3_offset..];
        for p in e.ports.iter() {
            let mut out = [0u8; 256];
            let n = rewrite_into(&f, e.tag_for(p).unwrap(), &mut out).unwrap();
            let back = parse_frame(&out[..n]).unwrap();
            assert_eq!(sw.ports.ingress_vlan(p, &back), Ok(vlan), "port {p}");
            assert_eq!(&out[back.l3_offset..n], payload);
            assert_eq!(
                (back.src, back.dst, back.l3),
                (original.src, original.dst, original.l3)
            );
        }
    }
}

/// The flow memo keeps a multicast flow's decision for its next frame at the same instant,
/// drops it when the clock moves, a frame moves the source, or another kind of frame comes, and
/// never keeps IGMP, unicast or damaged frames. (That a kept decision changes nothing is the
/// property test `the_flow_memo_changes_no_decision_and_no_fdb_state`.)
#[test]
fn the_flow_memo_keeps_only_back_to_back_frames_of_one_multicast_flow() {
    use crate::forward::{process_with_memo, FlowMemo};
    let mut sw = Switch::new();
    let inputs = Inputs {
        table: &sw.table,
        ports: &sw.ports,
        down: sw.down,
    };
    let mut memo = FlowMemo::default();
    let data = udp(host(1), S_OTHER, G_REG, None);
    let mut rx = |port: PortId, f: &[u8], now: Duration, memo: &mut FlowMemo| {
        process_with_memo(&inputs, &mut sw.fdb, now, port, f, memo)
    };
    let t = sw.now;
    let first = rx(0, &data, t, &mut memo);
    assert_eq!(fwd(first).ports, ps(&[1, 3]));
    assert_eq!(memo.kept(), Some(first));
    assert_eq!(rx(0, &data, t, &mut memo), first);
    // A damaged frame in between changes no state and leaves the flow kept.
    let mut damaged = data.clone();
    damaged[24] ^= 0xff;
    assert_eq!(
        rx(0, &damaged, t, &mut memo),
        Decision::Drop(DropReason::BadIpChecksum)
    );
    assert_eq!(memo.kept(), Some(first));
    // The same source seen on another port moves it: nothing is kept.
    assert!(matches!(
        rx(5, &arp_request(host(1), None), t, &mut memo),
        Decision::Forward(_)
    ));
    assert_eq!(memo.kept(), None);
    // Back on port 0: decided afresh (the station moves back), and kept again.
    assert_eq!(rx(0, &data, t, &mut memo), first);
    assert_eq!(memo.kept(), Some(first));
    // A later instant is another key: decided afresh, then kept again.
    let later = t + Duration::from_millis(1);
    assert_eq!(rx(0, &data, later, &mut memo), first);
    assert_eq!(memo.kept(), Some(first));
    // Reports and unicast are never kept.
    assert!(matches!(
        rx(0, &report_v2(host(1), None), later, &mut memo),
        Decision::Punt { .. }
    ));
    assert_eq!(memo.kept(), None);
    assert!(matches!(
        rx(0, &arp_reply(host(2), host(1), None), later, &mut memo),
        Decision::Forward(_)
    ));
    assert_eq!(memo.kept(), None);
}
