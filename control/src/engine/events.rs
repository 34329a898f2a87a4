//! The journal: every state change of the engine, with the reason it happened.
//!
//! Linux announces MDB changes without saying why; operators debugging a lost stream need the
//! why ("expired after GMI", "refused: VLAN group limit"), so each event carries it.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;
use xsnoop_dataplane::{PortId, VlanId};

use super::config::MrouterMode;
use super::model::Time;

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it happened, in milliseconds of engine time.
    #[serde(rename = "at_ms", serialize_with = "ser_ms")]
    pub at: Time,
    /// The VLAN concerned.
    pub vlan: VlanId,
    /// The port concerned, if one.
    pub port: Option<PortId>,
    /// The group concerned, if one.
    pub group: Option<Ipv4Addr>,
    /// What changed.
    pub kind: EventKind,
    /// Why, in words an operator can act on.
    pub reason: &'static str,
}

/// What kind of state change an [`Event`] records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    /// A port started receiving a group.
    Join,
    /// A port's group state was removed because of a leave or a change to INCLUDE {}.
    Leave,
    /// A port's group state timed out.
    Expire,
    /// Learned state was removed by reconfiguration.
    Evict,
    /// A table limit refused a group or sources.
    Limit {
        /// Which limit: "global", "vlan", "port" or "sources".
        scope: &'static str,
        /// What was done: "denied" or "flooded".
        action: &'static str,
    },
    /// A group flooded because of a limit is no longer flooded.
    FloodEnded,
    /// A querier was elected on the VLAN (`ours` when it is this switch).
    QuerierElected {
        /// The querier's address.
        address: Ipv4Addr,
        /// Whether it is this switch.
        ours: bool,
    },
    /// The elected querier changed to a lower address.
    QuerierChanged {
        /// The previous querier.
        from: Ipv4Addr,
        /// The new querier.
        to: Ipv4Addr,
    },
    /// The elected querier went silent for the Other Querier Present Interval.
    QuerierLost {
        /// The querier lost.
        address: Ipv4Addr,
    },
    /// The elected querier's version or advertised timers differ from this VLAN's configured
    /// ones (journalled when the difference appears or changes, not on every query).
    QuerierMismatch {
        /// The elected querier.
        address: Ipv4Addr,
        /// What differs, e.g. "version 2 (ours 3), robustness 3 (ours 2)".
        differs: String,
    },
    /// A port became a multicast-router port.
    MrouterLearned {
        /// What revealed the router: "query", "pim_hello" or "mrd".
        via: &'static str,
    },
    /// A learned multicast-router port aged out or was flushed.
    MrouterExpired,
    /// All dynamic state of a port was flushed.
    PortFlushed {
        /// How many port-groups were removed.
        groups: usize,
    },
    /// All dynamic groups of a VLAN were flushed by the operator.
    VlanFlushed {
        /// How many port-groups were removed.
        groups: usize,
    },
    /// The operator joined the port to the group permanently (`xsnoop static add`).
    StaticAdded,
    /// A runtime static entry was removed (`xsnoop static del`, or a reload it no longer fits).
    StaticRemoved,
    /// The operator changed the port's settings (`xsnoop port set`); the values now in force.
    PortChanged {
        /// Fast-leave on the port.
        fast_leave: bool,
        /// Its multicast-router mode.
        mrouter: MrouterMode,
    },
}

/// Serializes a duration as whole milliseconds.
pub(crate) fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(ms(*d))
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
