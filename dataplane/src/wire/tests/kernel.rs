//! Frames captured from the real Linux 6.18 kernel on this machine (veth between two network
//! namespaces, `force_igmp_version`, python `IP_ADD_MEMBERSHIP` / `IP_ADD_SOURCE_MEMBERSHIP`,
//! and a Linux bridge with `mcast_querier 1`), captured with tcpdump, embedded as hex.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::super::*;
use super::hex;

/// Host 10.99.0.1 (02:00:00:00:00:0a), force_igmp_version=1, joins 239.1.2.3: v1 report.
pub(super) const V1_REPORT: &str =
    "01005e01020302000000000a080046c00020000040000102e8af0a630001ef010203940400001200fcfaef010203";
/// force_igmp_version=2: join 239.1.2.3 → v2 report to G.
pub(super) const V2_REPORT: &str =
    "01005e01020302000000000a080046c00020000040000102e8af0a630001ef010203940400001600f8faef010203";
/// force_igmp_version=2: leave 239.1.2.3 → v2 leave to 224.0.0.2.
pub(super) const V2_LEAVE: &str =
    "01005e00000202000000000a080046c00020000040000102f9b10a630001e0000002940400001700f7faef010203";
/// force_igmp_version=3: join 239.1.2.3 (any source) → TO_EX {} .
pub(super) const V3_TO_EX: &str =
    "01005e00001602000000000a080046c00028000040000102f9950a630001e0000016\
     940400002200e8f90000000104000000ef010203";
/// force_igmp_version=3: leave 239.1.2.3 → TO_IN {}.
pub(super) const V3_TO_IN: &str =
    "01005e00001602000000000a080046c00028000040000102f9950a630001e0000016\
     940400002200e9f90000000103000000ef010203";
/// IP_ADD_SOURCE_MEMBERSHIP 232.5.6.7 from 10.1.1.2 after 10.1.1.1: ALLOW {10.1.1.1, 10.1.1.2}
/// (the retransmission merges the pending source list).
pub(super) const V3_ALLOW2: &str =
    "01005e00001602000000000a080046c00030000040000102f98d0a630001e0000016\
     940400002200d4ea0000000105000002e80506070a0101010a010102";
/// IP_DROP_SOURCE_MEMBERSHIP: BLOCK {10.1.1.2, 10.1.1.1}.
pub(super) const V3_BLOCK2: &str =
    "01005e00001602000000000a080046c00030000040000102f98d0a630001e0000016\
     940400002200d3ea0000000106000002e80506070a0101020a010101";
/// Linux bridge querier (mcast_igmp_version 2, source 0.0.0.0, interval 1 s): v2 general query,
/// max resp 10 s.
pub(super) const BR_V2_GENERAL: &str =
    "01005e000001ca442d649eb4080046c00020000040000102041700000000e0000001940400001164ee9b00000000";
/// Same bridge with mcast_igmp_version 3: v3 general query, QRV 2, QQIC 1.
pub(super) const BR_V3_GENERAL: &str =
    "01005e000001ca442d649eb4080046c00024000040000102041300000000e0000001\
     940400001164ec9a0000000002010000";
/// Bridge querier (query interval 10 s) answering a TO_IN {} for 239.1.2.3: v3 group-specific
/// query, max resp 1 s, QRV 2, QQIC 10; first without, then with the S flag.
pub(super) const BR_V3_GSQ: &str =
    "01005e0102031aa0507afe6d080046c00024000040000102f30f00000000ef010203\
     94040000110afbe6ef010203020a0000";
pub(super) const BR_V3_GSQ_S: &str =
    "01005e0102031aa0507afe6d080046c00024000040000102f30f00000000ef010203\
     94040000110af3e6ef0102030a0a0000";
/// Bridge answering BLOCK {10.1.1.2, 10.1.1.1} for 232.5.6.7: group-and-source-specific query.
pub(super) const BR_V3_GSSQ: &str =
    "01005e0506071aa0507afe6d080046c0002c000040000102f5ff00000000e8050607\
     94040000110ae8d7e8050607020a00020a0101020a010101";

/// Linux bridge querier in IGMPv2 mode answering a v2 leave for 239.1.2.3: a v2 group-specific
/// query, max resp 1 s. Note: Linux sends it to 224.0.0.1, not to G as RFC 2236 §3 says; the
/// group field is what counts.
pub(super) const BR_V2_GSQ_TO_ALL_SYSTEMS: &str =
    "01005e0000016e4e8b08f94f080046c00020000040000102041700000000e000000194040000110afdf0ef010203";

