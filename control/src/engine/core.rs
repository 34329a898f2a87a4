//! The engine: `(now, input) -> Output`, pure and deterministic.
//!
//! It routes messages to the per-port-group membership state machines, runs the querier and the
//! router-port learning of each VLAN, enforces the table limits, and keeps the forwarding table
//! in step with the state, touching only the (VLAN, group) that changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use xsnoop_dataplane::{ForwardingTable, PortId, PortSet, VlanId};

use super::addr::{is_snoopable_group, is_valid_source};
use super::config::{ConfigError, EngineConfig, TableFullPolicy, VlanConfig};
use super::deadlines::{Deadlines, TimerKey};
use super::events::{Event, EventKind};
use super::igmp_forward::{classify, egress, VlanPorts};
use super::io::{Input, Output, QuerySpec, Transmit};
use super::mdb::{group_rows, MdbOrigin, MdbRow};
use super::membership::{Context, Outcome, PortGroup};
use super::model::{GroupRecord, Message, QuerierRole, Time, Version};
use super::mrouter::MrouterRow;
use super::publish::{diff_into, TableDelta};
use super::querier::{general_query, Election, Querier, QuerierStatus};
use super::runtime::{find_static, Overrides};
use super::state::VlanState;
use super::stats::Stats;
use super::table_builder::{group_entry, mrouters, vlan_table};
use super::timers::TimerConfig;
use super::topology::Topology;

mod invariants;
mod operator;
pub mod views;

/// The snooping engine of the whole switch.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The configuration in force: `base` with `overrides` applied.
    config: EngineConfig,
    /// The configuration as given (the file's), without runtime changes.
    base: EngineConfig,
    /// Operator changes made at runtime (see [`super::runtime`]).
    overrides: Overrides,
    topo: Topology,
    vlan_cfg: BTreeMap<VlanId, VlanConfig>,
    vlans: BTreeMap<VlanId, VlanState>,
    table: ForwardingTable,
    /// Which table entries changed since the table was last taken for publication.
    delta: TableDelta,
    /// How much table work the engine has done (structural cost, see [`TableWork`]).
    work: TableWork,
    stats: Stats,
    down: PortSet,
    deadlines: Deadlines,
    /// Dynamic port-groups per port (what the per-port limit counts).
    port_groups: Vec<usize>,
    /// Dynamic (VLAN, group)s in total (what the global limit counts).
    total_groups: usize,
    now: Time,
}

/// How much work the engine spent on its forwarding table: a structural cost that tests assert
/// instead of timing (start-up must build the table once, a change must touch one entry), so a
/// per-group rebuild that makes start-up quadratic fails a test on any machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableWork {
    /// Tables built from scratch (start-up, reconfiguration, runtime static changes).
    pub full_builds: u64,
    /// Single (VLAN, group) entries recomputed.
    pub entry_updates: u64,
}

/// How a port-group that became empty is journaled.
#[derive(Clone, Copy)]
struct Removal {
    kind: fn() -> EventKind,
    reason: &'static str,
}

const LEAVE: fn() -> EventKind = || EventKind::Leave;
const EXPIRE: fn() -> EventKind = || EventKind::Expire;

/// Most groups one VLAN floods because of limits under the `flood` policy: the flood markers
/// are table entries too, so a report storm of fresh groups must not grow them without bound.
pub const MAX_FLOODED_GROUPS_PER_VLAN: usize = 1024;

/// Most passes over due timers in one step: a timer that stays due after being processed (a bug
/// in a state machine) must not hang the switch.
const MAX_TIMER_PASSES: usize = 8;

impl Engine {
    /// An engine for a validated `config`, starting at `now`. Querier VLANs have their first
    /// startup query due at `now`.
    pub fn new(config: EngineConfig, now: Time) -> Result<Engine, ConfigError> {
        config.validate()?;
        let topo = Topology::new(&config);
        let vlan_cfg: BTreeMap<VlanId, VlanConfig> =
            config.vlans.iter().map(|v| (v.id, v.clone())).collect();
        let vlans = vlan_cfg
            .values()
            .map(|c| {
                (
                    c.id,
                    VlanState {
                        querier: Querier::new(c, now),
                        ..VlanState::default()
                    },
                )
            })
            .collect();
        let mut e = Engine {
            port_groups: vec![0; config.ports.len()],
            base: config.clone(),
            overrides: Overrides::default(),
            config,
            topo,
            vlan_cfg,
            vlans,
            table: ForwardingTable::default(),
            delta: TableDelta::everything(),
            work: TableWork::default(),
            stats: Stats::default(),
            down: PortSet::EMPTY,
            deadlines: Deadlines::default(),
            total_groups: 0,
            now,
        };
        e.apply_static_groups();
        e.rebuild_deadlines();
        e.table = e.recompute_table();
        e.work.full_builds += 1;
        Ok(e)
    }

    /// Processes one input at `now` (time never goes backwards: an earlier `now` counts as the
    /// latest seen). Timers due at `now` run before the input and again after it, so after a
    /// step [`Engine::next_deadline`] is always in the future.
    pub fn handle(&mut self, now: Time, input: Input<'_>) -> Output {
        // Work already due is done under the configuration it was scheduled with, except when
        // that configuration is being replaced: then under the new one.
        let timers_first = !matches!(input, Input::Reconfigure(_));
        self.step(now, timers_first, |e, now, out| e.on_input(now, input, out))
    }

    /// One step: timers due (when `timers_first`), `f`, timers made due by it, then the
    /// clean-up every step ends with.
    fn step(
        &mut self,
        now: Time,
        timers_first: bool,
        f: impl FnOnce(&mut Self, Time, &mut Output),
    ) -> Output {
        let now = now.max(self.now);
        self.now = now;
        let mut out = Output::default();
        if timers_first {
            self.run_timers(now, &mut out);
        }
        f(self, now, &mut out);
        // What the input made due at once (a querier taking over, a reconfigured querier's
        // first startup query) goes out in this step.
        self.run_timers(now, &mut out);
        // Queries decided before a reconfiguration or a link change in this same step only
        // go where the VLAN still has up ports.
        out.transmit.retain_mut(|t| {
            t.ports = t.ports.intersection(self.up_ports(t.vlan));
            !t.ports.is_empty()
        });
        self.stats.count_events(&out.events);
        out
    }

