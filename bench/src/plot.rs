//! SVG plots of the multicast results: delivered Mpps (median, with min–max bars) against the
//! number of members, one line per switch (both xsnoop modes, the bridge, the ceiling), one file
//! per frame size — the shape of the fan-out
//! curves is easier to read than the table.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::bed::SwitchKind;
use crate::report::{Measured, Traffic};

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
#[error("plotting {path}: {detail}")]
pub struct PlotError {
    /// The SVG file.
    pub path: PathBuf,
    /// What plotters said.
    pub detail: String,
}

/// The colour of a switch in every plot.
pub fn colour(kind: SwitchKind) -> RGBColor {
    match kind {
        SwitchKind::XsnoopAfxdp => RGBColor(0xff, 0x7f, 0x0e),
        SwitchKind::XsnoopXdp => RGBColor(0xd6, 0x27, 0x28),
        SwitchKind::AfxdpC => RGBColor(0x94, 0x67, 0xbd),
        SwitchKind::Bridge => RGBColor(0x1f, 0x77, 0xb4),
        SwitchKind::Ceiling => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// Writes one plot into `dir` for every multicast frame size in `all`, named `name(len)`
/// (`multicast-<len>B.svg` for a full run); returns the files written.
pub fn write_all(
    all: &[Measured],
    dir: &Path,
    name: impl Fn(usize) -> String,
) -> Result<Vec<PathBuf>, PlotError> {
    let mut sizes: Vec<usize> = all
        .iter()
        .filter(|m| m.traffic == Traffic::Multicast)
        .map(|m| m.wire_len)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut written = Vec::new();
    for len in sizes {
        let path = dir.join(name(len));
        let of_size: Vec<&Measured> = all
            .iter()
            .filter(|m| m.traffic == Traffic::Multicast && m.wire_len == len)
            .collect();
        plot(&of_size, len, &path).map_err(|detail| PlotError {
            path: path.clone(),
            detail,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn plot(data: &[&Measured], len: usize, path: &Path) -> Result<(), String> {
    let max_n = data.iter().map(|m| m.members).max().unwrap_or(1).max(1);
    let top = data
        .iter()
        .map(|m| m.total().max)
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.15;
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{len} B multicast: delivered Mpps (all members) vs members"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5f64..(max_n as f64 + 0.5), 0.0f64..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("members (N)")
        .y_desc("Mpps delivered, median and min-max")
        .x_labels(max_n + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for kind in SwitchKind::ALL {
        let mut points: Vec<(usize, crate::stats::Summary)> = data
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| (m.members, m.total()))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by_key(|(n, _)| *n);
        let c = colour(kind);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(n, s)| (*n as f64, s.median)),
                c.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(kind.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|(n, s)| {
                ErrorBar::new_vertical(*n as f64, s.min, s.median, s.max, c.filled(), 8)
            }))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bed::Sample;

    #[test]
    fn one_svg_per_multicast_size_with_every_switch() {
        let sample = |pps: f64| Sample {
            offered_pps: 5e6,
            port_rx_pps: pps,
            member_drop_pps: 0.0,
            member_pps: vec![pps],
            leaked: 0,
            seconds: 1.0,
            busy: crate::cpu::Busy::default(),
            idle_per_s: crate::cpu::Busy::default(),
            flood: None,
            switch_threads_s: 0.0,
            switch_threads_user_s: 0.0,
        };
        let mut all = Vec::new();
        for (kind, pps) in [
            (SwitchKind::XsnoopAfxdp, 0.5e6),
            (SwitchKind::XsnoopXdp, 1.5e6),
            (SwitchKind::Bridge, 0.4e6),
            (SwitchKind::Ceiling, 2.5e6),
        ] {
            for n in [1, 2] {
                all.push(Measured {
                    traffic: Traffic::Multicast,
                    kind,
                    members: n,
                    wire_len: 64,
                    samples: vec![sample(pps), sample(pps * 1.1)],
                    note: String::new(),
                });
            }
        }
        all.push(Measured {
            traffic: Traffic::Unicast,
            kind: SwitchKind::XsnoopAfxdp,
            members: 1,
            wire_len: 64,
            samples: vec![sample(1e6)],
            note: String::new(),
        });
        let dir = std::env::temp_dir().join(format!("xsnoop-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = write_all(&all, &dir, |len| format!("multicast-{len}B.svg")).unwrap();
        assert_eq!(files, vec![dir.join("multicast-64B.svg")]);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for label in [
            "xsnoop run, afxdp",
            "xsnoop run, xdp",
            "Linux bridge",
            "XDP ceiling",
            "members (N)",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
