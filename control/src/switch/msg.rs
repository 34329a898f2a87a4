//! What crosses the ASIC/CPU boundary, and the counters both sides can read.
//!
//! Two bounded channels join the worker (the ASIC) and the control thread (the CPU): punted
//! frames go up, frames the CPU wants sent come down. A full channel drops and counts, so
//! neither side ever blocks the other (a punt storm cannot stall forwarding).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use xsnoop_dataplane::{PortId, PortSet, VlanId};

/// Punted frames the control thread may lag behind by before the worker drops them.
pub const PUNT_QUEUE: usize = 1024;
/// Transmit requests the worker may lag behind by before the control thread drops them.
pub const TX_QUEUE: usize = 1024;

/// A frame the worker hands to the control plane (IGMP, MRD, PIM Hello), copied out of UMEM.
#[derive(Debug)]
pub struct Punt {
    /// Ingress port.
    pub port: PortId,
    /// The VLAN the frame was classified into.
    pub vlan: VlanId,
    /// The frame as received.
    pub frame: Vec<u8>,
}

/// "Transmit these bytes on these ports in this VLAN": the worker tags the frame per egress
/// port (the port map's egress form) and skips ports that are down or not in the VLAN.
#[derive(Debug)]
pub struct TxRequest {
    /// The VLAN the frame belongs to.
    pub vlan: VlanId,
    /// Egress ports.
    pub ports: PortSet,
    /// The frame, tagged or untagged (the worker rewrites it for each port).
    pub frame: Vec<u8>,
}

/// One port's AF_XDP counters: where frames can be lost outside the forwarding decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortIo {
    /// The interface.
    pub port: String,
    /// Frames received: read from the AF_XDP RX rings, plus `kernel_rx`.
    pub rx: u64,
    /// Frames sent: placed on the TX rings by the workers, or — when larger — what the
    /// interface counts as transmitted since start (which includes the kernel fast path's
    /// copies).
    pub tx: u64,
    /// Octets received by the workers (frames the kernel fast path forwarded not included).
    pub rx_bytes: u64,
    /// Octets sent: the workers' TX, or — when larger — the interface's transmitted octets
    /// since start (which include the kernel fast path's copies).
    pub tx_bytes: u64,
    /// Frames dropped because the TX ring was full.
    pub tx_ring_full: u64,
    /// Transmit kicks that moved nothing: the device's queue was stopped because what is behind
    /// it (a veth's peer, a NIC queue) is not keeping up, so frames waited in the TX ring for a
    /// later kick. Growing together with `tx_ring_full`: that receiver is the bottleneck.
    pub tx_kick_stalls: u64,
    /// Frames the kernel dropped before the RX ring (e.g. no fill frame).
    pub kernel_rx_dropped: u64,
    /// Frames the kernel dropped because the RX ring was full (the worker fell behind).
    pub kernel_rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub kernel_fill_ring_empty: u64,
    /// IGMP/PIM/MRD frames dropped by the port's control-plane policer (`igmp_rate`).
    pub igmp_policed: u64,
    /// Damaged frames (bad checksums, lengths, truncation...) dropped, by their reason in
    /// `reasons`; here per ingress port, to find the sender.
    pub malformed: u64,
    /// Frames from this port the in-kernel fast path forwarded (never seen by a worker);
    /// included in `rx`.
    pub kernel_rx: u64,
}

impl PortIo {
    /// Adds another worker's counts for the same port.
    fn add(&mut self, o: &PortIo) {
        self.rx += o.rx;
        self.tx += o.tx;
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
        self.tx_ring_full += o.tx_ring_full;
        self.tx_kick_stalls += o.tx_kick_stalls;
        self.kernel_rx_dropped += o.kernel_rx_dropped;
        self.kernel_rx_ring_full += o.kernel_rx_ring_full;
        self.kernel_fill_ring_empty += o.kernel_fill_ring_empty;
        self.igmp_policed += o.igmp_policed;
        self.malformed += o.malformed;
    }
}

/// One served receive queue: which worker reads it and how much it received, so an operator
/// sees whether RSS spreads the load (and that no queue is left unserved).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueIo {
    /// The interface.
    pub port: String,
    /// Its receive queue.
    pub queue: u32,
    /// The worker thread serving it.
    pub worker: usize,
    /// Frames read from this queue's RX ring.
    pub rx: u64,
    /// Frames its fill ring is kept at now: 256 at start, doubling while the kernel runs short
    /// under a backlog, halving when the queue receives little.
    pub fill_depth: u32,
}

