//! `perf` on `xsnoop run` while the bench loads it: the profile behind bench/results/profile.md.
//! Beside one rate sample, for its duration, three recorders run:
//! - `perf record -g -t <worker tids> -o PATH`: where the worker thread spends its cycles;
//! - `perf record -g -C <switch CPU> -o PATH.cpu`: the whole switch CPU (the ingress NAPI
//!   thread's XDP + copy into the UMEM happen there, outside the worker);
//! - `perf stat -e syscalls:sys_enter_{sendto,poll,recvfrom} -t <worker tids> -o PATH.stat`:
//!   how many syscalls the worker makes (per forwarded frame, with the sample's counters).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::bed::Bed;
use crate::pin;

/// The running recorders.
#[derive(Debug)]
pub struct Recording {
    children: Vec<Child>,
}

/// Starts `perf record -g -t <worker tids> -o path -- sleep <duration>` on `bed`'s xsnoop.
pub fn start(bed: &Bed, path: &Path, duration: Duration) -> Result<Recording> {
    let pid = bed.xsnoop_pid().context("perf: this bed runs no xsnoop")?;
    let tids: Vec<String> = pin::threads_named(pid, "xsnoop-asic")
        .iter()
        .map(|t| t.to_string())
        .collect();
    if tids.is_empty() {
        bail!("perf: no xsnoop-asic thread in pid {pid}");
    }
    let secs = format!("{:.1}", duration.as_secs_f64());
    let tids = tids.join(",");
    let cpu = pin::SWITCH_CPU.to_string();
    let with_ext = |ext: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        p
    };
    let runs: [(Vec<&str>, std::ffi::OsString); 3] = [
        (
            vec!["record", "-q", "-g", "-F", "4999", "-t", &tids],
            path.into(),
        ),
        (
            vec!["record", "-q", "-g", "-F", "4999", "-C", &cpu],
            with_ext(".cpu"),
        ),
        (
            vec![
                "stat",
                "-x,",
                "-e",
                "syscalls:sys_enter_sendto,syscalls:sys_enter_poll,syscalls:sys_enter_recvfrom",
                "-t",
                &tids,
            ],
            with_ext(".stat"),
        ),
    ];
    let mut children = Vec::new();
    for (args, out) in runs {
        let child = Command::new("perf")
            .args(args)
            .arg("-o")
            .arg(out)
            .args(["--", "sleep", &secs])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting perf (apt-get install linux-perf)")?;
        children.push(child);
    }
    // perf needs a moment to attach before the load starts.
    std::thread::sleep(Duration::from_millis(300));
    Ok(Recording { children })
}

impl Recording {
    /// Waits for the recorders to end and checks that they succeeded.
    pub fn finish(self) -> Result<()> {
        for child in self.children {
            let out = child.wait_with_output().context("waiting for perf")?;
            if !out.status.success() {
                bail!(
                    "perf failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }
}
