//! Namespaces and daemons left behind by a killed run, and their removal by the next run.
//!
//! A testbed deletes its namespaces and stops its daemons in `Drop`, which never runs when the
//! process is killed (Ctrl-C on `cargo test`, a timeout). So every process lists each namespace
//! it creates and each daemon it starts in `/run/xsnoop-tests/PID-START` (pid and start time: a
//! reused pid is another process), and before a process creates its first namespace it sweeps
//! the lists of runs that are no longer alive: their daemons still running are stopped
//! (SIGTERM, SIGKILL after 2 s), their namespaces still present and listed by no live run are
//! deleted, then the list. Only what this testbed created is ever touched. `/run` is a tmpfs,
//! like `/run/netns`, so both start empty at boot.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use crate::cmd;
use crate::process::{stop, RunId};

/// Where the runs' lists live.
pub const REGISTRY: &str = "/run/xsnoop-tests";

/// How a list line naming a process begins (namespace lines are bare names).
const PROCESS: &str = "process ";

/// How long a left-behind daemon gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Adds `namespace` to this process's list. Best effort: a failure only means a kill would leave
/// the namespace behind, so it is reported, never fatal.
pub fn record(namespace: &str) {
    if let Err(e) = record_in(Path::new(REGISTRY), namespace) {
        eprintln!("xsnoop-tests: listing namespace {namespace} in {REGISTRY}: {e}");
    }
}

/// Adds process `pid` (a daemon this process started and stops on drop) to this process's
/// list, so that a later run stops it if this one is killed first. Best effort, like
/// [`record`].
pub fn record_process(pid: u32) {
    let listed = RunId::of(pid)
        .ok_or_else(|| io::Error::other("no such process"))
        .and_then(|p| record_in(Path::new(REGISTRY), &format!("{PROCESS}{}", p.file_name())));
    if let Err(e) = listed {
        eprintln!("xsnoop-tests: listing process {pid} in {REGISTRY}: {e}");
    }
}

fn record_in(dir: &Path, line: &str) -> io::Result<()> {
    let me = RunId::current().ok_or_else(|| io::Error::other("no /proc/self/stat"))?;
    fs::create_dir_all(dir)?;
    let mut list = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(me.file_name()))?;
    writeln!(list, "{line}")
}

/// Once per process, before its first namespace: deletes what killed runs left (see the
/// module doc), and says so on stderr.
pub fn sweep_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let swept = sweep_in(Path::new(REGISTRY));
        // Straight to stderr, not `eprintln!`: the test harness captures that per test, and
        // whoever runs the suite should see this.
        if !swept.stopped.is_empty() {
            let _ = writeln!(
                io::stderr(),
                "xsnoop-tests: stopped {} daemon(s) a killed run left behind: pids {:?}",
                swept.stopped.len(),
                swept.stopped
            );
        }
        if !swept.deleted.is_empty() {
            let _ = writeln!(
                io::stderr(),
                "xsnoop-tests: deleted {} namespace(s) a killed run left behind: {}",
                swept.deleted.len(),
                swept.deleted.join(" ")
            );
        }
    });
}

/// What a sweep removed.
#[derive(Debug, Default)]
struct Swept {
    /// Processes stopped (pids).
    stopped: Vec<u32>,
    /// Namespaces deleted.
    deleted: Vec<String>,
}

/// The sweep over the lists in `dir`.
fn sweep_in(dir: &Path) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = fs::read_dir(dir) else {
        return swept;
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
    // The daemons first: they run inside the namespaces.
    let daemons: Vec<RunId> = dead
        .iter()
        .flat_map(|(_, lines)| lines.iter())
        .filter_map(|l| l.strip_prefix(PROCESS).and_then(RunId::parse))
        .filter(|p| p.alive())
        .collect();
    stop(&daemons, STOP_GRACE);
    swept.stopped = daemons.iter().map(|p| p.pid).collect();
    for (list, names) in dead {
        for ns in names.into_iter().filter(|l| !l.starts_with(PROCESS)) {
            let present =
                !ns.is_empty() && !ns.contains('/') && Path::new("/run/netns").join(&ns).exists();
            if !present || live_names.contains(&ns) {
                continue;
            }
            match cmd::ip(&["netns", "del", &ns]) {
                Ok(_) => swept.deleted.push(ns),
                Err(e) => eprintln!("xsnoop-tests: deleting left-behind namespace {ns}: {e}"),
            }
        }
        let _ = fs::remove_file(list);
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{delete_namespaces_with, namespaces_with};

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

    /// A killed run's namespaces go and its daemons are stopped; a live run's stay, also a
    /// namespace both list; a file that is not a list stays; the dead run's list goes.
    #[test]
    fn a_killed_runs_namespaces_and_daemons_go_and_a_live_runs_stay() {
        if !crate::require_netns("a_killed_runs_namespaces_and_daemons_go_and_a_live_runs_stay") {
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
        // A run that is over: a child that was killed. Its daemon, and this run's.
        let mut over = sleeper();
        let dead = RunId::of(over.id()).unwrap();
        over.kill().unwrap();
        over.wait().unwrap();
        let (mut orphan, mut ours) = (sleeper(), sleeper());
        let orphan_id = RunId::of(orphan.id()).unwrap();
        fs::create_dir_all(&dir).unwrap();
        let dead_list = dir.join(dead.file_name());
        fs::write(
            &dead_list,
            format!(
                "{gone}\n{PROCESS}{}\n{shared}\n{base}-never-made\n",
                orphan_id.file_name()
            ),
        )
        .unwrap();
        record_in(&dir, &shared).unwrap();
        record_in(&dir, &kept).unwrap();
        let ours_line = format!("{PROCESS}{}", RunId::of(ours.id()).unwrap().file_name());
        record_in(&dir, &ours_line).unwrap();
        fs::write(dir.join("README"), "not a list").unwrap();

        let swept = sweep_in(&dir);
        let left = namespaces_with(&base);
        let orphan_exit = orphan.try_wait().unwrap();
        let ours_exit = ours.try_wait().unwrap();
        let dead_list_left = dead_list.exists();
        let other_left = dir.join("README").exists();
        let mine = fs::read_to_string(dir.join(RunId::current().unwrap().file_name()));
        delete_namespaces_with(&base);
        let _ = fs::remove_dir_all(&dir);
        let _ = orphan.kill();
        let _ = orphan.wait();
        let _ = ours.kill();
        let _ = ours.wait();

        assert_eq!(swept.deleted, vec![gone]);
        assert_eq!(swept.stopped, vec![orphan_id.pid]);
        assert!(orphan_exit.is_some(), "the dead run's daemon still runs");
        assert!(ours_exit.is_none(), "a live run's daemon was stopped");
        assert_eq!(left, vec![kept.clone(), shared.clone()]);
        assert!(!dead_list_left, "the dead run's list stays");
        assert!(other_left, "a file that is not a list was removed");
        assert_eq!(mine.unwrap(), format!("{shared}\n{kept}\n{ours_line}\n"));
    }
}