    fn on_input(&mut self, now: Time, input: Input<'_>, out: &mut Output) {
        match input {
            Input::Message {
                port,
                vlan,
                src_ip,
                dst_ip: _,
                msg,
            } => self.on_message(now, port, vlan, src_ip, msg, out),
            Input::Malformed { port, reason, .. } => self.stats.malformed(port, reason),
            Input::Tick => {}
            Input::PortUp(port) => self.on_port_up(port, out),
            Input::PortDown(port) => self.on_port_down(now, port, out),
            Input::Reconfigure(config) => {
                if let Err(e) = self.apply_base(now, config, out) {
                    tracing::warn!(error = %e, "configuration refused, keeping the current one");
                    self.stats.ignore("invalid configuration");
                }
            }
        }
    }

    /// When the caller must deliver [`Input::Tick`] next.
    pub fn next_deadline(&self) -> Option<Time> {
        self.deadlines.first()
    }

    /// The forwarding table, kept up to date incrementally.
    pub fn table(&self) -> &ForwardingTable {
        &self.table
    }

    /// What changed in [`Engine::table`] since the last call (everything, the first time): what
    /// a [`super::publish::Publisher`] copies into its spare snapshot.
    pub fn take_table_delta(&mut self) -> TableDelta {
        std::mem::take(&mut self.delta)
    }

    /// The table work done so far (see [`TableWork`]).
    pub fn table_work(&self) -> TableWork {
        self.work
    }

    /// The forwarding table computed from scratch from the state (equal to [`Engine::table`];
    /// tests check it).
    pub fn recompute_table(&self) -> ForwardingTable {
        let vlans = self
            .vlan_cfg
            .values()
            .map(|c| {
                let state = self.vlans.get(&c.id).cloned().unwrap_or_default();
                (c.id, vlan_table(c, &self.topo, &state, self.now))
            })
            .collect();
        ForwardingTable { vlans }
    }

    /// Counts `n` parts of a message that the punt path dropped before the engine saw them, e.g.
    /// IGMPv3 group records of unknown type (RFC 3376 §4.2.12: ignored, but operators see them).
    pub fn count_ignored(&mut self, reason: &'static str, n: usize) {
        for _ in 0..n {
            self.stats.ignore(reason);
        }
    }

