//! `make bench`: what a user choosing a switch needs, measured in one run on one testbed.
//!
//! 1. Control-plane and table-lookup rates ([`control`]).
//! 2. Packet rates: `xsnoop run` against the Linux bridge with IGMP snooping, against an AF_XDP
//!    copy-mode forwarder in C (the baseline of the afxdp mode, [`cfwd`]) and against the XDP
//!    ceiling (in-kernel devmap broadcast), 1 sender → N members + 1 non-member, each figure the
//!    median of several runs with min and max, leakage to the non-member counted ([`bed`]).
//!
//! The tables go to stdout and to `bench/results/latest.md`; every run goes to `latest.csv`, and
//! the multicast fan-out curves to `multicast-<size>B.svg`. A partial run (`--only X`) writes
//! the same files named `<name>-X.<ext>` ([`out_name`]) and leaves the full run's alone.
//! Packet rates need root (namespaces, XDP); without it they are skipped with the reason and the
//! exit status says so.

mod bed;
mod bpf;
mod cfwd;
mod control;
mod cpu;
mod daemon;
mod flood;
mod interrupt;
mod latency;
mod livegen;
mod memory;
mod perf;
mod pin;
mod plot;
mod report;
mod scale;
mod stats;
mod tstamp;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, ValueEnum};

use bed::{Bed, Delivery, SwitchKind, GROUP};
use flood::FloodPlan;
use report::{Measured, Traffic};

/// Which benchmarks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Control plane, packet rates, latency, then memory.
    All,
    /// Control-plane rates only (no root needed).
    Control,
    /// Packet rates only.
    Packet,
    /// Latency only (join, fast leave, per frame; xsnoop, the bridge and the ceiling (per frame
    /// only), one-member beds).
    Latency,
    /// Resident memory of `xsnoop run` per learned group only.
    Memory,
}

impl Only {
    fn rates(self) -> bool {
        matches!(self, Only::All | Only::Packet)
    }
    fn latency(self) -> bool {
        matches!(self, Only::All | Only::Latency)
    }
    fn memory(self) -> bool {
        matches!(self, Only::All | Only::Memory)
    }
}

/// How xsnoop's worker thread is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum WorkerSched {
    /// SCHED_FIFO priority 1.
    Fifo,
    /// SCHED_OTHER at the daemon's nice.
    Nice,
}

/// xsnoop benchmarks: control-plane rates, and packet rates of xsnoop run vs the Linux bridge vs
/// the XDP ceiling on a veth testbed (root).
#[derive(Parser, Debug)]
#[command(name = "xsnoop-bench")]
struct Cli {
    /// Which benchmarks to run.
    #[arg(long, value_enum, default_value_t = Only::All)]
    only: Only,
    /// Runs per packet-rate figure (the median, min and max are reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Length of one packet-rate run, seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Member counts (fan-out) to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4, 8])]
    members: Vec<usize>,
    /// Frame lengths on the wire, FCS included (64 = minimum; 1518 = a 1500 B IP packet).
    #[arg(long, value_delimiter = ',', default_values_t = [64, 1518])]
    sizes: Vec<usize>,
    /// Also measure unicast 64 B between two ports (on the one-member beds).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    unicast: bool,
    /// Also measure broadcast 64 B from one port to every other port (on the one-member beds).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    broadcast: bool,
    /// IGMPv3 reports per second (random groups) flooded from one extra port while 64 B
    /// multicast is measured again; 0 skips the flood benchmark.
    #[arg(long, default_value_t = 100_000)]
    flood_rate: u32,
    /// Fan-out of the beds the flood benchmark runs on.
    #[arg(long, default_value_t = 4)]
    flood_members: usize,
    /// Run the table-scale benchmark (on beds of its own with the smallest fan-out: xsnoop's
    /// modes and the bridge).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scale: bool,
    /// Table sizes (groups installed) of the table-scale benchmark.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 1_000, 100_000])]
    scale_groups: Vec<usize>,
    /// Switches to measure (ratios need xsnoop with the bridge, the ceiling or the C forwarder;
    /// afxdp-c needs `make bench-fwd` and is skipped, with a note, when its binary is missing).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = SwitchKind::ALL)]
    switches: Vec<SwitchKind>,
    /// Where the receiving hosts count and drop: tc ingress (no copy for the skbs the bridge and
    /// AF_XDP copy mode send), XDP (a veth copies each skb for it), or auto (the cheaper one for
    /// each switch).
    #[arg(long, value_enum, default_value_t = ReceiverArg::Auto)]
    receiver: ReceiverArg,
    /// Nice value of the xsnoop bed's ingress NAPI thread, which shares the switch CPU with
    /// the daemon (the bridge's and the ceiling's run at -20).
    #[arg(long, default_value_t = pin::BENCH_NICE, allow_hyphen_values = true)]
    xsnoop_ingress_nice: i32,
    /// Scheduling of xsnoop's AF_XDP worker thread (`xsnoop-asic`): `fifo` = SCHED_FIFO 1
    /// (`worker_realtime = true` in its config), as a dataplane thread is deployed; `nice` = nice -20 like the rest of the daemon, where the
    /// ingress NAPI thread on the same CPU starves it (receive livelock: the fill ring runs dry).
    #[arg(long, value_enum, default_value_t = WorkerSched::Fifo)]
    xsnoop_worker: WorkerSched,
    /// Scheduling of xsnoop's control thread (the main thread: engine, kernel sync): `fifo` =
    /// SCHED_FIFO 2 (`control_realtime = true`), above the worker (its work is bounded by the punt policer); `nice` = the
    /// daemon's nice, sharing the switch CPU with the ingress NAPI thread and below a FIFO
    /// worker (fast leave then took ~300 us instead of ~0-50).
    #[arg(long, value_enum, default_value_t = WorkerSched::Fifo)]
    xsnoop_control: WorkerSched,
    /// Runs of the latency benchmark per switch.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    latency_runs: u32,
    /// Probe rate of the latency stream, frames per second.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..=200_000))]
    latency_rate: u32,
    /// Group counts at which `xsnoop run`'s resident memory is measured.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1_000, 10_000, 100_000])]
    memory_groups: Vec<usize>,
    /// Record a `perf record -g` profile of xsnoop's worker thread(s) into this file during
    /// its first run at the largest fan-out and the first frame size (needs `perf`).
    #[arg(long)]
    perf_record: Option<PathBuf>,
    /// Print xsnoop's dataplane counters after each of its runs (to stderr).
    #[arg(long)]
    verbose: bool,
    /// Where latest.md and latest.csv are written.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// Why a switch asked for is not measured (the C forwarder not built), for the setup notes.
    #[arg(skip)]
    skipped: Option<String>,
}

