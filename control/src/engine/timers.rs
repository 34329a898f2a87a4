//! Protocol timer knobs and every value derived from them, computed in one place.
//!
//! Defaults are RFC 3376 §8. The derived intervals (GMI, OQPI, LMQT, older-host-present) are
//! functions of the knobs, so changing the robustness variable moves every dependent value
//! coherently (unlike the Linux bridge, whose QRV is fixed at 2). Arithmetic saturates: a hostile
//! querier advertising a huge QQI cannot make the engine panic.

use std::time::Duration;

/// The configurable knobs of one VLAN's snooping instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// Robustness Variable, QRV (RFC 3376 §8.1). Must not be 0; default 2.
    pub robustness: u8,
    /// Query Interval (§8.2). Default 125 s.
    pub query_interval: Duration,
    /// Query Response Interval, the max response time of general queries (§8.3). Default 10 s.
    pub query_response_interval: Duration,
    /// Last Member Query Interval (§8.8). Default 1 s.
    pub last_member_query_interval: Duration,
    /// Last Member Query Count (§8.9). Default = robustness.
    pub last_member_query_count: u8,
    /// Startup Query Count (§8.7). Default = robustness.
    pub startup_query_count: u8,
    /// Startup Query Interval (§8.6). Default = query interval / 4.
    pub startup_query_interval: Duration,
    /// Overrides the Group Membership Interval (§8.4) when set, like the Linux bridge's
    /// `mcast_membership_interval`.
    pub membership_interval: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            robustness: 2,
            query_interval: Duration::from_secs(125),
            query_response_interval: Duration::from_secs(10),
            last_member_query_interval: Duration::from_secs(1),
            last_member_query_count: 2,
            startup_query_count: 2,
            startup_query_interval: Duration::from_millis(31_250),
            membership_interval: None,
        }
    }
}

impl TimerConfig {
    /// The knobs with the robustness variable and query interval taken from the elected querier's
    /// IGMPv3 queries (RFC 3376 §4.1.6: non-queriers adopt QRV; §4.1.7: and QQI). A QRV of 0 or a
    /// missing QQI leaves our own value in place.
    pub fn adopting(&self, qrv: u8, qqi: Option<Duration>) -> TimerConfig {
        let mut t = *self;
        if qrv != 0 {
            t.robustness = qrv;
        }
        if let Some(qqi) = qqi.filter(|d| !d.is_zero()) {
            t.query_interval = qqi;
        }
        t
    }

    fn qrv(&self) -> u32 {
        u32::from(self.robustness.max(1))
    }

    /// Group Membership Interval = QRV × QI + QRI (§8.4), unless overridden.
    pub fn group_membership_interval(&self) -> Duration {
        self.membership_interval.unwrap_or(
            self.query_interval
                .saturating_mul(self.qrv())
                .saturating_add(self.query_response_interval),
        )
    }

    /// Other Querier Present Interval = QRV × QI + QRI / 2 (§8.5). Also the age limit of learned
    /// multicast-router ports.
    pub fn other_querier_present_interval(&self) -> Duration {
        self.query_interval
            .saturating_mul(self.qrv())
            .saturating_add(self.query_response_interval / 2)
    }

    /// Last Member Query Time = LMQI × LMQC (§8.11).
    pub fn last_member_query_time(&self) -> Duration {
        self.last_member_query_interval
            .saturating_mul(u32::from(self.last_member_query_count))
    }

    /// Older Host Present Interval = QRV × QI + QRI (§8.13).
    pub fn older_host_present_interval(&self) -> Duration {
        self.query_interval
            .saturating_mul(self.qrv())
            .saturating_add(self.query_response_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3376_section8_defaults_and_derived_values() {
        let t = TimerConfig::default();
        assert_eq!(t.group_membership_interval(), Duration::from_secs(260));
        assert_eq!(t.other_querier_present_interval(), Duration::from_secs(255));
        assert_eq!(t.last_member_query_time(), Duration::from_secs(2));
        assert_eq!(t.older_host_present_interval(), Duration::from_secs(260));
        assert_eq!(t.startup_query_interval, t.query_interval / 4);
    }

    #[test]
    fn robustness_drives_every_derived_interval() {
        let t = TimerConfig {
            robustness: 3,
            ..TimerConfig::default()
        };
        assert_eq!(t.group_membership_interval(), Duration::from_secs(385));
        assert_eq!(t.other_querier_present_interval(), Duration::from_secs(380));
        let overridden = TimerConfig {
            membership_interval: Some(Duration::from_secs(30)),
            ..t
        };
        assert_eq!(
            overridden.group_membership_interval(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn absurd_knobs_saturate_instead_of_panicking() {
        let t = TimerConfig {
            robustness: u8::MAX,
            query_interval: Duration::MAX,
            query_response_interval: Duration::MAX,
            last_member_query_interval: Duration::MAX,
            last_member_query_count: u8::MAX,
            ..TimerConfig::default()
        };
        assert_eq!(t.group_membership_interval(), Duration::MAX);
        assert_eq!(t.other_querier_present_interval(), Duration::MAX);
        assert_eq!(t.last_member_query_time(), Duration::MAX);
        assert_eq!(t.older_host_present_interval(), Duration::MAX);
    }

    #[test]
    fn adopting_querier_values_ignores_zero() {
        let t = TimerConfig::default();
        let a = t.adopting(4, Some(Duration::from_secs(60)));
        assert_eq!(
            (a.robustness, a.query_interval),
            (4, Duration::from_secs(60))
        );
        assert_eq!(t.adopting(0, Some(Duration::ZERO)), t);
    }
}
