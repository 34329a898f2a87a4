//! Group-specific and group-and-source-specific queries: what a "Send Q(G)" / "Send Q(G,S)"
//! table action does (RFC 3376 §6.6.3.1, §6.6.3.2), their retransmissions, the S flag, and the
//! timer lowering on queries seen from another querier (§6.6.1).
//!
//! Choices beyond the RFC text, by role:
//! - `Us`: the RFC as written.
//! - `Other`: nothing; the elected querier sends the queries, and we lower our timers when we
//!   see them ([`super::PortGroup::group_query_seen`]).
//! - `Nobody`: no query will ever confirm remaining members, so the timers are lowered to LMQT
//!   as if the query had been sent (what the Linux bridge does), and nothing is sent.
//! - fast-leave port: one host, whose record is the whole truth; the timers the query would
//!   lower expire at once instead (INCLUDE sources deleted, EXCLUDE sources excluded, the group
//!   timer expired per §6.5).
//!
//! Queries seen from another router (§6.6.1) lower our timers whatever our role: the RFC asks
//! it of every router that "sends or receives" such a query, and a stale role must not keep
//! members the querier is about to drop. LMQT is then LMQC × the query's Max Response Time.
//!
//! IGMPv1/v2 compatibility mode (§7.3.2): old hosts cannot parse a source list, so when a
//! transmission would carry a Q(G,S) while the group is in v1/v2 mode, a single Q(G) is sent
//! instead (its S flag per the Q(G) rule: set iff the group timer exceeds LMQT, so clear in
//! INCLUDE). Our own source timers are still lowered as for Q(G,S): the v3 hosts that still
//! want those sources answer the Q(G) with their full state and raise them again.

use std::time::Duration;

use super::{after, lmq_count, lmq_time, Context, Outcome, PortGroup};
use crate::engine::model::{FilterMode, GroupAddress, QuerierRole, QueryRequest, Time, Version};

/// The "Send Q(...)" actions of one table row.
#[derive(Debug)]
pub(super) struct QueryPlan<A> {
    /// "Send Q(G)".
    pub(super) group: bool,
    /// "Send Q(G,S)" for these sources (all present with a running timer).
    pub(super) sources: Vec<A>,
}

impl<A> Default for QueryPlan<A> {
    fn default() -> Self {
        QueryPlan {
            group: false,
            sources: Vec::new(),
        }
    }
}

/// LMQT as a non-querier computes it from a seen query (RFC 3376 §6.6.1 with §8.11): Last
/// Member Query Count × the query's Max Response Time.
pub(super) fn seen_lmqt(ctx: &Context<'_>, max_resp: Duration) -> Duration {
    max_resp
        .checked_mul(u32::from(lmq_count(ctx)))
        .unwrap_or(Duration::MAX)
}

impl<A: GroupAddress> PortGroup<A> {
    /// Carries out a row's "Send Q(G)" / "Send Q(G,S)" actions according to the port and the
    /// querier role (see the module documentation).
    pub(super) fn execute(&mut self, ctx: &Context<'_>, plan: QueryPlan<A>, out: &mut Outcome<A>) {
        if !plan.group && plan.sources.is_empty() {
            return;
        }
        if ctx.fast_leave {
            for s in &plan.sources {
                self.expire_source(s);
            }
            if plan.group && self.mode == FilterMode::Exclude {
                self.expire_group();
            }
            return;
        }
        let lmqt = lmq_time(ctx);
        match ctx.querier {
            QuerierRole::Other => {}
            QuerierRole::Nobody => {
                for s in &plan.sources {
                    self.lower_source_timer(s, ctx.now, lmqt);
                }
                if plan.group {
                    self.lower_group_timer(ctx.now, lmqt);
                }
            }
            QuerierRole::Us => {
                let count = lmq_count(ctx);
                let mut marked = false;
                // §6.6.3.2: sources whose timer exceeds LMQT get [LMQC] retransmissions and
                // their timer lowered to LMQT; the others are left alone.
                for s in &plan.sources {
                    if let Some(st) = self.sources.get_mut(s) {
                        if let Some(t) = st.timer {
                            if t.saturating_sub(ctx.now) > lmqt {
                                st.timer = Some(after(ctx.now, lmqt));
                                st.rexmit = count;
                                marked = true;
                            }
                        }
                    }
                }
                // §6.6.3.1: the group timer is lowered to LMQT and [LMQC] Q(G) are owed.
                if plan.group && self.mode == FilterMode::Exclude {
                    self.lower_group_timer(ctx.now, lmqt);
                    self.group_rexmit = count;
                    marked = true;
                }
                // §6.6.3: "immediately send ... and schedule [LMQC - 1] retransmissions".
                if marked {
                    self.transmit(ctx, ctx.now, out);
                }
            }
        }
    }

