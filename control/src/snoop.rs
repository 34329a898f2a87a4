//! Snoop mode: the engine on real interfaces, without forwarding.
//!
//! Each port is an `AF_PACKET` socket that receives only IGMP and PIM (filtered in the kernel).
//! Frames are parsed by the dataplane's codecs, punted to the engine, and the queries the engine
//! wants are built and sent out of the right ports. The forwarding table is computed and
//! published exactly as it will be for the AF_XDP dataplane; nothing forwards it yet. This is how
//! the snooping brain meets real hosts before the switch fabric exists, and it stays useful as a
//! passive monitor/querier on a segment another device switches.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tracing::{info, warn};
use xsnoop_dataplane::packet_socket::{CaptureFilter, PacketSocket};
use xsnoop_dataplane::wire::ethernet::ethertype;
use xsnoop_dataplane::wire::{EthernetFrame, MacAddr};
use xsnoop_dataplane::{PortId, TableHandle, VlanId};

use crate::ctl::{ControlServer, Show};
use crate::engine::config::PortVlans;
use crate::engine::model::Time;
use crate::engine::{Engine, EngineConfig, Event, Input, Output};
use crate::inject::{build_query, MAX_QUERY_FRAME};
use crate::punt::deliver;

/// How many recent events `xsnoop events` can show.
const RECENT_EVENTS: usize = 1024;

/// Whether `frame` carries an 802.1Q or 802.1ad tag (its first EtherType is a TPID).
fn is_tagged(frame: &[u8]) -> bool {
    EthernetFrame::new_checked(frame)
        .is_ok_and(|e| matches!(e.ethertype(), ethertype::VLAN | ethertype::QINQ))
}

/// One switch port in snoop mode.
struct SnoopPort {
    name: String,
    socket: PacketSocket,
    mac: MacAddr,
    access_vlan: Option<VlanId>,
}

/// The engine driven by real interfaces and a real clock.
pub struct SnoopSwitch {
    engine: Engine,
    control: Option<ControlServer>,
    recent_events: VecDeque<Event>,
    ports: Vec<SnoopPort>,
    table: TableHandle,
    epoch: Instant,
    rx_buf: Vec<u8>,
}

impl SnoopSwitch {
    /// Opens every configured port (interface names in the current network namespace) and
    /// starts the engine at time zero.
    pub fn open(config: EngineConfig) -> Result<SnoopSwitch> {
        let mut ports = Vec::with_capacity(config.ports.len());
        for p in &config.ports {
            let socket = PacketSocket::open(&p.name, CaptureFilter::IgmpAndPim)
                .with_context(|| format!("opening port {} (AF_PACKET needs root)", p.name))?;
            let access_vlan = match p.vlans {
                PortVlans::Access(v) => Some(v),
                PortVlans::Trunk(_) => None,
            };
            if access_vlan.is_none() {
                bail!(
                    "port {}: snoop mode supports access ports only (trunk ports need the AF_XDP dataplane)",
                    p.name
                );
            }
            ports.push(SnoopPort {
                name: p.name.clone(),
                mac: MacAddr(
                    socket
                        .hardware_address()
                        .with_context(|| format!("reading the MAC of {}", p.name))?,
                ),
                socket,
                access_vlan,
            });
        }
        let engine = Engine::new(config, Duration::ZERO).context("invalid configuration")?;
        let table = TableHandle::new(engine.table().clone());
        Ok(SnoopSwitch {
            engine,
            control: None,
            recent_events: VecDeque::with_capacity(RECENT_EVENTS),
            ports,
            table,
            epoch: Instant::now(),
            rx_buf: vec![0u8; 65_536],
        })
    }

    /// Serves show commands on a control socket at `path` from now on.
    pub fn listen(&mut self, path: &Path) -> Result<()> {
        self.control = Some(ControlServer::bind(path)?);
        Ok(())
    }

    /// The answer to one show command, from the engine's state now.
    pub fn show(&self, what: Show) -> Result<serde_json::Value> {
        let now = self.now();
        let e = &self.engine;
        Ok(match what {
            Show::Mdb => serde_json::to_value(e.mdb(now))?,
            Show::Mrouters => serde_json::to_value(e.mrouter_ports(now))?,
            Show::Querier => serde_json::to_value(e.querier_status(now))?,
            Show::Stats => serde_json::to_value(e.stats())?,
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
        self.ports
            .get(usize::from(id))
            .map_or("?", |p| p.name.as_str())
    }

    /// Waits at most `max_wait` for frames or the engine's next deadline, handles everything that
    /// is ready, and returns the engine's outputs (already acted on) for display.
    pub fn step(&mut self, max_wait: Duration) -> Result<Vec<Output>> {
        let mut outputs = Vec::new();
        let now = self.now();
        let wait = match self.engine.next_deadline() {
            Some(d) if d <= now => Duration::ZERO,
            Some(d) => (d - now).min(max_wait),
            None => max_wait,
        };
        let mut fds: Vec<libc::pollfd> = self
            .ports
            .iter()
            .map(|p| p.socket.as_raw_fd())
            .chain(self.control.as_ref().map(AsRawFd::as_raw_fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout_ms =
            i32::try_from(wait.as_millis().max(u128::from(!wait.is_zero()))).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).context("poll");
            }
        }
        for (i, fd) in fds.iter().enumerate().take(self.ports.len()) {
            if fd.revents & libc::POLLIN != 0 {
                self.drain_port(i, &mut outputs)?;
            }
        }
        if let Some(c) = &self.control {
            c.serve(|what| self.show(what));
        }
        if self.engine.next_deadline().is_some_and(|d| d <= self.now()) {
            let out = self.engine.handle(self.now(), Input::Tick);
            self.act(&out);
            outputs.push(out);
        }
        Ok(outputs)
    }

    fn drain_port(&mut self, index: usize, outputs: &mut Vec<Output>) -> Result<()> {
        let Ok(port) = PortId::try_from(index) else {
            return Ok(());
        };
        // Bounded so one flooding port cannot starve the others or the timers.
        for _ in 0..256 {
            let Some(p) = self.ports.get(index) else {
                return Ok(());
            };
            let vlan = p.access_vlan.unwrap_or(1);
            let Some(rx) = p.socket.recv(&mut self.rx_buf)? else {
                return Ok(());
            };
            let now = self.epoch.elapsed();
            // Snoop mode has access ports only: a tagged frame cannot be placed in a VLAN.
            let out = if is_tagged(rx.frame) {
                self.engine.handle(
                    now,
                    Input::Malformed {
                        port,
                        vlan,
                        reason: "tagged_frame_on_access_port",
                    },
                )
            } else {
                match deliver(&mut self.engine, now, port, vlan, rx.frame) {
                    Some(out) => out,
                    None => continue,
                }
            };
            self.act(&out);
            outputs.push(out);
        }
        Ok(())
    }

    /// Carries out an engine output: sends its queries, publishes the table, logs its events.
    fn act(&mut self, out: &Output) {
        let mut buf = [0u8; MAX_QUERY_FRAME];
        for t in &out.transmit {
            for port in t.ports.iter() {
                let Some(p) = self.ports.get(usize::from(port)) else {
                    continue;
                };
                match build_query(&t.query, p.mac, None, &mut buf) {
                    Ok(n) => {
                        if let Err(e) = p.socket.send(buf.get(..n).unwrap_or_default()) {
                            warn!(port = %p.name, error = %e, "sending query failed");
                        }
                    }
                    Err(e) => warn!(port = %p.name, error = %e, "building query failed"),
                }
            }
        }
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
