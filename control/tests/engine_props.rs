//! Property tests: random sequences of reports (v1/v2/v3, every record type), leaves, queries
//! from various sources, router announcements, malformed frames, link events, reconfigurations,
//! operator changes (valid or not) and ticks with random time jumps never panic and keep the
//! engine's invariants.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use xsnoop_control::engine::model::{GroupRecord, Message, RecordType, Version};
use xsnoop_control::engine::runtime::{Flush, PortSettings, StaticAdd, StaticDel};
use xsnoop_control::engine::{
    Command, EngineConfig, Input, MrouterMode, StaticGroup, TableFullPolicy,
};
use xsnoop_dataplane::PortId;

const GROUPS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(239, 1, 1, 1),
    Ipv4Addr::new(239, 1, 1, 2),
    Ipv4Addr::new(232, 5, 5, 5),
    Ipv4Addr::new(224, 0, 0, 251), // link-local: never learned
];
const SOURCES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 9, 0, 1),
    Ipv4Addr::new(10, 9, 0, 2),
    Ipv4Addr::new(10, 9, 0, 3),
    Ipv4Addr::new(10, 9, 0, 4),
];
const QUERIERS: [Ipv4Addr; 4] = [
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(10, 0, 0, 5), // our address when we query
    Ipv4Addr::new(10, 0, 0, 9),
];

#[derive(Clone, Debug)]
enum Op {
    Msg {
        port: PortId,
        other_vlan: bool,
        src: Ipv4Addr,
        msg: Message<Ipv4Addr>,
    },
    Malformed(PortId),
    Tick(Duration),
    /// Jump exactly to the engine's next deadline (exercises timer boundaries).
    TickToDeadline,
    Up(PortId),
    Down(PortId),
    Reconfigure(Knobs),
    /// An operator change; some name ports, VLANs or groups that are wrong on purpose.
    Command(Command),
}

const PORT_NAMES: [&str; 7] = ["p0", "p1", "p2", "p3", "trunk4", "p5", "nope"];

fn port_names(max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(PORT_NAMES.to_vec(), 0..=max)
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
}

fn command() -> impl Strategy<Value = Command> {
    let vlan = || proptest::sample::select(vec![VLAN, OTHER_VLAN, 30]);
    let grp = || {
        prop_oneof![
            4 => group(),
            1 => Just(Ipv4Addr::new(10, 1, 1, 1)),
        ]
    };
    let name = || proptest::sample::select(PORT_NAMES.to_vec()).prop_map(str::to_string);
    let mode = || {
        proptest::option::of(prop_oneof![
            Just(MrouterMode::Auto),
            Just(MrouterMode::Always),
            Just(MrouterMode::Never),
        ])
    };
    prop_oneof![
        3 => (vlan(), grp(), proptest::sample::subsequence(SOURCES.to_vec(), 0..=2), port_names(3))
            .prop_map(|(vlan, group, sources, ports)| Command::StaticAdd(StaticAdd { vlan, group, sources, ports })),
        2 => (vlan(), grp(), port_names(2))
            .prop_map(|(vlan, group, ports)| Command::StaticDel(StaticDel { vlan, group, ports })),
        2 => (name(), proptest::option::of(any::<bool>()), mode())
            .prop_map(|(port, fast_leave, mrouter)| Command::PortSet(PortSettings { port, fast_leave, mrouter })),
        2 => (proptest::option::of(name()), proptest::option::of(vlan()))
            .prop_map(|(port, vlan)| Command::Flush(Flush { port, vlan })),
    ]
}

#[derive(Clone, Debug)]
struct Knobs {
    querier: bool,
    proxy: bool,
    v2_queries: bool,
    fast_leave_port1: bool,
    vlan_max: usize,
    port_max: usize,
    global_max: usize,
    max_sources: usize,
    flood_policy: bool,
    trunk_in_vlan10: bool,
    robustness: u8,
    /// Bit 0: a static all-sources group on port 3; bit 1: a static INCLUDE {SOURCES[0]}.
    statics: u8,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0usize..4,
        0usize..3,
        0usize..5,
        0usize..4,
        any::<bool>(),
        any::<bool>(),
        1u8..4,
        0u8..4,
    )
        .prop_map(|(q, p, v2, fl, vm, pm, gm, ms, fp, tr, rb, st)| Knobs {
            querier: q,
            proxy: p,
            v2_queries: v2,
            fast_leave_port1: fl,
            vlan_max: vm,
            port_max: pm,
            global_max: gm,
            max_sources: ms,
            flood_policy: fp,
            trunk_in_vlan10: tr,
            robustness: rb,
            statics: st,
        })
}

