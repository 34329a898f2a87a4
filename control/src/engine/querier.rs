//! Per-VLAN querier: our own general queries and the election among queriers (RFC 3376 §6.6.2).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;
use xsnoop_dataplane::{PortId, VlanId};

use super::config::VlanConfig;
use super::events::{ms, EventKind};
use super::io::QuerySpec;
use super::model::{QuerierRole, Time, Version};
use super::timers::TimerConfig;

/// Another router that won the election, as last heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherQuerier {
    /// Its address (never 0.0.0.0).
    pub address: Ipv4Addr,
    /// Port it was heard on.
    pub port: PortId,
    /// Version of its last query.
    pub version: Version,
    /// When it was elected.
    pub since: Time,
    /// Its robustness variable (0 = not advertised).
    pub qrv: u8,
    /// Its query interval, if advertised.
    pub qqi: Option<Duration>,
    /// When the Other Querier Present timer runs out.
    pub expires: Time,
    /// How its version and timers differ from ours, as last journalled (`None`: they agree).
    pub differs: Option<String>,
}

/// How a querier's advertised version and timers differ from `cfg`'s, in words; `None` when
/// they agree. RFC 3376 §8 expects one set of timer values per link: a difference means hosts
/// and snoopers time memberships differently from what one of the two routers intends. QQI is
/// compared within the QQIC encoding's precision (a 4-bit mantissa: 1/16).
pub fn differences(
    cfg: &VlanConfig,
    version: Version,
    qrv: u8,
    qqi: Option<Duration>,
) -> Option<String> {
    let mut d = Vec::new();
    if version != cfg.igmp_version {
        d.push(format!(
            "version {} (ours {})",
            version_number(version),
            version_number(cfg.igmp_version)
        ));
    }
    if qrv != 0 && qrv != cfg.timers.robustness {
        d.push(format!("robustness {qrv} (ours {})", cfg.timers.robustness));
    }
    if let Some(theirs) = qqi {
        let ours = cfg.timers.query_interval;
        if theirs.abs_diff(ours) > ours.max(theirs) / 16 {
            d.push(format!("query interval {theirs:?} (ours {ours:?})"));
        }
    }
    (!d.is_empty()).then(|| d.join(", "))
}

/// What a heard query did to the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Election {
    /// No change in who queries.
    Unchanged,
    /// A new querier, or a different one; events to journal.
    Changed(Vec<EventKind>),
}

/// One VLAN's querier state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Querier {
    /// The elected other querier, if any.
    pub other: Option<OtherQuerier>,
    startup_left: u8,
    next_general: Option<Time>,
}

impl Querier {
    /// Fresh state: when `cfg.querier` is on we start with the startup queries (RFC 3376 §8.7),
    /// the first one due at once.
    pub fn new(cfg: &VlanConfig, now: Time) -> Self {
        let mut q = Querier::default();
        if cfg.querier {
            q.startup_left = cfg.timers.startup_query_count;
            q.next_general = Some(now);
        }
        q
    }

    /// Who queries on the VLAN.
    pub fn role(&self, cfg: &VlanConfig) -> QuerierRole {
        match (&self.other, cfg.querier) {
            (Some(_), _) => QuerierRole::Other,
            (None, true) => QuerierRole::Us,
            (None, false) => QuerierRole::Nobody,
        }
    }

    /// The timers in force: ours, with the elected querier's QRV and QQI adopted (RFC 3376
    /// §4.1.6, §4.1.7).
    pub fn effective_timers(&self, cfg: &VlanConfig) -> TimerConfig {
        match &self.other {
            Some(o) => cfg.timers.adopting(o.qrv, o.qqi),
            None => cfg.timers,
        }
    }

    /// When our next general query is due.
    pub fn next_general(&self) -> Option<Time> {
        self.next_general
    }

