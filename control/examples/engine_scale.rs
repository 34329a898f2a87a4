//! The engine at scale (issue 5 §3): start-up time with N static groups, and what one change
//! costs with N groups installed, up to the forwarding table the daemon would publish.
//!
//! Exists because 100 000 static groups once took about 25 s to start; this reproduces the
//! measurement without a daemon so a profile (`perf record`) shows only the engine.
//!
//! `cargo run --release -p xsnoop-control --example engine_scale -- [N ...]`
//! (default N = 1000 10000 50000 100000). Figures are wall-clock on a shared machine: noisy.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use xsnoop_control::config_file::SwitchConfig;
use xsnoop_control::ctl::Show;
use xsnoop_control::engine::model::{GroupRecord, Message, RecordType, Version};
use xsnoop_control::engine::runtime::StaticAdd;
use xsnoop_control::engine::{
    Command, Engine, EngineConfig, Input, PortConfig, Publisher, StaticGroup, VlanConfig,
};
use xsnoop_control::plane::ControlPlane;
use xsnoop_dataplane::{ForwardingTable, TableHandle};

const VLAN: u16 = 1;

/// The `i`-th group: 239.x.y.z, never link-local.
fn group(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).unwrap_or(u32::MAX) + 256;
    Ipv4Addr::from(0xEF00_0000 | (i & 0x00FF_FFFF))
}

fn config(n: usize) -> EngineConfig {
    EngineConfig {
        ports: (0..4)
            .map(|i| PortConfig::access(&format!("p{i}"), VLAN))
            .collect(),
        vlans: vec![VlanConfig::new(VLAN)],
        static_groups: (0..n)
            .map(|g| StaticGroup {
                vlan: VLAN,
                port: 2,
                group: group(g),
                sources: Vec::new(),
            })
            .collect(),
        ..EngineConfig::default()
    }
}

fn file_text(n: usize) -> String {
    let mut t = format!(
        "[snooping]\nmax_groups = {}\n[[port]]\nname = \"a\"\n[[port]]\nname = \"b\"\n",
        n + 1000
    );
    for g in 0..n {
        let _ = write!(
            t,
            "[[static_group]]\ngroup = \"{}\"\nports = [\"b\"]\n",
            group(g)
        );
    }
    t
}

fn report(kind: RecordType, g: Ipv4Addr) -> Message<Ipv4Addr> {
    Message::Report {
        version: Version::V3,
        records: vec![GroupRecord {
            kind,
            group: g,
            sources: vec![],
        }],
    }
}

fn input<'a>(port: u16, msg: &'a Message<Ipv4Addr>) -> Input<'a> {
    Input::Message {
        port,
        vlan: VLAN,
        src_ip: Ipv4Addr::new(10, 0, 0, 9),
        dst_ip: Ipv4Addr::new(224, 0, 0, 22),
        msg,
    }
}

/// How the daemon publishes after a step that changed the table.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `handle.publish(engine.table().clone())`: what plane.rs did (O(groups) per change).
    Clone,
    /// [`Publisher`]: the spare snapshot updated entry by entry.
    Incremental,
}

/// What publishing costs after one engine step.
fn publish_cost(
    e: &mut Engine,
    changed: bool,
    handle: &TableHandle,
    mode: Mode,
    p: &mut Publisher,
) -> Duration {
    let t = Instant::now();
    if changed {
        match mode {
            Mode::Clone => handle.publish(e.table().clone()),
            Mode::Incremental => {
                p.publish(e, handle);
            }
        }
    }
    t.elapsed()
}

