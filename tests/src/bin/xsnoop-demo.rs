//! `make demo`: xsnoop switching multicast between real Linux hosts, narrated.
//!
//! Builds network namespaces joined by veth pairs, starts the real `xsnoop run` daemon as
//! snooping querier in the switch namespace, has the hosts' own kernels join and leave groups,
//! and after each step shows the group table (`xsnoop mdb`) and what every host actually
//! received when the sender sent to each kind of group — counted on the hosts' own interfaces.
//! Everything it creates is deleted on exit and on Ctrl-C.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use xsnoop_control::engine::MdbRow;
use xsnoop_control::show;
use xsnoop_dataplane::wire::{parse_frame, to_vec, IgmpRepr, MacAddr, PimHelloBuilder, L3};
use xsnoop_tests::{Capture, Daemon, Membership, Sender, Star};

/// The demo's subnet: hosts are 10.77.0.1 ... 10.77.0.5 (the testbed's star addressing).
const NET: u8 = 77;
const QUERIER: Ipv4Addr = Ipv4Addr::new(10, NET, 0, 254);
const NEWS: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const SSM: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 1);
const NOBODY: Ipv4Addr = Ipv4Addr::new(239, 5, 5, 5);
const MDNS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const DATAGRAMS: usize = 10;
/// The groups the sender sends to at every step, with what each one is.
const GROUPS: [(Ipv4Addr, &str); 4] = [
    (NEWS, "239.1.1.1 'news'"),
    (SSM, "232.1.1.1 from sender only"),
    (NOBODY, "239.5.5.5 nobody joined"),
    (MDNS, "224.0.0.251 mDNS, link-local"),
];
/// Receivers as bits for the expected deliveries.
const ALICE: u8 = 1;
const BOB: u8 = 2;
const CAROL: u8 = 4;
const ROUTER: u8 = 8;
const EVERYONE: u8 = ALICE | BOB | CAROL | ROUTER;

/// (name, IGMP version its kernel speaks, fast-leave on its switch port), in port order.
const HOSTS: [(&str, u8, bool); 5] = [
    ("sender", 3, false),
    ("alice", 3, true),
    ("bob", 2, false),
    ("carol", 3, false),
    ("router", 3, false),
];

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Sleeps, but gives up early on Ctrl-C so the topology is still cleaned up.
fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if STOP.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, NET, 0, u8::try_from(i + 1).unwrap_or(0))
}

struct Demo {
    star: Star,
    daemon: Daemon,
    /// One capture per host interface, counting what reaches each host.
    captures: Vec<Capture>,
    sender: Sender,
}

impl Demo {
    fn build() -> Result<Demo> {
        let star = Star::new(NET, &HOSTS.map(|h| h.1))?;
        star.prepare_for_afxdp()?;
        // The daemon's default dataplane, written out: the testbed pins "afxdp" otherwise.
        let mut config = format!(
            "dataplane = \"auto\"\n[snooping]\nquerier = true\nquerier_address = \"{QUERIER}\"\n"
        );
        for (i, (_, _, fast_leave)) in HOSTS.iter().enumerate() {
            config += &format!(
                "[[port]]\nname = \"{}\"\nfast_leave = {fast_leave}\n",
                star.port(i + 1)?
            );
        }
        let captures = (1..=HOSTS.len())
            .map(|i| star.capture(i))
            .collect::<xsnoop_tests::Result<Vec<_>>>()?;
        let sender = Sender::new(star.host(1)?, &star.host_if(1)?, 8)?;
        let daemon = Daemon::run(
            star.switch()?,
            &format!("demo-{}", star.topo.prefix()),
            &config,
        )?;
        Ok(Demo {
            star,
            daemon,
            captures,
            sender,
        })
    }

    /// "swp2 (alice)" for a switch interface name.
    fn label(&self, port: &str) -> String {
        (1..=HOSTS.len())
            .find(|&i| self.star.port(i).is_ok_and(|p| p == port))
            .map_or_else(
                || port.to_string(),
                |i| format!("swp{i} ({})", HOSTS[i - 1].0),
            )
    }

