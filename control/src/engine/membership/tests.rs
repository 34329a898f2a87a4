//! Row-by-row tests of RFC 3376 §6.4.1/§6.4.2, expiry (§6.3, §6.5), queries (§6.6.1, §6.6.3),
//! compatibility (§7.3.2), fast leave and the source cap. Defaults (§8): GMI 260 s, LMQI 1 s,
//! LMQC 2, LMQT 2 s, Older Host Present Interval 260 s.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::engine::model::{FilterMode, QuerierRole, QueryRequest, RecordType, Version};
use crate::engine::timers::TimerConfig;

use FilterMode::{Exclude, Include};
use RecordType::{Allow, Block, IsEx, IsIn, ToEx, ToIn};

const G: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);

fn src(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn srcs(ns: &[u8]) -> Vec<Ipv4Addr> {
    ns.iter().map(|n| src(*n)).collect()
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The knobs a test runs with; `at` builds the per-call context.
struct Env {
    timers: TimerConfig,
    querier: QuerierRole,
    fast_leave: bool,
    max_sources: usize,
}

impl Env {
    fn new(querier: QuerierRole) -> Self {
        Env {
            timers: TimerConfig::default(),
            querier,
            fast_leave: false,
            max_sources: 64,
        }
    }

    fn at(&self, now: Duration) -> Context<'_> {
        Context {
            now,
            timers: &self.timers,
            querier: self.querier,
            fast_leave: self.fast_leave,
            max_sources: self.max_sources,
        }
    }
}

fn us() -> Env {
    Env::new(QuerierRole::Us)
}

/// Everything observable about the state at `now`: mode, group timer, each source's timer.
type Snapshot = (
    FilterMode,
    Option<Duration>,
    Vec<(Ipv4Addr, Option<Duration>)>,
);

fn snap(pg: &PortGroup<Ipv4Addr>, now: Duration) -> Snapshot {
    let sources = pg
        .sources(now)
        .into_iter()
        .map(|v| (v.source, v.remaining))
        .collect();
    (pg.mode(), pg.group_timer_remaining(now), sources)
}

fn q(sources: &[u8], suppress: bool) -> QueryRequest<Ipv4Addr> {
    QueryRequest {
        group: G,
        sources: srcs(sources),
        suppress,
    }
}

fn rec(
    pg: &mut PortGroup<Ipv4Addr>,
    env: &Env,
    now: Duration,
    kind: RecordType,
    ns: &[u8],
) -> Outcome<Ipv4Addr> {
    pg.record(&env.at(now), kind, &srcs(ns), Version::V3)
}

/// INCLUDE(A), A = {1, 2}: at t=10 source 1 has 250 s left, source 2 has 255 s.
fn include_fixture(env: &Env) -> PortGroup<Ipv4Addr> {
    let mut pg = PortGroup::new(G);
    rec(&mut pg, env, s(0), Allow, &[1]);
    rec(&mut pg, env, s(5), Allow, &[2]);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![(src(1), Some(s(250))), (src(2), Some(s(255)))]
        )
    );
    pg
}

/// EXCLUDE(X, Y), X = {1, 2}, Y = {3, 4}: at t=10 the group timer has 250 s left, source 1
/// 255 s, source 2 257 s.
fn exclude_fixture(env: &Env) -> PortGroup<Ipv4Addr> {
    let mut pg = PortGroup::new(G);
    rec(&mut pg, env, s(0), IsEx, &[3, 4]);
    rec(&mut pg, env, s(5), Allow, &[1]);
    rec(&mut pg, env, s(7), Allow, &[2]);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(250)),
            vec![
                (src(1), Some(s(255))),
                (src(2), Some(s(257))),
                (src(3), None),
                (src(4), None)
            ]
        )
    );
    pg
}

// ---- §6.4.1 / §6.4.2, INCLUDE(A) rows; B = {2, 3} -------------------------------------------

#[test]
fn include_is_in_adds_b_with_gmi() {
    let env = us();
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), IsIn, &[2, 3]);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![
                (src(1), Some(s(250))),
                (src(2), Some(s(260))),
                (src(3), Some(s(260)))
            ]
        )
    );
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
}

#[test]
fn include_allow_adds_b_with_gmi() {
    let env = us();
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), Allow, &[2, 3]);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![
                (src(1), Some(s(250))),
                (src(2), Some(s(260))),
                (src(3), Some(s(260)))
            ]
        )
    );
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
}

#[test]
fn include_is_ex_switches_to_exclude() {
    let env = us();
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), IsEx, &[2, 3]);
    // EXCLUDE(A*B = {2}, B-A = {3}); (B-A)=0; Delete(A-B = {1}); Group Timer = GMI.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(260)),
            vec![(src(2), Some(s(255))), (src(3), None)]
        )
    );
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
}