/// Where one worker's UMEM frames are, and whether an audit of every frame's state agrees:
/// the proof that replication by reference loses no frame (`free + in_fill + in_flight ==
/// total`, and each frame is where the counters say).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UmemIo {
    /// The worker.
    pub worker: usize,
    /// Frames in its UMEM.
    pub total: u32,
    /// In the free pool.
    pub free: u32,
    /// In fill rings (or filled by the kernel, not yet read).
    pub in_fill: u32,
    /// Held or queued for TX, awaiting completion.
    pub in_flight: u32,
    /// "ok", or what the audit found wrong.
    pub audit: String,
}

/// What one worker publishes at housekeeping.
#[derive(Clone, Debug, Default)]
pub struct WorkerIo {
    /// Its per-reason forwarding counters.
    pub reasons: Vec<(String, u64)>,
    /// Its AF_XDP counters per port (index = port).
    pub ports: Vec<PortIo>,
    /// Its served queues.
    pub queues: Vec<QueueIo>,
    /// Stations learned from the other workers' notices, and notices lost to full queues.
    pub fdb_installed: u64,
    /// Notices not delivered (the table's buffer or a peer's queue was full).
    pub fdb_notices_dropped: u64,
    /// Its UMEM accounting.
    pub umem: UmemIo,
}

/// One learned station, as `xsnoop fdb` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FdbRow {
    /// VLAN.
    pub vlan: u16,
    /// Station MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The port it sits behind.
    pub port: String,
    /// Time since a frame from it was last seen, in milliseconds (0 for a static entry).
    pub age_ms: u64,
    /// Configured (`[[static_fdb]]`), not learned.
    #[serde(rename = "static")]
    pub is_static: bool,
}

/// One multicast stream, as `xsnoop streams` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamRow {
    /// VLAN.
    pub vlan: u16,
    /// IPv4 source.
    pub source: std::net::Ipv4Addr,
    /// Group.
    pub group: std::net::Ipv4Addr,
    /// Frames received.
    pub packets: u64,
    /// Octets received.
    pub bytes: u64,
    /// Time since its last frame, in milliseconds.
    pub idle_ms: u64,
    /// How it is forwarded: `mc_registered` (to members), `mc_unregistered` (router ports
    /// only: nobody joined), `mc_link_local`, `mc_snooping_disabled`, `mc_overflow_flood`.
    pub forwarding: String,
}

/// A worker's answer to the latest snapshot request: the request number, its MAC table and
/// its stream counters then.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The request ([`Shared::snapshot_request`]) this answers.
    pub request: u64,
    /// Its live FDB entries.
    pub fdb: Vec<FdbRow>,
    /// Its multicast streams.
    pub streams: Vec<StreamRow>,
    /// Frames of streams it could not track (table full).
    pub streams_untracked: u64,
}

/// How long `xsnoop fdb` and `xsnoop streams` wait for the workers' snapshots (they answer
/// within a loop turn).
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// State both threads share: the stop flag, the link-down set, and the workers' counters.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set to stop the worker.
    pub stop: AtomicBool,
    down_lo: AtomicU64,
    down_hi: AtomicU64,
    /// Frames received from all ports.
    pub rx: AtomicU64,
    /// Frames staged for TX (copies included).
    pub tx: AtomicU64,
    /// Frames punted to the control thread.
    pub punted: AtomicU64,
    /// Punts dropped because the control thread's queue was full.
    pub punt_queue_full: AtomicU64,
    /// Punts dropped by a port's control-plane policer.
    pub punt_policed: AtomicU64,
    /// Transmit requests dropped because the worker's queue was full.
    pub tx_queue_full: AtomicU64,
    /// Copies not made because the UMEM pool was empty.
    pub alloc_failed: AtomicU64,
    /// Copies not made because the rewrite refused the frame.
    pub rewrite_failed: AtomicU64,
    /// Port names, for the counters.
    port_names: Vec<String>,
    /// How the AF_XDP sockets are bound: "copy" or "zero-copy".
    bind_mode: &'static str,
    /// Each worker's counters, refreshed a few times a second (index = worker).
    workers: Vec<Mutex<WorkerIo>>,
    /// Bumped by the CPU to ask every worker for a [`Snapshot`] (`xsnoop fdb`, `xsnoop
    /// streams`); a worker compares it with the last request it answered once per loop turn
    /// (one relaxed load).
    pub snapshot_request: AtomicU64,
    /// Each worker's latest snapshot (index = worker).
    snapshots: Vec<Mutex<Snapshot>>,
    /// Per port, from the CPU: frames the kernel fast path took, and the interface's
    /// transmitted frames (the first reading is the baseline).
    kernel_counts: Mutex<KernelCounts>,
}

