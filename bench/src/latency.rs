//! Latency on the benchmark beds, xsnoop and the Linux bridge measured in the same run:
//!
//! - **join**: the non-member host joins the group (kernel socket, IGMPv2 report, RFC 2236 §3)
//!   while host 1 streams it at a modest rate; latency = first group frame arriving at the
//!   joining host − the report leaving it;
//! - **fast leave**: the same host leaves (IGMPv2 leave); its port has fast leave on (xsnoop
//!   `fast_leave = true`, bridge `multicast_fast_leave on`), so the switch prunes at once
//!   (RFC 4541 §2.1.1 allows it on a port with one host); latency = last group frame arriving
//!   − the leave leaving;
//! - **per frame**: every frame of the stream from host 1 to member host 2; latency = arrival
//!   at host 2's interface − departure from host 1's interface.
//!
//! Every time is a kernel timestamp taken by an `AF_PACKET` tap on the host's own veth
//! ([`crate::tstamp`]), so the figures hold the switch (both veth crossings and whatever the
//! switch does) and none of the hosts' socket or scheduling time. Join and leave figures are
//! quantised by the stream's frame interval (50 us at 20 kpps).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use xsnoop_tests::host::Sender;
use xsnoop_tests::Membership;

use crate::bed::{Bed, SwitchKind, GROUP};
use crate::bpf::BENCH_UDP_PORT;
use crate::pin;
use crate::stats::Summary;
use crate::tstamp::{self, classify, Kind, StampCapture, Stamped};

/// UDP port of the latency probes: not the throughput port, so the receivers' counters pass
/// them (the taps see frames before tc ingress anyway).
pub const PROBE_PORT: u16 = BENCH_UDP_PORT + 2;

/// How one latency run streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamPlan {
    /// Probe frames per second from host 1.
    pub rate_pps: u32,
    /// Length of the stream.
    pub duration: Duration,
}

impl Default for StreamPlan {
    fn default() -> Self {
        StreamPlan {
            rate_pps: 20_000,
            duration: Duration::from_millis(1_000),
        }
    }
}

/// What one latency run measured on one bed.
#[derive(Debug, Clone, Default)]
pub struct LatencyRun {
    /// Join latency, microseconds (`None`: no frame arrived after the report).
    pub join_us: Option<f64>,
    /// Fast-leave latency, microseconds: last frame in − leave out, 0 when no frame arrived
    /// after the leave left (`None`: the leave or the frames were not seen).
    pub leave_us: Option<f64>,
    /// Frames the joining host received after its leave left.
    pub after_leave: usize,
    /// Frames the joining host received before its report left (leakage; must be 0).
    pub before_join: usize,
    /// Per-frame latencies host 1 → host 2, microseconds, sorted.
    pub frame_us: Vec<f64>,
    /// Probes seen leaving host 1.
    pub sent: usize,
}

impl LatencyRun {
    /// The `p`-th percentile (0..=100, nearest rank) of the per-frame latencies.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.frame_us, p)
    }

    /// Probes that left host 1 but never reached host 2.
    pub fn lost(&self) -> usize {
        self.sent.saturating_sub(self.frame_us.len())
    }
}

/// Nearest-rank percentile of sorted `v` (0 for an empty slice).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999 despite binary floating point.
    let rank = (p * v.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    let i = rank.clamp(1, v.len()) - 1;
    v.get(i).copied().unwrap_or(0.0)
}

/// All latency runs of one switch.
#[derive(Debug, Clone)]
pub struct LatencySeries {
    /// The switch.
    pub kind: SwitchKind,
    /// One entry per run.
    pub runs: Vec<LatencyRun>,
}

/// The percentiles reported for per-frame latency.
pub const PERCENTILES: [(f64, &str); 5] = [
    (50.0, "p50"),
    (90.0, "p90"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (100.0, "max"),
];

impl LatencySeries {
    fn summary(&self, f: impl Fn(&LatencyRun) -> Option<f64>) -> Option<Summary> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| Summary::of(&v))
    }

    /// Join latency over the runs, microseconds.
    pub fn join(&self) -> Option<Summary> {
        self.summary(|r| r.join_us)
    }

    /// Fast-leave latency over the runs, microseconds.
    pub fn leave(&self) -> Option<Summary> {
        self.summary(|r| r.leave_us)
    }

    /// Percentile `p` of the per-frame latency over the runs (median of the runs' values).
    pub fn frame(&self, p: f64) -> Option<Summary> {
        self.summary(|r| (!r.frame_us.is_empty()).then(|| r.percentile(p)))
    }
}

