//! Router-side membership state of one group on one port: RFC 3376 §6 (and RFC 3810 §7, MLDv2),
//! with the IGMPv1/v2 compatibility rules of RFC 3376 §7.3.2.
//!
//! INTERFACE CONTRACT (fixed; the engine shell codes against it).
//!
//! Layout: this file holds the public surface and the entry points (which run due timers first,
//! apply the §7.3.2 translations, then hand over); `table` applies the §6.4.1/§6.4.2 rows,
//! `queries` the §6.6.1 and §6.6.3 query rules, `expiry` the §6.3/§6.5 timer expiries.
//!
//! Time model: every timer is an absolute expiry [`Time`]; a timer "runs" while its expiry is
//! later than now. Every entry point first processes everything due at `ctx.now` (in time
//! order), so calling with large time jumps, or without calling [`PortGroup::advance`] first,
//! gives the same result as calling `advance` at every deadline.

mod expiry;
mod queries;
mod table;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::model::{
    FilterMode, GroupAddress, QuerierRole, QueryRequest, RecordType, Time, Version,
};
use super::timers::TimerConfig;

/// What the state machine needs to know about its surroundings for one call.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The current time.
    pub now: Time,
    /// The VLAN's effective timers (already adopting the elected querier's QRV/QQI).
    pub timers: &'a TimerConfig,
    /// Who queries on this VLAN.
    pub querier: QuerierRole,
    /// The port has `fast_leave`: one host behind it, so anything that would start last-member
    /// query processing removes the state at once instead.
    pub fast_leave: bool,
    /// Most sources one port-group may hold (per-record source cap); sources beyond it are
    /// refused and counted in [`Outcome::sources_refused`].
    pub max_sources: usize,
}

/// What one call changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<A> {
    /// Queries to send on this port now (only ever non-empty when we are the querier).
    pub queries: Vec<QueryRequest<A>>,
    /// Whether the set of forwarded sources / the filter mode changed (the forwarding table of
    /// this group must be recomputed).
    pub forwarding_changed: bool,
    /// Sources not added because of [`Context::max_sources`].
    pub sources_refused: usize,
}

// Written by hand: a derived `Default` would demand `A: Default`, which `Ipv4Addr` lacks.
impl<A> Default for Outcome<A> {
    fn default() -> Self {
        Outcome {
            queries: Vec::new(),
            forwarding_changed: false,
            sources_refused: 0,
        }
    }
}

/// One source's state as shown to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceView<A> {
    /// The source.
    pub source: A,
    /// Time left on its source timer; `None` when the timer is not running (an EXCLUDE-mode
    /// blocked source).
    pub remaining: Option<Duration>,
    /// Whether traffic from this source is forwarded to the port.
    pub forwarded: bool,
}

/// Per-source router state (RFC 3376 §6.2.1: a source timer per source record) plus the
/// §6.6.3.2 retransmission counter of group-and-source-specific queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SourceState {
    /// Expiry of the source timer; `None` = not running (only in EXCLUDE: the "Y" list).
    timer: Option<Time>,
    /// Q(G,S) transmissions still owed for this source (§6.6.3.2); 0 = no retransmission state.
    rexmit: u8,
}

/// Router-side state of one group on one port.
#[derive(Clone, Debug)]
pub struct PortGroup<A> {
    group: A,
    /// Router filter mode (§6.2.1).
    mode: FilterMode,
    /// Group timer expiry (§6.2.1); `Some` exactly in EXCLUDE mode.
    group_timer: Option<Time>,
    /// INCLUDE: the include list (all timers running). EXCLUDE: the requested list X (timer
    /// running) and the exclude list Y (timer not running).
    sources: BTreeMap<A, SourceState>,
    /// Q(G) transmissions still owed (§6.6.3.1).
    group_rexmit: u8,
    /// When the next Q(G)/Q(G,S) retransmission is due; `None` when nothing is owed.
    rexmit_at: Option<Time>,
    /// IGMPv1 Host Present timer expiry (§7.3.2).
    v1_host_until: Option<Time>,
    /// IGMPv2 Host Present timer expiry (§7.3.2).
    v2_host_until: Option<Time>,
}

/// `now + d`, saturating instead of panicking on absurd configured intervals.
fn after(now: Time, d: Duration) -> Time {
    now.checked_add(d).unwrap_or(Duration::MAX)
}

/// Last Member Query Count, never 0: RFC 3376 §6.6.3 always sends at least one query, so a
/// (misconfigured) count of 0 acts as 1.
fn lmq_count(ctx: &Context<'_>) -> u8 {
    ctx.timers.last_member_query_count.max(1)
}

/// Last Member Query Time = LMQI × LMQC (RFC 3376 §8.11), with the count as in [`lmq_count`]
/// and saturating arithmetic.
fn lmq_time(ctx: &Context<'_>) -> Duration {
    ctx.timers
        .last_member_query_interval
        .checked_mul(u32::from(lmq_count(ctx)))
        .unwrap_or(Duration::MAX)
}