#[test]
fn include_to_ex_switches_to_exclude_and_queries_a_and_b() {
    let env = us();
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), ToEx, &[2, 3]);
    // As IS_EX, plus Send Q(G, A*B = {2}): source 2 lowered to LMQT.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(260)),
            vec![(src(2), Some(s(2))), (src(3), None)]
        )
    );
    assert_eq!(out.queries, vec![q(&[2], false)]);
    assert!(out.forwarding_changed);
}

#[test]
fn include_to_in_adds_b_and_queries_a_minus_b() {
    let env = us();
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), ToIn, &[2, 3]);
    // INCLUDE(A+B); (B)=GMI; Send Q(G, A-B = {1}).
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![
                (src(1), Some(s(2))),
                (src(2), Some(s(260))),
                (src(3), Some(s(260)))
            ]
        )
    );
    assert_eq!(out.queries, vec![q(&[1], false)]);
}

#[test]
fn include_block_queries_a_and_b() {
    let env = us();
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), Block, &[2, 3]);
    // INCLUDE(A); Send Q(G, A*B = {2}); source 3 is not added.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![(src(1), Some(s(250))), (src(2), Some(s(2)))]
        )
    );
    assert_eq!(out.queries, vec![q(&[2], false)]);
    assert!(!out.forwarding_changed);
}

// ---- §6.4.1 / §6.4.2, EXCLUDE(X,Y) rows; A = {2, 4, 5} ---------------------------------------
// A∩X = {2}, A∩Y = {4}, A-X-Y = {5}, X-A = {1}, Y-A = {3}.

#[test]
fn exclude_is_in_moves_a_to_x_with_gmi() {
    let env = us();
    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), IsIn, &[2, 4, 5]);
    // EXCLUDE(X+A, Y-A); (A)=GMI.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(250)),
            vec![
                (src(1), Some(s(255))),
                (src(2), Some(s(260))),
                (src(3), None),
                (src(4), Some(s(260))),
                (src(5), Some(s(260)))
            ]
        )
    );
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed, "source 4 is forwarded again");
    assert!(pg.admits(&src(4)));
}

#[test]
fn exclude_allow_moves_a_to_x_with_gmi() {
    let env = us();
    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), Allow, &[2, 4, 5]);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(250)),
            vec![
                (src(1), Some(s(255))),
                (src(2), Some(s(260))),
                (src(3), None),
                (src(4), Some(s(260))),
                (src(5), Some(s(260)))
            ]
        )
    );
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
}

#[test]
fn exclude_is_ex_replaces_lists() {
    let env = us();
    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), IsEx, &[2, 4, 5]);
    // EXCLUDE(A-Y = {2, 5}, Y*A = {4}); (A-X-Y = {5})=GMI; Delete(X-A = {1}); Delete(Y-A = {3});
    // Group Timer = GMI.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(260)),
            vec![
                (src(2), Some(s(257))),
                (src(4), None),
                (src(5), Some(s(260)))
            ]
        )
    );
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed, "source 3 is forwarded again");
}

#[test]
fn exclude_to_ex_replaces_lists_and_queries_a_minus_y() {
    let env = us();
    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), ToEx, &[2, 4, 5]);
    // EXCLUDE(A-Y = {2, 5}, Y*A = {4}); (A-X-Y = {5})=Group Timer (250 s); Delete {1}, {3};
    // Send Q(G, A-Y = {2, 5}) lowers both to LMQT; Group Timer = GMI.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(260)),
            vec![(src(2), Some(s(2))), (src(4), None), (src(5), Some(s(2)))]
        )
    );
    assert_eq!(out.queries, vec![q(&[2, 5], false)]);
}

#[test]
fn exclude_to_ex_new_sources_take_the_old_group_timer() {
    // As a non-querier nothing is lowered, so "(A-X-Y)=Group Timer" stays visible.
    let env = Env::new(QuerierRole::Other);
    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), ToEx, &[2, 4, 5]);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(260)),
            vec![
                (src(2), Some(s(257))),
                (src(4), None),
                (src(5), Some(s(250)))
            ]
        )
    );
    assert!(out.queries.is_empty());
}

#[test]
fn exclude_block_adds_a_minus_y_with_group_timer_and_queries() {
    let env = Env::new(QuerierRole::Other);
    let mut pg = exclude_fixture(&env);
    rec(&mut pg, &env, s(10), Block, &[2, 4, 5]);
    // EXCLUDE(X+(A-Y), Y); (A-X-Y = {5})=Group Timer.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(250)),
            vec![
                (src(1), Some(s(255))),
                (src(2), Some(s(257))),
                (src(3), None),
                (src(4), None),
                (src(5), Some(s(250)))
            ]
        )
    );
    // As querier: Send Q(G, A-Y = {2, 5}).
    let env = us();
    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), Block, &[2, 4, 5]);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(250)),
            vec![
                (src(1), Some(s(255))),
                (src(2), Some(s(2))),
                (src(3), None),
                (src(4), None),
                (src(5), Some(s(2)))
            ]
        )
    );
    assert_eq!(out.queries, vec![q(&[2, 5], false)]);
    assert!(!out.forwarding_changed);
}

