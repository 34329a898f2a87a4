//! Where the work runs. The machine has 2 vCPUs; the bench gives the switch one and everything
//! else the other, so each switch is measured with the same budget of one CPU:
//!
//! - **switch CPU** ([`SWITCH_CPU`]): the NAPI thread of the sender-facing switch port (veth
//!   NAPI made threaded, so ingress work runs there and not on the sender's CPU) and, for
//!   `xsnoop run`, the whole daemon process;
//! - **host CPU** ([`HOST_CPU`]): the generator thread (at nice 19, so it only takes what is
//!   left) and the NAPI threads of the receiving hosts, which count and drop in XDP.

use std::fs;
use std::io;

use xsnoop_tests::Netns;

/// CPU the switch under test runs on.
pub const SWITCH_CPU: usize = 0;
/// CPU the generator and the receiving hosts run on.
pub const HOST_CPU: usize = 1;

/// Why a placement step failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// sched_setaffinity / setpriority failed.
    #[error("{what}: {source}")]
    Os {
        /// The call and its target.
        what: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Making an interface's NAPI threaded failed.
    #[error("making NAPI of {iface} threaded: {detail} (the interface needs NAPI: XDP attached or GRO on)")]
    Threaded {
        /// Interface name.
        iface: String,
        /// What the command said.
        detail: String,
    },
    /// No NAPI kthread appeared for the interface.
    #[error("no napi/{0}-* kernel thread found after enabling threaded NAPI")]
    NoNapiThread(String),
    /// An interface name we would not pass to a shell.
    #[error("interface name {0:?} is not plain ASCII alphanumeric")]
    BadName(String),
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; cpu is far below CPU_SETSIZE here.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Pins task `tid` (0 = the calling thread) to `cpu`.
pub fn pin(tid: libc::pid_t, cpu: usize) -> Result<(), PinError> {
    let set = cpu_set(cpu);
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(PinError::Os {
            what: format!("sched_setaffinity(task {tid}, cpu {cpu})"),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Sets the calling thread's nice value (Linux: per thread).
pub fn nice_current_thread(nice: i32) -> Result<(), PinError> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority on our own thread id.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc != 0 {
        return Err(PinError::Os {
            what: format!("setpriority(thread {tid}, {nice})"),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Kernel threads `napi/<iface>-<id>` (full kthread names are in /proc/PID/comm on 6.x).
pub fn napi_threads(iface: &str) -> Vec<libc::pid_t> {
    let prefix = format!("napi/{iface}-");
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(&prefix))
        })
        .collect()
}

/// Makes `iface`'s NAPI threaded (`/sys/class/net/IF/threaded`, written through `ip netns exec`
/// so sysfs shows that namespace) and pins its NAPI threads to `cpu`. Returns the thread ids.
pub fn threaded_napi_on(ns: &Netns, iface: &str, cpu: usize) -> Result<Vec<libc::pid_t>, PinError> {
    if iface.is_empty() || !iface.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(PinError::BadName(iface.to_owned()));
    }
    let script = format!("echo 1 > /sys/class/net/{iface}/threaded");
    xsnoop_tests::cmd::run("ip", &["netns", "exec", ns.name(), "sh", "-c", &script]).map_err(
        |e| PinError::Threaded {
            iface: iface.to_owned(),
            detail: e.to_string(),
        },
    )?;
    let threads = napi_threads(iface);
    if threads.is_empty() {
        return Err(PinError::NoNapiThread(iface.to_owned()));
    }
    for t in &threads {
        pin(*t, cpu)?;
    }
    Ok(threads)
}
