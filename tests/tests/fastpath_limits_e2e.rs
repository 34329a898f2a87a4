//! The in-kernel fast path out of replication lists, end to end: `xsnoop run` in
//! `dataplane = "xdp"` whose descriptor limit leaves fewer replication lists (one descriptor
//! each) than its table needs.
//!
//! Topology: a star of 10 hosts. VLAN 20 is p1..p8: h1 sends, and 100 static groups each have
//! a different subset of p2..p8 as members (100 distinct egress sets, more than the first pool
//! of 64 lists). VLAN 10 is p9, p10: h9 sends to one group whose member is p10.
//!
//! How the limit is set: this machine's test runner has no CAP_SYS_RESOURCE, so nothing here
//! could raise a hard limit again. The daemon starts with soft = hard = 1024 and the small
//! table (VLAN 10's group); the test lowers its soft limit (`prlimit --pid`, allowed without
//! the capability) to what it has open plus the kernel path's reserve and a few lists, and
//! reloads with the 100 groups. The daemon only raises its limit at start, so from then on it
//! is exactly a daemon that met its limit.
//!
//! The kernel cannot hold VLAN 20, so the daemon must give it to the AF_XDP workers (not leave
//! its groups to the kernel's unregistered rule) and keep VLAN 10 in the kernel: stats say so,
//! the shortage names the limit, and every group's frames reach exactly its members. Then the
//! test reloads under the same limit (a retry that runs short again: no second warning, VLAN
//! 10 undisturbed), then puts the soft limit back to 1024 and reloads: VLAN 20 is back in the kernel, whose
//! counters show it forwarded every group, and the frames still reach exactly the members.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_dataplane::wire::{to_vec, MacAddr, UdpDataBuilder};
use xsnoop_tests::daemon::{kernel_path, kernel_path_vlans};
use xsnoop_tests::{netns_or_skip, Capture, Daemon, Star};

const NET: u8 = 67;
/// VLAN 20's ports are p1..=p8; VLAN 10's p9, p10.
const BIG: usize = 8;
const HOSTS: usize = 10;
/// VLAN 20's groups (member masks 1..=BIG_GROUPS over p2..p8).
const BIG_GROUPS: u32 = 100;
const DST_PORT: u16 = 6767;
/// Frames sent to each group per check.
const PER_GROUP: usize = 3;
/// The daemon's hard descriptor limit, and its soft one outside the shortage.
const HARD_NOFILE: usize = 1024;
/// Descriptors the lists leave to the rest of the switch.
const RESERVED_FDS: usize = xsnoop_dataplane::fastpath::RESERVED_FDS as usize;
/// Lists the lowered limit leaves room for beyond those open (VLAN 20 needs ~40 more).
const SPARE_LISTS: usize = 12;
const SMALL_SENDER: usize = 9;
const SMALL_MEMBER: usize = 10;

/// VLAN 20's group with member mask `m` (bit i: port p(i+2)).
fn big_group(m: u32) -> Ipv4Addr {
    Ipv4Addr::new(239, NET, 20, u8::try_from(m).unwrap())
}

const SMALL_GROUP: Ipv4Addr = Ipv4Addr::new(239, NET, 10, 1);

fn config(star: &Star, big: bool) -> String {
    let p = |i: usize| star.port(i).unwrap();
    let mut s = String::from("dataplane = \"xdp\"\n");
    for i in 1..=HOSTS {
        let vlan = if i <= BIG { 20 } else { 10 };
        s += &format!("[[port]]\nname = \"{}\"\nvlan = {vlan}\n", p(i));
    }
    for (g, members) in groups() {
        if g != SMALL_GROUP && !big {
            continue;
        }
        let vlan = if g == SMALL_GROUP { 10 } else { 20 };
        let names: Vec<String> = members.iter().map(|&i| format!("\"{}\"", p(i))).collect();
        s += &format!(
            "[[static_group]]\nvlan = {vlan}\ngroup = \"{g}\"\nports = [{}]\n",
            names.join(", ")
        );
    }
    s
}

/// Every group and its member hosts.
fn groups() -> BTreeMap<Ipv4Addr, Vec<usize>> {
    let mut out: BTreeMap<Ipv4Addr, Vec<usize>> = (1..=BIG_GROUPS)
        .map(|m| {
            let members = (0..7)
                .filter(|b| m & (1 << b) != 0)
                .map(|b| b + 2)
                .collect();
            (big_group(m), members)
        })
        .collect();
    out.insert(SMALL_GROUP, vec![SMALL_MEMBER]);
    out
}

fn sender_of(g: Ipv4Addr) -> usize {
    if g == SMALL_GROUP {
        SMALL_SENDER
    } else {
        1
    }
}

fn host_mac(h: usize) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, NET, u8::try_from(h).unwrap()])
}