#[test]
fn exclude_to_in_adds_a_and_queries_x_minus_a_and_group() {
    let env = us();
    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), ToIn, &[2, 4, 5]);
    // EXCLUDE(X+A, Y-A); (A)=GMI; Send Q(G, X-A = {1}); Send Q(G): group timer to LMQT.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(2)),
            vec![
                (src(1), Some(s(2))),
                (src(2), Some(s(260))),
                (src(3), None),
                (src(4), Some(s(260))),
                (src(5), Some(s(260)))
            ]
        )
    );
    assert_eq!(out.queries, vec![q(&[], false), q(&[1], false)]);
    // Nobody answers: after LMQT the group falls back to INCLUDE with the sources asked for.
    let out = pg.advance(&env.at(s(11)));
    assert_eq!(out.queries, vec![q(&[], false), q(&[1], false)]);
    let out = pg.advance(&env.at(s(12)));
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(12)),
        (
            Include,
            None,
            vec![
                (src(2), Some(s(258))),
                (src(4), Some(s(258))),
                (src(5), Some(s(258)))
            ]
        )
    );
}

// ---- §6.3 / §6.5 expiry ------------------------------------------------------------------------

#[test]
fn include_source_expiry_deletes_the_source_then_the_record() {
    let env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsIn, &[1]);
    rec(&mut pg, &env, s(100), IsIn, &[2]);
    assert_eq!(pg.next_deadline(), Some(s(260)));
    let out = pg.advance(&env.at(s(259)));
    assert!(!out.forwarding_changed);
    let out = pg.advance(&env.at(s(260)));
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(260)),
        (Include, None, vec![(src(2), Some(s(100)))])
    );
    assert!(!pg.admits(&src(1)));
    pg.advance(&env.at(s(360)));
    assert!(pg.is_empty());
    assert_eq!(pg.next_deadline(), None);
}

#[test]
fn exclude_source_expiry_moves_the_source_to_the_exclude_list() {
    let env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), Allow, &[1]);
    rec(&mut pg, &env, s(50), IsEx, &[1]);
    assert_eq!(
        snap(&pg, s(50)),
        (Exclude, Some(s(260)), vec![(src(1), Some(s(210)))])
    );
    assert!(pg.admits(&src(1)));
    let out = pg.advance(&env.at(s(260)));
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(260)),
        (Exclude, Some(s(50)), vec![(src(1), None)])
    );
    assert!(!pg.admits(&src(1)));
    assert!(pg.admits(&src(9)));
}

#[test]
fn group_expiry_switches_to_include_with_running_sources() {
    let env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsEx, &[3]);
    rec(&mut pg, &env, s(100), Allow, &[1]);
    let out = pg.advance(&env.at(s(260)));
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(260)),
        (Include, None, vec![(src(1), Some(s(100)))])
    );
    assert!(!pg.admits(&src(3)) && !pg.admits(&src(9)) && pg.admits(&src(1)));
    pg.advance(&env.at(s(360)));
    assert!(pg.is_empty());
}

#[test]
fn group_expiry_without_running_sources_empties_the_record() {
    let env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsEx, &[3]);
    assert!(!pg.is_empty());
    let out = pg.advance(&env.at(s(1000)));
    assert!(out.forwarding_changed);
    assert!(pg.is_empty());
    assert_eq!(pg.next_deadline(), None);
}

#[test]
fn a_source_and_the_group_expiring_together_leave_nothing() {
    // "(A-X-Y)=Group Timer": source 5 expires with the group; it must not survive the switch.
    let env = Env::new(QuerierRole::Other);
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsEx, &[]);
    rec(&mut pg, &env, s(10), Block, &[5]);
    assert_eq!(
        snap(&pg, s(10)),
        (Exclude, Some(s(250)), vec![(src(5), Some(s(250)))])
    );
    pg.advance(&env.at(s(260)));
    assert!(pg.is_empty());
}

