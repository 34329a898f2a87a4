//! Frame accounting under sustained replication (issue 6): after millions of replicated frames
//! through a real `xsnoop run`, every UMEM frame of every worker is back in the free pool or a
//! fill ring, and a full audit of every frame's state agrees with the counters. Replication goes
//! by reference (one frame on N TX rings, freed after N completions), so a lost completion or a
//! double release would show here as frames stuck in flight or an audit error.
//!
//! The members absorb the traffic with an XDP drop program (their kernels would otherwise eat the
//! CPU the switch needs); the sender injects through a packet socket.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_dataplane::wire::{to_vec, MacAddr, UdpDataBuilder};
use xsnoop_tests::{netns_or_skip, sink, Daemon, Star};

/// Replicated frames to reach: 2 million in `make test` (about 20 s here); the ten
/// million with `XSNOOP_SOAK_FRAMES=10000000` (a few minutes on this 2-CPU machine).
fn target() -> u64 {
    std::env::var("XSNOOP_SOAK_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

fn n(v: &Value, k: &str) -> u64 {
    v["dataplane"][k].as_u64().unwrap_or(0)
}

#[test]
fn millions_of_replicated_frames_lose_no_umem_frame() {
    netns_or_skip!();
    // The AF_XDP workers must do the replicating here, whatever mode the suite runs in.
    std::env::set_var("XSNOOP_TEST_DATAPLANE", "afxdp");
    // h1 sends; h2..h6 are the static members (fan-out 5); h7 is not a member.
    let star = Star::new(49, &[2; 7]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let group = Ipv4Addr::new(239, 49, 0, 1);
    let mut cfg = String::new();
    for i in 1..=7 {
        cfg.push_str(&format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap()));
    }
    let members: Vec<String> = (2..=6)
        .map(|i| format!("\"{}\"", star.port(i).unwrap()))
        .collect();
    cfg.push_str(&format!(
        "[[static_group]]\ngroup = \"{group}\"\nports = [{}]\n",
        members.join(", ")
    ));
    for i in 2..=7 {
        sink::attach_drop(star.host(i).unwrap(), &star.host_if(i).unwrap()).unwrap();
    }
    let d = Daemon::run(
        star.switch().unwrap(),
        &format!("umem-{}", star.topo.prefix()),
        &cfg,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let frame = to_vec(&UdpDataBuilder {
        src_mac: MacAddr([0x02, 0, 0, 0, 49, 1]),
        src_ip: Ipv4Addr::new(10, 49, 0, 1),
        group,
        src_port: 4000,
        dst_port: 5000,
        ttl: 4,
        payload: &[0x5a; 18],
        vlan: None,
    })
    .unwrap();
    let tx = star.capture(1).unwrap();
    let want = target();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let mut stats = d.show("stats").unwrap();
    let mut sent = 0u64;
    while n(&stats, "tx") < want {
        assert!(
            Instant::now() < deadline,
            "only {} frames replicated after {:?} ({sent} sent)",
            n(&stats, "tx"),
            started.elapsed()
        );
        for _ in 0..20_000 {
            // A full socket buffer is back-pressure, not a failure.
            if tx.inject(&frame).is_ok() {
                sent += 1;
            }
        }
        // The control socket may time out while the switch CPU is flooded: ask again later.
        if let Some(v) = d.show("stats") {
            stats = v;
        }
    }
    // Quiet: every TX completes, every frame returns.
    let v = d
        .wait_for("stats", Duration::from_secs(5), |v| {
            v["dataplane"]["umem"].as_array().is_some_and(|ws| {
                ws.iter().all(|w| {
                    w["in_flight"] == 0
                        && w["audit"] == "ok"
                        && w["free"].as_u64().unwrap_or(0) + w["in_fill"].as_u64().unwrap_or(0)
                            == w["total"].as_u64().unwrap_or(1)
                })
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let dp = &v["dataplane"];
    eprintln!(
        "umem_e2e: {} frames replicated ({} received, {sent} sent) in {:?}; umem {}",
        n(&v, "tx"),
        n(&v, "rx"),
        started.elapsed(),
        dp["umem"]
    );
    assert!(n(&v, "tx") >= want);
    // Replication to exactly the five members: five copies per received frame.
    let fwd = dp["reasons"]["fwd_mc_registered"].as_u64().unwrap_or(0);
    assert!(fwd > 0 && n(&v, "tx") <= 5 * n(&v, "rx") + 100, "{dp}");
    let non_member = dp["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == star.port(7).unwrap().as_str())
        .unwrap()["tx"]
        .as_u64()
        .unwrap();
    assert!(
        non_member < 100,
        "the non-member got {non_member} frames: {dp}"
    );
    d.stop().unwrap_or_else(|e| panic!("{e}"));
}
