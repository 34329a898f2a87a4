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
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use xsnoop_dataplane::fastpath::{FastPath, FastPathError, Scope};
use xsnoop_dataplane::forward::{FdbNotice, ForwardReason, PortMap};
use xsnoop_dataplane::table::TableDelta;
use xsnoop_dataplane::wire::MacAddr;
use xsnoop_dataplane::xdp::{abi, Classifier};
use xsnoop_dataplane::{ForwardingTable, PortId, PortSet, VlanId};

use super::kernel_fdb::KernelStations;

/// Where multicast is replicated.
///
/// The default is `auto`: the kernel replicates in every VLAN whose ports all accept XDP
/// redirects (the `ndo-xmit` XDP feature the kernel reports per interface; a veth reports it
/// only while its peer has GRO on or an XDP program), and the AF_XDP workers forward the other
/// VLANs. In-kernel replication is the faster wherever AF_XDP transmits by copy (veth, NICs
/// without zero-copy: ~4× the Linux bridge against ~1×, `bench/results`), and where the kernel
/// cannot deliver a redirect it would lose the frame silently, so the choice is made per VLAN
/// and followed while the switch runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataplaneMode {
    /// In the kernel wherever every port of the VLAN accepts redirects; AF_XDP elsewhere.
    #[default]
    Auto,
    /// In the kernel in every VLAN, whatever the ports report (a port that cannot take
    /// redirects loses what the kernel sends it: warned at start and when it changes).
    Xdp,
    /// Everything through the AF_XDP workers (replication by reference in userspace).
    Afxdp,
}

impl std::str::FromStr for DataplaneMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DataplaneMode::Auto),
            "xdp" => Ok(DataplaneMode::Xdp),
            "afxdp" => Ok(DataplaneMode::Afxdp),
            other => Err(format!(
                "dataplane = {other:?}: use \"auto\" (the default: in the kernel wherever every port of a VLAN accepts XDP redirects), \"xdp\" (always in the kernel) or \"afxdp\" (everything through AF_XDP)"
            )),
        }
    }
}

impl std::fmt::Display for DataplaneMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataplaneMode::Auto => "auto",
            DataplaneMode::Xdp => "xdp",
            DataplaneMode::Afxdp => "afxdp",
        })
    }
}

/// The VLANs the kernel forwards: all of them when `forced` (`dataplane = "xdp"`), otherwise
/// those whose every port (in the table and the port map) is in `accepting`, the ports that
/// accept XDP redirects. Down ports need no exception: they are left out of the egress sets.
pub fn scope_for(
    table: &ForwardingTable,
    ports: &PortMap,
    accepting: PortSet,
    forced: bool,
) -> Scope {
    if forced {
        return Scope::All;
    }
    Scope::Vlans(
        table
            .vlans
            .iter()
            .filter(|(vid, vt)| {
                vt.ports
                    .union(ports.members(**vid))
                    .difference(accepting)
                    .is_empty()
            })
            .map(|(vid, _)| *vid)
            .collect(),
    )
}

/// Counters of the map programming, for `xsnoop stats`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KernelPathStats {
    /// Syncs that changed something.
    pub syncs: u64,
    /// Syncs that took the changed groups of some VLAN from the engine's log instead of
    /// comparing every group (the cheap path of a join or leave).
    pub hinted_syncs: u64,
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
    /// How long the last changing sync took, in microseconds (planning included).
    pub last_sync_us: u64,
    /// Of that, until its last map change was live (a pool refill after it not included):
    /// how long a join waits for the kernel.
    pub last_applied_us: u64,
    /// Map-in-map system calls (each waits for an RCU grace period) made on the join and
    /// leave path; 0 while the list pool keeps up.
    pub grace_waits_on_path: u64,
    /// Replication lists (devmaps of egress ports, shared by keys with the same ports):
    /// in the pool, used by some key, free, waiting for a grace period.
    pub lists: ListCounts,
    /// Pool refills (growth or reclaim), each one grace period.
    pub pool_batches: u64,
    /// Device-change announcements that made the daemon re-read which ports accept
    /// redirects.
    pub device_notifications: u64,
    /// VLANs the kernel forwards now.
    pub kernel_vlans: Vec<u16>,
    /// VLANs the AF_XDP workers forward because one of their ports refuses XDP redirects
    /// (`dataplane = "auto"`).
    pub afxdp_vlans: Vec<u16>,
    /// Ports that do not accept XDP redirects (for a veth: its peer has GRO off and no XDP
    /// program), by name.
    pub ports_refusing_redirects: Vec<String>,
    /// Stations in the kernel's FDB (learned by the workers, plus static entries).
    pub stations: usize,
    /// Station entries written or removed in the kernel's FDB.
    pub station_writes: u64,
    /// Stations refreshed because the kernel forwarded their frames (the workers never saw
    /// them).
    pub stations_refreshed_by_kernel: u64,
    /// Stations aged out of the kernel's FDB.
    pub stations_aged: u64,
    /// Learning notices refused because the kernel's FDB is full.
    pub stations_refused_full: u64,
}

