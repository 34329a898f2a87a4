//! Turning samples into the tables `make bench` prints and stores: markdown with medians, min and
//! max (bench/results/latest.md) and every single run as CSV (bench/results/latest.csv), so the
//! medians can be checked and re-plotted.

use std::fmt::Write as _;

use crate::bed::{Sample, SwitchKind};
use crate::stats::Summary;

/// What the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// IPv4 multicast to the group the members joined.
    Multicast,
    /// Unicast from host 1 to host 2 (whose MAC the switch has learned).
    Unicast,
    /// Broadcast from host 1 to every other host.
    Broadcast,
    /// IPv4 multicast to the group while host N+3 floods IGMP reports for random groups.
    MulticastFlood,
}

impl Traffic {
    /// Name in the CSV.
    pub fn id(self) -> &'static str {
        match self {
            Traffic::Multicast => "multicast",
            Traffic::Unicast => "unicast",
            Traffic::Broadcast => "broadcast",
            Traffic::MulticastFlood => "multicast_during_report_flood",
        }
    }
}

/// All runs of one switch at one fan-out, traffic kind and frame size.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Multicast or unicast.
    pub traffic: Traffic,
    /// The switch.
    pub kind: SwitchKind,
    /// Member hosts.
    pub members: usize,
    /// Frame length on the wire, FCS included.
    pub wire_len: usize,
    /// One entry per run.
    pub samples: Vec<Sample>,
    /// What the switch's control plane looked like afterwards (the flood benchmark), or empty.
    pub note: String,
}

impl Measured {
    fn summary(&self, f: impl Fn(&Sample) -> f64) -> Summary {
        let v: Vec<f64> = self.samples.iter().map(f).collect();
        Summary::of(&v)
    }

    /// Delivered Mpps, all members together.
    pub fn total(&self) -> Summary {
        self.summary(|s| s.total_pps() / 1e6)
    }

    /// Machine-wide busy CPU seconds per million delivered frames.
    pub fn cpu(&self) -> Summary {
        self.summary(Sample::cpu_per_mframe)
    }

    /// The same less the idle beds' busy time.
    pub fn net_cpu(&self) -> Summary {
        self.summary(Sample::net_cpu_per_mframe)
    }

    /// Busy seconds of the switch CPU per million delivered frames.
    pub fn switch_cpu(&self) -> Summary {
        self.summary(Sample::switch_cpu_per_mframe)
    }

    /// CPU seconds of the switch's own threads per million delivered frames.
    pub fn switch_threads(&self) -> Summary {
        self.summary(Sample::switch_threads_per_mframe)
    }

    /// The user-space part of [`Measured::switch_threads`].
    pub fn switch_threads_user(&self) -> Summary {
        self.summary(Sample::switch_threads_user_per_mframe)
    }

    /// Runs whose idle window was as busy as the run itself (no net figure).
    fn net_cpu_unknown(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| s.net_cpu_per_mframe().is_nan())
            .count()
    }

    /// Offered flood reports per second (0 without a flood).
    pub fn flood_rate(&self) -> Summary {
        self.summary(|s| s.flood.map_or(0.0, |f| f.rate()))
    }

    /// Whether the receivers, not the switch, limited delivery: the member ports dropped more
    /// than 5% of what the switch sent (median over runs).
    pub fn receiver_limited(&self) -> bool {
        let drops = self.summary(|s| s.member_drop_pps).median;
        let delivered = self.summary(|s| s.total_pps()).median;
        drops > 0.05 * (drops + delivered)
    }

    /// Benchmark frames that reached the non-member, over all runs.
    pub fn leaked(&self) -> u64 {
        self.samples.iter().map(|s| s.leaked).sum()
    }
}

fn fmt3(s: Summary) -> String {
    format!("{:.3} ({:.3}–{:.3})", s.median, s.min, s.max)
}

fn fmt2(s: Summary) -> String {
    if s.median.is_finite() {
        format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
    } else {
        "–".to_owned()
    }
}