/// Drops the C forwarder from `cli.switches` when its binary is missing (`cargo run` without
/// `make bench-fwd`), saying so once: the other switches are still worth measuring.
fn skip_missing_forwarder(cli: &mut Cli) {
    if !cli.switches.contains(&SwitchKind::AfxdpC) {
        return;
    }
    if let Err(e) = cfwd::locate() {
        eprintln!("bench: skipping the {}: {e}", SwitchKind::AfxdpC.label());
        cli.switches.retain(|k| *k != SwitchKind::AfxdpC);
        cli.skipped = Some(format!(
            "the {} was not measured: {e}.",
            SwitchKind::AfxdpC.label()
        ));
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Now as `YYYY-MM-DD HH:MM UTC` (days-from-civil inverted; no date crate for one line).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60
    )
}

/// The commit the bench was built from, `+dirty` when the tree had changes (or `?`).
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{head}{}", if dirty { "+dirty" } else { "" })
        }
        None => "?".to_owned(),
    }
}

fn cpu_model() -> String {
    read_trim("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

/// Where the receivers count, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReceiverArg {
    /// The cheaper one for what the switch sends: XDP for the ceiling and xsnoop's xdp mode
    /// (they transmit XDP frames, and a veth drops a redirected frame unless its peer has XDP
    /// or GRO), tc for the switches that transmit skbs (a veth would copy each for XDP).
    Auto,
    /// tc ingress everywhere.
    Tc,
    /// XDP everywhere.
    Xdp,
}

impl ReceiverArg {
    fn for_switch(self, kind: SwitchKind) -> bpf::Receiver {
        match (self, kind) {
            (ReceiverArg::Auto, SwitchKind::Ceiling | SwitchKind::XsnoopXdp)
            | (ReceiverArg::Xdp, _) => bpf::Receiver::Xdp,
            (ReceiverArg::Auto, _) | (ReceiverArg::Tc, _) => bpf::Receiver::Tc,
        }
    }
}

/// Packet-rate benchmarks. Every bed (each switch at each fan-out) is built first and stays up;
/// then each round measures every bed once, so drifting background load hits all of them alike
/// and both the ratios and the fan-out curves stay comparable.
/// What the packet benchmarks measured: rates, and latency on the one-member beds.
struct PacketResults {
    rates: Vec<Measured>,
    latency: Vec<latency::LatencySeries>,
    scale: Vec<scale::ScaleSeries>,
}

/// How the bed of switch `kind` is built and placed, as the command line says.
fn bed_options(cli: &Cli, kind: SwitchKind, max_groups: Option<usize>) -> bed::BedOptions {
    bed::BedOptions {
        receiver: cli.receiver.for_switch(kind),
        xsnoop_ingress_nice: cli.xsnoop_ingress_nice,
        xsnoop_worker_fifo: cli.xsnoop_worker == WorkerSched::Fifo,
        xsnoop_control_fifo: cli.xsnoop_control == WorkerSched::Fifo,
        max_groups,
    }
}

fn packet_benches(cli: &Cli, log: &mut String) -> Result<PacketResults> {
    if let Err(why) = xsnoop_tests::privilege::netns_available() {
        bail!("network namespaces unavailable ({why}); run `make bench` as root");
    }
    let duration = Duration::from_secs_f64(cli.seconds.clamp(0.1, 60.0));
    // Latency alone needs only the smallest fan-out of xsnoop and the bridge.
    let (members, switches): (Vec<usize>, Vec<SwitchKind>) = if cli.only.rates() {
        (cli.members.clone(), cli.switches.clone())
    } else {
        let least = cli.members.iter().copied().min().unwrap_or(1);
        (vec![least], cli.switches.clone())
    };
    let mut beds = Vec::new();
    for (ni, &n) in members.iter().enumerate() {
        for (si, &kind) in switches.iter().enumerate() {
            let net = u8::try_from(100 + ni * 8 + si).unwrap_or(250);
            let t = Instant::now();
            let bed = Bed::new(kind, n, net, &bed_options(cli, kind, None))
                .with_context(|| format!("setting up {} with {n} members", kind.label()))?;
            let settled = bed.settle(Duration::from_secs(30))?;
            eprintln!(
                "bench: {} with {n} members ready in {:.1} s (pruning seen after {:.1} s of probing)",
                kind.label(),
                t.elapsed().as_secs_f64(),
                settled.as_secs_f64()
            );
            if ni == 0 {
                for (iface, threads, cpu, nice) in &bed.napi {
                    let _ = writeln!(
                        log,
                        "- {} bed, NAPI of {iface}: threads {threads:?} on CPU {cpu}, nice {nice}",
                        kind.label()
                    );
                }
            }
            beds.push(bed);
        }
    }
    let mut all = Vec::new();
    let sizes: &[usize] = if cli.only.rates() { &cli.sizes } else { &[] };
    for &len in sizes {
        let frame = livegen::test_frame(len, std::net::Ipv4Addr::new(10, 0, 0, 1), GROUP)?;
        let mut jobs: Vec<Job> = beds
            .iter()
            .map(|b| Job::new(b, frame.clone(), Traffic::Multicast, len, Delivery::Members))
            .collect();
        // The profile: xsnoop's AF_XDP worker during its first run at the largest fan-out and
        // the first size.
        let profile = cli
            .perf_record
            .as_deref()
            .filter(|_| Some(&len) == sizes.first())
            .and_then(|path| {
                let largest = members.iter().max()?;
                let at = jobs.iter().position(|j| {
                    j.bed.kind == SwitchKind::XsnoopAfxdp && j.bed.members == *largest
                })?;
                Some((path, at))
            });
        run_rounds(cli, &mut jobs, duration, profile)?;
        all.extend(jobs.into_iter().map(|j| j.measured));
    }
    if cli.only.rates() && (cli.unicast || cli.broadcast) {
        all.extend(l2_benches(cli, &beds, duration)?);
    }
    let mut lat = Vec::new();
    if cli.only.latency() {
        // The smallest fan-out's beds: the member host 2 gets the per-frame stream, the
        // non-member host joins and leaves. The ceiling (no control plane: no join or leave
        // figure) shows what the in-kernel devmap path itself costs per frame.
        let least = beds.iter().map(|b| b.members).min().unwrap_or(1);
        let chosen: Vec<&Bed> = [
            SwitchKind::XsnoopAfxdp,
            SwitchKind::XsnoopXdp,
            SwitchKind::AfxdpC,
            SwitchKind::Bridge,
            SwitchKind::Ceiling,
        ]
        .iter()
        .filter_map(|k| beds.iter().find(|b| b.kind == *k && b.members == least))
        .collect();
        let plan = latency::StreamPlan {
            rate_pps: cli.latency_rate,
            ..latency::StreamPlan::default()
        };
        lat = latency::measure(&chosen, cli.latency_runs, plan, cli.verbose)?;
    }
    // Last: a flood leaves thousands of groups behind (and may turn the bridge's snooping off).
    if cli.only.rates() && cli.flood_rate > 0 {
        all.extend(flood_benches(cli, &beds, duration)?);
    }
    let mut scaled = Vec::new();
    if cli.only.rates() && cli.scale && !cli.scale_groups.is_empty() {
        drop(beds);
        scaled = scale_benches(cli, &members, &switches, duration)?;
    }
    Ok(PacketResults {
        rates: all,
        latency: lat,
        scale: scaled,
    })
}

/// The table-scale benchmark on beds of its own (smallest fan-out, room for the groups).
fn scale_benches(
    cli: &Cli,
    members: &[usize],
    switches: &[SwitchKind],
    duration: Duration,
) -> Result<Vec<scale::ScaleSeries>> {
    let least = members.iter().copied().min().unwrap_or(1);
    let mut steps = cli.scale_groups.clone();
    steps.sort_unstable();
    steps.dedup();
    let biggest = steps.last().copied().unwrap_or(1);
    let mut beds = Vec::new();
    // The ceiling and the C forwarder replicate statically: no table to scale.
    for (si, &kind) in switches
        .iter()
        .filter(|k| !matches!(k, SwitchKind::Ceiling | SwitchKind::AfxdpC))
        .enumerate()
    {
        let net = u8::try_from(200 + si).unwrap_or(250);
        let bed = Bed::new(
            kind,
            least,
            net,
            &bed_options(cli, kind, Some(biggest + 1_000)),
        )
        .with_context(|| format!("setting up {} for the table-scale benchmark", kind.label()))?;
        bed.settle(Duration::from_secs(30))?;
        beds.push(bed);
    }
    let refs: Vec<&Bed> = beds.iter().collect();
    scale::measure(&refs, &steps, cli.runs, duration, &idle_window)
}

/// One series being measured: a bed, the frame it is sent, and the runs so far.
struct Job<'a> {
    bed: &'a Bed,
    frame: Vec<u8>,
    delivery: Delivery,
    flood: Option<FloodPlan>,
    measured: Measured,
}

