//! A real `xsnoop` daemon process inside a test's switch namespace, and the show commands that
//! read it — the way an operator runs and watches the switch.
//!
//! One launcher for every end-to-end test, the differential harness, the benchmarks and the
//! demo: start (`ip netns exec NS xsnoop ...`), wait until the control socket answers, query
//! with `xsnoop <show> --json`, stop with SIGTERM and check the clean exit. Dropping a daemon
//! that was not stopped kills it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Result, TestbedError};
use crate::netns::Netns;

/// Whether the `--config FILE` among `args` sets `dataplane` itself.
fn config_names_dataplane(args: &[&str]) -> bool {
    args.iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .is_some_and(|text| {
            text.lines()
                .any(|l| l.trim_start().starts_with("dataplane"))
        })
}

/// The `xsnoop` binary of this build: beside the running executable (a binary such as the
/// demo) or one directory up (a test in `target/<profile>/deps/`).
pub fn xsnoop_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| TestbedError::io("locating the running executable", e))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    [dir.join("xsnoop"), dir.join("../xsnoop")]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            TestbedError::BadName(format!(
                "no xsnoop binary beside {}: build it first (`cargo build -p xsnoop-control`; make test does)",
                exe.display()
            ))
        })
}

/// `setpriv` as user and group nobody with exactly CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and
/// CAP_IPC_LOCK (ambient, inheritable and bounding): what `xsnoop run` needs instead of root.
pub const CAPS_ONLY: [&str; 7] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_admin,+net_raw,+bpf,+ipc_lock",
    "--ambient-caps=-all,+net_admin,+net_raw,+bpf,+ipc_lock",
    "--bounding-set=-all,+net_admin,+net_raw,+bpf,+ipc_lock",
];

/// A running `xsnoop` daemon.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    sock: PathBuf,
    bin: PathBuf,
}

impl Daemon {
    /// Starts `xsnoop run --config` in `ns` with `config` (TOML text), its log and control
    /// socket in a fresh temp dir named after `tag`, and waits until it answers.
    pub fn run(ns: &Netns, tag: &str, config: &str) -> Result<Daemon> {
        Self::run_prefixed(ns, tag, config, &[])
    }

    /// Like [`Daemon::run`], with the whole command line behind `prefix` (e.g. `nice -n -20
    /// taskset -c 0`, which every thread of the daemon inherits through `ip netns exec`).
    pub fn run_prefixed(ns: &Netns, tag: &str, config: &str, prefix: &[&str]) -> Result<Daemon> {
        let dir = Self::workdir(tag)?;
        let cfg = dir.join("xsnoop.toml");
        std::fs::write(&cfg, config).map_err(|e| TestbedError::io("writing the config", e))?;
        let cfg = cfg.to_string_lossy().into_owned();
        Self::spawn_in(ns, dir, prefix, &[], &["run", "--config", &cfg])
    }

