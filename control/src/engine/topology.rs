//! Port sets derived from the configuration once, so per-message decisions are bit operations.

use std::collections::BTreeMap;

use xsnoop_dataplane::{PortId, PortSet, VlanId};

use super::config::{EngineConfig, MrouterMode};

/// The configuration's port roles as bitmaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Ports of each configured VLAN.
    pub vlan_ports: BTreeMap<VlanId, PortSet>,
    /// Ports with `flood_reports`.
    pub flood_reports: PortSet,
    /// Ports with `flood_unregistered`.
    pub flood_unregistered: PortSet,
    /// Ports with `mrouter = always`.
    pub mrouter_always: PortSet,
    /// Ports with `mrouter = never`.
    pub mrouter_never: PortSet,
    /// Ports with `fast_leave`.
    pub fast_leave: PortSet,
}

impl Topology {
    /// Derives the bitmaps from a validated configuration.
    pub fn new(config: &EngineConfig) -> Self {
        let mut t = Topology::default();
        for v in &config.vlans {
            t.vlan_ports.insert(v.id, PortSet::EMPTY);
        }
        for (i, p) in config.ports.iter().enumerate() {
            let Ok(id) = PortId::try_from(i) else {
                continue;
            };
            for vlan in p.vlans.as_slice() {
                if let Some(set) = t.vlan_ports.get_mut(vlan) {
                    set.insert(id);
                }
            }
            let mark = |on: bool, set: &mut PortSet| {
                if on {
                    set.insert(id);
                }
            };
            mark(p.flood_reports, &mut t.flood_reports);
            mark(p.flood_unregistered, &mut t.flood_unregistered);
            mark(p.mrouter == MrouterMode::Always, &mut t.mrouter_always);
            mark(p.mrouter == MrouterMode::Never, &mut t.mrouter_never);
            mark(p.fast_leave, &mut t.fast_leave);
        }
        t
    }

    /// Ports of `vlan` (empty when not configured).
    pub fn ports(&self, vlan: VlanId) -> PortSet {
        self.vlan_ports.get(&vlan).copied().unwrap_or_default()
    }
}
