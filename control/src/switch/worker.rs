//! The worker: the switch's "ASIC". A worker thread owns its AF_XDP sockets (one per served
//! (port, queue), on its own UMEM, with a transmit socket on every port), its FDB and its
//! forwarding counters, and runs to completion per batch:
//!
//! 1. take transmit requests from the control thread (IGMP the CPU forwards, its queries; only
//!    worker 0 gets them): alloc a UMEM frame per egress port, tag it for that port, stage it;
//!    install the stations the other workers learned ([`FdbNotice`]s);
//! 2. load the port map once, read the link-down set;
//! 3. per socket, load the published table, `rx_batch`, and per frame [`process_with_memo`]
//!    (the next frame of the same multicast flow reuses the decision: [`FlowMemo`]) →
//!    `Forward`: stage the *same* UMEM frame
//!    on every port that sends it in the form it arrived in (refcounted, no copy), and an
//!    alloc+[`rewrite_into`] copy for ports needing another tag; `Punt`: copy the frame into a
//!    message on the bounded punt channel (full → drop, count `punt_queue_full`); `Drop`: count.
//!    Then release the hold;
//! 4. `flush` (TX kick, completions); send this batch's learning notices to the other workers.
//!
//! With several workers (`workers = N`), worker `w` serves queues `q` with `q % N == w` of
//! every port; they share nothing but the published tables, the counters and the channels.
//!
//! Nothing on the per-frame path allocates, locks or makes a syscall, except the punt copy (the
//! slow path) and the TX kick in `flush`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xsnoop_dataplane::afxdp::{AfXdp, FrameDesc, RX_BATCH};
use xsnoop_dataplane::forward::{
    ipv4_addresses, process_with_memo, rewrite_into, Counters, Decision, EgressTag, Fdb, FdbConfig,
    FdbNotice, FlowMemo, ForwardReason, Inputs, ParseErrors, PortMapHandle, PuntPolicer,
    StreamCounters,
};
use xsnoop_dataplane::wire::ethernet::{ethertype, HEADER_LEN};
use xsnoop_dataplane::wire::parse_frame;
use xsnoop_dataplane::{PortId, PortSet, TableHandle, VlanId};

use super::doorbell::Doorbell;
use super::msg::{
    FdbRow, PortIo, Punt, QueueIo, Shared, Snapshot, StreamRow, TxRequest, UmemIo, WorkerIo,
};

/// Transmit requests taken per loop turn, so a burst of them cannot starve reception.
const TX_REQUESTS_PER_TURN: usize = 64;
/// How long an idle worker sleeps in `poll` when nothing rings its doorbell (transmit requests
/// do, and so does a stop): bounds the latency of a snapshot request (`xsnoop fdb`), and how
/// often an idle worker wakes the switch CPU (it was 5 ms, 200 wake-ups a second for nothing).
const IDLE_WAIT_MS: i32 = 20;
/// Longest sleep of a worker whose frames wait in TX rings that moved nothing this turn:
/// short, since those frames go as soon as the device's queue restarts and no event says when.
const STALL_WAIT_MS: i32 = 1;
/// How often the FDB is swept and the counters are published.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How long the worker keeps flushing after a stop for frames still in flight.
const DRAIN: Duration = Duration::from_secs(1);
/// Learning notices a worker may lag behind another by before they are dropped (counted).
pub const NOTICE_QUEUE: usize = 4096;
/// Notices installed per loop turn.
const NOTICES_PER_TURN: usize = 1024;

/// The VID of the 802.1Q tag `frame` arrived with, if any.
fn received_vid(frame: &[u8]) -> Option<VlanId> {
    let et = frame.get(12..14)?;
    if u16::from_be_bytes([*et.first()?, *et.get(1)?]) != ethertype::VLAN {
        return None;
    }
    let tci = frame.get(HEADER_LEN..HEADER_LEN + 2)?;
    Some(u16::from_be_bytes([*tci.first()?, *tci.get(1)?]) & 0x0fff)
}

/// Whether `reason` forwarded IPv4 multicast data (counted per stream).
fn is_ipv4_multicast_data(reason: ForwardReason) -> bool {
    matches!(
        reason,
        ForwardReason::McRegistered
            | ForwardReason::McUnregistered
            | ForwardReason::McLinkLocal
            | ForwardReason::McSnoopingDisabled
            | ForwardReason::McOverflowFlood
    )
}

/// Counts that are kept locally and added to [`Shared`] once per batch.
#[derive(Default)]
struct Batch {
    rx: u64,
    tx: u64,
    punted: u64,
    punt_full: u64,
    punt_policed: u64,
    alloc_failed: u64,
    rewrite_failed: u64,
}

