//! Operator changes to a running switch: static groups, per-port fast-leave and router mode,
//! and flushing learned groups (`xsnoop static|port|flush`, issue 4).
//!
//! Runtime changes are an overlay on the configuration file, never written back to it. The
//! engine keeps the file's configuration (the *base*) and these [`Overrides`] apart and runs on
//! their combination, so a SIGHUP reload replaces the base and re-applies the overlay: like
//! `bridge mdb add ... permanent` and `ip link set ... mcast_router` on a Linux bridge, a runtime
//! change survives reloads until it is undone or the daemon restarts. An override that no longer
//! fits the reloaded file (its port left the VLAN) is dropped and journalled.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use xsnoop_dataplane::{PortId, VlanId};

use super::addr::{is_snoopable_group, is_valid_source};
use super::config::{EngineConfig, MrouterMode, StaticGroup};

/// One operator change, as it travels over the control socket (`{"change": ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Join ports to a group permanently (`xsnoop static add`).
    StaticAdd(StaticAdd),
    /// Undo a runtime static join (`xsnoop static del`).
    StaticDel(StaticDel),
    /// Override a port's fast-leave or multicast-router mode (`xsnoop port set`).
    PortSet(PortSettings),
    /// Forget the learned groups of a port, a VLAN, or a port in a VLAN (`xsnoop flush`).
    Flush(Flush),
}

/// `xsnoop static add`: every listed port gets the group, for every source or only `sources`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAdd {
    /// VLAN of the entries.
    pub vlan: VlanId,
    /// The group; must be snoopable (multicast, outside 224.0.0.0/24).
    pub group: Ipv4Addr,
    /// Only these sources (a static INCLUDE list); empty = every source.
    #[serde(default)]
    pub sources: Vec<Ipv4Addr>,
    /// Port names; at least one.
    pub ports: Vec<String>,
}

/// `xsnoop static del`: removes the runtime static entry of the group on each listed port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticDel {
    /// VLAN of the entries.
    pub vlan: VlanId,
    /// The group.
    pub group: Ipv4Addr,
    /// Port names; at least one.
    pub ports: Vec<String>,
}

/// `xsnoop port set`: what to override; `None` leaves that setting as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSettings {
    /// Port name.
    pub port: String,
    /// Leaves take effect at once (one host behind the port).
    #[serde(default)]
    pub fast_leave: Option<bool>,
    /// Multicast-router mode (RFC 4541 §2.1.1(2): routers learned or set by management).
    #[serde(default)]
    pub mrouter: Option<MrouterMode>,
}

/// `xsnoop flush`: which learned (dynamic) groups to forget. Static entries stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flush {
    /// Only this port (in every VLAN it carries, or only in `vlan`).
    #[serde(default)]
    pub port: Option<String>,
    /// Only this VLAN (every port, or only `port`).
    #[serde(default)]
    pub vlan: Option<VlanId>,
}

/// Why an operator change was refused; each message names the bad value. Nothing changes
/// when a change is refused, even for the ports listed before the bad one.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    /// The port name is not one of the switch's ports.
    #[error("no port named {name:?}; ports: {known}")]
    UnknownPort {
        /// The name given.
        name: String,
        /// The switch's port names, comma-separated.
        known: String,
    },
    /// The VLAN is not configured.
    #[error("VLAN {vlan} is not configured on this switch; VLANs: {known}")]
    UnknownVlan {
        /// The VLAN given.
        vlan: VlanId,
        /// The configured VLANs, comma-separated.
        known: String,
    },
    /// The port does not carry the VLAN.
    #[error("port {port} does not carry VLAN {vlan}")]
    PortNotInVlan {
        /// The port.
        port: String,
        /// The VLAN.
        vlan: VlanId,
    },
    /// The address is not a group snooping can forward by membership.
    #[error("{group} is not a snoopable multicast group (it must be in 224.0.0.0/4 and outside 224.0.0.0/24, which is always flooded, RFC 4541 §2.1.2(2))")]
    NotSnoopable {
        /// The address.
        group: Ipv4Addr,
    },
    /// A source that cannot send multicast.
    #[error("source {address} is not a unicast host address")]
    BadSource {
        /// The address.
        address: Ipv4Addr,
    },
    /// No port listed.
    #[error("no port given; name at least one with --port")]
    NoPorts,
    /// A static entry for the port and group already exists.
    #[error("port {port} already has a static entry for {group} in VLAN {vlan} ({origin}); delete it first")]
    StaticExists {
        /// The port.
        port: String,
        /// The group.
        group: Ipv4Addr,
        /// The VLAN.
        vlan: VlanId,
        /// "from the configuration file" or "added at runtime".
        origin: &'static str,
    },
    /// `static del` of an entry the configuration file made.
    #[error("the static entry for {group} on port {port} in VLAN {vlan} comes from the configuration file; remove it there and reload (SIGHUP)")]
    StaticFromFile {
        /// The port.
        port: String,
        /// The group.
        group: Ipv4Addr,
        /// The VLAN.
        vlan: VlanId,
    },
    /// `static del` of an entry that does not exist.
    #[error("port {port} has no static entry for {group} in VLAN {vlan}")]
    NoSuchStatic {
        /// The port.
        port: String,
        /// The group.
        group: Ipv4Addr,
        /// The VLAN.
        vlan: VlanId,
    },
    /// `port set` with nothing to set.
    #[error("nothing to change on port {port}; give --fast-leave and/or --mrouter")]
    NothingToSet {
        /// The port.
        port: String,
    },
    /// `flush` without a port or a VLAN.
    #[error("say what to flush: --port, --vlan or both")]
    NothingToFlush,
}

