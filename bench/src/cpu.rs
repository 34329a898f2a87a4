//! CPU time from `/proc/stat`, for the bench's *CPU seconds per million packets*: a switch that
//! delivers the same rate on less CPU leaves more for everything else, and a rate alone hides
//! that. The figure is machine-wide busy time (every CPU, every non-idle, non-iowait state,
//! steal included) over the measurement window: it holds the generator and the counting
//! receivers too, which are the same for every switch on a bed, and whatever else runs on the
//! machine, which an idle-bed window (same beds up, no traffic) estimates.

use std::fmt;

/// Why `/proc/stat` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The file could not be read.
    #[error("reading /proc/stat: {0}")]
    Read(#[from] std::io::Error),
    /// A line lacked the fields the kernel has written since 2.6.33.
    #[error("/proc/stat line {0:?} has fewer than 8 time fields")]
    Short(String),
    /// No aggregate `cpu` line, or no line for the asked CPU.
    #[error("/proc/stat has no {0} line")]
    Missing(String),
    /// The clock-tick rate is unknown.
    #[error("sysconf(_SC_CLK_TCK) failed")]
    ClockTicks,
}

/// Busy and total clock ticks of one `/proc/stat` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticks {
    /// user + nice + system + irq + softirq + steal (guest time is already inside user/nice).
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
    /// Time the hypervisor ran something else while this CPU wanted to run (inside `busy`).
    pub steal: u64,
}

impl Ticks {
    /// Parses the numbers after the `cpu`/`cpuN` label of a `/proc/stat` line.
    pub fn parse(line: &str) -> Result<Ticks, CpuError> {
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map_while(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal [guest guest_nice]
        let field = |i: usize| v.get(i).copied();
        let (Some(user), Some(nice), Some(system), Some(idle), Some(iowait)) =
            (field(0), field(1), field(2), field(3), field(4))
        else {
            return Err(CpuError::Short(line.to_owned()));
        };
        let (Some(irq), Some(softirq), Some(steal)) = (field(5), field(6), field(7)) else {
            return Err(CpuError::Short(line.to_owned()));
        };
        let busy = user + nice + system + irq + softirq + steal;
        Ok(Ticks {
            busy,
            total: busy + idle + iowait,
            steal,
        })
    }
}

/// One reading of `/proc/stat`: all CPUs together, and the switch's CPU alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The aggregate `cpu` line.
    pub all: Ticks,
    /// The `cpuN` line of the CPU asked for.
    pub one: Ticks,
}

/// Busy CPU seconds between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Busy {
    /// All CPUs together.
    pub all_s: f64,
    /// The one CPU of the snapshots (the switch's).
    pub one_s: f64,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2} CPU s ({:.2} on the switch CPU)",
            self.all_s, self.one_s
        )
    }
}

/// Parses a whole `/proc/stat` text, taking the aggregate line and CPU `cpu`'s line.
pub fn parse(text: &str, cpu: usize) -> Result<Snapshot, CpuError> {
    let label = format!("cpu{cpu}");
    let line_of = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .ok_or_else(|| CpuError::Missing(name.to_owned()))
    };
    Ok(Snapshot {
        all: Ticks::parse(line_of("cpu")?)?,
        one: Ticks::parse(line_of(&label)?)?,
    })
}

/// Reads `/proc/stat` now.
pub fn snapshot(cpu: usize) -> Result<Snapshot, CpuError> {
    parse(&std::fs::read_to_string("/proc/stat")?, cpu)
}

/// Clock ticks per second of `/proc/stat` (USER_HZ).
fn ticks_per_second() -> Result<f64, CpuError> {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return Err(CpuError::ClockTicks);
    }
    Ok(hz as f64)
}

/// Busy seconds from `before` to `after` (0 for counters that went backwards).
pub fn busy_between(before: Snapshot, after: Snapshot) -> Result<Busy, CpuError> {
    let hz = ticks_per_second()?;
    Ok(Busy {
        all_s: after.all.busy.saturating_sub(before.all.busy) as f64 / hz,
        one_s: after.one.busy.saturating_sub(before.one.busy) as f64 / hz,
    })
}

/// The share of all CPUs' time from `before` to `after` that the hypervisor stole (ran another
/// guest while ours wanted to run); `None` over an empty interval. Rates measured while it is
/// more than a few percent are the host's, not the switches': a whole run lost 22-63% once.
pub fn steal_share(before: Snapshot, after: Snapshot) -> Option<f64> {
    let total = after.all.total.saturating_sub(before.all.total);
    (total > 0).then(|| after.all.steal.saturating_sub(before.all.steal) as f64 / total as f64)
}