/// Per-port counts only the kernel has (see [`Shared::set_port_kernel_counts`]).
#[derive(Debug, Default)]
struct KernelCounts {
    kernel_rx: Vec<u64>,
    if_tx_base: Vec<Option<(u64, u64)>>,
    if_tx: Vec<Option<(u64, u64)>>,
}

impl Shared {
    /// Shared state for `workers` workers over the ports `port_names`, bound in `bind_mode`.
    pub fn new(port_names: Vec<String>, workers: usize, bind_mode: &'static str) -> Shared {
        Shared {
            port_names,
            bind_mode,
            workers: (0..workers).map(|_| Mutex::default()).collect(),
            snapshots: (0..workers).map(|_| Mutex::default()).collect(),
            ..Shared::default()
        }
    }

    /// The names of the ports (index = port).
    pub fn port_names(&self) -> &[String] {
        &self.port_names
    }

    /// Records, per port, the frames the kernel fast path took from it and the interface's
    /// transmitted-frames counter. With those, a port's `rx` counts both paths, and its `tx`
    /// is what the interface sent since start (AF_XDP and XDP redirect alike).
    pub fn set_port_kernel_counts(&self, counts: Vec<(u64, Option<(u64, u64)>)>) {
        let mut k = self
            .kernel_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if k.if_tx_base.len() != counts.len() {
            k.if_tx_base = counts.iter().map(|c| c.1).collect();
        }
        k.kernel_rx = counts.iter().map(|c| c.0).collect();
        k.if_tx = counts.iter().map(|c| c.1).collect();
    }

    /// Worker `worker` answers a snapshot request.
    pub fn answer_snapshot(&self, worker: usize, snapshot: Snapshot) {
        if let Some(m) = self.snapshots.get(worker) {
            *m.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
        }
    }

