//! The kernel's own IGMP host implementation, observed on the wire and read back with our parser.
//!
//! Two namespaces joined by a veth pair: a host with `force_igmp_version` 1, 2 or 3 joins and
//! leaves groups with real sockets; an AF_PACKET capture on the other end records what Linux
//! sends, and every frame must parse with `xsnoop_dataplane::wire` into exactly the message Linux
//! is known to send (RFC 1112 §7.2 / RFC 2236 §3 / RFC 3376 §5.1 host behaviour). One frame per
//! kind is kept under `tests/fixtures/` as seed input for the fuzzers.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use xsnoop_tests::{netns_or_skip, Capture, HostConfig, Membership, Netns, Topology};

use xsnoop_dataplane::wire::{to_vec, IgmpVersion, QueryBuilder};
use xsnoop_tests::observe::{observe, Igmp, Record, RecordType};

const HOST_MAC: [u8; 6] = [0x02, 0x58, 0x53, 0x00, 0x00, 0x01];
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OBSERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);
const IGMPV3_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
/// Linux sends the first report at once and repeats it (robustness variable times in all) within
/// the 100 ms unsolicited interval we configure; these bound the waits around that.
const DEADLINE: Duration = Duration::from_secs(3);
/// How long to keep listening after the expected copies, for unexpected extra messages.
const QUIET: Duration = Duration::from_millis(200);
/// How long a "nothing is sent" check listens.
const SILENCE: Duration = Duration::from_millis(400);

struct Bed {
    topo: Topology,
    ifname: String,
    cap: Capture,
    robustness: usize,
}

impl Bed {
    fn new(version: u8) -> Bed {
        let mut topo = Topology::new();
        topo.add_host("h").unwrap();
        topo.add_host("o").unwrap();
        topo.add_veth(("h", "h0"), ("o", "o0")).unwrap();
        let ifname = topo.ifname("h0").unwrap();
        let mac = HOST_MAC.map(|b| format!("{b:02x}")).join(":");
        topo.ns("h")
            .unwrap()
            .ip(&["link", "set", &ifname, "address", &mac])
            .unwrap();
        topo.configure_host("h", "h0", &HostConfig::new(HOST_IP, version))
            .unwrap();
        topo.configure_host("o", "o0", &HostConfig::new(OBSERVER_IP, 3))
            .unwrap();
        let cap = Capture::open(topo.ns("o").unwrap(), &topo.ifname("o0").unwrap()).unwrap();
        let robustness: usize = topo
            .ns("h")
            .unwrap()
            .sysctl_get("net.ipv4.igmp_qrv")
            .unwrap()
            .parse()
            .unwrap();
        // Let anything the link-up itself caused pass.
        cap.collect(Duration::from_millis(50)).unwrap();
        Bed {
            topo,
            ifname,
            cap,
            robustness,
        }
    }

    fn host(&self) -> &Netns {
        self.topo.ns("h").unwrap()
    }

    /// Checks the invariants every IGMP message from this host must satisfy, and decodes it.
    fn decode(&self, kind: &str, bytes: &[u8]) -> (Ipv4Addr, Igmp) {
        let o = observe(bytes).unwrap_or_else(|e| {
            panic!(
                "{kind}: our parser refused {}: {e}",
                xsnoop_tests::to_hex(bytes)
            )
        });
        // RFC 1112 §6.4: 01:00:5e + low 23 bits of the group.
        let d = o.ip_dst.octets();
        assert_eq!(
            o.eth_dst,
            [0x01, 0x00, 0x5e, d[1] & 0x7f, d[2], d[3]],
            "{kind}"
        );
        assert_eq!(o.eth_src, HOST_MAC, "{kind}");
        assert_eq!(o.vlan, None, "{kind}");
        assert_eq!(o.ip_src, HOST_IP, "{kind}");
        // RFC 2236 §2 / RFC 3376 §4: TTL 1 and the IP Router Alert option.
        assert_eq!(o.ttl, 1, "{kind}");
        assert!(o.router_alert, "{kind}: no router alert");
        if !kind.starts_with("close-") {
            save_fixture(kind, bytes);
        }
        (o.ip_dst, o.igmp)
    }

    /// Everything received within `window` from now, decoded.
    fn window(&self, kind: &str, window: Duration) -> Vec<(Ipv4Addr, Igmp)> {
        let frames = self.cap.collect(window).unwrap();
        frames
            .iter()
            .filter(|f| !f.outgoing)
            .map(|f| self.decode(kind, &f.bytes))
            .collect()
    }

