//! Run mode: `xsnoop run` turns Linux interfaces into an IGMP-snooping switch.
//!
//! The ASIC/CPU split of a hardware switch is kept visible:
//! - the **ASIC** is the [`worker`] threads (`workers`, default 1): XDP classifier → AF_XDP
//!   sockets, one per (port, receive queue), on one UMEM per worker → the pure forwarding
//!   pipeline (`xsnoop_dataplane::forward`) → TX, run to completion;
//! - the **CPU** is the thread calling [`run`]: the snooping engine with its timers and the
//!   control socket (the [`crate::plane::ControlPlane`] snoop mode uses too), link polling, and
//!   the slow path: punted IGMP/PIM frames come up the punt channel, the frames the engine
//!   forwards or originates go down the transmit channel ([`msg`]).
//!
//! They share only the published forwarding table and port map (lock-free snapshots), the
//! link-down set and counters ([`msg::Shared`]), and the two bounded channels.

pub mod doorbell;
pub mod iface;
pub mod kernel_fdb;
pub mod kernel_path;
pub mod link;
pub mod msg;
pub mod placement;
pub mod privilege;
pub mod worker;
pub mod xdp_features;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use tracing::{debug, info, warn};
use xsnoop_dataplane::afxdp::{AfXdp, AfXdpConfig, BoundMode, PortQueues};
use xsnoop_dataplane::forward::FdbNotice;
use xsnoop_dataplane::forward::{PortMap, PortMapHandle, PortVlanConfig};
use xsnoop_dataplane::wire::MacAddr;
use xsnoop_dataplane::xdp::abi::MAX_QUEUES;
use xsnoop_dataplane::xdp::{AttachMode, Classifier};
use xsnoop_dataplane::{PortId, PortSet};

use crate::config_file::SwitchConfig;
use crate::engine::{Input, Output, PortVlans};
use crate::inject::{build_query, MAX_QUERY_FRAME};
use crate::plane::ControlPlane;
use doorbell::Doorbell;
use kernel_path::{DataplaneMode, KernelPath};
use link::LinkWatch;
use msg::{Punt, Shared, TxRequest, PUNT_QUEUE, TX_QUEUE};
use worker::{AgeingTime, Links, Worker, NOTICE_QUEUE};
use xdp_features::{NetdevEvents, NetdevSocket};

/// How often link state (and whether ports accept XDP redirects) is polled.
const LINK_POLL: Duration = Duration::from_millis(500);
/// The longest wait between two readings of the kernel's station stamps for ageing.
const STATION_AGEING: Duration = Duration::from_secs(5);

/// How often the CPU ages the stations the kernel forwards for (reading the kernel's stamps):
/// every min(5 s, ageing / 10). A station then leaves the kernel's table at most a tenth of the
/// ageing time late, and one the kernel keeps forwarding is refreshed in the workers' tables
/// well before they would age it (they wait the whole ageing time; the stamps are read once a
/// quarter of it has passed without a worker hearing the station, then every interval).
pub fn station_check_interval(ageing: Duration) -> Duration {
    STATION_AGEING.min(ageing / 10)
}

/// Learning notices the CPU takes per loop turn.
const NOTICES_PER_TURN: usize = 4096;
/// Longest the CPU sleeps waiting for a punt (bounds the latency of show commands and links).
const CPU_WAIT: Duration = Duration::from_millis(10);
/// Punts handled per wakeup before timers and the control socket get a turn.
const PUNTS_PER_TURN: usize = 256;
/// How long start-up waits for the worker threads to name and place themselves before it says
/// READY anyway (with a warning): a worker that has not run by then is starved, not starting.
const WORKER_START_WAIT: Duration = Duration::from_secs(5);

/// Everything `xsnoop run` needs to start.
#[derive(Debug)]
pub struct RunOptions {
    /// Ports, VLANs, snooping and timers.
    pub config: SwitchConfig,
    /// How the XDP classifier is attached.
    pub xdp_mode: AttachMode,
    /// Where registered multicast is replicated: in the kernel (XDP) or by the AF_XDP workers.
    pub dataplane: DataplaneMode,
    /// Where show commands reach the daemon (none: no control socket).
    pub control_socket: Option<PathBuf>,
    /// UMEM and ring sizes.
    pub afxdp: AfXdpConfig,
    /// Stop after this long (none: until `stop`).
    pub duration: Option<Duration>,
    /// The configuration file, re-read on [`Signals::reload`] (none: nothing to reload).
    pub config_path: Option<PathBuf>,
}

