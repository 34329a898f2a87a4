//! Timer expiry: source timers (RFC 3376 §6.3), the group timer (§6.5), the older-host-present
//! timers (§7.3.2) and due retransmissions (§6.6.3), processed in time order.

use super::{Context, Outcome, PortGroup};
use crate::engine::model::{FilterMode, GroupAddress, QuerierRole, Time};

impl<A: GroupAddress> PortGroup<A> {
    /// Processes every deadline up to `ctx.now`, earliest first, each at its own time, so a late
    /// call (a large time jump) ends in the same state as calls at every deadline.
    ///
    /// Terminates: each step clears every deadline it is at, or (a retransmission with a zero
    /// LMQI) uses up one owed transmission.
    pub(super) fn run_due(&mut self, ctx: &Context<'_>, out: &mut Outcome<A>) {
        while let Some(t) = self.next_deadline() {
            if t > ctx.now {
                break;
            }
            self.expire_at(ctx, t, out);
        }
    }

    /// Everything due at `t`: expiries first (so the queries built at `t` see the state at
    /// `t`), then the retransmission.
    fn expire_at(&mut self, ctx: &Context<'_>, t: Time, out: &mut Outcome<A>) {
        let expired: Vec<A> = self
            .sources
            .iter()
            .filter(|(_, st)| st.timer.is_some_and(|e| e <= t))
            .map(|(s, _)| *s)
            .collect();
        for s in &expired {
            self.expire_source(s);
        }
        if self.group_timer.is_some_and(|e| e <= t) {
            self.expire_group();
        }
        // §7.3.2: a stopped older-host-present timer lets the compatibility mode move up.
        if self.v1_host_until.is_some_and(|e| e <= t) {
            self.v1_host_until = None;
        }
        if self.v2_host_until.is_some_and(|e| e <= t) {
            self.v2_host_until = None;
        }
        self.normalize();
        if self.rexmit_at.is_some_and(|e| e <= t) {
            if ctx.querier == QuerierRole::Us {
                self.transmit(ctx, t, out);
            } else {
                // Another querier took over (or none is left): its queries, not ours, count.
                self.cancel_rexmit();
            }
        }
        self.normalize();
    }

    /// A source timer reached 0 (§6.3): in INCLUDE the source is deleted (stop forwarding);
    /// in EXCLUDE it moves to the exclude list (suspend forwarding).
    pub(super) fn expire_source(&mut self, s: &A) {
        match self.mode {
            FilterMode::Include => {
                self.sources.remove(s);
            }
            FilterMode::Exclude => {
                if let Some(st) = self.sources.get_mut(s) {
                    st.timer = None;
                    st.rexmit = 0;
                }
            }
        }
    }

    /// The group timer reached 0 in EXCLUDE (§6.5): switch to INCLUDE with the sources whose
    /// timers still run, deleting the excluded ones; with none left the record is empty.
    pub(super) fn expire_group(&mut self) {
        if self.mode != FilterMode::Exclude {
            return;
        }
        self.mode = FilterMode::Include;
        self.group_timer = None;
        self.group_rexmit = 0;
        self.sources.retain(|_, st| st.timer.is_some());
    }
}
