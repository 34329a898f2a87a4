//! The switch CPU's core, shared by snoop mode and run mode.
//!
//! Both modes own one [`ControlPlane`]: the engine on a real clock, the control socket that show
//! commands (`xsnoop mdb` ...) talk to, the journal of recent events, and the published
//! forwarding table. What differs between the modes is only how frames reach the engine and how
//! its frames leave (AF_PACKET sockets in snoop mode, the AF_XDP worker in run mode), so each
//! mode feeds inputs here and then carries out the frame-sending part of the [`Output`] itself.
//! Logging the events and publishing the table happen here, once, for both.
//!
//! The control socket is served here too, including operator changes (`xsnoop static|port|
//! flush`): [`ControlPlane::serve`] applies them between two engine steps and returns what the
//! engine wants sent (a flush may send a general query), which the mode carries out like any
//! other output.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tracing::info;
use xsnoop_dataplane::{ForwardingTable, MulticastRule, PortId, PortSet, TableHandle, VlanId};

use crate::ctl::{Command, ControlServer, ExplainQuery, Request, Show};
use crate::engine::model::Time;
use crate::engine::{Engine, EngineConfig, Event, Input, Output, Publisher, TableDelta};
use crate::metrics::{self, MetricsServer};
use crate::punt::deliver;

/// How many recent events `xsnoop events` can show.
pub const RECENT_EVENTS: usize = 1024;

/// Extra counters a mode adds to `xsnoop stats` (run mode: the dataplane's).
pub type ExtraStats = Box<dyn Fn() -> serde_json::Value + Send>;

/// The engine with its clock, control socket, event journal and published table.
pub struct ControlPlane {
    engine: Engine,
    control: Option<ControlServer>,
    metrics: Option<MetricsServer>,
    recent_events: VecDeque<Event>,
    /// Events recorded since start; the newest event's sequence number is this minus one.
    event_seq: u64,
    port_names: Vec<String>,
    table: TableHandle,
    publisher: Publisher,
    epoch: Instant,
    extra_stats: Option<ExtraStats>,
    fdb_source: Option<ExtraStats>,
    streams_source: Option<ExtraStats>,
}

impl ControlPlane {
    /// Starts the engine at time zero with `config` and publishes its first table.
    pub fn new(config: EngineConfig) -> Result<ControlPlane> {
        let port_names = config.ports.iter().map(|p| p.name.clone()).collect();
        let mut engine = Engine::new(config, Duration::ZERO).context("invalid configuration")?;
        // The first table goes out through the publisher too: it takes the engine's start-up
        // log, and the next publication finds its own table in the handle (a foreign one would
        // make the kernel hint "everything" once more).
        let table = TableHandle::default();
        let mut publisher = Publisher::new();
        publisher.publish(&mut engine, &table);
        Ok(ControlPlane {
            engine,
            control: None,
            metrics: None,
            recent_events: VecDeque::with_capacity(RECENT_EVENTS),
            event_seq: 0,
            port_names,
            table,
            publisher,
            epoch: Instant::now(),
            extra_stats: None,
            fdb_source: None,
            streams_source: None,
        })
    }

    /// Serves Prometheus metrics on `addr` from now on (`metrics_listen`).
    pub fn listen_metrics(&mut self, addr: std::net::SocketAddr) -> Result<()> {
        let m = MetricsServer::bind(addr)?;
        info!(addr = %m.local_addr()?, "serving Prometheus metrics at /metrics");
        self.metrics = Some(m);
        Ok(())
    }

    /// Serves show commands on a control socket at `path` from now on.
    pub fn listen(&mut self, path: &Path) -> Result<()> {
        self.control = Some(ControlServer::bind(path)?);
        Ok(())
    }

    /// Adds a `"dataplane"` object from `f` to the answer of `xsnoop stats`.
    pub fn set_extra_stats(&mut self, f: ExtraStats) {
        self.extra_stats = Some(f);
    }

    /// Answers `xsnoop fdb` with `f` (run mode: the workers' MAC tables).
    pub fn set_fdb_source(&mut self, f: ExtraStats) {
        self.fdb_source = Some(f);
    }

    /// Answers `xsnoop streams` with `f` (run mode: the workers' per-(S,G) counters).
    pub fn set_streams_source(&mut self, f: ExtraStats) {
        self.streams_source = Some(f);
    }

