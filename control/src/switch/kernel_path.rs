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
//!
//! Except one failure, which a retry cannot cure: no replication list left (every list is a
//! descriptor, and RLIMIT_NOFILE is reached; or the `FP_MAX_LISTS` cap). The kernel would keep
//! forwarding a group that needed a new list by the unregistered rule, and its new member
//! would get nothing for as long as the limit holds. So the VLANs the failing sync was
//! changing leave the kernel's scope in the same call ([`vlans_to_starve`]): the re-sync
//! deletes their keys, which frees their lists for the other VLANs, and the AF_XDP workers,
//! which always hold the complete published table, forward them. They are tried again every
//! [`STARVED_RETRY`] and on a reload.

use std::collections::BTreeSet;
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

/// How long VLANs given to the AF_XDP workers for lack of replication lists stay there before
/// the kernel path tries them again (a reload tries at once): meanwhile the descriptor limit
/// may have been raised (`prlimit --pid`) or groups may have left and freed lists. A retry
/// that runs short again costs one extra sync a minute and disturbs no VLAN in the kernel.
pub const STARVED_RETRY: Duration = Duration::from_secs(60);

/// Which VLANs to give to the AF_XDP workers after a sync failed for lack of replication
/// lists, among `in_scope` (the VLANs that sync had in the kernel's scope): the VLANs it was
/// changing, i.e. those of `hint` (its VLANs and its groups' VLANs, unless it says `all`) and
/// the `retried` ones (starved VLANs it was putting back); when none of those is in scope
/// (no usable hint, a start-up, a reload), the in-scope VLAN with the highest id, so that
/// repeated calls shed one VLAN at a time. Empty only when nothing is in scope.
pub fn vlans_to_starve(
    hint: Option<&TableDelta>,
    retried: &BTreeSet<VlanId>,
    in_scope: &BTreeSet<VlanId>,
) -> BTreeSet<VlanId> {
    let mut changing: BTreeSet<VlanId> = retried.clone();
    if let Some(h) = hint.filter(|h| !h.all) {
        changing.extend(h.vlans.iter().copied());
        changing.extend(h.groups.iter().map(|(v, _)| *v));
    }
    let pick: BTreeSet<VlanId> = changing.intersection(in_scope).copied().collect();
    if !pick.is_empty() {
        return pick;
    }
    in_scope.last().copied().into_iter().collect()
}

/// `scope` without the `starved` VLANs (`All` becomes the table's other VLANs).
fn without_starved(scope: Scope, starved: &BTreeSet<VlanId>, table: &ForwardingTable) -> Scope {
    if starved.is_empty() {
        return scope;
    }
    match scope {
        Scope::Off => Scope::Off,
        Scope::All => Scope::Vlans(
            table
                .vlans
                .keys()
                .filter(|v| !starved.contains(v))
                .copied()
                .collect(),
        ),
        Scope::Vlans(s) => Scope::Vlans(s.difference(starved).copied().collect()),
    }
}

/// The VLANs the kernel path gave to the workers for lack of replication lists, and when to
/// try them again.
#[derive(Debug, Default)]
struct Starved {
    vlans: BTreeSet<VlanId>,
    /// When the next retry is due (set while `vlans` is not empty).
    retry_at: Option<Instant>,
    /// A reload asked for a retry at the next sync.
    retry_now: bool,
    /// The set last warned about: a retry that runs short again with the same set is quiet.
    warned: BTreeSet<VlanId>,
}

impl Starved {
    /// Whether the next sync should put the starved VLANs back in scope.
    fn due(&self, now: Instant) -> bool {
        !self.vlans.is_empty() && (self.retry_now || self.retry_at.is_some_and(|t| now >= t))
    }

    /// Takes every starved VLAN out for a retry.
    fn take_for_retry(&mut self) -> BTreeSet<VlanId> {
        self.retry_now = false;
        self.retry_at = None;
        std::mem::take(&mut self.vlans)
    }