    /// Asks every worker for a snapshot and waits (briefly) for all answers; a worker that
    /// did not answer in time contributes its previous one.
    fn request_snapshots(&self) {
        let request = self.snapshot_request.fetch_add(1, Ordering::Relaxed) + 1;
        let deadline = std::time::Instant::now() + SNAPSHOT_WAIT;
        while std::time::Instant::now() < deadline
            && !self
                .snapshots
                .iter()
                .all(|m| m.lock().unwrap_or_else(PoisonError::into_inner).request >= request)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The switch's multicast streams for `xsnoop streams`: every worker's counts summed per
    /// (VLAN, source, group), the shortest idle time, the latest forwarding.
    pub fn streams_json(&self) -> serde_json::Value {
        self.request_snapshots();
        type Key = (u16, std::net::Ipv4Addr, std::net::Ipv4Addr);
        let mut merged: std::collections::BTreeMap<Key, StreamRow> = Default::default();
        let mut untracked = 0;
        for m in &self.snapshots {
            let snap = m.lock().unwrap_or_else(PoisonError::into_inner);
            untracked += snap.streams_untracked;
            for r in &snap.streams {
                match merged.get_mut(&(r.vlan, r.group, r.source)) {
                    Some(have) => {
                        have.packets += r.packets;
                        have.bytes += r.bytes;
                        if r.idle_ms < have.idle_ms {
                            have.idle_ms = r.idle_ms;
                            have.forwarding = r.forwarding.clone();
                        }
                    }
                    None => {
                        merged.insert((r.vlan, r.group, r.source), r.clone());
                    }
                }
            }
        }
        serde_json::json!({
            "streams": merged.into_values().collect::<Vec<_>>(),
            "untracked_frames": untracked,
        })
    }

    /// The switch's FDB for `xsnoop fdb`: asks every worker for its table and merges them (the
    /// workers' tables agree up to their learning notices; a station known to several shows
    /// its freshest sighting).
    pub fn fdb_json(&self) -> serde_json::Value {
        self.request_snapshots();
        let mut merged: std::collections::BTreeMap<(u16, String), FdbRow> = Default::default();
        for m in &self.snapshots {
            for r in &m.lock().unwrap_or_else(PoisonError::into_inner).fdb {
                let key = (r.vlan, r.mac.clone());
                match merged.get(&key) {
                    Some(have) if have.age_ms <= r.age_ms => {}
                    _ => {
                        merged.insert(key, r.clone());
                    }
                }
            }
        }
        serde_json::to_value(merged.into_values().collect::<Vec<_>>()).unwrap_or_default()
    }

    /// Replaces worker `worker`'s published counters.
    pub fn publish_worker(&self, worker: usize, io: WorkerIo) {
        if let Some(m) = self.workers.get(worker) {
            *m.lock().unwrap_or_else(PoisonError::into_inner) = io;
        }
    }

    /// Ports whose link is down (a torn read between the halves only delays a change).
    pub fn down(&self) -> PortSet {
        let lo = u128::from(self.down_lo.load(Ordering::Relaxed));
        let hi = u128::from(self.down_hi.load(Ordering::Relaxed));
        PortSet::from_bits(hi << 64 | lo)
    }

    /// Publishes the set of ports whose link is down.
    pub fn set_down(&self, down: PortSet) {
        let bits = down.bits();
        self.down_lo.store(bits as u64, Ordering::Relaxed);
        self.down_hi.store((bits >> 64) as u64, Ordering::Relaxed);
    }

    /// The counters as JSON, for `xsnoop stats`.
    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut reasons: Vec<(String, u64)> = Vec::new();
        let mut ports: Vec<PortIo> = self
            .port_names
            .iter()
            .map(|n| PortIo {
                port: n.clone(),
                ..PortIo::default()
            })
            .collect();
        let mut queues: Vec<QueueIo> = Vec::new();
        let mut umem: Vec<UmemIo> = Vec::new();
        let (mut installed, mut dropped) = (0, 0);
        for w in &self.workers {
            let w = w.lock().unwrap_or_else(PoisonError::into_inner);
            for (k, v) in &w.reasons {
                match reasons.iter_mut().find(|(n, _)| n == k) {
                    Some((_, sum)) => *sum += v,
                    None => reasons.push((k.clone(), *v)),
                }
            }
            for (sum, io) in ports.iter_mut().zip(&w.ports) {
                sum.add(io);
            }
            queues.extend(w.queues.iter().cloned());
            umem.push(w.umem.clone());
            installed += w.fdb_installed;
            dropped += w.fdb_notices_dropped;
        }
        queues.sort_by(|a, b| (&a.port, a.queue).cmp(&(&b.port, b.queue)));
        let mut kernel_rx_total = 0;
        {
            let k = self
                .kernel_counts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (i, io) in ports.iter_mut().enumerate() {
                let krx = k.kernel_rx.get(i).copied().unwrap_or(0);
                io.kernel_rx = krx;
                io.rx += krx;
                kernel_rx_total += krx;
                if let (Some(Some(now)), Some(Some(base))) = (k.if_tx.get(i), k.if_tx_base.get(i)) {
                    io.tx = io.tx.max(now.0.saturating_sub(base.0));
                    io.tx_bytes = io.tx_bytes.max(now.1.saturating_sub(base.1));
                }
            }
        }
        let reasons: serde_json::Map<String, serde_json::Value> =
            reasons.into_iter().map(|(k, v)| (k, v.into())).collect();
        let ports = serde_json::to_value(&ports).unwrap_or_default();
        let queues = serde_json::to_value(&queues).unwrap_or_default();
        serde_json::json!({
            "rx": get(&self.rx) + kernel_rx_total,
            "tx": get(&self.tx),
            "punted": get(&self.punted),
            "kernel_rx": kernel_rx_total,
            "punt_queue_full": get(&self.punt_queue_full),
            "punt_policed": get(&self.punt_policed),
            "tx_queue_full": get(&self.tx_queue_full),
            "alloc_failed": get(&self.alloc_failed),
            "rewrite_failed": get(&self.rewrite_failed),
            "reasons": reasons,
            "ports": ports,
            "queues": queues,
            "workers": self.workers.len(),
            "afxdp_mode": self.bind_mode,
            "fdb_sync": { "installed": installed, "notices_dropped": dropped },
            "umem": umem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fdb_merges_every_workers_answer_keeping_the_freshest_sighting() {
        let s = Shared::new(vec!["a".into(), "b".into()], 2, "copy");
        let row = |mac: &str, port: &str, age_ms: u64| FdbRow {
            vlan: 1,
            mac: mac.into(),
            port: port.into(),
            age_ms,
            is_static: false,
        };
        // Workers answer whatever request is pending, as their loops would.
        std::thread::scope(|sc| {
            sc.spawn(|| {
                while s.snapshot_request.load(Ordering::Relaxed) == 0 {
                    std::thread::yield_now();
                }
                let request = s.snapshot_request.load(Ordering::Relaxed);
                s.answer_snapshot(
                    0,
                    Snapshot {
                        request,
                        fdb: vec![row("02:00:00:00:00:01", "a", 500)],
                        ..Snapshot::default()
                    },
                );
                s.answer_snapshot(
                    1,
                    Snapshot {
                        request,
                        fdb: vec![
                            row("02:00:00:00:00:01", "b", 20),
                            row("02:00:00:00:00:02", "a", 7),
                        ],
                        ..Snapshot::default()
                    },
                );
            });
            let t = std::time::Instant::now();
            let v = s.fdb_json();
            assert!(t.elapsed() < SNAPSHOT_WAIT, "did not wait for the timeout");
            assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
            assert_eq!(v[0]["port"], "b", "the freshest sighting wins: {v}");
            assert_eq!(v[0]["age_ms"], 20);
            assert_eq!(v[1]["mac"], "02:00:00:00:00:02");
        });
    }

    #[test]
    fn streams_are_summed_over_workers() {
        let s = Shared::new(vec!["a".into()], 2, "copy");
        let row = |packets: u64, idle_ms: u64, fwd: &str| StreamRow {
            vlan: 1,
            source: "10.0.0.1".parse().unwrap(),
            group: "239.1.1.1".parse().unwrap(),
            packets,
            bytes: packets * 100,
            idle_ms,
            forwarding: fwd.into(),
        };
        for (w, r) in [
            (0, row(5, 900, "mc_unregistered")),
            (1, row(7, 3, "mc_registered")),
        ] {
            s.answer_snapshot(
                w,
                Snapshot {
                    request: u64::MAX,
                    streams: vec![r],
                    streams_untracked: 2,
                    ..Snapshot::default()
                },
            );
        }
        let v = s.streams_json();
        assert_eq!(v["streams"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["streams"][0]["packets"], 12);
        assert_eq!(v["streams"][0]["bytes"], 1200);
        assert_eq!(v["streams"][0]["idle_ms"], 3);
        assert_eq!(v["streams"][0]["forwarding"], "mc_registered");
        assert_eq!(v["untracked_frames"], 4);
    }

    #[test]
    fn workers_counters_are_summed_per_port_and_reason() {
        let s = Shared::new(vec!["a".into(), "b".into()], 2, "copy");
        let io = |rx: u64, q: u32, w: usize| WorkerIo {
            reasons: vec![("forward_member".into(), rx), (format!("only_{w}"), 1)],
            ports: vec![
                PortIo {
                    rx,
                    ..PortIo::default()
                },
                PortIo {
                    tx: rx * 2,
                    tx_kick_stalls: rx + 1,
                    ..PortIo::default()
                },
            ],
            queues: vec![QueueIo {
                port: "a".into(),
                queue: q,
                worker: w,
                rx,
                fill_depth: 256,
            }],
            fdb_installed: 1,
            fdb_notices_dropped: 0,
            umem: UmemIo {
                worker: w,
                audit: "ok".into(),
                ..UmemIo::default()
            },
        };
        s.publish_worker(0, io(10, 0, 0));
        s.publish_worker(1, io(5, 1, 1));
        s.publish_worker(7, io(1000, 9, 7)); // no such worker: ignored
        let j = s.to_json();
        assert_eq!(j["workers"], 2);
        assert_eq!(j["afxdp_mode"], "copy");
        assert_eq!(j["ports"][0]["port"], "a");
        assert_eq!(j["ports"][0]["rx"], 15);
        assert_eq!(j["ports"][1]["tx"], 30);
        assert_eq!(j["ports"][1]["tx_kick_stalls"], 17);
        assert_eq!(j["reasons"]["forward_member"], 15);
        assert_eq!(j["reasons"]["only_1"], 1);
        assert_eq!(j["queues"][1]["queue"], 1);
        assert_eq!(j["queues"][1]["worker"], 1);
        assert_eq!(j["fdb_sync"]["installed"], 2);
        assert_eq!(j["umem"][1]["worker"], 1);
        assert_eq!(j["umem"][0]["audit"], "ok");
    }

    #[test]
    fn down_set_round_trips_across_both_halves() {
        let s = Shared::default();
        let mut set = PortSet::EMPTY;
        set.insert(3);
        set.insert(100);
        s.set_down(set);
        assert_eq!(s.down(), set);
        assert!(s.down().contains(100) && !s.down().contains(4));
    }
}