impl<'a> Job<'a> {
    fn new(
        bed: &'a Bed,
        frame: Vec<u8>,
        traffic: Traffic,
        wire_len: usize,
        delivery: Delivery,
    ) -> Job<'a> {
        Job {
            bed,
            frame,
            delivery,
            flood: None,
            measured: Measured {
                traffic,
                kind: bed.kind,
                members: bed.members,
                wire_len,
                samples: Vec::new(),
                note: String::new(),
            },
        }
    }
}

/// The machine's busy CPU seconds per second over `duration` with every bed up and no traffic:
/// the baseline of the round that follows.
fn idle_window(duration: Duration) -> Result<cpu::Busy> {
    let a = cpu::snapshot(pin::SWITCH_CPU)?;
    let t = Instant::now();
    std::thread::sleep(duration);
    let b = cpu::snapshot(pin::SWITCH_CPU)?;
    let busy = cpu::busy_between(a, b)?;
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    Ok(cpu::Busy {
        all_s: busy.all_s / secs,
        one_s: busy.one_s / secs,
    })
}

/// `cli.runs` rounds; each starts with an idle window and then measures every job once, so
/// drifting background load hits all of them alike. `profile` records a perf profile of job
/// `.1`'s first run into `.0`.
fn run_rounds(
    cli: &Cli,
    jobs: &mut [Job],
    duration: Duration,
    profile: Option<(&std::path::Path, usize)>,
) -> Result<()> {
    for round in 0..cli.runs {
        let idle = idle_window(duration)?;
        eprintln!(
            "bench: round {} idle beds: {:.2} CPU s/s busy ({:.2} on the switch CPU)",
            round + 1,
            idle.all_s,
            idle.one_s
        );
        for (i, job) in jobs.iter_mut().enumerate() {
            let bed = job.bed;
            let perf = match profile.filter(|(_, at)| round == 0 && *at == i) {
                Some((path, _)) => Some(perf::start(bed, path, duration)?),
                None => None,
            };
            let mut s = bed.sample_with(&job.frame, duration, job.delivery, job.flood)?;
            s.idle_per_s = idle;
            if let Some(p) = perf {
                p.finish()?;
            }
            let m = &job.measured;
            eprintln!(
                "bench: {} {} B N={} run {} {:<18} offered {:.3} Mpps, port rx {:.3}, drops {:.3}, delivered {:.3} Mpps total, leaked {}, {:.2} CPU s/M ({:.2} switch CPU){}",
                m.traffic.id(),
                m.wire_len,
                bed.members,
                round + 1,
                bed.kind.label(),
                s.offered_pps / 1e6,
                s.port_rx_pps / 1e6,
                s.member_drop_pps / 1e6,
                s.total_pps() / 1e6,
                s.leaked,
                s.cpu_per_mframe(),
                s.switch_cpu_per_mframe(),
                s.flood
                    .map(|f| format!(", flood {:.0} reports/s", f.rate()))
                    .unwrap_or_default()
            );
            if cli.verbose {
                if let Some(st) = bed.xsnoop_stats() {
                    eprintln!("bench: xsnoop stats: {st}");
                }
            }
            job.measured.samples.push(s);
        }
    }
    Ok(())
}

