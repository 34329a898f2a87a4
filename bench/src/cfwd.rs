//! The AF_XDP C forwarder (`bench/afxdp-fwd/`, built by `make bench-fwd`) as a bed's switch:
//! issue 7 asks xsnoop's afxdp mode to be at least as fast as it, so the bench runs it beside
//! xsnoop in the same rounds. This module finds the binary, starts it in the switch namespace on
//! the switch CPU, waits for its `ready` line and stops it (SIGTERM, then its exit counters) when
//! dropped.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use xsnoop_tests::Netns;

use crate::pin::{BENCH_NICE, SWITCH_CPU};

/// The forwarder's file name; its XDP program is this plus `.bpf.o`, beside it.
pub const BINARY: &str = "xsnoop-afxdp-fwd";

/// Why the forwarder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FwdError {
    /// Neither `$XSNOOP_AFXDP_FWD` nor the places `make bench-fwd` writes hold the binary.
    #[error("{BINARY} not found (looked in {0}); build it with `make bench-fwd`")]
    Missing(String),
    /// Spawning the process failed.
    #[error("starting {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// It exited or said nothing before `ready`.
    #[error("{BINARY} did not get ready within {0:?}: {1}")]
    NotReady(Duration, String),
}

/// Where the forwarder is looked for: `$XSNOOP_AFXDP_FWD`, then beside the bench's own binary
/// (`make bench` runs `target/release/xsnoop-bench`), then the workspace's `target/release`
/// (where `make bench-fwd` writes, also when cargo builds the bench elsewhere).
fn candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("XSNOOP_AFXDP_FWD") {
        v.push(PathBuf::from(p));
        return v;
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join(BINARY));
    }
    v.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/release")
            .join(BINARY),
    );
    v
}

