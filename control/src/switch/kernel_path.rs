//! The in-kernel fast path in run mode (`dataplane = "xdp"`): the switch CPU compiles every
//! published forwarding table into the XDP program's maps, so registered IPv4 multicast is
//! replicated by the kernel (devmap broadcast) while IGMP, PIM, MRD and everything the program
//! does not handle still reaches the AF_XDP workers — the ASIC/CPU split with XDP as the ASIC.
//!
//! The engine publishes; the CPU then calls [`KernelPath::sync`], which applies only the
//! difference ([`xsnoop_dataplane::fastpath`]): a join or leave of an existing group is an
//! in-place edit (microseconds), a new group one batched outer-map update (one RCU grace
//! period). A failed sync is logged, counted and retried on the next turn of the CPU loop:
//! the maps always hold a consistent state, at worst the previous one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tracing::{debug, warn};
use xsnoop_dataplane::fastpath::{FastPath, FastPathError, Scope};
use xsnoop_dataplane::forward::{ForwardReason, PortMap};
use xsnoop_dataplane::xdp::Classifier;
use xsnoop_dataplane::{ForwardingTable, PortId, PortSet};

/// Where multicast is replicated.
///
/// The default is still `afxdp`: `xdp` is faster wherever AF_XDP transmits by copy (veth,
/// NICs without zero-copy), but a frame the kernel redirects into a veth is silently lost
/// unless the veth's peer has GRO on or an XDP program, which xsnoop cannot see from its
/// namespace. Until that is detected per port, `xdp` is the operator's choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataplaneMode {
    /// In the kernel: the XDP program replicates registered multicast through per-group
    /// devmaps; the AF_XDP workers handle the rest.
    Xdp,
    /// Everything through the AF_XDP workers (replication by reference in userspace).
    #[default]
    Afxdp,
}

impl std::str::FromStr for DataplaneMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xdp" => Ok(DataplaneMode::Xdp),
            "afxdp" => Ok(DataplaneMode::Afxdp),
            other => Err(format!(
                "dataplane = {other:?}: use \"xdp\" (multicast replicated in the kernel) or \"afxdp\" (everything through AF_XDP, the default)"
            )),
        }
    }
}

impl std::fmt::Display for DataplaneMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataplaneMode::Xdp => "xdp",
            DataplaneMode::Afxdp => "afxdp",
        })
    }
}

/// Counters of the map programming, for `xsnoop stats`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KernelPathStats {
    /// Syncs that changed something.
    pub syncs: u64,
    /// Map operations applied in total.
    pub ops: u64,
    /// Syncs that failed (retried).
    pub sync_errors: u64,
    /// The last error, if the last sync failed.
    pub last_error: Option<String>,
    /// Outer-map keys (VLAN, group[, source]) installed now.
    pub keys: usize,
    /// VLANs left to userspace because the outer map is full.
    pub overflowed_vlans: Vec<u16>,
    /// How long the last changing sync took, in microseconds.
    pub last_sync_us: u64,
}

/// The fast path as the CPU drives it; cheap to clone (the show commands hold a handle).
#[derive(Clone)]
pub struct KernelPath {
    fp: Arc<Mutex<FastPath>>,
    stats: Arc<Mutex<KernelPathStats>>,
    ifindexes: Vec<u32>,
    /// The last sync failed: try again.
    pub dirty: bool,
}

impl KernelPath {
    /// Takes the fast-path maps of `classifier` (ports registered with slot = port id, whose
    /// interfaces are `ifindexes`) and turns the fast path on for every VLAN; nothing is
    /// replicated in the kernel until the first [`KernelPath::sync`].
    pub fn new(
        classifier: &mut Classifier,
        ifindexes: Vec<u32>,
    ) -> Result<KernelPath, FastPathError> {
        let mut fp = FastPath::new(classifier)?;
        fp.set_scope(Scope::All);
        Ok(KernelPath {
            fp: Arc::new(Mutex::new(fp)),
            stats: Arc::default(),
            ifindexes,
            dirty: true,
        })
    }

