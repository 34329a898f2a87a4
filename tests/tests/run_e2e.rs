//! `xsnoop run`, the forwarding switch, end to end: the real daemon process in a switch
//! namespace, real kernel hosts behind veth pairs, real ping and real UDP multicast.
//!
//! Each test writes a config file with short timers to a temp dir, starts `xsnoop run` inside the
//! switch namespace (generic XDP is not needed: veth has native XDP), waits until the control
//! socket answers, and checks what the hosts' own sockets receive.

use std::net::{Ipv4Addr, UdpSocket};

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_dataplane::wire::{
    to_vec, IgmpVersion, MacAddr, QueryBuilder, ReportV2Builder, VlanTag,
};
use xsnoop_tests::daemon::{kernel_path, kernel_path_vlans, kernel_rx};
use xsnoop_tests::{netns_or_skip, Capture, Membership, Sender, Star};

/// The testbed's shared launcher, with test-style waits that fail the test with the daemon's
/// log.
struct Daemon(xsnoop_tests::Daemon);

impl Daemon {
    /// Starts `xsnoop run --config` with `config` in `star`'s switch and waits until it answers.
    fn start(star: &Star, config: &str) -> Daemon {
        let ns = star.switch().unwrap();
        Daemon(
            xsnoop_tests::Daemon::run(ns, &format!("run-{}", star.topo.prefix()), config)
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// Polls `what` until `pred` holds; fails the test with the last answer and the log.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.0
            .wait_for(what, timeout, pred)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// SIGTERM; asserts a clean exit within 3 s and that the control socket is gone.
    fn stop(self) -> String {
        self.0.stop().unwrap_or_else(|e| panic!("{e}"))
    }
}

impl std::ops::Deref for Daemon {
    type Target = xsnoop_tests::Daemon;

    fn deref(&self) -> &xsnoop_tests::Daemon {
        &self.0
    }
}

/// A config with short timers: querier on (address .254), QI 2 s, LMQI 500 ms × 2 (LMQT 1 s);
/// `overrides` replace `[snooping]` keys (`("query_interval", "\"60s\"")`).
fn config(net: u8, ports: &[(String, &str)], overrides: &[(&str, &str)]) -> String {
    let querier = format!("\"10.{net}.0.254\"");
    let mut keys: Vec<(&str, &str)> = vec![
        ("querier", "true"),
        ("querier_address", &querier),
        ("query_interval", "\"2s\""),
        ("query_response_interval", "\"1s\""),
        ("last_member_query_interval", "\"500ms\""),
        ("last_member_query_count", "2"),
        ("startup_query_interval", "\"500ms\""),
    ];
    for (k, v) in overrides {
        keys.retain(|(key, _)| key != k);
        keys.push((k, v));
    }
    let mut s = String::from("[snooping]\n");
    for (k, v) in keys {
        s.push_str(&format!("{k} = {v}\n"));
    }
    for (name, rest) in ports {
        s.push_str(&format!("[[port]]\nname = \"{name}\"\n{rest}\n"));
    }
    s
}

fn access_ports(star: &Star, rest: &[&'static str]) -> Vec<(String, &'static str)> {
    (1..=star.len())
        .map(|i| {
            (
                star.port(i).unwrap(),
                rest.get(i - 1).copied().unwrap_or(""),
            )
        })
        .collect()
}

/// The star of `versions` hosts, ready for an AF_XDP switch (see `Star::prepare_for_afxdp`).
fn star(net: u8, versions: &[u8]) -> Star {
    let star = Star::new(net, versions).unwrap();
    star.prepare_for_afxdp().unwrap();
    star
}

fn host_ip(net: u8, i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, 0, i)
}

/// A UDP socket bound to `port` on any address, created inside host `n`'s namespace.
fn udp(star: &Star, n: usize, port: u16) -> UdpSocket {
    let s = star
        .host(n)
        .unwrap()
        .run(|| UdpSocket::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// A unicast round trip between hosts `a` and `b` (a ping without the ping tool): `a` sends
/// until `b` answers, which needs the ARP broadcasts flooded and the unicast replies switched.
/// `None` on success, else what went wrong.
fn round_trip(star: &Star, net: u8, a: usize, b: usize) -> Option<String> {
    let sa = udp(star, a, 7001);
    let sb = udp(star, b, 7002);
    let to_b = (host_ip(net, u8::try_from(b).unwrap()), 7002);
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        sa.send_to(b"ping", to_b).unwrap();
        let Ok((n, from)) = sb.recv_from(&mut buf) else {
            continue;
        };
        if &buf[..n] != b"ping" {
            return Some(format!("b got {:?}", &buf[..n]));
        }
        sb.send_to(b"pong", from).unwrap();
        return match sa.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == b"pong" => None,
            other => Some(format!("no pong: {other:?}")),
        };
    }
    Some("no ping arrived in 5 s".into())
}

#[test]
fn unicast_ping_crosses_the_switch_and_macs_are_learned() {
    netns_or_skip!();
    let net = 71;
    let star = star(net, &[2, 2, 2]);
    let d = Daemon::start(&star, &config(net, &access_ports(&star, &[]), &[]));
    for (a, b) in [(1, 2), (3, 1), (2, 3)] {
        if let Some(e) = round_trip(&star, net, a, b) {
            panic!("h{a} → h{b}: {e}\n{}", d.log());
        }
    }
    // And the real tool: ICMP echo through the switch, both ways.
    for (a, b) in [(1usize, 3usize), (3, 2)] {
        let dst = host_ip(net, u8::try_from(b).unwrap()).to_string();
        let out = Command::new("ip")
            .args(["netns", "exec", star.host(a).unwrap().name()])
            .args(["ping", "-c", "3", "-i", "0.2", "-W", "2", &dst])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ping h{a} → h{b} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            d.log()
        );
    }
    // ARP requests were flooded as broadcast, the datagrams and replies went to learned MACs
    // (the worker refreshes its reason counters a few times a second).
    let count = |v: &Value, k: &str| v["dataplane"]["reasons"][k].as_u64().unwrap_or(0);
    d.wait_for("stats", Duration::from_secs(2), |v| {
        count(v, "fwd_broadcast") >= 2 && count(v, "fwd_known_unicast") >= 6
    });
    // `xsnoop fdb` shows each host's MAC behind its own port, freshly heard.
    let fdb = d.show("fdb").unwrap();
    for i in 1..=3 {
        // The host's interface lives in its namespace: ask ip for its address.
        let brief = star
            .host(i)
            .unwrap()
            .ip(&["-br", "link", "show", "dev", &star.host_if(i).unwrap()])
            .unwrap();
        let mac = brief.split_whitespace().nth(2).unwrap().to_string();
        let row = fdb
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["mac"] == mac.as_str())
            .unwrap_or_else(|| panic!("h{i} ({mac}) not in the fdb: {fdb}"));
        assert_eq!(row["port"], star.port(i).unwrap().as_str(), "{fdb}");
        assert_eq!(row["vlan"], 1);
        assert!(row["age_ms"].as_u64().unwrap() < 10_000, "{row}");
    }
    let text = d.show_text("fdb").unwrap();
    assert!(
        text.starts_with("VLAN") && text.contains(&star.port(2).unwrap()),
        "{text}"
    );
    eprintln!("{text}");
    d.stop();
}

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const UDP_PORT: u16 = 5000;

/// An untagged IPv4 frame's protocol, source and destination.
fn ipv4(f: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr)> {
    if f.get(12..14)? != [8, 0] {
        return None;
    }
    let a = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = f.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    Some((*f.get(23)?, a(26)?, a(30)?))
}

/// A UDP datagram to `group`.
fn udp_to(group: Ipv4Addr) -> impl Fn(&[u8]) -> bool {
    move |f| ipv4(f).is_some_and(|(p, _, d)| p == 17 && d == group)
}