impl KernelPathStats {
    /// Counts a failed sync of `what` and keeps its error; logs it once per distinct error
    /// (the next CPU turn retries, and a persistent failure must not flood the log).
    fn failed(&mut self, what: &str, e: &FastPathError) {
        self.sync_errors += 1;
        let text = e.to_string();
        if self.last_error.as_deref() != Some(text.as_str()) {
            warn!(error = %text, "{what} failed; retrying");
        }
        self.last_error = Some(text);
    }
}

/// The replication-list pool ([`xsnoop_dataplane::fastpath::ListStats`]) as `xsnoop stats`
/// shows it.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ListCounts {
    /// Lists created in the kernel so far.
    pub pool: u32,
    /// Lists some key points at.
    pub live: usize,
    /// Lists ready for a new egress set.
    pub free: usize,
    /// Lists a key left, waiting for an RCU grace period before reuse.
    pub quarantined: usize,
}

/// What the show commands read of the fast path while the CPU programs it; cheap to clone.
#[derive(Clone)]
pub struct KernelPathView {
    fp: Arc<Mutex<FastPath>>,
    stats: Arc<Mutex<KernelPathStats>>,
}

/// The fast path as the CPU drives it: multicast groups, the VLANs in scope and the stations
/// for known unicast.
pub struct KernelPath {
    view: KernelPathView,
    ifindexes: Vec<u32>,
    /// `dataplane = "xdp"`: every VLAN, whatever the ports report.
    forced: bool,
    /// Ports that accept XDP redirects.
    accepting: PortSet,
    stations: KernelStations,
    /// The static stations last written.
    statics: Vec<(VlanId, MacAddr, PortId)>,
    /// The station map must be written (changed, or the last write failed).
    fdb_due: bool,
    /// CLOCK_MONOTONIC (ns) at the workers' FDB epoch, fixed at the first ageing round, so
    /// the kernel's stamps convert to the workers' clock the same way every round.
    epoch_ns: Option<u64>,
    /// The maps are behind: a table was published since the last sync, or it failed.
    pub dirty: bool,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath")
            .field("forced", &self.forced)
            .field("accepting", &self.accepting)
            .field("stations", &self.stations.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KernelPath {
    /// Takes the fast-path maps of `classifier` (ports registered with slot = port id, whose
    /// interfaces are `ifindexes`) with known unicast and broadcast in the kernel too; `forced`
    /// (`dataplane = "xdp"`) puts every VLAN in the kernel, otherwise only those whose ports
    /// accept redirects ([`KernelPath::set_accepting`]). Stations age after `ageing` without
    /// a frame (`fdb_ageing`), the workers' time. Nothing is replicated in the kernel until
    /// the first [`KernelPath::sync`].
    pub fn new(
        classifier: &mut Classifier,
        ifindexes: Vec<u32>,
        forced: bool,
        ageing: Duration,
    ) -> Result<KernelPath, FastPathError> {
        let mut fp = FastPath::new(classifier)?;
        fp.set_unicast(true);
        Ok(KernelPath {
            view: KernelPathView {
                fp: Arc::new(Mutex::new(fp)),
                stats: Arc::default(),
            },
            ifindexes,
            forced,
            accepting: PortSet::EMPTY,
            stations: KernelStations::new(ageing, abi::FP_MAX_FDB as usize),
            statics: Vec::new(),
            fdb_due: true,
            epoch_ns: None,
            dirty: true,
        })
    }

    /// A handle for the show commands.
    pub fn view(&self) -> KernelPathView {
        self.view.clone()
    }

    /// Records which ports accept XDP redirects (`names`: every port's name, for the
    /// statistics); returns whether that changed (then sync).
    pub fn set_accepting(&mut self, accepting: PortSet, names: &[String]) -> bool {
        let refusing = names
            .iter()
            .enumerate()
            .filter(|(p, _)| PortId::try_from(*p).is_ok_and(|p| !accepting.contains(p)))
            .map(|(_, n)| n.clone())
            .collect();
        lock(&self.view.stats).ports_refusing_redirects = refusing;
        let changed = accepting != self.accepting;
        self.accepting = accepting;
        changed
    }

    /// Counts a device-change announcement (the caller re-reads the ports' features).
    pub fn count_device_notification(&mut self) {
        lock(&self.view.stats).device_notifications += 1;
    }

    /// A worker learned, moved or refreshed a station at `now` (the workers' FDB clock).
    pub fn learn(&mut self, n: FdbNotice, now: Duration) {
        self.stations.learn(n, now);
    }

    /// A new station ageing time (`fdb_ageing` reloaded), applied from the next
    /// [`KernelPath::age_stations`].
    pub fn set_ageing(&mut self, ageing: Duration) {
        self.stations.set_ageing(ageing);
    }

    /// Ports that went down: their stations leave the kernel's FDB at the next sync.
    pub fn forget_ports(&mut self, ports: PortSet) {
        self.stations.forget_ports(ports);
    }

    /// Ages the stations at `now`: those no worker reported for a while are refreshed from
    /// the kernel's own stamps (it forwarded their frames), the rest expire. Returns the
    /// stations the kernel kept alive, for the workers' tables.
    pub fn age_stations(&mut self, now: Duration) -> Vec<FdbNotice> {
        // The kernel's clock at the FDB epoch, read once (see refresh_from_kernel).
        let epoch_ns = *self.epoch_ns.get_or_insert_with(|| {
            monotonic_ns().saturating_sub(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX))
        });
        let alive = {
            let fp = lock(&self.view.fp);
            self.stations
                .refresh_from_kernel(now, epoch_ns, |vlan, mac| {
                    fp.station_seen(vlan, mac).ok().flatten()
                })
        };
        let aged = self.stations.expire(now);
        let mut st = lock(&self.view.stats);
        st.stations_refreshed_by_kernel += alive.len() as u64;
        st.stations_aged += aged as u64;
        alive
    }

    /// Writes the station map if it changed; cheap when nothing did (call every CPU turn).
    pub fn sync_stations(&mut self, ports: &PortMap) {
        let statics = ports.static_fdb();
        self.fdb_due |= self.stations.take_changed() || statics != self.statics.as_slice();
        if !self.fdb_due {
            return;
        }
        // Static entries last: they win over a learned entry for the same station.
        let all = self.stations.stations().chain(statics.iter().copied());
        let result = lock(&self.view.fp).sync_fdb(all);
        let mut st = lock(&self.view.stats);
        st.stations = self.stations.len() + statics.len();
        st.stations_refused_full = self.stations.refused_full();
        match result {
            Ok(r) => {
                self.fdb_due = false;
                self.statics = statics.to_vec();
                st.station_writes += (r.written + r.removed) as u64;
            }
            Err(e) => st.failed("writing the kernel's station table", &e),
        }
    }

    /// Makes the kernel maps match `table` and `ports`, leaving the ports in `down` out of
    /// every egress set (as the workers do) and the VLANs with a port that refuses redirects
    /// to the workers (unless forced); logs and counts a failure (then the next call
    /// retries). `hint` names every table entry published since the last successful call
    /// ([`crate::plane::ControlPlane::sync_published`]), so a join replans one group instead
    /// of comparing every group of its VLAN; `None` compares them all. Returns whether the
    /// kernel now matches: only then may the caller forget the hinted changes.
    pub fn sync(
        &mut self,
        table: &ForwardingTable,
        ports: &PortMap,
        down: PortSet,
        hint: Option<&TableDelta>,
    ) -> bool {
        let started = Instant::now();
        let mut synced = false;
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
        let scope = scope_for(table, ports, self.accepting, self.forced);
        let (result, keys, lists) = {
            let mut fp = lock(&self.view.fp);
            fp.set_scope(scope.clone());
            let r = fp.sync_hinted(table, ports, &ifindexes, hint);
            (r, fp.applied().maps.len(), fp.list_stats())
        };
        {
            let mut st = lock(&self.view.stats);
            st.keys = keys;
            st.lists = ListCounts {
                pool: lists.pool,
                live: lists.live,
                free: lists.free,
                quarantined: lists.quarantined,
            };
            let (mut inside, mut outside): (Vec<u16>, Vec<u16>) =
                table.vlans.keys().partition(|v| scope.covers(**v));
            inside.sort_unstable();
            outside.sort_unstable();
            if outside != st.afxdp_vlans && !outside.is_empty() {
                info!(vlans = ?outside, refusing = ?st.ports_refusing_redirects, "these VLANs are forwarded by the AF_XDP workers: a port of theirs does not accept XDP redirects");
            }
            st.kernel_vlans = inside;
            st.afxdp_vlans = outside;
            match result {
                Ok(report) => {
                    self.dirty = false;
                    synced = true;
                    st.last_error = None;
                    st.pool_batches += report.pool_batches as u64;
                    st.hinted_syncs += u64::from(report.vlans_hinted > 0);
                    if report.ops > 0 {
                        st.syncs += 1;
                        st.ops += report.ops as u64;
                        st.grace_waits_on_path += report.outer_syscalls as u64;
                        st.last_sync_us =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        st.last_applied_us =
                            u64::try_from(report.applied_in.as_micros()).unwrap_or(u64::MAX);
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
                    st.failed("programming the kernel fast path", &e);
                }
            }
        }
        self.sync_stations(ports);
        synced
    }
}

impl KernelPathView {
    /// The counters as JSON (`dataplane.kernel_path` in `xsnoop stats`).
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::to_value(&*lock(&self.stats)).unwrap_or_default()
    }

    /// Packets and bytes per (VLAN, source, group) the kernel replicated, as `xsnoop streams`
    /// rows; `forwarding` is the rule `table` applies to the stream now.
    pub fn flows_json(&self, table: &ForwardingTable) -> Vec<serde_json::Value> {
        let flows = lock(&self.fp).flows();
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

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, the kernel's stamps.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
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
        assert_eq!("auto".parse::<DataplaneMode>(), Ok(DataplaneMode::Auto));
        assert_eq!(DataplaneMode::default().to_string(), "auto");
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
