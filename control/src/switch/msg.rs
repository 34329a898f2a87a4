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
    /// Frames read from the RX ring.
    pub rx: u64,
    /// Frames placed on the TX ring.
    pub tx: u64,
    /// Frames dropped because the TX ring was full.
    pub tx_ring_full: u64,
    /// Frames the kernel dropped before the RX ring (e.g. no fill frame).
    pub kernel_rx_dropped: u64,
    /// Frames the kernel dropped because the RX ring was full (the worker fell behind).
    pub kernel_rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub kernel_fill_ring_empty: u64,
}

/// State both threads share: the stop flag, the link-down set, and the worker's counters.
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
    /// Transmit requests dropped because the worker's queue was full.
    pub tx_queue_full: AtomicU64,
    /// Copies not made because the UMEM pool was empty.
    pub alloc_failed: AtomicU64,
    /// Copies not made because the rewrite refused the frame.
    pub rewrite_failed: AtomicU64,
    /// The worker's per-reason counters, refreshed a few times a second.
    pub reasons: Mutex<Vec<(String, u64)>>,
    /// Per-port AF_XDP counters, refreshed with `reasons`.
    pub ports: Mutex<Vec<PortIo>>,
}

impl Shared {
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
        let reasons: serde_json::Map<String, serde_json::Value> = self
            .reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        let ports =
            serde_json::to_value(&*self.ports.lock().unwrap_or_else(PoisonError::into_inner))
                .unwrap_or_default();
        serde_json::json!({
            "rx": get(&self.rx),
            "tx": get(&self.tx),
            "punted": get(&self.punted),
            "punt_queue_full": get(&self.punt_queue_full),
            "tx_queue_full": get(&self.tx_queue_full),
            "alloc_failed": get(&self.alloc_failed),
            "rewrite_failed": get(&self.rewrite_failed),
            "reasons": reasons,
            "ports": ports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
