//! The learned state of one VLAN: its groups (per port a membership state machine), its router
//! ports and its querier.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use xsnoop_dataplane::{PortId, PortSet};

use super::membership::PortGroup;
use super::model::Time;
use super::mrouter::Mrouters;
use super::querier::Querier;

/// One (VLAN, group).
#[derive(Clone, Debug, Default)]
pub struct GroupState {
    /// Per port, the router-side membership state (RFC 3376 §6); never holds an empty one.
    pub ports: BTreeMap<PortId, PortGroup<Ipv4Addr>>,
    /// Ports joined by management for every source.
    pub static_ports: PortSet,
    /// Ports joined by management for listed sources only (a static INCLUDE list).
    pub static_sources: BTreeMap<PortId, BTreeSet<Ipv4Addr>>,
    /// Set while the group is flooded because a limit refused it under the `flood` policy.
    pub flood_until: Option<Time>,
}

impl GroupState {
    /// Nothing left: the group can be deleted.
    pub fn is_unused(&self) -> bool {
        self.ports.is_empty()
            && self.static_ports.is_empty()
            && self.static_sources.is_empty()
            && self.flood_until.is_none()
    }
}

/// One VLAN's learned state.
#[derive(Clone, Debug, Default)]
pub struct VlanState {
    /// Groups with any state.
    pub groups: BTreeMap<Ipv4Addr, GroupState>,
    /// Learned router ports.
    pub mrouters: Mrouters,
    /// Querier state.
    pub querier: Querier,
    /// Number of groups with at least one dynamic port-group (what the VLAN limit counts).
    pub dynamic_groups: usize,
}