/// The captures of one run.
struct Taps {
    sender: StampCapture,
    member: StampCapture,
    joiner: StampCapture,
}

fn open_taps(bed: &Bed) -> Result<Taps> {
    let star = bed.star();
    let open = |i: usize| -> Result<StampCapture> {
        let (ns, iface) = (star.host(i)?, star.host_if(i)?);
        let cap = ns.run(|| StampCapture::open_here(&iface))??;
        Ok(cap)
    };
    Ok(Taps {
        sender: open(1)?,
        member: open(2)?,
        joiner: open(bed.members + 2)?,
    })
}

/// Sends `plan.rate_pps` probes per second for `plan.duration`, paced by absolute deadlines.
/// Returns how many it sent.
fn stream(sender: &Sender, plan: StreamPlan) -> Result<u64> {
    let _ = pin::pin(0, pin::HOST_CPU);
    let _ = pin::nice_current_thread(pin::GEN_NICE);
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack (1 ns: wake on
    // time, not up to 50 us late).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let interval = Duration::from_secs_f64(1.0 / f64::from(plan.rate_pps.max(1)));
    let start = Instant::now();
    let mut payload = tstamp::MAGIC.to_vec();
    payload.extend_from_slice(&[0u8; 8]);
    let mut seq: u64 = 0;
    while start.elapsed() < plan.duration {
        let due = start + interval.mul_f64(seq as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if let Some(s) = payload.get_mut(8..16) {
            s.copy_from_slice(&seq.to_be_bytes());
        }
        sender.send(GROUP, PROBE_PORT, &payload)?;
        seq += 1;
    }
    Ok(seq)
}

fn is_probe(f: &Stamped) -> bool {
    matches!(classify(&f.head, PROBE_PORT), Kind::Probe { .. })
}

fn is_igmp(f: &Stamped) -> bool {
    matches!(classify(&f.head, PROBE_PORT), Kind::Report | Kind::Leave)
}

/// One run on `bed`: host 1 streams; the non-member host joins at 30% of the stream and leaves
/// at 65%; host 2 (a member) receives the whole stream.
pub fn run_once(bed: &Bed, plan: StreamPlan) -> Result<LatencyRun> {
    let star = bed.star();
    let taps = open_taps(bed)?;
    let sender = Sender::new(star.host(1)?, &star.host_if(1)?, 16)?;
    let joiner = bed.members + 2;
    let (jns, jif) = (star.host(joiner)?, star.host_if(joiner)?);
    taps.sender.drain()?;
    taps.member.drain()?;
    taps.joiner.drain()?;
    let deadline = Instant::now() + plan.duration + Duration::from_millis(400);
    let (tx, rx, jx, sent) = std::thread::scope(|s| -> Result<_> {
        let tx = s.spawn(|| {
            taps.sender
                .collect_until(deadline, |f| f.outgoing && is_probe(f))
        });
        let rx = s.spawn(|| {
            taps.member
                .collect_until(deadline, |f| !f.outgoing && is_probe(f))
        });
        let jx = s.spawn(|| {
            taps.joiner
                .collect_until(deadline, |f| is_probe(f) || (f.outgoing && is_igmp(f)))
        });
        let st = s.spawn(|| stream(&sender, plan));
        let t0 = Instant::now();
        std::thread::sleep(plan.duration.mul_f64(0.3));
        let m = Membership::join(jns, &jif, GROUP, 0).context("the joining host's join")?;
        let until_leave = plan.duration.mul_f64(0.65).saturating_sub(t0.elapsed());
        std::thread::sleep(until_leave);
        m.leave().context("the joining host's leave")?;
        let join = |h: std::thread::ScopedJoinHandle<'_, _>| {
            h.join().map_err(|_| anyhow!("a capture thread panicked"))
        };
        let tx = join(tx)??;
        let rx = join(rx)??;
        let jx = join(jx)??;
        let sent = st
            .join()
            .map_err(|_| anyhow!("the stream thread panicked"))??;
        Ok((tx, rx, jx, sent))
    })?;
    if sent == 0 || tx.is_empty() {
        bail!("no probe left host 1 (stream sent {sent})");
    }
    Ok(analyse(&tx, &rx, &jx))
}

fn seq_of(f: &Stamped) -> Option<u64> {
    match classify(&f.head, PROBE_PORT) {
        Kind::Probe { seq } => Some(seq),
        _ => None,
    }
}

/// Turns the three captures into latencies (see [`run_once`]).
fn analyse(tx: &[Stamped], rx: &[Stamped], jx: &[Stamped]) -> LatencyRun {
    let sent_at: HashMap<u64, i128> = tx.iter().filter_map(|f| Some((seq_of(f)?, f.ns))).collect();
    let mut frame_us: Vec<f64> = rx
        .iter()
        .filter_map(|f| Some((f.ns - *sent_at.get(&seq_of(f)?)?) as f64 / 1e3))
        .collect();
    frame_us.sort_by(f64::total_cmp);

    let report = jx
        .iter()
        .find(|f| f.outgoing && classify(&f.head, PROBE_PORT) == Kind::Report)
        .map(|f| f.ns);
    let leave = jx
        .iter()
        .find(|f| f.outgoing && classify(&f.head, PROBE_PORT) == Kind::Leave)
        .map(|f| f.ns);
    let arrivals: Vec<i128> = jx
        .iter()
        .filter(|f| !f.outgoing && seq_of(f).is_some())
        .map(|f| f.ns)
        .collect();
    let before_join = report.map_or(arrivals.len(), |r| {
        arrivals.iter().filter(|&&t| t < r).count()
    });
    let join_us = report.and_then(|r| {
        let first = arrivals.iter().copied().filter(|&t| t >= r).min()?;
        Some((first - r) as f64 / 1e3)
    });
    let (leave_us, after_leave) = match (leave, arrivals.iter().copied().max()) {
        (Some(l), Some(last)) => (
            Some(((last - l) as f64 / 1e3).max(0.0)),
            arrivals.iter().filter(|&&t| t > l).count(),
        ),
        _ => (None, 0),
    };
    LatencyRun {
        join_us,
        leave_us,
        after_leave,
        before_join,
        frame_us,
        sent: sent_at.len(),
    }
}

/// Measures every bed in `beds` `runs` times, interleaved (round r measures each bed once);
/// `verbose` prints xsnoop's dataplane counters after each of its runs.
pub fn measure(
    beds: &[&Bed],
    runs: u32,
    plan: StreamPlan,
    verbose: bool,
) -> Result<Vec<LatencySeries>> {
    let mut out: Vec<LatencySeries> = beds
        .iter()
        .map(|b| LatencySeries {
            kind: b.kind,
            runs: Vec::new(),
        })
        .collect();
    for round in 0..runs {
        for (bed, series) in beds.iter().zip(out.iter_mut()) {
            let r = run_once(bed, plan)
                .with_context(|| format!("latency run on {}", bed.kind.label()))?;
            eprintln!(
                "bench: latency run {} {:<12} join {} us, fast leave {} us ({} frames after), per frame p50 {:.1} p99 {:.1} p99.9 {:.1} us, {} of {} probes lost",
                round + 1,
                bed.kind.label(),
                r.join_us.map_or("–".to_owned(), |v| format!("{v:.0}")),
                r.leave_us.map_or("–".to_owned(), |v| format!("{v:.0}")),
                r.after_leave,
                r.percentile(50.0),
                r.percentile(99.0),
                r.percentile(99.9),
                r.lost(),
                r.sent,
            );
            if verbose {
                if let Some(st) = bed.xsnoop_stats() {
                    eprintln!("bench: xsnoop stats: {st}");
                }
            }
            series.runs.push(r);
            // Let the switch forget the host (and the kernel's delayed reports settle).
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(out)
}

fn fmt_us(s: Option<Summary>) -> String {
    s.map_or("–".to_owned(), |s| {
        format!("{:.1} ({:.1}–{:.1})", s.median, s.min, s.max)
    })
}

/// Markdown tables: join and fast-leave latency, per-frame percentiles, and ratios
/// xsnoop / bridge of the medians.
pub fn markdown(all: &[LatencySeries], plan: StreamPlan) -> String {
    let runs = all.iter().map(|s| s.runs.len()).min().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Latency, 1 sender streaming {} kpps of 60 B probes (µs, median (min–max) of {runs} runs)\n",
        plan.rate_pps / 1000
    );
    s.push_str("| switch | join: report out → first frame in | fast leave: leave out → last frame in | frames after leave | frames before join | p50 | p90 | p99 | p99.9 | max | probes lost |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for series in all {
        let after: usize = series.runs.iter().map(|r| r.after_leave).sum();
        let before: usize = series.runs.iter().map(|r| r.before_join).sum();
        let lost: usize = series.runs.iter().map(|r| r.lost()).sum();
        let _ = write!(
            s,
            "| {} | {} | {} | {after} | {before} |",
            series.kind.label(),
            fmt_us(series.join()),
            fmt_us(series.leave()),
        );
        for (p, _) in PERCENTILES {
            let _ = write!(s, " {} |", fmt_us(series.frame(p)));
        }
        let _ = writeln!(s, " {lost} |");
    }
    let find = |k: SwitchKind| all.iter().find(|x| x.kind == k);
    let bridge = find(SwitchKind::Bridge);
    let mut header = false;
    for (x, b) in SwitchKind::XSNOOP
        .iter()
        .filter_map(|k| find(*k).zip(bridge))
    {
        if !header {
            s.push_str("\n| ratio of medians | join | fast leave | p50 | p99 | p99.9 |\n");
            s.push_str("|---|---|---|---|---|---|\n");
            header = true;
        }
        let ratio = |a: Option<Summary>, b: Option<Summary>| match (a, b) {
            (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}", a.median / b.median),
            (Some(_), Some(_)) => "– (bridge 0)".to_owned(),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {} / bridge | {} | {} | {} | {} | {} |",
            x.kind.label(),
            ratio(x.join(), b.join()),
            ratio(x.leave(), b.leave()),
            ratio(x.frame(50.0), b.frame(50.0)),
            ratio(x.frame(99.0), b.frame(99.0)),
            ratio(x.frame(99.9), b.frame(99.9)),
        );
    }
    if let Some(c) = find(SwitchKind::Ceiling) {
        // The ceiling has no control plane: per-frame ratios only, for every other switch.
        s.push_str("\n| per-frame ratio of medians to the XDP ceiling | p50 | p99 | p99.9 |\n");
        s.push_str("|---|---|---|---|\n");
        for x in all.iter().filter(|x| x.kind != SwitchKind::Ceiling) {
            let ratio = |p: f64| match (x.frame(p), c.frame(p)) {
                (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}", a.median / b.median),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} / ceiling | {} | {} | {} |",
                x.kind.label(),
                ratio(50.0),
                ratio(99.0),
                ratio(99.9),
            );
        }
    }
    let _ = writeln!(
        s,
        "\nEvery time is a kernel timestamp (`SO_TIMESTAMPNS` on an `AF_PACKET` tap) on the \
         hosts' own veths, so a figure holds both veth crossings and the switch, not the hosts' \
         sockets. *Join*: host N+2 joins {GROUP} with a kernel socket (IGMPv2 report) {:.0} ms \
         into the stream; the first frame can only come with the next frame sent, so join \
         figures carry up to {:.0} µs of stream spacing. *Fast leave*: the same host leaves \
         {:.0} ms in; its port has fast leave on (xsnoop `fast_leave = true`, bridge \
         `multicast_fast_leave on`); 0 = no frame arrived after the leave left. *Per frame*: \
         each probe from host 1's veth (outgoing tap) to member host 2's veth (incoming tap), \
         percentiles of one run, then the median over runs. The XDP ceiling (a devmap broadcast \
         and nothing else, no control plane, so no join or leave figure) is what the in-kernel \
         path itself costs per frame; the AF_XDP C forwarder (no control plane either) what an \
         AF_XDP copy-mode path costs. The switch CPU is shared with the \
         machine's other work (2 vCPUs): compare the ratio, measured in the same run.",
        plan.duration.as_secs_f64() * 300.0,
        1e6 / f64::from(plan.rate_pps.max(1)),
        plan.duration.as_secs_f64() * 650.0,
    );
    s
}

/// CSV rows, one per run: switch, run, join, leave, frames after leave, frames before join,
/// percentiles, sent, lost.
pub fn csv(all: &[LatencySeries]) -> String {
    let mut s = String::from(
        "switch,run,join_us,fast_leave_us,frames_after_leave,frames_before_join,p50_us,p90_us,p99_us,p999_us,max_us,probes_sent,probes_lost\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
    for series in all {
        for (i, r) in series.runs.iter().enumerate() {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{},{}",
                series.kind.id(),
                i + 1,
                opt(r.join_us),
                opt(r.leave_us),
                r.after_leave,
                r.before_join,
                r.percentile(50.0),
                r.percentile(90.0),
                r.percentile(99.0),
                r.percentile(99.9),
                r.percentile(100.0),
                r.sent,
                r.lost(),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use xsnoop_dataplane::wire::{to_vec, LeaveBuilder, MacAddr, ReportV2Builder, UdpDataBuilder};

    fn probe(seq: u64, ns: i128, outgoing: bool) -> Stamped {
        let mut payload = tstamp::MAGIC.to_vec();
        payload.extend_from_slice(&seq.to_be_bytes());
        let head = to_vec(&UdpDataBuilder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            group: GROUP,
            src_port: PROBE_PORT,
            dst_port: PROBE_PORT,
            ttl: 1,
            payload: &payload,
            vlan: None,
        })
        .unwrap();
        Stamped { ns, outgoing, head }
    }

    fn igmp(leave: bool, ns: i128) -> Stamped {
        let (src_mac, src_ip) = (MacAddr([2, 0, 0, 0, 0, 3]), Ipv4Addr::new(10, 0, 0, 3));
        let head = if leave {
            to_vec(&LeaveBuilder {
                src_mac,
                src_ip,
                group: GROUP,
                vlan: None,
            })
        } else {
            to_vec(&ReportV2Builder {
                src_mac,
                src_ip,
                group: GROUP,
                vlan: None,
            })
        }
        .unwrap();
        Stamped {
            ns,
            outgoing: true,
            head,
        }
    }

    #[test]
    fn latencies_come_from_matching_timestamps() {
        // Probes 0..10 leave host 1 every 50 us; host 2 gets 0..9 (probe 9 lost), 20 us later
        // plus 1 us per sequence number.
        let tx: Vec<Stamped> = (0..10)
            .map(|i| probe(i, 50_000 * i as i128, true))
            .collect();
        let rx: Vec<Stamped> = (0..9)
            .map(|i| probe(i, 50_000 * i as i128 + 20_000 + 1_000 * i as i128, false))
            .collect();
        // Report out at 120 us; frames in at 210, 260, 310 us; leave out at 300 us.
        let jx = vec![
            igmp(false, 120_000),
            probe(4, 210_000, false),
            probe(5, 260_000, false),
            igmp(true, 300_000),
            probe(6, 310_000, false),
        ];
        let r = analyse(&tx, &rx, &jx);
        assert_eq!(r.sent, 10);
        assert_eq!(r.lost(), 1);
        assert_eq!(r.frame_us.len(), 9);
        assert_eq!(r.percentile(50.0), 24.0);
        assert_eq!(r.percentile(100.0), 28.0);
        assert_eq!(r.percentile(0.0), 20.0);
        assert_eq!(r.join_us, Some(90.0));
        assert_eq!(r.leave_us, Some(10.0));
        assert_eq!(r.after_leave, 1);
        assert_eq!(r.before_join, 0);

        // A frame before the report is leakage; no frame after the leave is latency 0.
        let jx2 = vec![
            probe(1, 100_000, false),
            igmp(false, 120_000),
            probe(4, 210_000, false),
            igmp(true, 300_000),
        ];
        let r2 = analyse(&tx, &rx, &jx2);
        assert_eq!(r2.before_join, 1);
        assert_eq!(r2.leave_us, Some(0.0));
        assert_eq!(r2.after_leave, 0);
        assert_eq!(r2.join_us, Some(90.0));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 500.0);
        assert_eq!(percentile(&v, 99.9), 999.0);
        assert_eq!(percentile(&v, 100.0), 1000.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn table_shows_medians_and_ratio() {
        let run = |join: f64, p: f64| LatencyRun {
            join_us: Some(join),
            leave_us: Some(join / 2.0),
            frame_us: vec![p; 10],
            sent: 10,
            ..LatencyRun::default()
        };
        let all = vec![
            LatencySeries {
                kind: SwitchKind::XsnoopAfxdp,
                runs: vec![run(100.0, 30.0), run(300.0, 10.0), run(200.0, 20.0)],
            },
            LatencySeries {
                kind: SwitchKind::Bridge,
                runs: vec![run(50.0, 10.0)],
            },
            LatencySeries {
                kind: SwitchKind::Ceiling,
                runs: vec![LatencyRun {
                    frame_us: vec![5.0; 10],
                    sent: 10,
                    ..LatencyRun::default()
                }],
            },
        ];
        let md = markdown(&all, StreamPlan::default());
        assert!(
            md.contains("| xsnoop run, afxdp | 200.0 (100.0–300.0) | 100.0 (50.0–150.0) | 0 | 0 | 20.0 (10.0–30.0) |"),
            "{md}"
        );
        assert!(
            md.contains("| xsnoop run, afxdp / bridge | 4.00 | 4.00 | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| xsnoop run, afxdp / ceiling | 4.00 | 4.00 | 4.00 |"),
            "{md}"
        );
        assert!(md.contains("| Linux bridge / ceiling | 2.00 |"), "{md}");
        assert!(
            md.contains("| XDP ceiling | – | – | 0 | 0 | 5.0 (5.0–5.0) |"),
            "{md}"
        );
        assert_eq!(csv(&all).lines().count(), 6);
    }
}
