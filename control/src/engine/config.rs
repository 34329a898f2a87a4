//! The engine's typed configuration and its validation.
//!
//! The TOML front end maps onto these types; everything that can be wrong with a configuration is
//! caught here, once, with an error naming the field and the fix, so the engine itself never has
//! to second-guess its inputs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use thiserror::Error;
use xsnoop_dataplane::{PortId, VlanId, MAX_PORTS};

use super::addr::is_snoopable_group;

use super::model::Version;
use super::timers::TimerConfig;

/// The whole switch's snooping configuration: ports (their id is their index), VLANs and limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineConfig {
    /// The switch ports; port `i` has [`PortId`] `i`.
    pub ports: Vec<PortConfig>,
    /// The VLANs the switch carries.
    pub vlans: Vec<VlanConfig>,
    /// Most (VLAN, group) entries learned in total; 0 = no limit.
    pub max_groups: usize,
    /// Most sources one port-group may hold (the per-record source cap); 0 = no limit.
    pub max_sources: usize,
    /// Groups joined permanently by management, independent of reports.
    pub static_groups: Vec<StaticGroup>,
}

/// Which VLANs a port carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortVlans {
    /// An access port: untagged frames belong to this VLAN.
    Access(VlanId),
    /// A trunk port carrying these VLANs.
    Trunk(Vec<VlanId>),
}

impl PortVlans {
    /// The VLANs of the port as a slice (one element for an access port).
    pub fn as_slice(&self) -> &[VlanId] {
        match self {
            PortVlans::Access(v) => std::slice::from_ref(v),
            PortVlans::Trunk(vs) => vs,
        }
    }
}

/// Whether a port is a multicast-router port (RFC 4541 §2.1.1(2): learned or set by management).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MrouterMode {
    /// Learned from queries, PIM hellos and MRD advertisements, aged out.
    #[default]
    Auto,
    /// Always a router port (management configured).
    Always,
    /// Never a router port, whatever arrives on it.
    Never,
}

/// What happens when a new group would exceed a table limit. Snooping is never disabled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFullPolicy {
    /// The new group is refused (event + counter); its traffic stays unregistered.
    #[default]
    Deny,
    /// Only the overflowing group is flooded to every port of the VLAN.
    Flood,
}

/// One switch port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Operator-visible name (the Linux interface name); unique.
    pub name: String,
    /// VLAN membership.
    pub vlans: PortVlans,
    /// One host behind the port: leaves remove state at once instead of querying.
    pub fast_leave: bool,
    /// Multicast-router port mode.
    pub mrouter: MrouterMode,
    /// Also send membership reports and leaves to this port (RFC 4541 §2.1.1(1) admin override).
    pub flood_reports: bool,
    /// Also send unregistered multicast to this port (RFC 4541 §2.1.2(3) per-port force flood).
    pub flood_unregistered: bool,
    /// Most port-groups on this port across its VLANs; 0 = no limit.
    pub max_groups: usize,
}

impl PortConfig {
    /// An access port in `vlan` with every option at its default.
    pub fn access(name: &str, vlan: VlanId) -> Self {
        PortConfig {
            name: name.to_string(),
            vlans: PortVlans::Access(vlan),
            fast_leave: false,
            mrouter: MrouterMode::Auto,
            flood_reports: false,
            flood_unregistered: false,
            max_groups: 0,
        }
    }
}

/// One VLAN's snooping instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlanConfig {
    /// 802.1Q id, 1..=4094.
    pub id: VlanId,
    /// Snooping on: multicast is forwarded by membership. Off: flooded like broadcast.
    pub snooping: bool,
    /// This switch sends general queries and takes part in querier election.
    pub querier: bool,
    /// Source address of our queries. 0.0.0.0 = proxy queries that never take part in election
    /// (RFC 4541 §2.1.1(4)).
    pub querier_address: Ipv4Addr,
    /// Version of the general queries we send: V2 or V3.
    pub igmp_version: Version,
    /// Protocol timers.
    pub timers: TimerConfig,
    /// Policy when a limit is hit.
    pub table_full: TableFullPolicy,
    /// Most groups learned in this VLAN; 0 = no limit.
    pub max_groups: usize,
    /// Flood unregistered multicast to every port of the VLAN.
    pub flood_unregistered: bool,
}