/// The forwarder binary, if it and its XDP program are there.
pub fn locate() -> Result<PathBuf, FwdError> {
    let all = candidates();
    all.iter()
        .find(|p| p.is_file() && program_of(p).is_file())
        .cloned()
        .ok_or_else(|| {
            FwdError::Missing(
                all.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// The XDP program file beside the binary `bin`.
pub fn program_of(bin: &Path) -> PathBuf {
    let mut s = bin.as_os_str().to_owned();
    s.push(".bpf.o");
    PathBuf::from(s)
}

/// Where each class of frame goes: the ceiling's three devmaps, as port names.
#[derive(Debug, Clone)]
pub struct Egress {
    /// Group destinations (the members).
    pub multicast: Vec<String>,
    /// Individual destinations (host 2's port).
    pub unicast: Vec<String>,
    /// ff:ff:ff:ff:ff:ff (every port but the ingress).
    pub broadcast: Vec<String>,
}

/// The command-line arguments for ingress port `ingress` and `egress`.
pub fn args(ingress: &str, egress: &Egress, bpf: &Path) -> Vec<String> {
    vec![
        "--in".into(),
        ingress.into(),
        "--out".into(),
        egress.multicast.join(","),
        "--unicast-out".into(),
        egress.unicast.join(","),
        "--broadcast-out".into(),
        egress.broadcast.join(","),
        "--bpf".into(),
        bpf.display().to_string(),
        "--cpu".into(),
        SWITCH_CPU.to_string(),
    ]
}

/// A running forwarder; dropping it stops it.
#[derive(Debug)]
pub struct Forwarder {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Forwarder {
    /// Starts `bin` in `ns` under `nice -n BENCH_NICE taskset -c SWITCH_CPU` (the placement
    /// `xsnoop run` gets) and waits until it prints `ready`.
    pub fn start(ns: &Netns, bin: &Path, args: &[String]) -> Result<Forwarder, FwdError> {
        let (nice, cpu) = (BENCH_NICE.to_string(), SWITCH_CPU.to_string());
        let mut cmd = Command::new("nice");
        cmd.args([
            "-n",
            &nice,
            "taskset",
            "-c",
            &cpu,
            "ip",
            "netns",
            "exec",
            ns.name(),
        ])
        .arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let line = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .map_err(|source| FwdError::Spawn { cmd: line, source })?;
        // Listed so a later run stops it if the bench is killed (SIGKILL) before it can.
        xsnoop_tests::leftovers::record_process(child.id());
        let output = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let (output, ready_tx) = (Arc::clone(&output), ready_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.starts_with("ready") {
                        let _ = ready_tx.send(());
                    }
                    if let Ok(mut o) = output.lock() {
                        o.push(line);
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut o) = output.lock() {
                        o.push(line);
                    }
                }
            });
        }
        drop(ready_tx);
        let mut fwd = Forwarder { child, output };
        let timeout = Duration::from_secs(10);
        let deadline = Instant::now() + timeout;
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return Ok(fwd),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if matches!(fwd.child.try_wait(), Ok(Some(_))) {
                        // Let the readers take its last words.
                        std::thread::sleep(Duration::from_millis(100));
                        return Err(FwdError::NotReady(timeout, fwd.log()));
                    }
                }
                Err(_) => return Err(FwdError::NotReady(timeout, fwd.log())),
            }
        }
    }

    /// The process id (the same through `nice`, `taskset` and `ip netns exec`, which exec).
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).unwrap_or(0)
    }

    /// Everything it printed so far, stdout and stderr.
    pub fn log(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    /// Stops it: SIGTERM, up to 5 s for a clean exit (its program detached), then SIGKILL.
    /// Returns what it printed (its counters).
    pub fn stop(&mut self) -> String {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid; no memory is passed.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let log = self.stop();
        let counters: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("counters") || l.starts_with("port "))
            .collect();
        if !counters.is_empty() {
            eprintln!("bench: {BINARY} stopped: {}", counters.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_each_class_of_frame_and_the_program() {
        let e = Egress {
            multicast: vec!["p2".into(), "p3".into()],
            unicast: vec!["p2".into()],
            broadcast: vec!["p2".into(), "p3".into(), "p4".into()],
        };
        let a = args("p1", &e, Path::new("/x/fwd.bpf.o"));
        let pair = |flag: &str| {
            let i = a.iter().position(|x| x == flag).unwrap();
            a[i + 1].clone()
        };
        assert_eq!(pair("--in"), "p1");
        assert_eq!(pair("--out"), "p2,p3");
        assert_eq!(pair("--unicast-out"), "p2");
        assert_eq!(pair("--broadcast-out"), "p2,p3,p4");
        assert_eq!(pair("--bpf"), "/x/fwd.bpf.o");
        assert_eq!(pair("--cpu"), SWITCH_CPU.to_string());
    }

    /// Runs the built forwarder (if `make bench-fwd` ran) with `args`: its exit code and
    /// stderr.
    fn run_built(args: &[&str]) -> Option<(i32, String)> {
        let Ok(bin) = locate() else {
            eprintln!("skipped: {BINARY} not built (make bench-fwd)");
            return None;
        };
        let out = Command::new(bin).args(args).output().unwrap();
        Some((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    #[test]
    fn the_forwarder_refuses_bad_arguments_with_the_reason() {
        // No root needed: each fails before any socket or program.
        let cases: [(&[&str], &str); 5] = [
            (&["--in", "lo"], "--in and --out are required"),
            (&["--in", "lo", "--out", "lo"], "lo is the ingress port"),
            (
                &["--in", "nosuchif0", "--out", "lo"],
                "if_nametoindex(nosuchif0)",
            ),
            (&["--in", "lo", "--cpu", "x"], "--cpu x: not a CPU number"),
            (&["--frobnicate"], "unknown argument --frobnicate"),
        ];
        for (args, why) in cases {
            let Some((code, err)) = run_built(args) else {
                return;
            };
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
        }
        let Some((code, _)) = run_built(&["--help"]) else {
            return;
        };
        assert_eq!(code, 0);
    }

    #[test]
    fn the_program_is_found_beside_the_binary() {
        assert_eq!(
            program_of(Path::new("/a/b/xsnoop-afxdp-fwd")),
            PathBuf::from("/a/b/xsnoop-afxdp-fwd.bpf.o")
        );
    }
}
