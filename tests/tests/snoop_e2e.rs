//! The snooping engine against real Linux hosts, end to end, in snoop mode.
//!
//! Real kernel IGMP (IP_ADD_MEMBERSHIP etc. in host namespaces) crosses real veth pairs into the
//! switch namespace, where the engine learns from it over AF_PACKET and, as querier, sends real
//! queries that the hosts' kernels answer. Timers are shortened so the RFC behaviour (membership
//! kept by answering queries, silent hosts expiring, last-member queries) fits in seconds.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use xsnoop_control::engine::model::Version;
use xsnoop_control::engine::timers::TimerConfig;
use xsnoop_control::engine::{EngineConfig, MdbFilterMode, PortConfig, VlanConfig};
use xsnoop_dataplane::wire::{
    parse_frame, to_vec, IgmpRepr, IgmpVersion, MacAddr, PimHelloBuilder, QueryBuilder, L3,
};
use xsnoop_dataplane::MulticastRule;
use xsnoop_tests::snoop_runner::SnoopRunner;
use xsnoop_tests::{netns_or_skip, Capture, HostConfig, Membership, Topology};

const QUERIER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const ASM: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const SSM: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 1);

/// Switch namespace `sw` with ports `p1..p4` towards hosts `h1` (IGMPv3), `h2` (IGMPv2),
/// `h3` (IGMPv3) and `rt` (a multicast router, or a host injecting raw frames).
struct Bed {
    topo: Topology,
    ports: Vec<String>,
}

impl Bed {
    fn new() -> Bed {
        let mut topo = Topology::new();
        topo.add_namespace("sw").unwrap();
        let hosts = [("h1", 3, 1), ("h2", 2, 2), ("h3", 3, 3), ("rt", 3, 4)];
        let mut ports = Vec::new();
        for (host, version, n) in hosts {
            topo.add_host(host).unwrap();
            let (port, _) = topo
                .add_veth(("sw", &format!("p{n}")), (host, &format!("e{n}")))
                .unwrap();
            topo.configure_host(
                host,
                &format!("e{n}"),
                &HostConfig::new(Ipv4Addr::new(10, 0, 0, n), version),
            )
            .unwrap();
            ports.push(port.ifname);
        }
        Bed { topo, ports }
    }

    fn host_if(&self, n: u8) -> String {
        self.topo.ifname(&format!("e{n}")).unwrap()
    }

    /// One VLAN, all ports access ports, querier at QUERIER with timers short enough for tests:
    /// QI 2 s, QRI 1 s, so GMI = 2 × 2 + 1 = 5 s and LMQT = 2 × 200 ms.
    fn config(&self, fast_leave: &[usize]) -> EngineConfig {
        let mut vlan = VlanConfig::new(1);
        vlan.querier = true;
        vlan.querier_address = QUERIER;
        vlan.igmp_version = Version::V3;
        vlan.timers = TimerConfig {
            query_interval: Duration::from_secs(2),
            query_response_interval: Duration::from_secs(1),
            last_member_query_interval: Duration::from_millis(200),
            startup_query_interval: Duration::from_millis(500),
            ..TimerConfig::default()
        };
        EngineConfig {
            ports: self
                .ports
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let mut p = PortConfig::access(name, 1);
                    p.fast_leave = fast_leave.contains(&i);
                    p
                })
                .collect(),
            vlans: vec![vlan],
            ..EngineConfig::default()
        }
    }
}

fn is_query_for(bytes: &[u8], group: Option<Ipv4Addr>) -> bool {
    matches!(parse_frame(bytes), Ok(f) if matches!(f.l3,
        L3::Igmp { msg: IgmpRepr::Query(q), ip } if q.group_opt() == group && ip.src == QUERIER))
}