impl VlanConfig {
    /// A snooping VLAN with the querier off and RFC 3376 default timers.
    pub fn new(id: VlanId) -> Self {
        VlanConfig {
            id,
            snooping: true,
            querier: false,
            querier_address: Ipv4Addr::UNSPECIFIED,
            igmp_version: Version::V3,
            timers: TimerConfig::default(),
            table_full: TableFullPolicy::Deny,
            max_groups: 0,
            flood_unregistered: false,
        }
    }
}

/// A group joined on a port by management: never expires, never counted in limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticGroup {
    /// VLAN of the entry.
    pub vlan: VlanId,
    /// Port that receives the group.
    pub port: PortId,
    /// The group.
    pub group: Ipv4Addr,
    /// Only these sources (a static INCLUDE list, e.g. one SSM channel); empty = every source.
    pub sources: Vec<Ipv4Addr>,
}

/// Why a configuration was rejected; every message names the field and how to fix it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// More ports than the port bitmap holds.
    #[error("ports: {count} ports configured but at most {max} are supported; remove ports")]
    TooManyPorts {
        /// How many were configured.
        count: usize,
        /// The limit ([`MAX_PORTS`]).
        max: usize,
    },
    /// A port without a name.
    #[error("ports[{index}].name: is empty; give the port its interface name")]
    EmptyPortName {
        /// Index of the port.
        index: usize,
    },
    /// Two ports with the same name.
    #[error("ports[{index}].name: \"{name}\" is already used by ports[{first}]; port names must be unique")]
    DuplicatePortName {
        /// Index of the second port.
        index: usize,
        /// Index of the first port with that name.
        first: usize,
        /// The name.
        name: String,
    },
    /// A VLAN id outside 1..=4094.
    #[error("{field}: VLAN id {id} is reserved or out of range; use 1..=4094")]
    InvalidVlanId {
        /// Path of the field.
        field: String,
        /// The id.
        id: VlanId,
    },
    /// Two VLAN sections with the same id.
    #[error("vlans[{index}].id: VLAN {id} is defined twice; merge the two sections")]
    DuplicateVlan {
        /// Index of the second definition.
        index: usize,
        /// The id.
        id: VlanId,
    },
    /// A port refers to a VLAN that has no section.
    #[error("{field}: VLAN {id} is not defined; add a [[vlan]] section with id = {id} or remove it here")]
    UndefinedVlan {
        /// Path of the field.
        field: String,
        /// The id.
        id: VlanId,
    },
    /// A trunk listing no VLAN or one VLAN twice.
    #[error("ports[{index}].vlans: {problem}; list each VLAN of the trunk once")]
    BadTrunk {
        /// Index of the port.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// A timer knob with an impossible value.
    #[error("vlans[{index}].timers.{knob}: {problem}; {fix}")]
    BadTimer {
        /// Index of the VLAN.
        index: usize,
        /// Name of the knob.
        knob: &'static str,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// An IGMP version we cannot query with.
    #[error("vlans[{index}].igmp_version: version 1 queries are not sent; use 2 or 3")]
    BadIgmpVersion {
        /// Index of the VLAN.
        index: usize,
    },
    /// A querier address that cannot be a query source.
    #[error("vlans[{index}].querier_address: {addr} is not a unicast address; use this switch's IP in the VLAN or 0.0.0.0 for proxy queries")]
    BadQuerierAddress {
        /// Index of the VLAN.
        index: usize,
        /// The address.
        addr: Ipv4Addr,
    },
    /// A static group entry that cannot be installed.
    #[error("static_groups[{index}]: {problem}; fix the entry or remove it")]
    BadStaticGroup {
        /// Index of the entry.
        index: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Largest max response time an IGMPv2 query can carry: 255 × 0.1 s (RFC 2236 §2.2).
const V2_MAX_RESP: Duration = Duration::from_millis(25_500);
/// Largest max response time an IGMPv3 query can carry: (0x0f | 0x10) << (7 + 3) × 0.1 s
/// (RFC 3376 §4.1.1).
const V3_MAX_RESP: Duration = Duration::from_millis(3_174_400);
/// Longest membership interval override accepted: a day, far beyond any sane value, so timer
/// arithmetic stays well inside `Duration`.
const MAX_MEMBERSHIP_INTERVAL: Duration = Duration::from_secs(86_400);
/// Largest query interval QQIC can carry: (0x0f | 0x10) << (7 + 3) s (RFC 3376 §4.1.7).
const V3_MAX_QQI: Duration = Duration::from_secs(31_744);

impl EngineConfig {
    /// Checks everything the engine relies on; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ports.len() > MAX_PORTS {
            return Err(ConfigError::TooManyPorts {
                count: self.ports.len(),
                max: MAX_PORTS,
            });
        }
        let mut vlan_ids = BTreeSet::new();
        for (index, v) in self.vlans.iter().enumerate() {
            check_vlan_id(format!("vlans[{index}].id"), v.id)?;
            if !vlan_ids.insert(v.id) {
                return Err(ConfigError::DuplicateVlan { index, id: v.id });
            }
            validate_vlan(index, v)?;
        }
        for (index, p) in self.ports.iter().enumerate() {
            if p.name.is_empty() {
                return Err(ConfigError::EmptyPortName { index });
            }
            if let Some(first) = self.ports[..index].iter().position(|q| q.name == p.name) {
                return Err(ConfigError::DuplicatePortName {
                    index,
                    first,
                    name: p.name.clone(),
                });
            }
            let list = p.vlans.as_slice();
            if list.is_empty() {
                return Err(ConfigError::BadTrunk {
                    index,
                    problem: "the trunk carries no VLAN".to_string(),
                });
            }
            let mut seen = BTreeSet::new();
            for (k, &id) in list.iter().enumerate() {
                let field = match p.vlans {
                    PortVlans::Access(_) => format!("ports[{index}].vlans.access"),
                    PortVlans::Trunk(_) => format!("ports[{index}].vlans.trunk[{k}]"),
                };
                check_vlan_id(field.clone(), id)?;
                if !vlan_ids.contains(&id) {
                    return Err(ConfigError::UndefinedVlan { field, id });
                }
                if !seen.insert(id) {
                    return Err(ConfigError::BadTrunk {
                        index,
                        problem: format!("VLAN {id} is listed twice"),
                    });
                }
            }
        }
        for (index, s) in self.static_groups.iter().enumerate() {
            let bad = |problem: String| ConfigError::BadStaticGroup { index, problem };
            let port = self
                .ports
                .get(usize::from(s.port))
                .ok_or_else(|| bad(format!("port {} does not exist", s.port)))?;
            if !port.vlans.as_slice().contains(&s.vlan) {
                return Err(bad(format!(
                    "port {} does not carry VLAN {}",
                    port.name, s.vlan
                )));
            }
            if !is_snoopable_group(s.group) {
                return Err(bad(format!(
                    "{} is not a snoopable multicast group (224.0.0.0/24 is always flooded)",
                    s.group
                )));
            }
            if let Some(src) = s
                .sources
                .iter()
                .find(|a| a.is_multicast() || a.is_unspecified() || a.is_broadcast())
            {
                return Err(bad(format!("source {src} is not a unicast host address")));
            }
        }
        Ok(())
    }
}

fn check_vlan_id(field: String, id: VlanId) -> Result<(), ConfigError> {
    if id == 0 || id >= 4095 {
        return Err(ConfigError::InvalidVlanId { field, id });
    }
    Ok(())
}

fn validate_vlan(index: usize, v: &VlanConfig) -> Result<(), ConfigError> {
    let t = &v.timers;
    let bad = |knob: &'static str, problem: String, fix: &'static str| ConfigError::BadTimer {
        index,
        knob,
        problem,
        fix,
    };
    if t.robustness == 0 {
        // RFC 3376 §8.1: "The Robustness Variable MUST NOT be zero".
        return Err(bad(
            "robustness",
            "must not be 0 (RFC 3376 §8.1)".into(),
            "use 2 (the default) or more",
        ));
    }
    if t.query_interval.is_zero() {
        return Err(bad(
            "query_interval",
            "must not be 0".into(),
            "use 125 s (the default)",
        ));
    }
    if t.query_response_interval.is_zero() || t.query_response_interval >= t.query_interval {
        // RFC 3376 §8.3: the query response interval must be less than the query interval.
        return Err(bad(
            "query_response_interval",
            format!(
                "{:?} must be above 0 and below query_interval {:?} (RFC 3376 §8.3)",
                t.query_response_interval, t.query_interval
            ),
            "use 10 s (the default)",
        ));
    }
    if t.last_member_query_interval.is_zero() {
        return Err(bad(
            "last_member_query_interval",
            "must not be 0".into(),
            "use 1 s (the default)",
        ));
    }
    if t.last_member_query_count == 0 {
        return Err(bad(
            "last_member_query_count",
            "must not be 0 (RFC 3376 §8.9)".into(),
            "set it to the robustness variable",
        ));
    }
    if t.startup_query_count == 0 {
        return Err(bad(
            "startup_query_count",
            "must not be 0 (RFC 3376 §8.7)".into(),
            "set it to the robustness variable",
        ));
    }
    if t.startup_query_interval.is_zero() {
        return Err(bad(
            "startup_query_interval",
            "must not be 0".into(),
            "use query_interval / 4 (RFC 3376 §8.6)",
        ));
    }
    if t.membership_interval.is_some_and(|d| d.is_zero()) {
        return Err(bad(
            "membership_interval",
            "must not be 0".into(),
            "leave it unset to derive it from the other timers",
        ));
    }
    let max_resp = match v.igmp_version {
        Version::V1 => return Err(ConfigError::BadIgmpVersion { index }),
        Version::V2 => V2_MAX_RESP,
        Version::V3 => V3_MAX_RESP,
    };
    for (knob, d) in [
        ("query_response_interval", t.query_response_interval),
        ("last_member_query_interval", t.last_member_query_interval),
    ] {
        if d > max_resp {
            return Err(bad(
                knob,
                format!("{d:?} does not fit the max response field of the configured IGMP version (max {max_resp:?})"),
                "lower it or use igmp_version = 3",
            ));
        }
    }
    if t.query_interval > V3_MAX_QQI {
        return Err(bad(
            "query_interval",
            format!(
                "{:?} does not fit QQIC (max {V3_MAX_QQI:?}, RFC 3376 §4.1.7)",
                t.query_interval
            ),
            "lower it",
        ));
    }
    if t.startup_query_interval > t.query_interval {
        return Err(bad(
            "startup_query_interval",
            format!(
                "{:?} exceeds query_interval {:?}",
                t.startup_query_interval, t.query_interval
            ),
            "use query_interval / 4 (RFC 3376 §8.6)",
        ));
    }
    if t.membership_interval
        .is_some_and(|d| d > MAX_MEMBERSHIP_INTERVAL)
    {
        return Err(bad(
            "membership_interval",
            format!("more than {MAX_MEMBERSHIP_INTERVAL:?}"),
            "leave it unset to derive it from the other timers",
        ));
    }
    let a = v.querier_address;
    if a.is_multicast() || a.is_broadcast() || a.is_loopback() {
        return Err(ConfigError::BadQuerierAddress { index, addr: a });
    }
    Ok(())
}
