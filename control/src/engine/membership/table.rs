//! The router state tables of RFC 3376 §6.4.1 (current-state records) and §6.4.2 (filter-mode
//! and source-list change records), one match arm per row.
//!
//! Notation as in the RFC: INCLUDE(A) / EXCLUDE(X,Y) is the state before, B (or A in EXCLUDE
//! rows) the record's source list. "(S)=GMI" sets source timers, "(S)=0" puts sources in the
//! exclude list (timer not running), "Send Q(...)" goes to [`QueryPlan`].

use super::queries::QueryPlan;
use super::{after, Context, Outcome, PortGroup, SourceList, SourceState};
use crate::engine::model::{FilterMode, GroupAddress, RecordType, Time};

impl<A: GroupAddress> PortGroup<A> {
    /// Applies one (already §7.3.2-translated) record to the state and executes the queries the
    /// row asks for.
    pub(super) fn apply(
        &mut self,
        ctx: &Context<'_>,
        kind: RecordType,
        b: &SourceList<A>,
        out: &mut Outcome<A>,
    ) {
        let gmi = after(ctx.now, ctx.timers.group_membership_interval());
        let mut plan = QueryPlan::default();
        match (self.mode, kind) {
            // §6.4.1 INCLUDE(A) IS_IN(B) → INCLUDE(A+B), (B)=GMI.
            // §6.4.2 INCLUDE(A) ALLOW(B) → INCLUDE(A+B), (B)=GMI.
            (FilterMode::Include, RecordType::IsIn | RecordType::Allow) => {
                self.set_timers(b, gmi, ctx, out);
            }
            // §6.4.1 INCLUDE(A) IS_EX(B) → EXCLUDE(A*B, B-A), (B-A)=0, Delete(A-B), GT=GMI.
            // §6.4.2 INCLUDE(A) TO_EX(B) → the same, plus Send Q(G,A*B).
            (FilterMode::Include, RecordType::IsEx | RecordType::ToEx) => {
                self.sources.retain(|s, _| b.set.contains(s));
                if kind == RecordType::ToEx {
                    plan.sources = self.sources.keys().copied().collect();
                }
                self.mode = FilterMode::Exclude;
                self.group_timer = Some(gmi);
                self.insert_new(b, None, ctx, out);
            }
            // §6.4.2 INCLUDE(A) TO_IN(B) → INCLUDE(A+B), (B)=GMI, Send Q(G,A-B).
            (FilterMode::Include, RecordType::ToIn) => {
                plan.sources = self.running_not_in(b);
                self.set_timers(b, gmi, ctx, out);
            }
            // §6.4.2 INCLUDE(A) BLOCK(B) → INCLUDE(A), Send Q(G,A*B).
            (FilterMode::Include, RecordType::Block) => {
                plan.sources = self.running_in(b);
            }
            // §6.4.1 EXCLUDE(X,Y) IS_IN(A) → EXCLUDE(X+A, Y-A), (A)=GMI.
            // §6.4.2 EXCLUDE(X,Y) ALLOW(A) → EXCLUDE(X+A, Y-A), (A)=GMI.
            (FilterMode::Exclude, RecordType::IsIn | RecordType::Allow) => {
                self.set_timers(b, gmi, ctx, out);
            }
            // §6.4.1 EXCLUDE(X,Y) IS_EX(A) → EXCLUDE(A-Y, Y*A), (A-X-Y)=GMI, Delete(X-A),
            //        Delete(Y-A), GT=GMI.
            // §6.4.2 EXCLUDE(X,Y) TO_EX(A) → EXCLUDE(A-Y, Y*A), (A-X-Y)=Group Timer,
            //        Delete(X-A), Delete(Y-A), Send Q(G,A-Y), GT=GMI.
            (FilterMode::Exclude, RecordType::IsEx | RecordType::ToEx) => {
                let new_timer = if kind == RecordType::IsEx {
                    gmi
                } else {
                    // The group timer's value before this row sets it to GMI.
                    self.group_timer.unwrap_or(gmi)
                };
                self.sources.retain(|s, _| b.set.contains(s));
                self.insert_new(b, Some(new_timer), ctx, out);
                if kind == RecordType::ToEx {
                    plan.sources = self.running_in(b);
                }
                self.group_timer = Some(gmi);
            }
            // §6.4.2 EXCLUDE(X,Y) BLOCK(A) → EXCLUDE(X+(A-Y), Y), (A-X-Y)=Group Timer,
            //        Send Q(G,A-Y).
            (FilterMode::Exclude, RecordType::Block) => {
                let group_timer = self.group_timer.unwrap_or(gmi);
                self.insert_new(b, Some(group_timer), ctx, out);
                plan.sources = self.running_in(b);
            }
            // §6.4.2 EXCLUDE(X,Y) TO_IN(A) → EXCLUDE(X+A, Y-A), (A)=GMI, Send Q(G,X-A),
            //        Send Q(G).
            (FilterMode::Exclude, RecordType::ToIn) => {
                plan.sources = self.running_not_in(b);
                plan.group = true;
                self.set_timers(b, gmi, ctx, out);
            }
        }
        self.execute(ctx, plan, out);
    }

    /// "(B)=T": sets the timer of every source of `b` (starting it for excluded ones, which
    /// moves them from Y to X), adding absent ones while [`Context::max_sources`] allows.
    fn set_timers(
        &mut self,
        b: &SourceList<A>,
        expiry: Time,
        ctx: &Context<'_>,
        out: &mut Outcome<A>,
    ) {
        for s in &b.order {
            if let Some(st) = self.sources.get_mut(s) {
                st.timer = Some(expiry);
            } else {
                self.insert_capped(*s, Some(expiry), ctx, out);
            }
        }
    }

    /// Adds the sources of `b` not yet present with the given timer (`None`: excluded).
    fn insert_new(
        &mut self,
        b: &SourceList<A>,
        timer: Option<Time>,
        ctx: &Context<'_>,
        out: &mut Outcome<A>,
    ) {
        for s in &b.order {
            if !self.sources.contains_key(s) {
                self.insert_capped(*s, timer, ctx, out);
            }
        }
    }

    /// Adds one source unless the port-group already holds [`Context::max_sources`]; existing
    /// sources are never evicted, so which sources a full state keeps is deterministic.
    fn insert_capped(
        &mut self,
        s: A,
        timer: Option<Time>,
        ctx: &Context<'_>,
        out: &mut Outcome<A>,
    ) {
        if self.sources.len() < ctx.max_sources {
            self.sources.insert(s, SourceState { timer, rexmit: 0 });
        } else {
            out.sources_refused += 1;
        }
    }

    /// Sources with a running timer that are in `b` (A*B in INCLUDE, A-Y in EXCLUDE).
    fn running_in(&self, b: &SourceList<A>) -> Vec<A> {
        self.sources
            .iter()
            .filter(|(s, st)| st.timer.is_some() && b.set.contains(*s))
            .map(|(s, _)| *s)
            .collect()
    }

    /// Sources with a running timer that are not in `b` (A-B in INCLUDE, X-A in EXCLUDE).
    fn running_not_in(&self, b: &SourceList<A>) -> Vec<A> {
        self.sources
            .iter()
            .filter(|(s, st)| st.timer.is_some() && !b.set.contains(*s))
            .map(|(s, _)| *s)
            .collect()
    }
}
