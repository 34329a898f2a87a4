//! Every frame our builders make, decoded by tshark (an independent implementation) and by our own
//! parser: both must agree with what we meant to build, field by field.
//!
//! One pcap holds them all; tshark runs once with IP checksum checking on. A deliberately
//! corrupted copy of one frame proves the checksum verdicts can say "bad".

use std::net::Ipv4Addr;
use std::time::Duration;

use xsnoop_dataplane::wire::{
    to_vec, IgmpRepr, IgmpVersion, LeaveBuilder, MacAddr, MrdAdvertisementBuilder, PimHelloBuilder,
    QueryBuilder, RawIgmpBuilder, RecordKind, RecordSpec, ReportV1Builder, ReportV2Builder,
    ReportV3Builder, UdpDataBuilder, VlanTag, WireError, L3,
};
use xsnoop_tests::observe::{observe, Igmp, Observed, Record};
use xsnoop_tests::{pcap, tshark, tshark::DecodedFrame};

const MAC: MacAddr = MacAddr([0x02, 0x58, 0x53, 0x00, 0x00, 0x42]);
const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const G1: Ipv4Addr = Ipv4Addr::new(239, 129, 2, 3); // high bit of the 2nd octet is dropped in the MAC
const S: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
    Ipv4Addr::new(203, 0, 113, 77),
];

/// One frame under test, with what it is meant to say.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// The IGMP message as we meant it (compared with our parser's reading); `None` for non-IGMP.
    igmp: Option<Igmp>,
    vlan: Option<VlanTag>,
}

fn query(b: QueryBuilder<'_>, name: &'static str, want: Igmp) -> Case {
    Case {
        name,
        bytes: to_vec(&b).unwrap(),
        igmp: Some(want),
        vlan: b.vlan,
    }
}

fn q(version: IgmpVersion) -> QueryBuilder<'static> {
    QueryBuilder {
        version,
        src_mac: MAC,
        src_ip: SRC,
        group: None,
        sources: &[],
        max_resp: Duration::from_secs(10),
        s_flag: false,
        qrv: 2,
        qqi: Duration::from_secs(125),
        vlan: None,
    }
}

fn v3q(
    max_resp_code: u8,
    group: Ipv4Addr,
    suppress: bool,
    qrv: u8,
    qqic: u8,
    sources: &[Ipv4Addr],
) -> Igmp {
    Igmp::Query {
        version: IgmpVersion::V3,
        max_resp_code,
        group,
        suppress,
        qrv,
        qqic,
        sources: sources.to_vec(),
    }
}

fn v2q(max_resp_code: u8, group: Ipv4Addr) -> Igmp {
    Igmp::Query {
        version: IgmpVersion::V2,
        max_resp_code,
        group,
        suppress: false,
        qrv: 0,
        qqic: 0,
        sources: vec![],
    }
}

const RECORD_GROUPS: [Ipv4Addr; 6] = [
    Ipv4Addr::new(232, 1, 1, 1),
    Ipv4Addr::new(232, 1, 1, 2),
    Ipv4Addr::new(232, 1, 1, 3),
    Ipv4Addr::new(232, 1, 1, 4),
    Ipv4Addr::new(232, 1, 1, 5),
    Ipv4Addr::new(232, 1, 1, 6),
];
const KINDS: [RecordKind; 6] = [
    RecordKind::ModeIsInclude,
    RecordKind::ModeIsExclude,
    RecordKind::ChangeToInclude,
    RecordKind::ChangeToExclude,
    RecordKind::AllowNewSources,
    RecordKind::BlockOldSources,
];