/// Unicast 64 B from host 1 to host 2, and broadcast 64 B from host 1 to every other host, on
/// the one-member beds (the smallest fan-out if there is none): plain L2 switching, no
/// snooping. Unicast counts host 2 alone (the other hosts, members included, are leakage). The
/// ceiling redirects unicast to its first member port (a plain XDP redirect) and
/// broadcasts broadcast frames to every other port.
fn l2_benches(cli: &Cli, beds: &[Bed], duration: Duration) -> Result<Vec<Measured>> {
    let least = beds.iter().map(|b| b.members).min().unwrap_or(1);
    let mut jobs = Vec::new();
    for bed in beds.iter().filter(|b| b.members == least) {
        if cli.unicast {
            let frame = bed.unicast_frame()?;
            let settled = bed.settle_with(&frame, Delivery::Host2, Duration::from_secs(10))?;
            eprintln!(
                "bench: {} forwards unicast to host 2 only (after {:.1} s)",
                bed.kind.label(),
                settled.as_secs_f64()
            );
            jobs.push(Job::new(bed, frame, Traffic::Unicast, 64, Delivery::Host2));
        }
        if cli.broadcast {
            let frame = bed.broadcast_frame()?;
            jobs.push(Job::new(
                bed,
                frame,
                Traffic::Broadcast,
                64,
                Delivery::Everyone,
            ));
        }
    }
    // Unicast jobs first, then broadcast: the tables keep one section each.
    jobs.sort_by_key(|j| j.measured.traffic == Traffic::Broadcast);
    run_rounds(cli, &mut jobs, duration, None)?;
    Ok(jobs.into_iter().map(|j| j.measured).collect())
}

