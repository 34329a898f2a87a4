//! The configuration file (TOML): what an operator writes, turned into the engine's typed
//! configuration.
//!
//! Unknown keys are errors that name the key, parse errors carry the line and column, and every
//! semantic error names the key as written in the file and how to fix it. Timer knobs left out
//! take RFC 3376 §8 defaults, derived from the robustness variable and query interval the file
//! does give (§8.6, §8.7, §8.9).

mod spans;

pub use self::spans::Location;
use self::spans::Spans;
use crate::switch::kernel_path::DataplaneMode;
use crate::switch::placement::Placement;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xsnoop_dataplane::forward::PuntLimit;
use xsnoop_dataplane::wire::MacAddr;
use xsnoop_dataplane::xdp::AttachMode;

use serde::{Deserialize, Deserializer};
use thiserror::Error;
use xsnoop_dataplane::{PortId, VlanId};

use crate::engine::model::Version;
use crate::engine::timers::TimerConfig;
use crate::engine::{
    ConfigError, EngineConfig, MrouterMode, PortConfig, PortVlans, StaticGroup, TableFullPolicy,
    VlanConfig,
};

/// Why a configuration file was refused. Displayed the way compilers do, `FILE:LINE:COLUMN:
/// message`, so editors and operators jump straight to the offending value.
#[derive(Debug, Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (an unknown key, a value of the wrong type).
    #[error("{}{message}", prefix(path, at))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped.
        at: Option<Location>,
        /// The parser's explanation, after the key it concerns when known.
        message: String,
    },
    /// The file parses but a value is not allowed.
    #[error("{}{message}", prefix(path, at))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the offending value is written; `None` when the file does not write it (a
        /// missing section, a value derived from others).
        at: Option<Location>,
        /// Which key, the bad value, what is wrong, and what is allowed.
        message: String,
    },
}

impl ConfigFileError {
    /// Where in the file the problem is, when it is one place.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigFileError::Io { .. } => None,
            ConfigFileError::Parse { at, .. } | ConfigFileError::Invalid { at, .. } => *at,
        }
    }
}

/// `"FILE:LINE:COLUMN: "` before a message; `"line L, column C: "` when the text did not come
/// from a file; `"FILE: "` or nothing without a position.
fn prefix(path: &Path, at: &Option<Location>) -> String {
    match (path.as_os_str().is_empty(), at) {
        (false, Some(at)) => format!("{}:{at}: ", path.display()),
        (false, None) => format!("{}: ", path.display()),
        (true, Some(at)) => format!("line {}, column {}: ", at.line, at.column),
        (true, None) => String::new(),
    }
}

/// A duration written with a unit: `"125s"`, `"31.25s"`, `"500ms"`, `"2m"`, `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval(pub Duration);

/// Parses an [`Interval`]; the error says what forms are allowed.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    let value: f64 = num.parse().unwrap_or(f64::NAN);
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!(
            "{text:?} is not a duration; write a number with a unit, like \"125s\", \"31.25s\", \"500ms\", \"2m\""
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_interval(&s)
            .map(Interval)
            .map_err(serde::de::Error::custom)
    }
}

/// `[snooping]`: the knobs of every VLAN's snooping instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SnoopingSection {
    querier: bool,
    querier_address: Ipv4Addr,
    igmp_version: u8,
    robustness: u8,
    query_interval: Interval,
    query_response_interval: Interval,
    last_member_query_interval: Interval,
    last_member_query_count: Option<u8>,
    startup_query_count: Option<u8>,
    startup_query_interval: Option<Interval>,
    membership_interval: Option<Interval>,
    flood_unregistered: bool,
    max_groups: usize,
    max_sources: usize,
    igmp_rate: u32,
    igmp_burst: u32,
}

impl Default for SnoopingSection {
    fn default() -> Self {
        let t = TimerConfig::default();
        SnoopingSection {
            querier: false,
            querier_address: Ipv4Addr::UNSPECIFIED,
            igmp_version: 3,
            robustness: t.robustness,
            query_interval: Interval(t.query_interval),
            query_response_interval: Interval(t.query_response_interval),
            last_member_query_interval: Interval(t.last_member_query_interval),
            last_member_query_count: None,
            startup_query_count: None,
            startup_query_interval: None,
            membership_interval: None,
            flood_unregistered: false,
            max_groups: 4096,
            max_sources: 64,
            igmp_rate: DEFAULT_IGMP_RATE,
            igmp_burst: DEFAULT_IGMP_BURST,
        }
    }
}

/// `mrouter = "auto" | "always" | "never"`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MrouterKey {
    #[default]
    Auto,
    Always,
    Never,
}

/// One `[[port]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSection {
    name: String,
    vlan: Option<VlanId>,
    trunk: Option<Vec<VlanId>>,
    native_vlan: Option<VlanId>,
    #[serde(default)]
    fast_leave: bool,
    #[serde(default)]
    mrouter: MrouterKey,
    #[serde(default)]
    flood_reports: bool,
    #[serde(default)]
    flood_unregistered: bool,
    #[serde(default)]
    max_groups: usize,
    igmp_rate: Option<u32>,
    igmp_burst: Option<u32>,
}

/// One `[[vlan]]`: overrides of `[snooping]` for one VLAN, plus per-VLAN-only knobs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VlanSection {
    id: VlanId,
    snooping: Option<bool>,
    querier: Option<bool>,
    querier_address: Option<Ipv4Addr>,
    igmp_version: Option<u8>,
    robustness: Option<u8>,
    query_interval: Option<Interval>,
    query_response_interval: Option<Interval>,
    last_member_query_interval: Option<Interval>,
    last_member_query_count: Option<u8>,
    startup_query_count: Option<u8>,
    startup_query_interval: Option<Interval>,
    membership_interval: Option<Interval>,
    flood_unregistered: Option<bool>,
    #[serde(default)]
    table_full: TableFullKey,
    #[serde(default)]
    max_groups: usize,
}

/// `table_full = "deny" | "flood"`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TableFullKey {
    #[default]
    Deny,
    Flood,
}

/// One `[[static_fdb]]`: a station pinned to a port by management.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticFdbSection {
    vlan: Option<VlanId>,
    mac: String,
    port: String,
}