// One push per case keeps each case next to the RFC comment that explains it.
#[allow(clippy::vec_init_then_push)]
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    // RFC 2236 §2: v2 general query (code in tenths: 10 s = 100) and group-specific query.
    out.push(query(
        q(IgmpVersion::V2),
        "v2-general-query",
        v2q(100, Ipv4Addr::UNSPECIFIED),
    ));
    out.push(query(
        QueryBuilder {
            group: Some(G1),
            max_resp: Duration::from_secs(1),
            ..q(IgmpVersion::V2)
        },
        "v2-group-query",
        v2q(10, G1),
    ));
    // RFC 3376 §4.1: v3 general, group-specific (S flag, QRV 3, QQIC 60), and
    // group-and-source-specific with three sources, QRV 7 and both codes in float form.
    out.push(query(
        q(IgmpVersion::V3),
        "v3-general-query",
        v3q(100, Ipv4Addr::UNSPECIFIED, false, 2, 125, &[]),
    ));
    out.push(query(
        QueryBuilder {
            group: Some(G1),
            max_resp: Duration::from_secs(1),
            s_flag: true,
            qrv: 3,
            qqi: Duration::from_secs(60),
            ..q(IgmpVersion::V3)
        },
        "v3-group-query",
        v3q(10, G1, true, 3, 60, &[]),
    ));
    out.push(query(
        QueryBuilder {
            group: Some(G1),
            sources: &S,
            // 300 tenths and 1000 s are both in the float range (RFC 3376 §4.1.1, §4.1.7).
            max_resp: Duration::from_secs(30),
            s_flag: true,
            qrv: 7,
            qqi: Duration::from_secs(1000),
            ..q(IgmpVersion::V3)
        },
        "v3-group-source-query",
        v3q(
            xsnoop_dataplane::wire::timecode::encode_floor(300),
            G1,
            true,
            7,
            xsnoop_dataplane::wire::timecode::encode_ceil(1000),
            &S,
        ),
    ));
    out.push(Case {
        name: "v1-report",
        bytes: to_vec(&ReportV1Builder {
            src_mac: MAC,
            src_ip: SRC,
            group: G1,
            vlan: None,
        })
        .unwrap(),
        igmp: Some(Igmp::V1Report { group: G1 }),
        vlan: None,
    });
    out.push(Case {
        name: "v2-report",
        bytes: to_vec(&ReportV2Builder {
            src_mac: MAC,
            src_ip: SRC,
            group: G1,
            vlan: None,
        })
        .unwrap(),
        igmp: Some(Igmp::V2Report { group: G1 }),
        vlan: None,
    });
    out.push(Case {
        name: "v2-leave",
        bytes: to_vec(&LeaveBuilder {
            src_mac: MAC,
            src_ip: SRC,
            group: G1,
            vlan: None,
        })
        .unwrap(),
        igmp: Some(Igmp::V2Leave { group: G1 }),
        vlan: None,
    });
    // RFC 3376 §4.2: one report with all six record types, each with its own group and a
    // different number of sources (record i has i + 1), so counts cannot line up by accident.
    let all_sources: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
    let specs: Vec<RecordSpec<'_>> = (0..6)
        .map(|i| RecordSpec {
            kind: KINDS[i],
            group: RECORD_GROUPS[i],
            sources: &all_sources[..=i],
            aux_data: &[],
        })
        .collect();
    let records: Vec<Record> = specs
        .iter()
        .map(|s| Record {
            record_type: s.kind,
            group: s.group,
            sources: s.sources.to_vec(),
        })
        .collect();
    out.push(Case {
        name: "v3-report-all-records",
        bytes: to_vec(&ReportV3Builder {
            src_mac: MAC,
            src_ip: SRC,
            records: &specs,
            vlan: None,
        })
        .unwrap(),
        igmp: Some(Igmp::V3Report { records }),
        vlan: None,
    });
    // RFC 4286 §4: MRD advertisement to 224.0.0.106; §5/§6 solicitation and termination.
    out.push(Case {
        name: "mrd-advertisement",
        bytes: to_vec(&MrdAdvertisementBuilder {
            src_mac: MAC,
            src_ip: SRC,
            adv_interval: 20,
            qqi: 125,
            qrv: 2,
            vlan: None,
        })
        .unwrap(),
        igmp: Some(Igmp::MrdAdvertisement {
            adv_interval: 20,
            qqi: 125,
            qrv: 2,
        }),
        vlan: None,
    });
    for (name, msg, want, dst) in [
        (
            "mrd-solicitation",
            IgmpRepr::MrdSolicitation,
            Igmp::MrdSolicitation,
            Ipv4Addr::new(224, 0, 0, 2),
        ),
        (
            "mrd-termination",
            IgmpRepr::MrdTermination,
            Igmp::MrdTermination,
            Ipv4Addr::new(224, 0, 0, 106),
        ),
    ] {
        out.push(Case {
            name,
            bytes: to_vec(&RawIgmpBuilder {
                src_mac: MAC,
                src_ip: SRC,
                dst_ip: dst,
                msg,
                vlan: None,
            })
            .unwrap(),
            igmp: Some(want),
            vlan: None,
        });
    }
    // An 802.1Q-tagged v3 general query (VID 100, PCP 6).
    let tag = VlanTag::new(100, 6);
    out.push(query(
        QueryBuilder {
            vlan: Some(tag),
            ..q(IgmpVersion::V3)
        },
        "vlan-v3-general-query",
        v3q(100, Ipv4Addr::UNSPECIFIED, false, 2, 125, &[]),
    ));
    // Not IGMP, but built by the same module: PIM hello and multicast UDP data.
    out.push(Case {
        name: "pim-hello",
        bytes: to_vec(&PimHelloBuilder {
            src_mac: MAC,
            src_ip: SRC,
            holdtime: 105,
            vlan: None,
        })
        .unwrap(),
        igmp: None,
        vlan: None,
    });
    out.push(Case {
        name: "udp-data",
        bytes: to_vec(&UdpDataBuilder {
            src_mac: MAC,
            src_ip: SRC,
            group: G1,
            src_port: 4000,
            dst_port: 5000,
            ttl: 16,
            payload: b"xsnoop",
            vlan: Some(VlanTag::new(7, 0)),
        })
        .unwrap(),
        igmp: None,
        vlan: Some(VlanTag::new(7, 0)),
    });
    out
}