    /// The control socket's descriptor, for a caller that polls it with its own descriptors.
    pub fn control_fd(&self) -> Option<RawFd> {
        self.control.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Answers every request waiting on the control socket and every metrics scrape, now.
    /// Operator changes among them are applied (journalled, table published); the returned
    /// output holds the queries they made the engine send, for the mode to transmit.
    pub fn serve(&mut self) -> Option<Output> {
        let mut made: Option<Output> = None;
        if let Some(c) = self.control.take() {
            c.serve(|req| match req {
                Request::Show(what) => self.show(what),
                Request::Change(cmd) => {
                    let out = self.change(&cmd)?;
                    let events: Vec<serde_json::Value> = out
                        .events
                        .iter()
                        .map(|e| self.event_json(None, e))
                        .collect();
                    let m = made.get_or_insert_with(Output::default);
                    m.transmit.extend(out.transmit);
                    m.events.extend(out.events);
                    m.table_changed |= out.table_changed;
                    Ok(serde_json::json!({ "events": events }))
                }
            });
            self.control = Some(c);
        }
        if let Some(m) = &self.metrics {
            m.serve(|| {
                let get = |what| self.show(what).unwrap_or_default();
                metrics::render(
                    &get(Show::Stats),
                    &get(Show::Mdb),
                    &get(Show::Mrouters),
                    &get(Show::Streams),
                )
            });
        }
        made
    }

    /// Applies an operator change now (see [`crate::engine::runtime`]); a refused change
    /// names the bad value and changes nothing.
    pub fn change(&mut self, cmd: &Command) -> Result<Output> {
        let out = self.engine.command(self.now(), cmd)?;
        self.record(&out);
        Ok(out)
    }

    /// An event as the socket shows it: the engine's fields plus its sequence number (when
    /// known) and the port's name.
    fn event_json(&self, seq: Option<u64>, e: &Event) -> serde_json::Value {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            if let Some(seq) = seq {
                obj.insert("seq".into(), seq.into());
            }
            let name = e.port.map(|p| self.port_name(p).to_string());
            obj.insert("port_name".into(), name.into());
        }
        v
    }

    /// The journal with sequence numbers, oldest first.
    fn journal(&self) -> impl Iterator<Item = (u64, &Event)> {
        let first = self.event_seq - self.recent_events.len() as u64;
        (first..).zip(self.recent_events.iter())
    }

    /// Events numbered `after` or later, the number to ask for next, and how many were
    /// already pushed out of the journal. A cursor past the end (a restarted daemon, or
    /// `u64::MAX` to start following now) gets no events and the current end.
    fn events_since(&self, after: u64) -> serde_json::Value {
        let first = self.event_seq - self.recent_events.len() as u64;
        let events: Vec<serde_json::Value> = if after > self.event_seq {
            Vec::new()
        } else {
            self.journal()
                .filter(|(seq, _)| *seq >= after)
                .map(|(seq, e)| self.event_json(Some(seq), e))
                .collect()
        };
        serde_json::json!({
            "events": events,
            "next": self.event_seq,
            "missed": if after > self.event_seq { 0 } else { first.saturating_sub(after) },
        })
    }

    /// `xsnoop ports`: the engine's view of each port plus the dataplane's per-port rx/tx
    /// counters when the mode reports them (run mode's `dataplane.ports`).
    fn ports(&self) -> Result<serde_json::Value> {
        let mut rows = self.engine.port_views();
        if let Some(f) = &self.extra_stats {
            let dp = f();
            let counters = dp.get("ports").and_then(serde_json::Value::as_array);
            for row in &mut rows {
                let c = counters.and_then(|list| {
                    list.iter().find(|c| {
                        c.get("port").and_then(serde_json::Value::as_str) == Some(&row.port)
                    })
                });
                row.rx = c
                    .and_then(|c| c.get("rx"))
                    .and_then(serde_json::Value::as_u64);
                row.tx = c
                    .and_then(|c| c.get("tx"))
                    .and_then(serde_json::Value::as_u64);
            }
        }
        Ok(serde_json::to_value(rows)?)
    }

