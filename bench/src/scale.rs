//! Table scale (issue 5 §3): the 64 B multicast rate to one group while the switch holds 1,
//! 1 000 or 100 000 groups. A hash lookup should not care; a kernel map that fills up, or a
//! table rebuilt per change, would show here.
//!
//! The extra groups (239.128.0.0 + i) are joined on the non-member's port, so the measured
//! group's members and egress set stay the same at every step:
//! - xsnoop: IGMPv3 reports (MODE_IS_EXCLUDE {} records, RFC 3376 §4.2.12) injected from the
//!   non-member host; the beds run a 600 s query interval so no membership times out during
//!   the benchmark; the step starts once the table holds them all (and, in xdp mode, once the
//!   kernel path has synced or said its map is full);
//! - the Linux bridge: permanent MDB entries (`bridge -batch`), with `mcast_hash_max` raised so
//!   the table can hold them (at the default 4096 the bridge would turn snooping off).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use xsnoop_dataplane::wire::MacAddr;
use xsnoop_tests::Capture;

use crate::bed::{Bed, Delivery, Sample, SwitchKind, GROUP};
use crate::stats::Summary;

/// The `i`-th extra group (administratively scoped, never link-local, never [`GROUP`]).
pub fn extra_group(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(239, 128, 0, 0)).wrapping_add(i as u32))
}

/// The reports that join extra groups `0..count` from `src_ip`.
fn reports(count: usize, src_ip: Ipv4Addr) -> Result<Vec<Vec<u8>>> {
    let groups: Vec<Ipv4Addr> = (0..count).map(extra_group).collect();
    crate::memory::join_reports(&groups, MacAddr([0x02, 0xbe, 0x5c, 0, 0, 2]), src_ip)
}

/// All runs of one switch at one table size.
#[derive(Debug, Clone)]
pub struct ScaleSeries {
    /// The switch.
    pub kind: SwitchKind,
    /// Groups installed (the measured one included).
    pub groups: usize,
    /// One entry per run.
    pub samples: Vec<Sample>,
    /// What the switch said about its table at this step.
    pub note: String,
}

impl ScaleSeries {
    /// Delivered Mpps, all members together.
    pub fn total(&self) -> Summary {
        let v: Vec<f64> = self.samples.iter().map(|s| s.total_pps() / 1e6).collect();
        Summary::of(&v)
    }
}

/// Groups in xsnoop's table, summed over its VLANs (`xsnoop vlans`: a small answer, where
/// listing a 100 000-row MDB would itself load the daemon).
fn groups_of(d: &xsnoop_tests::Daemon) -> usize {
    d.show("vlans")
        .and_then(|v| {
            v.as_array()
                .map(|a| a.iter().filter_map(|x| x["groups"].as_u64()).sum::<u64>())
        })
        .map_or(0, |n| n as usize)
}