fn find(
    all: &[Measured],
    (traffic, len): (Traffic, usize),
    kind: SwitchKind,
    n: usize,
) -> Option<&Measured> {
    all.iter()
        .find(|m| m.traffic == traffic && m.kind == kind && m.members == n && m.wire_len == len)
}

/// Markdown: one table per (traffic, frame size), in the order measured, each followed by the
/// ratios of medians.
pub fn markdown(all: &[Measured]) -> String {
    let mut sections: Vec<(Traffic, usize)> = Vec::new();
    for m in all {
        if !sections.contains(&(m.traffic, m.wire_len)) {
            sections.push((m.traffic, m.wire_len));
        }
    }
    let mut s = String::new();
    for section in sections {
        let (traffic, len) = section;
        let of_section = || {
            all.iter()
                .filter(move |m| m.traffic == traffic && m.wire_len == len)
        };
        let runs = of_section().map(|m| m.samples.len()).min().unwrap_or(0);
        let mut fanouts: Vec<usize> = of_section().map(|m| m.members).collect();
        fanouts.sort_unstable();
        fanouts.dedup();
        let title = match traffic {
            Traffic::Multicast => {
                format!("Multicast, {len} B frames: 1 sender → N members + 1 non-member")
            }
            Traffic::Unicast => {
                format!("Unicast, {len} B frames: host 1 → host 2 (MAC learned); every other host counts as leakage")
            }
            Traffic::Broadcast => format!(
                "Broadcast, {len} B frames: host 1 → every other host (N members + non-member + \
                 flooder; \"per member\" = per receiving host)"
            ),
            Traffic::MulticastFlood => format!(
                "Multicast, {len} B frames, while host N+3 floods IGMPv3 reports for random groups"
            ),
        };
        let _ = writeln!(s, "## {title} (Mpps, median (min–max) of {runs} runs)\n");
        let leak_col = match traffic {
            Traffic::Multicast | Traffic::MulticastFlood => "non-member frames",
            Traffic::Unicast => "frames to the other hosts",
            Traffic::Broadcast => "–",
        };
        let _ = writeln!(s, "| switch | N | delivered total | per member | offered | switch port rx | dropped towards members | loss vs offered | {leak_col} |");
        s.push_str("|---|---|---|---|---|---|---|---|---|\n");
        let mut any_limited = false;
        for kind in SwitchKind::ALL {
            for &n in &fanouts {
                let Some(m) = find(all, section, kind, n) else {
                    continue;
                };
                let drops = m.summary(|x| x.member_drop_pps / 1e6).median;
                let limited = m.receiver_limited();
                any_limited |= limited;
                let _ = writeln!(
                    s,
                    "| {} | {n} | {}{} | {} | {} | {} | {:.3} | {:.1}% | {} |",
                    kind.label(),
                    fmt3(m.total()),
                    if limited { " †" } else { "" },
                    fmt3(m.summary(|x| x.per_member_pps() / 1e6)),
                    fmt3(m.summary(|x| x.offered_pps / 1e6)),
                    fmt3(m.summary(|x| x.port_rx_pps / 1e6)),
                    drops,
                    m.summary(|x| x.loss() * 100.0).median,
                    if traffic == Traffic::Broadcast {
                        "–".to_owned()
                    } else {
                        m.leaked().to_string()
                    }
                );
            }
        }
        if traffic == Traffic::MulticastFlood {
            flood_table(&mut s, all, len, &fanouts);
        }
        cpu_table(&mut s, all, section, &fanouts);
        if any_limited {
            s.push_str(
                "\n† The receivers dropped more than 5% of what that switch sent them (column \
                 *dropped towards members*): the CPU shared by the generator and the receivers, \
                 not the switch, limited delivery, so the switch itself forwards more than \
                 shown.\n",
            );
        }
        s.push_str("\n| ratio of medians (delivered total) |");
        for n in &fanouts {
            let _ = write!(s, " N={n} |");
        }
        s.push_str("\n|---|");
        for _ in &fanouts {
            s.push_str("---|");
        }
        s.push('\n');
        let pairs = SwitchKind::XSNOOP
            .iter()
            .flat_map(|&x| {
                [SwitchKind::Bridge, SwitchKind::Ceiling]
                    .into_iter()
                    .map(move |o| (x, o))
            })
            // Issue 7's target for the afxdp mode: at least as fast as the C forwarder.
            .chain([(SwitchKind::XsnoopAfxdp, SwitchKind::AfxdpC)]);
        for (mine, other) in pairs {
            let _ = write!(s, "| {} / {} |", mine.label(), other.label());
            for &n in &fanouts {
                let ratio = find(all, section, mine, n)
                    .zip(find(all, section, other, n))
                    .map(|(a, b)| (a.total().median, b.total().median))
                    .filter(|(_, b)| *b > 0.0)
                    .map(|(a, b)| format!(" {:.2} |", a / b))
                    .unwrap_or_else(|| " – |".to_owned());
                s.push_str(&ratio);
            }
            s.push('\n');
        }
        s.push('\n');
    }
    if !all.is_empty() {
        s.push_str(CPU_NOTE);
        s.push_str("\n\n");
    }
    s
}

