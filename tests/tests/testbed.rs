//! The testbed tests itself: names, cleanup (also on panic), in-namespace sysctls, real
//! multicast between namespaces, raw capture/injection with VLAN tags, pcap + tshark.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use xsnoop_tests::{
    netns_or_skip, pcap, tshark, Capture, HostConfig, Membership, Sender, Topology,
};

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn two_hosts(v: u8) -> Topology {
    let mut t = Topology::new();
    t.add_host("a").unwrap();
    t.add_host("b").unwrap();
    t.add_veth(("a", "a0"), ("b", "b0")).unwrap();
    t.configure_host("a", "a0", &HostConfig::new(Ipv4Addr::new(10, 9, 0, 1), v))
        .unwrap();
    t.configure_host("b", "b0", &HostConfig::new(Ipv4Addr::new(10, 9, 0, 2), v))
        .unwrap();
    t
}

#[test]
fn names_are_unique_and_fit_ifnamsiz() {
    let a = Topology::new();
    let b = Topology::new();
    assert_ne!(a.prefix(), b.prefix());
    let name = a.ifname("sw0p12").unwrap();
    assert!(name.len() <= 15, "{name}");
    assert!(a.ifname("muchtoolongrole").is_err());
    assert!(a.ifname("bad/role").is_err());
}

#[test]
fn hex_round_trip() {
    let bytes = [0x01u8, 0x00, 0x5e, 0xff, 0x0a];
    let hex = xsnoop_tests::to_hex(&bytes);
    assert_eq!(hex, "01005eff0a");
    assert_eq!(xsnoop_tests::from_hex(&hex).unwrap(), bytes);
    assert!(xsnoop_tests::from_hex("0g").is_none());
    assert!(xsnoop_tests::from_hex("abc").is_none());
}

#[test]
fn topology_is_deleted_on_drop_and_on_panic() {
    netns_or_skip!();
    let t = two_hosts(2);
    let names: Vec<String> = ["a", "b"]
        .iter()
        .map(|r| t.ns(r).unwrap().name().to_owned())
        .collect();
    assert!(names.iter().all(|n| netns_exists(n)));
    // The configuration landed inside the namespace, not in the root namespace.
    let a = t.ns("a").unwrap();
    let ifname = t.ifname("a0").unwrap();
    assert_eq!(
        a.sysctl_get(&format!("net.ipv4.conf.{ifname}.force_igmp_version"))
            .unwrap(),
        "2"
    );
    assert_eq!(a.sysctl_get("net.ipv6.conf.all.disable_ipv6").unwrap(), "1");
    assert!(!Path::new("/sys/class/net").join(&ifname).exists());
    drop(t);
    assert!(names.iter().all(|n| !netns_exists(n)));

    let mut leaked = String::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = two_hosts(3);
        leaked = t.ns("a").unwrap().name().to_owned();
        panic!("test body fails");
    }));
    assert!(r.is_err());
    assert!(!leaked.is_empty() && !netns_exists(&leaked));
}

#[test]
fn panic_inside_namespace_reaches_the_test() {
    netns_or_skip!();
    let mut t = Topology::new();
    let ns = t.add_namespace("p").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run(|| panic!("inside")).unwrap();
    }));
    assert!(r.is_err());
}

#[test]
fn multicast_flows_between_namespaces_to_the_joined_port_only() {
    netns_or_skip!();
    let t = two_hosts(3);
    let group = Ipv4Addr::new(239, 9, 9, 9);
    let rx = Membership::join(t.ns("b").unwrap(), &t.ifname("b0").unwrap(), group, 5001).unwrap();
    let tx = Sender::new(t.ns("a").unwrap(), &t.ifname("a0").unwrap(), 1).unwrap();
    for _ in 0..5 {
        tx.send(group, 5001, b"hello").unwrap();
    }
    let got = rx
        .count(Duration::from_millis(200), Duration::from_secs(2))
        .unwrap();
    assert_eq!(got, 5);
    // A different port is not delivered to this socket.
    tx.send(group, 5002, b"other").unwrap();
    assert_eq!(
        rx.count(Duration::from_millis(150), Duration::from_secs(1))
            .unwrap(),
        0
    );
}

#[test]
fn capture_sees_injected_frames_with_vlan_tag_restored() {
    netns_or_skip!();
    let t = two_hosts(3);
    let cap = Capture::open(t.ns("b").unwrap(), &t.ifname("b0").unwrap()).unwrap();
    let inj = Capture::open(t.ns("a").unwrap(), &t.ifname("a0").unwrap()).unwrap();
    cap.drain().unwrap();
    // Untagged and 802.1Q-tagged (VID 100, PCP 5) frames with a made-up ethertype.
    let mut plain = vec![0xff; 6];
    plain.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    plain.extend_from_slice(&[0xab; 46]);
    let mut tagged = vec![0xff; 6];
    tagged.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x81, 0x00, 0xa0, 0x64, 0x88, 0xb5]);
    tagged.extend_from_slice(&[0xcd; 46]);
    inj.inject(&plain).unwrap();
    inj.inject(&tagged).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let (frames, found) = cap
        .until(deadline, |f| f.get(12..14) == Some(&[0x81, 0x00]))
        .unwrap();
    assert!(found, "tagged frame not captured: {frames:?}");
    let rx: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|f| !f.outgoing)
        .map(|f| &f.bytes)
        .collect();
    assert!(rx.contains(&&plain));
    assert!(rx.contains(&&tagged));
}