    /// One transmission at time `t` of everything owed (§6.6.3.1, §6.6.3.2), scheduling the
    /// next one [Last Member Query Interval] later while anything is still owed.
    pub(super) fn transmit(&mut self, ctx: &Context<'_>, t: Time, out: &mut Outcome<A>) {
        let lmqt = lmq_time(ctx);
        let above_lmqt = |expiry: Time| expiry.saturating_sub(t) > lmqt;
        // §6.6.3.1: S set when the group timer is larger than LMQT.
        let group_s = self.group_timer.is_some_and(above_lmqt);
        let send_group = self.group_rexmit > 0 && self.mode == FilterMode::Exclude;
        self.group_rexmit = self.group_rexmit.saturating_sub(1);
        // §6.6.3.2: one message with S set for sources with retransmission state and timers
        // above LMQT, one with S clear for the others; each inclusion uses up a retransmission.
        let mut with_s = Vec::new();
        let mut without_s = Vec::new();
        for (s, st) in self.sources.iter_mut() {
            if st.rexmit == 0 {
                continue;
            }
            st.rexmit -= 1;
            match st.timer {
                Some(expiry) if above_lmqt(expiry) => with_s.push(*s),
                Some(_) => without_s.push(*s),
                None => st.rexmit = 0,
            }
        }
        let group = self.group;
        if self.compat_version(t) == Version::V3 {
            if send_group {
                out.queries.push(QueryRequest {
                    group,
                    sources: Vec::new(),
                    suppress: group_s,
                });
            }
            // §6.6.3.2 note: the S-set Q(G,S) may be suppressed when a Q(G) goes out at the
            // same time; it is.
            if !with_s.is_empty() && !send_group {
                out.queries.push(QueryRequest {
                    group,
                    sources: with_s,
                    suppress: true,
                });
            }
            if !without_s.is_empty() {
                out.queries.push(QueryRequest {
                    group,
                    sources: without_s,
                    suppress: false,
                });
            }
        } else if send_group || !with_s.is_empty() || !without_s.is_empty() {
            // §7.3.2 compatibility: one Q(G) instead (module documentation).
            out.queries.push(QueryRequest {
                group,
                sources: Vec::new(),
                suppress: group_s,
            });
        }
        self.rexmit_at = if self.rexmit_pending() {
            Some(after(t, ctx.timers.last_member_query_interval))
        } else {
            None
        };
    }

    /// Drops every owed retransmission (we are no longer the querier).
    pub(super) fn cancel_rexmit(&mut self) {
        self.group_rexmit = 0;
        for st in self.sources.values_mut() {
            st.rexmit = 0;
        }
        self.rexmit_at = None;
    }

    /// "Group Timer is lowered to LMQT" (§6.6.1 table, §6.6.3.1); only EXCLUDE has one.
    pub(super) fn lower_group_timer(&mut self, now: Time, lmqt: Duration) {
        if let Some(t) = self.group_timer.as_mut() {
            *t = (*t).min(after(now, lmqt));
        }
    }

    /// "Source Timer for sources in A are lowered to LMQT" (§6.6.1 table), for one source;
    /// absent sources and excluded ones (no timer) are left alone.
    pub(super) fn lower_source_timer(&mut self, s: &A, now: Time, lmqt: Duration) {
        if let Some(t) = self.sources.get_mut(s).and_then(|st| st.timer.as_mut()) {
            *t = (*t).min(after(now, lmqt));
        }
    }
}
