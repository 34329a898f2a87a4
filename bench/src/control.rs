//! Control-plane and table-lookup rates: what the switch CPU and the dataplane's table sustain,
//! with real frames through the real code paths. IGMP report frames built by the codecs are
//! parsed, punted and handed to the engine; multicast lookups run against tables of 1, 1 000 and
//! 100 000 groups. Every figure is the median of [`RUNS`] runs, with min and max.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::stats::Summary;
use xsnoop_control::engine::{Engine, EngineConfig, PortConfig, VlanConfig};
use xsnoop_control::punt::deliver;
use xsnoop_dataplane::wire::{
    to_vec, MacAddr, RecordKind, RecordSpec, ReportV2Builder, ReportV3Builder,
};
use xsnoop_dataplane::{ForwardingTable, GroupEntry, PortSet, VlanTable};

/// Runs per control-plane figure (median, min and max of them are reported).
pub const RUNS: usize = 5;
const PORTS: u16 = 8;

fn group(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xef00_0000 | (i & 0x00ff_ffff))
}

fn host(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff))
}

/// Median, min and max of `RUNS` measurements of `f`, which returns (work items, elapsed).
fn measure(mut f: impl FnMut() -> (u64, Duration)) -> Summary {
    let rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let (n, d) = f();
            n as f64 / d.as_secs_f64()
        })
        .collect();
    Summary::of(&rates)
}

fn engine() -> Result<Engine> {
    let config = EngineConfig {
        ports: (0..PORTS)
            .map(|p| PortConfig::access(&format!("p{p}"), 1))
            .collect(),
        vlans: vec![VlanConfig::new(1)],
        ..EngineConfig::default()
    };
    Ok(Engine::new(config, Duration::ZERO)?)
}

/// Report frames for `groups` distinct groups: v2, or v3 with one IS_EX record of `sources`.
fn report_frames(groups: u32, v3_sources: Option<usize>) -> Result<Vec<Vec<u8>>> {
    let mac = MacAddr([2, 0, 0, 0, 0, 1]);
    (0..groups)
        .map(|i| {
            let frame = match v3_sources {
                None => to_vec(&ReportV2Builder {
                    src_mac: mac,
                    src_ip: host(i),
                    group: group(i),
                    vlan: None,
                })?,
                Some(n) => {
                    let sources: Vec<Ipv4Addr> =
                        (0..n as u32).map(|s| host(0x10_0000 + s)).collect();
                    to_vec(&ReportV3Builder {
                        src_mac: mac,
                        src_ip: host(i),
                        records: &[RecordSpec {
                            kind: RecordKind::ModeIsInclude,
                            group: group(i),
                            sources: &sources,
                            aux_data: &[],
                        }],
                        vlan: None,
                    })?
                }
            };
            Ok(frame)
        })
        .collect()
}

/// Report frames per second through parse → punt → engine, spread over ports and groups.
fn bench_reports(v3_sources: Option<usize>) -> Result<Summary> {
    let frames = report_frames(10_000, v3_sources)?;
    let mut failed = None;
    let r = measure(|| {
        let mut e = match engine() {
            Ok(e) => e,
            Err(err) => {
                failed = Some(err);
                return (0, Duration::from_secs(1));
            }
        };
        let start = Instant::now();
        let mut n = 0u64;
        for round in 0..5u16 {
            for (i, f) in frames.iter().enumerate() {
                let port = (i as u16).wrapping_add(round) % PORTS;
                let now = Duration::from_millis(u64::from(round) * 1000);
                black_box(deliver(&mut e, now, port, 1, f));
                n += 1;
            }
        }
        (n, start.elapsed())
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

/// A table with `groups` registered groups, each with two member ports.
fn table(groups: u32) -> ForwardingTable {
    let mut v = VlanTable {
        ports: (0..PORTS).collect(),
        snooping: true,
        mrouters: PortSet::single(7),
        ..VlanTable::default()
    };
    for i in 0..groups {
        v.groups.insert(
            group(i),
            GroupEntry {
                any_source: [(i % 6) as u16, ((i + 1) % 6) as u16].into_iter().collect(),
                ..GroupEntry::default()
            },
        );
    }
    ForwardingTable {
        vlans: [(1, v)].into_iter().collect(),
    }
}

/// Multicast egress lookups per second, cycling through every installed group.
fn bench_lookups(groups: u32) -> Summary {
    let t = table(groups);
    let keys: Vec<Ipv4Addr> = (0..groups.min(65_536)).map(group).collect();
    measure(|| {
        let start = Instant::now();
        let mut n = 0u64;
        let mut acc = 0usize;
        for _ in 0..(2_000_000 / keys.len()).max(1) {
            for g in &keys {
                acc += t.multicast_egress(1, 0, host(1), *g).0.len();
                n += 1;
            }
        }
        black_box(acc);
        (n, start.elapsed())
    })
}

/// One measured control-plane figure.
#[derive(Debug, Clone)]
pub struct ControlRow {
    /// What was measured.
    pub name: String,
    /// Unit of the figures (after dividing by 1e6).
    pub unit: &'static str,
    /// Median, min and max rate in items per second.
    pub rate: Summary,
}

/// Runs every control-plane benchmark (single-threaded, a few seconds in all).
pub fn run() -> Result<Vec<ControlRow>> {
    let mut rows = vec![
        ControlRow {
            name: "IGMPv2 reports: parse + punt + engine".into(),
            unit: "M reports/s",
            rate: bench_reports(None)?,
        },
        ControlRow {
            name: "IGMPv3 reports, IS_IN with 8 sources: parse + punt + engine".into(),
            unit: "M reports/s",
            rate: bench_reports(Some(8))?,
        },
    ];
    for groups in [1, 1_000, 100_000] {
        rows.push(ControlRow {
            name: format!("multicast egress lookup, {groups} groups"),
            unit: "M lookups/s",
            rate: bench_lookups(groups),
        });
    }
    Ok(rows)
}

/// The control-plane table in markdown.
pub fn markdown(rows: &[ControlRow]) -> String {
    let mut s = format!("## Control plane (median of {RUNS} runs, one core)\n\n");
    s.push_str("| measurement | median | min | max | unit |\n|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {} |\n",
            r.name,
            r.rate.median / 1e6,
            r.rate.min / 1e6,
            r.rate.max / 1e6,
            r.unit
        ));
    }
    s
}