fn ipv4_str(a: Ipv4Addr) -> String {
    a.to_string()
}

/// RFC 1112 §6.4, written here independently of the codec: 01:00:5e + low 23 bits of the group.
fn rfc1112_mac(ip: &str) -> String {
    let a: Ipv4Addr = ip.parse().unwrap();
    let o = a.octets();
    format!("01:00:5e:{:02x}:{:02x}:{:02x}", o[1] & 0x7f, o[2], o[3])
}

/// RFC 1071 Internet checksum, independent of the codec's (used where tshark does not verify).
fn inet_checksum_ok(data: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        sum += w;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

fn field(f: &DecodedFrame, name: &str, case: &str) -> String {
    f.get(name)
        .unwrap_or_else(|| panic!("{case}: tshark did not decode {name}: {:#}", f.layers))
}

fn mac_str(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// Checks tshark's reading of one IGMP frame against the message we meant (already known to be
/// what our parser reads).
fn check_igmp(case: &Case, t: &DecodedFrame, ours: &Observed, want: &Igmp) {
    let n = case.name;
    // IP header rules for IGMP: TTL 1 (RFC 2236 §2, RFC 3376 §4), Router Alert (RFC 2113 / RFC
    // 3376 §4), Internetwork Control TOS, protocol 2.
    assert_eq!(field(t, "ip.proto", n), "2", "{n}");
    assert_eq!(field(t, "ip.ttl", n), "1", "{n}");
    assert_eq!(field(t, "ip.dsfield", n), "0xc0", "{n}");
    assert_eq!(
        field(t, "ip.opt.type", n),
        "148",
        "{n}: no Router Alert option"
    );
    assert_eq!(field(t, "ip.opt.ra", n), "0", "{n}");
    assert!(
        ours.router_alert && ours.ttl == 1 && ours.tos == 0xc0,
        "{n}: {ours:?}"
    );
    let igmp_off = 14 + if case.vlan.is_some() { 4 } else { 0 } + 24;
    let igmp_bytes = &case.bytes[igmp_off..];
    assert!(
        inet_checksum_ok(igmp_bytes),
        "{n}: IGMP checksum (independent check)"
    );
    let ty = |v: u8| format!("0x{v:02x}");
    match want {
        Igmp::Query {
            version,
            max_resp_code,
            group,
            suppress,
            qrv,
            qqic,
            sources,
        } => {
            assert_eq!(field(t, "igmp.type", n), ty(0x11), "{n}");
            let v = match version {
                IgmpVersion::V1 => "1",
                IgmpVersion::V2 => "2",
                IgmpVersion::V3 => "3",
            };
            assert_eq!(field(t, "igmp.version", n), v, "{n}");
            assert_eq!(field(t, "igmp.maddr", n), ipv4_str(*group), "{n}");
            assert_eq!(field(t, "igmp.checksum.status", n), "1", "{n}");
            if *version == IgmpVersion::V3 {
                // tshark shows v3 Max Resp decoded (tenths of a second) and QQIC raw.
                let tenths = xsnoop_dataplane::wire::timecode::decode(*max_resp_code);
                assert_eq!(field(t, "igmp.max_resp", n), tenths.to_string(), "{n}");
                assert_eq!(
                    field(t, "igmp.s", n),
                    if *suppress { "1" } else { "0" },
                    "{n}"
                );
                assert_eq!(field(t, "igmp.qrv", n), qrv.to_string(), "{n}");
                assert_eq!(field(t, "igmp.qqic", n), qqic.to_string(), "{n}");
                assert_eq!(
                    field(t, "igmp.num_src", n),
                    sources.len().to_string(),
                    "{n}"
                );
                let want_src: Vec<String> = sources.iter().map(|a| a.to_string()).collect();
                assert_eq!(t.all("igmp.saddr"), want_src, "{n}");
            } else {
                assert_eq!(
                    field(t, "igmp.max_resp", n),
                    max_resp_code.to_string(),
                    "{n}"
                );
            }
        }
        Igmp::V1Report { group } | Igmp::V2Report { group } | Igmp::V2Leave { group } => {
            let (code, v) = match want {
                Igmp::V1Report { .. } => (0x12, "1"),
                Igmp::V2Report { .. } => (0x16, "2"),
                _ => (0x17, "2"),
            };
            assert_eq!(field(t, "igmp.type", n), ty(code), "{n}");
            assert_eq!(field(t, "igmp.version", n), v, "{n}");
            assert_eq!(field(t, "igmp.maddr", n), ipv4_str(*group), "{n}");
            assert_eq!(field(t, "igmp.checksum.status", n), "1", "{n}");
        }
        Igmp::V3Report { records } => {
            assert_eq!(field(t, "igmp.type", n), ty(0x22), "{n}");
            assert_eq!(field(t, "igmp.version", n), "3", "{n}");
            assert_eq!(field(t, "igmp.checksum.status", n), "1", "{n}");
            assert_eq!(
                field(t, "igmp.num_grp_recs", n),
                records.len().to_string(),
                "{n}"
            );
            // Compared as sorted lists: tshark's JSON objects come back key-sorted.
            let mut theirs: Vec<(String, String, String, Vec<String>)> = t
                .subtrees("igmp.record_type")
                .iter()
                .map(|r| {
                    (
                        field(r, "igmp.record_type", n),
                        field(r, "igmp.maddr", n),
                        field(r, "igmp.num_src", n),
                        r.all("igmp.saddr"),
                    )
                })
                .collect();
            let mut mine: Vec<(String, String, String, Vec<String>)> = records
                .iter()
                .map(|r| {
                    (
                        r.record_type.to_u8().to_string(),
                        r.group.to_string(),
                        r.sources.len().to_string(),
                        r.sources.iter().map(|a| a.to_string()).collect(),
                    )
                })
                .collect();
            theirs.sort();
            mine.sort();
            assert_eq!(theirs, mine, "{n}");
            let types: Vec<&str> = theirs.iter().map(|r| r.0.as_str()).collect();
            assert_eq!(
                types,
                ["1", "2", "3", "4", "5", "6"],
                "{n}: not all six record types"
            );
        }
        Igmp::MrdAdvertisement {
            adv_interval,
            qqi,
            qrv,
        } => {
            // tshark 4.0 has no RFC 4286 decoder ("Unknown Type"); it still splits off the type
            // and shows the rest, which we decode by the RFC 4286 §4 layout ourselves.
            assert_eq!(field(t, "igmp.type", n), ty(0x30), "{n}");
            let data = xsnoop_tests::from_hex(&field(t, "igmp.data", n).replace(':', "")).unwrap();
            assert_eq!(data.len(), 7, "{n}");
            assert_eq!(data[0], *adv_interval, "{n}");
            assert_eq!(u16::from_be_bytes([data[3], data[4]]), *qqi, "{n}");
            assert_eq!(u16::from_be_bytes([data[5], data[6]]), *qrv, "{n}");
        }
        Igmp::MrdSolicitation | Igmp::MrdTermination => {
            let code = if *want == Igmp::MrdSolicitation {
                0x31
            } else {
                0x32
            };
            assert_eq!(field(t, "igmp.type", n), ty(code), "{n}");
            assert_eq!(
                igmp_bytes.len(),
                4,
                "{n}: RFC 4286 §5/§6 messages are 4 octets"
            );
        }
        Igmp::Unknown(_) => panic!("{n}: no case builds unknown types"),
    }
    // RFC 4286 §4-§6 destinations; the report/leave/query ones are checked via eth.dst/ip.dst.
    let dst = field(t, "ip.dst", n);
    match want {
        Igmp::MrdAdvertisement { .. } | Igmp::MrdTermination => {
            assert_eq!(dst, "224.0.0.106", "{n}")
        }
        Igmp::MrdSolicitation => assert_eq!(dst, "224.0.0.2", "{n}"),
        Igmp::V2Leave { .. } => assert_eq!(dst, "224.0.0.2", "{n}"),
        Igmp::V3Report { .. } => assert_eq!(dst, "224.0.0.22", "{n}"),
        Igmp::Query { group, .. } if group.is_unspecified() => assert_eq!(dst, "224.0.0.1", "{n}"),
        Igmp::Query { group, .. } | Igmp::V1Report { group } | Igmp::V2Report { group } => {
            assert_eq!(dst, group.to_string(), "{n}")
        }
        Igmp::Unknown(_) => {}
    }
}

fn decode_all(name: &str, frames: &[&[u8]]) -> Vec<DecodedFrame> {
    let dir = std::env::temp_dir().join(format!("xsnoop-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("frames.pcap");
    pcap::write(&path, frames).unwrap();
    let decoded = tshark::decode(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        decoded.len(),
        frames.len(),
        "tshark read a different number of frames"
    );
    decoded
}

#[test]
fn every_built_frame_decodes_identically_in_tshark_and_our_parser() {
    if !tshark::require("tshark_crosscheck") {
        return;
    }
    let cases = cases();
    let refs: Vec<&[u8]> = cases.iter().map(|c| c.bytes.as_slice()).collect();
    let decoded = decode_all("crosscheck", &refs);
    for (case, t) in cases.iter().zip(&decoded) {
        let n = case.name;
        // L2: RFC 1112 §6.4 mapping, our source MAC, the tag if any.
        assert_eq!(field(t, "eth.src", n), mac_str(MAC.0), "{n}");
        let ip_dst = field(t, "ip.dst", n);
        assert_eq!(field(t, "eth.dst", n), rfc1112_mac(&ip_dst), "{n}");
        assert_eq!(field(t, "ip.src", n), SRC.to_string(), "{n}");
        assert_eq!(
            field(t, "ip.checksum.status", n),
            "1",
            "{n}: IP header checksum"
        );
        match case.vlan {
            Some(tag) => {
                assert_eq!(field(t, "eth.type", n), "0x8100", "{n}");
                assert_eq!(field(t, "vlan.id", n), tag.vid.to_string(), "{n}");
                assert_eq!(field(t, "vlan.priority", n), tag.pcp.to_string(), "{n}");
                assert_eq!(field(t, "vlan.etype", n), "0x0800", "{n}");
            }
            None => {
                assert_eq!(field(t, "eth.type", n), "0x0800", "{n}");
                assert!(t.get("vlan.id").is_none(), "{n}");
            }
        }
        let parsed = xsnoop_dataplane::wire::parse_frame(&case.bytes)
            .unwrap_or_else(|e| panic!("{n}: our parser refused our own frame: {e}"));
        assert_eq!(parsed.vlan, case.vlan, "{n}");
        assert_eq!(mac_str(parsed.dst.0), field(t, "eth.dst", n), "{n}");
        match &case.igmp {
            Some(want) => {
                let ours = observe(&case.bytes).unwrap();
                assert_eq!(&ours.igmp, want, "{n}: our parser reads something else");
                assert_eq!(ours.ip_dst.to_string(), ip_dst, "{n}");
                assert_eq!(ours.vlan, case.vlan.map(|v| (v.vid, v.pcp)), "{n}");
                check_igmp(case, t, &ours, want);
            }
            None if n == "pim-hello" => {
                assert!(
                    matches!(parsed.l3, L3::PimHello { .. }),
                    "{n}: {:?}",
                    parsed.l3
                );
                // RFC 7761 §4.9.2: Hello (type 0) to ALL-PIM-ROUTERS, TTL 1, Holdtime option.
                assert_eq!(ip_dst, "224.0.0.13", "{n}");
                assert_eq!(field(t, "ip.ttl", n), "1", "{n}");
                assert_eq!(field(t, "pim.version", n), "2", "{n}");
                assert_eq!(field(t, "pim.type", n), "0", "{n}");
                assert_eq!(field(t, "pim.cksum.status", n), "1", "{n}");
                assert_eq!(field(t, "pim.holdtime", n), "105", "{n}");
            }
            None => {
                assert!(
                    matches!(parsed.l3, L3::Ipv4 { protocol: 17, ip } if ip.ttl == 16 && ip.dst == G1),
                    "{n}: {:?}",
                    parsed.l3
                );
                assert_eq!(field(t, "ip.ttl", n), "16", "{n}");
                assert_eq!(field(t, "udp.srcport", n), "4000", "{n}");
                assert_eq!(field(t, "udp.dstport", n), "5000", "{n}");
                assert_eq!(field(t, "udp.checksum.status", n), "1", "{n}");
                assert_eq!(field(t, "udp.payload", n), "78:73:6e:6f:6f:70", "{n}");
            }
        }
    }
}

/// The verdicts above can fail: a frame with a broken IGMP checksum and one with a broken IP
/// header checksum are "bad" (status 0) for tshark and refused by our parser (RFC 4541
/// §2.1.1(5): never learn from them).
#[test]
fn corrupted_checksums_are_bad_for_both() {
    if !tshark::require("tshark_crosscheck") {
        return;
    }
    let good = to_vec(&ReportV2Builder {
        src_mac: MAC,
        src_ip: SRC,
        group: G1,
        vlan: None,
    })
    .unwrap();
    let mut bad_igmp = good.clone();
    let last = bad_igmp.len() - 1;
    bad_igmp[last] ^= 0x01; // group address low bit: the IGMP checksum no longer matches
    let mut bad_ip = good.clone();
    bad_ip[14 + 10] ^= 0x40; // IP header checksum field
    let decoded = decode_all("corrupt", &[&good, &bad_igmp, &bad_ip]);
    assert_eq!(decoded[0].get("igmp.checksum.status").as_deref(), Some("1"));
    assert_eq!(decoded[0].get("ip.checksum.status").as_deref(), Some("1"));
    assert_eq!(decoded[1].get("igmp.checksum.status").as_deref(), Some("0"));
    assert_eq!(decoded[1].get("ip.checksum.status").as_deref(), Some("1"));
    assert_eq!(decoded[2].get("ip.checksum.status").as_deref(), Some("0"));
    assert!(observe(&good).is_ok());
    assert_eq!(
        xsnoop_dataplane::wire::parse_frame(&bad_igmp).err(),
        Some(WireError::BadIgmpChecksum)
    );
    assert_eq!(
        xsnoop_dataplane::wire::parse_frame(&bad_ip).err(),
        Some(WireError::BadIpChecksum)
    );
}
