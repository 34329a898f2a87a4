//! The per-port and per-VLAN summaries behind `xsnoop ports` and `xsnoop vlans`: what an
//! operator checks first when a stream goes missing (is the link up, is the port a router
//! port, was a setting changed at runtime, who is querier, how many groups).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use xsnoop_dataplane::{PortId, VlanId};

use super::super::config::{MrouterMode, PortVlans};
use super::super::model::QuerierRole;
use super::super::table_builder::mrouters;
use super::Engine;

/// One port as `xsnoop ports` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    /// Interface name.
    pub port: String,
    /// "access" or "trunk".
    pub vlan_mode: String,
    /// The VLANs it carries.
    pub vlans: Vec<VlanId>,
    /// "up" or "down", as the engine last heard.
    pub link: String,
    /// Fast-leave in force.
    pub fast_leave: bool,
    /// Fast-leave was set at runtime (`xsnoop port set`), not by the configuration.
    pub fast_leave_runtime: bool,
    /// Multicast-router mode in force.
    pub mrouter: MrouterMode,
    /// The mode was set at runtime.
    pub mrouter_runtime: bool,
    /// VLANs in which the port is a multicast-router port now (configured or learned).
    pub router_in: Vec<VlanId>,
    /// Learned port-groups on the port, over its VLANs.
    pub groups: usize,
    /// Static entries on the port, over its VLANs.
    pub static_groups: usize,
    /// Frames the dataplane received on the port (when the mode reports it).
    pub rx: Option<u64>,
    /// Frames the dataplane sent on the port (when the mode reports it).
    pub tx: Option<u64>,
}

/// One VLAN as `xsnoop vlans` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanView {
    /// 802.1Q id.
    pub vlan: VlanId,
    /// Snooping on (off: multicast is flooded in the VLAN).
    pub snooping: bool,
    /// Our querier is configured on.
    pub querier_enabled: bool,
    /// Who queries now: "us", "other" or "none".
    pub querier: String,
    /// The elected querier's address (`null` when nobody queries).
    pub querier_address: Option<Ipv4Addr>,
    /// Groups with any state (learned, static or flooded by a limit).
    pub groups: usize,
    /// Port names of the VLAN.
    pub ports: Vec<String>,
    /// Multicast-router ports now.
    pub router_ports: Vec<String>,
}

impl Engine {
    /// Ports in id order, without dataplane counters (the caller adds `rx`/`tx`).
    pub fn port_views(&self) -> Vec<PortView> {
        let mut rows = Vec::new();
        for (i, p) in self.config.ports.iter().enumerate() {
            let Ok(id) = PortId::try_from(i) else {
                continue;
            };
            let mut router_in = Vec::new();
            let (mut groups, mut statics) = (0, 0);
            for &vlan in p.vlans.as_slice() {
                let (Some(cfg), Some(vs)) = (self.vlan_cfg.get(&vlan), self.vlans.get(&vlan))
                else {
                    continue;
                };
                if mrouters(cfg, &self.topo, vs).contains(id) {
                    router_in.push(vlan);
                }
                for gs in vs.groups.values() {
                    groups += usize::from(gs.ports.contains_key(&id));
                    statics += usize::from(
                        gs.static_ports.contains(id) || gs.static_sources.contains_key(&id),
                    );
                }
            }
            rows.push(PortView {
                port: p.name.clone(),
                vlan_mode: match p.vlans {
                    PortVlans::Access(_) => "access",
                    PortVlans::Trunk(_) => "trunk",
                }
                .to_string(),
                vlans: p.vlans.as_slice().to_vec(),
                link: if self.down.contains(id) { "down" } else { "up" }.to_string(),
                fast_leave: p.fast_leave,
                fast_leave_runtime: self.overrides.fast_leave.contains_key(&id),
                mrouter: p.mrouter,
                mrouter_runtime: self.overrides.mrouter.contains_key(&id),
                router_in,
                groups,
                static_groups: statics,
                rx: None,
                tx: None,
            });
        }
        rows
    }

    /// VLANs in id order.
    pub fn vlan_views(&self) -> Vec<VlanView> {
        self.vlan_cfg
            .values()
            .map(|cfg| {
                let vs = self.vlans.get(&cfg.id);
                let role = vs.map_or(QuerierRole::Nobody, |vs| vs.querier.role(cfg));
                let names = |set: xsnoop_dataplane::PortSet| -> Vec<String> {
                    set.iter().map(|p| self.port_name(p)).collect()
                };
                VlanView {
                    vlan: cfg.id,
                    snooping: cfg.snooping,
                    querier_enabled: cfg.querier,
                    querier: match role {
                        QuerierRole::Us => "us",
                        QuerierRole::Other => "other",
                        QuerierRole::Nobody => "none",
                    }
                    .to_string(),
                    querier_address: match role {
                        QuerierRole::Us => Some(cfg.querier_address),
                        QuerierRole::Other => vs
                            .and_then(|vs| vs.querier.other.as_ref())
                            .map(|o| o.address),
                        QuerierRole::Nobody => None,
                    },
                    groups: vs.map_or(0, |vs| vs.groups.len()),
                    ports: names(self.topo.ports(cfg.id)),
                    router_ports: vs
                        .map_or_else(Vec::new, |vs| names(mrouters(cfg, &self.topo, vs))),
                }
            })
            .collect()
    }
}