    /// After a sync that succeeded at `now`: schedules the next retry if VLANs are starved.
    /// Returns what to log: `Some(true)` a new starved set (warn), `Some(false)` every VLAN
    /// back in the kernel (after a warning), `None` nothing new.
    fn settle(&mut self, now: Instant, every: Duration) -> Option<bool> {
        if self.vlans.is_empty() {
            self.retry_at = None;
            return (!std::mem::take(&mut self.warned).is_empty()).then_some(false);
        }
        if self.retry_at.is_none() {
            self.retry_at = Some(now + every);
        }
        if self.vlans == self.warned {
            return None;
        }
        self.warned = self.vlans.clone();
        Some(true)
    }
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
    /// VLANs the AF_XDP workers forward: one of their ports refuses XDP redirects
    /// (`dataplane = "auto"`), or they are in `list_starved_vlans`.
    pub afxdp_vlans: Vec<u16>,
    /// VLANs the AF_XDP workers forward because the kernel ran out of replication lists
    /// (RLIMIT_NOFILE or the list cap); retried every minute and on a reload.
    pub list_starved_vlans: Vec<u16>,
    /// Why they are: the shortage that moved them (names the fix), while any is.
    pub list_shortage: Option<String>,
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
    /// VLANs out of the kernel's scope for lack of replication lists.
    starved: Starved,
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
            starved: Starved::default(),
            dirty: true,
        })
    }

    /// Whether VLANs given to the workers for lack of replication lists are due for another
    /// try (every [`STARVED_RETRY`], or after [`KernelPath::retry_starved`]): then call
    /// [`KernelPath::sync`] even if nothing was published.
    pub fn retry_due(&self) -> bool {
        self.starved.due(Instant::now())
    }

    /// A reload: the next [`KernelPath::sync`] tries the starved VLANs in the kernel again
    /// (the operator may have raised the limit).
    pub fn retry_starved(&mut self) {
        // Only for VLANs starved now: a flag left set would retry the next shortage at once.
        self.starved.retry_now = !self.starved.vlans.is_empty();
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
    ///
    /// When no replication list can be had, the VLANs [`vlans_to_starve`] names leave the
    /// kernel's scope and the sync runs again, until it succeeds (at most once per VLAN): the
    /// kernel keeps what it can hold and the workers forward the rest, rather than a group
    /// silently following the unregistered rule in the kernel.
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
        let base = scope_for(table, ports, self.accepting, self.forced);
        self.starved.vlans.retain(|v| table.vlans.contains_key(v));
        let mut retried = if self.starved.due(started) {
            self.starved.take_for_retry()
        } else {
            BTreeSet::new()
        };
        let mut changing = hint;
        let mut shortages = 0u64;
        let mut shortage = None;
        // Each shortage takes at least one in-scope VLAN out, so this ends; bounded anyway.
        let mut rounds = table.vlans.len() + 1;
        let (result, scope, keys, lists) = loop {
            let scope = without_starved(base.clone(), &self.starved.vlans, table);
            let (result, keys, lists) = {
                let mut fp = lock(&self.view.fp);
                fp.set_scope(scope.clone());
                let r = fp.sync_hinted(table, ports, &ifindexes, hint);
                (r, fp.applied().maps.len(), fp.list_stats())
            };
            rounds = rounds.saturating_sub(1);
            let pick = match &result {
                Err(e) if e.is_list_shortage() && rounds > 0 => {
                    let in_scope: BTreeSet<VlanId> = table
                        .vlans
                        .keys()
                        .filter(|v| scope.covers(**v))
                        .copied()
                        .collect();
                    vlans_to_starve(changing, &retried, &in_scope)
                }
                _ => BTreeSet::new(),
            };
            if pick.is_empty() {
                break (result, scope, keys, lists);
            }
            if let Err(e) = &result {
                shortages += 1;
                shortage = Some(e.to_string());
            }
            self.starved.vlans.extend(pick);
            // Next time the highest in-scope VLAN: what was changing is out now.
            changing = None;
            retried.clear();
        };
        {
            let mut st = lock(&self.view.stats);
            st.sync_errors += shortages;
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
            let refusing = |out: &[u16], starved: &[u16]| -> Vec<u16> {
                out.iter()
                    .filter(|v| !starved.contains(v))
                    .copied()
                    .collect()
            };
            let starved: Vec<u16> = self.starved.vlans.iter().copied().collect();
            let refusing_now = refusing(&outside, &starved);
            if refusing_now != refusing(&st.afxdp_vlans, &st.list_starved_vlans)
                && !refusing_now.is_empty()
            {
                info!(vlans = ?refusing_now, refusing = ?st.ports_refusing_redirects, "these VLANs are forwarded by the AF_XDP workers: a port of theirs does not accept XDP redirects");
            }
            st.kernel_vlans = inside;
            st.afxdp_vlans = outside;
            st.list_starved_vlans = starved;
            if shortage.is_some() {
                st.list_shortage = shortage;
            }
            match result {
                Ok(report) => {
                    self.dirty = false;
                    synced = true;
                    st.last_error = None;
                    match self.starved.settle(started, STARVED_RETRY) {
                        Some(true) => warn!(
                            vlans = ?st.list_starved_vlans,
                            error = st.list_shortage.as_deref().unwrap_or(""),
                            "the kernel fast path has no replication list left for these VLANs: the AF_XDP workers forward them (to exactly their members, more slowly) until a retry (every {} s, or on a reload) finds lists; raise the descriptor limit as the error says",
                            STARVED_RETRY.as_secs()
                        ),
                        Some(false) => {
                            info!("every VLAN the kernel fast path had given to the AF_XDP workers for lack of replication lists is back in the kernel");
                        }
                        None => {}
                    }
                    if st.list_starved_vlans.is_empty() {
                        st.list_shortage = None;
                    }
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
                    // VLANs taken out for a retry that failed for another reason go back to
                    // the workers until the next retry.
                    self.starved.vlans.extend(retried);
                    if !self.starved.vlans.is_empty() && self.starved.retry_at.is_none() {
                        self.starved.retry_at = Some(started + STARVED_RETRY);
                    }
                    st.list_starved_vlans = self.starved.vlans.iter().copied().collect();
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

    fn set(v: &[VlanId]) -> BTreeSet<VlanId> {
        v.iter().copied().collect()
    }

    #[test]
    fn a_shortage_starves_the_vlans_the_sync_was_changing() {
        let scope = set(&[1, 5, 9]);
        let mut h = TableDelta::default();
        h.group(5, std::net::Ipv4Addr::new(239, 1, 1, 1));
        h.vlan(9);
        // Its groups' VLANs and its VLANs, not the others.
        assert_eq!(vlans_to_starve(Some(&h), &set(&[]), &scope), set(&[5, 9]));
        // Starved VLANs being retried are what changed too.
        let only_group = {
            let mut d = TableDelta::default();
            d.group(1, std::net::Ipv4Addr::new(239, 1, 1, 2));
            d
        };
        assert_eq!(
            vlans_to_starve(Some(&only_group), &set(&[9]), &scope),
            set(&[1, 9])
        );
        assert_eq!(
            vlans_to_starve(Some(&TableDelta::default()), &set(&[5]), &scope),
            set(&[5])
        );
        // Changed VLANs outside the scope (refusing redirects, already starved) are no use.
        let mut outside = TableDelta::default();
        outside.vlan(7);
        assert_eq!(
            vlans_to_starve(Some(&outside), &set(&[8]), &scope),
            set(&[9])
        );
    }

    #[test]
    fn without_a_usable_hint_the_highest_vlan_goes_first_one_at_a_time() {
        let scope = set(&[1, 5, 9]);
        assert_eq!(vlans_to_starve(None, &set(&[]), &scope), set(&[9]));
        assert_eq!(
            vlans_to_starve(Some(&TableDelta::everything()), &set(&[]), &scope),
            set(&[9])
        );
        assert_eq!(
            vlans_to_starve(Some(&TableDelta::default()), &set(&[]), &scope),
            set(&[9])
        );
        // Repeated, the loop sheds 9, then 5, then 1, then has nothing left to take.
        let mut left = scope.clone();
        let mut order = Vec::new();
        loop {
            let pick = vlans_to_starve(None, &set(&[]), &left);
            if pick.is_empty() {
                break;
            }
            order.extend(pick.iter().copied());
            left = left.difference(&pick).copied().collect();
        }
        assert_eq!(order, vec![9, 5, 1]);
    }

    #[test]
    fn starved_vlans_leave_every_scope() {
        let mut table = ForwardingTable::default();
        for v in [1, 2, 3] {
            table.vlans.insert(v, Default::default());
        }
        let none = set(&[]);
        assert_eq!(without_starved(Scope::All, &none, &table), Scope::All);
        assert_eq!(
            without_starved(Scope::All, &set(&[2]), &table),
            Scope::Vlans(set(&[1, 3]))
        );
        assert_eq!(
            without_starved(Scope::Vlans(set(&[2, 3])), &set(&[3]), &table),
            Scope::Vlans(set(&[2]))
        );
        assert_eq!(without_starved(Scope::Off, &set(&[1]), &table), Scope::Off);
    }

    #[test]
    fn starved_vlans_are_retried_every_minute_or_on_a_reload_and_warned_once_per_set() {
        let t0 = Instant::now();
        let mut s = Starved::default();
        assert!(!s.due(t0 + STARVED_RETRY * 2), "nothing starved");
        s.vlans = set(&[4]);
        assert_eq!(s.settle(t0, STARVED_RETRY), Some(true), "a new set warns");
        assert!(!s.due(t0 + STARVED_RETRY - Duration::from_millis(1)));
        assert!(s.due(t0 + STARVED_RETRY));
        // The retry takes them out; running short again brings back the same set: quiet,
        // and the next retry is a minute after that sync.
        let t1 = t0 + STARVED_RETRY;
        assert_eq!(s.take_for_retry(), set(&[4]));
        assert!(!s.due(t1));
        s.vlans = set(&[4]);
        assert_eq!(s.settle(t1, STARVED_RETRY), None);
        assert!(!s.due(t1 + Duration::from_secs(1)));
        assert!(s.due(t1 + STARVED_RETRY));
        // A reload asks at once.
        s.retry_now = true;
        assert!(s.due(t1));
        let _ = s.take_for_retry();
        assert!(!s.retry_now);
        // Another set warns again; every VLAN back says so once.
        s.vlans = set(&[4, 6]);
        assert_eq!(s.settle(t1, STARVED_RETRY), Some(true));
        let _ = s.take_for_retry();
        assert_eq!(s.settle(t1, STARVED_RETRY), Some(false));
        assert_eq!(s.settle(t1, STARVED_RETRY), None);
        assert!(!s.due(t1 + STARVED_RETRY * 2));
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
