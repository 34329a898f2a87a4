//! One network namespace, created by the testbed and deleted by it (RAII), and the way into it.
//!
//! Code enters a namespace without helper processes: [`Netns::run`] runs a closure on a fresh
//! thread that first calls `setns(/run/netns/NAME, CLONE_NEWNET)`. Sockets created there stay in
//! that namespace for their whole life, so they can be returned and used from any thread.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::error::{Result, TestbedError};

/// A named network namespace (`/run/netns/NAME`) that this process created; dropping it deletes
/// exactly that namespace and nothing else. If the process is killed instead, the next process
/// to create a namespace deletes it ([`crate::leftovers`]).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Set once the process shuts down ([`close_creation`]): no namespace is created after it.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Namespaces being created right now (between the check of [`CLOSED`] and `ip netns add`'s end).
static CREATING: AtomicUsize = AtomicUsize::new(0);

/// Counts one creation in progress for as long as it lives.
struct Creating;

impl Creating {
    /// Enters a creation, unless the process is closed to them.
    fn enter() -> Result<Creating> {
        // SeqCst on both sides: either [`close_creation`] sees this creation in progress, or
        // this creation sees the process closed.
        CREATING.fetch_add(1, Ordering::SeqCst);
        let guard = Creating;
        if CLOSED.load(Ordering::SeqCst) {
            return Err(TestbedError::Closed);
        }
        Ok(guard)
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        CREATING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes every later [`Netns::create`] of this process fail, and waits up to `timeout` for the
/// creations in progress to finish; returns whether they did. After it, the namespaces named
/// with this process's prefix are all it will ever have: what an interrupted run's cleanup needs
/// before it deletes them (the bench's signal thread; its main thread may be building a bed).
pub fn close_creation(timeout: Duration) -> bool {
    CLOSED.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    while CREATING.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

impl Netns {
    /// Creates namespace `name` with `ip netns add` and brings its loopback up. Fails if the name
    /// exists: the testbed never adopts (and so never deletes) something it did not create.
    /// Fails with [`TestbedError::Closed`] once [`close_creation`] was called.
    pub fn create(name: &str) -> Result<Netns> {
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            return Err(TestbedError::BadName(format!("namespace name {name:?}")));
        }
        let _creating = Creating::enter()?;
        // What a killed earlier run left goes first; what this one makes is listed, so a
        // later run can do the same for it (see `leftovers`). Listed before it exists: a kill
        // while `ip netns add` runs still leaves the namespace, made by the orphaned `ip`.
        crate::leftovers::sweep_once();
        crate::leftovers::record(name);
        cmd::ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        cmd::ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip -n NAME` expects it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` inside this namespace on a fresh thread and returns its result. A panic in `f` is
    /// re-raised in the caller, so assertions inside the closure fail the test normally.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let fd = self.open_fd()?;
        std::thread::scope(|s| {
            let handle = s.spawn(move || -> Result<T> {
                // SAFETY: `fd` is an open namespace file descriptor owned by this closure; setns
                // only changes the network namespace of the calling (fresh, scoped) thread.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(TestbedError::last_os("setns(CLONE_NEWNET)"));
                }
                drop(fd);
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs `ip -n NAME args...` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        cmd::ip(&full)
    }

    /// Writes `value` to `/proc/sys/<key with dots as slashes>` inside this namespace, e.g.
    /// `sysctl("net.ipv4.conf.h0.force_igmp_version", "2")`. Done from an in-namespace thread, so
    /// the per-namespace `net.*` tree is the namespace's own.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        if key.contains("..") || key.contains('/') {
            return Err(TestbedError::BadName(format!("sysctl key {key:?}")));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(|| fs::write(&path, value))?
            .map_err(|e| TestbedError::io(format!("write {value:?} to {path}"), e))
    }

    /// Reads `/proc/sys/<key>` inside this namespace (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(|| fs::read_to_string(&path))?
            .map(|s| s.trim().to_owned())
            .map_err(|e| TestbedError::io(format!("read {path}"), e))
    }

    fn open_fd(&self) -> Result<OwnedFd> {
        let path = format!("/run/netns/{}", self.name);
        let c = CString::new(path.clone())
            .map_err(|_| TestbedError::BadName(format!("namespace path {path:?}")))?;
        // SAFETY: `c` is a valid NUL-terminated path; the returned fd is checked before use.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(TestbedError::last_os(format!("open {path}")));
        }
        // SAFETY: `fd` was just returned by open() and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The named namespaces (`/run/netns`, what `ip netns list` reads) whose name starts with
/// `prefix`: how a process cleaning up without its [`Netns`] values (an interrupted run, whose
/// `Drop` never ran) finds exactly its own, by [`crate::topology::process_prefix`].
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Deletes every named namespace whose name starts with `prefix` (and so the interfaces inside
/// it); returns how many are still there. The cleanup of a process whose [`Netns`] values are
/// lost; everyone else lets `Drop` delete exactly what it created.
pub fn delete_namespaces_with(prefix: &str) -> usize {
    for ns in namespaces_with(prefix) {
        if let Err(e) = cmd::ip(&["netns", "del", &ns]) {
            eprintln!("xsnoop-tests: cleanup of namespace {ns}: {e}");
        }
    }
    namespaces_with(prefix).len()
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys the interfaces still inside it (a veth pair goes with
        // either end). Errors are reported but cannot be propagated from Drop.
        if let Err(e) = cmd::ip(&["netns", "del", &self.name]) {
            eprintln!("xsnoop-tests: cleanup of namespace {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_prefixed_namespaces_are_deleted() {
        if !crate::require_netns("only_the_prefixed_namespaces_are_deleted") {
            return;
        }
        let mine = format!("{}zz-cleanup", crate::topology::process_prefix());
        let other = format!("{mine}-other");
        let keep = format!("y{}", mine.get(1..).unwrap());
        for ns in [&mine, &other, &keep] {
            cmd::ip(&["netns", "add", ns]).unwrap();
        }
        let left = delete_namespaces_with(&mine);
        let still = namespaces_with("");
        let _ = cmd::ip(&["netns", "del", &keep]);
        assert_eq!(left, 0);
        assert!(
            !still.contains(&mine) && !still.contains(&other),
            "{still:?}"
        );
        assert!(
            still.contains(&keep),
            "a namespace without the prefix was deleted: {still:?}"
        );
    }
}
