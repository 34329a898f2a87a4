//! Every builder's frame parses back to what was asked for, with RFC addressing.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::super::*;
use super::query_of;

const MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const G: Ipv4Addr = Ipv4Addr::new(239, 200, 1, 1);
const S: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(10, 0, 0, 2),
    Ipv4Addr::new(10, 0, 0, 3),
];

fn emit_parse(b: &impl FrameBuilder, f: impl FnOnce(Frame<'_>)) {
    let v = to_vec(b).unwrap();
    assert_eq!(v.len(), b.buffer_len());
    // Too small by one octet: an error, never a panic or a partial frame reported as success.
    let mut short = vec![0u8; v.len() - 1];
    assert!(matches!(
        b.emit(&mut short),
        Err(WireError::BufferTooSmall { .. })
    ));
    // A larger buffer is fine and the length returned is the frame's.
    let mut big = vec![0u8; v.len() + 100];
    assert_eq!(b.emit(&mut big).unwrap(), v.len());
    assert_eq!(big[..v.len()], v[..]);
    let frame = parse_frame(&v).unwrap();
    assert_eq!(frame.src, MAC);
    f(frame)
}

fn igmp_ip_ok(ip: &Ipv4Info, dst: Ipv4Addr) {
    assert_eq!(
        (ip.src, ip.dst, ip.ttl, ip.tos, ip.protocol),
        (ME, dst, 1, 0xc0, 2)
    );
    assert!(ip.router_alert && !ip.dont_fragment && !ip.is_fragment());
}

fn query_b(
    version: IgmpVersion,
    group: Option<Ipv4Addr>,
    sources: &[Ipv4Addr],
) -> QueryBuilder<'_> {
    QueryBuilder {
        version,
        src_mac: MAC,
        src_ip: ME,
        group,
        sources,
        max_resp: Duration::from_secs(10),
        s_flag: false,
        qrv: 2,
        qqi: Duration::from_secs(125),
        vlan: None,
    }
}

#[test]
fn queries_all_kinds() {
    for vlan in [None, Some(VlanTag::new(42, 6))] {
        for (version, group, sources) in [
            (IgmpVersion::V1, None, &[][..]),
            (IgmpVersion::V2, None, &[][..]),
            (IgmpVersion::V2, Some(G), &[][..]),
            (IgmpVersion::V3, None, &[][..]),
            (IgmpVersion::V3, Some(G), &[][..]),
            (IgmpVersion::V3, Some(G), &S[..]),
        ] {
            let b = QueryBuilder {
                vlan,
                s_flag: version == IgmpVersion::V3,
                qrv: 3,
                ..query_b(version, group, sources)
            };
            emit_parse(&b, |f| {
                assert_eq!(f.vlan, vlan);
                assert_eq!(f.l3_offset, if vlan.is_some() { 18 } else { 14 });
                let L3::Igmp {
                    ip,
                    msg: IgmpRepr::Query(q),
                } = f.l3
                else {
                    panic!("{f:?}")
                };
                let dst = group.unwrap_or(mcast::ALL_SYSTEMS);
                igmp_ip_ok(&ip, dst);
                assert_eq!(f.dst, multicast_mac(dst));
                assert_eq!(q.version, version);
                assert_eq!(q.group_opt(), group);
                assert_eq!(q.max_resp(), Duration::from_secs(10));
                assert_eq!(q.sources.iter().collect::<Vec<_>>(), sources.to_vec());
                if version == IgmpVersion::V3 {
                    assert_eq!(
                        (q.suppress, q.qrv, q.qqi()),
                        (true, 3, Some(Duration::from_secs(125)))
                    );
                } else {
                    assert_eq!((q.suppress, q.qrv, q.qqi()), (false, 0, None));
                }
            });
        }
    }
}

#[test]
fn query_time_encodings_round() {
    // v3: 30 s = 300 tenths → floor code 0x92 = (16+2) << 4 = 288 tenths; QQI 130 s → ceil 136 s.
    let b = QueryBuilder {
        max_resp: Duration::from_secs(30),
        qqi: Duration::from_secs(130),
        ..query_b(IgmpVersion::V3, None, &[])
    };
    let v = to_vec(&b).unwrap();
    let q = query_of(parse_frame(&v).unwrap().l3);
    assert_eq!(q.max_resp(), Duration::from_millis(28_800));
    assert_eq!(q.qqi(), Some(Duration::from_secs(136)));
    // v2: more than 25.5 s saturates.
    let b = QueryBuilder {
        max_resp: Duration::from_secs(60),
        ..query_b(IgmpVersion::V2, None, &[])
    };
    let v = to_vec(&b).unwrap();
    let q = query_of(parse_frame(&v).unwrap().l3);
    assert_eq!(q.max_resp(), Duration::from_millis(25_500));
}

