//! Frames that must be refused with the named reason, and oddities that must be accepted.

use core::net::Ipv4Addr;

use super::super::ipv4::Ipv4Repr;
use super::super::*;
use super::{hex, kernel, query_of, refix};

const G: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);

/// An untagged Ethernet/IPv4(RA)/IGMP frame around arbitrary IGMP octets, checksums fixed.
fn frame_with_igmp(igmp: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr {
        src: Ipv4Addr::new(10, 0, 0, 9),
        dst: G,
        protocol: 2,
        ttl: 1,
        tos: 0xc0,
        ident: 0,
        dont_fragment: false,
        more_fragments: false,
        frag_offset: 0,
        router_alert: true,
        payload_len: igmp.len(),
    };
    let mut v = vec![0u8; 14 + ip.buffer_len()];
    EthernetRepr {
        dst: multicast_mac(G),
        src: MacAddr([2, 0, 0, 0, 0, 9]),
        ethertype: 0x0800,
    }
    .emit(&mut v)
    .unwrap();
    let hl = ip.emit(&mut v[14..]).unwrap();
    v[14 + hl..].copy_from_slice(igmp);
    refix(&mut v);
    v
}

/// Parses a frame built by [`frame_with_igmp`] (leaked, so the borrow outlives the test line).
fn parsed(igmp: &[u8]) -> Frame<'static> {
    let v: &'static [u8] = Box::leak(frame_with_igmp(igmp).into_boxed_slice());
    parse_frame(v).unwrap()
}

fn err(v: &[u8]) -> WireError {
    parse_frame(v).unwrap_err()
}

#[test]
fn every_prefix_of_every_capture_is_an_error() {
    for h in kernel::ALL {
        let b = hex(h);
        assert!(parse_frame(&b).is_ok());
        for n in 0..b.len() {
            let e = parse_frame(&b[..n]).unwrap_err();
            let expected_layer = match n {
                0..14 => Some(Layer::Ethernet),
                14..34 => Some(Layer::Ipv4),
                _ => None,
            };
            match expected_layer {
                Some(layer) => assert_eq!(e, WireError::Truncated { layer }, "len {n}"),
                None => assert!(
                    matches!(
                        e,
                        WireError::Truncated { .. } | WireError::TotalLengthPastFrame
                    ),
                    "len {n}: {e:?}"
                ),
            }
        }
    }
}

#[test]
fn every_prefix_of_every_built_frame_is_an_error() {
    let mac = MacAddr([2, 0, 0, 0, 0, 1]);
    let me = Ipv4Addr::new(10, 0, 0, 1);
    let vlan = Some(VlanTag::new(100, 0));
    let specs = [RecordSpec {
        kind: RecordKind::AllowNewSources,
        group: G,
        sources: &[me, me],
        aux_data: &[0; 4],
    }];
    let frames = [
        to_vec(&ReportV3Builder {
            src_mac: mac,
            src_ip: me,
            records: &specs,
            vlan,
        })
        .unwrap(),
        to_vec(&LeaveBuilder {
            src_mac: mac,
            src_ip: me,
            group: G,
            vlan,
        })
        .unwrap(),
        to_vec(&PimHelloBuilder {
            src_mac: mac,
            src_ip: me,
            holdtime: 105,
            vlan,
        })
        .unwrap(),
        to_vec(&MrdAdvertisementBuilder {
            src_mac: mac,
            src_ip: me,
            adv_interval: 20,
            qqi: 125,
            qrv: 2,
            vlan,
        })
        .unwrap(),
    ];
    for b in frames {
        assert!(parse_frame(&b).is_ok());
        let ip_end = 18 + usize::from(b[18] & 0x0f) * 4;
        for n in 0..b.len() {
            let e = parse_frame(&b[..n]).unwrap_err();
            let want = match n {
                0..14 => WireError::Truncated {
                    layer: Layer::Ethernet,
                },
                14..18 => WireError::Truncated { layer: Layer::Vlan },
                _ if n < ip_end => WireError::Truncated { layer: Layer::Ipv4 },
                _ => WireError::TotalLengthPastFrame,
            };
            assert_eq!(e, want, "len {n}");
        }
    }
}

#[test]
fn ethernet_padding_is_ignored() {
    for h in kernel::ALL {
        let b = hex(h);
        let mut padded = b.clone();
        padded.resize(b.len().max(60), 0);
        padded.extend_from_slice(&[0xff; 4]);
        assert_eq!(parse_frame(&padded).unwrap(), parse_frame(&b).unwrap());
    }
}

