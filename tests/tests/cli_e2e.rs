//! The real `xsnoop` daemon process and its command line, end to end.
//!
//! `xsnoop snoop` runs inside the switch namespace as its own process; real kernel hosts join;
//! `xsnoop mdb --json` must print the issue-3 row contract; SIGTERM must exit cleanly and remove
//! the control socket.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_tests::{netns_or_skip, HostConfig, Membership, Topology};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 7, 7, 7);

/// The `xsnoop` binary of this build (next to the test executable's `deps/` directory).
fn xsnoop_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("xsnoop");
    assert!(
        bin.exists(),
        "{} missing: build it first (`cargo build -p xsnoop-control`; make test does)",
        bin.display()
    );
    bin
}

/// Kills the daemon if a test fails before stopping it.
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(xsnoop_bin()).args(args).output().unwrap()
}

fn show_json(what: &str, sock: &Path) -> Option<Value> {
    let out = cli(&[what, "--json", "--control-socket", sock.to_str().unwrap()]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
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
    let sock = std::env::temp_dir().join(format!("{}.sock", topo.prefix()));
    let sw = topo.ns("sw").unwrap().name().to_string();
    let bin = xsnoop_bin();
    let child = Command::new("ip")
        .args(["netns", "exec", &sw])
        .arg(&bin)
        .args(["snoop", "--querier", "--querier-address", "10.0.0.100"])
        .args(["--port", &ports[0], "--port", &ports[1]])
        .args(["--control-socket", sock.to_str().unwrap(), "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(Some(child));

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
        if let Some(Value::Array(rows)) = show_json("mdb", &sock) {
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
        let ms = row["expires_ms"].as_u64().unwrap();
        assert!(ms > 250_000 && ms <= 260_000, "GMI is 260 s: {ms}");
    }

    let human = cli(&["mdb", "--control-socket", sock.to_str().unwrap()]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(
        text.starts_with("VLAN") && text.contains(&GROUP.to_string()),
        "{text}"
    );
    let q = show_json("querier", &sock).unwrap();
    assert_eq!(q[0]["we_are_querier"], true, "{q}");
    let stats = show_json("stats", &sock).unwrap();
    assert!(
        stats["received"]["reports_v3"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["received"]["reports_v2"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let events = show_json("events", &sock).unwrap();
    assert!(events.as_array().unwrap().len() >= 2, "{events}");

    // SIGTERM: exit 0 promptly, control socket gone.
    let mut child = daemon.0.take().unwrap();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "xsnoop did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    assert!(!sock.exists(), "control socket left behind");
    // A show command against a stopped daemon fails with a clear message.
    let out = cli(&["mdb", "--control-socket", sock.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is xsnoop running"));
}