/// A record's source list without duplicates, in record order (the order decides which sources
/// the [`Context::max_sources`] cap keeps), plus a set for the table's set algebra.
struct SourceList<A> {
    order: Vec<A>,
    set: BTreeSet<A>,
}

impl<A: GroupAddress> SourceList<A> {
    fn new(sources: &[A]) -> Self {
        let mut set = BTreeSet::new();
        let mut order = Vec::new();
        for s in sources {
            if set.insert(*s) {
                order.push(*s);
            }
        }
        SourceList { order, set }
    }

    fn empty() -> Self {
        SourceList {
            order: Vec::new(),
            set: BTreeSet::new(),
        }
    }
}

/// What forwarding looks like, to detect [`Outcome::forwarding_changed`]: the mode and the
/// sources that decide it (INCLUDE: the include list; EXCLUDE: the exclude list).
type ForwardingKey<A> = (FilterMode, Vec<A>);

impl<A: GroupAddress> PortGroup<A> {
    /// A new, empty state: INCLUDE {} (RFC 3376 §6.2.1), which forwards nothing.
    pub fn new(group: A) -> Self {
        PortGroup {
            group,
            mode: FilterMode::Include,
            group_timer: None,
            sources: BTreeMap::new(),
            group_rexmit: 0,
            rexmit_at: None,
            v1_host_until: None,
            v2_host_until: None,
        }
    }

    /// The group this state is about.
    pub fn group(&self) -> A {
        self.group
    }

    /// Applies one group record received on the port in a report of `from` version (RFC 3376
    /// §6.4.1 for current-state records, §6.4.2 for filter-mode/source-list changes; §7.3.2 for
    /// older versions: a v1/v2 report arrives as `IsEx` with no sources and starts the
    /// older-host-present timer; while in v1/v2 compatibility mode, BLOCK is ignored, TO_EX's
    /// source list is ignored, and in v1 mode TO_IN / leaves are ignored).
    ///
    /// In v1 mode a TO_IN(B) keeps only its "(B)=GMI" part (it acts as ALLOW(B)): its Q(G) /
    /// timer lowering is what §7.3.2 forbids (v1 hosts answer with a 10 s delay, far beyond
    /// LMQT), while honouring the sources it asks for costs nothing. TO_IN({}) is thus ignored.
    pub fn record(
        &mut self,
        ctx: &Context<'_>,
        kind: RecordType,
        sources: &[A],
        from: Version,
    ) -> Outcome<A> {
        let before = self.forwarding_key();
        let mut out = Outcome::default();
        self.run_due(ctx, &mut out);
        // §7.3.2: v1/v2 reports (re)start the older-host-present timers.
        let ohpi = after(ctx.now, ctx.timers.older_host_present_interval());
        match from {
            Version::V1 => self.v1_host_until = Some(ohpi),
            Version::V2 => self.v2_host_until = Some(ohpi),
            Version::V3 => {}
        }
        let list = SourceList::new(sources);
        match (self.compat_version(ctx.now), kind) {
            // §7.3.2: in IGMPv1/v2 compatibility mode BLOCK is ignored ...
            (Version::V1 | Version::V2, RecordType::Block) => {}
            // ... and TO_EX(x) is treated as TO_EX({}).
            (Version::V1 | Version::V2, RecordType::ToEx) => {
                self.apply(ctx, RecordType::ToEx, &SourceList::empty(), &mut out)
            }
            // §7.3.2: in IGMPv1 mode leaves (TO_IN) must not lower timers; see the doc above.
            (Version::V1, RecordType::ToIn) => self.apply(ctx, RecordType::Allow, &list, &mut out),
            (_, kind) => self.apply(ctx, kind, &list, &mut out),
        }
        self.finish(ctx, before, out)
    }

    /// An IGMPv2 Leave: TO_IN({}) per RFC 3376 §7.3.2 (ignored in IGMPv1 compatibility mode).
    pub fn leave(&mut self, ctx: &Context<'_>) -> Outcome<A> {
        let before = self.forwarding_key();
        let mut out = Outcome::default();
        self.run_due(ctx, &mut out);
        if self.compat_version(ctx.now) != Version::V1 {
            self.apply(ctx, RecordType::ToIn, &SourceList::empty(), &mut out);
        }
        self.finish(ctx, before, out)
    }

    /// Another querier's group-specific query for this group was seen (RFC 3376 §6.6.1): unless
    /// `suppress` is set, lower the group timer to LMQT computed with its max response time.
    pub fn group_query_seen(
        &mut self,
        ctx: &Context<'_>,
        max_resp: Duration,
        suppress: bool,
    ) -> Outcome<A> {
        let before = self.forwarding_key();
        let mut out = Outcome::default();
        self.run_due(ctx, &mut out);
        if !suppress {
            self.lower_group_timer(ctx.now, queries::seen_lmqt(ctx, max_resp));
        }
        self.finish(ctx, before, out)
    }