/// One `[[static_group]]`: a group joined on ports by management.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticGroupSection {
    vlan: Option<VlanId>,
    group: Ipv4Addr,
    ports: Vec<String>,
    #[serde(default)]
    sources: Vec<Ipv4Addr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    /// Prometheus text exposition address; absent = off.
    metrics_listen: Option<std::net::SocketAddr>,
    /// Forwarding threads; absent = 1.
    workers: Option<usize>,
    /// CPUs the workers are pinned to.
    #[serde(default)]
    worker_cpus: Vec<usize>,
    /// Workers run SCHED_FIFO.
    #[serde(default)]
    worker_realtime: bool,
    /// The control thread runs SCHED_FIFO above the workers.
    #[serde(default)]
    control_realtime: bool,
    /// Where multicast is replicated: "auto" | "xdp" | "afxdp".
    dataplane: Option<String>,
    /// How XDP is attached: "auto" | "native" | "skb".
    xdp_mode: Option<String>,
    /// How long a learned station lasts without a frame from it; absent = 300 s.
    fdb_ageing: Option<Interval>,
    #[serde(default)]
    snooping: SnoopingSection,
    #[serde(default, rename = "port")]
    ports: Vec<PortSection>,
    #[serde(default, rename = "vlan")]
    vlans: Vec<VlanSection>,
    #[serde(default, rename = "static_group")]
    static_groups: Vec<StaticGroupSection>,
    #[serde(default, rename = "static_fdb")]
    static_fdb: Vec<StaticFdbSection>,
}

/// The version of queries a VLAN sends, from `igmp_version` under `key` (written at `path`).
fn query_version(key: &str, path: &str, v: u8) -> Result<Version, Refusal> {
    match v {
        2 => Ok(Version::V2),
        3 => Ok(Version::V3),
        v => Err(Refusal::new(format!(
            "{key}.igmp_version = {v}: xsnoop sends IGMPv2 or IGMPv3 queries; use 2 or 3"
        ))
        .at(format!("{path}.igmp_version"))),
    }
}

/// A VLAN's timers: its own keys, else `[snooping]`'s, else RFC 3376 §8 defaults derived from
/// the VLAN's effective robustness and query interval (§8.6, §8.7, §8.9).
fn vlan_timers(
    key: &str,
    s: &SnoopingSection,
    section: Option<(usize, &VlanSection)>,
) -> Result<TimerConfig, Refusal> {
    let v = section.map(|(_, v)| v);
    let robustness = v.and_then(|v| v.robustness).unwrap_or(s.robustness);
    if robustness == 0 {
        let refusal = Refusal::new(format!(
            "{key}.robustness = 0: the robustness variable must not be 0 (RFC 3376 §8.1); use 2, or more on lossy links"
        ));
        return Err(match section {
            Some((i, _)) => refusal.at(format!("vlan.{i}.robustness")),
            None => refusal,
        }
        .at("snooping.robustness"));
    }
    let qi = v
        .and_then(|v| v.query_interval)
        .unwrap_or(s.query_interval)
        .0;
    let pick = |own: Option<Interval>, global: Interval| own.unwrap_or(global).0;
    Ok(TimerConfig {
        robustness,
        query_interval: qi,
        query_response_interval: pick(
            v.and_then(|v| v.query_response_interval),
            s.query_response_interval,
        ),
        last_member_query_interval: pick(
            v.and_then(|v| v.last_member_query_interval),
            s.last_member_query_interval,
        ),
        last_member_query_count: v
            .and_then(|v| v.last_member_query_count)
            .or(s.last_member_query_count)
            .unwrap_or(robustness),
        startup_query_count: v
            .and_then(|v| v.startup_query_count)
            .or(s.startup_query_count)
            .unwrap_or(robustness),
        startup_query_interval: v
            .and_then(|v| v.startup_query_interval)
            .or(s.startup_query_interval)
            .map_or(qi / 4, |i| i.0),
        membership_interval: v
            .and_then(|v| v.membership_interval)
            .or(s.membership_interval)
            .map(|i| i.0),
    })
}