#[test]
fn query_parameter_errors() {
    let mut buf = [0u8; 256];
    assert_eq!(
        query_b(IgmpVersion::V1, Some(G), &[]).emit(&mut buf),
        Err(WireError::GroupInV1Query)
    );
    assert_eq!(
        query_b(IgmpVersion::V2, Some(G), &S).emit(&mut buf),
        Err(WireError::SourcesWithoutV3Group)
    );
    assert_eq!(
        query_b(IgmpVersion::V3, None, &S).emit(&mut buf),
        Err(WireError::SourcesWithoutV3Group)
    );
    assert_eq!(
        QueryBuilder {
            qrv: 8,
            ..query_b(IgmpVersion::V3, None, &[])
        }
        .emit(&mut buf),
        Err(WireError::QrvTooLarge)
    );
    for bad in [
        VlanTag::new(0, 0),
        VlanTag::new(4095, 0),
        VlanTag::new(1, 8),
    ] {
        let b = QueryBuilder {
            vlan: Some(bad),
            ..query_b(IgmpVersion::V2, None, &[])
        };
        assert_eq!(b.emit(&mut buf), Err(WireError::BadVlanTag));
    }
}

/// A short IGMP message (v1/v2 report, leave) parses back to `want`, sent to `dst` in `vlan`.
fn short_igmp_ok(b: &impl FrameBuilder, want: IgmpRepr<'_>, dst: Ipv4Addr, vlan: Option<VlanTag>) {
    emit_parse(b, |f| {
        let L3::Igmp { ip, msg } = f.l3 else {
            panic!("{f:?}")
        };
        igmp_ip_ok(&ip, dst);
        assert_eq!((msg, f.dst, f.vlan), (want, multicast_mac(dst), vlan));
    });
}

#[test]
fn reports_and_leave() {
    let (src_mac, src_ip, group) = (MAC, ME, G);
    for vlan in [None, Some(VlanTag::new(4094, 0))] {
        let v1 = ReportV1Builder {
            src_mac,
            src_ip,
            group,
            vlan,
        };
        short_igmp_ok(&v1, IgmpRepr::ReportV1 { group }, G, vlan);
        let v2 = ReportV2Builder {
            src_mac,
            src_ip,
            group,
            vlan,
        };
        short_igmp_ok(&v2, IgmpRepr::ReportV2 { group }, G, vlan);
        let leave = LeaveBuilder {
            src_mac,
            src_ip,
            group,
            vlan,
        };
        short_igmp_ok(
            &leave,
            IgmpRepr::LeaveV2 { group },
            mcast::ALL_ROUTERS,
            vlan,
        );
    }
}

#[test]
fn v3_report_all_record_types_aux_and_unknown() {
    let g2 = Ipv4Addr::new(232, 1, 1, 1);
    let aux = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
    let specs = [
        RecordSpec {
            kind: RecordKind::ModeIsInclude,
            group: G,
            sources: &S[..1],
            aux_data: &[],
        },
        RecordSpec {
            kind: RecordKind::ModeIsExclude,
            group: G,
            sources: &[],
            aux_data: &aux,
        },
        RecordSpec {
            kind: RecordKind::ChangeToInclude,
            group: g2,
            sources: &S,
            aux_data: &[],
        },
        RecordSpec {
            kind: RecordKind::Unknown(9),
            group: g2,
            sources: &S[..2],
            aux_data: &aux[..4],
        },
        RecordSpec {
            kind: RecordKind::ChangeToExclude,
            group: g2,
            sources: &[],
            aux_data: &[],
        },
        RecordSpec {
            kind: RecordKind::AllowNewSources,
            group: g2,
            sources: &S[1..],
            aux_data: &[],
        },
        RecordSpec {
            kind: RecordKind::BlockOldSources,
            group: g2,
            sources: &S[2..],
            aux_data: &aux,
        },
    ];
    let b = ReportV3Builder {
        src_mac: MAC,
        src_ip: ME,
        records: &specs,
        vlan: Some(VlanTag::new(7, 0)),
    };
    emit_parse(&b, |f| {
        let L3::Igmp {
            ip,
            msg: IgmpRepr::ReportV3 { records },
        } = f.l3
        else {
            panic!()
        };
        igmp_ip_ok(&ip, mcast::IGMPV3_ROUTERS);
        assert_eq!(f.dst, MacAddr([1, 0, 0x5e, 0, 0, 0x16]));
        assert_eq!(records.len(), specs.len());
        let got: Vec<GroupRecord<'_>> = records.iter().collect();
        assert_eq!(got.len(), specs.len());
        for (r, s) in got.iter().zip(specs.iter()) {
            assert_eq!(r.kind, s.kind);
            assert_eq!(r.group, s.group);
            assert_eq!(r.sources.iter().collect::<Vec<_>>(), s.sources.to_vec());
            assert_eq!(r.aux_data, s.aux_data);
        }
        // A caller skips unknown record types and keeps the rest (RFC 3376 §4.2.12).
        let known = records
            .iter()
            .filter(|r| !matches!(r.kind, RecordKind::Unknown(_)))
            .count();
        assert_eq!(known, 6);
    });
    let bad_aux = [RecordSpec {
        kind: RecordKind::ModeIsInclude,
        group: G,
        sources: &[],
        aux_data: &[1, 2, 3],
    }];
    let b = ReportV3Builder {
        src_mac: MAC,
        src_ip: ME,
        records: &bad_aux,
        vlan: None,
    };
    assert_eq!(b.emit(&mut [0u8; 200]), Err(WireError::BadAuxLength));
    let empty = ReportV3Builder {
        src_mac: MAC,
        src_ip: ME,
        records: &[],
        vlan: None,
    };
    emit_parse(&empty, |f| {
        let L3::Igmp {
            msg: IgmpRepr::ReportV3 { records },
            ..
        } = f.l3
        else {
            panic!()
        };
        assert!(records.is_empty());
    });
}

