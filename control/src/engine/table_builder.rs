//! Folds the membership state into the dataplane's forwarding table (RFC 4541 §2.1.2).
//!
//! The same functions serve the incremental update of one (VLAN, group) and the from-scratch
//! rebuild, so the two cannot disagree by construction of their rules.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use xsnoop_dataplane::fasthash::FastMap;
use xsnoop_dataplane::{GroupEntry, PortSet, VlanTable};

use super::config::VlanConfig;
use super::model::{FilterMode, Time};
use super::mrouter;
use super::state::{GroupState, VlanState};
use super::topology::Topology;

/// The table entry of one group, `None` when nothing registers it.
///
/// `any_source` = ports in EXCLUDE mode (they take every source they do not exclude);
/// `by_source[S]` = the ports admitting S, for every S some port lists (RFC 3376 §6.3 per port,
/// folded as the superset over ports, RFC 4541 §2.1.2(7)). Static ports take every source, or
/// exactly their static source list.
pub fn group_entry(g: &GroupState, now: Time) -> Option<GroupEntry> {
    if g.is_unused() {
        return None;
    }
    let mut any_source = g.static_ports;
    let mut listed: BTreeSet<Ipv4Addr> = g.static_sources.values().flatten().copied().collect();
    for (&port, pg) in &g.ports {
        if pg.mode() == FilterMode::Exclude {
            any_source.insert(port);
        }
        listed.extend(pg.sources(now).into_iter().map(|s| s.source));
    }
    let by_source: FastMap<Ipv4Addr, PortSet> = listed
        .into_iter()
        .map(|s| {
            let dynamic = g
                .ports
                .iter()
                .filter(|(_, pg)| pg.admits(&s))
                .map(|(p, _)| *p);
            let pinned = g
                .static_sources
                .iter()
                .filter(|(_, list)| list.contains(&s))
                .map(|(p, _)| *p);
            let ports = dynamic
                .chain(pinned)
                .collect::<PortSet>()
                .union(g.static_ports);
            (s, ports)
        })
        .collect();
    Some(GroupEntry {
        any_source,
        by_source,
        flood: g.flood_until.is_some(),
    })
}

/// The flood-unregistered ports of a VLAN (RFC 4541 §2.1.2(3)): all of them when the VLAN says
/// so, else the ports that ask for it.
pub fn flood_unregistered(cfg: &VlanConfig, topo: &Topology) -> PortSet {
    let ports = topo.ports(cfg.id);
    if cfg.flood_unregistered {
        ports
    } else {
        topo.flood_unregistered.intersection(ports)
    }
}

/// The effective router ports of a VLAN.
pub fn mrouters(cfg: &VlanConfig, topo: &Topology, state: &VlanState) -> PortSet {
    mrouter::effective(
        state.mrouters.learned(),
        topo.mrouter_always,
        topo.mrouter_never,
        topo.ports(cfg.id),
    )
}

/// The complete table of one VLAN.
pub fn vlan_table(cfg: &VlanConfig, topo: &Topology, state: &VlanState, now: Time) -> VlanTable {
    let groups = if cfg.snooping {
        state
            .groups
            .iter()
            .filter_map(|(g, gs)| group_entry(gs, now).map(|e| (*g, e)))
            .collect()
    } else {
        FastMap::default()
    };
    VlanTable {
        ports: topo.ports(cfg.id),
        snooping: cfg.snooping,
        mrouters: mrouters(cfg, topo, state),
        flood_unregistered: flood_unregistered(cfg, topo),
        groups,
    }
}