/// Joins extra groups so that `bed` holds `groups` in all, `before` being what it holds
/// already; returns a note on its table.
fn install(bed: &Bed, before: usize, groups: usize, timeout: Duration) -> Result<String> {
    let extra = groups.saturating_sub(1);
    let star = bed.star();
    let host = bed.members + 2;
    if let Some(d) = bed.daemon() {
        let frames = reports(extra, Ipv4Addr::new(10, bed.net(), 0, host as u8))?;
        let cap = Capture::open(star.host(host)?, &star.host_if(host)?)?;
        let deadline = Instant::now() + timeout;
        let (mut last, mut progress) = (usize::MAX, Instant::now());
        loop {
            // Send the reports again only when learning stalled (a report the punt path or
            // the policer dropped).
            if last == usize::MAX || progress.elapsed() > Duration::from_secs(3) {
                for (k, f) in frames.iter().enumerate() {
                    cap.inject(f)?;
                    // Pace the burst so the punt path's rings are not overrun.
                    if k % 16 == 15 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                progress = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(500));
            let have = groups_of(d);
            if have != last {
                (last, progress) = (have, Instant::now());
            }
            let stats = d.show("stats").unwrap_or_default();
            let kp = &stats["dataplane"]["kernel_path"];
            let synced = kp.is_null() || kp["keys"].as_u64().unwrap_or(0) as usize >= groups;
            let overflowed = kp["overflowed_vlans"]
                .as_array()
                .is_some_and(|v| !v.is_empty());
            if have >= groups && (synced || overflowed) {
                return Ok(if kp.is_null() {
                    format!("{have} groups in the table")
                } else {
                    format!(
                        "{have} groups in the table; kernel keys {}, VLANs left to AF_XDP because \
                         the kernel map is full {}, last sync {} µs",
                        kp["keys"], kp["overflowed_vlans"], kp["last_sync_us"]
                    )
                });
            }
            if Instant::now() > deadline {
                bail!(
                    "{} holds {have} of {groups} groups after {timeout:?} (kernel path: {kp})",
                    bed.kind.label()
                );
            }
        }
    }
    if bed.kind == SwitchKind::Bridge {
        let sw = star.switch()?;
        sw.ip(&[
            "link",
            "set",
            "benchbr",
            "type",
            "bridge",
            "mcast_hash_max",
            "262144",
        ])?;
        let port = star.port(host)?;
        let mut batch = String::new();
        for i in before.saturating_sub(1)..extra {
            let _ = writeln!(
                batch,
                "mdb add dev benchbr port {port} grp {} permanent",
                extra_group(i)
            );
        }
        let file = std::env::temp_dir().join(format!("xsnoop-bench-mdb-{}", bed.net()));
        std::fs::write(&file, batch).context("writing the bridge batch file")?;
        let path = file.to_string_lossy().into_owned();
        let res = xsnoop_tests::cmd::run(
            "ip",
            &[
                "netns",
                "exec",
                sw.name(),
                "bridge",
                "-force",
                "-batch",
                &path,
            ],
        );
        let _ = std::fs::remove_file(&file);
        res.context("bridge -batch mdb add")?;
        return Ok(format!(
            "mcast_hash_max 262144; {extra} permanent entries on the non-member's port"
        ));
    }
    Ok(String::new())
}

/// Measures every bed of `beds` at each table size of `steps` (ascending), `runs` rounds per
/// step, each round measuring every bed once.
pub fn measure(
    beds: &[&Bed],
    steps: &[usize],
    runs: u32,
    duration: Duration,
    idle: &dyn Fn(Duration) -> Result<crate::cpu::Busy>,
) -> Result<Vec<ScaleSeries>> {
    let frame = crate::livegen::test_frame(64, Ipv4Addr::new(10, 0, 0, 1), GROUP)?;
    let mut out = Vec::new();
    let mut before = 1;
    for &groups in steps {
        let mut series: Vec<ScaleSeries> = Vec::new();
        for bed in beds {
            let t = Instant::now();
            let note = install(bed, before, groups, Duration::from_secs(120))
                .with_context(|| format!("installing {groups} groups"))?;
            eprintln!(
                "bench: scale: {} holds {groups} groups after {:.1} s: {note}",
                bed.kind.label(),
                t.elapsed().as_secs_f64()
            );
            series.push(ScaleSeries {
                kind: bed.kind,
                groups,
                samples: Vec::new(),
                note,
            });
        }
        for round in 0..runs {
            let base = idle(duration)?;
            for (bed, s) in beds.iter().zip(series.iter_mut()) {
                let mut x = bed.sample_with(&frame, duration, Delivery::Members, None)?;
                x.idle_per_s = base;
                eprintln!(
                    "bench: scale {groups} groups run {} {:<18} delivered {:.3} Mpps, leaked {}",
                    round + 1,
                    bed.kind.label(),
                    x.total_pps() / 1e6,
                    x.leaked
                );
                s.samples.push(x);
            }
        }
        out.extend(series);
        before = groups;
    }
    Ok(out)
}

/// Markdown: delivered Mpps per switch and table size, and each size against one group.
pub fn markdown(all: &[ScaleSeries]) -> String {
    let mut steps: Vec<usize> = all.iter().map(|s| s.groups).collect();
    steps.sort_unstable();
    steps.dedup();
    let runs = all.iter().map(|s| s.samples.len()).min().unwrap_or(0);
    let mut s = format!(
        "## Table scale: 64 B multicast to one group with G groups installed (delivered Mpps, \
         median (min–max) of {runs} runs; the smallest fan-out)\n\n| switch |"
    );
    for g in &steps {
        let _ = write!(s, " G={g} |");
    }
    s.push_str(" largest / smallest | non-member frames |\n|---|");
    for _ in &steps {
        s.push_str("---|");
    }
    s.push_str("---|---|\n");
    for kind in SwitchKind::ALL {
        let of: Vec<&ScaleSeries> = steps
            .iter()
            .filter_map(|g| all.iter().find(|x| x.kind == kind && x.groups == *g))
            .collect();
        if of.is_empty() {
            continue;
        }
        let _ = write!(s, "| {} |", kind.label());
        for x in &of {
            let t = x.total();
            let _ = write!(s, " {:.3} ({:.3}–{:.3}) |", t.median, t.min, t.max);
        }
        let ratio = match (of.first(), of.last()) {
            (Some(a), Some(b)) if a.total().median > 0.0 => {
                format!("{:.2}", b.total().median / a.total().median)
            }
            _ => "–".to_owned(),
        };
        let leaked: u64 = of
            .iter()
            .flat_map(|x| x.samples.iter().map(|y| y.leaked))
            .sum();
        let _ = writeln!(s, " {ratio} | {leaked} |");
    }
    s.push_str("\nHow each table was filled:\n\n");
    for x in all.iter().filter(|x| !x.note.is_empty()) {
        let _ = writeln!(s, "- {}, G={}: {}", x.kind.label(), x.groups, x.note);
    }
    s.push('\n');
    s
}

/// Every run as CSV: switch, groups, run, delivered pps, non-member frames.
pub fn csv(all: &[ScaleSeries]) -> String {
    let mut s = String::from(
        "switch,groups,run,seconds,offered_pps,delivered_total_pps,nonmember_frames\n",
    );
    for x in all {
        for (i, y) in x.samples.iter().enumerate() {
            let _ = writeln!(
                s,
                "{},{},{},{:.3},{:.0},{:.0},{}",
                x.kind.id(),
                x.groups,
                i + 1,
                y.seconds,
                y.offered_pps,
                y.total_pps(),
                y.leaked
            );
        }
    }
    s
}

/// The table-scale plot (`table-scale.svg` in a full run) at `path`: delivered Mpps against
/// groups installed (log scale), one line per switch.
pub fn plot(all: &[ScaleSeries], path: &Path) -> Result<PathBuf> {
    use plotters::prelude::*;
    let path = path.to_path_buf();
    let err = |e: String| anyhow::anyhow!("plotting {}: {e}", path.display());
    let max_g = all.iter().map(|x| x.groups).max().unwrap_or(1).max(10) as f64;
    let top = all
        .iter()
        .map(|x| x.total().max)
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.15;
    {
        let root = SVGBackend::new(&path, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "64 B multicast: delivered Mpps vs groups installed",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((0.5f64..max_g * 2.0).log_scale(), 0.0f64..top)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("groups installed (log)")
            .y_desc("Mpps delivered, median and min-max")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for kind in SwitchKind::ALL {
            let mut pts: Vec<(f64, Summary)> = all
                .iter()
                .filter(|x| x.kind == kind)
                .map(|x| (x.groups as f64, x.total()))
                .collect();
            if pts.is_empty() {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = crate::plot::colour(kind);
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|(g, s)| (*g, s.median)),
                    c.stroke_width(2),
                ))
                .map_err(|e| err(e.to_string()))?
                .label(kind.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|(g, s)| {
                    ErrorBar::new_vertical(*g, s.min, s.median, s.max, c.filled(), 8)
                }))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pps: f64) -> Sample {
        Sample {
            offered_pps: 4e6,
            port_rx_pps: pps,
            member_drop_pps: 0.0,
            member_pps: vec![pps],
            leaked: 0,
            seconds: 2.0,
            busy: crate::cpu::Busy::default(),
            idle_per_s: crate::cpu::Busy::default(),
            flood: None,
            switch_threads_s: 0.0,
            switch_threads_user_s: 0.0,
        }
    }

    #[test]
    fn reports_cover_every_extra_group_once_and_never_the_measured_one() {
        let frames = reports(1000, Ipv4Addr::new(10, 1, 0, 3)).unwrap();
        assert_eq!(frames.len(), 6, "1000 groups in reports of 180 records");
        assert!(frames.iter().all(|f| f.len() <= 1514));
        assert_eq!(extra_group(0), Ipv4Addr::new(239, 128, 0, 0));
        assert_eq!(extra_group(99_999), Ipv4Addr::new(239, 129, 134, 159));
        assert!((0..100_000).all(|i| extra_group(i) != GROUP));
    }

    #[test]
    fn table_and_svg_show_each_step_and_the_ratio() {
        let mk = |kind, groups, pps: &[f64]| ScaleSeries {
            kind,
            groups,
            samples: pps.iter().map(|p| sample(*p)).collect(),
            note: format!("{groups} installed"),
        };
        let all = vec![
            mk(SwitchKind::XsnoopXdp, 1, &[2e6, 1e6, 3e6]),
            mk(SwitchKind::XsnoopXdp, 100_000, &[1e6, 1e6, 1e6]),
            mk(SwitchKind::Bridge, 1, &[0.5e6]),
            mk(SwitchKind::Bridge, 100_000, &[0.5e6]),
        ];
        let md = markdown(&all);
        assert!(
            md.contains(
                "| xsnoop run, xdp | 2.000 (1.000–3.000) | 1.000 (1.000–1.000) | 0.50 | 0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| Linux bridge | 0.500 (0.500–0.500) | 0.500 (0.500–0.500) | 1.00 |"),
            "{md}"
        );
        assert!(
            md.contains("- xsnoop run, xdp, G=100000: 100000 installed"),
            "{md}"
        );
        assert_eq!(csv(&all).lines().count(), 1 + 8);
        let dir = std::env::temp_dir().join(format!("xsnoop-bench-scale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg =
            std::fs::read_to_string(plot(&all, &dir.join("table-scale.svg")).unwrap()).unwrap();
        assert!(svg.contains("xsnoop run, xdp") && svg.contains("Linux bridge"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