    /// Asserts that the host sends exactly `copies` copies of one message and nothing else: waits
    /// (up to a generous deadline, for loaded machines) until `copies` frames arrived, then
    /// listens for [`QUIET`] more to catch extra or different messages.
    fn expect(&self, kind: &str, copies: usize, dst: Ipv4Addr, igmp: Igmp) {
        let deadline = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        while got.len() < copies {
            match self.cap.next_frame(deadline).unwrap() {
                Some(f) if !f.outgoing => got.push(self.decode(kind, &f.bytes)),
                Some(_) => {}
                None => break,
            }
        }
        got.extend(self.window(kind, QUIET));
        let want = vec![(dst, igmp); copies];
        assert_eq!(got, want, "{kind}: Linux sent something else");
    }

    /// Asserts that the host sends nothing (listening for [`SILENCE`]).
    fn expect_nothing(&self, kind: &str) {
        assert_eq!(self.window(kind, SILENCE), vec![], "{kind}");
    }
}

fn save_fixture(kind: &str, bytes: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("kernel-{kind}.hex"));
    let update = std::env::var("XSNOOP_UPDATE_FIXTURES").is_ok_and(|v| v == "1");
    if update || !path.exists() {
        std::fs::write(&path, format!("{}\n", xsnoop_tests::to_hex(bytes))).unwrap();
    }
}

fn g(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(239, 77, 1, last)
}

const SSM_GROUP: Ipv4Addr = Ipv4Addr::new(232, 77, 1, 1);
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const BLOCKED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);

#[test]
fn igmpv1_host_reports_and_never_leaves() {
    netns_or_skip!();
    let bed = Bed::new(1);
    let m = Membership::join(bed.host(), &bed.ifname, g(1), 0).unwrap();
    // RFC 1112 §7.2: a v1 host reports on join (Linux repeats it robustness times)...
    bed.expect(
        "v1-report",
        bed.robustness,
        g(1),
        Igmp::V1Report { group: g(1) },
    );
    // ...and has no leave message.
    m.leave().unwrap();
    bed.expect_nothing("v1-none");
}

#[test]
fn igmpv2_host_reports_and_leaves() {
    netns_or_skip!();
    let bed = Bed::new(2);
    let m = Membership::join(bed.host(), &bed.ifname, g(2), 0).unwrap();
    // RFC 2236 §3: unsolicited Version 2 Membership Report (0x16) to the group itself.
    bed.expect(
        "v2-report",
        bed.robustness,
        g(2),
        Igmp::V2Report { group: g(2) },
    );
    // Blocking a source cannot be expressed in v2: nothing is sent.
    m.block_source(BLOCKED).unwrap();
    bed.expect_nothing("v2-none");
    // A source-specific join degrades to a group join in v2.
    let s = Membership::join_source(bed.host(), &bed.ifname, SSM_GROUP, SOURCE, 0).unwrap();
    bed.expect(
        "v2-report-ssm",
        bed.robustness,
        SSM_GROUP,
        Igmp::V2Report { group: SSM_GROUP },
    );
    // RFC 2236 §3: Leave Group (0x17) to all-routers 224.0.0.2, sent once by Linux.
    s.leave().unwrap();
    bed.expect(
        "v2-leave",
        1,
        ALL_ROUTERS,
        Igmp::V2Leave { group: SSM_GROUP },
    );
    m.leave().unwrap();
    bed.expect("v2-leave", 1, ALL_ROUTERS, Igmp::V2Leave { group: g(2) });
}

fn v3(records: Vec<Record>) -> Igmp {
    Igmp::V3Report { records }
}

fn rec(record_type: RecordType, group: Ipv4Addr, sources: &[Ipv4Addr]) -> Record {
    Record {
        record_type,
        group,
        sources: sources.to_vec(),
    }
}