/// One task's CPU clock ticks, split as the kernel accounts them: the split tells a userspace
/// switch's own per-frame work (user space) from the kernel work (syscalls, the AF_XDP rings'
/// kicks, NAPI) that it shares with any other AF_XDP program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTicks {
    /// `utime`: ticks the task ran its own code in user space.
    pub user: u64,
    /// `stime`: ticks the kernel ran on the task's behalf (syscalls, softirqs run in it).
    pub system: u64,
}

/// User (utime) and system (stime) clock ticks of one task from its `/proc/<tid>/stat` text; the
/// fields are read after the last `)`, since the command name may hold spaces and parentheses.
pub fn parse_task_ticks(stat: &str) -> Option<TaskTicks> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After the name: state(3) ppid(4) ... utime(14) stime(15); `rest` starts at field 3.
    let mut f = rest.split_whitespace().skip(11);
    let user: u64 = f.next()?.parse().ok()?;
    let system: u64 = f.next()?.parse().ok()?;
    Some(TaskTicks { user, system })
}

/// The threads of process `pid` (empty if it is gone).
pub fn tasks_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU ticks so far (user and system) of each task in `tids` that still exists.
///
/// Read from `/proc/<tid>/task/<tid>/stat`, the thread's own figures: `/proc/<tid>/stat` of a
/// process's main thread holds the whole process's (every thread's) time, which counted
/// xsnoop's worker twice, once as itself and once inside the main thread.
pub fn task_ticks(tids: &[libc::pid_t]) -> Vec<(libc::pid_t, TaskTicks)> {
    tids.iter()
        .filter_map(|&t| {
            let text = std::fs::read_to_string(format!("/proc/{t}/task/{t}/stat")).ok()?;
            Some((t, parse_task_ticks(&text)?))
        })
        .collect()
}

/// CPU seconds a set of threads used, split into user space and kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThreadsBusy {
    /// Seconds in user space (utime): the threads' own code.
    pub user_s: f64,
    /// Seconds in the kernel on the threads' behalf (stime).
    pub system_s: f64,
}

impl ThreadsBusy {
    /// User plus kernel seconds: the threads' whole CPU time.
    pub fn total_s(self) -> f64 {
        self.user_s + self.system_s
    }
}