#[test]
fn mrd_pim_udp_and_raw() {
    emit_parse(
        &MrdAdvertisementBuilder {
            src_mac: MAC,
            src_ip: ME,
            adv_interval: 20,
            qqi: 125,
            qrv: 2,
            vlan: None,
        },
        |f| {
            let L3::Igmp { ip, msg } = f.l3 else { panic!() };
            igmp_ip_ok(&ip, mcast::ALL_SNOOPERS);
            assert_eq!(
                msg,
                IgmpRepr::MrdAdvertisement {
                    adv_interval: 20,
                    qqi: 125,
                    qrv: 2
                }
            );
            assert_eq!(f.dst, MacAddr([1, 0, 0x5e, 0, 0, 0x6a]));
        },
    );
    for (msg, dst) in [
        (IgmpRepr::MrdSolicitation, mcast::ALL_ROUTERS),
        (IgmpRepr::MrdTermination, mcast::ALL_SNOOPERS),
        (IgmpRepr::Unknown { igmp_type: 0x42 }, G),
        (IgmpRepr::Unknown { igmp_type: 0x13 }, G), // DVMRP / mtrace types are "unknown" here.
    ] {
        emit_parse(
            &RawIgmpBuilder {
                src_mac: MAC,
                src_ip: ME,
                dst_ip: dst,
                msg,
                vlan: None,
            },
            |f| {
                let L3::Igmp { ip, msg: got } = f.l3 else {
                    panic!()
                };
                assert_eq!((got, ip.dst), (msg, dst));
            },
        );
    }
    emit_parse(
        &PimHelloBuilder {
            src_mac: MAC,
            src_ip: ME,
            holdtime: 105,
            vlan: Some(VlanTag::new(3, 0)),
        },
        |f| {
            let L3::PimHello { ip } = f.l3 else {
                panic!("{f:?}")
            };
            assert_eq!(
                (ip.src, ip.dst, ip.protocol, ip.ttl),
                (ME, mcast::ALL_PIM_ROUTERS, 103, 1)
            );
        },
    );
    let payload = *b"xsnoop data";
    let udp = UdpDataBuilder {
        src_mac: MAC,
        src_ip: ME,
        group: G,
        src_port: 5000,
        dst_port: 6000,
        ttl: 16,
        payload: &payload,
        vlan: None,
    };
    emit_parse(&udp, |f| {
        let L3::Ipv4 { ip, protocol } = f.l3 else {
            panic!()
        };
        assert_eq!(
            (protocol, ip.dst, ip.ttl, ip.payload_len()),
            (17, G, 16, 8 + payload.len())
        );
        assert_eq!(f.dst, multicast_mac(G));
    });
    // UDP checksum verifies with the pseudo-header.
    let v = to_vec(&udp).unwrap();
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ME.octets());
    pseudo.extend_from_slice(&G.octets());
    pseudo.extend_from_slice(&[0, 17, 0, (8 + payload.len()) as u8]);
    pseudo.extend_from_slice(&v[34..]);
    assert!(checksum::verify(&pseudo));
}

#[test]
fn pim_to_other_destination_or_bad_checksum() {
    let v = to_vec(&PimHelloBuilder {
        src_mac: MAC,
        src_ip: ME,
        holdtime: 105,
        vlan: None,
    })
    .unwrap();
    // Not to 224.0.0.13: plain IPv4.
    let mut other = v.clone();
    other[14 + 19] = 14;
    super::refix(&mut other);
    assert!(matches!(
        parse_frame(&other).unwrap().l3,
        L3::Ipv4 { protocol: 103, .. }
    ));
    // Corrupted PIM checksum.
    let mut bad = v.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x10;
    assert_eq!(parse_frame(&bad).unwrap_err(), WireError::BadPimChecksum);
}