/// 64 B multicast on the beds with `cli.flood_members` members while host N+3 floods IGMPv3
/// reports for random groups at `cli.flood_rate` per second (issue 5 §4); afterwards each
/// switch's control plane is asked how it fared.
fn flood_benches(cli: &Cli, beds: &[Bed], duration: Duration) -> Result<Vec<Measured>> {
    let frame = livegen::test_frame(64, std::net::Ipv4Addr::new(10, 0, 0, 1), GROUP)?;
    let plan = FloodPlan {
        rate: cli.flood_rate,
    };
    let mut jobs: Vec<Job> = beds
        .iter()
        .filter(|b| b.members == cli.flood_members)
        .map(|b| {
            let mut j = Job::new(
                b,
                frame.clone(),
                Traffic::MulticastFlood,
                64,
                Delivery::Members,
            );
            j.flood = Some(plan);
            j
        })
        .collect();
    if jobs.is_empty() {
        eprintln!(
            "bench: no bed with {} members: flood benchmark skipped (--flood-members)",
            cli.flood_members
        );
        return Ok(Vec::new());
    }
    run_rounds(cli, &mut jobs, duration, None)?;
    for job in &mut jobs {
        job.measured.note = job.bed.control_plane_after_flood()?;
        eprintln!(
            "bench: after the flood, {}: {}",
            job.bed.kind.label(),
            job.measured.note
        );
    }
    Ok(jobs.into_iter().map(|j| j.measured).collect())
}

/// The command-line spelling of a value.
fn arg_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