    /// A query from `src` arrived on `port` (RFC 3376 §6.6.2): the lowest address queries. A
    /// 0.0.0.0 source (proxy query, RFC 4541 §2.1.1(4)) never takes part, and neither does our
    /// own 0.0.0.0 proxy address.
    #[allow(clippy::too_many_arguments)]
    pub fn query_seen(
        &mut self,
        cfg: &VlanConfig,
        now: Time,
        port: PortId,
        src: Ipv4Addr,
        version: Version,
        qrv: u8,
        qqi: Option<Duration>,
    ) -> Election {
        if src.is_unspecified() {
            return Election::Unchanged;
        }
        let ours = cfg.querier_address;
        if cfg.querier && !ours.is_unspecified() && src >= ours {
            // We win (or it is our own address looped back): keep querying.
            return Election::Unchanged;
        }
        let expires = now.saturating_add(
            cfg.timers
                .adopting(qrv, qqi)
                .other_querier_present_interval(),
        );
        let mut events = Vec::new();
        let differs = differences(cfg, version, qrv, qqi);
        let reported = match &self.other {
            Some(o) if o.address == src => o.differs.clone(),
            _ => None,
        };
        let since = match &self.other {
            Some(o) if o.address == src => o.since,
            Some(o) if src > o.address => return Election::Unchanged,
            Some(o) => {
                events.push(EventKind::QuerierChanged {
                    from: o.address,
                    to: src,
                });
                now
            }
            None => {
                events.push(EventKind::QuerierElected {
                    address: src,
                    ours: false,
                });
                now
            }
        };
        if differs.is_some() && differs != reported {
            events.push(EventKind::QuerierMismatch {
                address: src,
                differs: differs.clone().unwrap_or_default(),
            });
        }
        self.other = Some(OtherQuerier {
            address: src,
            port,
            version,
            since,
            qrv,
            qqi: qqi.filter(|d| !d.is_zero()),
            expires,
            differs,
        });
        // A lower address queries: we stop (RFC 3376 §6.6.2, "non-querier" state).
        self.startup_left = 0;
        self.next_general = None;
        if events.is_empty() {
            Election::Unchanged
        } else {
            Election::Changed(events)
        }
    }

    /// The elected querier is gone (timer ran out or its port went down): when we are
    /// configured as querier we take over at once (RFC 3376 §6.6.2, Other Querier Present timer
    /// expiry).
    pub fn other_lost(&mut self, cfg: &VlanConfig, now: Time) -> Vec<EventKind> {
        let Some(o) = self.other.take() else {
            return Vec::new();
        };
        let mut events = vec![EventKind::QuerierLost { address: o.address }];
        if cfg.querier {
            self.next_general = Some(now);
            events.push(EventKind::QuerierElected {
                address: cfg.querier_address,
                ours: true,
            });
        }
        events
    }

    /// The general query due at `now`, if any, and schedules the next one: startup queries every
    /// Startup Query Interval, then every Query Interval (RFC 3376 §8.6, §8.7, §8.2).
    pub fn general_query_due(&mut self, cfg: &VlanConfig, now: Time) -> Option<QuerySpec> {
        self.next_general.filter(|t| *t <= now)?;
        if !cfg.querier || self.other.is_some() {
            self.next_general = None;
            return None;
        }
        let t = &cfg.timers;
        self.startup_left = self.startup_left.saturating_sub(1);
        let wait = if self.startup_left > 0 {
            t.startup_query_interval
        } else {
            t.query_interval
        };
        self.next_general = Some(now.saturating_add(wait));
        Some(general_query(cfg))
    }
}

/// Our general query for a VLAN: the configured version, max response = Query Response
/// Interval (RFC 3376 §8.3), our QRV and QQI (§4.1.6, §4.1.7).
pub fn general_query(cfg: &VlanConfig) -> QuerySpec {
    QuerySpec {
        version: cfg.igmp_version,
        src: cfg.querier_address,
        group: None,
        sources: Vec::new(),
        max_resp: cfg.timers.query_response_interval,
        suppress: false,
        qrv: cfg.timers.robustness,
        qqi: cfg.timers.query_interval,
    }
}

/// Querier state of one VLAN, for operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuerierStatus {
    /// The VLAN.
    pub vlan: VlanId,
    /// Whether our querier is configured on.
    pub enabled: bool,
    /// Whether this switch is the querier now.
    pub we_are_querier: bool,
    /// Our query source address.
    pub our_address: Ipv4Addr,
    /// The elected querier's address (ours when we query; `null` when nobody does).
    pub querier: Option<Ipv4Addr>,
    /// Name of the port the other querier is behind (`null` when it is us or nobody).
    pub port: Option<String>,
    /// Version of the querier's queries.
    pub version: Option<u8>,
    /// Milliseconds since the other querier was elected.
    pub since_ms: Option<u64>,
    /// Its robustness variable.
    pub qrv: Option<u8>,
    /// Its query interval, in milliseconds.
    pub qqi_ms: Option<u64>,
    /// Milliseconds left on the Other Querier Present timer.
    pub expires_ms: Option<u64>,
    /// Milliseconds until our next general query.
    pub next_query_ms: Option<u64>,
    /// How the elected querier's version or timers differ from ours (`null`: they agree).
    pub differs: Option<String>,
}

/// Version number as operators write it.
pub fn version_number(v: Version) -> u8 {
    match v {
        Version::V1 => 1,
        Version::V2 => 2,
        Version::V3 => 3,
    }
}