    /// The answer to one show command, from the engine's state now.
    pub fn show(&self, what: Show) -> Result<serde_json::Value> {
        let now = self.now();
        let e = &self.engine;
        Ok(match what {
            Show::Mdb => serde_json::to_value(e.mdb(now))?,
            Show::Mrouters => serde_json::to_value(e.mrouter_ports(now))?,
            Show::Querier => serde_json::to_value(e.querier_status(now))?,
            Show::Stats => {
                let mut v = serde_json::to_value(e.stats())?;
                // The engine counts per port id; operators know ports by name.
                for key in ["received_by_port", "sent_by_port", "malformed_by_port"] {
                    let Some(by_port) = v.get_mut(key).and_then(serde_json::Value::as_object_mut)
                    else {
                        continue;
                    };
                    let named: serde_json::Map<String, serde_json::Value> =
                        std::mem::take(by_port)
                            .into_iter()
                            .map(|(id, c)| {
                                let name = id
                                    .parse::<PortId>()
                                    .map_or(id.clone(), |p| self.port_name(p).to_string());
                                (name, c)
                            })
                            .collect();
                    *by_port = named;
                }
                if let (Some(f), Some(obj)) = (&self.extra_stats, v.as_object_mut()) {
                    obj.insert("dataplane".into(), f());
                }
                v
            }
            Show::Events => serde_json::Value::Array(
                self.journal()
                    .map(|(seq, e)| self.event_json(Some(seq), e))
                    .collect(),
            ),
            Show::EventsSince(after) => self.events_since(after),
            Show::Ports => self.ports()?,
            Show::Vlans => serde_json::to_value(e.vlan_views())?,
            Show::Explain(q) => self.explain(&q)?,
            Show::Streams => match &self.streams_source {
                Some(f) => f(),
                None => anyhow::bail!(
                    "this daemon forwards no multicast: xsnoop snoop only snoops IGMP; xsnoop run counts streams"
                ),
            },
            Show::Fdb => match &self.fdb_source {
                Some(f) => f(),
                None => anyhow::bail!(
                    "this daemon keeps no MAC table: xsnoop snoop only snoops IGMP; xsnoop run forwards and learns"
                ),
            },
        })
    }

    /// Where a multicast data frame would go and why: the same decision the dataplane makes
    /// (`ForwardingTable::multicast_egress`), with the rule in words and its RFC section.
    fn explain(&self, q: &ExplainQuery) -> Result<serde_json::Value> {
        let e = &self.engine;
        let names: Vec<&str> = e.config().ports.iter().map(|p| p.name.as_str()).collect();
        let port = names
            .iter()
            .position(|n| *n == q.port)
            .and_then(|i| PortId::try_from(i).ok())
            .with_context(|| format!("no port named {:?}; ports: {}", q.port, names.join(", ")))?;
        let table = e.table();
        let (egress, rule) = table.multicast_egress(q.vlan, port, q.source, q.group);
        let list = |set: PortSet| -> Vec<&str> {
            set.iter()
                .filter_map(|p| names.get(usize::from(p)).copied())
                .collect()
        };
        let vlan = table.vlans.get(&q.vlan);
        let members = vlan
            .and_then(|v| v.groups.get(&q.group))
            .map(|g| g.members_for(q.source))
            .unwrap_or_default()
            .intersection(egress);
        let mrouters = vlan
            .map(|v| v.mrouters)
            .unwrap_or_default()
            .intersection(egress);
        let (name, why) = match rule {
            MulticastRule::UnknownVlan => ("unknown_vlan", "the VLAN is not configured on this switch: dropped"),
            MulticastRule::SnoopingDisabled => ("snooping_disabled", "snooping is off in this VLAN: flooded to every port of the VLAN"),
            MulticastRule::LinkLocal => ("link_local", "224.0.0.0/24 is never snooped: flooded to every port of the VLAN (RFC 4541 §2.1.2(2))"),
            MulticastRule::Registered => ("registered", "a registered group: the ports whose hosts want this source, plus multicast-router ports (RFC 4541 §2.1.2(1), RFC 3376 §6.3)"),
            MulticastRule::OverflowFlood => ("overflow_flood", "the group overflowed a table limit under table_full = \"flood\": flooded to the VLAN"),
            MulticastRule::Unregistered => ("unregistered", "nobody joined the group: multicast-router ports and flood_unregistered ports only (RFC 4541 §2.1.2(3))"),
        };
        Ok(serde_json::json!({
            "egress": list(egress),
            "rule": name,
            "why": why,
            "members": list(members),
            "mrouters": list(mrouters),
            "note": "never back out of the ingress port; ports whose link is down are skipped by the dataplane",
        }))
    }

