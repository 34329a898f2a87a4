//! `perf record` of `xsnoop run`'s worker while the bench loads it: the profile behind
//! bench/results/profile.md. The recorder runs beside one rate sample, on the worker's thread
//! ids only (`-t`), with call graphs (`-g`), for the sample's duration.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::bed::Bed;
use crate::pin;

/// A running `perf record`.
#[derive(Debug)]
pub struct Recording {
    child: Child,
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
    let child = Command::new("perf")
        .args([
            "record",
            "-q",
            "-g",
            "-F",
            "4999",
            "-t",
            &tids.join(","),
            "-o",
        ])
        .arg(path)
        .args(["--", "sleep", &secs])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting perf record (apt-get install linux-perf)")?;
    // perf needs a moment to attach before the load starts.
    std::thread::sleep(Duration::from_millis(300));
    Ok(Recording { child })
}

impl Recording {
    /// Waits for the recording to end and checks that it succeeded.
    pub fn finish(self) -> Result<()> {
        let out = self.child.wait_with_output().context("waiting for perf")?;
        if !out.status.success() {
            bail!(
                "perf record failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