    /// Another querier's group-and-source-specific query was seen (RFC 3376 §6.6.1): unless
    /// `suppress` is set, lower the listed sources' timers.
    pub fn group_source_query_seen(
        &mut self,
        ctx: &Context<'_>,
        sources: &[A],
        max_resp: Duration,
        suppress: bool,
    ) -> Outcome<A> {
        let before = self.forwarding_key();
        let mut out = Outcome::default();
        self.run_due(ctx, &mut out);
        if !suppress {
            let lmqt = queries::seen_lmqt(ctx, max_resp);
            for s in sources {
                self.lower_source_timer(s, ctx.now, lmqt);
            }
        }
        self.finish(ctx, before, out)
    }

    /// Processes everything due at `ctx.now`: source and group timer expiry (§6.3, §6.5), the
    /// older-host-present timers (§7.3.2), and retransmissions of pending Q(G) / Q(G,S) (§6.6.3).
    pub fn advance(&mut self, ctx: &Context<'_>) -> Outcome<A> {
        let before = self.forwarding_key();
        let mut out = Outcome::default();
        self.run_due(ctx, &mut out);
        self.finish(ctx, before, out)
    }

    /// The earliest time at which [`PortGroup::advance`] has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        let sources = self.sources.values().filter_map(|s| s.timer);
        [
            self.group_timer,
            self.rexmit_at,
            self.v1_host_until,
            self.v2_host_until,
        ]
        .into_iter()
        .flatten()
        .chain(sources)
        .min()
    }

    /// INCLUDE with no sources: the port-group holds nothing and should be deleted (§6.5).
    ///
    /// The older-host-present timers are not consulted: RFC 3376 keeps them per group record,
    /// so they die with it.
    pub fn is_empty(&self) -> bool {
        self.mode == FilterMode::Include && self.sources.is_empty()
    }

    /// The router filter mode.
    pub fn mode(&self) -> FilterMode {
        self.mode
    }

    /// Time left on the group timer (EXCLUDE mode only; `None` in INCLUDE).
    pub fn group_timer_remaining(&self, now: Time) -> Option<Duration> {
        self.group_timer.map(|t| t.saturating_sub(now))
    }

    /// The compatibility mode in force (§7.3.2): the oldest version whose older-host-present
    /// timer is running, else V3.
    pub fn compat_version(&self, now: Time) -> Version {
        let running = |t: Option<Time>| t.is_some_and(|t| t > now);
        if running(self.v1_host_until) {
            Version::V1
        } else if running(self.v2_host_until) {
            Version::V2
        } else {
            Version::V3
        }
    }

    /// Whether traffic from `source` is forwarded to this port (RFC 3376 §6.3 table).
    pub fn admits(&self, source: &A) -> bool {
        let entry = self.sources.get(source);
        match self.mode {
            // §6.3 INCLUDE: forward only listed sources whose timer runs.
            FilterMode::Include => entry.is_some_and(|s| s.timer.is_some()),
            // §6.3 EXCLUDE: forward unless the source is listed with a stopped timer.
            FilterMode::Exclude => entry.is_none_or(|s| s.timer.is_some()),
        }
    }

    /// Every source in the state (INCLUDE: the include list; EXCLUDE: requested and excluded).
    pub fn sources(&self, now: Time) -> Vec<SourceView<A>> {
        self.sources
            .iter()
            .map(|(source, st)| SourceView {
                source: *source,
                remaining: st.timer.map(|t| t.saturating_sub(now)),
                forwarded: self.admits(source),
            })
            .collect()
    }

    fn forwarding_key(&self) -> ForwardingKey<A> {
        let deciding = self
            .sources
            .iter()
            .filter(|(_, st)| match self.mode {
                FilterMode::Include => st.timer.is_some(),
                FilterMode::Exclude => st.timer.is_none(),
            })
            .map(|(s, _)| *s)
            .collect();
        (self.mode, deciding)
    }

    /// Restores the invariants after a change and completes the outcome. A timer the call
    /// lowered to "now" (a zero LMQT or Max Resp Time) has expired, so it is processed here:
    /// after every call [`PortGroup::next_deadline`] lies strictly after `ctx.now`.
    fn finish(
        &mut self,
        ctx: &Context<'_>,
        before: ForwardingKey<A>,
        mut out: Outcome<A>,
    ) -> Outcome<A> {
        self.normalize();
        self.run_due(ctx, &mut out);
        out.forwarding_changed |= before != self.forwarding_key();
        out
    }

    /// Invariants: INCLUDE has no group timer and no Q(G) retransmissions; a source without a
    /// running timer owes no retransmissions; nothing owed ⇒ no retransmission deadline.
    fn normalize(&mut self) {
        if self.mode == FilterMode::Include {
            self.group_timer = None;
            self.group_rexmit = 0;
        }
        for st in self.sources.values_mut() {
            if st.timer.is_none() {
                st.rexmit = 0;
            }
        }
        if !self.rexmit_pending() {
            self.rexmit_at = None;
        }
    }

    fn rexmit_pending(&self) -> bool {
        self.group_rexmit > 0 || self.sources.values().any(|s| s.rexmit > 0)
    }
}