#[test]
fn checksum_errors() {
    let b = hex(kernel::V2_REPORT);
    // Any single-bit flip in the IP header (outside fields checked first) is a bad IP checksum.
    let mut bad = b.clone();
    bad[14 + 8] ^= 0x01; // TTL
    assert_eq!(err(&bad), WireError::BadIpChecksum);
    let mut bad = b.clone();
    bad[14 + 12] ^= 0x80; // source address
    assert_eq!(err(&bad), WireError::BadIpChecksum);
    // Every single-bit flip in the IGMP message is a bad IGMP checksum.
    for i in 38..b.len() {
        for bit in 0..8 {
            let mut bad = b.clone();
            bad[i] ^= 1 << bit;
            assert_eq!(err(&bad), WireError::BadIgmpChecksum, "octet {i} bit {bit}");
        }
    }
    let b = hex(kernel::V3_ALLOW2);
    let mut bad = b.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x04;
    assert_eq!(err(&bad), WireError::BadIgmpChecksum);
}

#[test]
fn ip_header_errors() {
    let b = hex(kernel::V2_REPORT);
    let mut v = b.clone();
    v[14] = 0x45; // IHL 5 but the RA option still there: checksum covers 20 octets now
    refix(&mut v);
    // IGMP now starts at the old RA option (refix fixed its checksum): an unknown type 0x94.
    let L3::Igmp { msg, ip } = parse_frame(&v).unwrap().l3 else {
        panic!()
    };
    assert_eq!(
        (msg, ip.router_alert, ip.header_len),
        (IgmpRepr::Unknown { igmp_type: 0x94 }, false, 20)
    );
    let mut v = b.clone();
    v[14] = 0x44;
    assert_eq!(err(&v), WireError::BadIhl);
    let mut v = b.clone();
    v[14] = 0x66;
    assert_eq!(err(&v), WireError::NotIpv4);
    let mut v = b.clone();
    v[14 + 3] = 20;
    assert_eq!(err(&v), WireError::BadTotalLength);
    let mut v = b.clone();
    v[14 + 3] = 33;
    assert_eq!(err(&v), WireError::TotalLengthPastFrame);
    let mut v = b.clone();
    v[14 + 20..14 + 24].copy_from_slice(&[0x94, 0x07, 0, 0]); // option longer than header
    refix(&mut v);
    assert_eq!(err(&v), WireError::BadIpOption);
}

#[test]
fn igmp_in_fragments_is_refused() {
    let b = hex(kernel::V2_REPORT);
    let mut mf = b.clone();
    mf[14 + 6] = 0x20; // MF
    refix(&mut mf);
    assert_eq!(err(&mf), WireError::Fragment);
    let mut off = b.clone();
    off[14 + 6] = 0x00;
    off[14 + 7] = 0x01; // offset 8
    refix(&mut off);
    assert_eq!(err(&off), WireError::Fragment);
    // A non-IGMP fragment is just IPv4.
    let mut udp = off.clone();
    udp[14 + 9] = 17;
    refix(&mut udp);
    let L3::Ipv4 { ip, protocol: 17 } = parse_frame(&udp).unwrap().l3 else {
        panic!()
    };
    assert!(ip.is_fragment());
    assert_eq!(ip.frag_offset, 8);
}

#[test]
fn ttl_and_router_alert_are_reported_not_enforced() {
    let b = hex(kernel::V2_REPORT);
    let mut v = b.clone();
    v[14 + 8] = 64;
    refix(&mut v);
    let L3::Igmp { ip, msg } = parse_frame(&v).unwrap().l3 else {
        panic!()
    };
    assert_eq!((ip.ttl, msg), (64, IgmpRepr::ReportV2 { group: G }));
    // Replace RA by four NOPs.
    let mut v = b.clone();
    v[14 + 20..14 + 24].copy_from_slice(&[1, 1, 1, 1]);
    refix(&mut v);
    let L3::Igmp { ip, msg } = parse_frame(&v).unwrap().l3 else {
        panic!()
    };
    assert!(!ip.router_alert);
    assert_eq!(msg, IgmpRepr::ReportV2 { group: G });
}

#[test]
fn query_lengths_rfc3376_7_1() {
    let base = [0x11u8, 100, 0, 0, 0, 0, 0, 0];
    // 8 octets, code 0 → v1; code ≠ 0 → v2.
    let q = query_of(parsed(&[0x11, 0, 0, 0, 0, 0, 0, 0]).l3);
    assert_eq!(q.version, IgmpVersion::V1);
    let q = query_of(parsed(&base).l3);
    assert_eq!(q.version, IgmpVersion::V2);
    for len in [4usize, 5, 6, 7, 9, 10, 11] {
        let mut m = base.to_vec();
        m.resize(len, 0);
        assert_eq!(
            err(&frame_with_igmp(&m)),
            WireError::BadQueryLength,
            "len {len}"
        );
    }
    // ≥ 12 → v3; extra octets after the sources are ignored (RFC 3376 §4.1.10).
    let mut m = base.to_vec();
    m.extend_from_slice(&[0x02, 125, 0, 1, 10, 0, 0, 1, 0xaa, 0xbb]);
    let q = query_of(parsed(&m).l3);
    assert_eq!((q.version, q.sources.len()), (IgmpVersion::V3, 1));
    // Number of sources past the end.
    m[11] = 3;
    assert_eq!(err(&frame_with_igmp(&m)), WireError::SourcesPastEnd);
}