#[test]
fn late_advance_processes_deadlines_in_order() {
    // Source 1 (INCLUDE-era timer, 260) must move to Y at 260 before the group timer (310)
    // expires and drops it; source 2 (320) survives the switch. A single late call must agree
    // with calls at every deadline.
    let env = us();
    let build = || {
        let mut pg = PortGroup::new(G);
        rec(&mut pg, &env, s(0), Allow, &[1]);
        rec(&mut pg, &env, s(50), IsEx, &[1]);
        rec(&mut pg, &env, s(60), Allow, &[2]);
        pg
    };
    let mut late = build();
    let out = late.advance(&env.at(s(315)));
    assert!(out.forwarding_changed);
    let mut stepwise = build();
    while let Some(d) = stepwise.next_deadline().filter(|d| *d <= s(315)) {
        stepwise.advance(&env.at(d));
    }
    assert_eq!(snap(&late, s(315)), snap(&stepwise, s(315)));
    assert_eq!(
        snap(&late, s(315)),
        (Include, None, vec![(src(2), Some(s(5)))])
    );
    // A record arriving late (no advance first) sees the same expired state.
    let mut pg = build();
    rec(&mut pg, &env, s(315), Allow, &[3]);
    assert_eq!(
        snap(&pg, s(315)),
        (
            Include,
            None,
            vec![(src(2), Some(s(5))), (src(3), Some(s(260)))]
        )
    );
    late.advance(&env.at(s(10_000)));
    assert!(late.is_empty());
}

#[test]
fn advance_with_nothing_due_changes_nothing() {
    let env = us();
    let mut pg = include_fixture(&env);
    let before = snap(&pg, s(10));
    let out = pg.advance(&env.at(s(10)));
    assert_eq!(out, Outcome::default());
    assert_eq!(snap(&pg, s(10)), before);
    let mut empty = PortGroup::new(G);
    assert_eq!(empty.advance(&env.at(s(10))), Outcome::default());
    assert_eq!(empty.next_deadline(), None);
}

// ---- §6.6.3 queries and retransmissions -------------------------------------------------------

#[test]
fn group_query_is_sent_lmqc_times_spaced_by_lmqi() {
    let mut env = us();
    env.timers.last_member_query_count = 3;
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsEx, &[]);
    let out = pg.leave(&env.at(s(10)));
    assert_eq!(out.queries, vec![q(&[], false)]);
    assert_eq!(
        pg.group_timer_remaining(s(10)),
        Some(s(3)),
        "LMQT = 3 × 1 s"
    );
    assert_eq!(pg.next_deadline(), Some(s(11)));
    assert_eq!(pg.advance(&env.at(ms(10_999))).queries, vec![]);
    assert_eq!(pg.advance(&env.at(s(11))).queries, vec![q(&[], false)]);
    assert_eq!(pg.next_deadline(), Some(s(12)));
    assert_eq!(pg.advance(&env.at(s(12))).queries, vec![q(&[], false)]);
    assert_eq!(
        pg.next_deadline(),
        Some(s(13)),
        "no fourth query: only the group timer is left"
    );
    let out = pg.advance(&env.at(s(13)));
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
    assert!(pg.is_empty());
}

#[test]
fn a_report_during_group_queries_sets_the_s_flag_on_the_rest() {
    let env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsEx, &[]);
    assert_eq!(pg.leave(&env.at(s(10))).queries, vec![q(&[], false)]);
    // A remaining member answers: group timer back to GMI.
    rec(&mut pg, &env, ms(10_500), IsEx, &[]);
    assert_eq!(pg.group_timer_remaining(ms(10_500)), Some(s(260)));
    // §6.6.3.1: the retransmission still goes out, with S set (timer > LMQT).
    assert_eq!(pg.advance(&env.at(s(11))).queries, vec![q(&[], true)]);
    assert_eq!(
        pg.next_deadline(),
        Some(ms(270_500)),
        "retransmissions done"
    );
    assert_eq!(pg.mode(), Exclude);
}

#[test]
fn source_queries_split_by_s_flag_and_count_per_source() {
    let env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsIn, &[1, 2]);
    assert_eq!(
        rec(&mut pg, &env, s(10), Block, &[1]).queries,
        vec![q(&[1], false)]
    );
    // Another host still wants source 1.
    rec(&mut pg, &env, ms(10_200), IsIn, &[1]);
    // Blocking 2 transmits for everything with retransmission state: 1 (timer > LMQT, S set)
    // and 2 (just lowered, S clear).
    let out = rec(&mut pg, &env, ms(10_500), Block, &[2]);
    assert_eq!(out.queries, vec![q(&[1], true), q(&[2], false)]);
    // Source 1 used its LMQC = 2 transmissions; source 2 has one left, due LMQI later.
    assert_eq!(pg.next_deadline(), Some(ms(11_500)));
    assert_eq!(
        pg.advance(&env.at(ms(11_500))).queries,
        vec![q(&[2], false)]
    );
    let out = pg.advance(&env.at(ms(12_500)));
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, ms(12_500)),
        (Include, None, vec![(src(1), Some(ms(257_700)))])
    );
}