    /// Like [`Daemon::run`], with `wrapper` between `ip netns exec NS` and the binary (e.g.
    /// `setpriv --reuid ...` to run with fewer privileges: it must come after the namespace
    /// switch, which needs root). The work dir is made world-writable for the socket.
    pub fn run_wrapped(ns: &Netns, tag: &str, config: &str, wrapper: &[&str]) -> Result<Daemon> {
        let dir = Self::workdir(tag)?;
        let cfg = dir.join("xsnoop.toml");
        std::fs::write(&cfg, config).map_err(|e| TestbedError::io("writing the config", e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| TestbedError::io("opening the work dir", e))?;
        let cfg = cfg.to_string_lossy().into_owned();
        Self::spawn_in(ns, dir, &[], wrapper, &["run", "--config", &cfg])
    }

    /// Like [`Daemon::run`], with extra environment variables for the daemon (e.g.
    /// `NOTIFY_SOCKET`, a test's socket standing in for systemd), set by `env(1)` after the
    /// namespace switch.
    pub fn run_with_env(
        ns: &Netns,
        tag: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let dir = Self::workdir(tag)?;
        let cfg = dir.join("xsnoop.toml");
        std::fs::write(&cfg, config).map_err(|e| TestbedError::io("writing the config", e))?;
        let cfg = cfg.to_string_lossy().into_owned();
        let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let wrapper: Vec<&str> = std::iter::once("env")
            .chain(assignments.iter().map(String::as_str))
            .collect();
        Self::spawn_in(ns, dir, &[], &wrapper, &["run", "--config", &cfg])
    }

    /// Like [`Daemon::spawn`], with extra environment variables (see [`Daemon::run_with_env`]).
    pub fn spawn_with_env(
        ns: &Netns,
        tag: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let dir = Self::workdir(tag)?;
        let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let wrapper: Vec<&str> = std::iter::once("env")
            .chain(assignments.iter().map(String::as_str))
            .collect();
        Self::spawn_in(ns, dir, &[], &wrapper, args)
    }

    /// Starts `xsnoop <args>` (e.g. `snoop --port ...`) in `ns`; `--control-socket` is added.
    pub fn spawn(ns: &Netns, tag: &str, args: &[&str]) -> Result<Daemon> {
        let dir = Self::workdir(tag)?;
        Self::spawn_in(ns, dir, &[], &[], args)
    }

    fn workdir(tag: &str) -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("xsnoop-{tag}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| TestbedError::io(format!("creating {}", dir.display()), e))?;
        Ok(dir)
    }

    fn spawn_in(
        ns: &Netns,
        dir: PathBuf,
        prefix: &[&str],
        wrapper: &[&str],
        args: &[&str],
    ) -> Result<Daemon> {
        let bin = xsnoop_bin()?;
        let sock = dir.join("ctl.sock");
        let log = std::fs::File::create(dir.join("log"))
            .map_err(|e| TestbedError::io("creating the daemon log", e))?;
        // XSNOOP_TEST_CAPS_ONLY=1 runs every `xsnoop run` of the suite as user nobody with only
        // the four capabilities the README documents (issue 6: the suite once with only those).
        let caps_only: Vec<&str> = match std::env::var("XSNOOP_TEST_CAPS_ONLY") {
            Ok(v) if v == "1" && wrapper.is_empty() && args.first() == Some(&"run") => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| TestbedError::io("opening the work dir", e))?;
                CAPS_ONLY.to_vec()
            }
            _ => Vec::new(),
        };
        let wrapper = if caps_only.is_empty() {
            wrapper
        } else {
            &caps_only[..]
        };
        let (program, before) = match prefix.split_first() {
            Some((p, rest)) => (*p, rest),
            None => ("ip", &[][..]),
        };
        let mut cmd = Command::new(program);
        cmd.args(before);
        if !prefix.is_empty() {
            cmd.arg("ip");
        }
        // Every program in the chain execs the next, so the child's pid is the daemon's.
        // XSNOOP_TEST_DATAPLANE=auto|xdp|afxdp runs every `xsnoop run` of the suite in that
        // mode (CI runs the end-to-end suite once with afxdp, the default here, and once with
        // auto, the daemon's own default); a test that names its mode (on the command line or
        // in its config file) keeps it.
        let pinned = args.contains(&"--dataplane") || config_names_dataplane(args);
        let mode: Vec<String> = if args.first() == Some(&"run") && !pinned {
            let m = std::env::var("XSNOOP_TEST_DATAPLANE").unwrap_or_else(|_| "afxdp".into());
            vec!["--dataplane".into(), m]
        } else {
            Vec::new()
        };
        let child = cmd
            .args(["netns", "exec", ns.name()])
            .args(wrapper)
            .arg(&bin)
            .args(["--log-level", "info"])
            .args(args)
            .args(&mode)
            .arg("--control-socket")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| TestbedError::io("spawning xsnoop", e))?;
        // Stopped on drop; listed so a later run stops it if this process is killed first.
        crate::leftovers::record_process(child.id());
        let mut d = Daemon {
            child: Some(child),
            dir,
            sock,
            bin,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.show("mdb").is_none() {
            let exited = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(TestbedError::Command {
                    cmd: format!("xsnoop {}", args.join(" ")),
                    detail: format!("exited with {status}:\n{}", d.log()),
                });
            }
            if Instant::now() >= deadline {
                return Err(TestbedError::Command {
                    cmd: format!("xsnoop {}", args.join(" ")),
                    detail: format!("never answered on its control socket:\n{}", d.log()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// The configuration file a [`Daemon::run`] daemon was started with (rewrite it, then
    /// [`Daemon::reload`]).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("xsnoop.toml")
    }

    /// Sends SIGHUP: the daemon re-reads its configuration file.
    pub fn reload(&self) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
        }
    }

    /// The daemon's process id (for placing its threads).
    pub fn pid(&self) -> Option<libc::pid_t> {
        self.child
            .as_ref()
            .and_then(|c| libc::pid_t::try_from(c.id()).ok())
    }

    /// The control socket, for running show commands by hand.
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `xsnoop <what> --json` against this daemon; `None` when it does not answer.
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

    /// `xsnoop <what>` (the human table) against this daemon.
    pub fn show_text(&self, what: &str) -> Option<String> {
        let out = Command::new(&self.bin)
            .args([what, "--control-socket"])
            .arg(&self.sock)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls `what` until `pred` holds and returns that answer; on timeout the error holds the
    /// last answer and the daemon's log.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> std::result::Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.show(what).unwrap_or(Value::Null);
            if pred(&v) {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(format!("{what} never matched: {v:#}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then checks the daemon exited 0 within 3 s and removed its control socket;
    /// returns its log.
    pub fn stop(mut self) -> Result<String> {
        let Some(mut child) = self.child.take() else {
            return Ok(self.log());
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        let status = loop {
            if let Some(s) = child
                .try_wait()
                .map_err(|e| TestbedError::io("waiting for xsnoop", e))?
            {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TestbedError::Parse(format!(
                    "xsnoop did not exit within 3 s of SIGTERM:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        if !status.success() {
            return Err(TestbedError::Parse(format!(
                "xsnoop exited with {status}:\n{log}"
            )));
        }
        if self.sock.exists() {
            return Err(TestbedError::Parse("control socket left behind".into()));
        }
        Ok(log)
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
                eprintln!("--- xsnoop log ---\n{}", self.log());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `dataplane.kernel_path` of an `xsnoop stats --json` answer (the in-kernel fast path's
/// counters and where each VLAN is forwarded).
pub fn kernel_path(stats: &Value) -> &Value {
    &stats["dataplane"]["kernel_path"]
}

/// The VLAN list `key` (`kernel_vlans`, `afxdp_vlans`, `list_starved_vlans`, ...) of
/// [`kernel_path`]; empty when absent.
pub fn kernel_path_vlans(stats: &Value, key: &str) -> Vec<u64> {
    kernel_path(stats)[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Frames the kernel fast path took from switch port `port` (the classifier's counter in
/// `dataplane.ports` of `xsnoop stats --json`); 0 when absent.
pub fn kernel_rx(stats: &Value, port: &str) -> u64 {
    stats["dataplane"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["port"] == port))
        .and_then(|p| p["kernel_rx"].as_u64())
        .unwrap_or(0)
}
