//! Namespaces left behind by a killed run, and their removal by the next run.
//!
//! A testbed deletes its namespaces in `Drop`, which never runs when the process is killed
//! (Ctrl-C on `cargo test`, a timeout). So every process lists each namespace it creates in
//! `/run/xsnoop-tests/PID-START` (pid and start time: a reused pid is another run), and before
//! a process creates its first namespace it sweeps: every namespace listed by a run that is no
//! longer alive, still present, and listed by no live run is deleted, then that run's list.
//! Only names this testbed created are ever touched. `/run` is a tmpfs, like `/run/netns`, so
//! both start empty at boot.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Once;

use crate::cmd;

/// Where the runs' lists live.
pub const REGISTRY: &str = "/run/xsnoop-tests";

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

    fn alive(self) -> bool {
        RunId::of(self.pid) == Some(self)
    }

    fn file_name(self) -> String {
        format!("{}-{}", self.pid, self.start)
    }

    fn parse(file_name: &str) -> Option<RunId> {
        let (pid, start) = file_name.split_once('-')?;
        Some(RunId {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }
}

/// Adds `namespace` to this process's list. Best effort: a failure only means a kill would leave
/// the namespace behind, so it is reported, never fatal.
pub fn record(namespace: &str) {
    if let Err(e) = record_in(Path::new(REGISTRY), namespace) {
        eprintln!("xsnoop-tests: listing namespace {namespace} in {REGISTRY}: {e}");
    }
}

fn record_in(dir: &Path, namespace: &str) -> io::Result<()> {
    let me = RunId::current().ok_or_else(|| io::Error::other("no /proc/self/stat"))?;
    fs::create_dir_all(dir)?;
    let mut list = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(me.file_name()))?;
    writeln!(list, "{namespace}")
}

/// Once per process, before its first namespace: deletes what killed runs left (see the
/// module doc), and says so on stderr.
pub fn sweep_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let deleted = sweep_in(Path::new(REGISTRY));
        if !deleted.is_empty() {
            // Straight to stderr, not `eprintln!`: the test harness captures that per test, and
            // whoever runs the suite should see this.
            let _ = writeln!(
                io::stderr(),
                "xsnoop-tests: deleted {} namespace(s) a killed run left behind: {}",
                deleted.len(),
                deleted.join(" ")
            );
        }
    });
}

/// The sweep over the lists in `dir`; returns the namespaces it deleted.
fn sweep_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dead = Vec::new();
    let mut live_names = HashSet::new();
    for entry in entries.flatten() {
        // Anything not named like a list is not ours to read or remove.
        let Some(run) = entry.file_name().to_str().and_then(RunId::parse) else {
            continue;
        };
        let names: Vec<String> = fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if run.alive() {
            live_names.extend(names);
        } else {
            dead.push((entry.path(), names));
        }
    }
    let mut deleted = Vec::new();
    for (list, names) in dead {
        for ns in names {
            let present =
                !ns.is_empty() && !ns.contains('/') && Path::new("/run/netns").join(&ns).exists();
            if !present || live_names.contains(&ns) {
                continue;
            }
            match cmd::ip(&["netns", "del", &ns]) {
                Ok(_) => deleted.push(ns),
                Err(e) => eprintln!("xsnoop-tests: deleting left-behind namespace {ns}: {e}"),
            }
        }
        let _ = fs::remove_file(list);
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{delete_namespaces_with, namespaces_with};

    #[test]
    fn a_run_id_names_its_list_and_reads_back() {
        let me = RunId::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.alive());
        assert_eq!(RunId::parse(&me.file_name()), Some(me));
        assert_eq!(RunId::parse("README"), None);
        assert_eq!(RunId::parse("12-x"), None);
    }

    /// A killed run's namespaces go; a live run's stay, also one both list; a file that is not
    /// a list stays; the dead run's list goes.
    #[test]
    fn a_killed_runs_namespaces_go_and_a_live_runs_stay() {
        if !crate::require_netns("a_killed_runs_namespaces_go_and_a_live_runs_stay") {
            return;
        }
        let base = format!("{}zz-left", crate::topology::process_prefix());
        let dir = std::env::temp_dir().join(format!("{base}-registry"));
        let (gone, shared, kept) = (
            format!("{base}-gone"),
            format!("{base}-shared"),
            format!("{base}-kept"),
        );
        for ns in [&gone, &shared, &kept] {
            cmd::ip(&["netns", "add", ns]).unwrap();
        }
        // A run that is over: a child that was killed.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let dead = RunId::of(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        fs::create_dir_all(&dir).unwrap();
        let dead_list = dir.join(dead.file_name());
        fs::write(&dead_list, format!("{gone}\n{shared}\n{base}-never-made\n")).unwrap();
        record_in(&dir, &shared).unwrap();
        record_in(&dir, &kept).unwrap();
        fs::write(dir.join("README"), "not a list").unwrap();

        let deleted = sweep_in(&dir);
        let left = namespaces_with(&base);
        let dead_list_left = dead_list.exists();
        let other_left = dir.join("README").exists();
        let mine = fs::read_to_string(dir.join(RunId::current().unwrap().file_name()));
        delete_namespaces_with(&base);
        let _ = fs::remove_dir_all(&dir);

        assert_eq!(deleted, vec![gone]);
        assert_eq!(left, vec![kept.clone(), shared.clone()]);
        assert!(!dead_list_left, "the dead run's list stays");
        assert!(other_left, "a file that is not a list was removed");
        assert_eq!(mine.unwrap(), format!("{shared}\n{kept}\n"));
    }
}