#[test]
fn source_query_spacing_and_count() {
    let mut env = us();
    env.timers.last_member_query_count = 4;
    env.timers.last_member_query_interval = ms(500);
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsIn, &[1, 2]);
    let mut sent = vec![(s(5), rec(&mut pg, &env, s(5), Block, &[1, 2]).queries)];
    while let Some(d) = pg.next_deadline() {
        let out = pg.advance(&env.at(d));
        if !out.queries.is_empty() {
            sent.push((d, out.queries));
        }
    }
    let expect: Vec<_> = [5_000, 5_500, 6_000, 6_500]
        .iter()
        .map(|t| (ms(*t), vec![q(&[1, 2], false)]))
        .collect();
    assert_eq!(sent, expect);
    assert!(pg.is_empty(), "LMQT = 2 s after the block nobody answered");
}

#[test]
fn sources_already_below_lmqt_are_not_queried_again() {
    let env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsIn, &[1]);
    assert_eq!(
        rec(&mut pg, &env, s(10), Block, &[1]).queries,
        vec![q(&[1], false)]
    );
    // §6.6.3.2: only sources with timer > LMQT get retransmission state; none here, so the
    // second block sends nothing by itself.
    assert!(rec(&mut pg, &env, ms(10_100), Block, &[1])
        .queries
        .is_empty());
    assert_eq!(pg.advance(&env.at(s(11))).queries, vec![q(&[1], false)]);
}

#[test]
fn a_group_query_suppresses_the_s_set_source_query_sent_with_it() {
    let env = us();
    let mut pg = exclude_fixture(&env);
    assert_eq!(
        rec(&mut pg, &env, s(10), Block, &[1]).queries,
        vec![q(&[1], false)]
    );
    // Source 1 is wanted again: timer above LMQT, one retransmission still owed.
    rec(&mut pg, &env, ms(10_100), Allow, &[1]);
    // TO_IN({1, 2}): X-A is empty, so only Q(G) is asked for. The transmission would also
    // carry Q(G,{1}) with S set; §6.6.3.2's note lets it be suppressed next to a Q(G).
    let out = rec(&mut pg, &env, ms(10_200), ToIn, &[1, 2]);
    assert_eq!(out.queries, vec![q(&[], false)]);
    // Source 1's retransmission was used up; only the Q(G) retransmission remains.
    assert_eq!(pg.advance(&env.at(ms(11_200))).queries, vec![q(&[], false)]);
    assert_eq!(pg.next_deadline(), Some(ms(12_200)), "the group timer");
}

#[test]
fn retransmissions_stop_when_we_stop_being_querier() {
    let mut env = us();
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsEx, &[]);
    assert_eq!(pg.leave(&env.at(s(10))).queries.len(), 1);
    env.querier = QuerierRole::Other;
    assert!(pg.advance(&env.at(s(11))).queries.is_empty());
    env.querier = QuerierRole::Us;
    assert!(pg.advance(&env.at(ms(11_500))).queries.is_empty());
    assert_eq!(pg.next_deadline(), Some(s(12)));
}

// ---- Querier roles, §6.6.1 ---------------------------------------------------------------------

#[test]
fn non_querier_sends_nothing_and_waits_for_the_queriers_query() {
    let env = Env::new(QuerierRole::Other);
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(0), IsEx, &[]);
    let out = pg.leave(&env.at(s(10)));
    assert_eq!(out, Outcome::default());
    assert_eq!(pg.group_timer_remaining(s(10)), Some(s(250)));
    // S set: MUST NOT update timers.
    pg.group_query_seen(&env.at(s(10)), s(1), true);
    assert_eq!(pg.group_timer_remaining(s(10)), Some(s(250)));
    // S clear: lowered to LMQC (2) × Max Resp Time (3 s).
    let out = pg.group_query_seen(&env.at(s(10)), s(3), false);
    assert!(out.queries.is_empty());
    assert_eq!(pg.group_timer_remaining(s(10)), Some(s(6)));
    // Lowering never raises.
    pg.group_query_seen(&env.at(s(11)), s(10), false);
    assert_eq!(pg.group_timer_remaining(s(11)), Some(s(5)));
    pg.advance(&env.at(s(16)));
    assert!(pg.is_empty());
}

#[test]
fn non_querier_lowers_listed_source_timers_on_group_source_query() {
    let env = Env::new(QuerierRole::Other);
    let mut pg = include_fixture(&env);
    pg.group_source_query_seen(&env.at(s(10)), &srcs(&[2, 7]), s(1), true);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![(src(1), Some(s(250))), (src(2), Some(s(255)))]
        )
    );
    let out = pg.group_source_query_seen(&env.at(s(10)), &srcs(&[2, 7, 2]), s(1), false);
    assert!(out.queries.is_empty());
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![(src(1), Some(s(250))), (src(2), Some(s(2)))]
        )
    );
    let out = pg.advance(&env.at(s(12)));
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(12)),
        (Include, None, vec![(src(1), Some(s(248)))])
    );
}