#[test]
fn querier_learns_kernel_hosts_keeps_answering_members_and_expires_the_rest() {
    netns_or_skip!();
    let bed = Bed::new();
    let (p1, p2, p3) = (&bed.ports[0], &bed.ports[1], &bed.ports[2]);
    let cap1 = Capture::open(bed.topo.ns("h1").unwrap(), &bed.host_if(1)).unwrap();
    let sw = SnoopRunner::start(bed.topo.ns("sw").unwrap(), bed.config(&[])).unwrap();

    // Our startup general query reaches the hosts as a real IGMPv3 query.
    let (_, got) = cap1
        .until(Instant::now() + Duration::from_secs(2), |b| {
            is_query_for(b, None)
        })
        .unwrap();
    assert!(got, "h1 never saw xsnoop's general query");

    let h1 = Membership::join(bed.topo.ns("h1").unwrap(), &bed.host_if(1), ASM, 0).unwrap();
    let h2 = Membership::join(bed.topo.ns("h2").unwrap(), &bed.host_if(2), ASM, 0).unwrap();
    let h3 = Membership::join_source(bed.topo.ns("h3").unwrap(), &bed.host_if(3), SSM, SOURCE, 0)
        .unwrap();
    let s = sw
        .wait_for(Duration::from_secs(3), |s| {
            s.member(ASM, p1).is_some()
                && s.member(ASM, p2).is_some()
                && s.member(SSM, p3).is_some()
        })
        .unwrap_or_else(|s| panic!("joins not learned: {:#?}", s.mdb));
    assert_eq!(
        s.member(ASM, p1).unwrap().filter_mode,
        MdbFilterMode::Exclude
    );
    assert_eq!(
        s.member(SSM, p3).unwrap().filter_mode,
        MdbFilterMode::Include
    );
    assert!(
        s.mdb
            .iter()
            .any(|r| r.group == SSM && r.port == *p3 && r.source == Some(SOURCE) && !r.blocked),
        "h3's source not listed: {:#?}",
        s.mdb
    );

    // The published table sends each stream exactly where it was asked for (ingress: rt's port).
    let t = sw.table().load();
    let (asm_ports, rule) = t.multicast_egress(1, 3, SOURCE, ASM);
    assert_eq!(rule, MulticastRule::Registered);
    assert_eq!(asm_ports.iter().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(
        t.multicast_egress(1, 3, SOURCE, SSM)
            .0
            .iter()
            .collect::<Vec<_>>(),
        vec![2]
    );
    let other_source = Ipv4Addr::new(10, 0, 0, 77);
    assert!(t.multicast_egress(1, 3, other_source, SSM).0.is_empty());
    drop(t);

    // h2 (IGMPv2) leaves: xsnoop sends it a group-specific query, in v2 (the port is in v2
    // compatibility mode), and drops the port after the last member query time.
    let cap2 = Capture::open(bed.topo.ns("h2").unwrap(), &bed.host_if(2)).unwrap();
    h2.leave().unwrap();
    let (frames, got) = cap2
        .until(Instant::now() + Duration::from_secs(2), |b| {
            is_query_for(b, Some(ASM))
        })
        .unwrap();
    assert!(got, "no group-specific query after h2's leave");
    let last = parse_frame(&frames.last().unwrap().bytes).unwrap();
    let L3::Igmp {
        msg: IgmpRepr::Query(q),
        ..
    } = last.l3
    else {
        unreachable!()
    };
    assert_eq!(q.version, IgmpVersion::V2, "a v2 host must get a v2 query");
    sw.wait_for(Duration::from_secs(2), |s| s.member(ASM, p2).is_none())
        .unwrap_or_else(|s| panic!("h2 not removed after leave: {:#?}", s.mdb));

    // h1 goes silent (link down, no leave); h3 keeps answering queries. After more than the
    // group membership interval (5 s), h1 has expired and h3 is still a member.
    bed.topo
        .ns("h1")
        .unwrap()
        .ip(&["link", "set", &bed.host_if(1), "down"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(6));
    let s = sw.snapshot();
    assert!(
        s.member(ASM, p1).is_none(),
        "silent h1 did not expire: {:#?}",
        s.mdb
    );
    assert!(
        s.member(SSM, p3).is_some(),
        "h3 answered queries but was dropped: {:#?}",
        s.mdb
    );
    drop((h1, h3));
    sw.stop().unwrap();
}

#[test]
fn fast_leave_port_drops_at_once_without_querying() {
    netns_or_skip!();
    let bed = Bed::new();
    let p3 = bed.ports[2].clone();
    let sw = SnoopRunner::start(bed.topo.ns("sw").unwrap(), bed.config(&[2])).unwrap();
    let h3 = Membership::join(bed.topo.ns("h3").unwrap(), &bed.host_if(3), ASM, 0).unwrap();
    sw.wait_for(Duration::from_secs(3), |s| s.member(ASM, &p3).is_some())
        .unwrap_or_else(|s| panic!("join not learned: {:#?}", s.mdb));
    let cap3 = Capture::open(bed.topo.ns("h3").unwrap(), &bed.host_if(3)).unwrap();
    let left = Instant::now();
    h3.leave().unwrap();
    sw.wait_for(Duration::from_millis(300), |s| s.member(ASM, &p3).is_none())
        .unwrap_or_else(|s| panic!("fast-leave port kept the group: {:#?}", s.mdb));
    let frames = cap3.collect(Duration::from_millis(500)).unwrap();
    assert!(
        !frames
            .iter()
            .any(|f| !f.outgoing && is_query_for(&f.bytes, Some(ASM))),
        "fast leave must not send a group-specific query"
    );
    assert!(left.elapsed() < Duration::from_secs(2));
}

#[test]
fn router_ports_are_learned_from_pim_hellos_and_real_queries_but_not_proxy_queries() {
    netns_or_skip!();
    let bed = Bed::new();
    let mut cfg = bed.config(&[]);
    cfg.vlans[0].querier = false;
    let sw = SnoopRunner::start(bed.topo.ns("sw").unwrap(), cfg).unwrap();
    let mac = MacAddr([0x02, 0, 0, 0, 0, 0x42]);
    let roles = ["h1", "h2", "h3", "rt"];
    let inject = |n: u8, frame: &[u8]| {
        let ns = bed.topo.ns(roles[usize::from(n - 1)]).unwrap();
        Capture::open(ns, &bed.host_if(n))
            .unwrap()
            .inject(frame)
            .unwrap();
    };
    let query = |src: Ipv4Addr| {
        to_vec(&QueryBuilder {
            version: IgmpVersion::V3,
            src_mac: mac,
            src_ip: src,
            group: None,
            sources: &[],
            max_resp: Duration::from_secs(1),
            s_flag: false,
            qrv: 2,
            qqi: Duration::from_secs(2),
            vlan: None,
        })
        .unwrap()
    };
    // A proxy query (source 0.0.0.0) from h1 must not make p1 a router port (RFC 4541 §2.1.1(2)).
    inject(1, &query(Ipv4Addr::UNSPECIFIED));
    // A PIM hello from rt and a real query from h2 do.
    let hello = to_vec(&PimHelloBuilder {
        src_mac: mac,
        src_ip: Ipv4Addr::new(10, 0, 0, 4),
        holdtime: 105,
        vlan: None,
    })
    .unwrap();
    inject(4, &hello);
    inject(2, &query(Ipv4Addr::new(10, 0, 0, 2)));
    let s = sw
        .wait_for(Duration::from_secs(2), |s| s.mrouters.len() >= 2)
        .unwrap_or_else(|s| panic!("router ports not learned: {:#?}", s.mrouters));
    let mut ports: Vec<&str> = s.mrouters.iter().map(|m| m.port.as_str()).collect();
    ports.sort_unstable();
    let mut want = vec![bed.ports[1].as_str(), bed.ports[3].as_str()];
    want.sort_unstable();
    assert_eq!(ports, want);
    // Unregistered multicast now goes to the router ports only (RFC 4541 §2.1.2(3)).
    let t = sw.table().load();
    let (egress, rule) = t.multicast_egress(1, 0, SOURCE, Ipv4Addr::new(239, 9, 9, 9));
    assert_eq!(rule, MulticastRule::Unregistered);
    assert_eq!(egress.iter().collect::<Vec<_>>(), vec![1, 3]);
    // The elected querier is h2's address.
    assert_eq!(s.querier[0].querier, Some(Ipv4Addr::new(10, 0, 0, 2)));
}
