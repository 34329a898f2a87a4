//! systemd `Type=notify` end to end: a Unix datagram socket stands in for systemd's
//! `$NOTIFY_SOCKET`, and the real `xsnoop run` / `xsnoop snoop` in a switch namespace must send
//! `READY=1` once it forwards (XDP attached) or listens, `RELOADING=1` + `MONOTONIC_USEC` then
//! `READY=1` around every SIGHUP (valid file or not), and `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use xsnoop_tests::{netns_or_skip, Daemon, Star};

/// A bound datagram socket playing systemd; the socket file is removed even on panic.
struct FakeSystemd {
    sock: UnixDatagram,
    path: PathBuf,
}

impl FakeSystemd {
    fn bind(tag: &str) -> FakeSystemd {
        let path = std::env::temp_dir().join(format!("xsnoop-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        FakeSystemd { sock, path }
    }

    fn addr(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The next notification, as its `KEY=VALUE` lines.
    fn next(&self) -> Vec<(String, String)> {
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification within 10 s: {e}"));
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(|l| {
                let (k, v) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("not KEY=VALUE: {l:?}"));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// The next notification, which must set `key=1`; returns all its assignments.
    fn expect(&self, key: &str) -> Vec<(String, String)> {
        let msg = self.next();
        assert_eq!(
            msg.first().map(|(k, v)| (k.as_str(), v.as_str())),
            Some((key, "1")),
            "{msg:?}"
        );
        msg
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn value<'a>(msg: &'a [(String, String)], key: &str) -> Option<&'a str> {
    msg.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn has_xdp(star: &Star, port: usize) -> bool {
    star.has_xdp(port).unwrap()
}

fn config(star: &Star) -> String {
    (1..=star.len())
        .map(|i| format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap()))
        .collect()
}

#[test]
fn run_notifies_ready_reloading_and_stopping() {
    netns_or_skip!();
    let star = Star::new(214, &[3, 3]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let systemd = FakeSystemd::bind("run");
    let daemon = Daemon::run_with_env(
        star.switch().unwrap(),
        &format!("notify-{}", star.topo.prefix()),
        &config(&star),
        &[("NOTIFY_SOCKET", systemd.addr())],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let ready = systemd.expect("READY");
    assert_eq!(
        value(&ready, "STATUS"),
        Some("switching 2 port(s) with 1 worker(s)"),
        "{ready:?}"
    );
    assert!(
        has_xdp(&star, 1) && has_xdp(&star, 2),
        "READY=1 before the classifier is attached"
    );

    // A valid reload and a refused one are both bracketed by RELOADING=1 ... READY=1.
    for text in [
        config(&star),
        "[[port]]\nname = \"a\"\nvlan = 4095\n".to_string(),
    ] {
        std::fs::write(daemon.config_path(), text).unwrap();
        let before = monotonic_usec();
        daemon.reload();
        let reloading = systemd.expect("RELOADING");
        let usec: u64 = value(&reloading, "MONOTONIC_USEC")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"));
        assert!(
            usec >= before && usec <= monotonic_usec(),
            "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC now ({before})"
        );
        systemd.expect("READY");
    }
    assert!(
        daemon.show("mdb").is_some(),
        "still serving after the refused reload"
    );

    let log = daemon.stop().unwrap_or_else(|e| panic!("{e}"));
    systemd.expect("STOPPING");
    assert!(log.contains("reload refused"), "{log}");
}

#[test]
fn snoop_notifies_ready_and_stopping() {
    netns_or_skip!();
    let star = Star::new(215, &[3]).unwrap();
    let systemd = FakeSystemd::bind("snoop");
    let port = star.port(1).unwrap();
    let daemon = Daemon::spawn_with_env(
        star.switch().unwrap(),
        &format!("notify-{}", star.topo.prefix()),
        &["snoop", "--port", &port],
        &[("NOTIFY_SOCKET", systemd.addr())],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ready = systemd.expect("READY");
    assert_eq!(value(&ready, "STATUS"), Some("snooping on 1 port(s)"));
    daemon.stop().unwrap_or_else(|e| panic!("{e}"));
    systemd.expect("STOPPING");
}