#[test]
fn a_zero_max_resp_query_expires_the_group_in_the_same_call() {
    let env = Env::new(QuerierRole::Other);
    let mut pg = exclude_fixture(&env);
    let out = pg.group_query_seen(&env.at(s(10)), Duration::ZERO, false);
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![(src(1), Some(s(255))), (src(2), Some(s(257)))]
        )
    );
    assert!(pg.next_deadline().is_some_and(|d| d > s(10)));
}

#[test]
fn group_query_seen_in_include_changes_nothing() {
    let env = Env::new(QuerierRole::Other);
    let mut pg = include_fixture(&env);
    let before = snap(&pg, s(10));
    pg.group_query_seen(&env.at(s(10)), s(1), false);
    assert_eq!(snap(&pg, s(10)), before);
}

#[test]
fn nobody_querying_lowers_timers_without_sending() {
    let env = Env::new(QuerierRole::Nobody);
    let mut pg = exclude_fixture(&env);
    let out = pg.leave(&env.at(s(10)));
    assert!(out.queries.is_empty());
    // TO_IN({}): Q(G,X) and Q(G) become lowering only.
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(2)),
            vec![
                (src(1), Some(s(2))),
                (src(2), Some(s(2))),
                (src(3), None),
                (src(4), None)
            ]
        )
    );
    assert_eq!(pg.advance(&env.at(s(12))).queries, vec![]);
    assert!(pg.is_empty());
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), Block, &[1]);
    assert!(out.queries.is_empty());
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![(src(1), Some(s(2))), (src(2), Some(s(255)))]
        )
    );
}

// ---- §7.3.2 compatibility -----------------------------------------------------------------------

#[test]
fn v2_report_enters_v2_mode_until_the_older_host_timer_expires() {
    let env = us();
    let mut pg = PortGroup::new(G);
    assert_eq!(pg.compat_version(s(0)), Version::V3);
    pg.record(&env.at(s(0)), IsEx, &[], Version::V2);
    assert_eq!(pg.compat_version(s(0)), Version::V2);
    assert_eq!(snap(&pg, s(0)), (Exclude, Some(s(260)), vec![]));
    // A v3 host keeps the group alive past the v2 host's timer.
    rec(&mut pg, &env, s(100), IsEx, &[]);
    // In v2 mode: BLOCK ignored, TO_EX's sources ignored.
    let out = rec(&mut pg, &env, s(110), Block, &[7]);
    assert_eq!(out, Outcome::default());
    rec(&mut pg, &env, s(120), ToEx, &[8]);
    assert_eq!(snap(&pg, s(120)), (Exclude, Some(s(260)), vec![]));
    assert!(pg.admits(&src(8)));
    assert_eq!(
        pg.next_deadline(),
        Some(s(260)),
        "the v2 host present timer"
    );
    pg.advance(&env.at(s(260)));
    assert_eq!(pg.compat_version(s(260)), Version::V3);
    // Back in v3 mode: TO_EX's sources count again (§6.4.2: the new source joins X with the
    // group timer and is queried; when nobody else wants it, it ends up excluded).
    let out = rec(&mut pg, &env, s(270), ToEx, &[8]);
    assert_eq!(out.queries, vec![q(&[8], false)]);
    assert_eq!(
        snap(&pg, s(270)),
        (Exclude, Some(s(260)), vec![(src(8), Some(s(2)))])
    );
    pg.advance(&env.at(s(272)));
    assert!(!pg.admits(&src(8)));
    assert_eq!(
        snap(&pg, s(272)),
        (Exclude, Some(s(258)), vec![(src(8), None)])
    );
}

#[test]
fn v1_mode_is_the_oldest_and_ignores_leaves() {
    let env = us();
    let mut pg = PortGroup::new(G);
    pg.record(&env.at(s(0)), IsEx, &[], Version::V1);
    pg.record(&env.at(s(50)), IsEx, &[], Version::V2);
    assert_eq!(pg.compat_version(s(50)), Version::V1);
    let out = pg.leave(&env.at(s(60)));
    assert_eq!(out, Outcome::default());
    let out = rec(&mut pg, &env, s(60), ToIn, &[]);
    assert_eq!(out, Outcome::default());
    assert_eq!(
        pg.group_timer_remaining(s(60)),
        Some(s(250)),
        "set by the v2 report at 50"
    );
    // TO_IN(B) keeps its ALLOW part in v1 mode, without queries or lowering.
    let out = rec(&mut pg, &env, s(60), ToIn, &[4]);
    assert!(out.queries.is_empty());
    assert_eq!(
        snap(&pg, s(60)),
        (Exclude, Some(s(250)), vec![(src(4), Some(s(260)))])
    );
    pg.advance(&env.at(s(260)));
    assert_eq!(pg.compat_version(s(260)), Version::V2);
    assert_eq!(pg.compat_version(s(309)), Version::V2);
    pg.advance(&env.at(s(310)));
    assert_eq!(pg.compat_version(s(310)), Version::V3);
    // The group timer (v2 report at 50) expired at 310 too: INCLUDE({4}). In v3 mode a leave
    // (TO_IN({})) is processed again and queries the remaining source.
    assert_eq!(
        snap(&pg, s(311)),
        (Include, None, vec![(src(4), Some(s(9)))])
    );
    let out = pg.leave(&env.at(s(311)));
    assert_eq!(out.queries, vec![q(&[4], false)]);
}