fn frame(h: usize, g: Ipv4Addr, seq: u16) -> Vec<u8> {
    to_vec(&UdpDataBuilder {
        src_mac: host_mac(h),
        src_ip: Ipv4Addr::new(10, NET, 0, u8::try_from(h).unwrap()),
        group: g,
        src_port: seq,
        dst_port: DST_PORT,
        ttl: 4,
        payload: b"limits",
        vlan: None,
    })
    .unwrap()
}

/// The group of a test frame (untagged IPv4 UDP to `DST_PORT`), if `b` is one.
fn test_group(b: &[u8]) -> Option<Ipv4Addr> {
    if b.get(12..14)? != [0x08, 0x00] || *b.get(23)? != 17 {
        return None;
    }
    let ihl = usize::from(b.get(14)? & 0x0f) * 4;
    let dport = b.get(14 + ihl + 2..14 + ihl + 4)?;
    if dport != DST_PORT.to_be_bytes() {
        return None;
    }
    let d = b.get(30..34)?;
    Some(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
}

/// Sends `PER_GROUP` frames to every group from its sender and returns, per receiving host,
/// how many frames of each group it got; the senders' own captures count nothing (outgoing).
fn deliveries(star: &Star, round: u16) -> BTreeMap<(usize, Ipv4Addr), usize> {
    let caps: Vec<(usize, Capture)> = (1..=HOSTS).map(|h| (h, star.capture(h).unwrap())).collect();
    let tx: BTreeMap<usize, Capture> = [1, SMALL_SENDER]
        .into_iter()
        .map(|h| (h, star.capture(h).unwrap()))
        .collect();
    for k in 0..PER_GROUP {
        for g in groups().keys() {
            let seq = round * 100 + u16::try_from(k).unwrap();
            tx[&sender_of(*g)]
                .inject(&frame(sender_of(*g), *g, seq))
                .unwrap();
        }
        // Paced: the workers' rings and the hosts' backlog take a burst of 64 at a time.
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut got = BTreeMap::new();
    for (h, c) in &caps {
        for f in c.collect(Duration::from_millis(700)).unwrap() {
            if f.outgoing {
                continue;
            }
            if let Some(g) = test_group(&f.bytes) {
                *got.entry((*h, g)).or_insert(0) += 1;
            }
        }
    }
    got
}

/// Every group's frames reached exactly its members, `PER_GROUP` each; `None` or what differs.
fn check_deliveries(star: &Star, round: u16) -> Option<String> {
    let got = deliveries(star, round);
    let mut want = BTreeMap::new();
    for (g, members) in groups() {
        for h in members {
            want.insert((h, g), PER_GROUP);
        }
    }
    if got == want {
        return None;
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, n)| got.get(k) != Some(n))
        .map(|((h, g), n)| format!("h{h} {g}: {} of {n}", got.get(&(*h, *g)).unwrap_or(&0)))
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, _)| !want.contains_key(k))
        .map(|((h, g), n)| format!("h{h} {g}: {n}"))
        .collect();
    Some(format!(
        "{} wrong at members: {:?}; {} at non-members: {:?}",
        missing.len(),
        missing.iter().take(12).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(12).collect::<Vec<_>>()
    ))
}

/// Open descriptors and the RLIMIT_NOFILE line of process `pid`.
fn nofile(pid: i32) -> (usize, String) {
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or("")
        .to_string();
    (open, line)
}

/// Sets the daemon's soft descriptor limit (the hard one stays `HARD_NOFILE`).
fn set_soft_nofile(pid: i32, soft: usize) {
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft}:{HARD_NOFILE}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit: {out:?}");
}

fn reload_with(d: &Daemon, config: &str) {
    std::fs::write(d.config_path(), config).unwrap();
    d.reload();
}