    /// Engine time now.
    pub fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    /// The engine, for show commands.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The published forwarding table.
    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// Brings a consumer that keeps its own copy of the published table (the kernel fast path)
    /// up to date: `sync` gets the published table and every change published since its last
    /// success (everything at start and after a reconfiguration) as a hint, and says whether it
    /// succeeded. Only then are those changes forgotten: after a failure, and across any number
    /// of publications before the next call, none is lost.
    pub fn sync_published(
        &mut self,
        sync: impl FnOnce(&ForwardingTable, &TableDelta) -> bool,
    ) -> bool {
        let table = self.table.load();
        let ok = sync(&table, self.publisher.unsynced());
        if ok {
            self.publisher.synced();
        }
        ok
    }

    /// Name of port `id`.
    pub fn port_name(&self, id: PortId) -> &str {
        self.port_names
            .get(usize::from(id))
            .map_or("?", String::as_str)
    }

    /// How long a caller may sleep before the engine's next deadline, at most `max_wait`.
    pub fn wait_budget(&self, max_wait: Duration) -> Duration {
        let now = self.now();
        match self.engine.next_deadline() {
            Some(d) if d <= now => Duration::ZERO,
            Some(d) => (d - now).min(max_wait),
            None => max_wait,
        }
    }

    /// Feeds `input` to the engine now; the output's events and table are already handled.
    pub fn handle(&mut self, input: Input<'_>) -> Output {
        let out = self.engine.handle(self.now(), input);
        self.record(&out);
        out
    }

    /// Replaces the configuration (SIGHUP): learned membership, router ports and the querier
    /// stay where the new configuration still allows them. The port list must not change (its
    /// interfaces are attached to the dataplane); an invalid or port-changing configuration is
    /// refused with the reason and nothing changes.
    pub fn reconfigure(&mut self, config: EngineConfig) -> Result<Output> {
        let names: Vec<String> = config.ports.iter().map(|p| p.name.clone()).collect();
        if names != self.port_names {
            anyhow::bail!(
                "the port list changed ({} -> {}); restart xsnoop to add, remove or reorder ports",
                self.port_names.join(","),
                names.join(",")
            );
        }
        let out = self
            .engine
            .reconfigure(self.now(), config)
            .context("the new configuration is invalid")?;
        self.record(&out);
        // A reconfiguration may change anything (and the port map with it): the kernel path
        // compares every group once rather than trust the logged entries.
        self.publisher.resync_all();
        Ok(out)
    }

    /// Hands a frame received on (`port`, `vlan`) to the engine (see [`crate::punt::deliver`]);
    /// `None` when the frame is not for the engine.
    pub fn deliver(&mut self, port: PortId, vlan: VlanId, frame: &[u8]) -> Option<Output> {
        let now = self.now();
        let out = deliver(&mut self.engine, now, port, vlan, frame)?;
        self.record(&out);
        Some(out)
    }

    /// Runs the engine's timers if one is due.
    pub fn tick(&mut self) -> Option<Output> {
        if self.engine.next_deadline().is_some_and(|d| d <= self.now()) {
            Some(self.handle(Input::Tick))
        } else {
            None
        }
    }