#[test]
fn v2_mode_sends_a_group_query_instead_of_group_and_source_queries() {
    let env = us();
    let mut pg = PortGroup::new(G);
    pg.record(&env.at(s(0)), IsEx, &[], Version::V2);
    rec(&mut pg, &env, s(1), Allow, &[1]);
    // A v2 leave: TO_IN({}) sends Q(G) and Q(G, X = {1}); in v2 mode one Q(G) carries both.
    let out = pg.leave(&env.at(s(10)));
    assert_eq!(out.queries, vec![q(&[], false)]);
    assert_eq!(
        snap(&pg, s(10)),
        (Exclude, Some(s(2)), vec![(src(1), Some(s(2)))])
    );
    assert_eq!(pg.advance(&env.at(s(11))).queries, vec![q(&[], false)]);
}

#[test]
fn v2_mode_in_include_sends_a_group_query_without_s() {
    let mut env = us();
    env.timers.membership_interval = Some(s(30));
    let mut pg = PortGroup::new(G);
    pg.record(&env.at(s(0)), IsEx, &[], Version::V2);
    pg.advance(&env.at(s(30)));
    assert!(pg.is_empty());
    assert_eq!(pg.compat_version(s(30)), Version::V2);
    rec(&mut pg, &env, s(40), IsIn, &[1, 2]);
    let out = rec(&mut pg, &env, s(50), ToIn, &[2]);
    assert_eq!(out.queries, vec![q(&[], false)]);
    assert_eq!(
        snap(&pg, s(50)),
        (
            Include,
            None,
            vec![(src(1), Some(s(2))), (src(2), Some(s(30)))]
        )
    );
}

// ---- fast leave ---------------------------------------------------------------------------------

fn fast(querier: QuerierRole) -> Env {
    Env {
        fast_leave: true,
        ..Env::new(querier)
    }
}

#[test]
fn fast_leave_removes_the_port_group_at_once() {
    for role in [QuerierRole::Us, QuerierRole::Other, QuerierRole::Nobody] {
        let env = fast(role);
        let mut pg = exclude_fixture(&env);
        let out = pg.leave(&env.at(s(10)));
        assert!(out.queries.is_empty());
        assert!(out.forwarding_changed);
        assert!(pg.is_empty(), "{role:?}");
    }
}

#[test]
fn fast_leave_to_in_and_block_drop_unwanted_sources_at_once() {
    let env = fast(QuerierRole::Us);
    let mut pg = include_fixture(&env);
    let out = rec(&mut pg, &env, s(10), ToIn, &[2, 3]);
    assert!(out.queries.is_empty());
    assert_eq!(
        snap(&pg, s(10)),
        (
            Include,
            None,
            vec![(src(2), Some(s(260))), (src(3), Some(s(260)))]
        )
    );
    let out = rec(&mut pg, &env, s(10), Block, &[3]);
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(10)),
        (Include, None, vec![(src(2), Some(s(260)))])
    );

    let mut pg = exclude_fixture(&env);
    let out = rec(&mut pg, &env, s(10), Block, &[2, 5]);
    assert!(out.queries.is_empty());
    assert!(out.forwarding_changed);
    assert_eq!(
        snap(&pg, s(10)),
        (
            Exclude,
            Some(s(250)),
            vec![
                (src(1), Some(s(255))),
                (src(2), None),
                (src(3), None),
                (src(4), None),
                (src(5), None)
            ]
        )
    );
    // EXCLUDE TO_IN(A) on a one-host port is INCLUDE(A).
    let out = rec(&mut pg, &env, s(10), ToIn, &[1]);
    assert!(out.queries.is_empty());
    assert_eq!(
        snap(&pg, s(10)),
        (Include, None, vec![(src(1), Some(s(260)))])
    );
}

#[test]
fn fast_leave_to_ex_excludes_exactly_the_record() {
    let env = fast(QuerierRole::Us);
    let mut pg = include_fixture(&env);
    rec(&mut pg, &env, s(10), ToEx, &[2, 3]);
    assert_eq!(
        snap(&pg, s(10)),
        (Exclude, Some(s(260)), vec![(src(2), None), (src(3), None)])
    );
}

// ---- source cap and hostile input ----------------------------------------------------------------

