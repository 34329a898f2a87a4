//! `make bench`: what a user choosing a switch needs, measured in one run on one testbed.
//!
//! 1. Control-plane and table-lookup rates ([`control`]).
//! 2. Packet rates: `xsnoop run` against the Linux bridge with IGMP snooping and against the XDP
//!    ceiling (in-kernel devmap broadcast), 1 sender → N members + 1 non-member, each figure the
//!    median of several runs with min and max, leakage to the non-member counted ([`bed`]).
//!
//! The tables go to stdout and to `bench/results/latest.md`; every run goes to `latest.csv`.
//! Packet rates need root (namespaces, XDP); without it they are skipped with the reason and the
//! exit status says so.

mod bed;
mod bpf;
mod control;
mod daemon;
mod livegen;
mod pin;
mod report;
mod stats;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, ValueEnum};

use bed::{Bed, SwitchKind, GROUP};
use report::Measured;

/// Which benchmarks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Control plane, then packet rates.
    All,
    /// Control-plane rates only (no root needed).
    Control,
    /// Packet rates only.
    Packet,
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
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    members: Vec<usize>,
    /// Frame lengths on the wire, FCS included (64 = minimum; 1518 = a 1500 B IP packet).
    #[arg(long, value_delimiter = ',', default_values_t = [64, 1518])]
    sizes: Vec<usize>,
    /// Where latest.md and latest.csv are written.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

