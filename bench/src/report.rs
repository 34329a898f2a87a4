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
                format!("Unicast, {len} B frames: host 1 → host 2 (MAC learned), 1 other host")
            }
        };
        let _ = writeln!(s, "## {title} (Mpps, median (min–max) of {runs} runs)\n");
        let leak_col = match traffic {
            Traffic::Multicast => "non-member frames",
            Traffic::Unicast => "frames to the other host",
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
                    m.leaked()
                );
            }
        }
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
        for (label, other) in [
            ("xsnoop / bridge", SwitchKind::Bridge),
            ("xsnoop / ceiling", SwitchKind::Ceiling),
        ] {
            let _ = write!(s, "| {label} |");
            for &n in &fanouts {
                let ratio = find(all, section, SwitchKind::Xsnoop, n)
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
    s
}

/// CSV header of [`csv`].
pub const CSV_HEADER: &str = "traffic,wire_bytes,switch,members,run,seconds,offered_pps,switch_port_rx_pps,member_port_drop_pps,delivered_total_pps,delivered_per_member_pps,loss,nonmember_frames,member_pps";

/// Every run as one CSV row (rates in frames per second; `member_pps` is `;`-separated).
pub fn csv(all: &[Measured]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for m in all {
        for (run, x) in m.samples.iter().enumerate() {
            let members: Vec<String> = x.member_pps.iter().map(|r| format!("{r:.0}")).collect();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{:.3},{:.0},{:.0},{:.0},{:.0},{:.0},{:.4},{},{}",
                match m.traffic {
                    Traffic::Multicast => "multicast",
                    Traffic::Unicast => "unicast",
                },
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
                members.join(";")
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
        }
    }

    #[test]
    fn tables_carry_medians_ratios_and_leaks() {
        let all = vec![
            Measured {
                traffic: Traffic::Multicast,
                kind: SwitchKind::Xsnoop,
                members: 2,
                wire_len: 64,
                samples: vec![
                    sample(4e6, &[1e6, 1e6], 0),
                    sample(4e6, &[0.5e6, 0.5e6], 0),
                    sample(4e6, &[2e6, 2e6], 0),
                ],
            },
            Measured {
                traffic: Traffic::Multicast,
                kind: SwitchKind::Bridge,
                members: 2,
                wire_len: 64,
                samples: vec![Sample {
                    member_drop_pps: 0.2e6,
                    ..sample(4e6, &[0.5e6, 0.5e6], 3)
                }],
            },
        ];
        let md = markdown(&all);
        assert!(
            md.contains("| xsnoop run | 2 | 2.000 (1.000–4.000) | 1.000 (0.500–2.000)"),
            "{md}"
        );
        assert!(md.contains("| 0.000 | 75.0% | 0 |"), "{md}");
        assert!(md.contains("| 0.200 | 87.5% | 3 |"), "{md}");
        assert!(md.contains("† The receivers dropped"), "{md}");
        assert!(
            md.contains("| xsnoop run | 2 | 2.000 (1.000–4.000) | "),
            "xsnoop not flagged: {md}"
        );
        assert!(
            md.contains("| Linux bridge | 2 | 1.000 (1.000–1.000)"),
            "{md}"
        );
        assert!(md.contains("| 3 |"), "bridge leak shown: {md}");
        assert!(md.contains("| xsnoop / bridge | 2.00 |"), "{md}");
        assert!(md.contains("| xsnoop / ceiling | – |"), "{md}");
        assert!(md.contains("## Multicast, 64 B frames"), "{md}");
        assert!(
            !md.contains("Unicast"),
            "no unicast section without unicast runs: {md}"
        );
        let c = csv(&all);
        assert_eq!(c.lines().count(), 1 + 4);
        assert!(c
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("multicast,64,xsnoop,2,1,2.000,4000000,4000000,0,2000000,1000000,"));
        assert!(c
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(",0.7500,0,1000000;1000000"));
    }
}