/// What the signal handlers tell the daemon loops: SIGINT/SIGTERM stop, SIGHUP reload.
#[derive(Debug, Default)]
pub struct Signals {
    /// Stop, detach and exit.
    pub stop: AtomicBool,
    /// Re-read the configuration file and apply the differences.
    pub reload: AtomicBool,
}

impl Signals {
    /// Both flags clear (usable in a `static`).
    pub const fn new() -> Signals {
        Signals {
            stop: AtomicBool::new(false),
            reload: AtomicBool::new(false),
        }
    }
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunSummary {
    /// The dataplane counters at exit (the `dataplane` object of `xsnoop stats`).
    pub dataplane: serde_json::Value,
}

/// The port map (IEEE 802.1Q port VLAN modes) the worker forwards with, from the config.
pub fn port_map(config: &SwitchConfig) -> Result<PortMap> {
    let mut map = PortMap::new();
    for (i, p) in config.engine.ports.iter().enumerate() {
        let id = PortId::try_from(i).map_err(|_| anyhow!("too many ports"))?;
        let cfg = match &p.vlans {
            PortVlans::Access(v) => PortVlanConfig::Access { vlan: *v },
            PortVlans::Trunk(list) => PortVlanConfig::Trunk {
                allowed: list.clone(),
                native: config.native_vlans.get(i).copied().flatten(),
            },
        };
        map.set_port(id, &cfg)
            .with_context(|| format!("port {}", p.name))?;
        map.set_static_fdb(config.static_fdb.clone());
        map.set_punt_limit(
            id,
            config
                .punt_limits
                .get(i)
                .copied()
                .unwrap_or(crate::config_file::DEFAULT_PUNT_LIMIT),
        );
    }
    Ok(map)
}

/// The XDP side of the switch: the classifier and, per worker, the AF_XDP sockets it
/// redirects into.
struct Fabric {
    classifier: Classifier,
    sets: Vec<AfXdp>,
    mac: MacAddr,
    /// Interface index of each port (index = port id = classifier slot).
    ifindexes: Vec<u32>,
}

/// The receive queues xsnoop serves on `name`: all of them (up to the classifier's
/// [`MAX_QUEUES`]), or it refuses to start when `workers` need more.
fn served_queues(name: &str, workers: usize) -> Result<u32> {
    let n = iface::rx_queues(name).unwrap_or(1);
    if n > MAX_QUEUES {
        warn!(
            port = %name,
            rx_queues = n,
            "xsnoop serves the first {MAX_QUEUES} receive queues; frames on the others are not switched: run `ethtool -L {name} combined {MAX_QUEUES}`"
        );
    }
    let served = n.min(MAX_QUEUES);
    if (served as usize) < workers {
        bail!(
            "port {name} has {served} receive queue(s) but workers = {workers} needs at least {workers} on every port (each worker receives and transmits on queues of its own): run `ethtool -L {name} combined {workers}` (or rx/tx {workers}), or lower workers"
        );
    }
    Ok(served)
}

/// Which queues of a port with `queues` receive queues worker `w` of `workers` serves.
fn worker_queues(queues: u32, w: usize, workers: usize) -> Vec<u32> {
    (0..queues)
        .filter(|&q| q as usize % workers.max(1) == w)
        .collect()
}

/// Loads and attaches the classifier and opens, per worker, a socket on each of its queues of
/// every port, in the calling thread's network namespace. Every error names the interface and
/// the fix.
fn open_fabric(
    names: &[String],
    mode: AttachMode,
    afxdp: AfXdpConfig,
    workers: usize,
) -> Result<Fabric> {
    let mut ports = Vec::with_capacity(names.len());
    for name in names {
        ports.push((iface::ifindex(name)?, served_queues(name, workers)?));
    }
    let mut classifier = Classifier::load()?;
    for (slot, (name, (ifindex, _))) in names.iter().zip(&ports).enumerate() {
        let slot = u32::try_from(slot).map_err(|_| anyhow!("too many ports"))?;
        let got = classifier.attach(name, mode).map_err(|e| {
            let fix = if mode == AttachMode::Native {
                "; the driver may lack native XDP: try --xdp-mode skb"
            } else {
                ""
            };
            anyhow!("port {name}: {e}{fix}")
        })?;
        if got == AttachMode::Skb && mode != AttachMode::Skb {
            info!(port = %name, mode = ?got, "XDP attached in generic mode (the driver has no native XDP)");
        }
        classifier
            .register_port(*ifindex, slot)
            .with_context(|| format!("port {name}"))?;
    }
    let mut sets = Vec::with_capacity(workers);
    for w in 0..workers {
        let specs: Vec<PortQueues> = ports
            .iter()
            .map(|&(ifindex, queues)| PortQueues {
                ifindex,
                queues: worker_queues(queues, w, workers),
            })
            .collect();
        let sockets: usize = specs.iter().map(|p| p.queues.len()).sum();
        // Enough frames that every fill ring starts at its full floor of 256 (AfXdp keeps
        // half the pool for frames in flight and shares the rest by traffic).
        let want = u32::try_from((sockets + 1) * 512).unwrap_or(u32::MAX);
        let cfg = AfXdpConfig {
            frame_count: afxdp.frame_count.max(want),
            ..afxdp
        };
        let xs = AfXdp::with_queues(cfg, &specs)
            .with_context(|| format!("opening the AF_XDP sockets of worker {w}"))?;
        for s in 0..xs.socket_count() {
            let (Some(port), Some(spec), Some(fd)) =
                (xs.socket_port(s), xs.port_spec(s), xs.socket_fd(s))
            else {
                continue;
            };
            let name = names.get(port).map_or("?", String::as_str);
            let slot = u32::try_from(port).map_err(|_| anyhow!("too many ports"))?;
            classifier
                .install_socket(slot, spec.queue, fd)
                .with_context(|| format!("port {name} queue {}", spec.queue))?;
        }
        sets.push(xs);
    }
    for (name, (_, queues)) in names.iter().zip(&ports) {
        debug!(port = %name, queues, "serving every receive queue");
    }
    let first = names
        .first()
        .ok_or_else(|| anyhow!("no ports configured"))?;
    Ok(Fabric {
        classifier,
        sets,
        mac: iface::mac_address(first)?,
        ifindexes: ports.iter().map(|&(ifindex, _)| ifindex).collect(),
    })
}

/// Waits until `workers` worker threads have said they started on `started` (each after
/// naming and placing itself), at most `limit`; returns how many did. A worker that died
/// before saying so closes the channel early: its thread's join reports why.
fn wait_started(started: &std::sync::mpsc::Receiver<()>, workers: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut up = 0;
    while up < workers {
        let left = deadline.saturating_duration_since(Instant::now());
        match started.recv_timeout(left) {
            Ok(()) => up += 1,
            Err(_) => break,
        }
    }
    up
}

/// The CPU side: the control plane plus the channel ends it owns.
struct Cpu {
    plane: ControlPlane,
    shared: Arc<Shared>,
    tx: SyncSender<TxRequest>,
    mac: MacAddr,
    /// The in-kernel fast path (`dataplane = "xdp"`), programmed after every publication.
    kernel: Option<KernelPath>,
    /// The published port map, for the fast path's VLAN tagging.
    ports: PortMapHandle,
    /// The XDP classifier (its per-port counters say what the kernel path forwarded); taken
    /// out and dropped first at shutdown, which detaches XDP.
    classifier: Option<Classifier>,
    /// Port names, for interface statistics.
    names: Vec<String>,
    /// Interface index of each port.
    ifindexes: Vec<u32>,
    /// Asks the kernel which ports accept XDP redirects (none: it cannot say).
    netdev: Option<NetdevSocket>,
    /// The kernel's device-change announcements: re-ask at once when one arrives.
    netdev_events: Option<NetdevEvents>,
    /// The workers' learning notices, for the kernel's station table (with a kernel path).
    notices: Option<Receiver<FdbNotice>>,
    /// Every worker's inbox: stations the kernel kept alive go back to the workers' tables.
    inboxes: Vec<SyncSender<FdbNotice>>,
    /// The workers' FDB clock.
    epoch: Instant,
    /// Wakes worker 0 for a transmit request.
    doorbell: Arc<Doorbell>,
    /// The station ageing time the workers and the kernel's table use (`fdb_ageing`).
    ageing: Arc<AgeingTime>,
}

impl Cpu {
    /// Sends the frames of `out`: the punted frame to `out.forward` (RFC 4541 §2.1.1: reports
    /// to router ports only, queries to all ports), and the engine's queries.
    fn act(&mut self, out: &Output, punted: Option<Punt>) {
        if let Some(p) = punted {
            if !out.forward.is_empty() {
                self.send(TxRequest {
                    vlan: p.vlan,
                    ports: out.forward,
                    frame: p.frame,
                });
            }
        }
        let mut buf = [0u8; MAX_QUERY_FRAME];
        for t in &out.transmit {
            // Built untagged; the worker tags it per egress port.
            match build_query(&t.query, self.mac, None, &mut buf) {
                Ok(n) => self.send(TxRequest {
                    vlan: t.vlan,
                    ports: t.ports,
                    frame: buf.get(..n).unwrap_or_default().to_vec(),
                }),
                Err(e) => warn!(vlan = t.vlan, error = %e, "building query failed"),
            }
        }
        if out.table_changed {
            debug!(
                groups = self
                    .plane
                    .table()
                    .load()
                    .vlans
                    .values()
                    .map(|v| v.groups.len())
                    .sum::<usize>(),
                "table published"
            );
            // Synced once at the end of this CPU turn: a burst of reports (up to
            // PUNTS_PER_TURN) costs one sync, not one per report.
            if let Some(k) = &mut self.kernel {
                k.dirty = true;
            }
        }
    }