#[test]
fn igmpv3_host_state_changes() {
    netns_or_skip!();
    let bed = Bed::new(3);
    let n = bed.robustness;
    // RFC 3376 §5.1: every state change is reported to 224.0.0.22, robustness times.
    // ASM join: INCLUDE {} -> EXCLUDE {} = CHANGE_TO_EXCLUDE_MODE {}.
    let m = Membership::join(bed.host(), &bed.ifname, g(3), 0).unwrap();
    bed.expect(
        "v3-to-ex",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::ChangeToExclude, g(3), &[])]),
    );
    // Block a source: EXCLUDE {} -> EXCLUDE {S} = BLOCK_OLD_SOURCES {S}.
    m.block_source(BLOCKED).unwrap();
    bed.expect(
        "v3-block",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::BlockOldSources, g(3), &[BLOCKED])]),
    );
    // Unblock it again: EXCLUDE {S} -> EXCLUDE {} = ALLOW_NEW_SOURCES {S}.
    m.unblock_source(BLOCKED).unwrap();
    bed.expect(
        "v3-allow-unblock",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::AllowNewSources, g(3), &[BLOCKED])]),
    );
    // Source-specific join: INCLUDE {} -> INCLUDE {S} = ALLOW_NEW_SOURCES {S}.
    let s = Membership::join_source(bed.host(), &bed.ifname, SSM_GROUP, SOURCE, 0).unwrap();
    bed.expect(
        "v3-allow",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::AllowNewSources, SSM_GROUP, &[SOURCE])]),
    );
    // Source-specific leave: INCLUDE {S} -> INCLUDE {} = BLOCK_OLD_SOURCES {S}.
    s.leave().unwrap();
    bed.expect(
        "v3-block-ssm-leave",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::BlockOldSources, SSM_GROUP, &[SOURCE])]),
    );
    // ASM leave: EXCLUDE {} -> INCLUDE {} = CHANGE_TO_INCLUDE_MODE {}.
    m.leave().unwrap();
    bed.expect(
        "v3-to-in",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::ChangeToInclude, g(3), &[])]),
    );
}

#[test]
fn igmpv3_host_drops_membership_when_socket_closes() {
    netns_or_skip!();
    let bed = Bed::new(3);
    let m = Membership::join(bed.host(), &bed.ifname, g(4), 0).unwrap();
    bed.expect(
        "close-to-ex",
        bed.robustness,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::ChangeToExclude, g(4), &[])]),
    );
    // No explicit leave: closing the socket is enough for the kernel to leave.
    drop(m);
    bed.expect(
        "close-to-in",
        bed.robustness,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::ChangeToInclude, g(4), &[])]),
    );
}

/// The saved fixtures are real kernel frames: each must still parse, with our parser, into the
/// kind its file name says (this runs without root).
#[test]
fn fixtures_parse_as_their_kind() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(kind) = name
            .strip_prefix("kernel-")
            .and_then(|n| n.strip_suffix(".hex"))
        else {
            continue;
        };
        let bytes = xsnoop_tests::from_hex(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let o = observe(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ok = match &o.igmp {
            Igmp::V1Report { .. } => kind.starts_with("v1-report"),
            Igmp::V2Report { .. } => kind.starts_with("v2-report"),
            Igmp::V2Leave { .. } => kind == "v2-leave",
            Igmp::V3Report { records } => kind.starts_with("v3-") && !records.is_empty(),
            _ => false,
        };
        assert!(ok, "{name} parsed as {o:?}");
        seen += 1;
    }
    assert!(
        seen >= 7,
        "only {seen} kernel fixtures in {}",
        dir.display()
    );
}

// ---- The kernel answering queries our builders made (RFC 3376 §5.2, RFC 2236 §3) ----

const QUERIER_MAC: xsnoop_dataplane::wire::MacAddr =
    xsnoop_dataplane::wire::MacAddr([0x02, 0x58, 0x53, 0x00, 0x00, 0x02]);

impl Bed {
    /// Sends a query built by our codec from the observer's side, as a querier would.
    fn query(&self, version: IgmpVersion, group: Option<Ipv4Addr>, sources: &[Ipv4Addr]) {
        let frame = to_vec(&QueryBuilder {
            version,
            src_mac: QUERIER_MAC,
            src_ip: OBSERVER_IP,
            group,
            sources,
            // Short, so the host's random response delay (RFC 3376 §5.2) stays short.
            max_resp: Duration::from_millis(500),
            s_flag: false,
            qrv: 2,
            qqi: Duration::from_secs(125),
            vlan: None,
        })
        .unwrap();
        self.cap.inject(&frame).unwrap();
    }