/// Every capture, for the robustness tests.
pub(super) const ALL: [&str; 13] = [
    V1_REPORT,
    V2_REPORT,
    V2_LEAVE,
    V3_TO_EX,
    V3_TO_IN,
    V3_ALLOW2,
    V3_BLOCK2,
    BR_V2_GENERAL,
    BR_V3_GENERAL,
    BR_V3_GSQ,
    BR_V3_GSQ_S,
    BR_V3_GSSQ,
    BR_V2_GSQ_TO_ALL_SYSTEMS,
];

const HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const G: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const SSM: Ipv4Addr = Ipv4Addr::new(232, 5, 6, 7);
const S1: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
const S2: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);

fn igmp(h: &str) -> (Frame<'static>, IgmpRepr<'static>, Ipv4Info) {
    let b: &'static [u8] = Box::leak(hex(h).into_boxed_slice());
    let f = parse_frame(b).unwrap();
    match f.l3 {
        L3::Igmp { ip, msg } => (f, msg, ip),
        other => panic!("not IGMP: {other:?}"),
    }
}

fn query(h: &str) -> (IgmpQuery<'static>, Ipv4Info, Frame<'static>) {
    let (f, msg, ip) = igmp(h);
    match msg {
        IgmpRepr::Query(q) => (q, ip, f),
        other => panic!("not a query: {other:?}"),
    }
}

fn records(h: &str) -> Vec<(RecordKind, Ipv4Addr, Vec<Ipv4Addr>)> {
    let (_, msg, ip) = igmp(h);
    assert_eq!(ip.dst, mcast::IGMPV3_ROUTERS);
    match msg {
        IgmpRepr::ReportV3 { records } => records
            .iter()
            .map(|r| (r.kind, r.group, r.sources.iter().collect()))
            .collect(),
        other => panic!("not a v3 report: {other:?}"),
    }
}

#[test]
fn host_reports_and_leave() {
    let (f, msg, ip) = igmp(V1_REPORT);
    assert_eq!(msg, IgmpRepr::ReportV1 { group: G });
    assert_eq!(
        (f.src, f.dst, f.vlan, f.l3_offset),
        (HOST_MAC, multicast_mac(G), None, 14)
    );
    assert_eq!((ip.src, ip.dst, ip.ttl, ip.tos), (HOST, G, 1, 0xc0));
    assert!(ip.router_alert && ip.dont_fragment && !ip.is_fragment());
    assert_eq!(ip.header_len, 24);

    let (_, msg, ip) = igmp(V2_REPORT);
    assert_eq!(msg, IgmpRepr::ReportV2 { group: G });
    assert_eq!(ip.dst, G);
    let (f, msg, ip) = igmp(V2_LEAVE);
    assert_eq!(msg, IgmpRepr::LeaveV2 { group: G });
    assert_eq!(
        (ip.dst, f.dst),
        (mcast::ALL_ROUTERS, multicast_mac(mcast::ALL_ROUTERS))
    );
}

#[test]
fn host_v3_records() {
    assert_eq!(
        records(V3_TO_EX),
        vec![(RecordKind::ChangeToExclude, G, vec![])]
    );
    assert_eq!(
        records(V3_TO_IN),
        vec![(RecordKind::ChangeToInclude, G, vec![])]
    );
    assert_eq!(
        records(V3_ALLOW2),
        vec![(RecordKind::AllowNewSources, SSM, vec![S1, S2])]
    );
    assert_eq!(
        records(V3_BLOCK2),
        vec![(RecordKind::BlockOldSources, SSM, vec![S2, S1])]
    );
}

#[test]
fn bridge_queries() {
    let (q, ip, _) = query(BR_V2_GENERAL);
    assert_eq!(
        (q.version, q.max_resp(), q.group_opt(), q.qqi()),
        (IgmpVersion::V2, Duration::from_secs(10), None, None)
    );
    assert_eq!(
        (ip.src, ip.dst),
        (Ipv4Addr::UNSPECIFIED, mcast::ALL_SYSTEMS)
    );

    let (q, ip, f) = query(BR_V2_GSQ_TO_ALL_SYSTEMS);
    assert_eq!(
        (q.version, q.group_opt(), q.max_resp()),
        (IgmpVersion::V2, Some(G), Duration::from_secs(1))
    );
    assert_eq!(
        (ip.dst, f.dst),
        (mcast::ALL_SYSTEMS, multicast_mac(mcast::ALL_SYSTEMS))
    );

    let (q, _, _) = query(BR_V3_GENERAL);
    assert_eq!(q.version, IgmpVersion::V3);
    assert!(q.is_general() && !q.suppress && q.sources.is_empty());
    assert_eq!(
        (q.qrv, q.qqi(), q.max_resp()),
        (2, Some(Duration::from_secs(1)), Duration::from_secs(10))
    );

    let (q, ip, f) = query(BR_V3_GSQ);
    assert_eq!(
        (q.group_opt(), ip.dst, f.dst),
        (Some(G), G, multicast_mac(G))
    );
    assert_eq!(
        (q.max_resp(), q.qrv, q.qqi(), q.suppress),
        (
            Duration::from_secs(1),
            2,
            Some(Duration::from_secs(10)),
            false
        )
    );
    let (q, _, _) = query(BR_V3_GSQ_S);
    assert!(q.suppress);

    let (q, _, _) = query(BR_V3_GSSQ);
    assert_eq!(q.group_opt(), Some(SSM));
    assert_eq!(q.sources.iter().collect::<Vec<_>>(), vec![S2, S1]);
    assert_eq!(q.sources.len(), 2);
}