#[test]
fn a_vlan_the_kernel_has_no_lists_for_is_forwarded_by_the_workers_until_the_limit_is_raised() {
    netns_or_skip!();
    let star = Star::new(NET, &[2; HOSTS]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let nofile_arg = format!("--nofile={HARD_NOFILE}:{HARD_NOFILE}");
    // A known hard limit whatever the runner's (and, being a wrapper, it keeps this daemon
    // root under XSNOOP_TEST_CAPS_ONLY: the test must be allowed to change its limit).
    let d = Daemon::run_wrapped(
        star.switch().unwrap(),
        &format!("limits-{}", star.topo.prefix()),
        &config(&star, false),
        &["prlimit", &nofile_arg, "--"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pid = d.pid().unwrap();
    d.wait_for("stats", Duration::from_secs(5), |v| {
        kernel_path_vlans(v, "kernel_vlans") == [10, 20]
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (open, _) = nofile(pid);
    let low = open + RESERVED_FDS + SPARE_LISTS;
    set_soft_nofile(pid, low);
    reload_with(&d, &config(&star, true));
    let v = d
        .wait_for("stats", Duration::from_secs(10), |v| {
            kernel_path_vlans(v, "list_starved_vlans") == [20]
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let kp = kernel_path(&v);
    eprintln!(
        "limits_e2e: {open} open at start, soft limit {low}; then {:?}; kernel path {kp:#}",
        nofile(pid)
    );
    assert_eq!(kernel_path_vlans(&v, "afxdp_vlans"), [20], "{kp:#}");
    assert_eq!(kernel_path_vlans(&v, "kernel_vlans"), [10], "{kp:#}");
    let why = kp["list_shortage"].as_str().unwrap_or("");
    assert!(
        why.contains("RLIMIT_NOFILE")
            && why.contains("LimitNOFILE=")
            && why.contains(&low.to_string()),
        "{kp:#}"
    );
    // The human form says it too.
    let text = d.show_text("stats").unwrap();
    assert!(
        text.contains("list_starved_vlans") && text.contains("LimitNOFILE="),
        "{text}"
    );
    // The daemon still has descriptors for the rest: it answers, and its ports are up.
    let ports = d.show("ports").unwrap();
    assert!(
        ports.as_array().unwrap().iter().all(|p| p["link"] == "up"),
        "{ports:#}"
    );

    // The workers learn both senders (the kernel forwards only from a known source), then
    // tell the kernel.
    let warm: BTreeMap<usize, Capture> = [1, SMALL_SENDER]
        .into_iter()
        .map(|h| (h, star.capture(h).unwrap()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        warm[&1].inject(&frame(1, big_group(1), 1)).unwrap();
        warm[&SMALL_SENDER]
            .inject(&frame(SMALL_SENDER, SMALL_GROUP, 1))
            .unwrap();
        let v = d.show("stats").unwrap_or(Value::Null);
        if kernel_path(&v)["stations"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "senders never learned: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(e) = check_deliveries(&star, 1) {
        panic!(
            "VLAN 20 with the workers: {e}\n{:#}\n{}",
            d.show("stats").unwrap_or_default(),
            d.log()
        );
    }

    // A retry under the same limit (a reload asks for one) runs short again: VLAN 20 goes
    // back to the workers without a second warning, VLAN 10 stays in the kernel untouched.
    d.reload();
    let v = d
        .wait_for("stats", Duration::from_secs(10), |v| {
            kernel_path(v)["sync_errors"] == 2
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let kp = kernel_path(&v);
    assert_eq!(kernel_path_vlans(&v, "list_starved_vlans"), [20], "{kp:#}");
    assert_eq!(kernel_path_vlans(&v, "kernel_vlans"), [10], "{kp:#}");
    if let Some(e) = check_deliveries(&star, 2) {
        panic!(
            "after a retry that ran short: {e}\n{:#}\n{}",
            d.show("stats").unwrap_or_default(),
            d.log()
        );
    }

    // The limit back up and a reload: the retry finds lists and VLAN 20 returns to the kernel.
    set_soft_nofile(pid, HARD_NOFILE);
    d.reload();
    let v = d
        .wait_for("stats", Duration::from_secs(10), |v| {
            kernel_path_vlans(v, "kernel_vlans") == [10, 20]
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let kp = kernel_path(&v);
    eprintln!("limits_e2e: after the retry {:?}; {kp:#}", nofile(pid));
    assert!(
        kernel_path_vlans(&v, "list_starved_vlans").is_empty(),
        "{kp:#}"
    );
    assert!(kernel_path_vlans(&v, "afxdp_vlans").is_empty(), "{kp:#}");
    assert!(kp["list_shortage"].is_null(), "{kp:#}");
    // Two shortages: the reload that brought the 100 groups and the retry under the same
    // limit; the retry after the limit went up found lists at once.
    assert_eq!(kp["sync_errors"], 2, "{kp:#}");
    assert!(
        kp["lists"]["live"].as_u64().unwrap_or(0) > u64::from(BIG_GROUPS),
        "{kp:#}"
    );
    if let Some(e) = check_deliveries(&star, 3) {
        panic!(
            "VLAN 20 back in the kernel: {e}\n{:#}\n{}",
            d.show("stats").unwrap_or_default(),
            d.log()
        );
    }
    // The kernel forwarded them this time: its per-flow counters have every group.
    let streams = d.show("streams").unwrap();
    let in_kernel = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kernel_packets"].as_u64().unwrap_or(0) >= PER_GROUP as u64)
        .count();
    assert_eq!(in_kernel, groups().len(), "{streams:#}");
    let log = d.stop().unwrap_or_else(|e| panic!("{e}"));
    let warnings = log
        .lines()
        .filter(|l| l.contains("no replication list left"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    assert!(log.contains("back in the kernel"), "{log}");
}