/// CPU seconds the tasks used between two [`task_ticks`] readings (tasks in both), user space
/// and kernel apart (each 0 for a counter that went backwards).
pub fn tasks_busy_s(
    before: &[(libc::pid_t, TaskTicks)],
    after: &[(libc::pid_t, TaskTicks)],
) -> Result<ThreadsBusy, CpuError> {
    let hz = ticks_per_second()?;
    let (user, system) = after
        .iter()
        .filter_map(|(t, a)| {
            let (_, b) = before.iter().find(|(u, _)| u == t)?;
            Some((
                a.user.saturating_sub(b.user),
                a.system.saturating_sub(b.system),
            ))
        })
        .fold((0u64, 0u64), |(u, s), (du, ds)| (u + du, s + ds));
    Ok(ThreadsBusy {
        user_s: user as f64 / hz,
        system_s: system as f64 / hz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  2001023 323384 555607 833015 5444 0 8712 24673 0 0\n\
                        cpu0 984120 181859 272607 417995 3225 0 3866 12352 0 0\n\
                        cpu1 1016902 141525 283000 415020 2218 0 4845 12320 0 0\n\
                        intr 1 2 3\n";

    #[test]
    fn busy_is_every_state_but_idle_and_iowait() {
        let s = parse(STAT, 1).unwrap();
        assert_eq!(s.all.busy, 2001023 + 323384 + 555607 + 8712 + 24673);
        assert_eq!(s.all.total, s.all.busy + 833015 + 5444);
        assert_eq!(s.one.busy, 1016902 + 141525 + 283000 + 4845 + 12320);
        assert_eq!((s.all.steal, s.one.steal), (24673, 12320));
        assert!(matches!(parse(STAT, 2), Err(CpuError::Missing(l)) if l == "cpu2"));
        assert!(matches!(
            parse("cpu 1 2 3\ncpu0 1 2 3 4 5 6 7 8\n", 0),
            Err(CpuError::Short(_))
        ));
    }

    #[test]
    fn deltas_are_seconds_and_the_live_file_moves_forward() {
        let a = parse(STAT, 0).unwrap();
        let mut b = a;
        b.all.busy += 250;
        b.one.busy += 100;
        let hz = ticks_per_second().unwrap();
        let d = busy_between(a, b).unwrap();
        assert!((d.all_s - 250.0 / hz).abs() < 1e-9);
        assert!((d.one_s - 100.0 / hz).abs() < 1e-9);
        assert_eq!(busy_between(b, a).unwrap(), Busy::default());
        b.all.total += 1000;
        b.all.steal += 250;
        assert_eq!(steal_share(a, b), Some(0.25));
        assert_eq!(steal_share(a, a), None);
        // The real file parses and its counters never go backwards.
        let x = snapshot(0).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let y = snapshot(0).unwrap();
        assert!(y.all.total >= x.all.total && y.all.busy >= x.all.busy);
        assert!(y.all.busy > x.all.busy, "50 ms of spinning is busy time");
    }

    #[test]
    fn task_ticks_are_utime_and_stime_apart_and_count_this_thread() {
        // utime 17, stime 25: swapped or summed would not match.
        let line = "4242 (napi/x (1)-5) S 2 0 0 0 -1 2129984 0 0 0 0 17 25 0 0 0 -20 1 0 99 0 0";
        assert_eq!(
            parse_task_ticks(line),
            Some(TaskTicks {
                user: 17,
                system: 25
            })
        );
        assert_eq!(parse_task_ticks("4242 (oops"), None);
        assert_eq!(
            parse_task_ticks("4242 (short) S 2 0 0 0 -1 0 0 0 0 0 17"),
            None
        );
        // This thread spins 300 ms of CPU in user space: the readings see it, as user time.
        // SAFETY: gettid has no memory effects.
        let me = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
        let pid = std::process::id() as libc::pid_t;
        assert!(tasks_of(pid).contains(&me));
        let a = task_ticks(&[me, -1]);
        assert_eq!(a.len(), 1, "a missing task is skipped");
        spin_cpu(0.3);
        let b = task_ticks(&[me]);
        let used = tasks_busy_s(&a, &b).unwrap();
        let total = used.total_s();
        assert!(total > 0.1 && total < 1.0, "{total} s for 300 ms of CPU");
        assert!(
            used.user_s > 0.05,
            "a user-space spin shows as user time: {used:?}"
        );
        assert!((used.user_s + used.system_s - total).abs() < 1e-12);
    }

    #[test]
    fn busy_seconds_keep_user_and_system_apart() {
        let t = |user, system| TaskTicks { user, system };
        let hz = ticks_per_second().unwrap();
        let a = [(1, t(10, 100)), (2, t(5, 5))];
        // Task 3 is new (not in `a`): not counted; task 2's counters went backwards: 0.
        let b = [(1, t(30, 160)), (2, t(4, 4)), (3, t(1000, 1000))];
        let d = tasks_busy_s(&a, &b).unwrap();
        assert!((d.user_s - 20.0 / hz).abs() < 1e-9, "{d:?}");
        assert!((d.system_s - 60.0 / hz).abs() < 1e-9, "{d:?}");
        assert!((d.total_s() - 80.0 / hz).abs() < 1e-9, "{d:?}");
    }

    /// Spins the calling thread until it has used `secs` of CPU (its own clock, so a loaded
    /// machine only makes it take longer).
    fn spin_cpu(secs: f64) {
        let thread_cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes one timespec we own.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
        };
        // CLOCK_THREAD_CPUTIME_ID is a real syscall (never the vDSO): reading it in a tight
        // loop spends the spin in the kernel, and the tick-sampled utime/stime split then says
        // "system" (seen in CI: 0.05 s user, 0.24 s system). So ~1 ms of arithmetic per read.
        let start = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - start < secs {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        std::hint::black_box(x);
    }

    #[test]
    fn a_main_thread_counts_only_its_own_time_not_its_process() {
        // The process's main thread (libtest's, or this one) waits while another thread
        // spins: the main thread's ticks must not grow with the spinner's.
        let pid = std::process::id() as libc::pid_t;
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        // The spinner reports its tid, spins when told, reports, and lives until told again
        // (a thread that is gone has no figures to read).
        let spinner = std::thread::spawn(move || {
            // SAFETY: gettid has no memory effects.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
            tx.send(tid).unwrap();
            go_rx.recv().unwrap();
            spin_cpu(0.3);
            tx.send(tid).unwrap();
            go_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        let a = task_ticks(&[pid, tid]);
        go_tx.send(()).unwrap();
        rx.recv().unwrap();
        let b = task_ticks(&[pid, tid]);
        go_tx.send(()).unwrap();
        spinner.join().unwrap();
        let of = |t: libc::pid_t, v: &[(libc::pid_t, TaskTicks)]| {
            let one: Vec<_> = v.iter().filter(|(u, _)| *u == t).copied().collect();
            one
        };
        let spun = tasks_busy_s(&of(tid, &a), &of(tid, &b)).unwrap().total_s();
        let main = tasks_busy_s(&of(pid, &a), &of(pid, &b)).unwrap().total_s();
        assert!(spun > 0.1, "the spinner used {spun} s");
        assert!(
            main < 0.1,
            "the main thread is charged {main} s while another thread spun {spun} s"
        );
    }
}