/// Our builders must produce the same IGMP octets as the kernel for the same message (the IP
/// headers differ on purpose: Linux sets DF, our builders do not).
#[test]
fn builders_match_kernel_igmp_octets() {
    fn igmp_part(b: &[u8]) -> Vec<u8> {
        b[14 + 24..].to_vec()
    }
    let bridge_mac = MacAddr([0x1a, 0xa0, 0x50, 0x7a, 0xfe, 0x6d]);
    let gssq = QueryBuilder {
        version: IgmpVersion::V3,
        src_mac: bridge_mac,
        src_ip: Ipv4Addr::UNSPECIFIED,
        group: Some(SSM),
        sources: &[S2, S1],
        max_resp: Duration::from_secs(1),
        s_flag: false,
        qrv: 2,
        qqi: Duration::from_secs(10),
        vlan: None,
    };
    let ours = to_vec(&gssq).unwrap();
    let kernel = hex(BR_V3_GSSQ);
    assert_eq!(igmp_part(&ours), igmp_part(&kernel));
    assert_eq!(ours[..14], kernel[..14]);
    let gsq_s = QueryBuilder {
        group: Some(G),
        sources: &[],
        s_flag: true,
        ..gssq
    };
    assert_eq!(
        igmp_part(&to_vec(&gsq_s).unwrap()),
        igmp_part(&hex(BR_V3_GSQ_S))
    );
    let v2 = QueryBuilder {
        version: IgmpVersion::V2,
        group: None,
        sources: &[],
        max_resp: Duration::from_secs(10),
        ..gssq
    };
    assert_eq!(
        igmp_part(&to_vec(&v2).unwrap()),
        igmp_part(&hex(BR_V2_GENERAL))
    );

    let r2 = ReportV2Builder {
        src_mac: HOST_MAC,
        src_ip: HOST,
        group: G,
        vlan: None,
    };
    let ours = to_vec(&r2).unwrap();
    let kernel = hex(V2_REPORT);
    assert_eq!(ours.len(), kernel.len());
    assert_eq!(igmp_part(&ours), igmp_part(&kernel));
    assert_eq!(ours[..14], kernel[..14]);
    // Same IP header except DF (and so the checksum).
    let diff: Vec<usize> = (14..38).filter(|&i| ours[i] != kernel[i]).collect();
    assert_eq!(diff, vec![20, 24, 25]);

    let leave = LeaveBuilder {
        src_mac: HOST_MAC,
        src_ip: HOST,
        group: G,
        vlan: None,
    };
    assert_eq!(
        igmp_part(&to_vec(&leave).unwrap()),
        igmp_part(&hex(V2_LEAVE))
    );
    let r1 = ReportV1Builder {
        src_mac: HOST_MAC,
        src_ip: HOST,
        group: G,
        vlan: None,
    };
    assert_eq!(igmp_part(&to_vec(&r1).unwrap()), igmp_part(&hex(V1_REPORT)));
    let block = [RecordSpec {
        kind: RecordKind::BlockOldSources,
        group: SSM,
        sources: &[S2, S1],
        aux_data: &[],
    }];
    let r3 = ReportV3Builder {
        src_mac: HOST_MAC,
        src_ip: HOST,
        records: &block,
        vlan: None,
    };
    assert_eq!(igmp_part(&to_vec(&r3).unwrap()), igmp_part(&hex(V3_BLOCK2)));
}

/// `IgmpRepr::emit` reproduces each captured message exactly.
#[test]
fn repr_emit_reproduces_kernel_messages() {
    for h in ALL {
        let b = hex(h);
        let (_, msg, _) = igmp(h);
        let mut out = vec![0u8; msg.buffer_len()];
        assert_eq!(msg.emit(&mut out).unwrap(), b.len() - 38, "{h}");
        assert_eq!(out, b[38..], "{h}");
    }
}
