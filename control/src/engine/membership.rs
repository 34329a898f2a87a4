//! Router-side membership state of one group on one port: RFC 3376 §6 (and RFC 3810 §7, MLDv2),
//! with the IGMPv1/v2 compatibility rules of RFC 3376 §7.3.2.
//!
//! INTERFACE CONTRACT (fixed; the engine shell codes against it). Bodies are being implemented.

use std::time::Duration;

use super::model::{FilterMode, GroupAddress, QuerierRole, QueryRequest, RecordType, Time, Version};
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome<A> {
    /// Queries to send on this port now (only ever non-empty when we are the querier).
    pub queries: Vec<QueryRequest<A>>,
    /// Whether the set of forwarded sources / the filter mode changed (the forwarding table of
    /// this group must be recomputed).
    pub forwarding_changed: bool,
    /// Sources not added because of [`Context::max_sources`].
    pub sources_refused: usize,
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

/// Router-side state of one group on one port.
#[derive(Clone, Debug)]
pub struct PortGroup<A> {
    _group: A,
}

impl<A: GroupAddress> PortGroup<A> {
    /// A new, empty state: INCLUDE {} (RFC 3376 §6.2.1), which forwards nothing.
    pub fn new(group: A) -> Self {
        PortGroup { _group: group }
    }

    /// The group this state is about.
    pub fn group(&self) -> A {
        todo!()
    }

    /// Applies one group record received on the port in a report of `from` version (RFC 3376
    /// §6.4.1 for current-state records, §6.4.2 for filter-mode/source-list changes; §7.3.2 for
    /// older versions: a v1/v2 report arrives as `IsEx` with no sources and starts the
    /// older-host-present timer; while in v1/v2 compatibility mode, BLOCK is ignored, TO_EX's
    /// source list is ignored, and in v1 mode TO_IN / leaves are ignored).
    pub fn record(
        &mut self,
        ctx: &Context<'_>,
        kind: RecordType,
        sources: &[A],
        from: Version,
    ) -> Outcome<A> {
        let _ = (ctx, kind, sources, from);
        todo!()
    }

    /// An IGMPv2 Leave: TO_IN({}) per RFC 3376 §7.3.2 (ignored in IGMPv1 compatibility mode).
    pub fn leave(&mut self, ctx: &Context<'_>) -> Outcome<A> {
        let _ = ctx;
        todo!()
    }

    /// Another querier's group-specific query for this group was seen (RFC 3376 §6.6.1): unless
    /// `suppress` is set, lower the group timer to LMQT computed with its max response time.
    pub fn group_query_seen(
        &mut self,
        ctx: &Context<'_>,
        max_resp: Duration,
        suppress: bool,
    ) -> Outcome<A> {
        let _ = (ctx, max_resp, suppress);
        todo!()
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
        let _ = (ctx, sources, max_resp, suppress);
        todo!()
    }

    /// Processes everything due at `ctx.now`: source and group timer expiry (§6.3, §6.5), the
    /// older-host-present timers (§7.3.2), and retransmissions of pending Q(G) / Q(G,S) (§6.6.3).
    pub fn advance(&mut self, ctx: &Context<'_>) -> Outcome<A> {
        let _ = ctx;
        todo!()
    }

    /// The earliest time at which [`PortGroup::advance`] has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        todo!()
    }

    /// INCLUDE with no sources: the port-group holds nothing and should be deleted (§6.5).
    pub fn is_empty(&self) -> bool {
        todo!()
    }

    /// The router filter mode.
    pub fn mode(&self) -> FilterMode {
        todo!()
    }

    /// Time left on the group timer (EXCLUDE mode only; `None` in INCLUDE).
    pub fn group_timer_remaining(&self, now: Time) -> Option<Duration> {
        let _ = now;
        todo!()
    }

    /// The compatibility mode in force (§7.3.2): the oldest version whose older-host-present
    /// timer is running, else V3.
    pub fn compat_version(&self, now: Time) -> Version {
        let _ = now;
        todo!()
    }

    /// Whether traffic from `source` is forwarded to this port (RFC 3376 §6.3 table).
    pub fn admits(&self, source: &A) -> bool {
        let _ = source;
        todo!()
    }

    /// Every source in the state (INCLUDE: the include list; EXCLUDE: requested and excluded).
    pub fn sources(&self, now: Time) -> Vec<SourceView<A>> {
        let _ = now;
        todo!()
    }
}