/// A UDP datagram from `src` to `group`.
fn udp_from_to(src: Ipv4Addr, group: Ipv4Addr) -> impl Fn(&[u8]) -> bool {
    move |f| ipv4(f).is_some_and(|(p, s, d)| p == 17 && s == src && d == group)
}

/// An IGMP membership report (v1/v2/v3) or v2 leave sent by `src`.
fn report_from(src: Ipv4Addr) -> impl Fn(&[u8]) -> bool {
    move |f| {
        let Some((2, s, _)) = ipv4(f) else {
            return false;
        };
        let ihl = usize::from(f.get(14).copied().unwrap_or(0) & 0x0f) * 4;
        s == src && matches!(f.get(14 + ihl), Some(0x12 | 0x16 | 0x22 | 0x17))
    }
}

/// Sends `n` datagrams to `group`, 2 ms apart.
fn send(sender: &Sender, group: Ipv4Addr, n: usize) {
    for i in 0..n {
        sender
            .send(group, UDP_PORT, format!("datagram {i}").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn capture(star: &Star, n: usize) -> Capture {
    star.capture(n).unwrap()
}

fn join(star: &Star, n: usize, group: Ipv4Addr) -> Membership {
    star.join(n, group, UDP_PORT).unwrap()
}

fn sender(star: &Star, n: usize) -> Sender {
    Sender::new(star.host(n).unwrap(), &star.host_if(n).unwrap(), 4).unwrap()
}

/// Whether the mdb answer has a row for (`vlan`, `group`, `port`) (any source).
fn has_row(mdb: &Value, vlan: u64, group: Ipv4Addr, port: &str) -> bool {
    mdb.as_array().is_some_and(|rows| {
        rows.iter()
            .any(|r| r["vlan"] == vlan && r["group"] == group.to_string() && r["port"] == port)
    })
}

const QUIET: Duration = Duration::from_millis(400);
const WINDOW: Duration = Duration::from_millis(600);

#[test]
fn igmpv2_member_gets_the_group_nonmember_nothing_and_leaves_stop_it() {
    netns_or_skip!();
    let net = 72;
    // h1 sends; h2 joins; h3 joins behind a fast-leave port; h4 never joins.
    let star = star(net, &[2, 2, 2, 2]);
    let d = Daemon::start(
        &star,
        &config(
            net,
            &access_ports(&star, &["", "", "fast_leave = true"]),
            &[],
        ),
    );
    let (p2, p3) = (star.port(2).unwrap(), star.port(3).unwrap());
    let m2 = join(&star, 2, GROUP);
    let m3 = join(&star, 3, GROUP);
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 1, GROUP, &p2) && has_row(v, 1, GROUP, &p3)
    });
    let c4 = capture(&star, 4);
    let tx = sender(&star, 1);
    send(&tx, GROUP, 20);
    assert_eq!(m2.count(QUIET, Duration::from_secs(3)).unwrap(), 20);
    assert_eq!(m3.count(QUIET, Duration::from_secs(3)).unwrap(), 20);
    assert_eq!(c4.count(WINDOW, udp_to(GROUP)).unwrap(), 0, "leak to h4");

    // Fast leave: the port-group goes at once (no last-member queries).
    let t = Instant::now();
    m3.leave().unwrap();
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        !has_row(v, 1, GROUP, &p3)
    });
    let fast = t.elapsed();
    assert!(
        fast < Duration::from_millis(450),
        "fast leave took {fast:?}"
    );
    // Normal leave: RFC 2236 §3 / RFC 3376 §6.4: after LMQC queries LMQI apart (1 s here).
    let t = Instant::now();
    m2.leave().unwrap();
    d.wait_for("mdb", Duration::from_secs(4), |v| {
        !has_row(v, 1, GROUP, &p2)
    });
    let slow = t.elapsed();
    assert!(
        slow > Duration::from_millis(700) && slow < Duration::from_millis(2500),
        "leave took {slow:?}, last member query time is 1 s"
    );
    let (c2, c3) = (capture(&star, 2), capture(&star, 3));
    send(&tx, GROUP, 20);
    for (n, c) in [(2, &c2), (3, &c3), (4, &c4)] {
        assert_eq!(
            c.count(WINDOW, udp_to(GROUP)).unwrap(),
            0,
            "h{n} after the leaves"
        );
    }
    eprintln!("run_e2e: fast leave {fast:?}, leave with last-member queries {slow:?}");
    d.stop();
}

#[test]
fn igmpv3_include_source_receives_only_that_source() {
    netns_or_skip!();
    let net = 73;
    // h1 is S1, h2 is S2, h3 wants (S1, G) only.
    let star = star(net, &[3, 3, 3]);
    let d = Daemon::start(&star, &config(net, &access_ports(&star, &[]), &[]));
    let (s1, s2) = (host_ip(net, 1), host_ip(net, 2));
    let p3 = star.port(3).unwrap();
    let m = Membership::join_source(
        star.host(3).unwrap(),
        &star.host_if(3).unwrap(),
        GROUP,
        s1,
        UDP_PORT,
    )
    .unwrap();
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        v.as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["port"] == p3.as_str() && r["source"] == s1.to_string())
        })
    });
    let c3 = capture(&star, 3);
    let (t1, t2) = (sender(&star, 1), sender(&star, 2));
    for _ in 0..10 {
        send(&t1, GROUP, 1);
        send(&t2, GROUP, 1);
    }
    let frames = c3.collect(WINDOW).unwrap();
    let n = |src| {
        frames
            .iter()
            .filter(|f| !f.outgoing && udp_from_to(src, GROUP)(&f.bytes))
            .count()
    };
    assert_eq!(
        (n(s1), n(s2)),
        (10, 0),
        "frames from S1 and S2 at the receiver"
    );
    assert_eq!(m.count(QUIET, Duration::from_secs(2)).unwrap(), 10);
    d.stop();
}

#[test]
fn external_querier_port_becomes_mrouter_and_gets_traffic_and_reports() {
    netns_or_skip!();
    let net = 74;
    // h1 sends; h2 joins; h3 is a bystander; h4 is a multicast router (sends a query).
    let star = star(net, &[2, 2, 2, 2]);
    let d = Daemon::start(&star, &config(net, &access_ports(&star, &[]), &[]));
    let p4 = star.port(4).unwrap();
    let (c3, c4) = (capture(&star, 3), capture(&star, 4));
    let query = to_vec(&QueryBuilder {
        version: IgmpVersion::V2,
        src_mac: MacAddr([0x02, 0, 0, 0, net, 4]),
        src_ip: host_ip(net, 4),
        group: None,
        sources: &[],
        max_resp: Duration::from_secs(1),
        s_flag: false,
        qrv: 2,
        qqi: Duration::from_secs(2),
        vlan: None,
    })
    .unwrap();
    c4.inject(&query).unwrap();
    d.wait_for("mrouters", Duration::from_secs(3), |v| {
        v.as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["port"] == p4.as_str()))
    });
    c3.drain().unwrap();
    c4.drain().unwrap();
    let m2 = join(&star, 2, GROUP);
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 1, GROUP, &star.port(2).unwrap())
    });
    send(&sender(&star, 1), GROUP, 20);
    assert_eq!(m2.count(QUIET, Duration::from_secs(3)).unwrap(), 20);
    let h2 = host_ip(net, 2);
    let f4 = c4.collect(WINDOW).unwrap();
    let f3 = c3.collect(Duration::ZERO).unwrap();
    let count = |frames: &[xsnoop_tests::Frame], pred: &dyn Fn(&[u8]) -> bool| {
        frames
            .iter()
            .filter(|f| !f.outgoing && pred(&f.bytes))
            .count()
    };
    // RFC 4541 §2.1.2(1): router ports get the group's traffic; §2.1.1(1): and the reports.
    assert_eq!(
        count(&f4, &udp_to(GROUP)),
        20,
        "group traffic at the router"
    );
    assert!(
        count(&f4, &report_from(h2)) >= 1,
        "h2's reports at the router"
    );
    assert_eq!(count(&f3, &udp_to(GROUP)), 0, "group traffic leaked to h3");
    assert_eq!(count(&f3, &report_from(h2)), 0, "h2's reports leaked to h3");
    d.stop();
}