    /// Makes the kernel maps match `table` and `ports`, leaving the ports in `down` out of
    /// every egress set (as the workers do); logs and counts a failure (then the next call
    /// retries).
    pub fn sync(&mut self, table: &ForwardingTable, ports: &PortMap, down: PortSet) {
        let started = Instant::now();
        // Interface 0 takes a port out of the kernel's egress sets.
        let ifindexes: Vec<u32> = self
            .ifindexes
            .iter()
            .enumerate()
            .map(|(p, &ifx)| match PortId::try_from(p) {
                Ok(id) if down.contains(id) => 0,
                _ => ifx,
            })
            .collect();
        let result = self
            .fp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sync(table, ports, &ifindexes);
        let mut st = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(report) => {
                self.dirty = false;
                st.last_error = None;
                if report.ops > 0 {
                    st.syncs += 1;
                    st.ops += report.ops as u64;
                    st.last_sync_us =
                        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    debug!(
                        ops = report.ops,
                        outer = report.outer_syscalls,
                        us = st.last_sync_us,
                        "kernel fast path synced"
                    );
                }
                if report.overflowed != st.overflowed_vlans {
                    if !report.overflowed.is_empty() {
                        warn!(vlans = ?report.overflowed, "the kernel fast path is full: these VLANs are forwarded by the AF_XDP workers");
                    }
                    st.overflowed_vlans = report.overflowed;
                }
            }
            Err(e) => {
                self.dirty = true;
                st.sync_errors += 1;
                let text = e.to_string();
                if st.last_error.as_deref() != Some(text.as_str()) {
                    warn!(error = %text, "programming the kernel fast path failed; retrying");
                }
                st.last_error = Some(text);
            }
        }
        st.keys = self
            .fp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .applied()
            .maps
            .len();
    }

    /// The counters as JSON (`dataplane.kernel_path` in `xsnoop stats`).
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::to_value(&*self.stats.lock().unwrap_or_else(PoisonError::into_inner))
            .unwrap_or_default()
    }

    /// Packets and bytes per (VLAN, source, group) the kernel replicated, as `xsnoop streams`
    /// rows; `forwarding` is the rule `table` applies to the stream now.
    pub fn flows_json(&self, table: &ForwardingTable) -> Vec<serde_json::Value> {
        let flows = self
            .fp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flows();
        match flows {
            Ok(f) => f
                .into_iter()
                .map(|f| {
                    // The rule does not depend on the ingress port; none is given.
                    let (_, rule) = table.multicast_egress(f.vlan, PortId::MAX, f.source, f.group);
                    let forwarding =
                        ForwardReason::from_rule(rule).map_or("unknown_vlan", |r| r.name());
                    serde_json::json!({
                        "vlan": f.vlan,
                        "source": f.source,
                        "group": f.group,
                        "packets": f.packets,
                        "bytes": f.bytes,
                        "forwarding": forwarding,
                    })
                })
                .collect(),
            Err(e) => {
                warn!(error = %e, "reading the kernel fast path's counters failed");
                Vec::new()
            }
        }
    }
}

/// Adds the kernel's per-flow counts to the workers' `xsnoop streams` answer: a stream seen by
/// both gets the sum (the kernel forwards it, the workers saw it while it was unregistered);
/// `kernel_packets` says how many of them the kernel replicated.
pub fn merge_streams(
    mut workers: serde_json::Value,
    kernel: Vec<serde_json::Value>,
) -> serde_json::Value {
    let Some(rows) = workers.get_mut("streams").and_then(|s| s.as_array_mut()) else {
        return workers;
    };
    for k in kernel {
        let same = |r: &serde_json::Value| {
            r["vlan"] == k["vlan"] && r["source"] == k["source"] && r["group"] == k["group"]
        };
        let (kp, kb) = (
            k["packets"].as_u64().unwrap_or(0),
            k["bytes"].as_u64().unwrap_or(0),
        );
        match rows.iter_mut().find(|r| same(r)) {
            Some(r) => {
                let p = r["packets"].as_u64().unwrap_or(0) + kp;
                let b = r["bytes"].as_u64().unwrap_or(0) + kb;
                r["packets"] = p.into();
                r["bytes"] = b.into();
                r["kernel_packets"] = kp.into();
            }
            None => {
                let mut r = k.clone();
                r["kernel_packets"] = kp.into();
                r["idle_ms"] = serde_json::Value::Null;
                rows.push(r);
            }
        }
    }
    rows.sort_by(|a, b| {
        let key = |r: &serde_json::Value| {
            (
                r["vlan"].as_u64().unwrap_or(0),
                r["group"]
                    .as_str()
                    .unwrap_or("")
                    .parse::<std::net::Ipv4Addr>()
                    .ok(),
                r["source"]
                    .as_str()
                    .unwrap_or("")
                    .parse::<std::net::Ipv4Addr>()
                    .ok(),
            )
        };
        key(a).cmp(&key(b))
    });
    workers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_name_themselves() {
        assert_eq!("xdp".parse::<DataplaneMode>(), Ok(DataplaneMode::Xdp));
        assert_eq!("afxdp".parse::<DataplaneMode>(), Ok(DataplaneMode::Afxdp));
        let e = "dpdk".parse::<DataplaneMode>().unwrap_err();
        assert!(e.contains("\"dpdk\"") && e.contains("afxdp"), "{e}");
        assert_eq!(DataplaneMode::default().to_string(), "afxdp");
    }

    #[test]
    fn kernel_counts_join_the_workers_streams() {
        let workers = serde_json::json!({"streams": [
            {"vlan": 1, "source": "10.0.0.1", "group": "239.1.1.1", "packets": 3, "bytes": 300, "idle_ms": 5, "forwarding": "mc_unregistered"}
        ], "untracked_frames": 0});
        let kernel = vec![
            serde_json::json!({"vlan": 1, "source": "10.0.0.1", "group": "239.1.1.1", "packets": 10, "bytes": 1000}),
            serde_json::json!({"vlan": 1, "source": "10.0.0.2", "group": "239.0.0.9", "packets": 7, "bytes": 70, "forwarding": "mc_registered"}),
        ];
        let v = merge_streams(workers, kernel);
        let rows = v["streams"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["group"], "239.0.0.9", "sorted by group: {v}");
        assert_eq!(rows[0]["forwarding"], "mc_registered");
        assert_eq!(rows[0]["kernel_packets"], 7);
        assert_eq!(rows[1]["packets"], 13);
        assert_eq!(rows[1]["kernel_packets"], 10);
    }
}
