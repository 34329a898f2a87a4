//! Faults against the real daemon (issue 6): what an operator's `kill -9`, a crash or a restart
//! under load leaves behind.
//!
//! (a) SIGKILL: the kernel must detach the XDP program with the dead process (xsnoop attaches
//!     through a bpf_link owned by its file descriptor), so no port is left black-holing or
//!     redirecting into sockets nobody reads.
//! (b) SIGKILL and restart: the new daemon knows nothing, so as querier it sends general queries
//!     at once (RFC 3376 §8.6 Startup Query Interval, §8.7 Startup Query Count) and the kernel
//!     hosts' answers rebuild the MDB within one query response interval.
//! (c) SIGTERM while a host floods multicast data and another floods reports: exit status 0
//!     within a few seconds, control socket removed, nothing attached.
//!
//! Every namespace and interface comes from the testbed, which removes exactly what it created
//! even when a test panics.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_dataplane::wire::{to_vec, MacAddr, ReportV2Builder};
use xsnoop_tests::{netns_or_skip, Daemon, Membership, Sender, Star};

const G1: Ipv4Addr = Ipv4Addr::new(239, 6, 0, 1);
const G2: Ipv4Addr = Ipv4Addr::new(239, 6, 0, 2);
const UDP_PORT: u16 = 5006;

/// Query response interval of the test configs: the restarted daemon must relearn within it.
const QRI: Duration = Duration::from_secs(2);
/// Allowance for a loaded 2-vCPU machine on top of the protocol's own bound.
const SLACK: Duration = Duration::from_secs(3);

/// How long a kernel host's join may take to show: its first unsolicited report can be lost
/// while the switch starts, and an IGMPv2 host repeats it only 10 s later (RFC 2236 §3).
const JOIN_TIMEOUT: Duration = Duration::from_secs(12);

/// Querier on at `.254`; a long query interval and startup query interval so that within the
/// window the test watches, only the first startup query (sent at once) can make hosts report.
fn config(star: &Star, net: u8) -> String {
    let mut s = format!(
        "[snooping]\nquerier = true\nquerier_address = \"10.{net}.0.254\"\n\
         query_interval = \"60s\"\nquery_response_interval = \"{}s\"\n\
         startup_query_interval = \"15s\"\nstartup_query_count = 2\n",
        QRI.as_secs()
    );
    for i in 1..=star.len() {
        s.push_str(&format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap()));
    }
    s
}

fn star(net: u8, versions: &[u8]) -> Star {
    let star = Star::new(net, versions).unwrap();
    star.prepare_for_afxdp().unwrap();
    star
}

fn start(star: &Star, tag: &str, config: &str) -> Daemon {
    let tag = format!("{tag}-{}", star.topo.prefix());
    Daemon::run(star.switch().unwrap(), &tag, config).unwrap_or_else(|e| panic!("{e}"))
}

/// The switch ports that have an XDP program attached, by `ip -d link` (bpftool is not installed
/// here): the link line shows `xdp`/`xdpgeneric`/`xdpdrv`, the detail lines `prog/xdp id N`.
fn ports_with_xdp(star: &Star) -> Vec<String> {
    let sw = star.switch().unwrap();
    (1..=star.len())
        .map(|i| star.port(i).unwrap())
        .filter(|p| {
            let out = sw.ip(&["-d", "link", "show", "dev", p]).unwrap();
            out.split_whitespace().any(|w| {
                matches!(w, "xdp" | "xdpgeneric" | "xdpdrv" | "xdpoffload") || w == "prog/xdp"
            })
        })
        .collect()
}

/// Polls until no port has XDP attached; fails with the ports still holding one.
fn assert_no_xdp_within(star: &Star, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = ports_with_xdp(star);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: XDP still attached on {left:?}:\n{}",
            star.switch().unwrap().ip(&["-d", "link", "show"]).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL, then drop the handle (which reaps the process and removes its temp dir).
fn sigkill(d: Daemon) {
    let pid = d.pid().expect("a running daemon has a pid");
    // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    drop(d);
}

fn join(star: &Star, n: usize, group: Ipv4Addr) -> Membership {
    star.join(n, group, UDP_PORT).unwrap()
}

/// Whether the mdb answer has a port-group row for (`group`, `port`).
fn has_row(mdb: &Value, group: Ipv4Addr, port: &str) -> bool {
    mdb.as_array().is_some_and(|rows| {
        rows.iter()
            .any(|r| r["group"] == group.to_string() && r["port"] == port && r["source"].is_null())
    })
}

/// A general IGMP query (type 0x11, group 0) from `querier` in an untagged frame.
fn is_general_query_from(querier: Ipv4Addr) -> impl Fn(&[u8]) -> bool {
    move |f| {
        let (Some(eth), Some(ihl)) = (f.get(12..14), f.get(14).map(|b| usize::from(b & 0xf) * 4))
        else {
            return false;
        };
        let igmp = 14 + ihl;
        eth == [8, 0]
            && f.get(23) == Some(&2)
            && f.get(26..30) == Some(&querier.octets()[..])
            && f.get(igmp) == Some(&0x11)
            && f.get(igmp + 4..igmp + 8) == Some(&[0, 0, 0, 0][..])
    }
}

/// Sets the flag when dropped, so load threads stop even when the test body panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn sigkill_leaves_no_xdp_program_attached() {
    netns_or_skip!();
    let net = 91;
    let star = star(net, &[2, 2]);
    let d = start(&star, "fault-kill", &config(&star, net));
    // The check must be able to fail: while the daemon runs, every port has its program.
    let attached = ports_with_xdp(&star);
    assert_eq!(
        attached.len(),
        star.len(),
        "xsnoop should have XDP on every port, has it on {attached:?}"
    );
    sigkill(d);
    assert_no_xdp_within(&star, Duration::from_secs(3), "after SIGKILL");
}