fn join_list(v: &[usize]) -> String {
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Above this share of stolen CPU time a run's rates say more about the host than the switches.
const STEAL_WARN: f64 = 0.05;

/// What the Setup section says of the CPU time the hypervisor stole during the run.
fn steal_note(steal: Option<f64>) -> String {
    match steal {
        Some(f) if f > STEAL_WARN => format!(
            "**The hypervisor stole {:.1}% of the CPU time during the run** (`/proc/stat` steal): \
             rates and even ratios of this run are unreliable; rerun on a quieter host.",
            f * 100.0
        ),
        Some(f) => format!(
            "The hypervisor stole {:.1}% of the CPU time during the run (`/proc/stat` steal).",
            f * 100.0
        ),
        None => String::new(),
    }
}

fn setup_notes(
    cli: &Cli,
    napi: &str,
    (started, load_before, load_after): (&str, &str, &str),
    steal: Option<f64>,
    took: f64,
) -> String {
    const TC: &str = "tc ingress (TCX link; GRO on, which gives the veth the NAPI it needs to \
                      accept XDP-transmitted frames)";
    const XDP: &str = "native XDP";
    let receiver = match cli.receiver {
        ReceiverArg::Tc => TC.to_owned(),
        ReceiverArg::Xdp => XDP.to_owned(),
        ReceiverArg::Auto => format!(
            "{XDP} for the ceiling and xsnoop's xdp mode, which transmit XDP frames (a veth \
             drops a redirected frame unless its peer has XDP or GRO); {TC} for xsnoop's afxdp \
             mode, the AF_XDP C forwarder and the bridge, which transmit skbs that a veth would \
             copy for XDP (~1 us each here)"
        ),
    };
    let worker = match cli.xsnoop_worker {
        WorkerSched::Fifo => {
            "its AF_XDP worker thread `xsnoop-asic` SCHED_FIFO 1 (`worker_realtime = true`)"
        }
        WorkerSched::Nice => "its AF_XDP worker thread at the daemon's nice",
    };
    let control = match cli.xsnoop_control {
        WorkerSched::Fifo => "its control (main) thread SCHED_FIFO 2 (`control_realtime = true`)",
        WorkerSched::Nice => "its control (main) thread at the daemon's nice",
    };
    let mut s = String::from("## Setup\n\n");
    let _ = writeln!(
        s,
        "- Run: started {started} at commit {} (the daemon is the `xsnoop` binary beside the \
         bench's, built from the same tree by `make bench`).",
        commit()
    );
    let _ = writeln!(
        s,
        "- Machine: {} vCPU ({}), Linux {}. Load average before {load_before}, after \
         {load_after}: other work shares this machine, so compare the ratios measured in one run, \
         not absolute figures across runs. {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        read_trim("/proc/sys/kernel/osrelease"),
        steal_note(steal),
    );
    let _ = writeln!(
        s,
        "- Testbed: network namespaces joined by veth pairs (the `xsnoop-tests` star). Host 1 \
         sends; hosts 2..=N+1 joined {GROUP} with kernel sockets (IGMPv2) before the counters \
         were attached and keep the sockets open; host N+2 never joins (its count is the leakage \
         column); host N+3 joins nothing and sends the report flood in the flood benchmark \
         ({} IGMPv3 reports/s, each one MODE_IS_EXCLUDE record for a random group of \
         239.128.0.0/9 written by the `bench_flood` live-frames program, paced in runs of 256; \
         it runs on the host CPU, and the switch port it arrives on has its NAPI on the switch \
         CPU). TSO/GSO off on every switch port. All beds stay up for the whole run (idle \
         beds answer queries: that is the idle baseline of the CPU tables).",
        cli.flood_rate
    );
    let _ = writeln!(
        s,
        "- Generator: `BPF_PROG_RUN` + `BPF_F_TEST_XDP_LIVE_FRAMES` of an XDP_TX program on the \
         sender's veth (repeat {}, batch {}); the same program stays attached (generic XDP) to \
         the sender namespace's `lo` so runs skip the dispatcher update. Frames: IPv4 multicast \
         UDP built by `xsnoop_dataplane::wire::UdpDataBuilder`; sizes count the 4-byte FCS \
         (64 B = 60 B buffer). *Offered* = frames the generator produced per second (the veth \
         ring drops what the switch cannot take); *switch port rx* = the ingress port's kernel \
         rx counter; *dropped towards members* = the member ports' tx_dropped (a receiving \
         veth's ring was full: non-zero means the receivers, not the switch, limited \
         delivery); *loss* = 1 − per-member delivered / offered.",
        livegen::REPEAT,
        livegen::BATCH,
    );
    let _ = writeln!(
        s,
        "- Receivers: a BPF program on every receiving host's interface counts and drops the \
         benchmark frames (per-CPU counters) and passes everything else, so the hosts keep \
         answering queries. Attached at: {receiver}."
    );
    let _ = writeln!(
        s,
        "- Switches: **xsnoop run, afxdp** (`dataplane = \"afxdp\"` in its config: native XDP \
         classifier + AF_XDP copy mode, querier on); **xsnoop run, xdp** (`dataplane = \"xdp\"`: \
         the same daemon, registered multicast replicated in the kernel by devmap broadcast, \
         and whatever else the daemon's xdp mode puts in the kernel at this commit; the bench \
         checks the mode in `xsnoop stats`); **AF_XDP C forwarder** (`bench/afxdp-fwd/`, \
         `make bench-fwd`: libxdp, one UMEM shared by a copy-mode socket per port, refcounted \
         frames posted to every egress TX ring without a copy, batch 64, rings of 8192, one \
         thread; static egress sets like the ceiling's, no switch logic: the baseline of the \
         afxdp mode, placed and scheduled like xsnoop's worker); \
         **Linux bridge** `mcast_snooping 1` + `mcast_querier 1` (GRO on the ingress port for \
         the same NAPI reason); **XDP ceiling**: devmap broadcast (`BPF_F_BROADCAST | \
         BPF_F_EXCLUDE_INGRESS`) to exactly the member ports (broadcast frames: to every \
         other port; unicast: one plain `bpf_redirect_map` to the member), no other logic. Each bed is \
         probed until the members get frames and the non-member none before it is measured \
         (the bridge floods until its querier counts as present)."
    );
    let _ = writeln!(
        s,
        "- CPUs: the switch gets CPU {sw}: the ingress port's NAPI made threaded and pinned \
         there at nice {bn} (the bridge's and the ceiling's whole forwarding work runs in it); \
         `xsnoop run` started under `nice -n {bn} taskset -c {sw}`, with {worker}, {control} and its \
         ingress NAPI thread at nice {xn}; the C forwarder the same way, its one thread \
         scheduled like xsnoop's worker. The generator (nice {gn}) and the receivers' threaded \
         NAPI (nice {bn}) share CPU {host}. Negative nice values keep the machine's other work \
         off the measured threads.",
        sw = pin::SWITCH_CPU,
        host = pin::HOST_CPU,
        bn = pin::BENCH_NICE,
        gn = pin::GEN_NICE,
        xn = cli.xsnoop_ingress_nice,
    );
    s.push_str(napi);
    if let Some(why) = &cli.skipped {
        let _ = writeln!(s, "- **Not measured**: {why}");
    }
    let _ = writeln!(
        s,
        "- Each figure: {} runs of {:.1} s; the runs of the switches are interleaved (round r \
         measures each once) so background load hits all alike. Packet benchmarks took \
         {took:.0} s.",
        cli.runs, cli.seconds,
    );
    let _ = writeln!(
        s,
        "- Reproduce: `make bench` (as root), or `target/release/xsnoop-bench --runs {} \
         --seconds {} --members {} --sizes {} --flood-rate {} --flood-members {} --receiver {} \
         --xsnoop-worker {} --xsnoop-control {} --xsnoop-ingress-nice={}` (`--help` for all options).",
        cli.runs,
        cli.seconds,
        join_list(&cli.members),
        join_list(&cli.sizes),
        cli.flood_rate,
        cli.flood_members,
        arg_name(&cli.receiver),
        arg_name(&cli.xsnoop_worker),
        arg_name(&cli.xsnoop_control),
        cli.xsnoop_ingress_nice,
    );
    s
}

/// The name a result file gets in a run of `only`: the full run's own name (`latency.csv`),
/// or for a partial run the name with `-<only>` before the extension (`latency-latency.csv`,
/// `multicast-64B-packet.svg`), so a partial run never replaces the full run's files.
fn out_name(only: Only, name: &str) -> String {
    if only == Only::All {
        return name.to_owned();
    }
    let tag = arg_name(&only);
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}-{tag}.{ext}"),
        None => format!("{name}-{tag}"),
    }
}

