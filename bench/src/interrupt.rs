//! Ctrl-C or SIGTERM in the middle of a run: the test beds go away as they would at a normal end.
//!
//! A bench run holds dozens of network namespaces, veth pairs, `xsnoop run` daemons and AF_XDP
//! forwarders for up to 20 minutes; their `Drop` code removes them, but `Drop` does not run when
//! a signal ends the process. Before this existed, one SIGTERM a minute into a run left every
//! bed's namespaces and four forwarders running. So the signals are taken by one thread, which
//! stops this process's children (the switches it started), deletes the namespaces whose names
//! carry this process's prefix (every name the testbed creates does:
//! `xsnoop_tests::topology::process_prefix`), and exits with 128 + the signal number, as a
//! shell expects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, Result};
use xsnoop_tests::netns::{close_creation, delete_namespaces_with};
use xsnoop_tests::process::{stop, RunId};

/// Set by the signal thread before it starts removing the beds: from then on the rest of the
/// bench is measuring on beds that are going away, so it must neither write results nor exit
/// with an error of its own before the cleanup is done.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long the switches get to exit on SIGTERM (an xsnoop daemon detaches its XDP programs and
/// closes its sockets) before they are killed.
const CHILD_GRACE: Duration = Duration::from_secs(2);

/// Blocks SIGINT and SIGTERM in the calling thread and starts the thread that waits for them.
/// Call before any other thread starts: threads inherit the mask, so only that one thread ever
/// receives the signals. (Children start with an empty mask: `std::process::Command` resets it.)
pub fn install() -> Result<()> {
    let set = signal_set()?;
    // SAFETY: `set` is an initialised sigset_t; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(anyhow!(
            "blocking SIGINT/SIGTERM: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` and `sig` are valid for the call; the signals are blocked in every
            // thread, so sigwait is the only one that takes them.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("bench: signal {sig}: stopping the switches and removing the test beds");
            let left = clean_up(&xsnoop_tests::topology::process_prefix());
            if left > 0 {
                eprintln!("bench: {left} namespace(s) could not be deleted (`ip netns list`)");
            }
            std::process::exit(128 + sig);
        })?;
    Ok(())
}

/// Blocks the calling thread for good once a signal arrived, so that the signal thread ends the
/// process (with its status) after the cleanup: called before results are written and before
/// `main` returns. Seen without it: the main thread's generator failed on a deleted namespace
/// and `main` returned status 1 while the namespaces were still being removed.
pub fn hold_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::park();
    }
}

fn signal_set() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
    let ok = unsafe {
        libc::sigemptyset(&mut set) == 0
            && libc::sigaddset(&mut set, libc::SIGINT) == 0
            && libc::sigaddset(&mut set, libc::SIGTERM) == 0
    };
    if ok {
        Ok(set)
    } else {
        Err(anyhow!("building the signal set failed"))
    }
}

/// Stops this process's children (SIGTERM, then SIGKILL after [`CHILD_GRACE`]) and deletes
/// every network namespace whose name starts with `prefix`. Returns how many namespaces are
/// still there afterwards.
pub fn clean_up(prefix: &str) -> usize {
    // The main thread may be building a bed: no namespace may appear after the deletion.
    if !close_creation(CHILD_GRACE) {
        eprintln!("bench: a namespace was still being created after {CHILD_GRACE:?}");
    }
    stop_children();
    delete_namespaces_with(prefix)
}

/// SIGTERM to every child of this process, SIGKILL to those still running after
/// [`CHILD_GRACE`].
fn stop_children() {
    let children: Vec<RunId> = children_of(std::process::id())
        .into_iter()
        .filter_map(|c| RunId::of(u32::try_from(c).ok()?))
        .collect();
    stop(&children, CHILD_GRACE);
}

/// Processes whose parent is `pid` (from `/proc/<pid>/task/*/children`).
fn children_of(pid: u32) -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<libc::pid_t>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn children_are_found_and_stopped() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        assert!(children_of(std::process::id()).contains(&pid));
        let id = RunId::of(child.id()).unwrap();
        assert!(id.alive());
        stop(&[id], CHILD_GRACE);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(!id.alive());
    }
}