#[test]
fn a_restarted_querier_relearns_membership_within_one_query_response_interval() {
    netns_or_skip!();
    let net = 92;
    // One IGMPv2 and one IGMPv3 kernel host.
    let star = star(net, &[2, 3]);
    let cfg = config(&star, net);
    let (p1, p2) = (star.port(1).unwrap(), star.port(2).unwrap());
    let d = start(&star, "fault-restart", &cfg);
    let joined = Instant::now();
    let (_m1, _m2) = (join(&star, 1, G1), join(&star, 2, G2));
    d.wait_for("mdb", JOIN_TIMEOUT, |v| {
        has_row(v, G1, &p1) && has_row(v, G2, &p2)
    })
    .unwrap_or_else(|e| panic!("hosts' joins never learned: {e}"));
    // Let the hosts' unsolicited report repetitions (v2: 10 s apart, RFC 2236 §3) finish, so
    // that after the restart only a query can make them report.
    let quiet = Duration::from_secs(11).saturating_sub(joined.elapsed());
    std::thread::sleep(quiet);
    sigkill(d);
    assert_no_xdp_within(&star, Duration::from_secs(3), "after SIGKILL");

    let querier = Ipv4Addr::new(10, net, 0, 254);
    let c1 = star.capture(1).unwrap();
    let restarted = Instant::now();
    let d = start(&star, "fault-restart", &cfg);
    let answering = restarted.elapsed();
    // RFC 3376 §8.6/§8.7: the restarted querier queries at once, not after a query interval.
    let (_, queried) = c1
        .until(Instant::now() + SLACK, is_general_query_from(querier))
        .unwrap();
    assert!(
        queried,
        "no general query from the restarted daemon within {SLACK:?}:\n{}",
        d.log()
    );
    let mdb = d
        .wait_for("mdb", QRI + SLACK, |v| {
            has_row(v, G1, &p1) && has_row(v, G2, &p2)
        })
        .unwrap_or_else(|e| panic!("membership not relearned within QRI + slack: {e}"));
    eprintln!(
        "fault_e2e: restarted daemon answered after {answering:?}, mdb complete {:?} after the \
         restart ({} rows)",
        restarted.elapsed(),
        mdb.as_array().map_or(0, Vec::len)
    );
    d.stop().unwrap_or_else(|e| panic!("{e}"));
    assert_no_xdp_within(&star, Duration::from_secs(3), "after SIGTERM");
}

#[test]
fn sigterm_under_full_load_exits_cleanly_and_detaches() {
    netns_or_skip!();
    let net = 93;
    let star = star(net, &[2, 2, 2]);
    let d = start(&star, "fault-term", &config(&star, net));
    let p2 = star.port(2).unwrap();
    let m2 = join(&star, 2, G1);
    d.wait_for("mdb", JOIN_TIMEOUT, |v| has_row(v, G1, &p2))
        .unwrap_or_else(|e| panic!("{e}"));
    let tx = Sender::new(star.host(1).unwrap(), &star.host_if(1).unwrap(), 4).unwrap();
    let c3 = star.capture(3).unwrap();
    let report = to_vec(&ReportV2Builder {
        src_mac: MacAddr([0x02, 0, 0, 0, net, 3]),
        src_ip: Ipv4Addr::new(10, net, 0, 3),
        group: G2,
        vlan: None,
    })
    .unwrap();
    let stop = AtomicBool::new(false);
    let (sent, storm) = (AtomicU64::new(0), AtomicU64::new(0));
    let (took, received) = std::thread::scope(|s| {
        // Whatever happens below (a failed assertion included), the load threads end.
        let _stop = StopOnDrop(&stop);
        // Data as fast as one socket can send, and a report storm at the switch CPU.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if tx.send(G1, UDP_PORT, &[0u8; 64]).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if c3.inject(&report).is_ok() {
                    storm.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // The switch is forwarding under load before the signal arrives.
        let received = m2
            .count(Duration::from_millis(300), Duration::from_secs(1))
            .unwrap();
        let t = Instant::now();
        let result = d.stop();
        let took = t.elapsed();
        result.unwrap_or_else(|e| panic!("SIGTERM under load: {e}"));
        (took, received)
    });
    eprintln!(
        "fault_e2e: SIGTERM under load ({} datagrams, {} reports sent; member got {received} \
         in the last second) exited 0 after {took:?}",
        sent.load(Ordering::Relaxed),
        storm.load(Ordering::Relaxed)
    );
    assert!(received > 0, "the switch was not forwarding before SIGTERM");
    assert_no_xdp_within(&star, Duration::from_secs(3), "after SIGTERM under load");
}