fn cpu_model() -> String {
    read_trim("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

/// Packet-rate benchmarks: for each fan-out, one bed per switch alive at once and the runs
/// interleaved (round r measures every switch once), so drifting background load hits all three
/// alike and the ratios stay comparable.
fn packet_benches(cli: &Cli, log: &mut String) -> Result<Vec<Measured>> {
    if let Err(why) = xsnoop_tests::privilege::netns_available() {
        bail!("network namespaces unavailable ({why}); run `make bench` as root");
    }
    let duration = Duration::from_secs_f64(cli.seconds.clamp(0.1, 60.0));
    let mut all = Vec::new();
    for (ni, &n) in cli.members.iter().enumerate() {
        let mut beds = Vec::new();
        for (si, kind) in SwitchKind::ALL.into_iter().enumerate() {
            let net = u8::try_from(160 + ni * 3 + si).unwrap_or(250);
            let t = Instant::now();
            let bed = Bed::new(kind, n, net)
                .with_context(|| format!("setting up {} with {n} members", kind.label()))?;
            let settled = bed.settle(Duration::from_secs(30))?;
            eprintln!(
                "bench: {} with {n} members ready in {:.1} s (pruning after {:.1} s of probing)",
                kind.label(),
                t.elapsed().as_secs_f64(),
                settled.as_secs_f64()
            );
            if ni == 0 && si == 0 {
                for (iface, threads, cpu) in &bed.napi {
                    let _ = writeln!(log, "- NAPI of {iface}: threads {threads:?} on CPU {cpu}");
                }
            }
            beds.push(bed);
        }
        for &len in &cli.sizes {
            let frame = livegen::test_frame(len, std::net::Ipv4Addr::new(10, 0, 0, 1), GROUP)?;
            let mut measured: Vec<Measured> = beds
                .iter()
                .map(|b| Measured {
                    kind: b.kind,
                    members: n,
                    wire_len: len,
                    samples: Vec::new(),
                })
                .collect();
            for round in 0..cli.runs {
                for (bed, m) in beds.iter().zip(measured.iter_mut()) {
                    let s = bed.sample(&frame, duration)?;
                    eprintln!(
                        "bench: {len} B N={n} run {} {:<12} offered {:.3} Mpps, port rx {:.3}, delivered {:.3} Mpps total, non-member {}",
                        round + 1,
                        bed.kind.label(),
                        s.offered_pps / 1e6,
                        s.port_rx_pps / 1e6,
                        s.total_pps() / 1e6,
                        s.leaked
                    );
                    m.samples.push(s);
                }
            }
            all.extend(measured);
        }
    }
    Ok(all)
}

fn setup_notes(cli: &Cli, napi: &str, load_before: &str, load_after: &str, took: f64) -> String {
    format!(
        "## Setup\n\n\
         - Machine: {} vCPU ({}), Linux {}; load average before {load_before}, after {load_after} \
         (other work on the machine shows here; compare ratios from one run, not absolute figures \
         across runs).\n\
         - Testbed: network namespaces and veth pairs (the project's `xsnoop-tests` star): host 1 \
         sends, hosts 2..=N+1 joined {GROUP} with kernel sockets (IGMPv2), host N+2 never joins. \
         TSO/GSO off on every switch port.\n\
         - Generator: `BPF_PROG_RUN` + `BPF_F_TEST_XDP_LIVE_FRAMES` of an XDP_TX program on the \
         sender's veth (repeat {}, batch {}), the same program kept attached (generic) to the sender \
         namespace's `lo`; IPv4 multicast UDP frames built by `xsnoop_dataplane::wire::UdpDataBuilder`. \
         Offered = frames the generator produced per second (the veth ring drops what the switch \
         cannot take); switch port rx = the ingress port's kernel rx counter.\n\
         - Receivers: an XDP program on every receiving host's interface counts and drops the \
         benchmark frames (per-CPU counters) and passes the rest, so the hosts keep answering \
         queries.\n\
         - Switches: **xsnoop run** (native XDP classifier + AF_XDP copy mode, querier on); \
         **Linux bridge** `mcast_snooping 1`, `mcast_querier 1`, GRO on the ingress port (so the \
         veth accepts XDP-transmitted frames); **XDP ceiling**: devmap broadcast \
         (`BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS`) to exactly the member ports, no logic. \
         Each bed is probed until members get frames and the non-member none before measuring.\n\
         - CPUs: the switch gets CPU {} (threaded NAPI of the ingress port pinned there; `xsnoop \
         run` started under `taskset -c {}`); the generator (nice 19) and the receivers' threaded \
         NAPI run on CPU {}.\n{napi}\
         - Each figure: {} runs of {:.1} s, runs of the three switches interleaved; whole packet \
         benchmark {took:.0} s.\n\
         - Reproduce: `make bench` (as root), or `target/release/xsnoop-bench --runs {} --seconds {} \
         --members {} --sizes {}`.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        read_trim("/proc/sys/kernel/osrelease"),
        livegen::REPEAT,
        livegen::BATCH,
        pin::SWITCH_CPU,
        pin::SWITCH_CPU,
        pin::HOST_CPU,
        cli.runs,
        cli.seconds,
        cli.runs,
        cli.seconds,
        cli.members.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        cli.sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
    )
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut md = String::from("# xsnoop benchmarks\n\n");
    if cli.only != Only::Packet {
        let rows = control::run()?;
        md.push_str(&control::markdown(&rows));
        md.push('\n');
    }
    let mut failed = None;
    if cli.only != Only::Control {
        let load_before = read_trim("/proc/loadavg");
        let t = Instant::now();
        let mut napi = String::new();
        match packet_benches(&cli, &mut napi) {
            Ok(all) => {
                md.push_str(&report::markdown(&all, &cli.members, &cli.sizes));
                let load_after = read_trim("/proc/loadavg");
                md.push_str(&setup_notes(
                    &cli,
                    &napi,
                    &load_before,
                    &load_after,
                    t.elapsed().as_secs_f64(),
                ));
                std::fs::create_dir_all(&cli.out)
                    .with_context(|| format!("creating {}", cli.out.display()))?;
                let csv_path = cli.out.join("latest.csv");
                std::fs::write(&csv_path, report::csv(&all))
                    .with_context(|| format!("writing {}", csv_path.display()))?;
            }
            Err(e) => {
                let _ = writeln!(md, "Packet-rate benchmarks failed: {e:#}");
                failed = Some(e);
            }
        }
    }
    print!("{md}");
    if cli.only != Only::Control && failed.is_none() {
        let md_path = cli.out.join("latest.md");
        std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
        eprintln!("bench: wrote {} and latest.csv", md_path.display());
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
