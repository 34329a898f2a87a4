//! Processes a testbed run started, told apart from later ones that reuse their pid, and how
//! they are stopped when their owner cannot rely on `Drop` (a signal, a killed run).

use std::fs;
use std::time::{Duration, Instant};

/// One process, told apart from a later one that got the same pid: its pid and its start time
/// (clock ticks after boot, field 22 of `/proc/PID/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId {
    /// Process id.
    pub pid: u32,
    /// Start time, clock ticks after boot.
    pub start: u64,
}

impl RunId {
    /// This process.
    pub fn current() -> Option<RunId> {
        RunId::of(std::process::id())
    }

    /// Process `pid`, if it exists.
    pub fn of(pid: u32) -> Option<RunId> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised name (which may hold spaces) start at field 3.
        let start = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(22 - 3)?
            .parse()
            .ok()?;
        Some(RunId { pid, start })
    }

    /// Whether the process still runs (a zombie, dead but not yet reaped, does not).
    pub fn alive(self) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        !matches!(state, Some("Z" | "X")) && RunId::of(self.pid) == Some(self)
    }

    /// `PID-START`: how a list names the process (see [`RunId::parse`]).
    pub fn file_name(self) -> String {
        format!("{}-{}", self.pid, self.start)
    }

    /// The process a [`RunId::file_name`] names; `None` for any other text.
    pub fn parse(file_name: &str) -> Option<RunId> {
        let (pid, start) = file_name.split_once('-')?;
        Some(RunId {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }
}

/// SIGTERM to each of `processes`, then SIGKILL to those still running after `grace` (only to
/// the same processes: a pid reused meanwhile is left alone).
pub fn stop(processes: &[RunId], grace: Duration) {
    let signal = |p: &RunId, sig| {
        if let Ok(pid) = libc::pid_t::try_from(p.pid) {
            // SAFETY: plain syscall; the pid was checked to be the listed process just now.
            unsafe { libc::kill(pid, sig) };
        }
    };
    processes
        .iter()
        .filter(|p| p.alive())
        .for_each(|p| signal(p, libc::SIGTERM));
    let deadline = Instant::now() + grace;
    while processes.iter().any(|p| p.alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    processes
        .iter()
        .filter(|p| p.alive())
        .for_each(|p| signal(p, libc::SIGKILL));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_names_itself_and_reads_back() {
        let me = RunId::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.alive());
        assert_eq!(RunId::parse(&me.file_name()), Some(me));
        assert_eq!(RunId::parse("README"), None);
        assert_eq!(RunId::parse("12-x"), None);
    }
}