/// Writes `text` to `dir/name`.
fn write_out(dir: &std::path::Path, name: &str, text: &str) -> Result<()> {
    // Figures from beds that an interrupt is tearing down are not results.
    interrupt::hold_if_interrupted();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    let result = run();
    // An error (or the end) reached while a signal's cleanup runs is not the bench's status:
    // the signal thread exits with 128 + the signal once the beds are gone.
    interrupt::hold_if_interrupted();
    result
}

fn run() -> Result<()> {
    let mut cli = Cli::parse();
    if cli.only.rates() || cli.only.latency() {
        skip_missing_forwarder(&mut cli);
    }
    // The testbed's launcher would append `--dataplane $XSNOOP_TEST_DATAPLANE` to every
    // `xsnoop run`, overriding the mode each bed writes in its config: one mode's figures would
    // then stand under the other's name. The bench names the mode per switch instead.
    if let Ok(mode) = std::env::var("XSNOOP_TEST_DATAPLANE") {
        eprintln!(
            "bench: ignoring XSNOOP_TEST_DATAPLANE={mode}: the switch kinds xsnoop-afxdp and \
             xsnoop-xdp set the mode (--switches)"
        );
        // Still single-threaded here: nothing else reads the environment concurrently.
        std::env::remove_var("XSNOOP_TEST_DATAPLANE");
    }
    // Before any thread starts (see `interrupt::install`): Ctrl-C or SIGTERM removes the beds.
    interrupt::install()?;
    let mut md = String::from("# xsnoop benchmarks\n\n");
    if matches!(cli.only, Only::All | Only::Control) {
        let rows = control::run()?;
        md.push_str(&control::markdown(&rows));
        md.push('\n');
    }
    let mut failed = None;
    if cli.only.rates() || cli.only.latency() {
        let load_before = read_trim("/proc/loadavg");
        let stat_before = cpu::snapshot(0).ok();
        let started = utc_now();
        let t = Instant::now();
        let mut napi = String::new();
        match packet_benches(&cli, &mut napi) {
            Ok(res) => {
                let all = &res.rates;
                if !all.is_empty() {
                    md.push_str(&report::markdown(all));
                }
                if !res.scale.is_empty() {
                    md.push_str(&scale::markdown(&res.scale));
                    let csv = out_name(cli.only, "table-scale.csv");
                    write_out(&cli.out, &csv, &scale::csv(&res.scale))?;
                    let svg = out_name(cli.only, "table-scale.svg");
                    scale::plot(&res.scale, &cli.out.join(&svg))?;
                    let _ = writeln!(md, "Plot: [{svg}]({svg})\n");
                }
                if !res.latency.is_empty() {
                    let plan = latency::StreamPlan {
                        rate_pps: cli.latency_rate,
                        ..latency::StreamPlan::default()
                    };
                    md.push_str(&latency::markdown(&res.latency, plan));
                    md.push('\n');
                    write_out(
                        &cli.out,
                        &out_name(cli.only, "latency.csv"),
                        &latency::csv(&res.latency),
                    )?;
                }
                let load_after = read_trim("/proc/loadavg");
                let steal = stat_before
                    .zip(cpu::snapshot(0).ok())
                    .and_then(|(a, b)| cpu::steal_share(a, b));
                if steal.is_some_and(|f| f > STEAL_WARN) {
                    eprintln!("bench: {}", steal_note(steal));
                }
                md.push_str(&setup_notes(
                    &cli,
                    &napi,
                    (&started, &load_before, &load_after),
                    steal,
                    t.elapsed().as_secs_f64(),
                ));
                if !all.is_empty() {
                    let csv = out_name(cli.only, "latest.csv");
                    write_out(&cli.out, &csv, &report::csv(all))?;
                    let plots = plot::write_all(all, &cli.out, |len| {
                        out_name(cli.only, &format!("multicast-{len}B.svg"))
                    })?;
                    if !plots.is_empty() {
                        md.push_str("\nPlots: ");
                        let names: Vec<String> = plots
                            .iter()
                            .filter_map(|p| p.file_name()?.to_str())
                            .map(|n| format!("[{n}]({n})"))
                            .collect();
                        md.push_str(&names.join(", "));
                        md.push('\n');
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(md, "Packet benchmarks failed: {e:#}");
                failed = Some(e);
            }
        }
    }
    if cli.only.memory() && failed.is_none() {
        let both = memory::measure(240, &cli.memory_groups)
            .and_then(|l| Ok((l, memory::measure_static(241, &cli.memory_groups)?)));
        match both {
            Ok((learned, statics)) => {
                md.push('\n');
                md.push_str(&memory::markdown(&learned, &statics));
                write_out(
                    &cli.out,
                    &out_name(cli.only, "memory.csv"),
                    &memory::csv(&learned, &statics),
                )?;
            }
            Err(e) => {
                let _ = writeln!(md, "\nMemory benchmark failed: {e:#}");
                failed = Some(e);
            }
        }
    }
    if cli.only == Only::All && failed.is_none() {
        md.push_str(
            "\nProfile of the worker under the N=4 64 B load, and what it says about XDP \
             metadata: [profile.md](profile.md).\n",
        );
    }
    print!("{md}");
    if cli.only != Only::Control && failed.is_none() {
        // A partial run must not replace the full report.
        let name = out_name(cli.only, "latest.md");
        write_out(&cli.out, &name, &md)?;
        eprintln!("bench: wrote {}", cli.out.join(name).display());
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_line_is_utc_and_well_formed() {
        let now = utc_now();
        let b = now.as_bytes();
        assert_eq!(now.len(), "2026-11-22 04:35 UTC".len(), "{now}");
        assert!(now.ends_with(" UTC") && b[4] == b'-' && b[7] == b'-' && b[13] == b':');
        let year: i32 = now[..4].parse().unwrap();
        assert!(year >= 2024, "{now}");
        let out = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .unwrap();
        let date = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Equal unless a minute turned between the two calls.
        assert!(date == now || date[..13] == now[..13], "{date} vs {now}");
    }

    #[test]
    fn a_partial_run_names_every_file_for_itself() {
        for name in [
            "latest.md",
            "latest.csv",
            "multicast-64B.svg",
            "latency.csv",
        ] {
            assert_eq!(out_name(Only::All, name), name);
        }
        assert_eq!(out_name(Only::Packet, "latest.csv"), "latest-packet.csv");
        assert_eq!(
            out_name(Only::Packet, "multicast-64B.svg"),
            "multicast-64B-packet.svg"
        );
        assert_eq!(out_name(Only::Latency, "latest.md"), "latest-latency.md");
        assert_eq!(out_name(Only::Memory, "memory.csv"), "memory-memory.csv");
        // No partial run's name is a full run's name.
        for only in [Only::Control, Only::Packet, Only::Latency, Only::Memory] {
            for name in ["latest.md", "latest.csv", "table-scale.svg", "latency.csv"] {
                assert_ne!(out_name(only, name), name);
            }
        }
    }
}