/// `writeln!(stream, "{value}")` on an unbuffered socket (one `write` per JSON token) against
/// one `write_all` of the serialised line: what the control socket's reply costs.
fn socket_reply(v: &serde_json::Value, buffered: bool) -> Duration {
    use std::io::{Read, Write};
    let Ok((a, mut b)) = std::os::unix::net::UnixStream::pair() else {
        return Duration::ZERO;
    };
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = b.read_to_end(&mut sink);
        sink.len()
    });
    let t = Instant::now();
    let mut w = &a;
    if buffered {
        if let Ok(mut line) = serde_json::to_vec(v) {
            line.push(b'\n');
            let _ = w.write_all(&line);
        }
    } else {
        let _ = writeln!(w, "{v}");
    }
    drop(a);
    let _ = reader.join();
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if args.is_empty() {
        vec![1000, 10_000, 50_000, 100_000]
    } else {
        args
    };
    println!("| N | publish | file parse s | Engine::new s | ControlPlane::new s | show mdb s | join µs (step + publish) | leave µs | expiry µs | static add µs |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let text = file_text(n);
        let t = Instant::now();
        let parsed = SwitchConfig::parse(&text).map(|c| c.engine.static_groups.len());
        let parse_s = t.elapsed().as_secs_f64();
        if parsed.as_ref().map_or(true, |&k| k != n) {
            eprintln!("config file with {n} groups: {parsed:?}");
        }

        let cfg = config(n);
        let t = Instant::now();
        let e = Engine::new(cfg, Duration::ZERO).expect("valid config");
        let new_s = t.elapsed().as_secs_f64();
        assert_eq!(e.table().vlans[&VLAN].groups.len(), n);
        let t = Instant::now();
        let plane = ControlPlane::new(config(n)).expect("valid config");
        let plane_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mdb = plane.show(Show::Mdb).unwrap_or_default();
        let mdb_s = t.elapsed().as_secs_f64();
        let per_token = socket_reply(&mdb, false).as_secs_f64();
        let one_write = socket_reply(&mdb, true).as_secs_f64();
        eprintln!(
            "N={n}: show mdb {mdb_s:.3} s; its reply over a socket: writeln!(\"{{value}}\") {per_token:.3} s, one write_all {one_write:.3} s"
        );
        drop(plane);
        let start = e.clone();
        for mode in [Mode::Clone, Mode::Incremental] {
            let mut e = start.clone();
            let mut p = Publisher::new();
            let handle = TableHandle::new(ForwardingTable::default());
            p.publish(&mut e, &handle);

            // Joins of new groups on port 1, leaves of them (v3 TO_IN {} on a fast-leave-less port
            // starts a group query; the expiry then removes it), and the timer expiry.
            let rounds = 50;
            let mut now = Duration::from_secs(1);
            let (mut join, mut leave, mut expiry) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..rounds {
                let g = group(n + 10 + r);
                let m = report(RecordType::IsEx, g);
                let t = Instant::now();
                let out = e.handle(now, input(1, &m));
                let step = t.elapsed();
                join.push(step + publish_cost(&mut e, out.table_changed, &handle, mode, &mut p));
                assert!(out.table_changed, "a join of a new group changes the table");

                now += Duration::from_millis(10);
                let m = report(RecordType::ToIn, g);
                let t = Instant::now();
                let out = e.handle(now, input(1, &m));
                let step = t.elapsed();
                leave.push(step + publish_cost(&mut e, out.table_changed, &handle, mode, &mut p));

                // Run to the group's deadline: the last-member query expiry removes it.
                let mut guard = 0;
                while e.table().vlans[&VLAN].groups.contains_key(&g) && guard < 10 {
                    let Some(d) = e.next_deadline() else { break };
                    now = now.max(d);
                    let t = Instant::now();
                    let out = e.handle(now, Input::Tick);
                    let step = t.elapsed();
                    let cost =
                        step + publish_cost(&mut e, out.table_changed, &handle, mode, &mut p);
                    if out.table_changed {
                        expiry.push(cost);
                    }
                    guard += 1;
                }
                assert!(!handle.load().vlans[&VLAN].groups.contains_key(&g));
            }
            assert_eq!(handle.load().vlans[&VLAN].groups.len(), n);
            // A runtime `xsnoop static add` goes through the reload path (a full recompute).
            let mut statics = Vec::new();
            for r in 0..5 {
                let cmd = Command::StaticAdd(StaticAdd {
                    vlan: VLAN,
                    group: group(n + 1000 + r),
                    sources: Vec::new(),
                    ports: vec!["p1".into()],
                });
                now += Duration::from_millis(10);
                let t = Instant::now();
                let out = e.command(now, &cmd).expect("a valid static add");
                let step = t.elapsed();
                statics.push(step + publish_cost(&mut e, out.table_changed, &handle, mode, &mut p));
            }
            assert_eq!(handle.load().vlans[&VLAN].groups.len(), n + 5);
            let name = if mode == Mode::Clone {
                "clone"
            } else {
                "incremental"
            };
            println!(
            "| {n} | {name} | {parse_s:.3} | {new_s:.3} | {plane_s:.3} | {mdb_s:.3} | {:.1} | {:.1} | {:.1} | {:.0} |",
            us(median(join)),
            us(median(leave)),
            us(median(expiry)),
            us(median(statics))
        );
        }
    }
}