#[test]
fn unregistered_groups_go_to_router_ports_and_link_local_to_everyone() {
    netns_or_skip!();
    let net = 75;
    // h4 sits behind a static router port; nobody joins anything.
    let star = star(net, &[2, 2, 2, 2]);
    let d = Daemon::start(
        &star,
        &config(
            net,
            &access_ports(&star, &["", "", "", "mrouter = \"always\""]),
            &[],
        ),
    );
    let caps: Vec<Capture> = (2..=4).map(|n| capture(&star, n)).collect();
    let tx = sender(&star, 1);
    let unregistered = Ipv4Addr::new(239, 9, 9, 9);
    let mdns = Ipv4Addr::new(224, 0, 0, 251);
    send(&tx, unregistered, 10);
    send(&tx, mdns, 10);
    let got: Vec<(usize, usize)> = caps
        .iter()
        .map(|c| {
            let frames = c.collect(WINDOW).unwrap();
            let n = |g| {
                frames
                    .iter()
                    .filter(|f| !f.outgoing && udp_to(g)(&f.bytes))
                    .count()
            };
            (n(unregistered), n(mdns))
        })
        .collect();
    // RFC 4541 §2.1.2(1): unregistered → router ports only; (2): 224.0.0.0/24 → all ports.
    assert_eq!(
        got,
        vec![(0, 10), (0, 10), (10, 10)],
        "(239.9.9.9, 224.0.0.251) at h2, h3, h4"
    );
    // `xsnoop streams` lists both senders with their counts and how each was forwarded: the
    // operator's table of senders to groups nobody joined.
    let v = d.show("streams").unwrap();
    let stream = |g: Ipv4Addr| {
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == g.to_string() && r["source"] == host_ip(net, 1).to_string())
            .unwrap_or_else(|| panic!("no stream to {g}: {v}"))
            .clone()
    };
    let u = stream(unregistered);
    assert_eq!(
        (u["vlan"].as_u64(), u["packets"].as_u64()),
        (Some(1), Some(10)),
        "{u}"
    );
    assert_eq!(u["forwarding"], "mc_unregistered");
    assert!(u["bytes"].as_u64().unwrap() >= 10 * 42, "{u}");
    assert_eq!(stream(mdns)["forwarding"], "mc_link_local");
    let text = d.show_text("streams").unwrap();
    assert!(
        text.contains("239.9.9.9") && text.contains("unregistered"),
        "{text}"
    );
    eprintln!("{text}");
    d.stop();
}

#[test]
fn two_access_vlans_with_the_same_group_do_not_leak() {
    netns_or_skip!();
    let net = 76;
    // VLAN 10: h1 (sender), h2 (member). VLAN 20: h3 (member), h4 (sender).
    let star = star(net, &[2, 2, 2, 2]);
    let d = Daemon::start(
        &star,
        &config(
            net,
            &access_ports(&star, &["vlan = 10", "vlan = 10", "vlan = 20", "vlan = 20"]),
            &[],
        ),
    );
    let (m2, m3) = (join(&star, 2, GROUP), join(&star, 3, GROUP));
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 10, GROUP, &star.port(2).unwrap())
            && has_row(v, 20, GROUP, &star.port(3).unwrap())
            && !has_row(v, 10, GROUP, &star.port(3).unwrap())
    });
    let (c2, c3) = (capture(&star, 2), capture(&star, 3));
    send(&sender(&star, 1), GROUP, 10);
    assert_eq!(m2.count(QUIET, Duration::from_secs(2)).unwrap(), 10);
    assert_eq!(
        c3.count(WINDOW, udp_to(GROUP)).unwrap(),
        0,
        "VLAN 10 leaked into 20"
    );
    c2.drain().unwrap();
    send(&sender(&star, 4), GROUP, 10);
    assert_eq!(m3.count(QUIET, Duration::from_secs(2)).unwrap(), 10);
    assert_eq!(
        c2.count(WINDOW, udp_to(GROUP)).unwrap(),
        0,
        "VLAN 20 leaked into 10"
    );
    d.stop();
}

#[test]
fn multicast_burst_rate_through_the_switch_is_measured() {
    netns_or_skip!();
    let net = 77;
    let star = star(net, &[2, 2, 2]);
    let d = Daemon::start(&star, &config(net, &access_ports(&star, &[]), &[]));
    let m2 = join(&star, 2, GROUP);
    let m3 = join(&star, 3, GROUP);
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 1, GROUP, &star.port(2).unwrap()) && has_row(v, 1, GROUP, &star.port(3).unwrap())
    });
    const BURST: usize = 20_000;
    let tx = sender(&star, 1);
    let rx_before = d.show("stats").unwrap()["dataplane"]["rx"]
        .as_u64()
        .unwrap();
    let (received, elapsed) = std::thread::scope(|s| {
        let r2 = s.spawn(|| m2.count(Duration::from_millis(500), Duration::from_secs(30)));
        let r3 = s.spawn(|| m3.count(Duration::from_millis(500), Duration::from_secs(30)));
        let t = Instant::now();
        for i in 0..BURST {
            // A full socket buffer is the sender's problem, not the switch's: retry.
            while tx.send(GROUP, UDP_PORT, &(i as u32).to_be_bytes()).is_err() {
                std::thread::yield_now();
            }
        }
        let elapsed = t.elapsed();
        (
            r2.join().unwrap().unwrap() + r3.join().unwrap().unwrap(),
            elapsed,
        )
    });
    // Received frames are counted by the workers and, in xdp mode, by the classifier (read
    // a few times a second).
    let stats = d.wait_for("stats", Duration::from_secs(3), |v| {
        v["dataplane"]["rx"].as_u64().unwrap_or(0) > rx_before
    });
    let rx = stats["dataplane"]["rx"].as_u64().unwrap() - rx_before;
    eprintln!(
        "run_e2e: burst of {BURST} datagrams sent in {:.3} s (~{:.0}/s); switch received {rx}; \
         the two members' sockets got {received} (~{:.0} frames/s out of the switch); dataplane {}",
        elapsed.as_secs_f64(),
        BURST as f64 / elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        stats["dataplane"]
    );
    assert!(rx > 0 && received > 0, "nothing crossed the switch");
    // Octets too: each member port sent at least the frames its host received.
    let stats = d.wait_for("stats", Duration::from_secs(3), |v| {
        v["dataplane"]["ports"].as_array().is_some_and(|ports| {
            ports
                .iter()
                .filter(|p| p["port"] != star.port(1).unwrap().as_str())
                .map(|p| p["tx_bytes"].as_u64().unwrap_or(0))
                .sum::<u64>()
                >= 40 * received as u64
        })
    });
    eprintln!("run_e2e: per-port octets {}", stats["dataplane"]["ports"]);
    d.stop();
}

/// Whether `ifname` in the switch namespace still carries an XDP program.
fn has_xdp(star: &Star, port: usize) -> bool {
    star.has_xdp(port).unwrap()
}

/// An IGMP general query sent by `src`.
fn general_query_from(src: Ipv4Addr) -> impl Fn(&[u8]) -> bool {
    move |f| {
        let Some((2, s, d)) = ipv4(f) else {
            return false;
        };
        let ihl = usize::from(f.get(14).copied().unwrap_or(0) & 0x0f) * 4;
        let group = f.get(14 + ihl + 4..14 + ihl + 8);
        s == src
            && d == Ipv4Addr::new(224, 0, 0, 1)
            && f.get(14 + ihl) == Some(&0x11)
            && group == Some(&[0, 0, 0, 0][..])
    }
}

