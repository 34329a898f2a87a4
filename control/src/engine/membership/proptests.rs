//! Property tests: random sequences of records, leaves, seen queries, querier-role changes and
//! time jumps never panic and keep the RFC 3376 §6.2.1/§6.3 invariants.

use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::engine::model::{FilterMode, QuerierRole, RecordType, Version};
use crate::engine::timers::TimerConfig;

const G: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 9);
/// Sources are drawn from 10.0.0.0..=10.0.0.UNIVERSE-1, so records overlap often.
const UNIVERSE: u8 = 6;

fn src(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

#[derive(Clone, Debug)]
enum Op {
    Record {
        kind: RecordType,
        sources: Vec<u8>,
        from: Version,
    },
    Leave,
    GroupQuerySeen {
        max_resp_ms: u64,
        suppress: bool,
    },
    GroupSourceQuerySeen {
        sources: Vec<u8>,
        max_resp_ms: u64,
        suppress: bool,
    },
    Advance,
}

/// One step: time moves forward by `dt`, the querier role may change, then `op` runs.
#[derive(Clone, Debug)]
struct Step {
    dt: Duration,
    querier: QuerierRole,
    op: Op,
}

#[derive(Clone, Debug)]
struct Setup {
    timers: TimerConfig,
    fast_leave: bool,
    max_sources: usize,
}

fn kind() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::IsIn),
        Just(RecordType::IsEx),
        Just(RecordType::ToIn),
        Just(RecordType::ToEx),
        Just(RecordType::Allow),
        Just(RecordType::Block),
    ]
}

fn version() -> impl Strategy<Value = Version> {
    // Mostly v3, so compatibility mode comes and goes.
    prop_oneof![8 => Just(Version::V3), 1 => Just(Version::V2), 1 => Just(Version::V1)]
}

fn sources() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..UNIVERSE, 0..8)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (kind(), sources(), version()).prop_map(|(kind, sources, from)| Op::Record { kind, sources, from }),
        1 => Just(Op::Leave),
        1 => (0u64..5_000, any::<bool>())
            .prop_map(|(max_resp_ms, suppress)| Op::GroupQuerySeen { max_resp_ms, suppress }),
        1 => (sources(), 0u64..5_000, any::<bool>()).prop_map(|(sources, max_resp_ms, suppress)| {
            Op::GroupSourceQuerySeen { sources, max_resp_ms, suppress }
        }),
        2 => Just(Op::Advance),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let dt = prop_oneof![
        3 => Just(0u64),
        4 => 0u64..3_000,
        2 => 0u64..400_000,
    ];
    let querier = prop_oneof![
        6 => Just(QuerierRole::Us),
        1 => Just(QuerierRole::Other),
        1 => Just(QuerierRole::Nobody),
    ];
    (dt, querier, op()).prop_map(|(dt, querier, op)| Step {
        dt: Duration::from_millis(dt),
        querier,
        op,
    })
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1u8..4,
        prop::option::of(1u64..300),
        250u64..2_000,
        1u8..4,
        any::<bool>(),
        0usize..8,
    )
        .prop_map(
            |(robustness, gmi, lmqi_ms, lmqc, fast_leave, max_sources)| Setup {
                timers: TimerConfig {
                    robustness,
                    membership_interval: gmi.map(Duration::from_secs),
                    last_member_query_interval: Duration::from_millis(lmqi_ms),
                    last_member_query_count: lmqc,
                    ..TimerConfig::default()
                },
                fast_leave,
                max_sources,
            },
        )
}

/// Which sources of the universe are forwarded.
fn admitted(pg: &PortGroup<Ipv4Addr>) -> Vec<bool> {
    (0..=UNIVERSE).map(|n| pg.admits(&src(n))).collect()
}