    /// Says where frames are forwarded: in the kernel (XDP) or by the AF_XDP workers, and why.
    fn print_dataplane(&self) {
        let stats = self.daemon.show("stats").unwrap_or(Value::Null);
        let k = &stats["dataplane"]["kernel_path"];
        let list = |key: &str| -> Vec<String> {
            k[key]
                .as_array()
                .map(|a| a.iter().map(|v| v.to_string().replace('"', "")).collect())
                .unwrap_or_default()
        };
        let (inside, refusing) = (list("kernel_vlans"), list("ports_refusing_redirects"));
        if inside.is_empty() {
            println!(
                "  dataplane auto: every frame goes through xsnoop's AF_XDP worker (ports refusing XDP redirects: {refusing:?})."
            );
        } else {
            println!(
                "  dataplane auto: every port accepts XDP redirects, so VLAN {} is forwarded in the kernel",
                inside.join(", ")
            );
            println!(
                "  (XDP replicates each group to its members); IGMP and new stations still go to xsnoop over AF_XDP."
            );
        }
    }

    fn show_table(&self) {
        let rows = self.daemon.show("mdb").unwrap_or(Value::Null);
        let mut rows: Vec<MdbRow> = serde_json::from_value(rows).unwrap_or_default();
        for r in &mut rows {
            r.port = self.label(&r.port);
        }
        println!("\n  Group table (xsnoop mdb):");
        for line in show::mdb(&rows).lines() {
            println!("    {line}");
        }
    }

