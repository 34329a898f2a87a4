//! `make demo`: xsnoop's snooping brain on a built-in topology of real Linux hosts.
//!
//! Builds network namespaces joined by veth pairs, starts the switch as snooping querier, has
//! the hosts' own kernels join and leave groups, and after each step prints the group table and
//! where each kind of multicast frame would be sent, in plain words. Everything it creates is
//! deleted on exit and on Ctrl-C.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xsnoop_control::engine::model::Version;
use xsnoop_control::engine::{EngineConfig, PortConfig, VlanConfig};
use xsnoop_control::show;
use xsnoop_dataplane::wire::{parse_frame, to_vec, IgmpRepr, MacAddr, PimHelloBuilder, L3};
use xsnoop_dataplane::PortSet;
use xsnoop_tests::snoop_runner::{Snapshot, SnoopRunner};
use xsnoop_tests::{Capture, HostConfig, Membership, Topology};

const QUERIER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NEWS: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const SSM: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 1);

/// (host name, address, IGMP version its kernel speaks, fast-leave on its switch port)
const HOSTS: [(&str, Ipv4Addr, u8, bool); 5] = [
    ("sender", SENDER, 3, false),
    ("alice", Ipv4Addr::new(10, 0, 0, 11), 3, true),
    ("bob", Ipv4Addr::new(10, 0, 0, 12), 2, false),
    ("carol", Ipv4Addr::new(10, 0, 0, 13), 3, false),
    ("router", Ipv4Addr::new(10, 0, 0, 250), 3, false),
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

struct Demo {
    topo: Topology,
    /// Switch interface name per host, in HOSTS order.
    ports: Vec<String>,
}

impl Demo {
    fn build() -> Result<Demo> {
        let mut topo = Topology::new();
        topo.add_namespace("sw")?;
        let mut ports = Vec::new();
        for (i, (name, addr, version, _)) in HOSTS.iter().enumerate() {
            topo.add_host(name)?;
            let (sw_end, _) = topo.add_veth(
                ("sw", &format!("swp{}", i + 1)),
                (name, &format!("h{}", i + 1)),
            )?;
            topo.configure_host(
                name,
                &format!("h{}", i + 1),
                &HostConfig::new(*addr, *version),
            )?;
            ports.push(sw_end.ifname);
        }
        Ok(Demo { topo, ports })
    }

    fn host_if(&self, i: usize) -> Result<String> {
        Ok(self.topo.ifname(&format!("h{}", i + 1))?)
    }

    fn config(&self) -> EngineConfig {
        let mut vlan = VlanConfig::new(1);
        vlan.querier = true;
        vlan.querier_address = QUERIER;
        vlan.igmp_version = Version::V3;
        EngineConfig {
            ports: self
                .ports
                .iter()
                .zip(HOSTS)
                .map(|(port, (_, _, _, fast_leave))| {
                    let mut p = PortConfig::access(port, 1);
                    p.fast_leave = fast_leave;
                    p
                })
                .collect(),
            vlans: vec![vlan],
            ..EngineConfig::default()
        }
    }

    /// "swp2 (alice)" for a switch interface name.
    fn label(&self, port: &str) -> String {
        match self.ports.iter().position(|p| p == port) {
            Some(i) => format!("swp{} ({})", i + 1, HOSTS[i].0),
            None => port.to_string(),
        }
    }

    fn names(&self, set: PortSet) -> String {
        let v: Vec<&str> = set
            .iter()
            .filter_map(|p| HOSTS.get(usize::from(p)).map(|h| h.0))
            .collect();
        if v.is_empty() {
            "nobody".into()
        } else {
            v.join(", ")
        }
    }

    fn print_table(&self, s: &Snapshot) {
        let mut rows = s.mdb.clone();
        for r in &mut rows {
            r.port = self.label(&r.port);
        }
        println!("\n  Group table (xsnoop mdb):");
        for line in show::mdb(&rows).lines() {
            println!("    {line}");
        }
    }

    fn print_deliveries(&self, sw: &SnoopRunner) {
        let t = sw.table().load();
        println!("\n  Where a multicast frame from the sender ({SENDER}) would be sent:");
        for (group, what) in [
            (NEWS, "the 'news' group"),
            (SSM, "a source-specific group"),
            (Ipv4Addr::new(239, 5, 5, 5), "a group nobody joined"),
            (Ipv4Addr::new(224, 0, 0, 251), "mDNS, link-local"),
        ] {
            let (ports, rule) = t.multicast_egress(1, 0, SENDER, group);
            let target = format!("to {group} ({what}):");
            println!("    {target:<44} {:<28} [{rule:?}]", self.names(ports));
        }
    }

    /// Waits `settle` for the hosts and the switch to act, then narrates and shows the state.
    fn step(&self, sw: &SnoopRunner, settle: Duration, title: &str, lines: &[&str]) -> Result<()> {
        pause(settle)?;
        println!("\n== {title}");
        for l in lines {
            println!("   {l}");
        }
        let s = sw.snapshot();
        self.print_table(&s);
        self.print_deliveries(sw);
        Ok(())
    }
}

fn count_queries(cap: &Capture) -> Result<usize> {
    Ok(cap
        .collect(Duration::from_millis(300))?
        .iter()
        .filter(|f| !f.outgoing)
        .filter(|f| {
            matches!(parse_frame(&f.bytes), Ok(p) if matches!(p.l3,
                L3::Igmp { msg: IgmpRepr::Query(_), ip } if ip.src == QUERIER))
        })
        .count())
}

fn run() -> Result<()> {
    println!("xsnoop demo: IGMP snooping against real Linux hosts (network namespaces + veth)\n");
    let demo = Demo::build().context("building the demo topology (run as root)")?;
    println!("  Topology: one switch, five hosts, one per port (all in VLAN 1):");
    for (i, (name, addr, version, fast)) in HOSTS.iter().enumerate() {
        println!(
            "    swp{} -- {name:<7} {addr:<12} IGMPv{version}{}",
            i + 1,
            if *fast { "  (fast-leave port)" } else { "" }
        );
    }
    let alice_cap = Capture::open(demo.topo.ns("alice")?, &demo.host_if(1)?)?;
    let sw = SnoopRunner::start(demo.topo.ns("sw")?, demo.config())?;
    pause(Duration::from_millis(500))?;
    println!(
        "\n== xsnoop starts as the snooping querier ({QUERIER}) and asks every port who wants which group.\n   alice's kernel received {} query from it.",
        count_queries(&alice_cap)?
    );

    let router = demo.topo.ns("router")?;
    let hello = to_vec(&PimHelloBuilder {
        src_mac: MacAddr([0x02, 0, 0, 0, 0, 0xfa]),
        src_ip: HOSTS[4].1,
        holdtime: 105,
        vlan: None,
    })?;
    Capture::open(router, &demo.host_if(4)?)?.inject(&hello)?;
    demo.step(
        &sw,
        Duration::from_millis(800),
        "The router says hello (PIMv2).",
        &[
            "swp5 becomes a multicast-router port: it receives every group's traffic",
            "and every membership report (RFC 4541 §2.1.1), so the router can route multicast.",
        ],
    )?;

    let alice = Membership::join(demo.topo.ns("alice")?, &demo.host_if(1)?, NEWS, 0)?;
    let bob = Membership::join(demo.topo.ns("bob")?, &demo.host_if(2)?, NEWS, 0)?;
    let carol = Membership::join_source(demo.topo.ns("carol")?, &demo.host_if(3)?, SSM, SENDER, 0)?;
    demo.step(
        &sw,
        Duration::from_millis(1500),
        "alice (IGMPv3) and bob (IGMPv2) join 239.1.1.1; carol joins 232.1.1.1 from the sender only.",
        &[
            "Their kernels send membership reports; xsnoop learns each port's filter:",
            "EXCLUDE {} = any source, INCLUDE {S} = only from S (IGMPv3 source filtering).",
        ],
    )?;

    bob.leave()?;
    demo.step(
        &sw,
        Duration::from_millis(2600),
        "bob leaves 239.1.1.1.",
        &[
            "xsnoop asks bob's port whether anyone else there still wants the group (a",
            "group-specific query, in IGMPv2 because bob speaks v2). Nobody answers, so after",
            "the last-member query time (2 x 1 s) bob's port stops getting the group.",
        ],
    )?;
    alice.leave()?;
    demo.step(
        &sw,
        Duration::from_millis(500),
        "alice leaves 239.1.1.1.",
        &["alice's port is a fast-leave port (one host behind it): it is dropped at once."],
    )?;

    let s = sw.snapshot();
    let r = &s.stats.received;
    println!(
        "\n== What happened, from xsnoop's event journal (xsnoop events):\n   IGMP received: v2 reports {}, v3 reports {}, leaves {}; queries sent: general {}, group-specific {}.",
        r.reports_v2,
        r.reports_v3,
        r.leaves,
        s.stats.sent.general_queries,
        s.stats.sent.group_queries + s.stats.sent.group_source_queries
    );
    for e in &s.events {
        let port = e
            .port
            .and_then(|p| demo.ports.get(usize::from(p)))
            .map_or_else(|| "-".to_string(), |p| demo.label(p));
        let group = e.group.map_or_else(|| "-".to_string(), |g| g.to_string());
        let kind = serde_json::to_value(&e.kind)?;
        let kind = kind
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("?")
            .to_string();
        println!(
            "    {:>6.1}s  {kind:<16} {port:<16} {group:<12} {}",
            e.at.as_secs_f64(),
            e.reason
        );
    }
    drop(carol);
    sw.stop()?;
    println!(
        "\nThis demo runs xsnoop's snooping engine in snoop mode (it learns and queries, but does not\nforward yet); the AF_XDP dataplane that forwards these frames is next. Cleaning up."
    );
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