/// The invariants that hold after any call at `now`.
fn check(pg: &PortGroup<Ipv4Addr>, setup: &Setup, now: Duration) -> Result<(), TestCaseError> {
    let views = pg.sources(now);
    prop_assert!(views.len() <= setup.max_sources, "source cap");
    match pg.mode() {
        // §6.2.1: EXCLUDE runs the group timer.
        FilterMode::Exclude => {
            prop_assert!(pg.group_timer_remaining(now).is_some_and(|d| !d.is_zero()))
        }
        // INCLUDE: no group timer, and every listed source has a running timer.
        FilterMode::Include => {
            prop_assert!(pg.group_timer_remaining(now).is_none());
            prop_assert!(views.iter().all(|v| v.remaining.is_some()));
        }
    }
    // A timer with nothing left has been processed: running means time is left.
    prop_assert!(views.iter().all(|v| v.remaining != Some(Duration::ZERO)));
    // §6.3: admits agrees with the table, for listed and unlisted sources.
    for n in 0..=UNIVERSE {
        let view = views.iter().find(|v| v.source == src(n));
        let expected = match pg.mode() {
            FilterMode::Include => view.is_some_and(|v| v.remaining.is_some()),
            FilterMode::Exclude => view.is_none_or(|v| v.remaining.is_some()),
        };
        prop_assert_eq!(pg.admits(&src(n)), expected, "source {}", n);
        if let Some(v) = view {
            prop_assert_eq!(v.forwarded, expected);
        }
    }
    prop_assert!(pg.is_empty() == (pg.mode() == FilterMode::Include && views.is_empty()));
    // Every call processes what is due at `now`, including timers it lowered to `now`.
    if let Some(d) = pg.next_deadline() {
        prop_assert!(d > now, "deadline {:?} not after now {:?}", d, now);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(setup in setup(), steps in prop::collection::vec(step(), 1..40)) {
        let mut pg = PortGroup::new(G);
        let mut now = Duration::ZERO;
        for step in &steps {
            now += step.dt;
            let ctx = Context {
                now,
                timers: &setup.timers,
                querier: step.querier,
                fast_leave: setup.fast_leave,
                max_sources: setup.max_sources,
            };
            let admitted_before = admitted(&pg);
            let out = match &step.op {
                Op::Record { kind, sources, from } => {
                    let list: Vec<_> = sources.iter().map(|n| src(*n)).collect();
                    pg.record(&ctx, *kind, &list, *from)
                }
                Op::Leave => pg.leave(&ctx),
                Op::GroupQuerySeen { max_resp_ms, suppress } => {
                    pg.group_query_seen(&ctx, Duration::from_millis(*max_resp_ms), *suppress)
                }
                Op::GroupSourceQuerySeen { sources, max_resp_ms, suppress } => {
                    let list: Vec<_> = sources.iter().map(|n| src(*n)).collect();
                    pg.group_source_query_seen(&ctx, &list, Duration::from_millis(*max_resp_ms), *suppress)
                }
                Op::Advance => pg.advance(&ctx),
            };
            check(&pg, &setup, now)?;
            if admitted(&pg) != admitted_before {
                prop_assert!(out.forwarding_changed, "forwarding changed silently");
            }
            if !out.queries.is_empty() {
                prop_assert_eq!(step.querier, QuerierRole::Us);
                prop_assert!(!setup.fast_leave);
            }
            for q in &out.queries {
                prop_assert_eq!(q.group, G);
                let mut sorted = q.sources.clone();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), q.sources.len(), "duplicate sources in a query");
            }
        }
        // With no more reports, advancing past every deadline empties the state.
        let mut rounds = 0;
        while let Some(d) = pg.next_deadline() {
            rounds += 1;
            prop_assert!(rounds < 10_000, "deadlines never run out");
            now = d;
            let ctx = Context {
                now,
                timers: &setup.timers,
                querier: QuerierRole::Us,
                fast_leave: setup.fast_leave,
                max_sources: setup.max_sources,
            };
            pg.advance(&ctx);
            check(&pg, &setup, now)?;
        }
        prop_assert!(pg.is_empty());
    }

    #[test]
    fn one_late_advance_equals_stepwise_advances(
        setup in setup(),
        steps in prop::collection::vec(step(), 1..20),
        jump in 0u64..600_000,
    ) {
        // Same inputs (as querier, so retransmissions are pending); then either one advance far
        // ahead or an advance at every deadline: same state, same queries in the same order.
        let ctx_at = |t| Context {
            now: t,
            timers: &setup.timers,
            querier: QuerierRole::Us,
            fast_leave: setup.fast_leave,
            max_sources: setup.max_sources,
        };
        let mut pg = PortGroup::new(G);
        let mut now = Duration::ZERO;
        for step in &steps {
            now += step.dt;
            match &step.op {
                Op::Record { kind, sources, from } => {
                    let list: Vec<_> = sources.iter().map(|n| src(*n)).collect();
                    pg.record(&ctx_at(now), *kind, &list, *from);
                }
                Op::Leave => {
                    pg.leave(&ctx_at(now));
                }
                _ => {}
            }
        }
        let target = now + Duration::from_millis(jump);
        let mut late = pg.clone();
        let late_out = late.advance(&ctx_at(target));
        let mut stepwise = pg;
        let mut stepwise_queries = Vec::new();
        let mut stepwise_changed = false;
        while let Some(d) = stepwise.next_deadline().filter(|d| *d <= target) {
            let out = stepwise.advance(&ctx_at(d));
            stepwise_queries.extend(out.queries);
            stepwise_changed |= out.forwarding_changed;
        }
        prop_assert_eq!(late.mode(), stepwise.mode());
        prop_assert_eq!(late.sources(target), stepwise.sources(target));
        prop_assert_eq!(late.group_timer_remaining(target), stepwise.group_timer_remaining(target));
        prop_assert_eq!(late.compat_version(target), stepwise.compat_version(target));
        prop_assert_eq!(late.next_deadline(), stepwise.next_deadline());
        prop_assert_eq!(late_out.queries, stepwise_queries);
        if late_out.forwarding_changed {
            prop_assert!(stepwise_changed);
        }
    }
}
