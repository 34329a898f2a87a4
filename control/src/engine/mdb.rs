//! The multicast database as operators see it (`xsnoop mdb`), in a stable JSON contract.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use xsnoop_dataplane::VlanId;

use super::events::ms;
use super::model::{FilterMode, Time};
use super::state::GroupState;

/// Filter mode in the JSON contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MdbFilterMode {
    /// INCLUDE.
    Include,
    /// EXCLUDE.
    Exclude,
}

impl From<FilterMode> for MdbFilterMode {
    fn from(m: FilterMode) -> Self {
        match m {
            FilterMode::Include => MdbFilterMode::Include,
            FilterMode::Exclude => MdbFilterMode::Exclude,
        }
    }
}

/// Where a row's membership comes from, which says how an operator removes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MdbOrigin {
    /// Learned from the port's IGMP reports: ages out, `xsnoop flush` forgets it.
    Learned,
    /// A `[[static_group]]` of the configuration file: edit the file and reload to remove it.
    File,
    /// Added by `xsnoop static add`: `xsnoop static del` removes it; it survives reloads, not
    /// restarts.
    Runtime,
}

impl MdbOrigin {
    /// The name used in JSON and in the human table.
    pub fn as_str(self) -> &'static str {
        match self {
            MdbOrigin::Learned => "learned",
            MdbOrigin::File => "file",
            MdbOrigin::Runtime => "runtime",
        }
    }
}

/// One row: a port-group (`source` null) or one of its sources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdbRow {
    /// VLAN.
    pub vlan: VlanId,
    /// Group.
    pub group: Ipv4Addr,
    /// Port name.
    pub port: String,
    /// `null` for the port-group row, else the source.
    pub source: Option<Ipv4Addr>,
    /// Router filter mode of the port-group.
    pub filter_mode: MdbFilterMode,
    /// The source is listed but not forwarded (EXCLUDE-mode excluded source).
    pub blocked: bool,
    /// Configured by management.
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Where the membership comes from: learned, or which kind of static entry.
    pub origin: MdbOrigin,
    /// Milliseconds left on the group timer (port-group row) or source timer; `null` when none
    /// runs.
    pub expires_ms: Option<u64>,
}

/// The rows of one group, ports in ascending order, static ports after dynamic ones;
/// `static_origin` says whether a port's static entry is the file's or the operator's.
pub fn group_rows(
    vlan: VlanId,
    group: Ipv4Addr,
    g: &GroupState,
    now: Time,
    port_name: &dyn Fn(u16) -> String,
    static_origin: &dyn Fn(u16) -> MdbOrigin,
    out: &mut Vec<MdbRow>,
) {
    for (&port, pg) in &g.ports {
        let mode = MdbFilterMode::from(pg.mode());
        out.push(MdbRow {
            vlan,
            group,
            port: port_name(port),
            source: None,
            filter_mode: mode,
            blocked: false,
            is_static: false,
            origin: MdbOrigin::Learned,
            expires_ms: pg.group_timer_remaining(now).map(ms),
        });
        for s in pg.sources(now) {
            out.push(MdbRow {
                vlan,
                group,
                port: port_name(port),
                source: Some(s.source),
                filter_mode: mode,
                blocked: !s.forwarded,
                is_static: false,
                origin: MdbOrigin::Learned,
                expires_ms: s.remaining.map(ms),
            });
        }
    }
    for port in g.static_ports.iter() {
        out.push(MdbRow {
            vlan,
            group,
            port: port_name(port),
            source: None,
            filter_mode: MdbFilterMode::Exclude,
            blocked: false,
            is_static: true,
            origin: static_origin(port),
            expires_ms: None,
        });
    }
    for (&port, sources) in &g.static_sources {
        let row = |source| MdbRow {
            vlan,
            group,
            port: port_name(port),
            source,
            filter_mode: MdbFilterMode::Include,
            blocked: false,
            is_static: true,
            origin: static_origin(port),
            expires_ms: None,
        };
        out.push(row(None));
        out.extend(sources.iter().map(|&s| row(Some(s))));
    }
}