    /// The sender sends DATAGRAMS to each group; prints how many each host received, and
    /// checks that exactly the hosts in `expect` (per group, in `GROUPS` order: bit i = host
    /// i + 1, i.e. alice = bit 0 ... router = bit 3) received any.
    fn send_and_count(&self, expect: [u8; 4]) -> Result<bool> {
        for c in &self.captures {
            c.drain()?;
        }
        let groups = GROUPS;
        for _ in 0..DATAGRAMS {
            for (g, _) in groups {
                self.sender.send(g, 5000, b"xsnoop demo")?;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let received: Vec<Vec<Ipv4Addr>> = self
            .captures
            .iter()
            .map(|c| {
                Ok(c.collect(Duration::from_millis(400))?
                    .iter()
                    .filter(|f| !f.outgoing)
                    .filter_map(|f| match parse_frame(&f.bytes).ok()?.l3 {
                        L3::Ipv4 { ip, protocol: 17 } if ip.src == host_ip(0) => Some(ip.dst),
                        _ => None,
                    })
                    .collect())
            })
            .collect::<Result<_>>()?;
        println!("\n  The sender sent {DATAGRAMS} datagrams to each group. Each host received:");
        let mut header = vec!["GROUP".to_string()];
        header.extend(HOSTS.iter().skip(1).map(|h| h.0.to_string()));
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|(g, what)| {
                let mut row = vec![what.to_string()];
                row.extend(
                    received
                        .iter()
                        .skip(1)
                        .map(|r| r.iter().filter(|d| *d == g).count().to_string()),
                );
                row
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        for line in show::table(&header, &rows).lines() {
            println!("    {line}");
        }
        let mut ok = true;
        for (gi, (g, what)) in groups.iter().enumerate() {
            for (hi, r) in received.iter().skip(1).enumerate() {
                let got = r.iter().any(|d| d == g);
                let want = expect[gi] & (1 << hi) != 0;
                if got != want {
                    ok = false;
                    println!(
                        "    !! {} {} {what}, but should {}",
                        HOSTS[hi + 1].0,
                        if got { "received" } else { "did not receive" },
                        if want { "have" } else { "not have" }
                    );
                }
            }
        }
        Ok(ok)
    }

    /// Waits `settle`, narrates, shows the table and the deliveries; false when the deliveries
    /// are not `expect` (see [`Demo::send_and_count`]).
    fn step(&self, settle: Duration, title: &str, lines: &[&str], expect: [u8; 4]) -> Result<bool> {
        pause(settle)?;
        println!("\n== {title}");
        for l in lines {
            println!("   {l}");
        }
        self.show_table();
        self.send_and_count(expect)
    }

    fn queries_seen_by_alice(&self) -> Result<usize> {
        Ok(self.captures[1]
            .collect(Duration::from_millis(300))?
            .iter()
            .filter(|f| {
                !f.outgoing
                    && matches!(parse_frame(&f.bytes), Ok(p) if matches!(p.l3,
                        L3::Igmp { msg: IgmpRepr::Query(_), ip } if ip.src == QUERIER))
            })
            .count())
    }

    fn print_events(&self) {
        println!("\n== What happened, from xsnoop's event journal (xsnoop events):");
        let events = self.daemon.show("events").unwrap_or(Value::Null);
        for e in events.as_array().into_iter().flatten() {
            let port = e["port"]
                .as_u64()
                .and_then(|p| self.star.port(usize::try_from(p).ok()? + 1).ok())
                .map_or_else(|| "-".to_string(), |p| self.label(&p));
            let at = e["at_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
            println!(
                "    {at:>6.1}s  {:<16} {port:<16} {:<12} {}",
                e["kind"]["type"].as_str().unwrap_or("?"),
                e["group"].as_str().unwrap_or("-"),
                e["reason"].as_str().unwrap_or("")
            );
        }
    }
}

fn run() -> Result<()> {
    println!("xsnoop demo: an IGMP-snooping switch between real Linux hosts (namespaces + veth)\n");
    let demo = Demo::build().context("building the demo topology (run as root)")?;
    println!("  One switch (xsnoop run, querier {QUERIER}) and five hosts, one per port, VLAN 1:");
    for (i, (name, version, fast)) in HOSTS.iter().enumerate() {
        println!(
            "    swp{} -- {name:<7} {:<12} IGMPv{version}{}",
            i + 1,
            host_ip(i).to_string(),
            if *fast { "  (fast-leave port)" } else { "" }
        );
    }
    demo.print_dataplane();
    pause(Duration::from_millis(300))?;
    println!(
        "\n== xsnoop asks every port who wants which group (a general query).\n   alice's kernel received {} query from {QUERIER}.",
        demo.queries_seen_by_alice()?
    );

    let hello = to_vec(&PimHelloBuilder {
        src_mac: MacAddr([0x02, 0, 0, 0, 0, 0xfa]),
        src_ip: host_ip(4),
        holdtime: 105,
        vlan: None,
    })?;
    demo.captures[4].inject(&hello)?;
    let mut ok = demo.step(
        Duration::from_millis(500),
        "The router says hello (PIMv2).",
        &[
            "swp5 becomes a multicast-router port: it receives every group's traffic and every",
            "membership report (RFC 4541 §2.1.1), so the router can route multicast onwards.",
            "Nobody has joined yet, so only the router gets multicast; mDNS (224.0.0.x) goes everywhere.",
        ],
        [ROUTER, ROUTER, ROUTER, EVERYONE],
    )?;

    let st = &demo.star;
    let alice = Membership::join(st.host(2)?, &st.host_if(2)?, NEWS, 0)?;
    let bob = Membership::join(st.host(3)?, &st.host_if(3)?, NEWS, 0)?;
    let carol = Membership::join_source(st.host(4)?, &st.host_if(4)?, SSM, host_ip(0), 0)?;
    ok &= demo.step(
        Duration::from_millis(1500),
        "alice (IGMPv3) and bob (IGMPv2) join 239.1.1.1; carol joins 232.1.1.1 from the sender only.",
        &[
            "Their kernels send membership reports; xsnoop learns each port's filter:",
            "EXCLUDE = any source, INCLUDE + source = only from that source (IGMPv3 filtering).",
        ],
        [ALICE | BOB | ROUTER, CAROL | ROUTER, ROUTER, EVERYONE],
    )?;

    bob.leave()?;
    ok &= demo.step(
        Duration::from_millis(2800),
        "bob leaves 239.1.1.1.",
        &[
            "xsnoop asks bob's port whether anyone else there still wants the group (a",
            "group-specific query, in IGMPv2 because bob speaks v2). Nobody answers, so after the",
            "last-member query time (2 x 1 s) bob's port stops getting the group.",
        ],
        [ALICE | ROUTER, CAROL | ROUTER, ROUTER, EVERYONE],
    )?;

    alice.leave()?;
    ok &= demo.step(
        Duration::from_millis(300),
        "alice leaves 239.1.1.1.",
        &["alice's port is a fast-leave port (one host behind it): it is dropped at once."],
        [ROUTER, CAROL | ROUTER, ROUTER, EVERYONE],
    )?;

    demo.print_events();
    drop(carol);
    let Demo { daemon, .. } = demo;
    daemon.stop()?;
    println!("\nxsnoop stopped cleanly (SIGTERM); the demo's namespaces and veths are deleted.");
    if !ok {
        bail!("some hosts did not receive what IGMP snooping should deliver (lines marked !!)");
    }
    println!("Every host received exactly the groups it should (RFC 4541), and nothing else.");
    println!("Next: `xsnoop --help`, `xsnoop check-config docs/xsnoop.example.toml`, README.md.");
    Ok(())
}

fn main() -> ExitCode {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xsnoop demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
