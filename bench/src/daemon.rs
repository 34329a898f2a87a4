//! `xsnoop run` as the bench drives it: the real daemon process in the switch namespace, pinned
//! to the switch CPU, configured from a file, asked for its MDB over its control socket, and
//! stopped (SIGTERM, then SIGKILL) when the bench is done with it — also on error.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::pin::{BENCH_NICE, SWITCH_CPU};

/// The `xsnoop` binary: `$XSNOOP_BIN`, else next to this executable (`make build` puts both in
/// `target/release/`).
pub fn xsnoop_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("XSNOOP_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let bin = exe
        .parent()
        .map(|d| d.join("xsnoop"))
        .context("bench executable has no directory")?;
    if !bin.exists() {
        bail!(
            "{} missing: build it (`cargo build --release -p xsnoop-control`, or `make build`) or set XSNOOP_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `xsnoop run`; stopped on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    sock: PathBuf,
}

impl Daemon {
    /// Writes `config` into a fresh directory named after `tag` and starts
    /// `nice -n BENCH_NICE taskset -c SWITCH_CPU ip netns exec NS xsnoop run --config ...` (every
    /// thread of the daemon inherits both); returns once the control socket answers.
    pub fn start(netns: &str, tag: &str, config: &str) -> Result<Daemon> {
        let bin = xsnoop_bin()?;
        let dir = std::env::temp_dir().join(format!("xsnoop-bench-{tag}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cfg = dir.join("xsnoop.toml");
        std::fs::write(&cfg, config).with_context(|| format!("writing {}", cfg.display()))?;
        let sock = dir.join("ctl.sock");
        let log = std::fs::File::create(dir.join("log")).context("creating the daemon log")?;
        let (nice, cpu) = (BENCH_NICE.to_string(), SWITCH_CPU.to_string());
        let child = Command::new("nice")
            .args([
                "-n", &nice, "taskset", "-c", &cpu, "ip", "netns", "exec", netns,
            ])
            .arg(&bin)
            .args(["--log-level", "warn", "run", "--config"])
            .arg(&cfg)
            .arg("--control-socket")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting xsnoop run (needs nice, taskset and ip)")?;
        let mut d = Daemon {
            child: Some(child),
            bin,
            dir,
            sock,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.show("mdb").is_none() {
            if let Some(c) = d.child.as_mut() {
                if let Some(s) = c.try_wait()? {
                    bail!("xsnoop run exited with {s}:\n{}", d.log());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "xsnoop run never answered on its control socket:\n{}",
                    d.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<libc::pid_t> {
        self.child
            .as_ref()
            .and_then(|c| libc::pid_t::try_from(c.id()).ok())
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `xsnoop WHAT --json` against this daemon, `None` if it did not answer.
    pub fn show(&self, what: &str) -> Option<Value> {
        let out = Command::new(&self.bin)
            .args([what, "--json", "--control-socket"])
            .arg(&self.sock)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until the MDB lists `group` in VLAN 1 on every port of `ports`.
    pub fn wait_members(&self, group: Ipv4Addr, ports: &[String], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mdb = self.show("mdb").unwrap_or(Value::Null);
            let has = |port: &str| {
                mdb.as_array().is_some_and(|rows| {
                    rows.iter().any(|r| {
                        r["vlan"] == 1 && r["group"] == group.to_string() && r["port"] == port
                    })
                })
            };
            if ports.iter().all(|p| has(p)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "xsnoop never learned {group} on {ports:?}; mdb: {mdb}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `dataplane` counters of `xsnoop stats`.
    pub fn dataplane_stats(&self) -> Option<Value> {
        self.show("stats").map(|v| v["dataplane"].clone())
    }
}

fn config_dir_cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // `ip netns exec` execs the daemon, so the child pid is the daemon.
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        config_dir_cleanup(&self.dir);
    }
}