#[test]
fn link_down_flushes_the_port_and_link_up_brings_a_general_query() {
    netns_or_skip!();
    let net = 78;
    let star = star(net, &[2, 2, 2]);
    // A long query interval: the general query seen after link up can only be the port-up one.
    let d = Daemon::start(
        &star,
        &config(
            net,
            &access_ports(&star, &[]),
            &[("query_interval", "\"60s\"")],
        ),
    );
    assert!((1..=3).all(|p| has_xdp(&star, p)), "XDP not attached");
    let p2 = star.port(2).unwrap();
    let _m2 = join(&star, 2, GROUP);
    d.wait_for("mdb", Duration::from_secs(3), |v| has_row(v, 1, GROUP, &p2));
    let (h2, if2) = (star.host(2).unwrap(), star.host_if(2).unwrap());
    h2.ip(&["link", "set", &if2, "down"]).unwrap();
    let t = Instant::now();
    d.wait_for("mdb", Duration::from_secs(4), |v| {
        !has_row(v, 1, GROUP, &p2)
    });
    let down_after = t.elapsed();
    h2.ip(&["link", "set", &if2, "up"]).unwrap();
    // Opened after the link is back (a capture across a link down reports ENETDOWN); the
    // switch confirms a link change over two polls, so it cannot have answered yet.
    let c2 = capture(&star, 2);
    // The switch is the querier: a port coming up gets a general query at once (so its hosts
    // report without waiting a query interval), and the host's re-report restores the group.
    let (_, got_query) = c2
        .until(
            Instant::now() + Duration::from_secs(3),
            general_query_from(host_ip(net, 254)),
        )
        .unwrap();
    assert!(got_query, "no general query after link up\n{}", d.log());
    d.wait_for("mdb", Duration::from_secs(4), |v| has_row(v, 1, GROUP, &p2));
    eprintln!("run_e2e: link down noticed and flushed after {down_after:?}");
    d.stop();
    assert!(
        (1..=3).all(|p| !has_xdp(&star, p)),
        "XDP left attached after exit"
    );
}

#[test]
fn startup_errors_name_the_interface_and_the_fix() {
    netns_or_skip!();
    let star = star(79, &[2]);
    let sw = star.switch().unwrap().name().to_string();
    let sock = std::env::temp_dir().join(format!("{}-err.sock", star.topo.prefix()));
    let run = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &sw])
            .arg(xsnoop_tests::daemon::xsnoop_bin().unwrap())
            .args([
                "run",
                "--control-socket",
                sock.to_str().unwrap(),
                "--duration",
                "1",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--port", "nosuchif0"]);
    assert!(e.contains("nosuchif0") && e.contains("ip link"), "{e}");
    // lo has no driver XDP: native mode is refused and the message says what to do.
    let e = run(&["--port", "lo", "--xdp-mode", "native"]);
    assert!(e.contains("lo") && e.contains("--xdp-mode skb"), "{e}");
    let e = run(&["--port", &star.port(1).unwrap(), "--fast-leave", "eth9"]);
    assert!(e.contains("eth9"), "{e}");
    // Two workers need two queues on every port; the single-queue veth says how to get them.
    let p1 = star.port(1).unwrap();
    let e = run(&["--port", &p1, "--workers", "2"]);
    assert!(
        e.contains(&p1) && e.contains("at least 2") && e.contains(&format!("ethtool -L {p1}")),
        "{e}"
    );
    let e = run(&["--port", &p1, "--workers", "0"]);
    assert!(e.contains("--workers 0"), "{e}");
    assert!(!sock.exists());
}

fn raw(dst: [u8; 6], src: u8, vlan: Option<u16>, marker: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x7a, src]);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(marker);
    f.resize(f.len().max(60), 0);
    f
}

/// The VID of a frame's 802.1Q tag, if tagged.
fn vid(f: &[u8]) -> Option<u16> {
    (f.get(12..14)? == [0x81, 0x00]).then(|| u16::from_be_bytes([f[14], f[15]]) & 0x0fff)
}

fn carries(f: &[u8], marker: &[u8]) -> bool {
    f.windows(marker.len()).any(|w| w == marker)
}

#[test]
fn trunk_port_tags_per_vlan_and_access_ports_untag() {
    netns_or_skip!();
    let net = 80;
    // p1 trunks VLANs 10 and 20; p2 is access 10, p3 access 20.
    let star = star(net, &[2, 2, 2]);
    let d = Daemon::start(
        &star,
        &config(
            net,
            &access_ports(&star, &["trunk = [10, 20]", "vlan = 10", "vlan = 20"]),
            &[],
        ),
    );
    let (c1, c2, c3) = (capture(&star, 1), capture(&star, 2), capture(&star, 3));
    let seen = |c: &Capture, marker: &[u8]| -> Vec<Option<u16>> {
        c.collect(WINDOW)
            .unwrap()
            .iter()
            .filter(|f| !f.outgoing && carries(&f.bytes, marker))
            .map(|f| vid(&f.bytes))
            .collect()
    };
    // Tagged 10 from the trunk: out of the VLAN 10 access port untagged, nowhere else.
    c1.inject(&raw([0xff; 6], 1, Some(10), b"from-trunk-10"))
        .unwrap();
    assert_eq!(seen(&c2, b"from-trunk-10"), vec![None]);
    assert!(seen(&c3, b"from-trunk-10").is_empty());
    // Untagged from the VLAN 20 access port: onto the trunk tagged 20 (a rewritten copy).
    c3.inject(&raw([0xff; 6], 3, None, b"from-access-20"))
        .unwrap();
    let on_trunk = seen(&c1, b"from-access-20");
    assert_eq!(
        on_trunk,
        vec![Some(20)],
        "stats: {:#}\n{}",
        d.show("stats").unwrap_or_default()["dataplane"],
        d.log()
    );
    assert!(seen(&c2, b"from-access-20").is_empty());
    // A tagged report on the trunk is learned in its VLAN (the punt path keeps the VLAN) and
    // the group's traffic from VLAN 20 goes back onto the trunk tagged.
    let report = to_vec(&ReportV2Builder {
        src_mac: MacAddr([0x02, 0, 0, 0, 0x7a, 1]),
        src_ip: host_ip(net, 1),
        group: GROUP,
        vlan: Some(VlanTag::new(20, 0)),
    })
    .unwrap();
    c1.inject(&report).unwrap();
    let p1 = star.port(1).unwrap();
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 20, GROUP, &p1) && !has_row(v, 10, GROUP, &p1)
    });
    c1.drain().unwrap();
    send(&sender(&star, 3), GROUP, 5);
    send(&sender(&star, 2), GROUP, 5);
    let frames = c1.collect(WINDOW).unwrap();
    let tags: Vec<Option<u16>> = frames
        .iter()
        .filter(|f| !f.outgoing && udp_to_tagged(GROUP)(&f.bytes))
        .map(|f| vid(&f.bytes))
        .collect();
    assert_eq!(tags, vec![Some(20); 5], "only VLAN 20's traffic, tagged 20");
    d.stop();
}

/// A UDP datagram to `group` in a frame with one 802.1Q tag.
fn udp_to_tagged(group: Ipv4Addr) -> impl Fn(&[u8]) -> bool {
    move |f| {
        let Some(untagged) =
            (vid(f).is_some() && f.len() > 18).then(|| [&f[..12], &f[16..]].concat())
        else {
            return false;
        };
        udp_to(group)(&untagged)
    }
}