#[test]
fn v3_report_structure_errors() {
    let hdr = [0x22u8, 0, 0, 0, 0, 0, 0, 1];
    let rec = [2u8, 0, 0, 1, 239, 1, 2, 3, 10, 0, 0, 1];
    let mut m = hdr.to_vec();
    m.extend_from_slice(&rec);
    assert!(parse_frame(&frame_with_igmp(&m)).is_ok());
    // Record count past the end.
    let mut two = m.clone();
    two[7] = 2;
    assert_eq!(err(&frame_with_igmp(&two)), WireError::RecordPastEnd);
    // Half a record header.
    let mut half = two.clone();
    half.extend_from_slice(&[1, 0, 0, 0]);
    assert_eq!(err(&frame_with_igmp(&half)), WireError::RecordPastEnd);
    // Source count past the end.
    let mut src = m.clone();
    src[8 + 3] = 2;
    assert_eq!(err(&frame_with_igmp(&src)), WireError::SourcesPastEnd);
    // Aux data past the end, then present.
    let mut aux = m.clone();
    aux[8 + 1] = 1;
    assert_eq!(err(&frame_with_igmp(&aux)), WireError::AuxPastEnd);
    aux.extend_from_slice(&[9, 9, 9, 9]);
    let L3::Igmp {
        msg: IgmpRepr::ReportV3 { records },
        ..
    } = parsed(&aux).l3
    else {
        panic!()
    };
    let r = records.iter().next().unwrap();
    assert_eq!(
        (r.kind, r.aux_data, r.sources.len()),
        (RecordKind::ModeIsExclude, &[9u8, 9, 9, 9][..], 1)
    );
    // v3 report shorter than its header.
    assert_eq!(
        err(&frame_with_igmp(&hdr[..6])),
        WireError::Truncated { layer: Layer::Igmp }
    );
    assert_eq!(
        err(&frame_with_igmp(&hdr[..3])),
        WireError::Truncated { layer: Layer::Igmp }
    );
}

#[test]
fn short_reports_and_unknown_types() {
    assert_eq!(
        err(&frame_with_igmp(&[0x16, 0, 0, 0, 239, 1])),
        WireError::Truncated { layer: Layer::Igmp }
    );
    let L3::Igmp { msg, .. } = parsed(&[0x31, 0, 0, 0]).l3 else {
        panic!()
    };
    assert_eq!(msg, IgmpRepr::MrdSolicitation);
    let L3::Igmp { msg, .. } = parsed(&[0x77, 1, 0, 0, 5]).l3 else {
        panic!()
    };
    assert_eq!(msg, IgmpRepr::Unknown { igmp_type: 0x77 });
    // v2 report longer than 8 octets: accepted, extra ignored (RFC 2236 §2.5).
    let L3::Igmp { msg, .. } = parsed(&[0x16, 0, 0, 0, 239, 1, 2, 3, 0, 0, 0, 0]).l3 else {
        panic!()
    };
    assert_eq!(msg, IgmpRepr::ReportV2 { group: G });
}

#[test]
fn vlan_and_qinq() {
    let b = hex(kernel::V2_REPORT);
    let tagged = |tpid: u16, tci: u16, inner: u16| {
        let mut v = b[..12].to_vec();
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&tci.to_be_bytes());
        v.extend_from_slice(&inner.to_be_bytes());
        v.extend_from_slice(&b[14..]);
        v
    };
    let v = tagged(0x8100, 0xa00a, 0x0800);
    let f = parse_frame(&v).unwrap();
    assert_eq!(
        (f.vlan, f.l3_offset, f.ethertype),
        (Some(VlanTag::new(10, 5)), 18, 0x0800)
    );
    assert!(matches!(
        f.l3,
        L3::Igmp {
            msg: IgmpRepr::ReportV2 { .. },
            ..
        }
    ));
    assert_eq!(err(&tagged(0x8100, 10, 0x8100)), WireError::QinQ);
    assert_eq!(err(&tagged(0x8100, 10, 0x88a8)), WireError::QinQ);
    assert_eq!(err(&tagged(0x88a8, 10, 0x8100)), WireError::QinQ);
    assert_eq!(err(&tagged(0x88a8, 10, 0x0800)), WireError::QinQ);
    for n in 14..18 {
        assert_eq!(err(&v[..n]), WireError::Truncated { layer: Layer::Vlan });
    }
    let arp = tagged(0x8100, 10, 0x0806);
    assert_eq!(
        parse_frame(&arp).unwrap().l3,
        L3::Other { ethertype: 0x0806 }
    );
    let mut ipv6 = b.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        parse_frame(&ipv6).unwrap().l3,
        L3::Other { ethertype: 0x86dd }
    );
}
