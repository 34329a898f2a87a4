//! `xsnoop run`, the forwarding switch, end to end: the real daemon process in a switch
//! namespace, real kernel hosts behind veth pairs, real ping and real UDP multicast.
//!
//! Each test writes a config file with short timers to a temp dir, starts `xsnoop run` inside the
//! switch namespace (generic XDP is not needed: veth has native XDP), waits until the control
//! socket answers, and checks what the hosts' own sockets receive.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_tests::{netns_or_skip, Star};

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

fn cli(args: &[&str]) -> Output {
    Command::new(xsnoop_bin()).args(args).output().unwrap()
}

/// A running `xsnoop run` in the switch namespace; stopped (SIGTERM, then kill) on drop, and
/// its log printed when the test failed.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    sock: PathBuf,
}

impl Daemon {
    /// Writes `config` to a temp dir and starts `xsnoop run --config` in `star`'s switch.
    fn start(star: &Star, config: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("xsnoop-run-{}", star.topo.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("xsnoop.toml");
        std::fs::write(&cfg, config).unwrap();
        let sock = dir.join("ctl.sock");
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", star.switch().unwrap().name()])
            .arg(xsnoop_bin())
            .args(["--log-level", "info", "run", "--config"])
            .arg(&cfg)
            .arg("--control-socket")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            dir,
            sock,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.show("mdb").is_none() {
            if let Some(s) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("xsnoop run exited with {s}:\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "xsnoop run never answered:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn show(&self, what: &str) -> Option<Value> {
        let out = cli(&[
            what,
            "--json",
            "--control-socket",
            self.sock.to_str().unwrap(),
        ]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Polls `what` until `pred` holds; panics with the last answer and the log otherwise.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.show(what).unwrap_or(Value::Null);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never matched: {v:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; asserts a clean exit within 3 s and that the control socket is gone.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "xsnoop run did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        assert!(status.success(), "exit status {status}:\n{log}");
        assert!(!self.sock.exists(), "control socket left behind");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(300));
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!("--- xsnoop run log ---\n{}", self.log());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A config with short timers: querier on (address .254), LMQI 200 ms × 2, GMI ~4 s.
fn config(net: u8, ports: &[(String, &str)], extra_snooping: &str) -> String {
    let mut s = format!(
        "[snooping]\nquerier = true\nquerier_address = \"10.{net}.0.254\"\nquery_interval = \"2s\"\n\
         query_response_interval = \"1s\"\nlast_member_query_interval = \"200ms\"\n\
         last_member_query_count = 2\nstartup_query_interval = \"500ms\"\n{extra_snooping}\n"
    );
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

/// The star of `versions` hosts, with TX checksum offload off on every host interface: a veth
/// hands a locally sent UDP packet on with its checksum left for "the NIC" to fill
/// (CHECKSUM_PARTIAL), and a switch that forwards raw bytes (AF_XDP) is no NIC, so the receiver
/// would drop the datagram. A real host's NIC fills the checksum before the wire.
fn star(net: u8, versions: &[u8]) -> Star {
    let star = Star::new(net, versions).unwrap();
    for i in 1..=star.len() {
        let out = Command::new("ip")
            .args(["netns", "exec", star.host(i).unwrap().name()])
            .args(["ethtool", "-K", &star.host_if(i).unwrap(), "tx", "off"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ethtool -K tx off: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
    let d = Daemon::start(&star, &config(net, &access_ports(&star, &[]), ""));
    for (a, b) in [(1, 2), (3, 1), (2, 3)] {
        if let Some(e) = round_trip(&star, net, a, b) {
            panic!("h{a} → h{b}: {e}\n{}", d.log());
        }
    }
    // ARP requests were flooded as broadcast, the datagrams and replies went to learned MACs
    // (the worker refreshes its reason counters a few times a second).
    let count = |v: &Value, k: &str| v["dataplane"]["reasons"][k].as_u64().unwrap_or(0);
    d.wait_for("stats", Duration::from_secs(2), |v| {
        count(v, "fwd_broadcast") >= 2 && count(v, "fwd_known_unicast") >= 6
    });
    d.stop();
}