#[test]
fn an_igmp_storm_is_policed_per_port_forwarding_goes_on_and_others_still_join() {
    netns_or_skip!();
    let net = 81;
    // h1 sends data to h2 (a member) while h3 floods the switch CPU with reports; h4 joins a
    // group in the middle of the storm. h3's port is policed at 200/s, burst 50.
    let star = star(net, &[2, 2, 2, 2]);
    let ports = access_ports(&star, &["", "", "igmp_rate = 200\nigmp_burst = 50", ""]);
    let d = Daemon::start(&star, &config(net, &ports, &[]));
    let m2 = join(&star, 2, GROUP);
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 1, GROUP, &star.port(2).unwrap())
    });
    // Reports for 30 000 different groups (239.6.x.y), as a hostile host would send.
    let reports: Vec<Vec<u8>> = (0..30_000u32)
        .map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            to_vec(&ReportV2Builder {
                src_mac: MacAddr([0x02, 0, 0, 0, net, 3]),
                src_ip: host_ip(net, 3),
                group: Ipv4Addr::new(239, 6, hi, lo),
                vlan: None,
            })
            .unwrap()
        })
        .collect();
    const STORM: usize = 30_000;
    let c3 = capture(&star, 3);
    let tx = sender(&star, 1);
    let late = Ipv4Addr::new(239, 5, 5, 6);
    let p4 = star.port(4).unwrap();
    let started = Instant::now();
    let (got, _m4) = std::thread::scope(|s| {
        let storm = s.spawn(|| {
            for r in reports.iter().take(STORM) {
                c3.inject(r).unwrap();
            }
        });
        // A host on another port joins while the storm is on, and is learned.
        let m4 = join(&star, 4, late);
        d.wait_for("mdb", Duration::from_secs(3), |v| has_row(v, 1, late, &p4));
        // Then data to h2 while the storm goes on (counting starts now: it ends after a quiet
        // spell, and the join above may take a while under the storm).
        let rx = s.spawn(|| m2.count(QUIET, Duration::from_secs(10)).unwrap());
        send(&tx, GROUP, 200);
        storm.join().unwrap();
        (rx.join().unwrap(), m4)
    });
    let storm_time = started.elapsed();
    // The reason counters are a periodic snapshot, the punt counters live: wait until they
    // agree (a host's own reports may still be punted meanwhile).
    let n = |v: &Value, k: &str| v["dataplane"][k].as_u64().unwrap_or(0);
    let v = d.wait_for("stats", Duration::from_secs(3), |v| {
        let punts = v["dataplane"]["reasons"]["punt"].as_u64().unwrap_or(0);
        punts >= 1000 && n(v, "punted") + n(v, "punt_queue_full") + n(v, "punt_policed") == punts
    });
    let dp = &v["dataplane"];
    let punts = dp["reasons"]["punt"].as_u64().unwrap();
    let (up, full, policed) = (
        n(&v, "punted"),
        n(&v, "punt_queue_full"),
        n(&v, "punt_policed"),
    );
    eprintln!("run_e2e: storm of {STORM} reports in {storm_time:?}: {punts} punted by the worker, {policed} policed, {up} reached the CPU, {full} dropped as punt_queue_full; {got}/200 data datagrams delivered meanwhile");
    assert!(
        got >= 190,
        "forwarding stalled during the storm: {got}/200: {dp}"
    );
    // The policer, not the shared queue, absorbed the storm, and only on h3's port.
    let p3 = star.port(3).unwrap();
    let policed_on = |port: &str| {
        dp["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .unwrap()["igmp_policed"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(policed_on(&p3), policed, "{dp}");
    assert_eq!(policed_on(&p4), 0, "{dp}");
    assert!(policed >= 1000, "{dp}");
    let budget = 50 + (200.0 * (storm_time.as_secs_f64() + 3.5)) as u64 + 20;
    assert!(
        up + full <= budget,
        "{up} + {full} punts passed a 200/s policer in {storm_time:?}"
    );
    assert_eq!(
        full, 0,
        "the policed storm should not fill the shared punt queue"
    );
    // The CPU kept up with what it was given: every report it got was counted by the engine.
    let reports = v["received"]["reports_v2"].as_u64().unwrap();
    assert!(
        reports + 10 >= up,
        "engine counted {reports} v2 reports of {up} punted"
    );
    // The table grew only by what the policer let through.
    let mdb = d.show("mdb").unwrap();
    let on_p3 = mdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["port"] == p3.as_str())
        .count() as u64;
    eprintln!("run_e2e: the storm left {on_p3} groups on {p3}");
    assert!(
        on_p3 <= up,
        "{on_p3} groups learned from {up} punted reports"
    );
    d.stop();
}

