//! The switches a scenario can run against: the Linux bridge and the `xsnoop run` process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::config::ScenarioConfig;
use crate::bridge::Bridge;
use crate::netns::Netns;

/// A switch implementation the scenarios can run against.
pub trait SwitchUnderTest {
    /// Short name for matrices and messages ("bridge", "xsnoop").
    fn name(&self) -> &'static str;
    /// Starts the switch in `ns` over `cfg.ports`; `tag` is unique per topology (for device and
    /// socket names). Returns once the switch answers (not necessarily once snooping is active:
    /// scenarios wait the query response interval for that, on every switch alike).
    fn start(&self, ns: &Netns, tag: &str, cfg: &ScenarioConfig) -> Result<Box<dyn RunningSwitch>>;
}

/// A started switch; dropping it stops it too, [`RunningSwitch::stop`] also reports failures.
pub trait RunningSwitch {
    /// The switch's group table in its own words, for failure messages and the printout.
    fn state(&self) -> String;
    /// Stops the switch and reports an error it hit.
    fn stop(self: Box<Self>) -> Result<()>;
}

/// The Linux bridge as the reference switch.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxBridge;

struct RunningBridge(Bridge);

impl SwitchUnderTest for LinuxBridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn start(&self, ns: &Netns, tag: &str, cfg: &ScenarioConfig) -> Result<Box<dyn RunningSwitch>> {
        let (bcfg, ports) = cfg.to_bridge();
        let name = format!("{tag}br");
        let br = Bridge::create(ns, &name, &bcfg, &ports).map_err(|e| anyhow!("{e}"))?;
        Ok(Box::new(RunningBridge(br)))
    }
}

impl RunningSwitch for RunningBridge {
    fn state(&self) -> String {
        match (self.0.mdb(), self.0.router_ports()) {
            (Ok(mdb), Ok(routers)) => {
                let rows: Vec<String> = mdb
                    .iter()
                    .map(|e| {
                        let src = e.source.map(|s| format!(" src {s}")).unwrap_or_default();
                        format!("{} {}{src} {:?}", e.port, e.group, e.flags)
                    })
                    .collect();
                format!("mdb [{}] routers {routers:?}", rows.join("; "))
            }
            (Err(e), _) | (_, Err(e)) => format!("(bridge state unreadable: {e})"),
        }
    }

    fn stop(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
}

/// The real `xsnoop run --config FILE --control-socket PATH` process.
#[derive(Clone, Debug)]
pub struct Xsnoop {
    /// The `xsnoop` binary.
    pub bin: PathBuf,
}

impl Xsnoop {
    /// The binary of this build: `$XSNOOP_BIN`, else `xsnoop` next to the test executable's
    /// `deps/` directory (where `cargo build -p xsnoop-control` puts it).
    pub fn of_this_build() -> Result<Xsnoop> {
        if let Some(p) = std::env::var_os("XSNOOP_BIN") {
            return Ok(Xsnoop { bin: p.into() });
        }
        let exe = std::env::current_exe()?;
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("xsnoop"))
            .ok_or_else(|| anyhow!("no directory above {}", exe.display()))?;
        if !bin.exists() {
            bail!(
                "{} missing: build it first (`cargo build -p xsnoop-control`)",
                bin.display()
            );
        }
        Ok(Xsnoop { bin })
    }

    /// Whether this binary has the `run` subcommand (the AF_XDP forwarding daemon).
    pub fn has_run(&self) -> bool {
        Command::new(&self.bin)
            .args(["run", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

struct RunningXsnoop {
    bin: PathBuf,
    child: Option<Child>,
    socket: PathBuf,
    config: PathBuf,
}

impl RunningXsnoop {
    fn show(&self, what: &str) -> Option<String> {
        let out = Command::new(&self.bin)
            .args([what, "--json", "--control-socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn halt(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.config);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("xsnoop run exited with {status} on SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("xsnoop run did not exit within 3 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl SwitchUnderTest for Xsnoop {
    fn name(&self) -> &'static str {
        "xsnoop"
    }

    fn start(&self, ns: &Netns, tag: &str, cfg: &ScenarioConfig) -> Result<Box<dyn RunningSwitch>> {
        let dir = std::env::temp_dir();
        let config = dir.join(format!("{tag}-xsnoop.toml"));
        let socket = dir.join(format!("{tag}-xsnoop.sock"));
        std::fs::write(&config, cfg.to_xsnoop_toml())
            .with_context(|| format!("writing {}", config.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(&self.bin)
            .args(["--log-level", "warn", "run", "--config"])
            .arg(&config)
            .arg("--control-socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning xsnoop run")?;
        let mut run = RunningXsnoop {
            bin: self.bin.clone(),
            child: Some(child),
            socket,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if run.show("mdb").is_some() {
                return Ok(Box::new(run));
            }
            if let Some(child) = run.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    run.child = None;
                    bail!("xsnoop run exited with {status} before answering: {err}");
                }
            }
            if Instant::now() >= deadline {
                bail!("xsnoop run did not answer `mdb --json` within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl RunningSwitch for RunningXsnoop {
    fn state(&self) -> String {
        // One compact line per row: port, group, source, filter mode (the JSON is long).
        let rows = |what: &str, keys: &[&str]| -> String {
            let Some(text) = self.show(what) else {
                return format!("({what} unavailable)");
            };
            let Ok(serde_json::Value::Array(rows)) = serde_json::from_str(&text) else {
                return text.trim().to_owned();
            };
            let cells: Vec<String> = rows
                .iter()
                .map(|r| {
                    keys.iter()
                        .filter_map(|k| match &r[*k] {
                            serde_json::Value::Null => None,
                            serde_json::Value::String(s) => Some(s.clone()),
                            v => Some(v.to_string()),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            format!("[{}]", cells.join("; "))
        };
        // The dataplane's decision counters explain a missing datagram (drop reasons).
        let dataplane = self
            .show("stats")
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| v["dataplane"].to_string())
            .unwrap_or_default();
        format!(
            "mdb {} mrouters {} dataplane {dataplane}",
            rows("mdb", &["port", "group", "source", "filter_mode"]),
            rows("mrouters", &["port", "via"])
        )
    }

    fn stop(mut self: Box<Self>) -> Result<()> {
        self.halt()
    }
}

impl Drop for RunningXsnoop {
    fn drop(&mut self) {
        if let Err(e) = self.halt() {
            eprintln!("xsnoop-tests: stopping xsnoop: {e}");
        }
    }
}