/// A whole switch configuration: the engine's part and what only the dataplane needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Snooping configuration.
    pub engine: EngineConfig,
    /// Per port (same order as `engine.ports`), the VLAN of untagged frames on a trunk port.
    pub native_vlans: Vec<Option<VlanId>>,
    /// Where to serve Prometheus metrics (`metrics_listen`); `None` = off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Forwarding threads (`workers`, default 1): worker `w` serves receive queues `q` with
    /// `q % workers == w` of every port, so every port needs at least this many queues.
    pub workers: usize,
    /// Per port (same order as `engine.ports`), how many IGMP/PIM/MRD frames per second it may
    /// send to the switch CPU (`igmp_rate`, `igmp_burst`); the dataplane polices the rest.
    pub punt_limits: Vec<PuntLimit>,
    /// Where the workers run (`worker_cpus`, `worker_realtime`) and the control thread's class
    /// (`control_realtime`).
    pub placement: Placement,
    /// Where registered multicast is replicated (`dataplane`, default "auto").
    pub dataplane: DataplaneMode,
    /// How the classifier is attached (`xdp_mode`); `None`: the command line's choice.
    pub xdp_mode: Option<AttachMode>,
    /// Stations pinned to a port (`[[static_fdb]]`): never learned elsewhere, never aged.
    pub static_fdb: Vec<(VlanId, MacAddr, PortId)>,
    /// How long a learned station (VLAN, MAC → port) is kept without a frame from it
    /// (`fdb_ageing`, default 300 s): the operator's knob for IEEE 802.1Q §8.8.3's ageing
    /// time, like the Linux bridge's `ageing_time`. Every station table ages by it: the
    /// workers', and the kernel's in-kernel copy.
    pub fdb_ageing: Duration,
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`), the unicast MAC of a station.
fn parse_station_mac(text: &str) -> Option<MacAddr> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (o, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    let mac = MacAddr(mac);
    (mac.is_unicast() && mac != MacAddr::ZERO).then_some(mac)
}

/// IGMP, PIM and MRD frames per second a port may send to the switch CPU by default: far above
/// what the hosts of one port send (a few reports per group per query interval, RFC 3376
/// §8.2), far below a storm.
pub const DEFAULT_IGMP_RATE: u32 = 1000;
/// Frames a port may send back to back by default (all its hosts answering one query at once).
pub const DEFAULT_IGMP_BURST: u32 = 1000;

/// The default per-port control-plane limit.
pub const DEFAULT_PUNT_LIMIT: PuntLimit = PuntLimit {
    rate: DEFAULT_IGMP_RATE,
    burst: DEFAULT_IGMP_BURST,
};

/// The station ageing time when the file does not set `fdb_ageing`: 300 s, IEEE 802.1Q-2018
/// Table 8-6's recommended value (and the Linux bridge's default).
pub const DEFAULT_FDB_AGEING: Duration = xsnoop_dataplane::forward::fdb::DEFAULT_AGEING;
/// The shortest `fdb_ageing` allowed: 10 s, the bottom of IEEE 802.1Q-2018 Table 8-6's range.
pub const MIN_FDB_AGEING: Duration = Duration::from_secs(10);
/// The longest `fdb_ageing` allowed: 1 000 000 s, the top of IEEE 802.1Q-2018 Table 8-6's
/// range.
pub const MAX_FDB_AGEING: Duration = Duration::from_secs(1_000_000);

/// Most forwarding threads (`workers`): one per receive queue the classifier can serve.
pub const MAX_WORKERS: usize = xsnoop_dataplane::xdp::abi::MAX_QUEUES as usize;

impl SwitchConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<SwitchConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigFileError::Parse { at, message, .. } => ConfigFileError::Parse {
                path: path.to_path_buf(),
                at,
                message,
            },
            ConfigFileError::Invalid { at, message, .. } => ConfigFileError::Invalid {
                path: path.to_path_buf(),
                at,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text (errors carry an empty path, and the line and
    /// column of the offending value when the text writes it).
    pub fn parse(text: &str) -> Result<SwitchConfig, ConfigFileError> {
        let schema: FileSchema = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let key = offset.and_then(|o| Spans::parse(text).key_at(o));
            ConfigFileError::Parse {
                path: PathBuf::new(),
                at: offset.map(|o| Location::of_offset(text, o)),
                message: match key {
                    Some(key) => format!("{key}: {}", e.message().trim_end()),
                    None => e.message().trim_end().to_string(),
                },
            }
        })?;
        build(&schema).map_err(|r| ConfigFileError::Invalid {
            path: PathBuf::new(),
            at: Spans::parse(text).first(&r.keys),
            message: r.message,
        })
    }
}

/// A value the schema accepts but the switch does not: what is wrong and how to fix it, and the
/// key paths (`port.0.vlan`, see [`Spans::at`]) where it may be written, most specific first.
#[derive(Debug)]
struct Refusal {
    keys: Vec<String>,
    message: String,
}

impl Refusal {
    fn new(message: String) -> Refusal {
        Refusal {
            keys: Vec::new(),
            message,
        }
    }

    /// Also look for the offending value at `key` (after the keys given before).
    fn at(mut self, key: impl Into<String>) -> Refusal {
        self.keys.push(key.into());
        self
    }
}

/// Turns the file's schema into the switch configuration, refusing what the switch cannot run.
fn build(schema: &FileSchema) -> Result<SwitchConfig, Refusal> {
    let workers = schema.workers.unwrap_or(1);
    if workers == 0 || workers > MAX_WORKERS {
        return Err(Refusal::new(format!(
            "workers = {workers}: the number of forwarding threads must be 1 to {MAX_WORKERS}; 1 (the default) suits most boxes, more needs as many receive queues on every port"
        ))
        .at("workers"));
    }
    // SAFETY: sysconf has no preconditions.
    let online =
        usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }).unwrap_or(usize::MAX);
    if let Some((k, cpu)) = schema
        .worker_cpus
        .iter()
        .enumerate()
        .find(|(_, &c)| c >= online)
    {
        return Err(Refusal::new(format!(
            "worker_cpus: CPU {cpu} does not exist on this machine (CPUs 0..{online}); list CPUs from `lscpu`"
        ))
        .at(format!("worker_cpus.{k}")));
    }
    let placement = Placement {
        cpus: schema.worker_cpus.clone(),
        realtime: schema.worker_realtime,
        control_realtime: schema.control_realtime,
    };
    let dataplane = match &schema.dataplane {
        None => DataplaneMode::default(),
        Some(m) => m
            .parse()
            .map_err(|e: String| Refusal::new(e).at("dataplane"))?,
    };
    let xdp_mode = match schema.xdp_mode.as_deref() {
        None => None,
        Some("auto") => Some(AttachMode::NativeOrSkb),
        Some("native") => Some(AttachMode::Native),
        Some("skb") => Some(AttachMode::Skb),
        Some(other) => {
            return Err(Refusal::new(format!(
                "xdp_mode = {other:?}: use \"auto\" (driver XDP, generic where the driver lacks it; the default), \"native\" or \"skb\""
            ))
            .at("xdp_mode"))
        }
    };
    let fdb_ageing = fdb_ageing(schema.fdb_ageing)?;
    let s = &schema.snooping;
    let global_version = query_version("snooping", "snooping", s.igmp_version)?;
    // Validate [snooping]'s own timers even when every VLAN overrides them.
    vlan_timers("snooping", s, None)?;
    let mut ports = Vec::new();
    let mut native_vlans = Vec::new();
    let mut punt_limits = Vec::new();
    let mut vlan_ids = std::collections::BTreeSet::new();
    for (i, p) in schema.ports.iter().enumerate() {
        let at = format!("port[{i}] ({:?})", p.name);
        let here = |key: &str| format!("port.{i}.{key}");
        let bad_id = |key: &str, id: VlanId| {
            Refusal::new(format!(
                "{at}.{key} = {id}: not a usable VLAN id (0 and 4095 are reserved, 12 bits at most); use 1..=4094"
            ))
        };
        let usable = |id: VlanId| (1..=4094).contains(&id);
        if let Some(id) = p.vlan.filter(|&id| !usable(id)) {
            return Err(bad_id("vlan", id).at(here("vlan")));
        }
        if let Some(id) = p.native_vlan.filter(|&id| !usable(id)) {
            return Err(bad_id("native_vlan", id).at(here("native_vlan")));
        }
        if let Some((k, id)) = p
            .trunk
            .iter()
            .flatten()
            .copied()
            .enumerate()
            .find(|&(_, id)| !usable(id))
        {
            return Err(bad_id("trunk", id).at(here(&format!("trunk.{k}"))));
        }
        let vlans = match (p.vlan, &p.trunk) {
            (Some(v), None) => {
                if p.native_vlan.is_some() {
                    return Err(Refusal::new(format!(
                        "{at}.native_vlan: only trunk ports have a native VLAN; remove it or use trunk = [...]"
                    ))
                    .at(here("native_vlan")));
                }
                PortVlans::Access(v)
            }
            (None, Some(list)) => {
                if let Some(n) = p.native_vlan.filter(|n| !list.contains(n)) {
                    return Err(Refusal::new(format!(
                        "{at}.native_vlan = {n}: the native VLAN must be one of the trunk's VLANs {list:?}"
                    ))
                    .at(here("native_vlan")));
                }
                PortVlans::Trunk(list.clone())
            }
            (None, None) => PortVlans::Access(1),
            (Some(_), Some(_)) => {
                return Err(Refusal::new(format!(
                    "{at}: has both vlan (access port) and trunk; keep one"
                ))
                .at(here("trunk")))
            }
        };
        vlan_ids.extend(vlans.as_slice().iter().copied());
        ports.push(PortConfig {
            name: p.name.clone(),
            vlans,
            fast_leave: p.fast_leave,
            mrouter: match p.mrouter {
                MrouterKey::Auto => MrouterMode::Auto,
                MrouterKey::Always => MrouterMode::Always,
                MrouterKey::Never => MrouterMode::Never,
            },
            flood_reports: p.flood_reports,
            flood_unregistered: p.flood_unregistered,
            max_groups: p.max_groups,
        });
        native_vlans.push(p.native_vlan);
        let limit = PuntLimit {
            rate: p.igmp_rate.unwrap_or(s.igmp_rate),
            burst: p.igmp_burst.unwrap_or(s.igmp_burst),
        };
        if limit.rate > 0 && limit.burst == 0 {
            return Err(Refusal::new(format!(
                "{at}.igmp_burst = 0: a policed port must be allowed at least one frame at once; use 1 or more (or igmp_rate = 0 for no limit)"
            ))
            .at(here("igmp_burst"))
            .at("snooping.igmp_burst"));
        }
        punt_limits.push(limit);
    }
    if ports.is_empty() {
        return Err(Refusal::new(
            "no [[port]] sections: add one per switch interface, e.g. [[port]] name = \"swp1\""
                .into(),
        ));
    }
    let mut sections = std::collections::BTreeMap::new();
    for (i, v) in schema.vlans.iter().enumerate() {
        let key = format!("vlan[{i}] (id {})", v.id);
        if !vlan_ids.contains(&v.id) {
            return Err(Refusal::new(format!(
                "{key}: no port carries VLAN {}; add it to a port (vlan = or trunk =) or remove the section",
                v.id
            ))
            .at(format!("vlan.{i}.id")));
        }
        if sections.insert(v.id, (i, v)).is_some() {
            return Err(Refusal::new(format!(
                "vlan[{i}]: VLAN {} has two [[vlan]] sections; merge them",
                v.id
            ))
            .at(format!("vlan.{i}.id")));
        }
    }
    let mut vlans = Vec::new();
    for &id in &vlan_ids {
        let section = sections.get(&id).copied();
        let (key, path) = match section {
            Some((i, v)) => (format!("vlan[{i}] (id {})", v.id), format!("vlan.{i}")),
            None => ("snooping".to_string(), "snooping".to_string()),
        };
        let v = section.map(|(_, v)| v);
        let igmp_version = match v.and_then(|v| v.igmp_version) {
            Some(n) => query_version(&key, &path, n)?,
            None => global_version,
        };
        vlans.push(VlanConfig {
            id,
            snooping: v.and_then(|v| v.snooping).unwrap_or(true),
            querier: v.and_then(|v| v.querier).unwrap_or(s.querier),
            querier_address: v
                .and_then(|v| v.querier_address)
                .unwrap_or(s.querier_address),
            igmp_version,
            timers: vlan_timers(&key, s, section)?,
            table_full: match v.map(|v| &v.table_full) {
                Some(TableFullKey::Flood) => TableFullPolicy::Flood,
                _ => TableFullPolicy::Deny,
            },
            max_groups: v.map_or(0, |v| v.max_groups),
            flood_unregistered: v
                .and_then(|v| v.flood_unregistered)
                .unwrap_or(s.flood_unregistered),
        });
    }
    let mut static_groups = Vec::new();
    // Per engine static group: its [[static_group]] section and the index in that section's
    // `ports`, so the engine's own refusals can be pointed at the file.
    let mut static_origin = Vec::new();
    for (i, g) in schema.static_groups.iter().enumerate() {
        let key = format!("static_group[{i}] ({})", g.group);
        let vlan = match (g.vlan, vlan_ids.len()) {
            (Some(v), _) => v,
            (None, 1) => vlan_ids.iter().next().copied().unwrap_or(1),
            (None, _) => {
                return Err(Refusal::new(format!(
                    "{key}.vlan: missing; the switch has several VLANs, say which one"
                ))
                .at(format!("static_group.{i}.group")))
            }
        };
        if g.ports.is_empty() {
            return Err(Refusal::new(format!(
                "{key}.ports: empty; list the ports that receive the group"
            ))
            .at(format!("static_group.{i}.ports")));
        }
        for (k, name) in g.ports.iter().enumerate() {
            let port = ports.iter().position(|p| &p.name == name).ok_or_else(|| {
                Refusal::new(format!(
                    "{key}.ports: {name:?} is not a [[port]] of this file; use one of the port names"
                ))
                .at(format!("static_group.{i}.ports.{k}"))
            })?;
            static_groups.push(StaticGroup {
                vlan,
                port: PortId::try_from(port).unwrap_or(PortId::MAX),
                group: g.group,
                sources: g.sources.clone(),
            });
            static_origin.push((i, k));
        }
    }
    let mut static_fdb = Vec::new();
    for (i, e) in schema.static_fdb.iter().enumerate() {
        let key = format!("static_fdb[{i}]");
        let mac = parse_station_mac(&e.mac).ok_or_else(|| {
            Refusal::new(format!(
                "{key}.mac = {:?}: not a station's MAC; write six hex pairs like \"02:00:5e:10:00:01\" (not a group, broadcast or all-zero address)",
                e.mac
            ))
            .at(format!("static_fdb.{i}.mac"))
        })?;
        let idx = ports.iter().position(|p| p.name == e.port).ok_or_else(|| {
            Refusal::new(format!(
                "{key}.port = {:?}: not a [[port]] of this file; use one of the port names",
                e.port
            ))
            .at(format!("static_fdb.{i}.port"))
        })?;
        let carried = ports
            .get(idx)
            .map(|p| p.vlans.as_slice().to_vec())
            .unwrap_or_default();
        let vlan = match e.vlan {
            Some(v) => v,
            None if carried.len() == 1 => carried.first().copied().unwrap_or(1),
            None => {
                return Err(Refusal::new(format!(
                "{key}.vlan: missing; port {:?} carries several VLANs {carried:?}, say which one",
                e.port
            ))
                .at(format!("static_fdb.{i}.port")))
            }
        };
        if !carried.contains(&vlan) {
            return Err(Refusal::new(format!(
                "{key}.vlan = {vlan}: port {:?} does not carry VLAN {vlan} (it carries {carried:?})",
                e.port
            ))
            .at(format!("static_fdb.{i}.vlan")));
        }
        static_fdb.push((vlan, mac, PortId::try_from(idx).unwrap_or(PortId::MAX)));
    }
    let engine = EngineConfig {
        ports,
        vlans,
        max_groups: s.max_groups,
        max_sources: s.max_sources,
        static_groups,
    };
    engine.validate().map_err(|e| Refusal {
        keys: engine_error_keys(&e, &engine, schema, &static_origin),
        message: file_terms(&e, &engine),
    })?;
    Ok(SwitchConfig {
        engine,
        native_vlans,
        metrics_listen: schema.metrics_listen,
        workers,
        punt_limits,
        placement,
        dataplane,
        xdp_mode,
        static_fdb,
        fdb_ageing,
    })
}

/// The station ageing time from `fdb_ageing`, within IEEE 802.1Q-2018 Table 8-6's range
/// (10 s ..= 1 000 000 s); absent, the default 300 s.
fn fdb_ageing(written: Option<Interval>) -> Result<Duration, Refusal> {
    let Some(Interval(ageing)) = written else {
        return Ok(DEFAULT_FDB_AGEING);
    };
    if (MIN_FDB_AGEING..=MAX_FDB_AGEING).contains(&ageing) {
        return Ok(ageing);
    }
    Err(Refusal::new(format!(
        "fdb_ageing = {ageing:?}: a station's ageing time must be 10 s to 1000000 s (IEEE 802.1Q-2018 Table 8-6); use \"300s\" (the default) or a value in that range"
    ))
    .at("fdb_ageing"))
}

/// Where in the file the value behind one of the engine's own refusals is written: the key in
/// the VLAN's `[[vlan]]` section, else in `[snooping]`, else the section itself.
fn engine_error_keys(
    e: &ConfigError,
    cfg: &EngineConfig,
    schema: &FileSchema,
    static_origin: &[(usize, usize)],
) -> Vec<String> {
    let vlan_keys = |index: &usize, knob: &str| {
        let section = cfg
            .vlans
            .get(*index)
            .and_then(|v| schema.vlans.iter().position(|s| s.id == v.id));
        // A knob left out takes a value derived from these (RFC 3376 §8.6, §8.7, §8.9), or
        // is refused by comparison with them (§8.3): point there when the knob is not written.
        let from: &[&str] = match knob {
            "query_response_interval" | "startup_query_interval" => &["query_interval"],
            "last_member_query_count" | "startup_query_count" => &["robustness"],
            _ => &[],
        };
        let mut keys = Vec::new();
        for k in std::iter::once(&knob).chain(from) {
            if let Some(j) = section {
                keys.push(format!("vlan.{j}.{k}"));
            }
            keys.push(format!("snooping.{k}"));
        }
        if let Some(j) = section {
            keys.push(format!("vlan.{j}.id"));
        }
        keys
    };
    match e {
        ConfigError::BadTimer { index, knob, .. } => vlan_keys(index, knob),
        ConfigError::BadQuerierAddress { index, .. } => vlan_keys(index, "querier_address"),
        ConfigError::BadIgmpVersion { index } => vlan_keys(index, "igmp_version"),
        ConfigError::BadStaticGroup { index, .. } => {
            let Some(&(i, k)) = static_origin.get(*index) else {
                return Vec::new();
            };
            let Some(g) = schema.static_groups.get(i) else {
                return Vec::new();
            };
            let at = |key: String| format!("static_group.{i}.{key}");
            let carried = cfg.static_groups.get(*index).is_some_and(|sg| {
                cfg.ports
                    .get(usize::from(sg.port))
                    .is_some_and(|p| p.vlans.as_slice().contains(&sg.vlan))
            });
            // The same checks, in the same order, as EngineConfig::validate.
            if !carried {
                vec![at(format!("ports.{k}")), at("vlan".into())]
            } else if !crate::engine::addr::is_snoopable_group(g.group) {
                vec![at("group".into())]
            } else if let Some(m) = g
                .sources
                .iter()
                .position(|a| a.is_multicast() || a.is_unspecified() || a.is_broadcast())
            {
                vec![at(format!("sources.{m}"))]
            } else {
                vec![at(format!("ports.{k}"))]
            }
        }
        ConfigError::EmptyPortName { index } | ConfigError::DuplicatePortName { index, .. } => {
            vec![format!("port.{index}.name")]
        }
        ConfigError::BadTrunk { index, .. } => vec![format!("port.{index}.trunk")],
        ConfigError::TooManyPorts { max, .. } => vec![format!("port.{max}.name")],
        _ => Vec::new(),
    }
}

/// The engine names fields by its own structure (`vlans[3].timers.query_interval`); the file
/// has one `[snooping]` section and `[[port]]` tables, so say it the way the operator wrote it.
fn file_terms(e: &ConfigError, cfg: &EngineConfig) -> String {
    let port_name = |i: usize| {
        cfg.ports
            .get(i)
            .map_or("?", |p| p.name.as_str())
            .to_string()
    };
    let port = |i: usize| format!("port[{i}] ({:?})", port_name(i));
    match e {
        ConfigError::BadTimer {
            index,
            knob,
            problem,
            fix,
        } => {
            let vlan = cfg.vlans.get(*index).map_or(0, |v| v.id);
            format!("{knob} (VLAN {vlan}, from [snooping] or its [[vlan]] section): {problem}; {fix}")
        }
        ConfigError::BadStaticGroup { index, problem } => {
            let g = cfg.static_groups.get(*index);
            let port = g.map_or(0, |g| usize::from(g.port));
            format!(
                "static_group for {} on {}: {problem}",
                g.map_or_else(|| "?".to_string(), |g| g.group.to_string()),
                port_name(port)
            )
        }
        ConfigError::BadIgmpVersion { .. } => {
            "snooping.igmp_version: use 2 or 3".to_string()
        }
        ConfigError::BadQuerierAddress { addr, .. } => format!(
            "snooping.querier_address = \"{addr}\": not a unicast address; use this switch's IP in the VLAN or \"0.0.0.0\" for proxy queries"
        ),
        ConfigError::EmptyPortName { index } => {
            format!("{}.name: is empty; give the interface name", port(*index))
        }
        ConfigError::DuplicatePortName { index, first, name } => format!(
            "{}.name = {name:?}: already used by {}; each interface appears once",
            port(*index),
            port(*first)
        ),
        ConfigError::BadTrunk { index, problem } => {
            format!("{}.trunk: {problem}; list each VLAN once", port(*index))
        }
        ConfigError::InvalidVlanId { id, .. } => {
            format!("VLAN id {id} is reserved or out of range; use 1..=4094")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TableFullPolicy;

    fn err(text: &str) -> String {
        SwitchConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_parses_with_its_values() {
        let c = SwitchConfig::parse(include_str!("../../docs/xsnoop.example.toml")).unwrap();
        let e = &c.engine;
        assert_eq!(e.ports.len(), 4);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9650".parse().unwrap()));
        assert_eq!(c.fdb_ageing, DEFAULT_FDB_AGEING);
        assert_eq!(e.ports[2].vlans, PortVlans::Trunk(vec![10, 20]));
        assert_eq!(c.native_vlans[2], Some(10));
        assert_eq!(e.ports[3].mrouter, MrouterMode::Always);
        assert!(e.ports[0].fast_leave);
        assert_eq!(
            e.vlans.iter().map(|v| v.id).collect::<Vec<_>>(),
            vec![10, 20]
        );
        let v = &e.vlans[0];
        assert!(v.querier);
        assert_eq!(v.querier_address, Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(
            v.timers.startup_query_interval,
            Duration::from_millis(31_250)
        );
        assert_eq!(
            v.timers.group_membership_interval(),
            Duration::from_secs(260)
        );
        // VLAN 20's section overrides [snooping]; what it leaves out derives from its own QRV.
        let v20 = &e.vlans[1];
        assert_eq!(v20.igmp_version, Version::V2);
        assert_eq!(v20.querier_address, Ipv4Addr::new(10, 0, 20, 254));
        assert!(v20.querier, "inherited from [snooping]");
        assert_eq!(v20.timers.robustness, 3);
        assert_eq!(
            v20.timers.last_member_query_interval,
            Duration::from_millis(500)
        );
        assert_eq!(
            v20.timers.last_member_query_count, 2,
            "[snooping] sets it explicitly, so it wins over the derived value"
        );
        assert_eq!(
            v20.timers.group_membership_interval(),
            Duration::from_secs(385)
        );
        assert_eq!(
            (v20.table_full, v20.max_groups),
            (TableFullPolicy::Flood, 512)
        );
        let statics: Vec<_> = e
            .static_groups
            .iter()
            .map(|g| (g.vlan, g.port, g.group.to_string(), g.sources.len()))
            .collect();
        assert_eq!(
            statics,
            vec![
                (10, 3, "239.10.10.10".to_string(), 0),
                (10, 0, "232.1.1.1".to_string(), 1),
                (10, 2, "232.1.1.1".to_string(), 1),
            ]
        );
    }

    #[test]
    fn vlan_sections_derive_their_own_defaults() {
        let c = SwitchConfig::parse(
            "[[port]]\nname = \"a\"\nvlan = 5\n[[vlan]]\nid = 5\nrobustness = 4\nquery_interval = \"20s\"\n",
        )
        .unwrap();
        let t = c.engine.vlans[0].timers;
        assert_eq!((t.last_member_query_count, t.startup_query_count), (4, 4));
        assert_eq!(t.startup_query_interval, Duration::from_secs(5));
    }

    #[test]
    fn defaults_follow_rfc3376_and_derive_from_robustness() {
        let c = SwitchConfig::parse(
            "[snooping]\nrobustness = 3\nquery_interval = \"60s\"\n[[port]]\nname = \"a\"\n",
        )
        .unwrap();
        let t = c.engine.vlans[0].timers;
        assert_eq!(t.last_member_query_count, 3);
        assert_eq!(t.startup_query_count, 3);
        assert_eq!(t.startup_query_interval, Duration::from_secs(15));
        assert_eq!(c.engine.vlans[0].id, 1, "a port without vlan is in VLAN 1");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = err("[snooping]\nquerier = true\nquerrier_address = \"1.2.3.4\"\n");
        assert!(e.contains("querrier_address"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = err("[[port]]\nname = \"a\"\nfastleave = true\n");
        assert!(e.contains("fastleave") && e.contains("fast_leave"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let e = err("[snooping]\nquery_interval = \"125\"\n[[port]]\nname = \"a\"\n");
        assert!(
            e.contains("query_interval") && e.contains("\"125s\""),
            "{e}"
        );
        let e = err("[snooping]\nigmp_version = 1\n[[port]]\nname = \"a\"\n");
        assert!(
            e.contains("snooping.igmp_version") && e.contains("use 2 or 3"),
            "{e}"
        );
        let e = err("workers = 0\n[[port]]\nname = \"a\"\n");
        assert!(e.contains("workers = 0") && e.contains("1 to 64"), "{e}");
        let e = err("worker_cpus = [0, 100000]\n[[port]]\nname = \"a\"\n");
        assert!(e.contains("worker_cpus: CPU 100000"), "{e}");
        let ok = SwitchConfig::parse(
            "worker_cpus = [0]\nworker_realtime = true\n[[port]]\nname = \"a\"\n",
        )
        .unwrap();
        assert_eq!(
            ok.placement,
            Placement {
                cpus: vec![0],
                realtime: true,
                control_realtime: false,
            }
        );
        let ok = SwitchConfig::parse("control_realtime = true\n[[port]]\nname = \"a\"\n").unwrap();
        assert!(ok.placement.control_realtime && !ok.placement.realtime);
        let ok = SwitchConfig::parse(
            "dataplane = \"xdp\"\nxdp_mode = \"skb\"\n[[port]]\nname = \"a\"\n",
        )
        .unwrap();
        assert_eq!(ok.dataplane, DataplaneMode::Xdp);
        assert_eq!(ok.xdp_mode, Some(AttachMode::Skb));
        let ok = SwitchConfig::parse("[[port]]\nname = \"a\"\n").unwrap();
        assert_eq!((ok.dataplane, ok.xdp_mode), (DataplaneMode::Auto, None));
        let e = err("dataplane = \"dpdk\"\n[[port]]\nname = \"a\"\n");
        assert!(e.contains("\"dpdk\"") && e.contains("afxdp"), "{e}");
        let e = err("xdp_mode = \"fast\"\n[[port]]\nname = \"a\"\n");
        assert!(
            e.contains("xdp_mode = \"fast\"") && e.contains("skb"),
            "{e}"
        );
        let ok = SwitchConfig::parse(
            "[[port]]\nname = \"a\"\nvlan = 10\n[[static_fdb]]\nmac = \"02:00:5E:10:00:01\"\nport = \"a\"\n",
        )
        .unwrap();
        assert_eq!(ok.static_fdb, [(10, MacAddr([2, 0, 0x5e, 0x10, 0, 1]), 0)]);
        for (bad, want) in [
            (
                "mac = \"01:00:5e:00:00:01\"\nport = \"a\"",
                "static_fdb[0].mac",
            ),
            ("mac = \"02:00:5e:10:00\"\nport = \"a\"", "six hex pairs"),
            (
                "mac = \"02:00:5e:10:00:01\"\nport = \"b\"",
                "static_fdb[0].port = \"b\"",
            ),
            (
                "mac = \"02:00:5e:10:00:01\"\nport = \"a\"\nvlan = 20",
                "does not carry VLAN 20",
            ),
        ] {
            let e = err(&format!(
                "[[port]]\nname = \"a\"\nvlan = 10\n[[static_fdb]]\n{bad}\n"
            ));
            assert!(e.contains(want), "{e}");
        }
        let e = err("workers = 65\n[[port]]\nname = \"a\"\n");
        assert!(e.contains("workers = 65"), "{e}");
        let ok = SwitchConfig::parse("workers = 2\n[[port]]\nname = \"a\"\n").unwrap();
        assert_eq!(ok.workers, 2);
        let ok = SwitchConfig::parse("[[port]]\nname = \"a\"\n").unwrap();
        assert_eq!(ok.workers, 1);
        assert_eq!(ok.punt_limits, [DEFAULT_PUNT_LIMIT]);
        let ok = SwitchConfig::parse(
            "[snooping]\nigmp_rate = 50\nigmp_burst = 5\n[[port]]\nname = \"a\"\n[[port]]\nname = \"b\"\nigmp_rate = 0\n",
        )
        .unwrap();
        assert_eq!(
            ok.punt_limits,
            [
                PuntLimit { rate: 50, burst: 5 },
                PuntLimit { rate: 0, burst: 5 }
            ]
        );
        let e = err("[[port]]\nname = \"a\"\nigmp_burst = 0\n");
        assert!(e.contains("port[0] (\"a\").igmp_burst = 0"), "{e}");
        let e = err("[snooping]\nrobustness = 0\n[[port]]\nname = \"a\"\n");
        assert!(e.contains("snooping.robustness"), "{e}");
        let e = err("[[port]]\nname = \"a\"\nvlan = 4095\n");
        assert!(
            e.contains("port[0] (\"a\").vlan = 4095") && e.contains("1..=4094"),
            "{e}"
        );
        let e = err("[[port]]\nname = \"a\"\ntrunk = [10, 0]\n");
        assert!(e.contains(".trunk = 0"), "{e}");
        let e = err("[[port]]\nname = \"a\"\n[[port]]\nname = \"a\"\n");
        assert!(e.contains("port[1]") && e.contains("already used"), "{e}");
        let e = err("[[port]]\nname = \"a\"\ntrunk = [10]\nnative_vlan = 20\n");
        assert!(e.contains("native_vlan = 20"), "{e}");
        let e = err("[[port]]\nname = \"a\"\nmrouter = \"sometimes\"\n");
        assert!(e.contains("sometimes") && e.contains("always"), "{e}");
        assert!(err("").contains("[[port]]"));
        let e = err("[[port]]\nname = \"a\"\n[[vlan]]\nid = 7\n");
        assert!(
            e.contains("vlan[0] (id 7)") && e.contains("no port carries VLAN 7"),
            "{e}"
        );
        let e = err("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\nigmp_version = 4\n");
        assert!(e.contains("vlan[0] (id 1).igmp_version = 4"), "{e}");
        let e = err("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\nrobustness = 0\n");
        assert!(e.contains("vlan[0] (id 1).robustness = 0"), "{e}");
        let e = err("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\ntable_full = \"panic\"\n");
        assert!(e.contains("panic") && e.contains("flood"), "{e}");
        let sg = "[[static_group]]\ngroup = \"239.1.1.1\"\nports = [\"b\"]\n";
        let e = err(&format!("[[port]]\nname = \"a\"\n{sg}"));
        assert!(
            e.contains("static_group[0] (239.1.1.1).ports") && e.contains("\"b\""),
            "{e}"
        );
        let e = err(&format!(
            "[[port]]\nname = \"a\"\n[[port]]\nname = \"b\"\nvlan = 2\n{sg}"
        ));
        assert!(
            e.contains("static_group[0] (239.1.1.1).vlan: missing"),
            "{e}"
        );
        let e = err(
            "[[port]]\nname = \"a\"\n[[static_group]]\ngroup = \"224.0.0.5\"\nports = [\"a\"]\n",
        );
        assert!(
            e.contains("static_group for 224.0.0.5 on a") && e.contains("always flooded"),
            "{e}"
        );
    }

    /// `(line, column)` of the refusal of `text`, and its message.
    fn located(text: &str) -> (Option<(usize, usize)>, String) {
        let e = SwitchConfig::parse(text).unwrap_err();
        (e.location().map(|l| (l.line, l.column)), e.to_string())
    }

    #[test]
    fn semantic_errors_carry_the_line_and_column_of_the_value() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("# c\nworkers = 0\n[[port]]\nname = \"a\"\n", (2, 11), "workers = 0"),
            ("worker_cpus = [0, 100000]\n[[port]]\nname = \"a\"\n", (1, 19), "CPU 100000"),
            ("[snooping]\nigmp_version = 1\n[[port]]\nname = \"a\"\n", (2, 16), "snooping.igmp_version = 1"),
            ("[snooping]\n\nrobustness = 0\n[[port]]\nname = \"a\"\n", (3, 14), "snooping.robustness = 0"),
            ("[[port]]\nname = \"a\"\n[[port]]\nname = \"swp1\"\nvlan = 4095\n", (5, 8), "port[1] (\"swp1\").vlan = 4095"),
            ("[[port]]\nname = \"a\"\ntrunk = [10, 0]\n", (3, 14), ".trunk = 0"),
            ("[[port]]\nname = \"a\"\nnative_vlan = 0\n", (3, 15), ".native_vlan = 0"),
            ("[[port]]\nname = \"a\"\ntrunk = [10]\nnative_vlan = 20\n", (4, 15), "native_vlan = 20"),
            ("[[port]]\nname = \"a\"\nvlan = 3\nnative_vlan = 3\n", (4, 15), "only trunk ports"),
            ("[[port]]\nname = \"a\"\nvlan = 3\ntrunk = [3]\n", (4, 9), "both vlan"),
            ("[[port]]\nname = \"a\"\nigmp_burst = 0\n", (3, 14), "igmp_burst = 0"),
            ("[snooping]\nigmp_burst = 0\n[[port]]\nname = \"a\"\n", (2, 14), "igmp_burst = 0"),
            ("[[port]]\nname = \"a\"\n[[port]]\n  name = \"a\"\n", (4, 10), "already used"),
            ("[[port]]\nname = \"\"\n", (2, 8), "is empty"),
            ("[[port]]\nname = \"a\"\ntrunk = [5, 5]\n", (3, 9), "listed twice"),
            ("[[port]]\nname = \"a\"\n[[vlan]]\nid = 7\n", (4, 6), "no port carries VLAN 7"),
            ("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\n[[vlan]]\nid = 1\n", (6, 6), "two [[vlan]] sections"),
            ("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\nigmp_version = 4\n", (5, 16), "vlan[0] (id 1).igmp_version = 4"),
            ("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\nrobustness = 0\n", (5, 14), "vlan[0] (id 1).robustness = 0"),
            ("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\nquery_response_interval = \"200s\"\n", (5, 27), "query_response_interval"),
            ("[snooping]\nquery_response_interval = \"200s\"\n[[port]]\nname = \"a\"\n", (2, 27), "query_response_interval"),
            ("[snooping]\n\nquery_interval = \"5s\"\n[[port]]\nname = \"a\"\n", (3, 18), "query_response_interval"),
            ("[[port]]\nname = \"a\"\n[[vlan]]\nid = 1\nquery_interval = \"5s\"\n", (5, 18), "query_response_interval"),
            ("[snooping]\nquerier_address = \"224.0.0.1\"\n[[port]]\nname = \"a\"\n", (2, 19), "224.0.0.1"),
            ("[[port]]\nname = \"a\"\n[[static_group]]\ngroup = \"239.1.1.1\"\nports = [\"a\", \"b\"]\n", (5, 15), "\"b\" is not a [[port]]"),
            ("[[port]]\nname = \"a\"\n[[static_group]]\ngroup = \"239.1.1.1\"\nports = []\n", (5, 9), "ports: empty"),
            ("[[port]]\nname = \"a\"\n[[port]]\nname = \"b\"\nvlan = 2\n[[static_group]]\ngroup = \"239.1.1.1\"\nports = [\"a\"]\n", (7, 9), "vlan: missing"),
            ("[[port]]\nname = \"a\"\n[[static_group]]\ngroup = \"224.0.0.5\"\nports = [\"a\"]\n", (4, 9), "always flooded"),
            ("[[port]]\nname = \"a\"\n[[static_group]]\ngroup = \"232.1.1.1\"\nports = [\"a\"]\nsources = [\"10.0.0.1\", \"0.0.0.0\"]\n", (6, 24), "source 0.0.0.0"),
            ("[[port]]\nname = \"a\"\n[[port]]\nname = \"b\"\nvlan = 2\n[[static_group]]\nvlan = 2\ngroup = \"239.1.1.1\"\nports = [\"b\", \"a\"]\n", (9, 15), "does not carry VLAN 2"),
            // toml's own refusals get the same prefix, and the key when a value is refused.
            ("[[port]]\nname = \"a\"\nmrouter = \"sometimes\"\n", (3, 11), "port[0].mrouter: unknown variant"),
            ("[snooping]\nquerier = true\nquerrier_address = \"1.2.3.4\"\n", (3, 1), "querrier_address"),
            ("[[port]]\nname = \"a\n", (2, 10), "invalid basic string"),
        ];
        for (text, want, fragment) in cases {
            let (at, msg) = located(text);
            assert_eq!(at, Some(*want), "{text:?}: {msg}");
            assert!(
                msg.starts_with(&format!("line {}, column {}: ", want.0, want.1)),
                "{msg}"
            );
            assert!(msg.contains(fragment), "{text:?}: {msg}");
        }
        // Nothing to point at: no line rather than a wrong one.
        assert_eq!(located("").0, None);
    }

    #[test]
    fn a_file_error_reads_file_line_column() {
        let dir = std::env::temp_dir().join(format!("xsnoop-h14-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f.toml");
        let text = "# ports\n\n\n\n\n\n\n\n\n\n[[port]]\nname = \"swp1\"\nvlan = 4095\n";
        std::fs::write(&f, text).unwrap();
        let e = SwitchConfig::load(&f).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.starts_with(&format!(
                "{}:13:8: port[0] (\"swp1\").vlan = 4095: ",
                f.display()
            )) && e.ends_with("use 1..=4094"),
            "{e}"
        );
    }

    #[test]
    fn fdb_ageing_defaults_to_300s_and_keeps_to_ieee_8021q_table_8_6() {
        let port = "[[port]]\nname = \"a\"\n";
        let ok = SwitchConfig::parse(port).unwrap();
        assert_eq!(ok.fdb_ageing, Duration::from_secs(300));
        assert_eq!(ok.fdb_ageing, DEFAULT_FDB_AGEING);
        for (text, want) in [
            ("\"10s\"", Duration::from_secs(10)),
            ("\"45s\"", Duration::from_secs(45)),
            ("\"2m\"", Duration::from_secs(120)),
            ("\"12.5s\"", Duration::from_millis(12_500)),
            ("\"1000000s\"", Duration::from_secs(1_000_000)),
        ] {
            let c = SwitchConfig::parse(&format!("fdb_ageing = {text}\n{port}")).unwrap();
            assert_eq!(c.fdb_ageing, want, "{text}");
        }
        // Out of range: the key, the value, the range and its source, the fix; at the value.
        for (text, shown) in [
            ("\"9s\"", "9s"),
            ("\"9999ms\"", "9.999s"),
            ("\"0s\"", "0ns"),
            ("\"1000001s\"", "1000001s"),
        ] {
            let (at, msg) = located(&format!("# ageing\nfdb_ageing = {text}\n{port}"));
            assert_eq!(at, Some((2, 14)), "{msg}");
            assert!(
                msg.contains(&format!("fdb_ageing = {shown}:"))
                    && msg.contains("10 s to 1000000 s")
                    && msg.contains("802.1Q-2018 Table 8-6")
                    && msg.contains("\"300s\""),
                "{msg}"
            );
        }
        // Malformed: toml's refusal names the key and says how to write a duration.
        for bad in ["\"300\"", "\"5 parsecs\"", "\"-10s\""] {
            let (at, msg) = located(&format!("fdb_ageing = {bad}\n{port}"));
            assert_eq!(at.map(|a| a.0), Some(1), "{msg}");
            assert!(
                msg.contains("fdb_ageing") && msg.contains("\"125s\""),
                "{bad}: {msg}"
            );
        }
        let (_, msg) = located(&format!("fdb_ageing = 300\n{port}"));
        assert!(msg.contains("fdb_ageing"), "{msg}");
        // It is a top-level key: inside [snooping] it is unknown there, and said so.
        let e = err(&format!("[snooping]\nfdb_ageing = \"300s\"\n{port}"));
        assert!(e.contains("fdb_ageing") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn intervals_take_units() {
        assert_eq!(parse_interval("31.25s"), Ok(Duration::from_millis(31_250)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_interval("-1s").is_err());
        assert!(parse_interval("1e400s").is_err());
        assert!(parse_interval("s").is_err());
        assert!(parse_interval("5 parsecs").is_err());
    }
}
