//! Property tests: `parse_frame` never panics, on random bytes and on mutated valid frames, and
//! builder output always parses back.

use core::net::Ipv4Addr;
use core::time::Duration;

use proptest::prelude::*;

use super::super::*;
use super::{hex, kernel, refix};

fn seed_frames() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = kernel::ALL.iter().map(|h| hex(h)).collect();
    let mac = MacAddr([2, 0, 0, 0, 0, 1]);
    let me = Ipv4Addr::new(10, 0, 0, 1);
    v.push(
        to_vec(&PimHelloBuilder {
            src_mac: mac,
            src_ip: me,
            holdtime: 105,
            vlan: Some(VlanTag::new(5, 0)),
        })
        .unwrap(),
    );
    v.push(
        to_vec(&MrdAdvertisementBuilder {
            src_mac: mac,
            src_ip: me,
            adv_interval: 20,
            qqi: 125,
            qrv: 2,
            vlan: None,
        })
        .unwrap(),
    );
    v
}

/// Exercises every accessor of a parsed frame, so lazily-read fields are covered too.
fn touch(f: &Frame<'_>) -> usize {
    let mut n = 0;
    if let L3::Igmp { msg, .. } = f.l3 {
        match msg {
            IgmpRepr::Query(q) => {
                n += q.sources.iter().count() + usize::from(q.qqi().is_some());
                let _ = q.max_resp();
            }
            IgmpRepr::ReportV3 { records } => {
                for r in records {
                    n += r.sources.iter().count() + r.aux_data.len();
                }
            }
            _ => {}
        }
        let mut out = [0u8; 2048];
        let _ = msg.emit(&mut out);
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(f) = parse_frame(&b) {
            touch(&f);
        }
    }

    #[test]
    fn random_ipv4_igmp_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..120), ty in prop::sample::select(vec![0x11u8, 0x12, 0x16, 0x17, 0x22, 0x30, 0x31, 0x32, 0x99])) {
        // Valid L2/L3 with checksums fixed, so the IGMP parser itself sees the random body.
        let mut b = hex(kernel::V2_REPORT)[..38].to_vec();
        let mut igmp = body.clone();
        if let Some(t) = igmp.first_mut() { *t = ty; }
        b.extend_from_slice(&igmp);
        let total = (24 + igmp.len()) as u16;
        b[16..18].copy_from_slice(&total.to_be_bytes());
        if igmp.len() >= 4 {
            refix(&mut b);
        } else {
            b[24] = 0; b[25] = 0;
            let c = checksum::checksum(&b[14..38]);
            b[24..26].copy_from_slice(&c.to_be_bytes());
        }
        if let Ok(f) = parse_frame(&b) {
            touch(&f);
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..14,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        fix in any::<bool>(),
    ) {
        let seeds = seed_frames();
        let mut b = seeds[which % seeds.len()].clone();
        for (i, v) in &edits {
            let at = i.index(b.len());
            b[at] = *v;
        }
        if fix && b.len() >= 38 && b[12..14] == [0x08, 0x00] && usize::from(b[14] & 0xf) * 4 == 24 {
            let total = usize::from(u16::from_be_bytes([b[16], b[17]]));
            if (24..=b.len() - 14).contains(&total) {
                refix(&mut b);
            }
        }
        let n = cut.index(b.len() + 1);
        if let Ok(f) = parse_frame(&b[..n]) {
            touch(&f);
        }
    }

    #[test]
    fn v3_report_builder_round_trips(
        recs in proptest::collection::vec((1u8..=8, any::<[u8; 4]>(), proptest::collection::vec(any::<[u8; 4]>(), 0..5), 0usize..3), 0..6),
        vid in proptest::option::of(1u16..=4094),
    ) {
        let srcs: Vec<Vec<Ipv4Addr>> = recs.iter().map(|r| r.2.iter().map(|o| Ipv4Addr::from(*o)).collect()).collect();
        let aux = [0x5au8; 8];
        let specs: Vec<RecordSpec<'_>> = recs.iter().zip(&srcs).map(|(r, s)| RecordSpec {
            kind: RecordKind::from_u8(r.0), group: Ipv4Addr::from(r.1), sources: s, aux_data: &aux[..r.3 * 4 % 12],
        }).collect();
        let b = ReportV3Builder { src_mac: MacAddr([2, 0, 0, 0, 0, 2]), src_ip: Ipv4Addr::new(10, 0, 0, 2), records: &specs, vlan: vid.map(|v| VlanTag::new(v, 0)) };
        let v = to_vec(&b).unwrap();
        let f = parse_frame(&v).unwrap();
        prop_assert_eq!(f.vlan.map(|t| t.vid), vid);
        let L3::Igmp { msg: IgmpRepr::ReportV3 { records }, .. } = f.l3 else { panic!() };
        let got: Vec<(RecordKind, Ipv4Addr, Vec<Ipv4Addr>, usize)> = records.iter().map(|r| (r.kind, r.group, r.sources.iter().collect(), r.aux_data.len())).collect();
        let want: Vec<(RecordKind, Ipv4Addr, Vec<Ipv4Addr>, usize)> = specs.iter().map(|s| (s.kind, s.group, s.sources.to_vec(), s.aux_data.len())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn v3_query_builder_round_trips(
        group in any::<[u8; 4]>(),
        srcs in proptest::collection::vec(any::<[u8; 4]>(), 0..20),
        tenths in 0u32..40_000, qqi in 1u64..40_000, qrv in 0u8..8, s in any::<bool>(),
    ) {
        let group = Ipv4Addr::new(239, group[1], group[2], group[3]);
        let sources: Vec<Ipv4Addr> = srcs.iter().map(|o| Ipv4Addr::from(*o)).collect();
        let b = QueryBuilder {
            version: IgmpVersion::V3, src_mac: MacAddr([2, 0, 0, 0, 0, 3]), src_ip: Ipv4Addr::new(10, 0, 0, 3),
            group: Some(group), sources: &sources, max_resp: Duration::from_millis(u64::from(tenths) * 100),
            s_flag: s, qrv, qqi: Duration::from_secs(qqi), vlan: None,
        };
        let v = to_vec(&b).unwrap();
        let L3::Igmp { msg: IgmpRepr::Query(q), ip } = parse_frame(&v).unwrap().l3 else { panic!() };
        prop_assert_eq!(ip.dst, group);
        prop_assert_eq!(&q.sources.iter().collect::<Vec<_>>(), &sources);
        prop_assert_eq!((q.suppress, q.qrv), (s, qrv));
        // Max resp rounds down (never later than asked), QQI rounds up (never shorter).
        let mr = q.max_resp();
        prop_assert!(mr <= b.max_resp);
        // Floor error is below one step, and a step is at most 1/16 of the value.
        let got = u32::try_from(mr.as_millis() / 100).unwrap();
        if tenths <= timecode::MAX_VALUE { prop_assert!(got + tenths / 16 + 1 > tenths, "{got} vs {tenths}"); }
        let qq = q.qqi().unwrap();
        if qqi <= u64::from(timecode::MAX_VALUE) { prop_assert!(qq >= b.qqi); } else { prop_assert_eq!(qq.as_secs(), u64::from(timecode::MAX_VALUE)); }
    }
}
