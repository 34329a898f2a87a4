//! Control-plane policing: how many frames per second each port may punt to the switch CPU.
//!
//! A hardware switch protects its CPU with a policer in the ASIC (CoPP): IGMP, PIM and MRD are
//! trapped to the CPU, and a port that sends them faster than any honest host would has the
//! excess dropped and counted before it costs the CPU anything. Here the worker is the ASIC and
//! the engine thread the CPU; the punt channel is bounded too, but it is shared by all ports,
//! so without a per-port policer one flooding port would crowd every other port's reports out
//! of it (RFC 4541 §3 leaves rate limiting to the implementation; the storm requirement is
//! that other ports can still join).
//!
//! The algorithm is GCRA (the virtual-scheduling form of a token bucket): per port one
//! "theoretical arrival time"; a frame conforms when it arrives no earlier than that time minus
//! the burst tolerance, and each conforming frame pushes the time on by one emission interval
//! (1 s / rate). Integer nanoseconds, one comparison per punted frame, no allocation.

use std::time::Duration;

use crate::portset::{PortId, MAX_PORTS};

/// One port's limit: `rate` frames per second sustained, `burst` at once. `rate == 0` is no
/// limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PuntLimit {
    /// Frames per second sustained; 0 = unlimited.
    pub rate: u32,
    /// Frames accepted back to back after a quiet period (at least 1).
    pub burst: u32,
}

impl PuntLimit {
    /// No limit.
    pub const UNLIMITED: PuntLimit = PuntLimit { rate: 0, burst: 0 };

    /// The time one frame uses up of the budget.
    fn interval(self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.rate.max(1)))
    }

    /// How far ahead of schedule a burst may run.
    fn tolerance(self) -> Duration {
        self.interval()
            .saturating_mul(self.burst.max(1).saturating_sub(1))
    }
}

/// Per-port policer state, owned by one worker.
#[derive(Clone, Debug)]
pub struct PuntPolicer {
    tat: Box<[Duration]>,
    dropped: Box<[u64]>,
}

impl Default for PuntPolicer {
    fn default() -> Self {
        Self::new()
    }
}

impl PuntPolicer {
    /// A policer for every port, all quiet; allocates once, here.
    pub fn new() -> Self {
        PuntPolicer {
            tat: vec![Duration::ZERO; MAX_PORTS].into_boxed_slice(),
            dropped: vec![0; MAX_PORTS].into_boxed_slice(),
        }
    }

    /// Whether a frame punted by `port` at `now` conforms to `limit`; a frame that does not
    /// is counted against the port (see [`PuntPolicer::dropped`]).
    pub fn allow(&mut self, port: PortId, limit: PuntLimit, now: Duration) -> bool {
        if limit.rate == 0 {
            return true;
        }
        let i = usize::from(port);
        let Some(tat) = self.tat.get_mut(i) else {
            return true;
        };
        let earliest = tat.saturating_sub(limit.tolerance());
        if now < earliest {
            if let Some(d) = self.dropped.get_mut(i) {
                *d += 1;
            }
            return false;
        }
        *tat = (*tat).max(now) + limit.interval();
        true
    }

    /// Frames of `port` dropped by the policer so far.
    pub fn dropped(&self, port: PortId) -> u64 {
        self.dropped.get(usize::from(port)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut p = PuntPolicer::new();
        let lim = PuntLimit {
            rate: 100,
            burst: 10,
        };
        let t0 = Duration::from_secs(5);
        let passed = (0..50).filter(|_| p.allow(1, lim, t0)).count();
        assert_eq!(passed, 10, "the burst, and not one more, at one instant");
        assert_eq!(p.dropped(1), 40);
        // Over the next second, 100/s: about 100 more, whatever the offered rate.
        let mut more = 0;
        for i in 0..10_000u64 {
            if p.allow(1, lim, t0 + Duration::from_micros(100 * i)) {
                more += 1;
            }
        }
        assert!((99..=101).contains(&more), "{more}");
        // Other ports are untouched.
        assert_eq!(p.dropped(2), 0);
        assert!(p.allow(2, lim, t0));
    }

    #[test]
    fn quiet_time_restores_the_burst_but_never_more() {
        let mut p = PuntPolicer::new();
        let lim = PuntLimit { rate: 10, burst: 3 };
        assert_eq!((0..5).filter(|_| p.allow(0, lim, ms(0))).count(), 3);
        // An hour of silence earns the burst back, not an hour of credit.
        let later = Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| p.allow(0, lim, later)).count(), 3);
    }

    #[test]
    fn zero_rate_is_unlimited_and_bad_ports_are_not_policed() {
        let mut p = PuntPolicer::new();
        assert!((0..10_000).all(|_| p.allow(0, PuntLimit::UNLIMITED, ms(1))));
        let lim = PuntLimit { rate: 1, burst: 1 };
        assert!(p.allow(PortId::MAX, lim, ms(0)));
        assert!(p.allow(PortId::MAX, lim, ms(0)));
        // burst 0 behaves as 1.
        let lim = PuntLimit { rate: 1, burst: 0 };
        assert!(p.allow(3, lim, ms(0)));
        assert!(!p.allow(3, lim, ms(1)));
        assert!(p.allow(3, lim, ms(1000)));
    }
}
