//! Where the work runs. The machine has 2 vCPUs; the bench gives the switch one and everything
//! else the other, so each switch is measured with the same budget of one CPU:
//!
//! - **switch CPU** ([`SWITCH_CPU`]): the NAPI thread of the sender-facing switch port (veth
//!   NAPI made threaded, so ingress work runs there and not on the sender's CPU) and, for
//!   `xsnoop run`, the whole daemon process;
//! - **host CPU** ([`HOST_CPU`]): the generator thread and the NAPI threads of the receiving
//!   hosts, which count and drop.
//!
//! The machine is shared (other builds and tests run beside the bench), so the switch's and the
//! receivers' threads run at nice [`BENCH_NICE`]: other work then takes little of their CPUs,
//! and the switches are compared on a budget of one CPU rather than on what the neighbours
//! leave. The generator runs at [`GEN_NICE`]: the receivers come first, it takes the rest.

use std::fs;
use std::io;

use xsnoop_tests::Netns;

/// CPU the switch under test runs on.
pub const SWITCH_CPU: usize = 0;
/// CPU the generator and the receiving hosts run on.
pub const HOST_CPU: usize = 1;
/// Nice value of the switch's and the receivers' threads.
pub const BENCH_NICE: i32 = -20;
/// Nice value of the generator thread: ahead of the machine's other work, behind the receivers.
pub const GEN_NICE: i32 = -15;

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
    renice(unsafe { libc::gettid() }, nice)
}

/// Sets task `tid`'s nice value.
pub fn renice(tid: libc::pid_t, nice: i32) -> Result<(), PinError> {
    // SAFETY: setpriority on a thread id; no memory is passed.
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
/// so sysfs shows that namespace), pins its NAPI threads to `cpu` and gives them `nice`.
/// Returns the thread ids.
pub fn threaded_napi_on(
    ns: &Netns,
    iface: &str,
    cpu: usize,
    nice: i32,
) -> Result<Vec<libc::pid_t>, PinError> {
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
        renice(*t, nice)?;
    }
    Ok(threads)
}

/// Threads of process `pid` whose name is `comm`.
pub fn threads_named(pid: libc::pid_t, comm: &str) -> Vec<libc::pid_t> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|tid| {
            fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// Task `tid`'s scheduling policy (`SCHED_*`, without the reset-on-fork flag) and real-time
/// priority: how the bench checks that a daemon applied the classes its config asked for.
pub fn policy(tid: libc::pid_t) -> Result<(i32, i32), PinError> {
    // SAFETY: plain syscall on a task id; no memory is passed.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable sched_param.
    let rc = unsafe { libc::sched_getparam(tid, &mut param) };
    if policy < 0 || rc != 0 {
        return Err(PinError::Os {
            what: format!("sched_getscheduler/sched_getparam(task {tid})"),
            source: io::Error::last_os_error(),
        });
    }
    Ok((policy & !libc::SCHED_RESET_ON_FORK, param.sched_priority))
}

/// Makes task `tid` SCHED_FIFO at `priority` (the kernel's RT throttling still leaves 5% of
/// each second to everything else).
pub fn fifo(tid: libc::pid_t, priority: i32) -> Result<(), PinError> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param; no other memory is passed.
    let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        return Err(PinError::Os {
            what: format!("sched_setscheduler(task {tid}, SCHED_FIFO {priority})"),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}