#[test]
fn source_cap_keeps_existing_and_adds_in_record_order() {
    let mut env = us();
    env.max_sources = 3;
    let mut pg = PortGroup::new(G);
    let out = rec(&mut pg, &env, s(0), IsIn, &[5, 1, 5, 4, 2, 3]);
    assert_eq!(
        out.sources_refused, 2,
        "2 and 3 do not fit; the duplicate 5 is not counted"
    );
    assert_eq!(
        pg.sources(s(0))
            .iter()
            .map(|v| v.source)
            .collect::<Vec<_>>(),
        srcs(&[1, 4, 5])
    );
    let out = rec(&mut pg, &env, s(1), Allow, &[1, 9]);
    assert_eq!(out.sources_refused, 1);
    assert_eq!(
        pg.sources(s(1))[0].remaining,
        Some(s(260)),
        "existing sources are still refreshed"
    );
    // IS_EX deletes first (A-B), then adds within the cap.
    let out = rec(&mut pg, &env, s(2), IsEx, &[7, 8, 9, 6]);
    assert_eq!(out.sources_refused, 1);
    assert_eq!(
        snap(&pg, s(2)),
        (
            Exclude,
            Some(s(260)),
            vec![(src(7), None), (src(8), None), (src(9), None)]
        )
    );
    assert!(
        pg.admits(&src(6)),
        "a refused exclusion forwards: the safe superset"
    );
}

#[test]
fn zero_cap_still_tracks_the_group() {
    let mut env = us();
    env.max_sources = 0;
    let mut pg = PortGroup::new(G);
    let out = rec(&mut pg, &env, s(0), IsEx, &[1]);
    assert_eq!(out.sources_refused, 1);
    assert_eq!(snap(&pg, s(0)), (Exclude, Some(s(260)), vec![]));
    let out = rec(&mut pg, &env, s(0), IsIn, &[2]);
    assert_eq!(out.sources_refused, 1);
}

#[test]
fn huge_source_list_is_bounded() {
    let mut env = us();
    env.max_sources = 32;
    let mut pg = PortGroup::new(G);
    let many: Vec<Ipv4Addr> = (0..100_000u32).map(Ipv4Addr::from).collect();
    let out = pg.record(&env.at(s(0)), IsIn, &many, Version::V3);
    assert_eq!(out.sources_refused, 100_000 - 32);
    assert_eq!(pg.sources(s(0)).len(), 32);
    let out = pg.record(&env.at(s(1)), Block, &many, Version::V3);
    assert_eq!(out.queries.len(), 1);
    assert_eq!(out.queries[0].sources.len(), 32);
}

#[test]
fn absurd_timer_values_do_not_panic() {
    let mut env = us();
    env.timers.membership_interval = Some(Duration::MAX);
    env.timers.last_member_query_interval = Duration::ZERO;
    env.timers.last_member_query_count = 0;
    let mut pg = PortGroup::new(G);
    rec(&mut pg, &env, s(1), IsEx, &[1]);
    rec(&mut pg, &env, s(1), Allow, &[2]);
    let out = pg.leave(&env.at(s(2)));
    // LMQC 0 acts as 1 (one query); LMQT 0: the timers lowered to "now" expire in the same
    // call, leaving nothing due at or before now.
    assert_eq!(out.queries, vec![q(&[], false), q(&[2], false)]);
    assert!(out.forwarding_changed);
    assert!(pg.is_empty());
    assert_eq!(pg.next_deadline(), None);
    let out = pg.group_query_seen(&env.at(Duration::MAX), Duration::MAX, false);
    assert_eq!(out, Outcome::default());
}

// ---- genericity -----------------------------------------------------------------------------------

/// A stand-in for a non-IPv4 address family (MLD later): the state machine must not care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Addr16(u16);

impl std::fmt::Display for Addr16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a{:04x}", self.0)
    }
}

impl crate::engine::model::GroupAddress for Addr16 {}

#[test]
fn works_for_any_address_family() {
    let env = us();
    let mut pg = PortGroup::new(Addr16(0xff02));
    let ctx = env.at(s(0));
    pg.record(&ctx, IsEx, &[Addr16(1)], Version::V3);
    pg.record(&ctx, Allow, &[Addr16(2)], Version::V3);
    let out = pg.leave(&env.at(s(1)));
    assert_eq!(
        out.queries,
        vec![
            QueryRequest {
                group: Addr16(0xff02),
                sources: vec![],
                suppress: false
            },
            QueryRequest {
                group: Addr16(0xff02),
                sources: vec![Addr16(2)],
                suppress: false
            },
        ]
    );
    assert!(!pg.admits(&Addr16(1)) && pg.admits(&Addr16(3)));
    pg.advance(&env.at(s(3)));
    assert!(pg.is_empty());
}