/// The flood section's second table: the flood offered, the same bed's rate without the flood
/// (the plain multicast section, same size and N), their ratio, and the control plane after.
fn flood_table(s: &mut String, all: &[Measured], len: usize, fanouts: &[usize]) {
    s.push_str(
        "\n| switch | N | reports offered per s | delivered, flood | delivered, no flood | \
         flood / no flood | control plane after the flood runs |\n|---|---|---|---|---|---|---|\n",
    );
    for kind in SwitchKind::ALL {
        for &n in fanouts {
            let Some(m) = find(all, (Traffic::MulticastFlood, len), kind, n) else {
                continue;
            };
            let calm = find(all, (Traffic::Multicast, len), kind, n).map(Measured::total);
            let ratio = calm.filter(|c| c.median > 0.0).map_or("–".to_owned(), |c| {
                format!("{:.2}", m.total().median / c.median)
            });
            let _ = writeln!(
                s,
                "| {} | {n} | {:.0} | {:.3} | {} | {ratio} | {} |",
                kind.label(),
                m.flood_rate().median,
                m.total().median,
                calm.map_or("–".to_owned(), |c| format!("{:.3}", c.median)),
                if m.note.is_empty() { "–" } else { &m.note },
            );
        }
    }
}

/// CPU cost per million delivered frames, one row per switch and N.
fn cpu_table(s: &mut String, all: &[Measured], section: (Traffic, usize), fanouts: &[usize]) {
    s.push_str(
        "\n| switch | N | busy CPU s per M delivered, all CPUs ‡ | same, less the idle beds ‡ | \
         switch CPU ‡ | switch's own threads ‡ | of which user space ‡ |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for kind in SwitchKind::ALL {
        for &n in fanouts {
            if let Some(m) = find(all, section, kind, n) {
                let unknown = m.net_cpu_unknown();
                let net = if unknown == m.samples.len() {
                    "– (idle windows as busy as the runs)".to_owned()
                } else if unknown > 0 {
                    format!(
                        "{} ({unknown} of {} runs: idle as busy)",
                        fmt2(m.net_cpu()),
                        m.samples.len()
                    )
                } else {
                    fmt2(m.net_cpu())
                };
                let _ = writeln!(
                    s,
                    "| {} | {n} | {} | {net} | {} | {} | {} |",
                    kind.label(),
                    fmt2(m.cpu()),
                    fmt2(m.switch_cpu()),
                    fmt2(m.switch_threads()),
                    fmt2(m.switch_threads_user())
                );
            }
        }
    }
}