fn build(k: &Knobs) -> EngineConfig {
    let mut c = config();
    for v in &mut c.vlans {
        v.querier = k.querier;
        v.querier_address = if k.proxy {
            Ipv4Addr::UNSPECIFIED
        } else {
            QUERIERS[2]
        };
        v.igmp_version = if k.v2_queries {
            Version::V2
        } else {
            Version::V3
        };
        v.max_groups = k.vlan_max;
        v.table_full = if k.flood_policy {
            TableFullPolicy::Flood
        } else {
            TableFullPolicy::Deny
        };
        v.timers.robustness = k.robustness;
        v.timers.last_member_query_count = k.robustness;
        v.timers.startup_query_count = k.robustness;
    }
    c.ports[1].fast_leave = k.fast_leave_port1;
    c.ports[2].max_groups = k.port_max;
    c.max_groups = k.global_max;
    c.max_sources = k.max_sources;
    if !k.trunk_in_vlan10 {
        c.ports[4].vlans = xsnoop_control::engine::PortVlans::Access(OTHER_VLAN);
    }
    let vlan = c.ports[3].vlans.as_slice()[0];
    for (bit, group, sources) in [(1, GROUPS[0], vec![]), (2, GROUPS[1], vec![SOURCES[0]])] {
        if k.statics & bit != 0 {
            c.static_groups.push(StaticGroup {
                vlan,
                port: 3,
                group,
                sources,
            });
        }
    }
    c
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2), Just(Version::V3)]
}

fn record_type() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::IsIn),
        Just(RecordType::IsEx),
        Just(RecordType::ToIn),
        Just(RecordType::ToEx),
        Just(RecordType::Allow),
        Just(RecordType::Block),
    ]
}

fn sources() -> impl Strategy<Value = Vec<Ipv4Addr>> {
    proptest::sample::subsequence(SOURCES.to_vec(), 0..=4)
}

fn group() -> impl Strategy<Value = Ipv4Addr> {
    proptest::sample::select(GROUPS.to_vec())
}

fn message() -> impl Strategy<Value = Message<Ipv4Addr>> {
    let record =
        (record_type(), group(), sources()).prop_map(|(kind, group, sources)| GroupRecord {
            kind,
            group,
            sources,
        });
    prop_oneof![
        4 => (version(), group()).prop_map(|(v, g)| {
            if v == Version::V3 {
                Message::Report { version: v, records: vec![GroupRecord { kind: RecordType::IsEx, group: g, sources: vec![] }] }
            } else {
                v2_or_v1_report(v, g)
            }
        }),
        4 => proptest::collection::vec(record, 1..4)
            .prop_map(|records| Message::Report { version: Version::V3, records }),
        2 => group().prop_map(|group| Message::Leave { group }),
        2 => (version(), proptest::option::of(group()), sources(), 1u64..12, any::<bool>(), 0u8..4,
              proptest::option::of(20u64..200))
            .prop_map(|(version, group, sources, mr, suppress, qrv, qqi)| Message::Query {
                version,
                sources: if version == Version::V3 && group.is_some() { sources } else { vec![] },
                group,
                max_resp: Duration::from_secs(mr),
                suppress,
                qrv,
                qqi: qqi.map(Duration::from_secs),
            }),
        1 => Just(Message::PimHello),
        1 => Just(Message::MrdAdvertisement),
        1 => any::<u8>().prop_map(|t| Message::Unknown { igmp_type: t }),
    ]
}

