//! The real `xsnoop` daemon process and its command line, end to end.
//!
//! `xsnoop snoop` runs inside the switch namespace as its own process; real kernel hosts join;
//! `xsnoop mdb --json` must print the issue-3 row contract; SIGTERM must exit cleanly and remove
//! the control socket.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_tests::daemon::xsnoop_bin;
use xsnoop_tests::{netns_or_skip, Daemon, HostConfig, Membership, Topology};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 7, 7, 7);

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(xsnoop_bin().unwrap())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn daemon_serves_mdb_contract_and_stops_cleanly_on_sigterm() {
    netns_or_skip!();
    let mut topo = Topology::new();
    topo.add_namespace("sw").unwrap();
    let mut ports = Vec::new();
    for (n, version) in [(1u8, 3u8), (2, 2)] {
        let host = format!("h{n}");
        topo.add_host(&host).unwrap();
        let (p, _) = topo
            .add_veth(("sw", &format!("p{n}")), (&host, &format!("e{n}")))
            .unwrap();
        topo.configure_host(
            &host,
            &format!("e{n}"),
            &HostConfig::new(Ipv4Addr::new(10, 0, 0, n), version),
        )
        .unwrap();
        ports.push(p.ifname);
    }
    let sw = topo.ns("sw").unwrap();
    let tag = format!("cli-{}", topo.prefix());
    let snoop = ["snoop", "--querier", "--querier-address", "10.0.0.100"];
    let port_args = ["--port", &ports[0], "--port", &ports[1], "--json"];
    let args: Vec<&str> = snoop.iter().chain(port_args.iter()).copied().collect();
    let daemon = Daemon::spawn(sw, &tag, &args).unwrap_or_else(|e| panic!("{e}"));
    let sock = daemon.socket().to_path_buf();

    let _m1 = Membership::join(
        topo.ns("h1").unwrap(),
        &topo.ifname("e1").unwrap(),
        GROUP,
        0,
    )
    .unwrap();
    let _m2 = Membership::join(
        topo.ns("h2").unwrap(),
        &topo.ifname("e2").unwrap(),
        GROUP,
        0,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let rows = loop {
        if let Some(Value::Array(rows)) = daemon.show("mdb") {
            if rows.len() == 2 {
                break rows;
            }
        }
        assert!(Instant::now() < deadline, "mdb never showed both joins");
        std::thread::sleep(Duration::from_millis(50));
    };
    for (row, port) in rows.iter().zip(&ports) {
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "vlan",
                "group",
                "port",
                "source",
                "filter_mode",
                "blocked",
                "static",
                "origin",
                "expires_ms"
            ]
        );
        assert_eq!(row["vlan"], 1);
        assert_eq!(row["group"], GROUP.to_string());
        assert_eq!(row["port"], port.as_str());
        assert!(row["source"].is_null());
        assert_eq!(row["filter_mode"], "exclude");
        assert_eq!(
            (row["blocked"].as_bool(), row["static"].as_bool()),
            (Some(false), Some(false))
        );
        assert_eq!(row["origin"], "learned");
        let ms = row["expires_ms"].as_u64().unwrap();
        assert!(ms > 250_000 && ms <= 260_000, "GMI is 260 s: {ms}");
    }

    let text = daemon.show_text("mdb").unwrap();
    assert!(
        text.starts_with("VLAN") && text.contains(&GROUP.to_string()),
        "{text}"
    );
    let q = daemon.show("querier").unwrap();
    assert_eq!(q[0]["we_are_querier"], true, "{q}");
    let stats = daemon.show("stats").unwrap();
    assert!(
        stats["received"]["reports_v3"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["received"]["reports_v2"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let events = daemon.show("events").unwrap();

    // explain: the same decision the dataplane makes, with the rule that chose it.
    let explain = |group: &str| -> Value {
        let out = cli(&[
            "explain",
            "--json",
            "--port",
            &ports[0],
            "--vlan",
            "1",
            "--source",
            "10.0.0.9",
            "--group",
            group,
            "--control-socket",
            sock.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let e = explain(&GROUP.to_string());
    assert_eq!(e["rule"], "registered", "{e}");
    assert_eq!(
        e["egress"],
        serde_json::json!([ports[1]]),
        "never back out of p1: {e}"
    );
    assert_eq!(e["members"], serde_json::json!([ports[1]]));
    let e = explain("239.200.0.1");
    assert_eq!(
        (e["rule"].as_str(), e["egress"].as_array().map(Vec::len)),
        (Some("unregistered"), Some(0))
    );
    let e = explain("224.0.0.251");
    assert_eq!(e["rule"], "link_local", "{e}");
    assert_eq!(e["egress"], serde_json::json!([ports[1]]));
    let human = cli(&[
        "explain",
        "--port",
        &ports[1],
        "--source",
        "10.0.0.9",
        "--group",
        &GROUP.to_string(),
        "--control-socket",
        sock.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!("goes to: {}", ports[0])) && text.contains("RFC 4541"),
        "{text}"
    );
    let bad = cli(&[
        "explain",
        "--port",
        "nosuchport",
        "--source",
        "10.0.0.9",
        "--group",
        "239.1.1.1",
        "--control-socket",
        sock.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no port named \"nosuchport\""));
    assert!(events.as_array().unwrap().len() >= 2, "{events}");

    // A static entry added at runtime is told apart from learned rows: origin "runtime", in
    // JSON and in the human table's ORIGIN column.
    let add = cli(&[
        "static",
        "add",
        "--group",
        "239.8.8.8",
        "--port",
        &ports[0],
        "--control-socket",
        sock.to_str().unwrap(),
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let mdb = daemon.show("mdb").unwrap();
    let origins: Vec<(&str, &str)> = mdb
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].as_str().unwrap(), r["origin"].as_str().unwrap()))
        .collect();
    assert!(origins.contains(&("239.8.8.8", "runtime")), "{mdb:#}");
    assert!(
        origins.contains(&(GROUP.to_string().as_str(), "learned")),
        "{mdb:#}"
    );
    let text = daemon.show_text("mdb").unwrap();
    assert!(text.lines().next().unwrap().contains("ORIGIN"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("239.8.8.8") && l.contains("static") && l.contains("runtime")),
        "{text}"
    );

    // SIGTERM: exit 0 promptly, control socket removed (both checked by stop()).
    daemon.stop().unwrap_or_else(|e| panic!("{e}"));
    // A show command against a stopped daemon fails with a clear message.
    let out = cli(&["mdb", "--control-socket", sock.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is xsnoop running"));
}

/// `xsnoop check-config` names the file, line and column of the bad value, the key, the value
/// and what is allowed, compiler style, and exits non-zero; a good file prints "ok".
#[test]
fn check_config_points_at_the_offending_line() {
    let dir = std::env::temp_dir().join(format!("xsnoop-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "# two ports\n[[port]]\nname = \"swp1\"\n\n[[port]]\nname = \"swp2\"\nvlan = 4095\n",
    )
    .unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[[port]]\nname = \"swp1\"\nvlan = 10\n").unwrap();
    let typo = dir.join("typo.toml");
    std::fs::write(
        &typo,
        "[[port]]\nname = \"swp1\"\nmrouter = \"sometimes\"\n",
    )
    .unwrap();
    let out_bad = cli(&["check-config", bad.to_str().unwrap()]);
    let out_good = cli(&["check-config", good.to_str().unwrap()]);
    let out_typo = cli(&["check-config", typo.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(!out_bad.status.success());
    let err = String::from_utf8_lossy(&out_bad.stderr);
    let want = format!("{}:7:8: port[1] (\"swp2\").vlan = 4095: ", bad.display());
    assert!(err.contains(&want) && err.contains("use 1..=4094"), "{err}");
    assert!(!out_typo.status.success());
    let err = String::from_utf8_lossy(&out_typo.stderr);
    let want = format!("{}:3:11: port[0].mrouter: ", typo.display());
    assert!(err.contains(&want) && err.contains("`always`"), "{err}");
    assert!(out_good.status.success());
    let ok = String::from_utf8_lossy(&out_good.stdout);
    assert!(ok.starts_with(&format!("{}: ok", good.display())), "{ok}");
}