#[test]
fn sighup_applies_a_valid_file_keeps_learned_state_and_refuses_a_bad_one() {
    netns_or_skip!();
    let net = 58;
    let star = star(net, &[2, 2]);
    let ports = access_ports(&star, &[]);
    let d = Daemon::start(&star, &config(net, &ports, &[]));
    let _m = join(&star, 1, GROUP);
    let p1 = star.port(1).unwrap();
    let p2 = star.port(2).unwrap();
    d.wait_for("mdb", Duration::from_secs(3), |v| has_row(v, 1, GROUP, &p1));

    // A valid change: a static group on port 2 and a longer query interval.
    let pinned = Ipv4Addr::new(239, 58, 0, 1);
    let mut file = config(net, &ports, &[("query_interval", "\"3s\"")]);
    file += &format!("[[static_group]]\ngroup = \"{pinned}\"\nports = [\"{p2}\"]\n");
    std::fs::write(d.config_path(), &file).unwrap();
    d.reload();
    let mdb = d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 1, pinned, &p2)
    });
    assert!(
        has_row(&mdb, 1, GROUP, &p1),
        "learned membership lost on reload: {mdb:#}"
    );
    let q = d.show("querier").unwrap();
    assert_eq!(q[0]["qqi_ms"], 3000, "{q:#}");

    // An invalid file changes nothing and says why.
    std::fs::write(
        d.config_path(),
        file.replace("[snooping]\n", "[snooping]\nrobustness = 0\n"),
    )
    .unwrap();
    d.reload();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !d.log().contains("reload refused") {
        assert!(Instant::now() < deadline, "no refusal logged:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.log().contains("snooping.robustness"), "{}", d.log());
    let mdb = d.show("mdb").unwrap();
    assert!(
        has_row(&mdb, 1, GROUP, &p1) && has_row(&mdb, 1, pinned, &p2),
        "{mdb:#}"
    );

    // A different port list needs a restart.
    let one_port = config(net, &ports[..1], &[]);
    std::fs::write(d.config_path(), one_port).unwrap();
    d.reload();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !d.log().contains("port list changed") {
        assert!(
            Instant::now() < deadline,
            "port change not refused:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(has_row(&d.show("mdb").unwrap(), 1, pinned, &p2));
    d.stop();
}

#[test]
fn metrics_endpoint_serves_prometheus_text_that_matches_the_state() {
    netns_or_skip!();
    let net = 59;
    let star = star(net, &[2, 2]);
    let ports = access_ports(&star, &[]);
    let file = format!(
        "metrics_listen = \"127.0.0.1:9650\"\n{}",
        config(net, &ports, &[])
    );
    let d = Daemon::start(&star, &file);
    let m = join(&star, 1, GROUP);
    let p1 = star.port(1).unwrap();
    d.wait_for("mdb", Duration::from_secs(3), |v| has_row(v, 1, GROUP, &p1));
    // A stream whoever forwards it (the workers, or the kernel in dataplane auto/xdp).
    send(&sender(&star, 2), GROUP, 10);
    assert_eq!(m.count(QUIET, Duration::from_secs(2)).unwrap(), 10);
    let scrape = |path: &str| -> String {
        star.switch()
            .unwrap()
            .run(|| {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect("127.0.0.1:9650").unwrap();
                write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
            .unwrap()
    };
    let reply = scrape("/metrics");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/plain; version=0.0.4"),
        "{head}"
    );
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<u64>().is_ok(), "{l}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("xsnoop_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{l}"
        );
    }
    let has = |prefix: &str| body.lines().any(|l| l.starts_with(prefix));
    assert!(has("xsnoop_received_total{kind=\"reports_v2\"}"), "{body}");
    assert!(
        has(&format!("xsnoop_port_groups{{vlan=\"1\",port=\"{p1}\"}} 1")),
        "{body}"
    );
    assert!(has("xsnoop_dataplane_rx_total"), "{body}");
    let stream = format!(
        "xsnoop_stream_packets_total{{vlan=\"1\",source=\"{}\",group=\"{GROUP}\"}} ",
        host_ip(net, 2)
    );
    let packets = body
        .lines()
        .find_map(|l| l.strip_prefix(stream.as_str()))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(packets >= Some(10), "{stream}: {packets:?}\n{body}");
    assert!(scrape("/nothing").starts_with("HTTP/1.1 404"));
    d.stop();
}

/// The star of `versions` hosts on 4-queue veths, ready for an AF_XDP switch.
fn star_mq(net: u8, versions: &[u8]) -> Star {
    let star = Star::with_queues(net, versions, 4).unwrap();
    star.prepare_for_afxdp().unwrap();
    star
}

/// Sends `flows` datagrams from host `from` to `dst:UDP_PORT`, each from a fresh socket (a new
/// flow hash, so the host's veth spreads them over its TX queues, which are the switch port's
/// RX queues).
fn send_flows(star: &Star, from: usize, dst: Ipv4Addr, flows: usize) {
    for i in 0..flows {
        let s = sender(star, from);
        s.send(dst, UDP_PORT, format!("flow {i}").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The `dataplane.queues` rows of port `port` that received something: (queue, worker).
fn busy_queues(stats: &Value, port: &str) -> Vec<(u64, u64)> {
    stats["dataplane"]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["port"] == port && q["rx"].as_u64().unwrap() > 0)
        .map(|q| (q["queue"].as_u64().unwrap(), q["worker"].as_u64().unwrap()))
        .collect()
}

#[test]
fn every_receive_queue_of_a_multi_queue_port_is_switched() {
    netns_or_skip!();
    let net = 57;
    // h1 sends over many flows; h2 is a member; h3 is not, and gets unicast.
    let star = star_mq(net, &[2, 2, 2]);
    // What is tested is the AF_XDP side (a socket per queue), so every frame must take it: in
    // dataplane auto the kernel would forward the flows once their stations are known.
    let cfg = format!(
        "dataplane = \"afxdp\"\n{}",
        config(net, &access_ports(&star, &[]), &[])
    );
    let d = Daemon::start(&star, &cfg);
    // A socket on every queue of every port (counters are published a few times a second).
    d.wait_for("stats", Duration::from_secs(3), |s| {
        s["dataplane"]["queues"].as_array().map(Vec::len) == Some(3 * 4)
    });
    let g = Ipv4Addr::new(239, 1, 57, 1);
    let m2 = join(&star, 2, g);
    let p2 = star.port(2).unwrap();
    d.wait_for("mdb", Duration::from_secs(5), |m| has_row(m, 1, g, &p2));
    let c3 = capture(&star, 3);
    let flows = 64;
    send_flows(&star, 1, g, flows);
    assert_eq!(m2.count(QUIET, Duration::from_secs(5)).unwrap(), flows);
    assert_eq!(
        c3.count(WINDOW, udp_to(g)).unwrap(),
        0,
        "leaked to a non-member"
    );
    // Unicast over many flows too (ARP first: the kernel resolves once).
    let u3 = udp(&star, 3, UDP_PORT);
    send_flows(&star, 1, host_ip(net, 3), flows);
    let mut got = 0;
    let mut buf = [0u8; 64];
    while u3.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, flows, "unicast datagrams lost");
    let p1 = star.port(1).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stats = d.show("stats").unwrap();
    let busy = busy_queues(&stats, &p1);
    assert!(
        busy.len() >= 2,
        "the flows should have arrived on several queues of {p1}: {busy:?}"
    );
    let log = d.stop();
    assert!(!log.contains("not switched"), "{log}");
}

#[test]
fn two_workers_split_the_queues_and_learn_stations_together() {
    netns_or_skip!();
    let net = 53;
    let star = star_mq(net, &[2, 2, 2]);
    let cfg = format!(
        "workers = 2\n{}",
        config(net, &access_ports(&star, &[]), &[])
    );
    let d = Daemon::start(&star, &cfg);
    let stats = d.wait_for("stats", Duration::from_secs(3), |s| {
        s["dataplane"]["queues"].as_array().map(Vec::len) == Some(3 * 4)
    });
    assert_eq!(stats["dataplane"]["workers"], 2, "{stats}");
    // veth has no AF_XDP zero-copy: detected and reported.
    assert_eq!(stats["dataplane"]["afxdp_mode"], "copy", "{stats}");
    let workers: std::collections::BTreeSet<u64> = stats["dataplane"]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["worker"].as_u64().unwrap())
        .collect();
    assert_eq!(workers, [0, 1].into(), "{stats}");
    // h2 transmits on one queue only, so only the worker serving p2's queue 0 hears it. Then
    // unicast from h1 to h2 over many flows, spread over both workers, must not be flooded to
    // h3: the worker that never heard h2 knows it from the other's learning notice.
    let h2 = star.host(2).unwrap().name().to_string();
    xsnoop_tests::cmd::run(
        "ip",
        &[
            "netns",
            "exec",
            &h2,
            "ethtool",
            "-L",
            &star.host_if(2).unwrap(),
            "tx",
            "1",
        ],
    )
    .unwrap();
    assert!(round_trip(&star, net, 1, 2).is_none());
    assert!(round_trip(&star, net, 2, 1).is_none());
    std::thread::sleep(Duration::from_millis(100));
    let c3 = capture(&star, 3);
    let u2 = udp(&star, 2, UDP_PORT);
    let flows = 64;
    send_flows(&star, 1, host_ip(net, 2), flows);
    let mut got = 0;
    let mut buf = [0u8; 64];
    while u2.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, flows, "unicast datagrams lost");
    let flooded = c3
        .count(WINDOW, |f| {
            ipv4(f).is_some_and(|(_, _, dst)| dst == host_ip(net, 2))
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stats = d.show("stats").unwrap();
    let busy = busy_queues(&stats, &star.port(1).unwrap());
    let by: std::collections::BTreeSet<u64> = busy.iter().map(|&(_, w)| w).collect();
    assert_eq!(
        by,
        [0, 1].into(),
        "both workers should have carried h1's flows: {busy:?}"
    );
    assert_eq!(
        flooded, 0,
        "known unicast flooded to h3: {}",
        stats["dataplane"]
    );
    assert!(
        stats["dataplane"]["fdb_sync"]["installed"]
            .as_u64()
            .unwrap()
            > 0,
        "{}",
        stats["dataplane"]
    );
    // Multicast through both workers: only the member gets it.
    let g = Ipv4Addr::new(239, 1, 53, 1);
    let m3 = join(&star, 3, g);
    let p3 = star.port(3).unwrap();
    d.wait_for("mdb", Duration::from_secs(5), |m| has_row(m, 1, g, &p3));
    let c2 = capture(&star, 2);
    send_flows(&star, 1, g, flows);
    assert_eq!(m3.count(QUIET, Duration::from_secs(5)).unwrap(), flows);
    assert_eq!(c2.count(WINDOW, udp_to(g)).unwrap(), 0);
    d.stop();
}

/// The `Cpus_allowed_list` and scheduling policy (`/proc/.../stat` field 41) of the daemon's
/// thread named `comm`.
fn thread_placement(pid: i32, comm: &str) -> Option<(String, u64)> {
    thread_sched(pid, comm).map(|(cpus, policy, _)| (cpus, policy))
}

/// [`thread_placement`] and the real-time priority (`/proc/.../stat` field 40).
fn thread_sched(pid: i32, comm: &str) -> Option<(String, u64, u64)> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = t.ok()?.path();
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim() != comm {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
            .trim()
            .to_string();
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the parenthesised comm; policy is field 41 overall.
        let rest = stat.rsplit_once(')')?.1;
        let policy = rest.split_whitespace().nth(41 - 3)?.parse().ok()?;
        let rt_priority = rest.split_whitespace().nth(40 - 3)?.parse().ok()?;
        return Some((cpus, policy, rt_priority));
    }
    None
}

#[test]
fn workers_are_pinned_and_run_real_time_when_configured() {
    netns_or_skip!();
    let net = 50;
    let star = star(net, &[2, 2]);
    let cfg = format!(
        "worker_cpus = [1]\nworker_realtime = true\n{}",
        config(net, &access_ports(&star, &[]), &[])
    );
    let d = Daemon::start(&star, &cfg);
    let pid = d.pid().unwrap();
    // Read once: the daemon answers (Daemon::start waits for that) only after every worker
    // named and placed itself (CI once read a just-spawned worker still called `xsnoop`).
    let (cpus, policy) = thread_placement(pid, "xsnoop-asic").expect("no xsnoop-asic thread");
    assert_eq!(cpus, "1");
    if std::env::var("XSNOOP_TEST_CAPS_ONLY").as_deref() == Ok("1") {
        // Without CAP_SYS_NICE the class is refused with a warning naming the fix; the switch
        // runs on at normal priority.
        assert_eq!(policy, 0);
        assert!(d.log().contains("CAP_SYS_NICE"), "{}", d.log());
    } else {
        assert_eq!(policy, 1, "SCHED_FIFO is policy 1");
    }
    // The CPU thread is left where it was.
    let (main_cpus, main_policy) = thread_placement(pid, "xsnoop").unwrap();
    assert_ne!(main_cpus, "1");
    assert_eq!(main_policy, 0);
    assert!(round_trip(&star, net, 1, 2).is_none());
    d.stop();
}

#[test]
fn the_control_thread_runs_real_time_above_the_workers_when_configured() {
    netns_or_skip!();
    let net = 47;
    let star = star(net, &[2, 2]);
    let cfg = format!(
        "worker_realtime = true\ncontrol_realtime = true\n{}",
        config(net, &access_ports(&star, &[]), &[])
    );
    let d = Daemon::start(&star, &cfg);
    let pid = d.pid().unwrap();
    // Read once: the daemon answers only after its workers and its control thread are placed.
    let (_, worker_policy, worker_prio) = thread_sched(pid, "xsnoop-asic").unwrap();
    let (_, control_policy, control_prio) = thread_sched(pid, "xsnoop").unwrap();
    if std::env::var("XSNOOP_TEST_CAPS_ONLY").as_deref() == Ok("1") {
        // Refused without CAP_SYS_NICE: a warning that names the fix, the switch runs on.
        assert_eq!(control_policy, 0);
        assert!(d.log().contains("control_realtime = false"), "{}", d.log());
    } else {
        assert_eq!((worker_policy, worker_prio), (1, 1), "worker: SCHED_FIFO 1");
        assert_eq!(
            (control_policy, control_prio),
            (1, 2),
            "control thread: SCHED_FIFO 2, above the worker"
        );
    }
    // Still a switch: joins reach the engine and unicast is forwarded.
    assert!(round_trip(&star, net, 1, 2).is_none());
    d.stop();
}

#[test]
fn a_static_fdb_entry_pins_a_station_to_its_port() {
    netns_or_skip!();
    let net = 48;
    let star = star(net, &[2, 2, 2]);
    // 02:00:00:00:7a:63 is pinned behind p3; nobody is ever heard sending from it there.
    let pinned = [0x02, 0, 0, 0, 0x7a, 0x63];
    let cfg = format!(
        "{}[[static_fdb]]\nmac = \"02:00:00:00:7a:63\"\nport = \"{}\"\n",
        config(net, &access_ports(&star, &[]), &[]),
        star.port(3).unwrap()
    );
    let d = Daemon::start(&star, &cfg);
    let fdb = d.show("fdb").unwrap();
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|r| r["mac"] == "02:00:00:00:7a:63"
                && r["static"] == true
                && r["port"] == star.port(3).unwrap().as_str()),
        "{fdb}"
    );
    let (c2, c3) = (capture(&star, 2), capture(&star, 3));
    let inject = capture(&star, 1);
    // A frame to the pinned MAC goes to p3 only: known unicast, not flooded.
    inject
        .inject(&raw(pinned, 1, None, b"to-pinned-1"))
        .unwrap();
    assert_eq!(c3.count(WINDOW, |f| carries(f, b"to-pinned-1")).unwrap(), 1);
    assert_eq!(c2.count(WINDOW, |f| carries(f, b"to-pinned-1")).unwrap(), 0);
    // A frame *from* the pinned MAC on p2 does not move it (a static entry never moves).
    let mut spoof = raw([0x02, 0, 0, 0, 0x7a, 1], 0x63, None, b"spoof");
    spoof[6..12].copy_from_slice(&pinned);
    capture(&star, 2).inject(&spoof).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    inject
        .inject(&raw(pinned, 1, None, b"to-pinned-2"))
        .unwrap();
    assert_eq!(c3.count(WINDOW, |f| carries(f, b"to-pinned-2")).unwrap(), 1);
    assert_eq!(c2.count(WINDOW, |f| carries(f, b"to-pinned-2")).unwrap(), 0);
    let text = d.show_text("fdb").unwrap();
    assert!(
        text.contains("02:00:00:00:7a:63") && text.contains("static"),
        "{text}"
    );
    d.stop();
}