fn v2_or_v1_report(version: Version, group: Ipv4Addr) -> Message<Ipv4Addr> {
    Message::Report {
        version,
        records: vec![GroupRecord {
            kind: RecordType::IsEx,
            group,
            sources: vec![],
        }],
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u16..6, prop::bool::weighted(0.15), proptest::sample::select(QUERIERS.to_vec()), message())
            .prop_map(|(port, other_vlan, src, msg)| Op::Msg { port, other_vlan, src, msg }),
        1 => (0u16..6).prop_map(Op::Malformed),
        6 => prop_oneof![
            0u64..3_000,
            0u64..30_000,
            0u64..400_000,
        ].prop_map(|m| Op::Tick(Duration::from_millis(m))),
        3 => Just(Op::TickToDeadline),
        1 => (0u16..7).prop_map(Op::Up),
        1 => (0u16..7).prop_map(Op::Down),
        1 => knobs().prop_map(Op::Reconfigure),
        2 => command().prop_map(Op::Command),
    ]
}

/// Checks what the engine promises about one step's output and its table (the engine's own
/// checker, shared with the fuzzer's fuzz/src/checks.rs).
fn check_step(sw: &Switch, ingress: Option<(PortId, u16)>, out: &xsnoop_control::engine::Output) {
    let bad = sw.engine.step_violations(ingress, out);
    assert!(
        bad.is_empty(),
        "engine promises broken at {:?} (ingress {ingress:?}): {bad:#?}",
        sw.now
    );
}

fn run(initial: Knobs, ops: Vec<Op>) {
    let mut sw = Switch::new(build(&initial));
    for op in ops {
        let (ingress, out) = match op {
            Op::Msg {
                port,
                other_vlan,
                src,
                msg,
            } => {
                let vlan = if other_vlan { OTHER_VLAN } else { VLAN };
                let out = sw.msg(port, vlan, src, &msg);
                (Some((port, vlan)), out)
            }
            Op::Malformed(port) => {
                let out = sw.step(Input::Malformed {
                    port,
                    vlan: VLAN,
                    reason: "fuzz",
                });
                assert!(out.forward.is_empty() && !out.table_changed);
                (None, out)
            }
            Op::Tick(d) => {
                sw.now += d;
                (None, sw.step(Input::Tick))
            }
            Op::TickToDeadline => {
                if let Some(d) = sw.engine.next_deadline() {
                    sw.now = sw.now.max(d);
                }
                (None, sw.step(Input::Tick))
            }
            Op::Up(p) => (None, sw.step(Input::PortUp(p))),
            Op::Down(p) => (None, sw.step(Input::PortDown(p))),
            Op::Reconfigure(k) => (None, sw.step(Input::Reconfigure(build(&k)))),
            Op::Command(c) => {
                let (table, overrides) = (sw.engine.table().clone(), sw.engine.overrides().clone());
                let r = sw.engine.command(sw.now, &c);
                let bad = sw.engine.invariant_violations();
                assert!(bad.is_empty(), "invariants broken after {c:?}: {bad:?}");
                match r {
                    Ok(out) => (None, out),
                    Err(_) => {
                        // Refused: nothing changed (timers due were not run either).
                        assert_eq!(sw.engine.table(), &table, "{c:?}");
                        assert_eq!(sw.engine.overrides(), &overrides, "{c:?}");
                        continue;
                    }
                }
            }
        };
        check_step(&sw, ingress, &out);
    }
    // Silence for longer than every interval: all learned state is gone.
    sw.now += Duration::from_secs(100_000);
    let out = sw.step(Input::Tick);
    check_step(&sw, None, &out);
    sw.now += Duration::from_secs(100_000);
    sw.step(Input::Tick);
    // Static entries (management's) and configured router ports (file or runtime) stay by
    // design; everything learned is gone.
    let bad = sw.engine.silence_violations();
    assert!(bad.is_empty(), "state survived the silence: {bad:#?}");
}

proptest! {
    // 400 cases by default; PROPTEST_CASES=N for a longer soak.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
    ))]

    #[test]
    fn random_sequences_keep_the_invariants(initial in knobs(), ops in proptest::collection::vec(op(), 1..60)) {
        run(initial, ops);
    }
}
