//! `xsnoop run` without root: as an unprivileged user holding only the capabilities the README
//! documents (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK), granted as ambient
//! capabilities by `setpriv` the way systemd's `AmbientCapabilities=` does. It must switch as
//! root does; with one of them missing it must refuse at start-up, naming it.

use std::net::Ipv4Addr;
use std::time::Duration;

use xsnoop_tests::{netns_or_skip, Daemon, Membership, Sender, Star};

const CAPS: &str = "+net_admin,+net_raw,+bpf,+ipc_lock";

/// `setpriv` as user/group `nobody` (65534) with ambient capabilities `caps` and nothing else
/// (the bounding set is cut to them too).
fn setpriv(caps: &str) -> Vec<String> {
    vec![
        "setpriv".into(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps=-all,{caps}"),
        format!("--bounding-set=-all,{caps}"),
    ]
}

fn config(star: &Star) -> String {
    let mut s = String::from("[snooping]\nquerier = true\nquery_interval = \"2s\"\nquery_response_interval = \"1s\"\nstartup_query_interval = \"500ms\"\n");
    for i in 1..=star.len() {
        s.push_str(&format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap()));
    }
    s
}

/// The `Uid:` and `CapEff:` lines of a process.
fn uid_and_caps(pid: i32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_string()
    };
    (line("Uid:"), line("CapEff:"))
}

#[test]
fn runs_as_nobody_with_only_the_documented_capabilities() {
    netns_or_skip!();
    let star = Star::new(52, &[2, 2, 2]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let wrapper = setpriv(CAPS);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let d = Daemon::run_wrapped(
        star.switch().unwrap(),
        &format!("priv-{}", star.topo.prefix()),
        &config(&star),
        &wrapper,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (uid, caps) = uid_and_caps(d.pid().unwrap());
    assert!(uid.split_whitespace().nth(2) == Some("65534"), "{uid}");
    // CAP_NET_ADMIN(12) NET_RAW(13) IPC_LOCK(14) BPF(39), nothing else.
    let eff = u64::from_str_radix(caps.trim_start_matches("CapEff:").trim(), 16).unwrap();
    assert_eq!(
        eff,
        (1 << 12) | (1 << 13) | (1 << 14) | (1u64 << 39),
        "{caps}"
    );
    // It switches: a member gets the group, a non-member does not.
    let g = Ipv4Addr::new(239, 1, 52, 1);
    let m2 = Membership::join(star.host(2).unwrap(), &star.host_if(2).unwrap(), g, 5001).unwrap();
    let m3 = Membership::join(
        star.host(3).unwrap(),
        &star.host_if(3).unwrap(),
        Ipv4Addr::new(239, 1, 52, 2),
        5001,
    )
    .unwrap();
    let p2 = star.port(2).unwrap();
    d.wait_for("mdb", Duration::from_secs(5), |m| {
        m.as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["group"] == g.to_string() && r["port"] == p2)
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let s = Sender::new(star.host(1).unwrap(), &star.host_if(1).unwrap(), 4).unwrap();
    for i in 0..20 {
        s.send(g, 5001, format!("d{i}").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        m2.count(Duration::from_millis(400), Duration::from_secs(5))
            .unwrap(),
        20
    );
    assert_eq!(
        m3.count(Duration::from_millis(400), Duration::from_secs(1))
            .unwrap(),
        0
    );
    d.stop().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_missing_capability_is_named_at_start_up() {
    netns_or_skip!();
    let star = Star::new(51, &[2]).unwrap();
    let wrapper = setpriv("+net_admin,+net_raw,+ipc_lock");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let started = Daemon::run_wrapped(
        star.switch().unwrap(),
        &format!("nopriv-{}", star.topo.prefix()),
        &config(&star),
        &wrapper,
    );
    let e = match started {
        Ok(d) => {
            let log = d.stop().unwrap_or_else(|e| e.to_string());
            panic!("started without CAP_BPF:\n{log}")
        }
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("lacks CAP_BPF (to load the XDP classifier)")
            && e.contains("AmbientCapabilities"),
        "{e}"
    );
    assert!(!e.contains("CAP_NET_RAW ("), "{e}");
}