/// The note under every CPU table.
pub const CPU_NOTE: &str = "‡ CPU seconds per million delivered frames: busy time from \
`/proc/stat` (every non-idle, non-iowait state, steal included) of **all** CPUs over the \
generator's run, divided by the frames the members received. It includes the generator and \
the counting receivers (the same work for every switch on a bed, but the generator runs \
flat out, so on a saturated bed the all-CPU figure is roughly the machine's CPU budget over \
the delivered rate) and anything else the machine ran meanwhile. *Less the idle beds*: \
before each round the same beds sit for as long with no traffic, and that round's idle busy \
time per second is subtracted: sound only as far as the background stayed the same. *Switch \
CPU*: the busy time of the CPU the switch is pinned to, whoever used it. *Switch's own \
threads*: utime + stime (`/proc/<tid>/task/<tid>/stat`, the thread's own) of the switch's threads only: the threaded NAPI \
of its ingress and flood ports (where the bridge and the ceiling do all their forwarding and \
xsnoop's XDP program runs) and every thread of `xsnoop run` (of the AF_XDP C forwarder: its \
one thread); the cost of delivering into the \
receivers' veths is in the receivers' NAPI, not here. This is the figure to compare between \
switches: background load does not enter it. *Of which user space*: the utime part of it, the \
switch's own code (kernel NAPI threads have none, so the bridge and the ceiling show 0): it \
separates a userspace switch's own per-frame work from the kernel work (syscalls, the AF_XDP \
rings, NAPI) it shares with any AF_XDP program.";

/// CSV header of [`csv`].
pub const CSV_HEADER: &str = "traffic,wire_bytes,switch,members,run,seconds,offered_pps,switch_port_rx_pps,member_port_drop_pps,delivered_total_pps,delivered_per_member_pps,loss,nonmember_frames,busy_cpu_s,switch_cpu_busy_s,idle_busy_cpu_per_s,idle_switch_cpu_busy_per_s,switch_threads_cpu_s,flood_reports_per_s,member_pps,switch_threads_user_cpu_s";

