//! Where the forwarding workers run: which CPUs, and at what scheduling class.
//!
//! On a box where the NIC's interrupt/NAPI work and the AF_XDP worker share a CPU at equal
//! priority, the worker is preempted by the very softirq work that fills its RX ring, and the
//! rate collapses (measured here: 0.04–0.1 Mpps instead of 0.5; see the README's
//! troubleshooting). An operator pins the workers to their own CPUs (`worker_cpus`), or gives
//! them a real-time class (`worker_realtime`, SCHED_FIFO priority 1: ahead of every ordinary
//! task, behind kernel threads with real-time priorities). Both are applied by the worker
//! thread to itself at start-up; a refusal is a warning with the fix, not a failure.
//!
//! The control thread (the switch CPU: IGMP engine, querier, kernel map syncs) stays an
//! ordinary task unless `control_realtime` puts it at SCHED_FIFO priority 2, above the workers:
//! a real-time worker that shares its CPU otherwise delays a leave or join by up to a scheduler
//! slice (measured by the bench: fast leave ~300 µs → 0–35 µs with the control thread above the
//! worker). Opt-in, because the control thread's kernel syncs are not policed: a VLAN-wide
//! change at 100 000 groups is ~0.13 s of CPU during which a worker on the same CPU forwards
//! nothing. It is applied with SCHED_RESET_ON_FORK, so no thread it starts inherits the class.

use tracing::{info, warn};

/// Placement of the worker threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// CPUs for the workers: worker `w` runs on `cpus[w % len]`; empty = anywhere.
    pub cpus: Vec<usize>,
    /// Run the workers SCHED_FIFO (needs CAP_SYS_NICE).
    pub realtime: bool,
    /// Run the control thread SCHED_FIFO above the workers (needs CAP_SYS_NICE).
    pub control_realtime: bool,
}

/// The real-time priority the workers take: the lowest, enough to run ahead of normal tasks.
const FIFO_PRIORITY: i32 = 1;

/// The control thread's real-time priority with `control_realtime`: above the workers, so a
/// punted report is handled when it arrives, not when the worker's CPU next falls idle.
const CONTROL_FIFO_PRIORITY: i32 = 2;

impl Placement {
    /// The CPU worker `w` is pinned to, if any.
    pub fn cpu_of(&self, w: usize) -> Option<usize> {
        if self.cpus.is_empty() {
            return None;
        }
        self.cpus.get(w % self.cpus.len()).copied()
    }

    /// Applies the placement of worker `w` to the calling thread.
    pub fn apply(&self, w: usize) {
        if let Some(cpu) = self.cpu_of(w) {
            match pin_current(cpu) {
                Ok(()) => info!(worker = w, cpu, "worker pinned"),
                Err(e) => {
                    warn!(worker = w, cpu, error = %e, "pinning the worker failed; is the CPU online? (worker_cpus)")
                }
            }
        }
        if self.realtime {
            match fifo_current(FIFO_PRIORITY) {
                Ok(()) => info!(worker = w, "worker runs SCHED_FIFO"),
                Err(e) => {
                    warn!(worker = w, error = %e, "real-time scheduling refused: grant CAP_SYS_NICE (systemd: AmbientCapabilities=CAP_SYS_NICE) or set worker_realtime = false")
                }
            }
        }
    }

    /// Applies the control thread's class to the calling thread (`control_realtime`).
    pub fn apply_control(&self) {
        if !self.control_realtime {
            return;
        }
        match fifo_current(CONTROL_FIFO_PRIORITY) {
            Ok(()) => info!(
                priority = CONTROL_FIFO_PRIORITY,
                "control thread runs SCHED_FIFO"
            ),
            Err(e) => {
                warn!(error = %e, "real-time scheduling of the control thread refused: grant CAP_SYS_NICE (systemd: AmbientCapabilities=CAP_SYS_NICE) or set control_realtime = false")
            }
        }
    }
}

fn pin_current(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; `cpu` was checked against CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SCHED_FIFO at `priority` for the calling thread; threads it starts later begin as ordinary
/// tasks (SCHED_RESET_ON_FORK), so a class never spreads to threads that did not ask for it.
fn fifo_current(priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_the_listed_cpus_round_robin() {
        let p = Placement {
            cpus: vec![2, 3],
            ..Placement::default()
        };
        assert_eq!(p.cpu_of(0), Some(2));
        assert_eq!(p.cpu_of(1), Some(3));
        assert_eq!(p.cpu_of(2), Some(2));
        assert_eq!(Placement::default().cpu_of(0), None);
    }

    #[test]
    fn pinning_this_thread_takes_effect() {
        // A scratch thread, so the test harness's thread keeps its mask.
        std::thread::spawn(|| {
            pin_current(0).unwrap();
            // SAFETY: sched_getcpu has no preconditions.
            assert_eq!(unsafe { libc::sched_getcpu() }, 0);
            assert!(pin_current(1 << 20).is_err());
        })
        .join()
        .unwrap();
    }
}