/// The station ageing time in force (`fdb_ageing`), one value for every table that ages
/// stations: the CPU sets it (at start and when a reload changes it), each worker applies it to
/// its FDB at housekeeping, so a reload needs no message and forgets no station.
#[derive(Debug)]
pub struct AgeingTime(AtomicU64);

impl AgeingTime {
    /// Holding `ageing` (nanoseconds: exact for every allowed value, up to 10^6 s).
    pub fn new(ageing: Duration) -> AgeingTime {
        AgeingTime(AtomicU64::new(nanos(ageing)))
    }

    /// The ageing time in force.
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Changes it; returns whether it changed.
    pub fn set(&self, ageing: Duration) -> bool {
        self.0.swap(nanos(ageing), Ordering::Relaxed) != nanos(ageing)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A worker's channels: to the CPU, from the CPU, and to and from the other workers.
pub struct Links {
    /// Punted frames go up here.
    pub punt_tx: SyncSender<Punt>,
    /// The CPU's frames to send (worker 0 only).
    pub tx_rx: Option<Receiver<TxRequest>>,
    /// One sender per other worker, for this worker's learning notices.
    pub peers: Vec<SyncSender<FdbNotice>>,
    /// The other workers' learning notices (none with a single worker).
    pub inbox: Option<Receiver<FdbNotice>>,
    /// Rung by the CPU after each transmit request (worker 0), and at stop.
    pub doorbell: Option<Arc<Doorbell>>,
    /// The station ageing time, shared with the CPU (a reload may change it).
    pub ageing: Arc<AgeingTime>,
}

/// The worker's state; [`Worker::run`] is its thread.
pub struct Worker {
    id: usize,
    xs: AfXdp,
    fdb: Fdb,
    counters: Counters,
    parse_errors: ParseErrors,
    table: TableHandle,
    ports: PortMapHandle,
    shared: Arc<Shared>,
    links: Links,
    /// Per-port control-plane policing of punts (each worker polices its own queues).
    policer: PuntPolicer,
    /// Per port, damaged frames dropped (sized once: one slot per possible port).
    damaged: Vec<u64>,
    notices_lost: u64,
    /// The last snapshot request (`xsnoop fdb`, `xsnoop streams`) this worker answered.
    snapshot_answered: u64,
    /// The port map whose static FDB entries are installed (its address; a reload publishes
    /// a new map).
    statics_from: usize,
    /// Per-(VLAN, source, group) counts of the multicast data it forwarded.
    streams: StreamCounters,
    epoch: Instant,
    scratch: Vec<u8>,
    down: PortSet,
}

impl Worker {
    /// Worker `id` over `xs` reading `table` and `ports`, with its channels; `epoch` is the
    /// FDB's clock, the same for every worker so notices carry comparable times.
    pub fn new(
        id: usize,
        xs: AfXdp,
        table: TableHandle,
        ports: PortMapHandle,
        shared: Arc<Shared>,
        links: Links,
        epoch: Instant,
    ) -> Worker {
        let mut xs = xs;
        if let Some(d) = &links.doorbell {
            // The doorbell lives in `links`, as long as the worker waits.
            xs.wake_on(d.raw_fd());
        }
        let scratch = vec![0u8; xs.config().frame_size as usize];
        let fdb = Fdb::new(FdbConfig {
            announce: !links.peers.is_empty(),
            ageing: links.ageing.get(),
            ..FdbConfig::default()
        });
        Worker {
            id,
            xs,
            fdb,
            counters: Counters::default(),
            parse_errors: ParseErrors::default(),
            table,
            ports,
            shared,
            links,
            policer: PuntPolicer::new(),
            damaged: vec![0; xsnoop_dataplane::MAX_PORTS],
            notices_lost: 0,
            snapshot_answered: 0,
            statics_from: 0,
            streams: StreamCounters::default(),
            epoch,
            scratch,
            down: PortSet::EMPTY,
        }
    }

    /// Forwards until [`Shared::stop`] is set, then drains frames in flight. Returns the
    /// AF_XDP ports so the caller decides when the sockets close (after the XDP detach).
    pub fn run(mut self) -> AfXdp {
        let mut descs = [FrameDesc::default(); RX_BATCH];
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let mut b = Batch::default();
            let requests = self.take_requests(&mut b);
            let now = self.epoch.elapsed();
            self.take_notices(now);
            let pm = self.ports.load();
            let pm_addr = std::ptr::from_ref::<xsnoop_dataplane::forward::PortMap>(&pm) as usize;
            if pm_addr != self.statics_from {
                // A new port map (start-up or reload): its static stations replace the old.
                self.fdb.set_statics(pm.static_fdb());
                self.statics_from = pm_addr;
            }
            let down = self.shared.down();
            if down != self.down {
                // Stations behind a port that went down are forgotten (IEEE 802.1Q §8.7.6).
                for p in down.difference(self.down).iter() {
                    self.fdb.flush_port(p);
                }
                self.down = down;
            }
            for sock in 0..self.xs.socket_count() {
                let Some(ingress) = self
                    .xs
                    .socket_port(sock)
                    .and_then(|p| PortId::try_from(p).ok())
                else {
                    continue;
                };
                // The table is loaded right before each socket's batch, not once per turn: a
                // frame that arrives after a join was published (the engine answered, `xsnoop
                // mdb` shows it) must not meet the table of before, even when this turn spent
                // a while on another socket's frames (seen once in CI, debug build, loaded).
                let table = self.table.load();
                let inputs = Inputs {
                    table: &table,
                    ports: &pm,
                    down,
                };
                // Valid for these inputs only: a new one per socket batch.
                let mut memo = FlowMemo::default();
                let n = self.xs.rx_batch(sock, &mut descs);
                for d in descs.iter().take(n) {
                    self.one_frame(&inputs, &mut memo, now, ingress, *d, &mut b);
                }
                b.rx += n as u64;
            }
            let moved = self.xs.flush();
            self.send_notices();
            self.publish(&b);
            self.answer_snapshot_request(now);
            if Instant::now() >= next_housekeeping {
                let ageing = self.links.ageing.get();
                if ageing != self.fdb.config().ageing {
                    // A reload changed `fdb_ageing`: the same stations, judged by the new time.
                    self.fdb.set_ageing(ageing);
                }
                self.fdb.age(now);
                self.streams.sweep(now);
                self.xs.review_fill();
                self.publish_counters();
                next_housekeeping = Instant::now() + HOUSEKEEPING;
            }
            // Idle: nothing received, asked or outstanding. Or stalled: frames wait in TX rings
            // whose devices refuse them (a veth whose receiver fell behind), and this turn
            // moved nothing; kicking again at once would only take the CPU from whoever must
            // drain them, so sleep until a frame arrives or a short while passes.
            let idle = self.xs.tx_outstanding() == 0;
            if b.rx == 0 && requests == 0 && (idle || !moved) {
                self.xs
                    .wait_rx(if idle { IDLE_WAIT_MS } else { STALL_WAIT_MS });
                if let Some(d) = &self.links.doorbell {
                    // Requests rung for are taken at the top of the loop.
                    d.drain();
                }
            }
        }
        let deadline = Instant::now() + DRAIN;
        while (self.xs.tx_outstanding() > 0 || self.xs.accounting().in_flight > 0)
            && Instant::now() < deadline
        {
            self.xs.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
        self.publish_counters();
        self.xs
    }

    /// Answers a pending `xsnoop fdb`/`xsnoop streams` request with this worker's FDB entries
    /// and stream counts (allocates, but only when an operator asks).
    fn answer_snapshot_request(&mut self, now: Duration) {
        let request = self.shared.snapshot_request.load(Ordering::Relaxed);
        if request == self.snapshot_answered {
            return;
        }
        self.snapshot_answered = request;
        let names = self.shared.port_names();
        let rows = self
            .fdb
            .entries(now)
            .into_iter()
            .map(|e| FdbRow {
                vlan: e.vlan,
                mac: e.mac.to_string(),
                port: names
                    .get(usize::from(e.port))
                    .cloned()
                    .unwrap_or_else(|| e.port.to_string()),
                age_ms: u64::try_from(e.age.as_millis()).unwrap_or(u64::MAX),
                is_static: e.is_static,
            })
            .collect();
        let streams = self
            .streams
            .entries()
            .into_iter()
            .map(|s| StreamRow {
                vlan: s.vlan,
                source: s.source,
                group: s.group,
                packets: s.stat.packets,
                bytes: s.stat.bytes,
                idle_ms: u64::try_from(now.saturating_sub(s.stat.last_seen).as_millis())
                    .unwrap_or(u64::MAX),
                forwarding: s.stat.reason.name().to_string(),
            })
            .collect();
        self.shared.answer_snapshot(
            self.id,
            Snapshot {
                request,
                fdb: rows,
                streams,
                streams_untracked: self.streams.untracked(),
            },
        );
    }

    /// Installs the stations the other workers learned (bounded per turn).
    fn take_notices(&mut self, now: Duration) {
        let Some(inbox) = &self.links.inbox else {
            return;
        };
        for n in inbox.try_iter().take(NOTICES_PER_TURN) {
            self.fdb.install(n, now);
        }
    }

    /// Tells the other workers what this batch learned; a full queue drops and counts.
    fn send_notices(&mut self) {
        let Worker {
            fdb,
            links,
            notices_lost,
            ..
        } = self;
        for n in fdb.take_notices() {
            for peer in &links.peers {
                if peer.try_send(n).is_err() {
                    *notices_lost += 1;
                }
            }
        }
    }

    /// Publishes this worker's reason counters, per-port and per-queue AF_XDP counters (user
    /// and kernel side) to [`Shared`]; a few syscalls and allocations, so only from
    /// housekeeping.
    fn publish_counters(&self) {
        let names = self.shared.port_names();
        let ports = (0..self.xs.port_count())
            .map(|i| {
                let mut io = PortIo {
                    port: names.get(i).cloned().unwrap_or_default(),
                    ..PortIo::default()
                };
                if let Some(s) = self.xs.stats(i) {
                    io.rx = s.rx;
                    io.tx = s.tx;
                    io.rx_bytes = s.rx_bytes;
                    io.tx_bytes = s.tx_bytes;
                    io.tx_ring_full = s.tx_ring_full;
                    io.tx_kick_stalls = s.kick_stalls;
                }
                if let Ok(p) = xsnoop_dataplane::PortId::try_from(i) {
                    io.igmp_policed = self.policer.dropped(p);
                }
                io.malformed = self.damaged.get(i).copied().unwrap_or(0);
                if let Some(Ok(k)) = self.xs.kernel_stats(i) {
                    io.kernel_rx_dropped = k.rx_dropped;
                    io.kernel_rx_ring_full = k.rx_ring_full;
                    io.kernel_fill_ring_empty = k.rx_fill_ring_empty_descs;
                }
                io
            })
            .collect();
        let queues = (0..self.xs.socket_count())
            .filter_map(|s| {
                let port = self.xs.socket_port(s)?;
                Some(QueueIo {
                    port: names.get(port).cloned().unwrap_or_default(),
                    queue: self.xs.port_spec(s)?.queue,
                    worker: self.id,
                    rx: self.xs.socket_stats(s)?.rx,
                    fill_depth: self.xs.fill_depth(s)?,
                })
            })
            .collect();
        let fdb = self.fdb.stats();
        // A full audit of every frame's state: a few microseconds for a few thousand frames.
        let (acc, audit) = match self.xs.audit() {
            Ok(acc) => (acc, "ok".to_string()),
            Err(e) => (self.xs.accounting(), e.to_string()),
        };
        let umem = UmemIo {
            worker: self.id,
            total: acc.total,
            free: acc.free,
            in_fill: acc.in_fill,
            in_flight: acc.in_flight,
            audit,
        };
        self.shared.publish_worker(
            self.id,
            WorkerIo {
                reasons: self
                    .counters
                    .snapshot()
                    .into_iter()
                    .chain(self.parse_errors.snapshot())
                    .collect(),
                ports,
                queues,
                fdb_installed: fdb.installed,
                fdb_notices_dropped: fdb.notices_dropped + self.notices_lost,
                umem,
            },
        );
    }

    fn publish(&self, b: &Batch) {
        let s = &self.shared;
        for (c, v) in [
            (&s.rx, b.rx),
            (&s.tx, b.tx),
            (&s.punted, b.punted),
            (&s.punt_queue_full, b.punt_full),
            (&s.punt_policed, b.punt_policed),
            (&s.alloc_failed, b.alloc_failed),
            (&s.rewrite_failed, b.rewrite_failed),
        ] {
            if v != 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    /// Stages the control thread's frames; returns how many requests were taken.
    fn take_requests(&mut self, b: &mut Batch) -> usize {
        let pm = self.ports.load();
        let down = self.shared.down();
        let mut taken = 0;
        while taken < TX_REQUESTS_PER_TURN {
            let Some(tx_rx) = &self.links.tx_rx else {
                break;
            };
            let req = match tx_rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
            taken += 1;
            for port in req.ports.difference(down).iter() {
                if let Some(tag) = pm.egress_tag(port, req.vlan) {
                    self.send_copy(&req.frame, port, tag, b);
                }
            }
        }
        taken
    }

    /// Allocates a UMEM frame, writes `frame` into it in egress form `tag`, stages it on `port`.
    fn send_copy(&mut self, frame: &[u8], port: PortId, tag: EgressTag, b: &mut Batch) {
        let Some(a) = self.xs.alloc() else {
            b.alloc_failed += 1;
            return;
        };
        let written = self
            .xs
            .frame_mut(a)
            .map(|buf| rewrite_into(frame, tag, buf));
        match written {
            Some(Ok(len)) => {
                let len = u32::try_from(len).unwrap_or(0);
                if self
                    .xs
                    .tx(usize::from(port), FrameDesc { addr: a.addr, len })
                    .is_ok()
                {
                    b.tx += 1;
                }
            }
            _ => b.rewrite_failed += 1,
        }
        let _ = self.xs.release(a);
    }

    fn one_frame(
        &mut self,
        inputs: &Inputs<'_>,
        memo: &mut FlowMemo,
        now: Duration,
        ingress: PortId,
        d: FrameDesc,
        b: &mut Batch,
    ) {
        let (decision, unchanged, copy_len) = {
            let Some(bytes) = self.xs.frame(d) else {
                let _ = self.xs.release(d);
                return;
            };
            let decision = process_with_memo(inputs, &mut self.fdb, now, ingress, bytes, memo);
            if let Decision::Forward(eg) = &decision {
                if is_ipv4_multicast_data(eg.reason) {
                    if let Some((source, group)) = ipv4_addresses(bytes) {
                        self.streams
                            .record(eg.vlan, source, group, bytes.len(), eg.reason, now);
                    }
                }
            }
            let mut unchanged = PortSet::EMPTY;
            let mut copy_len = 0;
            match decision {
                Decision::Forward(eg) => {
                    unchanged = eg.unchanged_for(received_vid(bytes));
                    if eg.ports != unchanged {
                        if let Some(dst) = self.scratch.get_mut(..bytes.len()) {
                            dst.copy_from_slice(bytes);
                            copy_len = bytes.len();
                        }
                    }
                }
                Decision::Punt { .. }
                    if !self
                        .policer
                        .allow(ingress, inputs.ports.punt_limit(ingress), now) =>
                {
                    // Over the port's control-plane rate: dropped before it costs the CPU.
                    b.punt_policed += 1;
                }
                Decision::Punt { vlan } => {
                    // The slow path: the CPU gets its own copy, the UMEM frame goes back now.
                    let msg = Punt {
                        port: ingress,
                        vlan,
                        frame: bytes.to_vec(),
                    };
                    match self.links.punt_tx.try_send(msg) {
                        Ok(()) => b.punted += 1,
                        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                            b.punt_full += 1
                        }
                    }
                }
                Decision::Drop(reason) => {
                    // Damaged frames only (rare): parse again to count the codec's reason.
                    if reason.is_damage() {
                        if let Some(c) = self.damaged.get_mut(usize::from(ingress)) {
                            *c += 1;
                        }
                        if let Err(e) = parse_frame(bytes) {
                            self.parse_errors.record(e);
                        }
                    }
                }
            }
            (decision, unchanged, copy_len)
        };
        self.counters.record(&decision);
        if let Decision::Forward(eg) = decision {
            // The received frame itself goes onto the rings of the ports that send it as it
            // came; every other port gets a rewritten copy.
            if let Ok(n) = self.xs.tx_each(unchanged, d) {
                b.tx += n as u64;
            }
            for p in eg.ports.difference(unchanged).iter() {
                let Some(tag) = eg.tag_for(p) else {
                    continue;
                };
                if copy_len > 0 {
                    let scratch = std::mem::take(&mut self.scratch);
                    if let Some(src) = scratch.get(..copy_len) {
                        self.send_copy(src, p, tag, b);
                    }
                    self.scratch = scratch;
                } else {
                    b.rewrite_failed += 1;
                }
            }
        }
        let _ = self.xs.release(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ageing_time_round_trips_exactly_and_reports_changes() {
        let a = AgeingTime::new(Duration::from_secs(300));
        assert_eq!(a.get(), Duration::from_secs(300));
        assert!(!a.set(Duration::from_secs(300)));
        assert!(a.set(Duration::from_millis(12_500)));
        assert_eq!(a.get(), Duration::from_millis(12_500));
        assert!(a.set(Duration::from_secs(1_000_000)));
        assert_eq!(a.get(), Duration::from_secs(1_000_000));
    }

    #[test]
    fn the_received_vid_is_read_from_the_tag_only() {
        let mut tagged = vec![0u8; 64];
        tagged[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
        tagged[14..16].copy_from_slice(&0x2014u16.to_be_bytes()); // PCP 1, VID 20
        let untagged = vec![0u8; 64];
        assert_eq!(received_vid(&tagged), Some(20));
        assert_eq!(received_vid(&untagged), None);
        assert_eq!(received_vid(&tagged[..15]), None);
    }
}