/// Every run as one CSV row (rates in frames per second; `member_pps` is `;`-separated).
pub fn csv(all: &[Measured]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for m in all {
        for (run, x) in m.samples.iter().enumerate() {
            let members: Vec<String> = x.member_pps.iter().map(|r| format!("{r:.0}")).collect();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{:.3},{:.0},{:.0},{:.0},{:.0},{:.0},{:.4},{},{:.2},{:.2},{:.3},{:.3},{:.2},{:.0},{},{:.2}",
                m.traffic.id(),
                m.wire_len,
                m.kind.id(),
                m.members,
                run + 1,
                x.seconds,
                x.offered_pps,
                x.port_rx_pps,
                x.member_drop_pps,
                x.total_pps(),
                x.per_member_pps(),
                x.loss(),
                x.leaked,
                x.busy.all_s,
                x.busy.one_s,
                x.idle_per_s.all_s,
                x.idle_per_s.one_s,
                x.switch_threads_s,
                x.flood.map_or(0.0, |f| f.rate()),
                members.join(";"),
                x.switch_threads_user_s
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offered: f64, members: &[f64], leaked: u64) -> Sample {
        Sample {
            offered_pps: offered,
            port_rx_pps: offered,
            member_drop_pps: 0.0,
            member_pps: members.to_vec(),
            leaked,
            seconds: 2.0,
            busy: crate::cpu::Busy {
                all_s: 3.0,
                one_s: 1.5,
            },
            idle_per_s: crate::cpu::Busy {
                all_s: 0.5,
                one_s: 0.25,
            },
            flood: None,
            switch_threads_s: 1.0,
            switch_threads_user_s: 0.4,
        }
    }

    #[test]
    fn a_background_busier_than_the_run_gives_no_net_cpu_figure() {
        let busy_idle = Sample {
            idle_per_s: crate::cpu::Busy {
                all_s: 2.0,
                one_s: 1.0,
            },
            ..sample(4e6, &[1e6], 0)
        };
        let m = |samples: Vec<Sample>| Measured {
            traffic: Traffic::Unicast,
            kind: SwitchKind::Bridge,
            members: 1,
            wire_len: 64,
            samples,
            note: String::new(),
        };
        let md = markdown(&[m(vec![busy_idle.clone()])]);
        assert!(
            md.contains("| 1.50 (1.50–1.50) | – (idle windows as busy as the runs) |"),
            "{md}"
        );
        let md = markdown(&[m(vec![busy_idle, sample(4e6, &[1e6], 0)])]);
        assert!(
            md.contains("| 1.00 (1.00–1.00) (1 of 2 runs: idle as busy) |"),
            "{md}"
        );
    }

    #[test]
    fn tables_carry_medians_ratios_and_leaks() {
        let all = vec![
            Measured {
                traffic: Traffic::Multicast,
                kind: SwitchKind::XsnoopAfxdp,
                members: 2,
                wire_len: 64,
                samples: vec![
                    sample(4e6, &[1e6, 1e6], 0),
                    sample(4e6, &[0.5e6, 0.5e6], 0),
                    sample(4e6, &[2e6, 2e6], 0),
                ],
                note: String::new(),
            },
            Measured {
                traffic: Traffic::Multicast,
                kind: SwitchKind::XsnoopXdp,
                members: 2,
                wire_len: 64,
                samples: vec![sample(4e6, &[1.5e6, 1.5e6], 0)],
                note: String::new(),
            },
            Measured {
                traffic: Traffic::Multicast,
                kind: SwitchKind::AfxdpC,
                members: 2,
                wire_len: 64,
                samples: vec![sample(4e6, &[0.8e6, 0.8e6], 0)],
                note: String::new(),
            },
            Measured {
                traffic: Traffic::Multicast,
                kind: SwitchKind::Bridge,
                members: 2,
                wire_len: 64,
                samples: vec![Sample {
                    member_drop_pps: 0.2e6,
                    switch_threads_user_s: 0.0,
                    ..sample(4e6, &[0.5e6, 0.5e6], 3)
                }],
                note: String::new(),
            },
            Measured {
                traffic: Traffic::MulticastFlood,
                kind: SwitchKind::XsnoopXdp,
                members: 2,
                wire_len: 64,
                samples: vec![Sample {
                    flood: Some(crate::flood::FloodRun {
                        reports: 200_000,
                        elapsed: std::time::Duration::from_secs(2),
                    }),
                    ..sample(4e6, &[0.75e6, 0.75e6], 0)
                }],
                note: "answers; 12 MDB rows".to_owned(),
            },
        ];
        let md = markdown(&all);
        assert!(
            md.contains("| xsnoop run, afxdp | 2 | 2.000 (1.000–4.000) | 1.000 (0.500–2.000)"),
            "{md}"
        );
        assert!(md.contains("| 0.000 | 75.0% | 0 |"), "{md}");
        assert!(md.contains("| 0.200 | 87.5% | 3 |"), "{md}");
        assert!(md.contains("† The receivers dropped"), "{md}");
        assert!(
            md.contains("| xsnoop run, afxdp | 2 | 2.000 (1.000–4.000) | "),
            "xsnoop not flagged: {md}"
        );
        assert!(
            md.contains("| Linux bridge | 2 | 1.000 (1.000–1.000)"),
            "{md}"
        );
        assert!(md.contains("| 3 |"), "bridge leak shown: {md}");
        assert!(
            md.contains("| xsnoop run, afxdp / Linux bridge | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| xsnoop run, xdp / Linux bridge | 3.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| xsnoop run, afxdp / XDP ceiling | – |"),
            "{md}"
        );
        assert!(md.contains("| xsnoop run, xdp / XDP ceiling | – |"), "{md}");
        // Issue 7's target: afxdp (2.0 Mpps) over the C forwarder (1.6).
        assert!(
            md.contains("| xsnoop run, afxdp / AF_XDP C forwarder | 1.25 |"),
            "{md}"
        );
        // The forwarder's rows come between xsnoop's xdp mode and the bridge, in the rate
        // table and in the CPU table (3 busy s / 3.2 M frames).
        let at = |row: &str| md.find(row).unwrap_or_else(|| panic!("no {row:?} in {md}"));
        assert!(at("| xsnoop run, xdp | 2 | 3.000") < at("| AF_XDP C forwarder | 2 | 1.600"));
        assert!(at("| AF_XDP C forwarder | 2 | 1.600") < at("| Linux bridge | 2 | 1.000"));
        assert!(
            md.contains("| AF_XDP C forwarder | 2 | 0.94 (0.94–0.94) |"),
            "{md}"
        );
        // CPU: 3 busy s over 2 s × 2 Mpps delivered = 4 M frames → 0.75 s per M; less the
        // idle 0.5 s/s × 2 s → 0.5; switch CPU 1.5 / 4 = 0.375; the switch's threads 1.0 / 4,
        // of which user space 0.4 / 4 = 0.1 (0.4 / 8 M to 0.4 / 2 M over the runs).
        assert!(
            md.contains("| xsnoop run, afxdp | 2 | 0.75 (0.38–1.50) | 0.50 (0.25–1.00) | 0.38 (0.19–0.75) | 0.25 (0.12–0.50) | 0.10 (0.05–0.20) |"),
            "{md}"
        );
        // The bridge's threads are all kernel: 1.0 s over 2 M frames, none of it user space.
        assert!(
            md.contains("| Linux bridge | 2 | 1.50 (1.50–1.50) | 1.00 (1.00–1.00) | 0.75 (0.75–0.75) | 0.50 (0.50–0.50) | 0.00 (0.00–0.00) |"),
            "{md}"
        );
        assert!(
            md.contains("| switch's own threads ‡ | of which user space ‡ |"),
            "{md}"
        );
        assert!(md.contains("*Of which user space*"), "{md}");
        // The flood table: 100k reports/s offered, 1.5 Mpps under the flood vs 3.0 without.
        assert!(
            md.contains(
                "| xsnoop run, xdp | 2 | 100000 | 1.500 | 3.000 | 0.50 | answers; 12 MDB rows |"
            ),
            "{md}"
        );
        assert!(md.contains("‡ CPU seconds per million"), "{md}");
        assert!(md.contains("## Multicast, 64 B frames"), "{md}");
        assert!(
            !md.contains("Unicast"),
            "no unicast section without unicast runs: {md}"
        );
        let c = csv(&all);
        assert_eq!(c.lines().count(), 1 + 7);
        // The user-space column is the header's last, and every row has as many fields.
        assert!(CSV_HEADER.ends_with(",member_pps,switch_threads_user_cpu_s"));
        let fields = CSV_HEADER.split(',').count();
        assert!(c.lines().all(|l| l.split(',').count() == fields), "{c}");
        assert!(
            c.lines()
                .any(|l| l.starts_with("multicast,64,bridge,2,1,") && l.ends_with(",0.00")),
            "{c}"
        );
        assert!(
            c.lines()
                .any(|l| l.starts_with("multicast,64,afxdp-c,2,1,")),
            "{c}"
        );
        let first = c.lines().nth(1).unwrap();
        assert!(
            first.starts_with(
                "multicast,64,xsnoop-afxdp,2,1,2.000,4000000,4000000,0,2000000,1000000,"
            ),
            "{first}"
        );
        assert!(
            first.ends_with(",0.7500,0,3.00,1.50,0.500,0.250,1.00,0,1000000;1000000,0.40"),
            "{first}"
        );
        assert!(c
            .lines()
            .last()
            .unwrap()
            .starts_with("multicast_during_report_flood,64,xsnoop-xdp,2,1,"));
        assert!(c.lines().last().unwrap().contains(",100000,"));
    }
}