    /// Compiles the published table and port map into the kernel fast path, if there is one.
    /// Every caller (a publication, a port going up or down, a device or scope change, a
    /// reload) comes through here, and the hint is every change published since the last
    /// sync that succeeded, so none is lost to a sync that had another reason.
    fn sync_kernel(&mut self) {
        let Some(k) = &mut self.kernel else {
            return;
        };
        let (ports, down) = (self.ports.load(), self.shared.down());
        self.plane
            .sync_published(|table, hint| k.sync(table, &ports, down, Some(hint)));
    }

    fn send(&self, req: TxRequest) {
        match self.tx.try_send(req) {
            Ok(()) => self.doorbell.ring(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.tx_queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn punt(&mut self, p: Punt) {
        if let Some(out) = self.plane.deliver(p.port, p.vlan, &p.frame) {
            self.act(&out, Some(p));
        }
    }

    /// SIGHUP: re-reads `path`; a valid file with the same ports replaces the configuration
    /// (engine first, then the dataplane's port map), anything else changes nothing.
    fn reload(&mut self, path: &Path, ports: &PortMapHandle) {
        let applied = SwitchConfig::load(path)
            .map_err(anyhow::Error::from)
            .and_then(|cfg| {
                let map = port_map(&cfg)?;
                let out = self.plane.reconfigure(cfg.engine)?;
                ports.publish(map);
                // The operator may have raised the descriptor limit: try starved VLANs again.
                if let Some(k) = &mut self.kernel {
                    k.retry_starved();
                }
                self.sync_kernel();
                self.set_ageing(cfg.fdb_ageing);
                Ok(out)
            });
        match applied {
            Ok(out) => {
                self.act(&out, None);
                info!(file = %path.display(), "configuration reloaded");
            }
            Err(e) => {
                warn!(file = %path.display(), error = %format!("{e:#}"), "reload refused; the running configuration stays")
            }
        }
    }

    /// A reload's `fdb_ageing`: the workers apply it at their next housekeeping, the kernel's
    /// table at its next ageing round; learned stations are kept (like the Linux bridge's
    /// `ageing_time`, it changes how long they last, not what is known).
    fn set_ageing(&mut self, ageing: Duration) {
        let before = self.ageing.get();
        if self.ageing.set(ageing) {
            if let Some(k) = &mut self.kernel {
                k.set_ageing(ageing);
            }
            info!(from = ?before, to = ?ageing, "fdb_ageing changed: stations age after the new time");
        }
    }

    /// Publishes what only the kernel knows per port: frames the fast path took from it
    /// (the classifier's counter) and frames the interface sent, whichever path sent them.
    fn port_counters(&self) {
        let counts = self
            .names
            .iter()
            .enumerate()
            .map(|(slot, name)| {
                let kernel_rx = self
                    .classifier
                    .as_ref()
                    .and_then(|c| c.counters(u32::try_from(slot).ok()?).ok())
                    .map_or(0, |c| c.fast_path);
                (kernel_rx, iface::tx_counters(name))
            })
            .collect();
        self.shared.set_port_kernel_counts(counts);
    }

    /// Installs the workers' learning notices in the kernel's station table and writes it
    /// if it changed.
    fn take_notices(&mut self) {
        let (Some(k), Some(rx)) = (&mut self.kernel, &self.notices) else {
            return;
        };
        let now = self.epoch.elapsed();
        for n in rx.try_iter().take(NOTICES_PER_TURN) {
            k.learn(n, now);
        }
        k.sync_stations(&self.ports.load());
    }

    /// Ages the kernel's stations; those the kernel kept alive are refreshed in the workers'
    /// tables too, so they do not flood frames towards a station only the kernel sees.
    fn age_stations(&mut self) {
        let Some(k) = &mut self.kernel else {
            return;
        };
        for n in k.age_stations(self.epoch.elapsed()) {
            for inbox in &self.inboxes {
                // A full inbox: that worker is behind; the next ageing round tells it again.
                let _ = inbox.try_send(n);
            }
        }
        k.sync_stations(&self.ports.load());
    }

    /// Asks the kernel again which ports accept XDP redirects; a change re-scopes the kernel
    /// path (a VLAN moves between the kernel and the workers).
    fn probe_redirects(&mut self) {
        let Some(k) = &mut self.kernel else {
            return;
        };
        let accepting = redirect_targets(&mut self.netdev, &self.ifindexes, &self.names, false);
        if k.set_accepting(accepting, &self.names) {
            info!(accepting = ?accepting, "the ports accepting XDP redirects changed");
            self.sync_kernel();
        }
    }

    fn links(&mut self, watch: &mut LinkWatch) {
        self.port_counters();
        self.probe_redirects();
        let changes = watch.poll();
        if changes.is_empty() {
            return;
        }
        let before = self.shared.down();
        self.shared.set_down(watch.down());
        if let Some(k) = &mut self.kernel {
            k.forget_ports(watch.down().difference(before));
        }
        // A port that went down leaves the kernel's egress sets too (and comes back when up).
        self.sync_kernel();
        for (port, up) in changes {
            let input = if up {
                Input::PortUp(port)
            } else {
                Input::PortDown(port)
            };
            let out = self.plane.handle(input);
            self.act(&out, None);
        }
    }
}

/// `d` in whole milliseconds (saturating), the unit of the show commands' times.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `xsnoop fdb`'s rows with the ageing time in force: `ageing_ms` on every learned row (beside
/// its `age_ms`, so an operator sees how long it has left), `null` on a static one (it never
/// ages).
fn with_ageing(mut rows: serde_json::Value, ageing: Duration) -> serde_json::Value {
    for r in rows.as_array_mut().into_iter().flatten() {
        let fixed = r["static"] == true;
        if let Some(o) = r.as_object_mut() {
            let v = if fixed {
                serde_json::Value::Null
            } else {
                millis(ageing).into()
            };
            o.insert("ageing_ms".into(), v);
        }
    }
    rows
}

/// The ports whose interfaces accept XDP redirects (the `ndo-xmit` XDP feature; see
/// [`xdp_features`]); none when the kernel cannot say. With `report`, each refusing port is
/// logged with the fix.
fn redirect_targets(
    sock: &mut Option<NetdevSocket>,
    ifindexes: &[u32],
    names: &[String],
    report: bool,
) -> PortSet {
    let mut accepting = PortSet::EMPTY;
    let Some(s) = sock else {
        return accepting;
    };
    for (p, (&ifindex, name)) in ifindexes.iter().zip(names).enumerate() {
        let Ok(port) = PortId::try_from(p) else {
            continue;
        };
        match s.features(ifindex) {
            Ok(f) if f.accepts_redirects() => {
                accepting.insert(port);
            }
            Ok(_) if report => warn!(
                port = %name,
                "port {name} does not accept XDP redirects: its driver lacks ndo_xdp_xmit, or, for a veth, its peer has GRO off and no XDP program (`ethtool -K PEER gro on` fixes that); the kernel cannot replicate to it"
            ),
            Ok(_) => {}
            Err(e) if report => {
                warn!(port = %name, error = %e, "cannot ask the kernel whether port {name} accepts XDP redirects")
            }
            Err(_) => {}
        }
    }
    accepting
}

/// Runs the switch on the configured interfaces (in the calling thread's network namespace)
/// until `stop` is set or the duration passes; then detaches XDP, drains and returns.
pub fn run(opts: RunOptions, signals: &Signals) -> Result<RunSummary> {
    let stop = &signals.stop;
    privilege::check()?;
    let names: Vec<String> = opts
        .config
        .engine
        .ports
        .iter()
        .map(|p| p.name.clone())
        .collect();
    if names.is_empty() {
        bail!("no ports: give --port IF (repeatable) or [[port]] entries in the config file");
    }
    let ports = PortMapHandle::new(port_map(&opts.config)?);
    let port_maps = ports.clone();
    let mut plane = ControlPlane::new(opts.config.engine.clone())?;
    let workers = opts.config.workers.max(1);
    let fabric = open_fabric(&names, opts.xdp_mode, opts.afxdp, workers)?;
    if let Some(path) = &opts.control_socket {
        plane.listen(path)?;
    }
    if let Some(addr) = opts.config.metrics_listen {
        plane.listen_metrics(addr)?;
    }
    let Fabric {
        mut classifier,
        sets,
        mac,
        ifindexes,
    } = fabric;
    let kernel = match opts.dataplane {
        DataplaneMode::Afxdp => None,
        mode => {
            let forced = mode == DataplaneMode::Xdp;
            let ageing = opts.config.fdb_ageing;
            match KernelPath::new(&mut classifier, ifindexes.clone(), forced, ageing) {
                Ok(k) => Some(k),
                Err(e) if !forced => {
                    warn!(error = %e, "no in-kernel fast path: every VLAN is forwarded by the AF_XDP workers");
                    None
                }
                Err(e) => return Err(anyhow::Error::from(e).context(
                    "setting up the in-kernel fast path (dataplane = \"afxdp\" runs without it)",
                )),
            }
        }
    };
    let mut netdev = match NetdevSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            if kernel.is_some() {
                warn!(error = %e, "cannot ask the kernel which ports accept XDP redirects; with dataplane = \"auto\" every VLAN stays with the AF_XDP workers");
            }
            None
        }
    };
    let mut kernel = kernel;
    if let Some(k) = &mut kernel {
        let accepting = redirect_targets(&mut netdev, &ifindexes, &names, true);
        k.set_accepting(accepting, &names);
    }
    // Zero-copy where every port's driver takes it, copy otherwise (veth): said in the log
    // and in `xsnoop stats`, because it decides what rates to expect.
    let bind_mode = match sets.first().map(AfXdp::mode) {
        Some(BoundMode::ZeroCopy) => "zero-copy",
        _ => "copy",
    };
    let shared = Arc::new(Shared::new(names.clone(), workers, bind_mode));
    let ageing = Arc::new(AgeingTime::new(opts.config.fdb_ageing));
    let s2 = shared.clone();
    let k2 = kernel.as_ref().map(KernelPath::view);
    let mode = opts.dataplane;
    let a2 = ageing.clone();
    plane.set_extra_stats(Box::new(move || {
        let mut v = s2.to_json();
        v["mode"] = mode.to_string().into();
        v["fdb_ageing_ms"] = millis(a2.get()).into();
        if let Some(k) = &k2 {
            v["kernel_path"] = k.stats_json();
        }
        v
    }));
    let s3 = shared.clone();
    let a3 = ageing.clone();
    plane.set_fdb_source(Box::new(move || with_ageing(s3.fdb_json(), a3.get())));
    let s4 = shared.clone();
    let k4 = kernel.as_ref().map(KernelPath::view);
    let t4 = plane.table().clone();
    plane.set_streams_source(Box::new(move || match &k4 {
        Some(k) => kernel_path::merge_streams(s4.streams_json(), k.flows_json(&t4.load())),
        None => s4.streams_json(),
    }));
    let (punt_tx, punt_rx) = sync_channel::<Punt>(PUNT_QUEUE);
    let (tx_tx, tx_rx) = sync_channel::<TxRequest>(TX_QUEUE);
    let sockets: usize = sets.iter().map(AfXdp::socket_count).sum();
    info!(ports = ?names, dataplane = %opts.dataplane, afxdp = bind_mode, workers, sockets, "switching");
    // Learning notices: one inbox per worker, a sender to every other worker's inbox; with a
    // kernel path the CPU hears them too (for the kernel's station table) and sends the
    // stations the kernel kept alive back to every worker.
    let mesh = workers > 1 || kernel.is_some();
    let (inboxes_tx, inboxes_rx): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| sync_channel::<FdbNotice>(if mesh { NOTICE_QUEUE } else { 0 }))
        .unzip();
    let (cpu_notice_tx, cpu_notices) = match kernel {
        Some(_) => {
            let (t, r) = sync_channel::<FdbNotice>(NOTICE_QUEUE);
            (Some(t), Some(r))
        }
        None => (None, None),
    };
    let mut tx_rx = Some(tx_rx);
    let doorbell = Arc::new(Doorbell::new().context("creating the worker's doorbell (eventfd)")?);
    let mut threads = Vec::with_capacity(workers);
    let epoch = Instant::now();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    for (id, (xs, inbox)) in sets.into_iter().zip(inboxes_rx).enumerate() {
        let links = Links {
            punt_tx: punt_tx.clone(),
            tx_rx: tx_rx.take(),
            peers: inboxes_tx
                .iter()
                .enumerate()
                .filter(|&(other, _)| other != id)
                .map(|(_, s)| s.clone())
                .chain(cpu_notice_tx.clone())
                .collect(),
            inbox: mesh.then_some(inbox),
            // Worker 0 takes the transmit requests.
            doorbell: (id == 0).then(|| doorbell.clone()),
            ageing: ageing.clone(),
        };
        let worker = Worker::new(
            id,
            xs,
            plane.table().clone(),
            ports.clone(),
            shared.clone(),
            links,
            epoch,
        );
        let name = if workers == 1 {
            "xsnoop-asic".to_string()
        } else {
            format!("xsnoop-asic{id}")
        };
        let placement = opts.config.placement.clone();
        let started = started_tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    placement.apply(id);
                    let _ = started.send(());
                    worker.run()
                })
                .context("starting a worker thread")?,
        );
    }
    drop((punt_tx, cpu_notice_tx, started_tx));
    // READY (and the control socket's first answer) mean the workers run as configured: a
    // tool that checks `worker_cpus` or `worker_realtime` right after start sees them applied.
    let up = wait_started(&started_rx, workers, WORKER_START_WAIT);
    if up < workers {
        warn!(
            started = up,
            workers,
            "not every worker thread ran within {WORKER_START_WAIT:?} of start-up; saying READY anyway (is the switch CPU starved?)"
        );
    }
    // After every worker started (threads inherit the class), before READY: the class is this
    // thread's alone.
    opts.config.placement.apply_control();
    let status = format!("switching {} port(s) with {workers} worker(s)", names.len());
    crate::notify::ready(&status); // systemd Type=notify: the workers forward from here on

    let kernel_on = kernel.is_some();
    let mut cpu = Cpu {
        plane,
        shared: shared.clone(),
        tx: tx_tx,
        mac,
        kernel,
        ports: port_maps.clone(),
        classifier: Some(classifier),
        names: names.clone(),
        ifindexes,
        netdev_events: match (&netdev, kernel_on) {
            (Some(s), true) => s
                .subscribe()
                .map_err(|e| debug!(error = %e, "no device-change announcements; polling only"))
                .ok(),
            _ => None,
        },
        netdev,
        notices: cpu_notices,
        inboxes: if kernel_on { inboxes_tx } else { Vec::new() },
        epoch,
        doorbell: doorbell.clone(),
        ageing,
    };
    cpu.sync_kernel();
    let mut watch = LinkWatch::new(names);
    cpu.links(&mut watch);
    let mut next_link = Instant::now() + LINK_POLL;
    let mut next_ageing = Instant::now() + station_check_interval(cpu.ageing.get());
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && opts.duration.is_none_or(|d| started.elapsed() < d) {
        let wait = cpu.plane.wait_budget(CPU_WAIT);
        match punt_rx.recv_timeout(wait) {
            Ok(p) => {
                cpu.punt(p);
                for p in punt_rx.try_iter().take(PUNTS_PER_TURN) {
                    cpu.punt(p);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                warn!("the worker stopped");
                break;
            }
        }
        if let Some(out) = cpu.plane.serve() {
            cpu.act(&out, None);
        }
        if let Some(out) = cpu.plane.tick() {
            cpu.act(&out, None);
        }
        if cpu
            .kernel
            .as_ref()
            .is_some_and(|k| k.dirty || k.retry_due())
        {
            // New publications of this turn, a failed sync to retry, or VLANs given to the
            // workers for lack of replication lists to try in the kernel again.
            cpu.sync_kernel();
        }
        if cpu
            .netdev_events
            .as_ref()
            .is_some_and(NetdevEvents::changed)
        {
            // A device changed (a veth peer's GRO, a driver's XDP features): re-read now.
            if let Some(k) = &mut cpu.kernel {
                k.count_device_notification();
            }
            cpu.probe_redirects();
        }
        cpu.take_notices();
        if Instant::now() >= next_ageing {
            cpu.age_stations();
            next_ageing = Instant::now() + station_check_interval(cpu.ageing.get());
        }
        if Instant::now() >= next_link {
            cpu.links(&mut watch);
            next_link = Instant::now() + LINK_POLL;
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            match &opts.config_path {
                Some(path) => {
                    crate::notify::reloading();
                    cpu.reload(path, &port_maps);
                    crate::notify::ready(&status);
                }
                None => warn!("SIGHUP: started without --config, nothing to reload"),
            }
        }
    }
    crate::notify::stopping();
    // Detach first so the interfaces fall back to the kernel, then stop and drain the worker.
    drop(cpu.classifier.take());
    shared.stop.store(true, Ordering::Relaxed);
    doorbell.ring();
    let mut sets = Vec::with_capacity(threads.len());
    for t in threads {
        sets.push(t.join().map_err(|_| anyhow!("a worker thread panicked"))?);
    }
    let leaked: u64 = sets
        .iter()
        .map(|xs| u64::from(xs.accounting().in_flight))
        .sum();
    if leaked > 0 {
        warn!(frames = leaked, "frames still in flight at exit");
    }
    drop(sets);
    let dataplane = shared.to_json();
    info!(counters = %dataplane, "stopped");
    Ok(RunSummary { dataplane })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_waits_for_every_worker_or_the_limit_or_a_dead_one() {
        let (tx, rx) = std::sync::mpsc::channel();
        // Two workers that start late: the wait ends when the second one says so.
        let late: Vec<_> = (0..2)
            .map(|id| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50 * (id + 1)));
                    tx.send(()).unwrap();
                })
            })
            .collect();
        let t = Instant::now();
        assert_eq!(wait_started(&rx, 2, Duration::from_secs(10)), 2);
        assert!(t.elapsed() >= Duration::from_millis(100));
        late.into_iter().for_each(|h| h.join().unwrap());
        // One of two never starts: the limit ends the wait.
        tx.send(()).unwrap();
        let t = Instant::now();
        assert_eq!(wait_started(&rx, 2, Duration::from_millis(100)), 1);
        assert!(t.elapsed() >= Duration::from_millis(100));
        // Every sender gone (a worker died before starting): no wait for the limit.
        drop(tx);
        let t = Instant::now();
        assert_eq!(wait_started(&rx, 1, Duration::from_secs(10)), 0);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn short_ageing_times_are_checked_at_a_tenth_of_them_long_ones_every_5s() {
        let s = Duration::from_secs;
        assert_eq!(station_check_interval(s(10)), s(1));
        assert_eq!(station_check_interval(s(30)), s(3));
        assert_eq!(station_check_interval(s(50)), s(5));
        assert_eq!(station_check_interval(s(300)), s(5));
        assert_eq!(station_check_interval(s(1_000_000)), s(5));
    }

    #[test]
    fn fdb_rows_carry_the_ageing_time_static_ones_none() {
        let rows = serde_json::json!([
            {"vlan": 1, "mac": "02:00:00:00:00:01", "port": "p1", "age_ms": 1200, "static": false},
            {"vlan": 1, "mac": "02:00:00:00:00:02", "port": "p2", "age_ms": 0, "static": true},
        ]);
        let v = with_ageing(rows, Duration::from_millis(12_500));
        assert_eq!(v[0]["ageing_ms"], 12_500);
        assert_eq!(v[1]["ageing_ms"], serde_json::Value::Null);
        assert_eq!(v[0]["age_ms"], 1200, "the rest is untouched");
        assert_eq!(
            with_ageing(serde_json::json!([]), Duration::from_secs(1)),
            serde_json::json!([])
        );
    }
}