    /// The one v3 report answering a query, its records sorted (the order of groups in a
    /// current-state report is the kernel's list order, which RFC 3376 does not constrain).
    fn answer_v3(&self, kind: &str) -> Vec<Record> {
        let deadline = Instant::now() + DEADLINE;
        let f = loop {
            match self.cap.next_frame(deadline).unwrap() {
                Some(f) if !f.outgoing => break f,
                Some(_) => {}
                None => panic!("{kind}: the host did not answer the query"),
            }
        };
        let (dst, igmp) = self.decode(kind, &f.bytes);
        assert_eq!(dst, IGMPV3_ROUTERS, "{kind}");
        let Igmp::V3Report { mut records } = igmp else {
            panic!("{kind}: answered with {igmp:?}");
        };
        // A query is answered once (no robustness repeats): nothing else may follow.
        assert_eq!(
            self.window(kind, QUIET),
            vec![],
            "{kind}: more than one answer"
        );
        records.sort_by_key(|r| (r.group, r.record_type.to_u8()));
        records
    }
}

#[test]
fn igmpv3_host_answers_our_queries_with_current_state_records() {
    netns_or_skip!("igmpv3_host_answers_our_queries_with_current_state_records");
    let bed = Bed::new(3);
    let n = bed.robustness;
    let asm = Membership::join(bed.host(), &bed.ifname, g(5), 0).unwrap();
    bed.expect(
        "close-to-ex",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::ChangeToExclude, g(5), &[])]),
    );
    let ssm = Membership::join_source(bed.host(), &bed.ifname, SSM_GROUP, SOURCE, 0).unwrap();
    bed.expect(
        "close-allow",
        n,
        IGMPV3_ROUTERS,
        v3(vec![rec(RecordType::AllowNewSources, SSM_GROUP, &[SOURCE])]),
    );

    // General query: one report with the current state of every group (224.0.0.1 excepted).
    bed.query(IgmpVersion::V3, None, &[]);
    let mut want = vec![
        rec(RecordType::ModeIsExclude, g(5), &[]),
        rec(RecordType::ModeIsInclude, SSM_GROUP, &[SOURCE]),
    ];
    want.sort_by_key(|r| (r.group, r.record_type.to_u8()));
    assert_eq!(bed.answer_v3("v3-is-ex-is-in"), want);

    // Group-specific query: only that group.
    bed.query(IgmpVersion::V3, Some(g(5)), &[]);
    assert_eq!(
        bed.answer_v3("v3-is-ex"),
        vec![rec(RecordType::ModeIsExclude, g(5), &[])]
    );

    // Group-and-source-specific query: the host reports the queried sources it wants
    // (RFC 3376 §5.2: INCLUDE mode, intersection with the query's sources).
    let other = Ipv4Addr::new(10, 0, 0, 10);
    bed.query(IgmpVersion::V3, Some(SSM_GROUP), &[other, SOURCE]);
    assert_eq!(
        bed.answer_v3("v3-is-in"),
        vec![rec(RecordType::ModeIsInclude, SSM_GROUP, &[SOURCE])]
    );

    // A query for a group nobody joined is not answered.
    bed.query(IgmpVersion::V3, Some(g(99)), &[]);
    bed.expect_nothing("close-none");
    drop((asm, ssm));
}

#[test]
fn igmpv2_host_answers_our_queries_with_reports() {
    netns_or_skip!("igmpv2_host_answers_our_queries_with_reports");
    let bed = Bed::new(2);
    let n = bed.robustness;
    let a = Membership::join(bed.host(), &bed.ifname, g(6), 0).unwrap();
    bed.expect("close-report", n, g(6), Igmp::V2Report { group: g(6) });
    let b = Membership::join(bed.host(), &bed.ifname, g(7), 0).unwrap();
    bed.expect("close-report", n, g(7), Igmp::V2Report { group: g(7) });

    // RFC 2236 §3: a general query is answered with one report per joined group.
    bed.query(IgmpVersion::V2, None, &[]);
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.len() < 2 {
        match bed.cap.next_frame(deadline).unwrap() {
            Some(f) if !f.outgoing => got.push(bed.decode("close-answer", &f.bytes)),
            Some(_) => {}
            None => break,
        }
    }
    got.extend(bed.window("close-answer", QUIET));
    got.sort_by_key(|(dst, _)| *dst);
    assert_eq!(
        got,
        vec![
            (g(6), Igmp::V2Report { group: g(6) }),
            (g(7), Igmp::V2Report { group: g(7) }),
        ]
    );

    // A group-specific query is answered for that group only.
    bed.query(IgmpVersion::V2, Some(g(7)), &[]);
    bed.expect("close-answer", 1, g(7), Igmp::V2Report { group: g(7) });
    drop((a, b));
}