    /// The multicast database: one row per port-group and one per (port, group, source).
    pub fn mdb(&self, now: Time) -> Vec<MdbRow> {
        let mut rows = Vec::new();
        let name = |p: PortId| self.port_name(p);
        for (&vlan, vs) in &self.vlans {
            for (&group, gs) in &vs.groups {
                // Static entries not added at runtime are the configuration file's.
                let origin =
                    |port: PortId| match find_static(&self.overrides.statics, vlan, group, port) {
                        Some(_) => MdbOrigin::Runtime,
                        None => MdbOrigin::File,
                    };
                group_rows(vlan, group, gs, now, &name, &origin, &mut rows);
            }
        }
        rows
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The querier state of every VLAN.
    pub fn querier_status(&self, now: Time) -> Vec<QuerierStatus> {
        self.vlan_cfg
            .values()
            .filter_map(|c| {
                let vs = self.vlans.get(&c.id)?;
                Some(vs.querier.status(c, now, |p| {
                    self.config
                        .ports
                        .get(usize::from(p))
                        .map(|x| x.name.clone())
                }))
            })
            .collect()
    }

    /// Every multicast-router port, learned or configured, per VLAN.
    pub fn mrouter_ports(&self, now: Time) -> Vec<MrouterRow> {
        let mut rows = Vec::new();
        for c in self.vlan_cfg.values() {
            let Some(vs) = self.vlans.get(&c.id) else {
                continue;
            };
            for port in mrouters(c, &self.topo, vs).iter() {
                let learned = vs.mrouters.get(port);
                let always = self.topo.mrouter_always.contains(port);
                rows.push(MrouterRow {
                    vlan: c.id,
                    port: self.port_name(port),
                    mode: if always {
                        super::config::MrouterMode::Always
                    } else {
                        super::config::MrouterMode::Auto
                    },
                    via: if always { None } else { learned.map(|l| l.via) },
                    expires_ms: if always {
                        None
                    } else {
                        learned.map(|l| super::events::ms(l.expires.saturating_sub(now)))
                    },
                });
            }
        }
        rows
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The latest time the engine has seen.
    pub fn now(&self) -> Time {
        self.now
    }

    fn port_name(&self, port: PortId) -> String {
        self.config
            .ports
            .get(usize::from(port))
            .map_or_else(|| format!("port{port}"), |p| p.name.clone())
    }

    fn event(
        out: &mut Output,
        at: Time,
        vlan: VlanId,
        port: Option<PortId>,
        group: Option<Ipv4Addr>,
        kind: EventKind,
        reason: &'static str,
    ) {
        tracing::debug!(?kind, vlan, ?port, ?group, reason, "snooping event");
        out.events.push(Event {
            at,
            vlan,
            port,
            group,
            kind,
            reason,
        });
    }

    /// Up ports of a VLAN.
    fn up_ports(&self, vlan: VlanId) -> PortSet {
        self.topo.ports(vlan).difference(self.down)
    }

    // ----------------------------------------------------------------------------------------
    // Messages

    fn on_message(
        &mut self,
        now: Time,
        port: PortId,
        vlan: VlanId,
        src: Ipv4Addr,
        msg: &Message<Ipv4Addr>,
        out: &mut Output,
    ) {
        let Some(cfg) = self.vlan_cfg.get(&vlan).cloned() else {
            self.stats.ignore("message in an unconfigured VLAN");
            return;
        };
        if !self.topo.ports(vlan).contains(port) {
            self.stats.ignore("message on a port outside its VLAN");
            return;
        }
        self.stats.count_message(msg, port, vlan);
        if self.down.contains(port) {
            self.stats.ignore("message on a port that is down");
            return;
        }
        match msg {
            Message::Query {
                version,
                group,
                sources,
                max_resp,
                suppress,
                qrv,
                qqi,
            } => {
                // RFC 4541 §2.1.1(2): a query's arrival port leads to a router, unless it is a
                // proxy query from 0.0.0.0.
                if !src.is_unspecified() {
                    self.learn_mrouter(now, &cfg, port, "query", out);
                }
                self.election(now, &cfg, port, src, *version, *qrv, *qqi, out);
                if let Some(g) = group {
                    self.other_group_query(now, &cfg, *g, sources, *max_resp, *suppress, out);
                }
            }
            Message::Report { version, records } => {
                for r in records {
                    self.on_record(now, &cfg, port, *version, r, out);
                }
            }
            Message::Leave { group } => self.on_leave(now, &cfg, port, *group, out),
            // RFC 4286 / RFC 4541 §2.1.1(2): MRD advertisements and PIM hellos reveal routers.
            Message::MrdAdvertisement => self.learn_mrouter(now, &cfg, port, "mrd", out),
            Message::PimHello => self.learn_mrouter(now, &cfg, port, "pim_hello", out),
            Message::Unknown { .. } => {}
        }
        let ports = VlanPorts {
            up: self.up_ports(vlan),
            mrouters: self
                .table
                .vlans
                .get(&vlan)
                .map(|t| t.mrouters)
                .unwrap_or_default(),
            flood_reports: self.topo.flood_reports,
            snooping: cfg.snooping,
        };
        out.forward = egress(classify(msg), port, &ports);
    }

    /// RFC 3376 §6.6.2 election; the querier's QRV/QQI become the VLAN's effective timers.
    #[allow(clippy::too_many_arguments)]
    fn election(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        port: PortId,
        src: Ipv4Addr,
        version: Version,
        qrv: u8,
        qqi: Option<Duration>,
        out: &mut Output,
    ) {
        let Some(vs) = self.vlans.get_mut(&cfg.id) else {
            return;
        };
        let result = vs
            .querier
            .query_seen(cfg, now, port, src, version, qrv, qqi);
        let other = vs.querier.other.as_ref().map(|o| o.expires);
        let next = vs.querier.next_general();
        self.deadlines.set(TimerKey::OtherQuerier(cfg.id), other);
        self.deadlines.set(TimerKey::GeneralQuery(cfg.id), next);
        if let Election::Changed(events) = result {
            for kind in events {
                let reason = match kind {
                    EventKind::QuerierMismatch { .. } => {
                        "the elected querier's version or timers differ from ours (RFC 3376 §8: one set per link)"
                    }
                    _ => "query from a lower address (RFC 3376 §6.6.2)",
                };
                Self::event(out, now, cfg.id, Some(port), None, kind, reason);
            }
        }
    }

    /// Another querier's group(-and-source)-specific query: every port's state for the group
    /// lowers its timers (RFC 3376 §6.6.1), since the query reached every port of the VLAN.
    #[allow(clippy::too_many_arguments)]
    fn other_group_query(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        group: Ipv4Addr,
        sources: &[Ipv4Addr],
        max_resp: Duration,
        suppress: bool,
        out: &mut Output,
    ) {
        if !cfg.snooping {
            return;
        }
        if !is_snoopable_group(group) {
            self.stats.ignore("group query for an unsnooped group");
            return;
        }
        let ports: Vec<PortId> = self
            .vlans
            .get(&cfg.id)
            .and_then(|vs| vs.groups.get(&group))
            .map(|gs| gs.ports.keys().copied().collect())
            .unwrap_or_default();
        for port in ports {
            let outcome = self.with_pg(now, cfg, group, port, |pg, ctx| {
                if sources.is_empty() {
                    pg.group_query_seen(ctx, max_resp, suppress)
                } else {
                    pg.group_source_query_seen(ctx, sources, max_resp, suppress)
                }
            });
            if let Some(o) = outcome {
                let removal = Removal {
                    kind: EXPIRE,
                    reason: "lowered by another querier's group query and expired",
                };
                self.settle_pg(now, cfg, group, port, o, removal, out);
            }
        }
    }

    fn report_reason(version: Version) -> &'static str {
        match version {
            Version::V1 => "IGMPv1 report",
            Version::V2 => "IGMPv2 report",
            Version::V3 => "IGMPv3 report",
        }
    }

    fn on_record(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        port: PortId,
        version: Version,
        record: &GroupRecord<Ipv4Addr>,
        out: &mut Output,
    ) {
        if !cfg.snooping {
            return;
        }
        let group = record.group;
        if !group.is_multicast() {
            self.stats.ignore("report for a non-multicast group");
            return;
        }
        if !is_snoopable_group(group) {
            // RFC 4541 §2.1.2(2): 224.0.0.0/24 is always flooded, never snooped.
            self.stats.ignore("report for a link-local group");
            return;
        }
        let valid = record.sources.iter().all(|s| is_valid_source(*s));
        let filtered;
        let record = if valid {
            record
        } else {
            let sources: Vec<Ipv4Addr> = record
                .sources
                .iter()
                .copied()
                .filter(|s| is_valid_source(*s))
                .collect();
            self.count_ignored(
                "invalid source address in a record",
                record.sources.len() - sources.len(),
            );
            filtered = GroupRecord {
                kind: record.kind,
                group,
                sources,
            };
            &filtered
        };
        let exists = self
            .vlans
            .get(&cfg.id)
            .and_then(|vs| vs.groups.get(&group))
            .is_some_and(|gs| gs.ports.contains_key(&port));
        if exists {
            let o = self.with_pg(now, cfg, group, port, |pg, ctx| {
                pg.record(ctx, record.kind, &record.sources, version)
            });
            if let Some(o) = o {
                let removal = Removal {
                    kind: LEAVE,
                    reason: "report left no forwarded source",
                };
                self.settle_pg(now, cfg, group, port, o, removal, out);
            }
            return;
        }
        // A new port-group starts as INCLUDE {} (RFC 3376 §6.2.1); records that leave it empty
        // (IS_IN {}, TO_IN {}, BLOCK) create nothing and need no admission.
        let (timers, role) = self.vlan_context(cfg);
        let ctx = self.context(now, &timers, role, port);
        let mut pg = PortGroup::new(group);
        let o = pg.record(&ctx, record.kind, &record.sources, version);
        if pg.is_empty() {
            self.stats
                .ignore("record changes nothing for a group not joined on the port");
            return;
        }
        match self.admission(cfg, group, port) {
            Ok(()) => {
                self.insert_pg(cfg.id, group, port, pg);
                Self::event(
                    out,
                    now,
                    cfg.id,
                    Some(port),
                    Some(group),
                    EventKind::Join,
                    Self::report_reason(version),
                );
                let removal = Removal {
                    kind: LEAVE,
                    reason: "report left no forwarded source",
                };
                self.settle_pg(now, cfg, group, port, o, removal, out);
            }
            Err(scope) => self.refuse(now, cfg, group, port, scope, &timers, out),
        }
    }

    /// Whether a new port-group may be created: per-port, per-VLAN and global group limits.
    fn admission(
        &self,
        cfg: &VlanConfig,
        group: Ipv4Addr,
        port: PortId,
    ) -> Result<(), &'static str> {
        let port_max = self
            .config
            .ports
            .get(usize::from(port))
            .map_or(0, |p| p.max_groups);
        let on_port = self
            .port_groups
            .get(usize::from(port))
            .copied()
            .unwrap_or(0);
        if port_max > 0 && on_port >= port_max {
            return Err("port");
        }
        let Some(vs) = self.vlans.get(&cfg.id) else {
            return Err("vlan");
        };
        let new_in_vlan = vs.groups.get(&group).is_none_or(|gs| gs.ports.is_empty());
        if new_in_vlan {
            if cfg.max_groups > 0 && vs.dynamic_groups >= cfg.max_groups {
                return Err("vlan");
            }
            if self.config.max_groups > 0 && self.total_groups >= self.config.max_groups {
                return Err("global");
            }
        }
        Ok(())
    }