#[test]
fn a_report_flood_far_above_100k_per_second_is_policed_and_forwarding_goes_on() {
    netns_or_skip!();
    let net = 47;
    // h3 floods reports with the BPF_PROG_RUN generator (hundreds of thousands per second,
    // far beyond a packet socket's reach); h1 streams data to h2 meanwhile.
    let star = star(net, &[2, 2, 2]);
    let d = Daemon::start(&star, &config(net, &access_ports(&star, &[]), &[]));
    let m2 = join(&star, 2, GROUP);
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 1, GROUP, &star.port(2).unwrap())
    });
    let report = to_vec(&ReportV2Builder {
        src_mac: MacAddr([0x02, 0, 0, 0, net, 3]),
        src_ip: host_ip(net, 3),
        group: Ipv4Addr::new(239, 47, 0, 1),
        vlan: None,
    })
    .unwrap();
    let h3 = star.host(3).unwrap();
    let h3if = star.host_if(3).unwrap();
    let tx = sender(&star, 1);
    const FLOOD: u32 = 2_000_000;
    let (flood_time, got) = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            h3.run(|| {
                let mut g = xsnoop_dataplane::xdp::probe::Generator::new().unwrap();
                let ifindex = xsnoop_tests::sock::ifindex(&h3if).unwrap();
                let t = Instant::now();
                g.send(ifindex, &report, FLOOD).unwrap();
                t.elapsed()
            })
            .unwrap()
        });
        let rx = s.spawn(|| m2.count(QUIET, Duration::from_secs(20)).unwrap());
        send(&tx, GROUP, 200);
        (flood.join().unwrap(), rx.join().unwrap())
    });
    let n = |v: &Value, k: &str| v["dataplane"][k].as_u64().unwrap_or(0);
    let v = d.wait_for("stats", Duration::from_secs(3), |v| {
        n(v, "punt_policed") > 0
    });
    let (policed, up, full) = (
        n(&v, "punt_policed"),
        n(&v, "punted"),
        n(&v, "punt_queue_full"),
    );
    let rate = f64::from(FLOOD) / flood_time.as_secs_f64();
    eprintln!(
        "run_e2e: {FLOOD} reports offered in {flood_time:?} (~{rate:.0}/s); the switch policed {policed}, \
         punted {up} to the CPU, punt queue full {full}; {got}/200 data datagrams delivered"
    );
    assert!(rate > 100_000.0, "the generator offered only {rate:.0}/s");
    assert!(got >= 190, "forwarding stalled during the flood: {got}/200");
    assert!(policed > 0);
    // The default policer (1000/s, burst 1000) let through at most its budget.
    let budget = 1000 + (1000.0 * (flood_time.as_secs_f64() + 4.0)) as u64 + 50;
    assert!(
        up <= budget,
        "{up} punts passed a 1000/s policer in {flood_time:?}"
    );
    d.stop();
}

fn set_peer_gro(star: &Star, n: usize, on: bool) {
    star.set_host_gro(n, on).unwrap();
}

