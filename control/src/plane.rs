//! The switch CPU's core, shared by snoop mode and run mode.
//!
//! Both modes own one [`ControlPlane`]: the engine on a real clock, the control socket that show
//! commands (`xsnoop mdb` ...) talk to, the journal of recent events, and the published
//! forwarding table. What differs between the modes is only how frames reach the engine and how
//! its frames leave (AF_PACKET sockets in snoop mode, the AF_XDP worker in run mode), so each
//! mode feeds inputs here and then carries out the frame-sending part of the [`Output`] itself.
//! Logging the events and publishing the table happen here, once, for both.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tracing::info;
use xsnoop_dataplane::{PortId, TableHandle, VlanId};

use crate::ctl::{ControlServer, Show};
use crate::engine::model::Time;
use crate::engine::{Engine, EngineConfig, Event, Input, Output};
use crate::punt::deliver;

/// How many recent events `xsnoop events` can show.
pub const RECENT_EVENTS: usize = 1024;

/// Extra counters a mode adds to `xsnoop stats` (run mode: the dataplane's).
pub type ExtraStats = Box<dyn Fn() -> serde_json::Value + Send>;

/// The engine with its clock, control socket, event journal and published table.
pub struct ControlPlane {
    engine: Engine,
    control: Option<ControlServer>,
    recent_events: VecDeque<Event>,
    port_names: Vec<String>,
    table: TableHandle,
    epoch: Instant,
    extra_stats: Option<ExtraStats>,
}

impl ControlPlane {
    /// Starts the engine at time zero with `config` and publishes its first table.
    pub fn new(config: EngineConfig) -> Result<ControlPlane> {
        let port_names = config.ports.iter().map(|p| p.name.clone()).collect();
        let engine = Engine::new(config, Duration::ZERO).context("invalid configuration")?;
        let table = TableHandle::new(engine.table().clone());
        Ok(ControlPlane {
            engine,
            control: None,
            recent_events: VecDeque::with_capacity(RECENT_EVENTS),
            port_names,
            table,
            epoch: Instant::now(),
            extra_stats: None,
        })
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

    /// The control socket's descriptor, for a caller that polls it with its own descriptors.
    pub fn control_fd(&self) -> Option<RawFd> {
        self.control.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Answers every show command waiting on the control socket now.
    pub fn serve(&self) {
        if let Some(c) = &self.control {
            c.serve(|what| self.show(what));
        }
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
                if let (Some(f), Some(obj)) = (&self.extra_stats, v.as_object_mut()) {
                    obj.insert("dataplane".into(), f());
                }
                v
            }
            Show::Events => serde_json::to_value(&self.recent_events)?,
        })
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
        }
        if out.table_changed {
            self.table.publish(self.engine.table().clone());
        }
    }
}