/// The runtime overlay on the configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Static entries added at runtime, one per (VLAN, group, port).
    pub statics: Vec<StaticGroup>,
    /// Fast-leave set at runtime, per port.
    pub fast_leave: BTreeMap<PortId, bool>,
    /// Router mode set at runtime, per port.
    pub mrouter: BTreeMap<PortId, MrouterMode>,
}

impl Overrides {
    /// The configuration the engine runs: `base` with the overrides applied.
    pub fn apply(&self, base: &EngineConfig) -> EngineConfig {
        let mut c = base.clone();
        for (&p, &on) in &self.fast_leave {
            if let Some(port) = c.ports.get_mut(usize::from(p)) {
                port.fast_leave = on;
            }
        }
        for (&p, &mode) in &self.mrouter {
            if let Some(port) = c.ports.get_mut(usize::from(p)) {
                port.mrouter = mode;
            }
        }
        c.static_groups.extend(self.statics.iter().cloned());
        c
    }

    /// Drops what no longer fits a new `base` (a reload); returns the static entries dropped
    /// because their port left the VLAN or the port is gone. Entries the file now has itself
    /// are dropped silently: the file took them over.
    pub fn prune(&mut self, base: &EngineConfig) -> Vec<StaticGroup> {
        let n = base.ports.len();
        self.fast_leave.retain(|&p, _| usize::from(p) < n);
        self.mrouter.retain(|&p, _| usize::from(p) < n);
        let mut dropped = Vec::new();
        self.statics.retain(|s| {
            if find_static(&base.static_groups, s.vlan, s.group, s.port).is_some() {
                return false;
            }
            let fits = base
                .ports
                .get(usize::from(s.port))
                .is_some_and(|p| p.vlans.as_slice().contains(&s.vlan))
                && base.vlans.iter().any(|v| v.id == s.vlan);
            if !fits {
                dropped.push(s.clone());
            }
            fits
        });
        dropped
    }
}

/// The index of the static entry for (VLAN, group, port) in `list`.
pub fn find_static(
    list: &[StaticGroup],
    vlan: VlanId,
    group: Ipv4Addr,
    port: PortId,
) -> Option<usize> {
    list.iter()
        .position(|s| s.vlan == vlan && s.group == group && s.port == port)
}

/// Resolves a port name to its id in `config`.
pub fn port_id(config: &EngineConfig, name: &str) -> Result<PortId, CommandError> {
    config
        .ports
        .iter()
        .position(|p| p.name == name)
        .and_then(|i| PortId::try_from(i).ok())
        .ok_or_else(|| CommandError::UnknownPort {
            name: name.to_string(),
            known: config
                .ports
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks that `vlan` is configured.
pub fn check_vlan(config: &EngineConfig, vlan: VlanId) -> Result<(), CommandError> {
    if config.vlans.iter().any(|v| v.id == vlan) {
        return Ok(());
    }
    Err(CommandError::UnknownVlan {
        vlan,
        known: config
            .vlans
            .iter()
            .map(|v| v.id.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Checks that port `id` carries `vlan`.
pub fn check_port_in_vlan(
    config: &EngineConfig,
    id: PortId,
    vlan: VlanId,
) -> Result<(), CommandError> {
    match config.ports.get(usize::from(id)) {
        Some(p) if p.vlans.as_slice().contains(&vlan) => Ok(()),
        p => Err(CommandError::PortNotInVlan {
            port: p.map_or_else(|| format!("port{id}"), |p| p.name.clone()),
            vlan,
        }),
    }
}

/// The same checks the configuration file's `static_groups` get ([`EngineConfig::validate`]),
/// with errors naming the bad value.
pub fn check_static(group: Ipv4Addr, sources: &[Ipv4Addr]) -> Result<(), CommandError> {
    if !is_snoopable_group(group) {
        return Err(CommandError::NotSnoopable { group });
    }
    if let Some(&address) = sources.iter().find(|a| !is_valid_source(**a)) {
        return Err(CommandError::BadSource { address });
    }
    Ok(())
}