    /// Logs an output's events, keeps them for `xsnoop events`, publishes a changed table.
    fn record(&mut self, out: &Output) {
        for e in &out.events {
            let port = e.port.map(|p| self.port_name(p).to_string());
            info!(vlan = e.vlan, port = ?port, group = ?e.group, kind = ?e.kind, reason = e.reason, "event");
            if self.recent_events.len() == RECENT_EVENTS {
                self.recent_events.pop_front();
            }
            self.recent_events.push_back(e.clone());
            self.event_seq += 1;
        }
        if out.table_changed {
            self.publisher.publish(&mut self.engine, &self.table);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use xsnoop_dataplane::wire::{to_vec, MacAddr, ReportV2Builder, UdpDataBuilder};

    use super::*;
    use crate::engine::{PortConfig, VlanConfig};

    const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);

    fn plane() -> ControlPlane {
        ControlPlane::new(EngineConfig {
            ports: vec![PortConfig::access("a", 1), PortConfig::access("b", 1)],
            vlans: vec![VlanConfig::new(1)],
            ..EngineConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_delivered_report_is_journaled_published_and_shown() {
        let mut p = plane();
        assert!(p.table().load().vlans[&1].groups.is_empty());
        let report = to_vec(&ReportV2Builder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            group: GROUP,
            vlan: None,
        })
        .unwrap();
        let out = p
            .deliver(1, 1, &report)
            .expect("a report is for the engine");
        assert!(out.table_changed);
        // Published for the dataplane without the caller doing anything.
        assert!(p.table().load().vlans[&1].groups.contains_key(&GROUP));
        let events = p.show(Show::Events).unwrap();
        assert_eq!(events.as_array().unwrap().len(), out.events.len());
        assert!(!out.events.is_empty());
        let mdb = p.show(Show::Mdb).unwrap();
        assert_eq!(mdb[0]["port"], "b");
        assert_eq!(p.port_name(1), "b");
        assert_eq!(p.port_name(7), "?");
        // Counted in total, for its port (by name) and for its VLAN.
        let stats = p.show(Show::Stats).unwrap();
        assert_eq!(stats["received"]["reports_v2"], 1);
        assert_eq!(stats["received_by_port"]["b"]["reports_v2"], 1, "{stats}");
        assert!(stats["received_by_port"].get("a").is_none(), "{stats}");
        assert_eq!(stats["received_by_vlan"]["1"]["reports_v2"], 1, "{stats}");
        assert!(stats["sent_by_vlan"].is_object(), "{stats}");
        // Multicast data is not for the engine; a truncated frame is counted as malformed.
        let data = to_vec(&UdpDataBuilder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            group: GROUP,
            src_port: 1,
            dst_port: 2,
            ttl: 1,
            payload: b"data",
            vlan: None,
        })
        .unwrap();
        assert!(p.deliver(0, 1, &data).is_none());
        assert!(p.engine().stats().malformed.is_empty());
        assert!(p.deliver(0, 1, &report[..20]).is_some());
        assert_eq!(p.engine().stats().malformed.values().sum::<u64>(), 1);
    }

    fn static_add(port: &str) -> Command {
        Command::StaticAdd(crate::ctl::StaticAdd {
            vlan: 1,
            group: GROUP,
            sources: vec![],
            ports: vec![port.to_string()],
        })
    }

    #[test]
    fn a_change_is_published_journalled_and_followable_by_sequence_number() {
        let mut p = plane();
        let start = p.show(Show::EventsSince(u64::MAX)).unwrap();
        assert_eq!(start["events"], serde_json::json!([]));
        let cursor = start["next"].as_u64().unwrap();
        let out = p.change(&static_add("b")).unwrap();
        assert!(out.table_changed);
        assert_eq!(
            p.table().load().vlans[&1].groups[&GROUP].any_source,
            PortSet::single(1)
        );
        let v = p.show(Show::EventsSince(cursor)).unwrap();
        let evs = v["events"].as_array().unwrap();
        assert_eq!(evs.len(), 1, "{v}");
        assert_eq!(evs[0]["seq"], cursor);
        assert_eq!(evs[0]["port_name"], "b");
        assert_eq!(evs[0]["kind"]["type"], "static_added");
        assert_eq!(evs[0]["reason"], "static group added by operator");
        let next = v["next"].as_u64().unwrap();
        assert_eq!(next, cursor + 1);
        assert_eq!(
            p.show(Show::EventsSince(next)).unwrap()["events"],
            serde_json::json!([])
        );
        // A refused change names the bad value, journals nothing and publishes nothing.
        let e = p.change(&static_add("zz")).unwrap_err();
        assert!(format!("{e:#}").contains("\"zz\""), "{e:#}");
        assert_eq!(p.show(Show::EventsSince(next)).unwrap()["next"], next);
        // The whole journal carries the same numbers.
        let all = p.show(Show::Events).unwrap();
        assert_eq!(all.as_array().unwrap().last().unwrap()["seq"], cursor);
    }

    #[test]
    fn events_pushed_out_of_the_journal_are_reported_as_missed() {
        let mut p = plane();
        for _ in 0..RECENT_EVENTS + 10 {
            p.handle(Input::PortDown(0));
            p.handle(Input::PortUp(0));
        }
        let v = p.show(Show::EventsSince(0)).unwrap();
        let first = v["events"][0]["seq"].as_u64().unwrap();
        assert!(first > 0);
        assert_eq!(v["missed"], first);
        assert_eq!(v["events"].as_array().unwrap().len(), RECENT_EVENTS);
    }

    #[test]
    fn ports_and_vlans_views_carry_the_dataplane_counters_when_there_are_some() {
        let mut p = plane();
        let v = p.show(Show::Ports).unwrap();
        assert_eq!(v[0]["port"], "a");
        assert_eq!(v[0]["rx"], serde_json::Value::Null);
        p.set_extra_stats(Box::new(
            || serde_json::json!({"ports": [{"port": "b", "rx": 7, "tx": 9}]}),
        ));
        let v = p.show(Show::Ports).unwrap();
        assert_eq!(
            (v[1]["rx"].as_u64(), v[1]["tx"].as_u64()),
            (Some(7), Some(9))
        );
        assert_eq!(v[0]["rx"], serde_json::Value::Null);
        let v = p.show(Show::Vlans).unwrap();
        assert_eq!(v[0]["vlan"], 1);
        assert_eq!(v[0]["ports"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn changes_over_the_socket_answer_with_their_events_or_the_reason_for_refusal() {
        let dir = std::env::temp_dir().join(format!("xsnoop-plane-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let mut p = plane();
        p.listen(&path).unwrap();
        for (cmd, ok) in [(static_add("a"), true), (static_add("nope"), false)] {
            let p2 = path.clone();
            let client = std::thread::spawn(move || crate::ctl::change(&p2, cmd));
            let mut made = None;
            for _ in 0..200 {
                if client.is_finished() {
                    break;
                }
                if let Some(o) = p.serve() {
                    made = Some(o);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let answer = client.join().unwrap();
            if ok {
                let v = answer.unwrap();
                assert_eq!(v["events"][0]["port_name"], "a", "{v}");
                assert!(made.is_some_and(|o| o.table_changed));
            } else {
                let e = format!("{:#}", answer.unwrap_err());
                assert!(
                    e.contains("the daemon refused") && e.contains("\"nope\""),
                    "{e}"
                );
                assert!(made.is_none());
            }
        }
        assert_eq!(
            p.table().load().vlans[&1].groups[&GROUP].any_source,
            PortSet::single(0)
        );
        drop(p);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn join(p: &mut ControlPlane, port: PortId, group: Ipv4Addr) {
        let report = to_vec(&ReportV2Builder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            group,
            vlan: None,
        })
        .unwrap();
        assert!(p.deliver(port, 1, &report).unwrap().table_changed);
    }

    #[test]
    fn the_kernel_hint_keeps_every_publication_until_a_sync_succeeds() {
        let mut p = plane();
        // At start the consumer knows nothing: everything.
        assert!(p.sync_published(|_, hint| {
            assert!(hint.all, "{hint:?}");
            true
        }));
        assert!(p.sync_published(|_, hint| hint.is_empty()));
        // Two publications before one sync: both groups are in the hint, beside their table.
        let g2 = Ipv4Addr::new(239, 1, 2, 4);
        join(&mut p, 1, GROUP);
        join(&mut p, 0, g2);
        let both: std::collections::BTreeSet<(VlanId, Ipv4Addr)> =
            [(1, GROUP), (1, g2)].into_iter().collect();
        let failed = p.sync_published(|table, hint| {
            assert!(!hint.all, "{hint:?}");
            assert_eq!(hint.groups, both);
            assert!(table.vlans[&1].groups.contains_key(&g2));
            false
        });
        assert!(!failed);
        // A failed sync forgets nothing; a third publication joins them.
        p.change(&static_add("a")).unwrap();
        let mut seen = None;
        assert!(p.sync_published(|_, hint| {
            seen = Some(hint.clone());
            true
        }));
        let seen = seen.unwrap();
        assert_eq!(seen.groups, both, "{seen:?}");
        // A succeeded sync clears it; a reconfiguration says everything again.
        assert!(p.sync_published(|_, hint| hint.is_empty()));
        let cfg = p.engine().config().clone();
        p.reconfigure(cfg).unwrap();
        assert!(p.sync_published(|_, hint| hint.all));
    }

    /// Whatever the engine goes through, the kernel hint names every entry that differs from
    /// the table of the last sync that succeeded (checked with `diff_into`, the exact
    /// difference), across failed and skipped syncs: a missed one would leave a stale key in
    /// the kernel.
    #[test]
    fn the_kernel_hint_covers_every_difference_since_the_last_successful_sync() {
        use crate::ctl::{Flush, PortSettings, StaticDel};
        use crate::engine::publish::diff_into;
        use crate::engine::MrouterMode;
        use xsnoop_dataplane::wire::LeaveBuilder;

        let names = ["a", "b", "c"];
        let config = EngineConfig {
            ports: names.iter().map(|n| PortConfig::access(n, 1)).collect(),
            vlans: vec![VlanConfig::new(1)],
            ..EngineConfig::default()
        };
        let mut p = ControlPlane::new(config.clone()).unwrap();
        let mut synced: Option<ForwardingTable> = None;
        let (mut hinted_syncs, mut down) = (0, PortSet::EMPTY);
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for step in 0..400 {
            let port = u16::try_from(next(3)).unwrap();
            let name = names[usize::from(port)].to_string();
            let group = Ipv4Addr::new(239, 9, 0, u8::try_from(next(6)).unwrap());
            let mac = MacAddr([2, 0, 0, 0, 0, u8::try_from(port).unwrap() + 1]);
            let src_ip = Ipv4Addr::new(10, 0, 0, u8::try_from(port).unwrap() + 1);
            match next(9) {
                0..=2 => {
                    let f = to_vec(&ReportV2Builder {
                        src_mac: mac,
                        src_ip,
                        group,
                        vlan: None,
                    });
                    p.deliver(port, 1, &f.unwrap());
                }
                3 => {
                    let f = to_vec(&LeaveBuilder {
                        src_mac: mac,
                        src_ip,
                        group,
                        vlan: None,
                    });
                    p.deliver(port, 1, &f.unwrap());
                }
                4 => {
                    let add = crate::ctl::StaticAdd {
                        vlan: 1,
                        group,
                        sources: vec![],
                        ports: vec![name],
                    };
                    let _ = p.change(&Command::StaticAdd(add)); // refused when already there
                }
                5 => {
                    let del = StaticDel {
                        vlan: 1,
                        group,
                        ports: vec![name],
                    };
                    let _ = p.change(&Command::StaticDel(del));
                }
                6 => {
                    let input = if down.contains(port) {
                        down.remove(port);
                        Input::PortUp(port)
                    } else {
                        down.insert(port);
                        Input::PortDown(port)
                    };
                    p.handle(input);
                }
                7 => {
                    let cmd = if next(2) == 0 {
                        Command::Flush(Flush {
                            port: Some(name),
                            vlan: None,
                        })
                    } else {
                        let mode = if next(2) == 0 {
                            MrouterMode::Always
                        } else {
                            MrouterMode::Never
                        };
                        Command::PortSet(PortSettings {
                            port: name,
                            fast_leave: Some(next(2) == 0),
                            mrouter: Some(mode),
                        })
                    };
                    p.change(&cmd).unwrap();
                }
                _ => {
                    p.reconfigure(config.clone()).unwrap();
                }
            }
            let outcome = next(3);
            if outcome == 0 {
                continue; // no sync this turn: the next one must see both turns
            }
            p.sync_published(|table, hint| {
                match &synced {
                    None => assert!(hint.all, "step {step}: the first sync knows nothing"),
                    Some(old) => {
                        let mut exact = TableDelta::default();
                        diff_into(old, table, &mut exact);
                        if !hint.all {
                            assert!(!exact.all, "step {step}: {exact:?} vs {hint:?}");
                            assert!(
                                exact.groups.is_subset(&hint.groups),
                                "step {step}: {exact:?} vs {hint:?}"
                            );
                            assert!(
                                exact.vlans.is_subset(&hint.vlans),
                                "step {step}: {exact:?} vs {hint:?}"
                            );
                            hinted_syncs += 1;
                        }
                    }
                }
                let ok = outcome == 1;
                if ok {
                    synced = Some(table.clone());
                }
                ok
            });
        }
        assert!(
            hinted_syncs > 50,
            "the hint was rarely anything but everything: {hinted_syncs}"
        );
    }

    #[test]
    fn stats_carry_the_modes_extra_counters_and_the_journal_is_bounded() {
        let mut p = plane();
        assert!(p.show(Show::Stats).unwrap().get("dataplane").is_none());
        p.set_extra_stats(Box::new(|| serde_json::json!({"rx": 42})));
        assert_eq!(p.show(Show::Stats).unwrap()["dataplane"]["rx"], 42);
        for _ in 0..RECENT_EVENTS + 10 {
            p.handle(Input::PortDown(0));
            p.handle(Input::PortUp(0));
        }
        let n = p.show(Show::Events).unwrap().as_array().unwrap().len();
        assert!(n <= RECENT_EVENTS && n > 0, "{n}");
        assert!(p.wait_budget(Duration::from_millis(5)) <= Duration::from_millis(5));
    }
}