    /// A limit refused a group: per the VLAN's policy, deny it or flood only that group for one
    /// Group Membership Interval (refreshed by further refused reports).
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        group: Ipv4Addr,
        port: PortId,
        scope: &'static str,
        timers: &TimerConfig,
        out: &mut Output,
    ) {
        let l = &mut self.stats.limits;
        let c = match scope {
            "port" => &mut l.port,
            "vlan" => &mut l.vlan,
            _ => &mut l.global,
        };
        *c = c.saturating_add(1);
        let flooding = self
            .vlans
            .get(&cfg.id)
            .and_then(|vs| vs.groups.get(&group))
            .is_some_and(|gs| gs.flood_until.is_some());
        let flood_full = !flooding
            && self.vlans.get(&cfg.id).is_some_and(|vs| {
                vs.groups
                    .values()
                    .filter(|g| g.flood_until.is_some())
                    .count()
                    >= MAX_FLOODED_GROUPS_PER_VLAN
            });
        match cfg.table_full {
            TableFullPolicy::Flood if flood_full => {
                Self::event(
                    out,
                    now,
                    cfg.id,
                    Some(port),
                    Some(group),
                    EventKind::Limit {
                        scope,
                        action: "denied",
                    },
                    "group limit reached and too many groups already flooded",
                );
            }
            TableFullPolicy::Deny => {
                Self::event(
                    out,
                    now,
                    cfg.id,
                    Some(port),
                    Some(group),
                    EventKind::Limit {
                        scope,
                        action: "denied",
                    },
                    "group limit reached, policy deny",
                );
            }
            TableFullPolicy::Flood => {
                let until = now.saturating_add(timers.group_membership_interval());
                let Some(vs) = self.vlans.get_mut(&cfg.id) else {
                    return;
                };
                let gs = vs.groups.entry(group).or_default();
                let was = gs.flood_until.replace(until);
                self.deadlines.set(
                    TimerKey::Flood {
                        vlan: cfg.id,
                        group,
                    },
                    Some(until),
                );
                if was.is_none() {
                    Self::event(
                        out,
                        now,
                        cfg.id,
                        Some(port),
                        Some(group),
                        EventKind::Limit {
                            scope,
                            action: "flooded",
                        },
                        "group limit reached, policy flood: only this group is flooded",
                    );
                }
                self.refresh_group(now, cfg.id, group, out);
            }
        }
    }

    fn on_leave(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        port: PortId,
        group: Ipv4Addr,
        out: &mut Output,
    ) {
        if !cfg.snooping {
            return;
        }
        if !is_snoopable_group(group) {
            self.stats.ignore("leave for an unsnooped group");
            return;
        }
        match self.with_pg(now, cfg, group, port, |pg, ctx| pg.leave(ctx)) {
            Some(o) => {
                let removal = Removal {
                    kind: LEAVE,
                    reason: "IGMPv2 leave",
                };
                self.settle_pg(now, cfg, group, port, o, removal, out);
            }
            None => self
                .stats
                .ignore("leave for a group not joined on the port"),
        }
    }

    fn learn_mrouter(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        port: PortId,
        via: &'static str,
        out: &mut Output,
    ) {
        if self.topo.mrouter_never.contains(port) {
            self.stats
                .ignore("router seen on a port with mrouter = never");
            return;
        }
        let Some(vs) = self.vlans.get_mut(&cfg.id) else {
            return;
        };
        // Aged by the Other Querier Present Interval (RFC 3376 §8.5), like the Linux bridge.
        let expires = now.saturating_add(
            vs.querier
                .effective_timers(cfg)
                .other_querier_present_interval(),
        );
        let new = vs.mrouters.learn(port, expires, via);
        self.deadlines
            .set(TimerKey::Mrouter { vlan: cfg.id, port }, Some(expires));
        if new {
            Self::event(
                out,
                now,
                cfg.id,
                Some(port),
                None,
                EventKind::MrouterLearned { via },
                "multicast router heard on the port",
            );
            self.refresh_mrouters(cfg.id, out);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Port-group plumbing

    fn vlan_context(&self, cfg: &VlanConfig) -> (TimerConfig, QuerierRole) {
        match self.vlans.get(&cfg.id) {
            Some(vs) => (vs.querier.effective_timers(cfg), vs.querier.role(cfg)),
            None => (cfg.timers, QuerierRole::Nobody),
        }
    }

    fn context<'t>(
        &self,
        now: Time,
        timers: &'t TimerConfig,
        role: QuerierRole,
        port: PortId,
    ) -> Context<'t> {
        Context {
            now,
            timers,
            querier: role,
            fast_leave: self.topo.fast_leave.contains(port),
            max_sources: match self.config.max_sources {
                0 => usize::MAX,
                n => n,
            },
        }
    }

    /// Runs `f` on the port-group of (VLAN, group, port) with its context; `None` when absent.
    fn with_pg(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        group: Ipv4Addr,
        port: PortId,
        f: impl FnOnce(&mut PortGroup<Ipv4Addr>, &Context<'_>) -> Outcome<Ipv4Addr>,
    ) -> Option<Outcome<Ipv4Addr>> {
        let (timers, role) = self.vlan_context(cfg);
        let ctx = self.context(now, &timers, role, port);
        let pg = self
            .vlans
            .get_mut(&cfg.id)?
            .groups
            .get_mut(&group)?
            .ports
            .get_mut(&port)?;
        Some(f(pg, &ctx))
    }

    fn insert_pg(&mut self, vlan: VlanId, group: Ipv4Addr, port: PortId, pg: PortGroup<Ipv4Addr>) {
        let Some(vs) = self.vlans.get_mut(&vlan) else {
            return;
        };
        let gs = vs.groups.entry(group).or_default();
        if gs.ports.is_empty() {
            vs.dynamic_groups += 1;
            self.total_groups += 1;
        }
        if gs.ports.insert(port, pg).is_none() {
            if let Some(c) = self.port_groups.get_mut(usize::from(port)) {
                *c += 1;
            }
        }
    }

    fn remove_pg(&mut self, vlan: VlanId, group: Ipv4Addr, port: PortId) -> bool {
        let Some(vs) = self.vlans.get_mut(&vlan) else {
            return false;
        };
        let Some(gs) = vs.groups.get_mut(&group) else {
            return false;
        };
        if gs.ports.remove(&port).is_none() {
            return false;
        }
        self.deadlines
            .set(TimerKey::PortGroup { vlan, group, port }, None);
        if let Some(c) = self.port_groups.get_mut(usize::from(port)) {
            *c = c.saturating_sub(1);
        }
        if gs.ports.is_empty() {
            vs.dynamic_groups = vs.dynamic_groups.saturating_sub(1);
            self.total_groups = self.total_groups.saturating_sub(1);
        }
        true
    }

    /// After a state-machine call: send its queries, count refused sources, drop the state when
    /// empty (RFC 3376 §6.5), re-index its deadline and refresh the group's table entry.
    #[allow(clippy::too_many_arguments)]
    fn settle_pg(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        group: Ipv4Addr,
        port: PortId,
        outcome: Outcome<Ipv4Addr>,
        removal: Removal,
        out: &mut Output,
    ) {
        let vlan = cfg.id;
        let (timers, role) = self.vlan_context(cfg);
        let Some(pg) = self
            .vlans
            .get(&vlan)
            .and_then(|vs| vs.groups.get(&group))
            .and_then(|gs| gs.ports.get(&port))
        else {
            return;
        };
        let compat = pg.compat_version(now);
        let empty = pg.is_empty();
        let next = pg.next_deadline();
        if role == QuerierRole::Us && !self.down.contains(port) {
            for q in outcome.queries {
                // Never a newer query than the group's hosts or the VLAN speak (RFC 3376 §7.3.2,
                // RFC 4541 §2.1.1(4)).
                let version = compat.min(cfg.igmp_version);
                if version == Version::V1 {
                    // IGMPv1 has no group-specific query; v1-compat state ignores leaves anyway.
                    self.stats
                        .ignore("group query for an IGMPv1 group not sent");
                    continue;
                }
                // An IGMPv2 query cannot carry sources: v3 hosts answer a Q(G) with their whole
                // state, so a Q(G,S) becomes one Q(G) (as the state machine does in v2 mode).
                let (sources, suppress) = if version == Version::V3 {
                    (q.sources, q.suppress)
                } else {
                    (Vec::new(), false)
                };
                let dup = out.transmit.iter().any(|t| {
                    t.vlan == vlan
                        && t.ports == PortSet::single(port)
                        && t.query.group == Some(q.group)
                        && t.query.sources == sources
                        && t.query.suppress == suppress
                });
                if dup {
                    continue;
                }
                self.stats.count_sent(vlan, PortSet::single(port), |sent| {
                    if sources.is_empty() {
                        &mut sent.group_queries
                    } else {
                        &mut sent.group_source_queries
                    }
                });
                out.transmit.push(Transmit {
                    vlan,
                    ports: PortSet::single(port),
                    query: QuerySpec {
                        version,
                        src: cfg.querier_address,
                        group: Some(q.group),
                        sources,
                        max_resp: timers.last_member_query_interval,
                        suppress,
                        qrv: timers.robustness,
                        qqi: timers.query_interval,
                    },
                });
            }
        }
        if outcome.sources_refused > 0 {
            let c = &mut self.stats.limits.sources_refused;
            *c = c.saturating_add(outcome.sources_refused as u64);
            Self::event(
                out,
                now,
                vlan,
                Some(port),
                Some(group),
                EventKind::Limit {
                    scope: "sources",
                    action: "denied",
                },
                "source limit of the port-group reached",
            );
        }
        if empty {
            self.remove_pg(vlan, group, port);
            Self::event(
                out,
                now,
                vlan,
                Some(port),
                Some(group),
                (removal.kind)(),
                removal.reason,
            );
        } else {
            self.deadlines
                .set(TimerKey::PortGroup { vlan, group, port }, next);
        }
        self.refresh_group(now, vlan, group, out);
    }

    /// Recomputes the table entry of one (VLAN, group) and deletes the group when unused.
    fn refresh_group(&mut self, now: Time, vlan: VlanId, group: Ipv4Addr, out: &mut Output) {
        let snooping = self.vlan_cfg.get(&vlan).is_some_and(|c| c.snooping);
        let Some(vs) = self.vlans.get_mut(&vlan) else {
            return;
        };
        let entry = match vs.groups.get(&group) {
            Some(gs) if gs.is_unused() => {
                vs.groups.remove(&group);
                None
            }
            Some(gs) if snooping => group_entry(gs, now),
            _ => None,
        };
        let Some(table) = self.table.vlans.get_mut(&vlan) else {
            return;
        };
        self.work.entry_updates += 1;
        let changed = match entry {
            Some(e) => table
                .groups
                .insert(group, e.clone())
                .is_none_or(|old| old != e),
            None => table.groups.remove(&group).is_some(),
        };
        if changed {
            self.delta.group(vlan, group);
        }
        out.table_changed |= changed;
    }

    /// Recomputes the router ports of a VLAN in the table.
    fn refresh_mrouters(&mut self, vlan: VlanId, out: &mut Output) {
        let (Some(cfg), Some(vs)) = (self.vlan_cfg.get(&vlan), self.vlans.get(&vlan)) else {
            return;
        };
        let set = mrouters(cfg, &self.topo, vs);
        if let Some(t) = self.table.vlans.get_mut(&vlan) {
            if t.mrouters != set {
                t.mrouters = set;
                self.delta.vlan(vlan);
                out.table_changed = true;
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Timers

    fn run_timers(&mut self, now: Time, out: &mut Output) {
        for _ in 0..MAX_TIMER_PASSES {
            let due = self.deadlines.due(now);
            if due.is_empty() {
                return;
            }
            for key in due {
                self.fire(now, key, out);
            }
        }
    }

    fn fire(&mut self, now: Time, key: TimerKey, out: &mut Output) {
        match key {
            TimerKey::PortGroup { vlan, group, port } => {
                let Some(cfg) = self.vlan_cfg.get(&vlan).cloned() else {
                    self.deadlines.set(key, None);
                    return;
                };
                match self.with_pg(now, &cfg, group, port, |pg, ctx| pg.advance(ctx)) {
                    Some(o) => {
                        let removal = Removal {
                            kind: EXPIRE,
                            reason: "membership timers expired",
                        };
                        self.settle_pg(now, &cfg, group, port, o, removal, out);
                    }
                    None => self.deadlines.set(key, None),
                }
            }
            TimerKey::Flood { vlan, group } => {
                self.deadlines.set(key, None);
                let ended = self
                    .vlans
                    .get_mut(&vlan)
                    .and_then(|vs| vs.groups.get_mut(&group))
                    .and_then(|gs| gs.flood_until.take())
                    .is_some();
                if ended {
                    Self::event(
                        out,
                        now,
                        vlan,
                        None,
                        Some(group),
                        EventKind::FloodEnded,
                        "no refused report for a group membership interval",
                    );
                    self.refresh_group(now, vlan, group, out);
                }
            }
            TimerKey::GeneralQuery(vlan) => {
                let Some(cfg) = self.vlan_cfg.get(&vlan).cloned() else {
                    self.deadlines.set(key, None);
                    return;
                };
                let Some(vs) = self.vlans.get_mut(&vlan) else {
                    self.deadlines.set(key, None);
                    return;
                };
                let q = vs.querier.general_query_due(&cfg, now);
                let next = vs.querier.next_general();
                self.deadlines.set(key, next);
                if let Some(query) = q {
                    self.send_general(vlan, self.up_ports(vlan), query, out);
                }
            }
            TimerKey::OtherQuerier(vlan) => {
                self.deadlines.set(key, None);
                let Some(cfg) = self.vlan_cfg.get(&vlan).cloned() else {
                    return;
                };
                let expired = self
                    .vlans
                    .get(&vlan)
                    .and_then(|vs| vs.querier.other.as_ref())
                    .is_some_and(|o| o.expires <= now);
                if expired {
                    self.lose_other_querier(
                        now,
                        &cfg,
                        "other querier present interval elapsed (RFC 3376 §6.6.2)",
                        out,
                    );
                }
            }
            TimerKey::Mrouter { vlan, port } => {
                self.deadlines.set(key, None);
                let expired = self
                    .vlans
                    .get_mut(&vlan)
                    .is_some_and(|vs| vs.mrouters.expire(port, now));
                if expired {
                    Self::event(out, now, vlan, Some(port), None, EventKind::MrouterExpired, "no query, PIM hello or MRD advertisement for the other querier present interval");
                    self.refresh_mrouters(vlan, out);
                }
            }
        }
    }

    fn lose_other_querier(
        &mut self,
        now: Time,
        cfg: &VlanConfig,
        reason: &'static str,
        out: &mut Output,
    ) {
        let Some(vs) = self.vlans.get_mut(&cfg.id) else {
            return;
        };
        let port = vs.querier.other.as_ref().map(|o| o.port);
        let events = vs.querier.other_lost(cfg, now);
        let next = vs.querier.next_general();
        self.deadlines.set(TimerKey::OtherQuerier(cfg.id), None);
        self.deadlines.set(TimerKey::GeneralQuery(cfg.id), next);
        for kind in events {
            Self::event(out, now, cfg.id, port, None, kind, reason);
        }
    }

    fn send_general(&mut self, vlan: VlanId, ports: PortSet, query: QuerySpec, out: &mut Output) {
        if ports.is_empty() {
            return;
        }
        self.stats
            .count_sent(vlan, ports, |sent| &mut sent.general_queries);
        out.transmit.push(Transmit { vlan, ports, query });
    }

    // ----------------------------------------------------------------------------------------
    // Ports and configuration

    /// The configurations of the VLANs `port` carries, or `None` (counted) for an unknown port.
    fn vlans_of_port(&mut self, port: PortId) -> Option<Vec<VlanConfig>> {
        if usize::from(port) >= self.config.ports.len() {
            self.stats.ignore("link event for an unknown port");
            return None;
        }
        Some(
            self.vlan_cfg
                .values()
                .filter(|c| self.topo.ports(c.id).contains(port))
                .cloned()
                .collect(),
        )
    }

    fn on_port_up(&mut self, port: PortId, out: &mut Output) {
        let Some(vlans) = self.vlans_of_port(port) else {
            return;
        };
        self.down.remove(port);
        // RFC 4541 §2.1.1(4): a general query on a port that comes up lets its hosts report
        // at once instead of after a query interval.
        for cfg in vlans {
            let us = self
                .vlans
                .get(&cfg.id)
                .is_some_and(|vs| vs.querier.role(&cfg) == QuerierRole::Us);
            if us {
                self.send_general(cfg.id, PortSet::single(port), general_query(&cfg), out);
            }
        }
    }

    fn on_port_down(&mut self, now: Time, port: PortId, out: &mut Output) {
        let Some(vlans) = self.vlans_of_port(port) else {
            return;
        };
        self.down.insert(port);
        for cfg in vlans {
            let n = self.flush_port(now, cfg.id, port, out);
            Self::event(
                out,
                now,
                cfg.id,
                Some(port),
                None,
                EventKind::PortFlushed { groups: n },
                "link down",
            );
            if self
                .vlans
                .get_mut(&cfg.id)
                .is_some_and(|vs| vs.mrouters.forget(port))
            {
                self.deadlines
                    .set(TimerKey::Mrouter { vlan: cfg.id, port }, None);
                Self::event(
                    out,
                    now,
                    cfg.id,
                    Some(port),
                    None,
                    EventKind::MrouterExpired,
                    "link down",
                );
                self.refresh_mrouters(cfg.id, out);
            }
            let querier_behind = self
                .vlans
                .get(&cfg.id)
                .and_then(|vs| vs.querier.other.as_ref())
                .is_some_and(|o| o.port == port);
            if querier_behind {
                self.lose_other_querier(now, &cfg, "link to the querier went down", out);
            }
        }
    }

    /// Removes every dynamic port-group of `port` in `vlan`; returns how many.
    fn flush_port(&mut self, now: Time, vlan: VlanId, port: PortId, out: &mut Output) -> usize {
        let groups: Vec<Ipv4Addr> = self
            .vlans
            .get(&vlan)
            .map(|vs| {
                vs.groups
                    .iter()
                    .filter(|(_, gs)| gs.ports.contains_key(&port))
                    .map(|(g, _)| *g)
                    .collect()
            })
            .unwrap_or_default();
        for &g in &groups {
            self.remove_pg(vlan, g, port);
            self.refresh_group(now, vlan, g, out);
        }
        groups.len()
    }

    /// [`Input::Reconfigure`] for callers that want the validation error: an invalid
    /// configuration is refused (and the running one kept) before anything changes.
    pub fn reconfigure(&mut self, now: Time, config: EngineConfig) -> Result<Output, ConfigError> {
        config.validate()?;
        Ok(self.handle(now, Input::Reconfigure(config)))
    }

    /// A new base configuration (a reload): runtime overrides that still fit are re-applied
    /// on top of it, the others are dropped and journalled; then [`Engine::apply_config`].
    fn apply_base(
        &mut self,
        now: Time,
        base: EngineConfig,
        out: &mut Output,
    ) -> Result<(), ConfigError> {
        base.validate()?;
        let mut overrides = self.overrides.clone();
        let dropped = overrides.prune(&base);
        let effective = overrides.apply(&base);
        effective.validate()?;
        self.base = base;
        self.overrides = overrides;
        for s in dropped {
            Self::event(
                out,
                now,
                s.vlan,
                Some(s.port),
                Some(s.group),
                EventKind::StaticRemoved,
                "runtime static group dropped: its port no longer carries the VLAN after the reload",
            );
        }
        self.apply_config(now, effective, out)
    }

    /// Applies a new configuration, keeping learned state where it is still valid: groups on
    /// ports still in their VLAN, router ports not turned `never`, the elected querier while it
    /// still wins. Everything dropped is journaled as evicted.
    fn apply_config(
        &mut self,
        now: Time,
        config: EngineConfig,
        out: &mut Output,
    ) -> Result<(), ConfigError> {
        config.validate()?;
        let old = std::mem::replace(&mut self.config, config);
        self.topo = Topology::new(&self.config);
        let old_vlan_cfg = std::mem::take(&mut self.vlan_cfg);
        self.vlan_cfg = self
            .config
            .vlans
            .iter()
            .map(|v| (v.id, v.clone()))
            .collect();
        let new_len = self.config.ports.len();
        self.down = self
            .down
            .iter()
            .filter(|p| usize::from(*p) < new_len)
            .collect();
        // VLANs removed.
        let removed: Vec<VlanId> = self
            .vlans
            .keys()
            .filter(|v| !self.vlan_cfg.contains_key(v))
            .copied()
            .collect();
        for vlan in removed {
            self.vlans.remove(&vlan);
            Self::event(
                out,
                now,
                vlan,
                None,
                None,
                EventKind::Evict,
                "VLAN removed from the configuration",
            );
        }
        let cfgs: Vec<VlanConfig> = self.vlan_cfg.values().cloned().collect();
        for cfg in cfgs {
            let ports = self.topo.ports(cfg.id);
            let Some(vs) = self.vlans.get_mut(&cfg.id) else {
                self.vlans.insert(
                    cfg.id,
                    VlanState {
                        querier: Querier::new(&cfg, now),
                        ..VlanState::default()
                    },
                );
                continue;
            };
            // Port-groups on ports that left the VLAN, were renamed (another interface), or of a
            // VLAN whose snooping was turned off.
            let same_port = |p: PortId| {
                let i = usize::from(p);
                matches!((old.ports.get(i), self.config.ports.get(i)), (Some(a), Some(b)) if a.name == b.name)
            };
            let mut evicted = Vec::new();
            for (&g, gs) in vs.groups.iter_mut() {
                gs.ports.retain(|&p, _| {
                    let keep = cfg.snooping && ports.contains(p) && same_port(p);
                    if !keep {
                        evicted.push((g, p));
                    }
                    keep
                });
            }
            for (g, p) in evicted {
                let reason = if cfg.snooping {
                    "port left the VLAN or was replaced"
                } else {
                    "snooping turned off in the VLAN"
                };
                Self::event(out, now, cfg.id, Some(p), Some(g), EventKind::Evict, reason);
            }
            let learned: Vec<PortId> = vs.mrouters.learned().iter().collect();
            for p in learned {
                if !ports.contains(p) || self.topo.mrouter_never.contains(p) || !same_port(p) {
                    vs.mrouters.forget(p);
                    Self::event(
                        out,
                        now,
                        cfg.id,
                        Some(p),
                        None,
                        EventKind::MrouterExpired,
                        "reconfigured",
                    );
                }
            }
            // Querier: a changed querier configuration restarts ours (with startup queries);
            // the other querier stays elected while it still beats us.
            let old_cfg = old_vlan_cfg.get(&cfg.id);
            let before = (
                old_cfg.map_or(QuerierRole::Nobody, |o| vs.querier.role(o)),
                vs.querier.other.as_ref().map(|o| o.address),
            );
            let querier_changed = old_cfg.is_none_or(|o| {
                o.querier != cfg.querier
                    || o.querier_address != cfg.querier_address
                    || o.timers != cfg.timers
                    || o.igmp_version != cfg.igmp_version
            });
            if querier_changed {
                let other = vs.querier.other.take().filter(|o| {
                    ports.contains(o.port)
                        && (!cfg.querier
                            || cfg.querier_address.is_unspecified()
                            || o.address < cfg.querier_address)
                });
                vs.querier = Querier::new(&cfg, now);
                if let Some(o) = other {
                    // Re-run the election with its last values so our own querier stands down.
                    let (port, addr, version, qrv, qqi, since, expires) = (
                        o.port, o.address, o.version, o.qrv, o.qqi, o.since, o.expires,
                    );
                    vs.querier
                        .query_seen(&cfg, now, port, addr, version, qrv, qqi);
                    if let Some(n) = vs.querier.other.as_mut() {
                        n.since = since;
                        n.expires = expires;
                    }
                }
            } else if vs
                .querier
                .other
                .as_ref()
                .is_some_and(|o| !ports.contains(o.port))
            {
                vs.querier.other_lost(&cfg, now);
            }
            let after = (
                vs.querier.role(&cfg),
                vs.querier.other.as_ref().map(|o| o.address),
            );
            for kind in querier_transition(before, after, old_cfg, &cfg) {
                Self::event(out, now, cfg.id, None, None, kind, "reconfigured");
            }
        }
        // Flood markers of VLANs that stopped snooping are meaningless.
        for (vlan, vs) in self.vlans.iter_mut() {
            if self.vlan_cfg.get(vlan).is_some_and(|c| !c.snooping) {
                for gs in vs.groups.values_mut() {
                    gs.flood_until = None;
                }
            }
        }
        self.apply_static_groups();
        for vs in self.vlans.values_mut() {
            vs.groups.retain(|_, gs| !gs.is_unused());
        }
        self.recount();
        self.rebuild_deadlines();
        let table = self.recompute_table();
        self.work.full_builds += 1;
        // Only the entries that differ are logged for publication.
        if diff_into(&self.table, &table, &mut self.delta) {
            out.table_changed = true;
        }
        self.table = table;
        Ok(())
    }

    fn apply_static_groups(&mut self) {
        for vs in self.vlans.values_mut() {
            for gs in vs.groups.values_mut() {
                gs.static_ports = PortSet::EMPTY;
                gs.static_sources.clear();
            }
            // A group that only existed through a removed static entry goes with it.
            vs.groups.retain(|_, gs| !gs.is_unused());
        }
        for s in &self.config.static_groups {
            if let Some(vs) = self.vlans.get_mut(&s.vlan) {
                let gs = vs.groups.entry(s.group).or_default();
                if s.sources.is_empty() {
                    gs.static_ports.insert(s.port);
                } else {
                    gs.static_sources
                        .entry(s.port)
                        .or_default()
                        .extend(s.sources.iter().copied());
                }
            }
        }
    }

    fn recount(&mut self) {
        self.port_groups = vec![0; self.config.ports.len()];
        self.total_groups = 0;
        for vs in self.vlans.values_mut() {
            vs.dynamic_groups = 0;
            for gs in vs.groups.values() {
                if !gs.ports.is_empty() {
                    vs.dynamic_groups += 1;
                }
                for &p in gs.ports.keys() {
                    if let Some(c) = self.port_groups.get_mut(usize::from(p)) {
                        *c += 1;
                    }
                }
            }
            self.total_groups += vs.dynamic_groups;
        }
    }

    fn rebuild_deadlines(&mut self) {
        let mut d = Deadlines::default();
        for (&vlan, vs) in &self.vlans {
            d.set(TimerKey::GeneralQuery(vlan), vs.querier.next_general());
            d.set(
                TimerKey::OtherQuerier(vlan),
                vs.querier.other.as_ref().map(|o| o.expires),
            );
            for (port, l) in vs.mrouters.iter() {
                d.set(TimerKey::Mrouter { vlan, port }, Some(l.expires));
            }
            for (&group, gs) in &vs.groups {
                d.set(TimerKey::Flood { vlan, group }, gs.flood_until);
                for (&port, pg) in &gs.ports {
                    d.set(
                        TimerKey::PortGroup { vlan, group, port },
                        pg.next_deadline(),
                    );
                }
            }
        }
        self.deadlines = d;
    }
}

/// Journal entries for a querier change made by reconfiguration: (role, other querier) before
/// and after.
fn querier_transition(
    before: (QuerierRole, Option<Ipv4Addr>),
    after: (QuerierRole, Option<Ipv4Addr>),
    old_cfg: Option<&VlanConfig>,
    cfg: &VlanConfig,
) -> Vec<EventKind> {
    let mut ev = Vec::new();
    if let (Some(a), b) = (before.1, after.1) {
        if b != Some(a) {
            ev.push(EventKind::QuerierLost { address: a });
        }
    }
    if before.0 == QuerierRole::Us && after.0 != QuerierRole::Us && after.1.is_none() {
        if let Some(o) = old_cfg {
            ev.push(EventKind::QuerierLost {
                address: o.querier_address,
            });
        }
    }
    if before.0 != QuerierRole::Us && after.0 == QuerierRole::Us {
        ev.push(EventKind::QuerierElected {
            address: cfg.querier_address,
            ours: true,
        });
    }
    ev
}