#[test]
fn pcap_is_readable_by_tshark() {
    if !tshark::require("pcap_is_readable_by_tshark") {
        return;
    }
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    f.extend_from_slice(&[0u8; 46]);
    let dir = std::env::temp_dir().join(format!("xsnoop-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one.pcap");
    pcap::write(&path, &[&f, &f]).unwrap();
    let frames = tshark::decode(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(
        frames[0].get("eth.dst").as_deref(),
        Some("ff:ff:ff:ff:ff:ff")
    );
    assert_eq!(frames[1].get("frame.len").as_deref(), Some("60"));
}

#[test]
fn star_wires_hosts_to_switch_ports_both_ways() {
    netns_or_skip!("star_wires_hosts_to_switch_ports_both_ways");
    use xsnoop_dataplane::wire::{to_vec, MacAddr, UdpDataBuilder};
    use xsnoop_tests::observe::{observe, Igmp};
    let star = xsnoop_tests::Star::new(31, &[3, 2, 0]).unwrap();
    assert_eq!(star.len(), 3);
    let sw = star.switch().unwrap();
    let p2 = Capture::open(sw, &star.port(2).unwrap()).unwrap();
    let p1 = Capture::open(sw, &star.port(1).unwrap()).unwrap();
    p2.drain().unwrap();
    // Host 2 (v2) joins: its report arrives on switch port 2, and only there.
    let group = Ipv4Addr::new(239, 31, 0, 1);
    let m2 = Membership::join(
        star.host(2).unwrap(),
        &star.host_if(2).unwrap(),
        group,
        6000,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let (_, found) = p2
        .until(deadline, |f| {
            observe(f).is_ok_and(|o| {
                o.igmp == Igmp::V2Report { group } && o.ip_src == Ipv4Addr::new(10, 31, 0, 2)
            })
        })
        .unwrap();
    assert!(found, "no v2 report from host 2 on port 2");
    let igmp_on_p1 = p1
        .count(Duration::from_millis(50), |f| observe(f).is_ok())
        .unwrap();
    assert_eq!(igmp_on_p1, 0, "host 2's report leaked to port 1");
    // Data injected on switch port 2 reaches host 2's socket.
    let frame = to_vec(&UdpDataBuilder {
        src_mac: MacAddr([0x02, 0, 0, 0, 0x31, 0x99]),
        src_ip: Ipv4Addr::new(10, 31, 0, 99),
        group,
        src_port: 7000,
        dst_port: 6000,
        ttl: 4,
        payload: b"data",
        vlan: None,
    })
    .unwrap();
    for _ in 0..3 {
        p2.inject(&frame).unwrap();
    }
    assert_eq!(
        m2.count(Duration::from_millis(200), Duration::from_secs(2))
            .unwrap(),
        3
    );
}

#[test]
fn tshark_json_lookup_handles_nesting_and_merged_duplicates() {
    // The shape `tshark -T json --no-duplicate-keys` prints for an IGMPv3 report.
    let text = r#"[{"_source":{"layers":{
        "frame":{"frame.protocols":"eth:ethertype:ip:igmp"},
        "igmp":{"igmp.type":"0x22","igmp.num_grp_recs":"2",
          "Group Record : 232.1.1.1  Mode Is Include":{"igmp.record_type":"1","igmp.maddr":"232.1.1.1",
             "igmp.saddr":["10.0.0.2","10.0.0.1"]},
          "Group Record : 232.1.1.2  Allow New Sources":{"igmp.record_type":"5","igmp.maddr":"232.1.1.2",
             "igmp.saddr":"10.0.0.3"}}}}}]"#;
    let frames = tshark::parse_json(text).unwrap();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.protocols(), "eth:ethertype:ip:igmp");
    assert_eq!(f.get("igmp.type").as_deref(), Some("0x22"));
    assert_eq!(f.get("igmp.nothing"), None);
    let recs = f.subtrees("igmp.record_type");
    assert_eq!(recs.len(), 2);
    // Repeated values inside one subtree keep their order.
    assert_eq!(recs[0].all("igmp.saddr"), ["10.0.0.2", "10.0.0.1"]);
    assert_eq!(recs[1].all("igmp.saddr"), ["10.0.0.3"]);
    assert_eq!(f.all("igmp.saddr").len(), 3);
    assert!(tshark::parse_json("{}").is_err());
    assert!(tshark::parse_json("[{}]").is_err());
}
