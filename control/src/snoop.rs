//! Snoop mode: the engine on real interfaces, without forwarding.
//!
//! Each port is an `AF_PACKET` socket that receives only IGMP and PIM (filtered in the kernel).
//! Frames are parsed by the dataplane's codecs, punted to the engine, and the queries the engine
//! wants are built and sent out of the right ports. The forwarding table is computed and
//! published exactly as it will be for the AF_XDP dataplane; nothing forwards it yet. This is how
//! the snooping brain meets real hosts before the switch fabric exists, and it stays useful as a
//! passive monitor/querier on a segment another device switches.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tracing::warn;
use xsnoop_dataplane::packet_socket::{CaptureFilter, PacketSocket};
use xsnoop_dataplane::wire::ethernet::ethertype;
use xsnoop_dataplane::wire::{EthernetFrame, MacAddr};
use xsnoop_dataplane::{PortId, TableHandle, VlanId};

use crate::ctl::Show;
use crate::engine::config::PortVlans;
use crate::engine::model::Time;
use crate::engine::{Engine, EngineConfig, Input, Output};
use crate::inject::{build_query, MAX_QUERY_FRAME};
use crate::notify::Notifier;
use crate::plane::ControlPlane;

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
    plane: ControlPlane,
    ports: Vec<SnoopPort>,
    rx_buf: Vec<u8>,
    /// systemd's `$NOTIFY_SOCKET` (a no-op outside systemd).
    notify: Notifier,
    /// `READY=1` was sent: the first [`SnoopSwitch::step`] sends it, once the caller has set up
    /// every listener.
    ready: bool,
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
        Ok(SnoopSwitch {
            plane: ControlPlane::new(config)?,
            ports,
            rx_buf: vec![0u8; 65_536],
            notify: Notifier::from_env(),
            ready: false,
        })
    }

    /// Serves Prometheus metrics on `addr` from now on.
    pub fn listen_metrics(&mut self, addr: std::net::SocketAddr) -> Result<()> {
        self.plane.listen_metrics(addr)
    }

    /// Serves show commands on a control socket at `path` from now on.
    pub fn listen(&mut self, path: &Path) -> Result<()> {
        self.plane.listen(path)
    }

    /// Replaces the configuration (SIGHUP), keeping learned state; see
    /// [`crate::plane::ControlPlane::reconfigure`].
    /// systemd is told `RELOADING=1` before and `READY=1` after, whatever the outcome.
    pub fn reconfigure(&mut self, config: EngineConfig) -> Result<()> {
        self.notify.reloading();
        let result = self.plane.reconfigure(config);
        self.notify.ready(&self.status());
        // A querier turned on by the new file starts querying at once.
        self.send_queries(&result?);
        Ok(())
    }

    /// The one-line status systemd shows for snoop mode.
    fn status(&self) -> String {
        format!("snooping on {} port(s)", self.ports.len())
    }

    /// The answer to one show command, from the engine's state now.
    pub fn show(&self, what: Show) -> Result<serde_json::Value> {
        self.plane.show(what)
    }

    /// Engine time now.
    pub fn now(&self) -> Time {
        self.plane.now()
    }

    /// The engine, for show commands.
    pub fn engine(&self) -> &Engine {
        self.plane.engine()
    }

    /// The published forwarding table.
    pub fn table(&self) -> &TableHandle {
        self.plane.table()
    }

    /// Name of port `id`.
    pub fn port_name(&self, id: PortId) -> &str {
        self.plane.port_name(id)
    }

    /// Waits at most `max_wait` for frames or the engine's next deadline, handles everything that
    /// is ready, and returns the engine's outputs (already acted on) for display.
    /// The first call tells systemd the switch is ready (`Type=notify`).
    pub fn step(&mut self, max_wait: Duration) -> Result<Vec<Output>> {
        if !self.ready {
            self.ready = true;
            self.notify.ready(&self.status());
        }
        let mut outputs = Vec::new();
        let wait = self.plane.wait_budget(max_wait);
        let mut fds: Vec<libc::pollfd> = self
            .ports
            .iter()
            .map(|p| p.socket.as_raw_fd())
            .chain(self.plane.control_fd())
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
        if let Some(out) = self.plane.serve() {
            self.send_queries(&out);
            outputs.push(out);
        }
        if let Some(out) = self.plane.tick() {
            self.send_queries(&out);
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
            // Snoop mode has access ports only: a tagged frame cannot be placed in a VLAN.
            let out = if is_tagged(rx.frame) {
                self.plane.handle(Input::Malformed {
                    port,
                    vlan,
                    reason: "tagged_frame_on_access_port",
                })
            } else {
                match self.plane.deliver(port, vlan, rx.frame) {
                    Some(out) => out,
                    None => continue,
                }
            };
            self.send_queries(&out);
            outputs.push(out);
        }
        Ok(())
    }

    /// Sends an output's queries out of their ports (snoop mode forwards nothing else: the
    /// segment's own switch does).
    fn send_queries(&self, out: &Output) {
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
    }
}

impl Drop for SnoopSwitch {
    /// `STOPPING=1` for systemd: snooping ends (after a signal, or on an error).
    fn drop(&mut self) {
        if self.ready {
            self.notify.stopping();
        }
    }
}