impl Querier {
    /// The status row of this VLAN; `port_name` maps port ids to names.
    pub fn status(
        &self,
        cfg: &VlanConfig,
        now: Time,
        port_name: impl Fn(PortId) -> Option<String>,
    ) -> QuerierStatus {
        let left = |t: Time| ms(t.saturating_sub(now));
        match &self.other {
            Some(o) => QuerierStatus {
                vlan: cfg.id,
                enabled: cfg.querier,
                we_are_querier: false,
                our_address: cfg.querier_address,
                querier: Some(o.address),
                port: port_name(o.port),
                version: Some(version_number(o.version)),
                since_ms: Some(ms(now.saturating_sub(o.since))),
                qrv: Some(o.qrv),
                qqi_ms: o.qqi.map(ms),
                expires_ms: Some(left(o.expires)),
                next_query_ms: None,
                differs: o.differs.clone(),
            },
            None => QuerierStatus {
                vlan: cfg.id,
                enabled: cfg.querier,
                we_are_querier: cfg.querier,
                our_address: cfg.querier_address,
                querier: cfg.querier.then_some(cfg.querier_address),
                port: None,
                version: cfg.querier.then_some(version_number(cfg.igmp_version)),
                since_ms: None,
                qrv: cfg.querier.then_some(cfg.timers.robustness),
                qqi_ms: cfg.querier.then_some(ms(cfg.timers.query_interval)),
                expires_ms: None,
                next_query_ms: self.next_general.map(left),
                differs: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    fn cfg(querier: bool, addr: [u8; 4]) -> VlanConfig {
        VlanConfig {
            querier,
            querier_address: Ipv4Addr::from(addr),
            ..VlanConfig::new(1)
        }
    }

    #[test]
    fn startup_queries_then_query_interval() {
        let c = cfg(true, [10, 0, 0, 5]);
        let mut q = Querier::new(&c, s(0));
        assert_eq!(q.next_general(), Some(s(0)));
        assert!(q.general_query_due(&c, s(0)).is_some());
        // RFC 3376 §8.6: the second startup query follows after QI/4 = 31.25 s.
        assert_eq!(q.next_general(), Some(Duration::from_millis(31_250)));
        assert!(q.general_query_due(&c, s(31)).is_none());
        let g = q
            .general_query_due(&c, Duration::from_millis(31_250))
            .unwrap();
        assert_eq!(g.group, None);
        assert_eq!(g.max_resp, s(10));
        assert_eq!(
            q.next_general(),
            Some(Duration::from_millis(31_250) + s(125))
        );
    }

    #[test]
    fn lower_address_wins_and_zero_never_does() {
        let c = cfg(true, [10, 0, 0, 5]);
        let mut q = Querier::new(&c, s(0));
        let seen = |q: &mut Querier, a: [u8; 4]| {
            q.query_seen(&c, s(1), 3, Ipv4Addr::from(a), Version::V3, 2, None)
        };
        assert_eq!(seen(&mut q, [0, 0, 0, 0]), Election::Unchanged);
        assert_eq!(seen(&mut q, [10, 0, 0, 9]), Election::Unchanged);
        assert_eq!(q.role(&c), QuerierRole::Us);
        assert!(matches!(seen(&mut q, [10, 0, 0, 2]), Election::Changed(_)));
        assert_eq!(q.role(&c), QuerierRole::Other);
        assert_eq!(q.next_general(), None);
        assert!(matches!(seen(&mut q, [10, 0, 0, 1]), Election::Changed(_)));
        assert_eq!(seen(&mut q, [10, 0, 0, 2]), Election::Unchanged);
        assert_eq!(
            q.other.as_ref().unwrap().address,
            Ipv4Addr::new(10, 0, 0, 1)
        );
        let ev = q.other_lost(&c, s(300));
        assert_eq!(ev.len(), 2);
        assert_eq!(q.next_general(), Some(s(300)));
    }

    #[test]
    fn proxy_address_loses_to_any_real_querier() {
        let c = cfg(true, [0, 0, 0, 0]);
        let mut q = Querier::new(&c, s(0));
        let e = q.query_seen(
            &c,
            s(1),
            0,
            Ipv4Addr::new(192, 168, 1, 200),
            Version::V2,
            0,
            None,
        );
        assert!(matches!(e, Election::Changed(_)));
        assert_eq!(q.role(&c), QuerierRole::Other);
        // OQPI with defaults = 255 s (RFC 3376 §8.5).
        assert_eq!(q.other.as_ref().unwrap().expires, s(256));
    }

    #[test]
    fn adopts_the_elected_querier_qrv_and_qqi() {
        let c = cfg(false, [0, 0, 0, 0]);
        let mut q = Querier::new(&c, s(0));
        q.query_seen(
            &c,
            s(0),
            1,
            Ipv4Addr::new(10, 1, 1, 1),
            Version::V3,
            3,
            Some(s(60)),
        );
        let t = q.effective_timers(&c);
        assert_eq!((t.robustness, t.query_interval), (3, s(60)));
        assert_eq!(q.other.as_ref().unwrap().expires, s(3 * 60 + 5));
    }
}