#[test]
fn auto_mode_leaves_a_vlan_to_the_workers_while_one_of_its_ports_refuses_redirects() {
    netns_or_skip!();
    let net = 46;
    // VLAN 10: h1 sends, h2 listens. VLAN 20: h3 sends, h4 listens behind a veth whose peer
    // has GRO off: the kernel would lose every frame it redirected there.
    let star = star(net, &[2, 2, 2, 2]);
    set_peer_gro(&star, 4, false);
    let cfg = format!(
        "dataplane = \"auto\"\n{}",
        config(
            net,
            &access_ports(&star, &["vlan = 10", "vlan = 10", "vlan = 20", "vlan = 20"]),
            &[]
        )
    );
    let d = Daemon::start(&star, &cfg);
    let (p1, p3, p4) = (
        star.port(1).unwrap(),
        star.port(3).unwrap(),
        star.port(4).unwrap(),
    );
    let v = d.show("stats").unwrap();
    assert_eq!(
        kernel_path_vlans(&v, "kernel_vlans"),
        vec![10],
        "{}",
        kernel_path(&v)
    );
    assert_eq!(
        kernel_path_vlans(&v, "afxdp_vlans"),
        vec![20],
        "{}",
        kernel_path(&v)
    );
    assert_eq!(
        kernel_path(&v)["ports_refusing_redirects"],
        serde_json::json!([p4])
    );
    let (m2, m4) = (join(&star, 2, GROUP), join(&star, 4, GROUP));
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        has_row(v, 10, GROUP, &star.port(2).unwrap()) && has_row(v, 20, GROUP, &p4)
    });
    // Both VLANs deliver: VLAN 10 in the kernel, VLAN 20 through the workers.
    let (s1, s3) = (sender(&star, 1), sender(&star, 3));
    send(&s1, GROUP, 20);
    send(&s3, GROUP, 20);
    assert_eq!(m2.count(QUIET, Duration::from_secs(2)).unwrap(), 20);
    assert_eq!(m4.count(QUIET, Duration::from_secs(2)).unwrap(), 20);
    let v = d.wait_for("stats", Duration::from_secs(2), |v| kernel_rx(v, &p1) >= 15);
    assert_eq!(kernel_rx(&v, &p3), 0, "the kernel took VLAN 20's frames");
    // The peer turns GRO on: VLAN 20 moves into the kernel while the switch runs, on the
    // kernel's device-change announcement (not only at the next half-second poll).
    set_peer_gro(&star, 4, true);
    let v = d.wait_for("stats", Duration::from_secs(3), |v| {
        kernel_path_vlans(v, "kernel_vlans") == [10, 20]
            && kernel_path_vlans(v, "afxdp_vlans").is_empty()
    });
    assert!(
        kernel_path(&v)["device_notifications"].as_u64() > Some(0),
        "{}",
        kernel_path(&v)
    );
    // A join on top forwards without waiting for an RCU grace period (pooled lists).
    assert_eq!(
        kernel_path(&v)["grace_waits_on_path"],
        0,
        "{}",
        kernel_path(&v)
    );
    send(&s3, GROUP, 20);
    assert_eq!(m4.count(QUIET, Duration::from_secs(2)).unwrap(), 20);
    d.wait_for("stats", Duration::from_secs(2), |v| kernel_rx(v, &p3) >= 15);
    // And back out when it turns GRO off again: nothing is lost on the way.
    set_peer_gro(&star, 4, false);
    d.wait_for("stats", Duration::from_secs(3), |v| {
        kernel_path_vlans(v, "afxdp_vlans") == [20]
    });
    send(&s3, GROUP, 20);
    assert_eq!(m4.count(QUIET, Duration::from_secs(2)).unwrap(), 20);
    let log = d.stop();
    assert!(
        log.contains(&format!("port {p4} does not accept XDP redirects")) && log.contains("gro on"),
        "{log}"
    );
}

#[test]
fn forced_xdp_mode_names_a_port_that_refuses_redirects_and_the_fix() {
    netns_or_skip!();
    let net = 47;
    let star = star(net, &[2, 2]);
    set_peer_gro(&star, 2, false);
    let cfg = format!(
        "dataplane = \"xdp\"\n{}",
        config(net, &access_ports(&star, &[]), &[])
    );
    let d = Daemon::start(&star, &cfg);
    let v = d.show("stats").unwrap();
    assert_eq!(v["dataplane"]["mode"], "xdp");
    assert_eq!(
        kernel_path_vlans(&v, "kernel_vlans"),
        vec![1],
        "forced: {}",
        kernel_path(&v)
    );
    let log = d.stop();
    let p2 = star.port(2).unwrap();
    assert!(
        log.contains(&format!("port {p2} does not accept XDP redirects")) && log.contains("gro on"),
        "{log}"
    );
}

#[test]
fn known_unicast_and_broadcast_leave_in_the_kernel_and_multicast_senders_are_learned() {
    netns_or_skip!();
    let net = 48;
    let star = star(net, &[2, 2, 2]);
    let cfg = format!(
        "dataplane = \"auto\"\n{}",
        config(net, &access_ports(&star, &[]), &[])
    );
    let d = Daemon::start(&star, &cfg);
    let (p1, p2) = (star.port(1).unwrap(), star.port(2).unwrap());
    // The first frames reach the workers, which learn h1 and h2; the kernel gets the stations.
    if let Some(e) = round_trip(&star, net, 1, 2) {
        panic!("h1 → h2: {e}\n{}", d.log());
    }
    d.wait_for("stats", Duration::from_secs(2), |v| {
        kernel_path(v)["stations"].as_u64().unwrap_or(0) >= 2
    });
    let before = d.show("stats").unwrap();
    let c3 = capture(&star, 3);
    let (a, b) = (udp(&star, 1, 7101), udp(&star, 2, 7102));
    let mut got = 0;
    let mut buf = [0u8; 64];
    for i in 0..200u32 {
        a.send_to(&i.to_be_bytes(), (host_ip(net, 2), 7102))
            .unwrap();
        if i % 20 == 19 {
            while b.recv_from(&mut buf).is_ok() {
                got += 1;
            }
        }
    }
    while b.recv_from(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, 200, "unicast lost");
    let after = d.wait_for("stats", Duration::from_secs(2), |v| {
        kernel_rx(v, &p1) >= kernel_rx(&before, &p1) + 190
    });
    let known = |v: &Value| {
        v["dataplane"]["reasons"]["fwd_known_unicast"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        known(&after) < known(&before) + 10,
        "the workers forwarded the unicast: {} → {}",
        known(&before),
        known(&after)
    );
    assert_eq!(
        // Ethernet, IPv4 and UDP headers (42 octets) and the 4-octet counter.
        c3.count(WINDOW, |f: &[u8]| f.len() == 46).unwrap(),
        0,
        "known unicast flooded to h3"
    );
    // Broadcast from a known station is flooded by the kernel.
    let bcast = star
        .host(2)
        .unwrap()
        .run(|| {
            let s = UdpSocket::bind(("0.0.0.0", 0))?;
            s.set_broadcast(true)?;
            for _ in 0..20 {
                s.send_to(b"bcast", (Ipv4Addr::new(10, net, 0, 255), 7103))?;
            }
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
    bcast.unwrap();
    d.wait_for("stats", Duration::from_secs(2), |v| {
        kernel_rx(v, &p2) >= kernel_rx(&after, &p2) + 20
    });
    assert_eq!(
        c3.count(WINDOW, |f: &[u8]| f.ends_with(b"bcast")).unwrap(),
        20
    );
    // A host that only ever sends multicast is learned too (its first frame reaches a
    // worker), so `xsnoop fdb` knows where it is.
    let p3 = star.port(3).unwrap();
    send(&sender(&star, 3), GROUP, 5);
    d.wait_for("fdb", Duration::from_secs(2), |v| {
        v.as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["port"] == p3.as_str()))
    });
    d.stop();
}
