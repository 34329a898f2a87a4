//! The in-kernel fast path: the snooping table drives XDP replication.
//!
//! On veth and every NIC without AF_XDP zero-copy, each AF_XDP transmit copies the frame into a
//! new skb, so a userspace replicator cannot beat the Linux bridge by much; a devmap broadcast
//! in XDP replicates ~5× faster. So, like a hardware switch whose CPU runs the protocol while the
//! ASIC replicates, the engine's [`ForwardingTable`] is compiled into BPF maps and the XDP
//! program (`ebpf/xsnoop.bpf.c`) replicates registered IPv4 multicast data itself: a hash
//! keyed by (VLAN, group[, source]) names a replication list, an inner `DEVMAP_HASH` holding
//! exactly the egress ports (RFC 4541 §2.1.2), shared by every key with the same ports. IGMP,
//! PIM, MRD and everything else still reach userspace through AF_XDP.
//!
//! Lists are created ahead of need in a pool, because inserting a map into a map-in-map waits
//! for an RCU grace period (~10 ms here): a new group only fills a pooled list and writes one
//! hash entry, so it forwards within a fraction of a millisecond (see [`lists`]).
//!
//! - [`plan`] computes the desired map contents (pure);
//! - [`diff`] turns applied → desired into ordered map operations (pure);
//! - [`lists`] decides which list each key uses and when a list may be rewritten (pure);
//! - [`incremental`] reruns the planner only where the table changed since the last sync, so
//!   a join costs about the same with 100 000 groups as with 10 (pure);
//! - [`FastPath`] owns the maps and applies only the difference on each [`FastPath::sync`].
//!
//! Integration: load the [`Classifier`], attach it and register every port with slot = port id
//! (as `xsnoop run` does), then [`FastPath::new`], [`FastPath::set_scope`] and call
//! [`FastPath::sync`] after every table or port-map publication, from inside the switch's
//! network namespace (devmap ifindexes are resolved in the writer's namespace).

pub mod diff;
pub mod incremental;
mod kernel;
pub mod lists;
pub mod plan;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use aya::maps::xdp::{DevMapHash, XdpMapError};
use aya::maps::{Map, MapData, MapError};

use crate::forward::portmap::PortMap;
use crate::portset::PortId;
use crate::table::{ForwardingTable, TableDelta, VlanId};
use crate::wire::MacAddr;
use crate::xdp::abi::{self, FpFdbKey, FpFdbVal, FpKey, FP_KIND_FLOW};
use crate::xdp::{Classifier, FastPathMaps, XdpError};

pub use diff::MapOp;
pub use incremental::Tracker;
pub use lists::{ListBook, ListId, Placement, Refill};
pub use plan::{Desired, DevEntry, EgressProg, EgressSet, Scope};

/// Why programming the fast path failed. After an error the maps hold a consistent prefix of
/// the update (see [`diff`]); the next [`FastPath::sync`] continues from there.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// The classifier has no fast-path maps (already taken, or an object without them).
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// A map update, delete or lookup failed.
    #[error("fast-path map {map}: {source}; is the XDP program still loaded?")]
    Map {
        /// Map name.
        map: &'static str,
        /// What aya/the kernel said.
        #[source]
        source: Box<MapError>,
    },
    /// Writing an inner devmap entry failed (e.g. the interface is gone, or a kernel without
    /// devmap egress programs).
    #[error("fast-path devmap entry for port {port} (ifindex {ifindex}): {source}; does the interface exist in this namespace?")]
    DevMap {
        /// Port.
        port: u16,
        /// Interface index written.
        ifindex: u32,
        /// What aya/the kernel said.
        #[source]
        source: Box<XdpMapError>,
    },
    /// No free replication list even after a pool batch (`FP_MAX_LISTS` lists in use, or a
    /// list id this process never created).
    #[error(
        "no free fast-path replication list (all {} in use)",
        abi::FP_MAX_LISTS
    )]
    PoolExhausted,
    /// The kernel refused to create an inner devmap (memory limits, missing privilege).
    #[error("creating a fast-path devmap failed: {0}; needs CAP_BPF and kernel ≥ 5.4")]
    CreateInner(#[source] std::io::Error),
    /// Every replication list is a descriptor this process keeps open, and none is left: the
    /// pool cannot grow past RLIMIT_NOFILE (a table with that many distinct egress sets).
    #[error("no file descriptor left for another fast-path replication list ({lists} lists, RLIMIT_NOFILE {limit}, {RESERVED_FDS} kept for the rest of the switch); raise it, e.g. LimitNOFILE={want} in the systemd unit")]
    Descriptors {
        /// Lists already created.
        lists: u32,
        /// The soft limit in force.
        limit: u64,
        /// What the fast path asks for at most.
        want: u64,
    },
}

impl FastPathError {
    /// Whether no replication list could be had (the descriptor limit, or the `FP_MAX_LISTS`
    /// cap): the caller may take VLANs out of the fast path's scope, which frees their lists,
    /// and let userspace forward them, instead of leaving their new groups out of the kernel.
    pub fn is_list_shortage(&self) -> bool {
        matches!(
            self,
            FastPathError::Descriptors { .. } | FastPathError::PoolExhausted
        )
    }
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> FastPathError {
    move |e| FastPathError::Map {
        map,
        source: Box::new(e),
    }
}

/// What one [`FastPath::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Map operations applied (0: the maps already matched).
    pub ops: usize,
    /// Keys given a new egress set (new keys and changed ones).
    pub maps_put: usize,
    /// Keys deleted.
    pub maps_deleted: usize,
    /// Map-in-map system calls made before the last map operation of this sync was applied,
    /// i.e. on the join/leave path; each waits for an RCU grace period (~10 ms here). 0 once
    /// the list pool is warm: new keys take a pooled list and only plain maps change.
    pub outer_syscalls: usize,
    /// Replication lists taken from the pool and filled for a set no list held yet.
    pub lists_created: usize,
    /// Keys pointed at a list another key already used (identical egress entries).
    pub lists_shared: usize,
    /// Lists edited in place (the only key using it changed its set).
    pub lists_edited: usize,
    /// Shared lists rewritten in place because every key using them moved to the same new set
    /// (a multicast router appearing, a port going down): their keys were not touched.
    pub lists_retargeted: usize,
    /// Pool batches (growth, or a grace period to free quarantined lists), on the join path
    /// (counted in `outer_syscalls` too) or after it.
    pub pool_batches: usize,
    /// Time from the start of the sync until its last map operation was applied (the pool
    /// batch after it, if any, not included).
    pub applied_in: Duration,
    /// In-scope VLANs left to userspace because `fp_groups` (`FP_MAX_KEYS` keys) is full.
    pub overflowed: Vec<VlanId>,
    /// The whole table was replanned (first sync, new scope, unicast setting or port set, or
    /// after a failed sync); otherwise only what changed since the last sync was.
    pub full_replan: bool,
    /// Groups replanned one by one (the cost of an incremental sync grows with this, not with
    /// the table).
    pub groups_replanned: usize,
    /// VLANs whose changed groups came from the caller's hint, without a group scan.
    pub vlans_hinted: usize,
}

/// The replication-list pool, for statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListStats {
    /// Lists inserted into `fp_lists` so far.
    pub pool: u32,
    /// Lists some key points at.
    pub live: usize,
    /// Lists free to take.
    pub free: usize,
    /// Lists waiting for an RCU grace period before they can be reused.
    pub quarantined: usize,
}

/// What one [`FastPath::sync_fdb`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbSyncReport {
    /// Stations written (new, or moved to another port).
    pub written: usize,
    /// Stations removed.
    pub removed: usize,
}

/// Packets and bytes of one (VLAN, source, group) flow replicated by the fast path, summed
/// over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowCounters {
    /// VLAN.
    pub vlan: VlanId,
    /// IPv4 source.
    pub source: Ipv4Addr,
    /// Group (or 224.0.0.x destination).
    pub group: Ipv4Addr,
    /// Packets.
    pub packets: u64,
    /// Octets as received (tag included).
    pub bytes: u64,
}

/// Lists created when the fast path starts, and the least a growth batch adds.
const POOL_BATCH: u32 = 64;

/// Key updates a sync must be spared before it waits one grace period (~10 ms here) so that
/// lists keys just left can be rewritten in place: 4096 updates take ~15-30 ms here.
const GRACE_WORTH_KEYS: u64 = 4096;

/// Descriptors the replication lists leave to the rest of the switch (control connections,
/// link probes, a reload's file, AF_XDP sockets of a port coming back). Each list is a
/// descriptor; a pool that took the last one would leave the switch unable to read its links
/// or answer `xsnoop stats` just when the shortage needs reporting (seen end to end in
/// `fastpath_limits_e2e` before this reserve existed).
pub const RESERVED_FDS: u64 = 64;

/// Descriptors the fast path would like: one per possible list, plus room for the rest of the
/// switch (sockets, maps, the control socket).
const NOFILE_WANTED: u64 = abi::FP_MAX_LISTS as u64 + 1024;

/// The fast path's maps, what they hold, and which VLANs it covers.
pub struct FastPath {
    maps: FastPathMaps,
    applied: Desired,
    scope: Scope,
    /// Every replication list (index = list id in `fp_lists`), kept open for in-place writes
    /// (re-opening by id would need CAP_SYS_ADMIN). `new` raises RLIMIT_NOFILE to cover them.
    lists: Vec<Inner>,
    /// Which key uses which list, which lists are free or quarantined.
    book: ListBook,
    /// Known unicast and broadcast in the kernel too (see [`FastPath::set_unicast`]).
    unicast: bool,
    /// `fp_fdb` as written: station → port slot.
    fdb: BTreeMap<FpFdbKey, u32>,
    /// What the last plan was made from, so a sync replans only what changed.
    tracker: Tracker,
}

/// One inner devmap this process created, and its descriptor number (owned by `dev`).
struct Inner {
    dev: DevMapHash<MapData>,
    raw_fd: u32,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("scope", &self.scope)
            .field("keys", &self.applied.maps.len())
            .field("vlans", &self.applied.vlans.keys().collect::<Vec<_>>())
            .field("lists", &self.list_stats())
            .finish_non_exhaustive()
    }
}

impl FastPath {
    /// Takes the fast-path maps out of a loaded classifier and fills the first pool of
    /// replication lists (one batch: one RCU grace period, ~10 ms). The scope starts
    /// [`Scope::Off`]: the program still sends every frame to AF_XDP until
    /// [`FastPath::set_scope`] and a sync.
    pub fn new(classifier: &mut Classifier) -> Result<FastPath, FastPathError> {
        raise_nofile(NOFILE_WANTED);
        let mut fp = FastPath {
            maps: classifier.take_fast_path_maps()?,
            applied: Desired::default(),
            scope: Scope::Off,
            lists: Vec::new(),
            book: ListBook::default(),
            unicast: false,
            fdb: BTreeMap::new(),
            tracker: Tracker::default(),
        };
        fp.grow(POOL_BATCH)?;
        Ok(fp)
    }

    /// Chooses the VLANs the fast path forwards; takes effect at the next [`FastPath::sync`].
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
    }

    /// Also forward known unicast and broadcast in the kernel (takes effect at the next
    /// [`FastPath::sync`]). Then every fast-path frame, multicast too, needs a source MAC that
    /// [`FastPath::sync_fdb`] wrote for its ingress port; any other frame goes to userspace,
    /// which learns it, so learning and ageing keep one owner. Off by default.
    pub fn set_unicast(&mut self, on: bool) {
        self.unicast = on;
    }

    /// Writes the learned stations (VLAN, MAC, port) into `fp_fdb`, changing only what
    /// differs from the last call. Entries for ports beyond `MAX_SLOTS` are ignored.
    pub fn sync_fdb(
        &mut self,
        stations: impl IntoIterator<Item = (VlanId, MacAddr, PortId)>,
    ) -> Result<FdbSyncReport, FastPathError> {
        let want: BTreeMap<FpFdbKey, u32> = stations
            .into_iter()
            .filter(|(_, _, p)| u32::from(*p) < abi::MAX_SLOTS)
            .map(|(vlan, mac, p)| (FpFdbKey { vlan, mac: mac.0 }, u32::from(p)))
            .collect();
        let mut report = FdbSyncReport::default();
        for (k, slot) in &want {
            if self.fdb.get(k) != Some(slot) {
                let v = FpFdbVal {
                    slot: *slot,
                    seen_jiffies: 0,
                    seen_ns: 0,
                };
                self.maps
                    .fdb
                    .insert(k, v, 0)
                    .map_err(map_err(abi::MAP_FP_FDB))?;
                self.fdb.insert(*k, *slot);
                report.written += 1;
            }
        }
        let stale: Vec<FpFdbKey> = self
            .fdb
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for k in stale {
            match self.maps.fdb.remove(&k) {
                Ok(()) => {}
                Err(e) if is_enoent(&e) => {}
                Err(e) => return Err(map_err(abi::MAP_FP_FDB)(e)),
            }
            self.fdb.remove(&k);
            report.removed += 1;
        }
        Ok(report)
    }

    /// When the kernel last forwarded a frame from `mac` in `vlan` (CLOCK_MONOTONIC ns,
    /// refreshed at most once a second), so ageing can count kernel-forwarded traffic;
    /// `None` if not in `fp_fdb` or not seen since it was written.
    pub fn station_seen(&self, vlan: VlanId, mac: MacAddr) -> Result<Option<u64>, FastPathError> {
        match self.maps.fdb.get(&FpFdbKey { vlan, mac: mac.0 }, 0) {
            Ok(v) if v.seen_ns == 0 => Ok(None),
            Ok(v) => Ok(Some(v.seen_ns)),
            Err(e) if is_enoent(&e) => Ok(None),
            Err(e) => Err(map_err(abi::MAP_FP_FDB)(e)),
        }
    }

    /// The current scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// What the kernel maps hold now, as far as this process applied it.
    pub fn applied(&self) -> &Desired {
        &self.applied
    }

    /// Makes the kernel maps match `table` and `ports` (port `p` is interface
    /// `ifindex_of_port[p]` and classifier slot `p`), changing only what differs from the last
    /// sync. Call it from inside the switch's network namespace after each publication.
    /// Without a hint the changed groups are found by comparing every group (see
    /// [`FastPath::sync_hinted`], which a caller that knows what changed should use).
    pub fn sync(
        &mut self,
        table: &ForwardingTable,
        ports: &PortMap,
        ifindex_of_port: &[u32],
    ) -> Result<SyncReport, FastPathError> {
        self.sync_hinted(table, ports, ifindex_of_port, None)
    }

    /// [`FastPath::sync`] told which table entries changed since the last successful sync:
    /// `hint` must name every changed (VLAN, group) and every VLAN whose own fields changed
    /// (the engine's [`crate::table::TableDelta`], accumulated over every publication since;
    /// `all` or `None` when unknown). After a failed sync the next one replans everything
    /// whatever its hint.
    ///
    /// Planning: only what changed since the last sync is replanned and diffed (see
    /// [`incremental`]): with a hint, the hinted groups alone; without one, one hash lookup per
    /// group of a VLAN finds the changed ones. A VLAN-wide change replans that VLAN, a first
    /// sync or one after a failure the whole table. Measured in release on this 2-core VM
    /// shared with other builds (`sync_cost`, medians of 21 joins, two runs, noisy), one join
    /// at 1 000 / 10 000 / 100 000 installed groups in one VLAN: hinted 3–7 µs at every size
    /// (the cost of the change, whatever the table holds; ~7 µs too when it fills a pooled
    /// list); unhinted 11–18 µs / 0.14–0.27 ms / 5.8–6.4 ms (the scan reads both ~10 MB
    /// tables); a full replan 0.5 / 15 / 200 ms. In `xsnoop run` with 100 000 static groups, a
    /// host joining and leaving over veths, `last_sync_us` was 55–94 µs per join or leave,
    /// against 2.3–5.2 ms before the hint; instrumented, ~35 µs of it planning and ~25 µs the
    /// one map write, each sync alone on cold caches (the loop above runs them back to back).
    ///
    /// Map writes: a key's new egress set is either a list that already holds it (shared: one hash
    /// update), the key's own list edited in place (new ports first, leavers last: no frame
    /// ever sees a set outside old ∪ new, none sees a leaver after this returns), or a pooled
    /// list filled and then pointed at; all are plain-map writes of microseconds. Only when the
    /// pool runs short does a batch of new lists go into `fp_lists` (one RCU grace period),
    /// after this sync's changes are in place unless it needs them itself.
    pub fn sync_hinted(
        &mut self,
        table: &ForwardingTable,
        ports: &PortMap,
        ifindex_of_port: &[u32],
        hint: Option<&TableDelta>,
    ) -> Result<SyncReport, FastPathError> {
        let started = Instant::now();
        let planned = self.tracker.plan(
            table,
            ports,
            ifindex_of_port,
            &self.scope,
            self.unicast,
            &self.applied,
            hint,
        );
        let mut report = match self.apply_all(&planned.ops, started) {
            Ok(r) => r,
            Err(e) => {
                // `applied` holds the prefix that took; the tracker's memory does not match it.
                self.tracker.invalidate();
                return Err(e);
            }
        };
        report.full_replan = planned.full;
        report.groups_replanned = planned.groups_replanned;
        report.vlans_hinted = planned.vlans_hinted;
        report.overflowed = planned.overflowed.clone();
        self.applied.overflowed = planned.overflowed;
        Ok(report)
    }

    /// Switches every VLAN back to userspace and empties the maps (as a sync with
    /// [`Scope::Off`]); the scope stays `Off` afterwards.
    pub fn disable(&mut self) -> Result<SyncReport, FastPathError> {
        self.scope = Scope::Off;
        self.tracker.invalidate();
        let ops = diff::diff(&self.applied, &Desired::default());
        self.apply_all(&ops, Instant::now())
    }

    /// Refills the list pool if fewer than a quarter of it is free (one batch, one grace
    /// period, which also frees the quarantined lists); returns the batches run (0 or 1).
    /// `sync` does this itself after its changes; a caller with idle time may call it earlier.
    pub fn maintain(&mut self) -> Result<usize, FastPathError> {
        if !self.book.needs_growth() {
            return Ok(0);
        }
        self.replenish(0)
    }

    /// One grace-period operation that leaves at least `need` lists free: a grace period alone
    /// when the quarantine covers `need` and half the pool, else a growth batch (which frees
    /// the quarantine as well). Churn thus recycles lists instead of growing the pool.
    fn replenish(&mut self, need: usize) -> Result<usize, FastPathError> {
        match self.book.refill(need, POOL_BATCH) {
            Refill::Reclaim => self.reclaim(),
            Refill::Grow(n) => self.grow(n),
        }
    }

    /// The replication-list pool now.
    pub fn list_stats(&self) -> ListStats {
        ListStats {
            pool: self.book.pool_size(),
            live: self.book.live_count(),
            free: self.book.free_count(),
            quarantined: self.book.quarantined(),
        }
    }

    /// The list id `key` points at in `fp_lists` (as this process applied it).
    pub fn list_of(&self, key: &FpKey) -> Option<ListId> {
        self.book.list_of(key)
    }

    /// What the kernel holds, read back: every key of `fp_groups` with the ports and
    /// interfaces of the list it points at, sorted by port. Each list is resolved the way the
    /// XDP program resolves it, through `fp_lists` (opening the inner map by the id stored
    /// there: CAP_SYS_ADMIN), not through this process's own handles, so a list id that
    /// `fp_lists` maps to the wrong devmap shows too. Tests compare it with
    /// [`FastPath::applied`] (a key or a port left behind would show here).
    pub fn kernel_groups(&self) -> Result<BTreeMap<FpKey, Vec<(PortId, u32)>>, FastPathError> {
        let mut lists: BTreeMap<u32, Vec<(PortId, u32)>> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for item in self.maps.groups.iter() {
            let (key, id) = item.map_err(map_err(abi::MAP_FP_GROUPS))?;
            let ports = match lists.entry(id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let dev = self
                        .maps
                        .lists
                        .get(&id, 0)
                        .map_err(map_err(abi::MAP_FP_LISTS))?;
                    let mut ports = Vec::new();
                    for p in dev.iter() {
                        let (port, v) = p.map_err(map_err("inner devmap"))?;
                        ports.push((PortId::try_from(port).unwrap_or(PortId::MAX), v.if_index));
                    }
                    ports.sort_unstable();
                    e.insert(ports)
                }
            };
            out.insert(key, ports.clone());
        }
        Ok(out)
    }

    /// Applies `ops` in order; `applied` follows every operation that took, so a failure
    /// part-way leaves an exact record.
    fn apply_all(&mut self, ops: &[MapOp], started: Instant) -> Result<SyncReport, FastPathError> {
        let mut report = SyncReport::default();
        // Lists this sync may need, in one batch before anything changes (rare: only a sync
        // bringing more new egress sets than the pool has free).
        let need = self.book.fresh_needed(ops.iter().filter_map(|o| match o {
            MapOp::PutMap { entries, .. } => Some(&entries[..]),
            _ => None,
        }));
        if need > self.book.free_count() {
            let b = self.replenish(need)?;
            report.pool_batches += b;
            report.outer_syscalls += b;
        }
        // Lists all of whose keys move to one new set are rewritten in place first; those
        // keys' puts then find their set in place and write nothing.
        // A list some key left within this grace period may be rewritten only after one more
        // (that key's frames may still hold it): worth its ~10 ms when it spares thousands of
        // key updates (a few microseconds each).
        let puts: Vec<(&FpKey, &EgressSet)> = ops
            .iter()
            .filter_map(|o| match o {
                MapOp::PutMap { key, entries } => Some((key, entries)),
                _ => None,
            })
            .collect();
        let mut moves = self.book.whole_list_moves(puts.iter().copied(), true);
        let waiting: u64 = moves
            .iter()
            .filter(|m| m.needs_grace)
            .map(|m| u64::from(m.keys))
            .sum();
        // A grace period frees only what keys left; every other condition of a move holds.
        let mut graced = 0;
        if waiting >= GRACE_WORTH_KEYS {
            graced = self.grace_period()?;
            report.pool_batches += graced;
            report.outer_syscalls += graced;
        }
        if graced == 0 {
            moves.retain(|m| !m.needs_grace);
        }
        for m in moves {
            self.write_list(m.id, &m.old, m.exact, &m.new)?;
            self.book.retarget(m.id, &m.new);
            report.lists_retargeted += 1;
        }
        for op in ops {
            self.apply_one(op, &mut report)?;
            diff::record(&mut self.applied, op);
            report.ops += 1;
            match op {
                MapOp::PutMap { .. } => report.maps_put += 1,
                MapOp::DeleteMap { .. } => report.maps_deleted += 1,
                _ => {}
            }
        }
        report.applied_in = started.elapsed();
        // Refilling ahead of need is opportunistic: every change above took, so a refill that
        // cannot run now (no descriptor left) is no failure of this sync; the next sync that
        // needs a list meets the shortage itself and reports it.
        report.pool_batches += match self.maintain() {
            Err(e) if e.is_list_shortage() => 0,
            r => r?,
        };
        Ok(report)
    }

    fn apply_one(&mut self, op: &MapOp, report: &mut SyncReport) -> Result<(), FastPathError> {
        match op {
            MapOp::SetPort { slot, port } => self
                .maps
                .ports
                .set(*slot, port, 0)
                .map_err(map_err(abi::MAP_FP_PORTS)),
            MapOp::SetVlan { vlan, state } => self
                .maps
                .vlans
                .set(u32::from(*vlan), state, 0)
                .map_err(map_err(abi::MAP_FP_VLANS)),
            MapOp::SetUnicast { key, entry } => {
                let prog = match entry.prog {
                    EgressProg::Plain => None,
                    EgressProg::Tag => Some(&self.maps.egress_tag),
                    EgressProg::Untagged => Some(&self.maps.egress_untagged),
                };
                self.maps
                    .unicast
                    .insert(*key, entry.ifindex, prog, 0)
                    .map_err(|source| FastPathError::DevMap {
                        port: entry.port,
                        ifindex: entry.ifindex,
                        source: Box::new(source),
                    })
            }
            MapOp::DeleteUnicast { key } => match self.maps.unicast.remove(*key) {
                Ok(()) => Ok(()),
                Err(e) if is_enoent(&e) => Ok(()),
                Err(e) => Err(map_err(abi::MAP_FP_UNICAST)(e)),
            },
            MapOp::PutMap { key, entries } => self.put_map(key, entries, report),
            MapOp::DeleteMap { key } => {
                match self.maps.groups.remove(key) {
                    Ok(()) => {}
                    Err(e) if is_enoent(&e) => {}
                    Err(e) => return Err(map_err(abi::MAP_FP_GROUPS)(e)),
                }
                self.book.remove_key(key);
                Ok(())
            }
        }
    }

    /// Gives `key` the egress set `entries` as [`ListBook::place`] decides.
    fn put_map(
        &mut self,
        key: &FpKey,
        entries: &EgressSet,
        report: &mut SyncReport,
    ) -> Result<(), FastPathError> {
        // At most: a placement, a pool batch, a placement again.
        for _ in 0..2 {
            match self.book.place(key, entries) {
                Placement::Unchanged(_) => return Ok(()),
                Placement::Share(id) => {
                    self.point(key, id)?;
                    self.book.commit(*key, id, entries);
                    report.lists_shared += 1;
                    return Ok(());
                }
                Placement::EditInPlace { id, old, exact } => {
                    self.write_list(id, &old, exact, entries)?;
                    self.book.commit(*key, id, entries);
                    report.lists_edited += 1;
                    return Ok(());
                }
                Placement::Fresh { id, old, exact } => {
                    self.write_list(id, &old, exact, entries)?;
                    if let Err(e) = self.point(key, id) {
                        self.book.write_failed(id, entries);
                        return Err(e);
                    }
                    self.book.commit(*key, id, entries);
                    report.lists_created += 1;
                    return Ok(());
                }
                Placement::NeedPool => {
                    let b = self.replenish(1)?;
                    report.pool_batches += b;
                    report.outer_syscalls += b;
                }
            }
        }
        Err(FastPathError::PoolExhausted)
    }

    /// Points `key` at list `id`: one plain hash update, atomic for a reader.
    fn point(&mut self, key: &FpKey, id: ListId) -> Result<(), FastPathError> {
        self.maps
            .groups
            .insert(key, id, 0)
            .map_err(map_err(abi::MAP_FP_GROUPS))
    }

    /// Changes list `id` from `old` to `entries`: additions and program changes first, then
    /// removals (the order an in-place edit of a reachable list needs; harmless otherwise).
    /// A failure part-way is recorded in the book.
    fn write_list(
        &mut self,
        id: ListId,
        old: &[DevEntry],
        exact: bool,
        entries: &[DevEntry],
    ) -> Result<(), FastPathError> {
        let res = self.write_list_inner(id, old, exact, entries);
        if res.is_err() {
            self.book.write_failed(id, entries);
        }
        res
    }

    fn write_list_inner(
        &mut self,
        id: ListId,
        old: &[DevEntry],
        exact: bool,
        entries: &[DevEntry],
    ) -> Result<(), FastPathError> {
        let (tag, untagged) = (&self.maps.egress_tag, &self.maps.egress_untagged);
        let Some(Inner { dev, .. }) = usize::try_from(id).ok().and_then(|i| self.lists.get_mut(i))
        else {
            return Err(FastPathError::PoolExhausted);
        };
        for e in entries {
            if exact && old.contains(e) {
                continue;
            }
            let prog = match e.prog {
                EgressProg::Plain => None,
                EgressProg::Tag => Some(tag),
                EgressProg::Untagged => Some(untagged),
            };
            dev.insert(u32::from(e.port), e.ifindex, prog, 0)
                .map_err(|source| FastPathError::DevMap {
                    port: e.port,
                    ifindex: e.ifindex,
                    source: Box::new(source),
                })?;
        }
        for e in old {
            if entries.iter().any(|n| n.port == e.port) {
                continue;
            }
            remove_dev(dev, e.port)?;
        }
        Ok(())
    }

    /// Adds up to `n` empty lists to `fp_lists` with one batch (one at a time if the kernel
    /// refuses batches); at the `FP_MAX_LISTS` cap, rewrites list 0 with itself instead. Either
    /// waits for an RCU grace period, after which the lists quarantined before the call are
    /// free (see [`lists`]). Returns the map-in-map system calls made.
    fn grow(&mut self, n: u32) -> Result<usize, FastPathError> {
        let start = self.book.pool_size();
        let room = abi::FP_MAX_LISTS.saturating_sub(start);
        if room == 0 {
            return self.reclaim();
        }
        // Never the descriptors kept for the rest of the switch.
        let spare = spare_descriptors().map_or(u32::MAX, |s| u32::try_from(s).unwrap_or(u32::MAX));
        let n = n.min(room).min(spare);
        if n == 0 {
            return self.out_of_descriptors(start);
        }
        let mut fresh = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match new_inner() {
                Ok(d) => fresh.push(d),
                Err(FastPathError::CreateInner(e)) if e.raw_os_error() == Some(libc::EMFILE) => {
                    // Out of descriptors part-way: keep the lists made so far (enough for this
                    // sync, perhaps); only with none at all is it an error.
                    if fresh.is_empty() {
                        return self.out_of_descriptors(start);
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let n = u32::try_from(fresh.len()).unwrap_or(0);
        let ids: Vec<u32> = (start..start + n).collect();
        let fds: Vec<u32> = fresh.iter().map(|d| d.raw_fd).collect();
        let grace = self.book.grace_begin();
        let (done, res) = kernel::lists_update_batch(self.maps.lists_fd.as_fd(), &ids, &fds);
        let done = if res.is_ok() {
            fresh.len()
        } else {
            done.min(fresh.len())
        };
        let mut rest = fresh.split_off(done);
        let mut syscalls = 1;
        let mut waited = res.is_ok();
        self.adopt(fresh);
        if res.is_err() {
            for d in rest.drain(..) {
                let id = self.book.pool_size();
                self.maps
                    .lists
                    .set(id, &d.dev, 0)
                    .map_err(map_err(abi::MAP_FP_LISTS))?;
                syscalls += 1;
                waited = true;
                self.adopt(vec![d]);
            }
        }
        if waited {
            self.book.grace_done(grace);
        }
        Ok(syscalls)
    }

    /// No descriptor for another list: a grace period may still free quarantined lists, else
    /// it is [`FastPathError::Descriptors`].
    fn out_of_descriptors(&mut self, lists: u32) -> Result<usize, FastPathError> {
        if self.book.quarantined() > 0 {
            return self.reclaim();
        }
        Err(FastPathError::Descriptors {
            lists,
            limit: nofile_limit(),
            want: NOFILE_WANTED,
        })
    }

    fn adopt(&mut self, lists: Vec<Inner>) {
        let n = u32::try_from(lists.len()).unwrap_or(0);
        self.lists.extend(lists);
        self.book.add_pool(n);
    }

    /// A grace period without growth: list 0 written over with itself (readers see the same
    /// list throughout). Only when something waits for it.
    /// Waits for one RCU grace period (rewriting `fp_lists[0]` with itself does), which also
    /// frees the quarantine and the lists keys left. Returns the operations made (0 or 1).
    fn grace_period(&mut self) -> Result<usize, FastPathError> {
        let g = self.book.grace_begin();
        let Some(first) = self.lists.first() else {
            return Ok(0);
        };
        self.maps
            .lists
            .set(0, &first.dev, 0)
            .map_err(map_err(abi::MAP_FP_LISTS))?;
        self.book.grace_done(g);
        Ok(1)
    }

    fn reclaim(&mut self) -> Result<usize, FastPathError> {
        if self.book.quarantined() == 0 {
            return Ok(0);
        }
        self.grace_period()
    }

    /// The packets and bytes of every flow the fast path replicated (and the LRU still holds),
    /// summed over CPUs, sorted by (VLAN, group, source).
    pub fn flows(&self) -> Result<Vec<FlowCounters>, FastPathError> {
        let mut out = Vec::new();
        for item in self.maps.flows.iter() {
            let (k, per_cpu) = item.map_err(map_err(abi::MAP_FP_FLOWS))?;
            out.push(sum_flow(&k, per_cpu.iter()));
        }
        out.sort_unstable_by_key(|f| (f.vlan, f.group, f.source));
        Ok(out)
    }

    /// The counters of one (VLAN, source, group) flow, `None` if it was never seen (or evicted).
    pub fn flow(
        &self,
        vlan: VlanId,
        source: Ipv4Addr,
        group: Ipv4Addr,
    ) -> Result<Option<FlowCounters>, FastPathError> {
        let k = plan::key(vlan, FP_KIND_FLOW, group, source);
        match self.maps.flows.get(&k, 0) {
            Ok(v) => Ok(Some(sum_flow(&k, v.iter()))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(None)
            }
            Err(e) => Err(map_err(abi::MAP_FP_FLOWS)(e)),
        }
    }
}

/// A new, empty inner devmap for the list pool.
fn new_inner() -> Result<Inner, FastPathError> {
    let fd: OwnedFd = kernel::create_inner_devmap().map_err(FastPathError::CreateInner)?;
    let raw_fd = u32::try_from(fd.as_raw_fd())
        .map_err(|_| FastPathError::CreateInner(std::io::Error::from_raw_os_error(libc::EBADF)))?;
    let data = MapData::from_fd(fd).map_err(map_err("inner devmap"))?;
    let map = Map::from_map_data(data).map_err(map_err("inner devmap"))?;
    let dev = DevMapHash::try_from(map).map_err(map_err("inner devmap"))?;
    Ok(Inner { dev, raw_fd })
}

/// Raises RLIMIT_NOFILE towards `want`: the hard limit too if the process may
/// (CAP_SYS_RESOURCE), else the soft one up to the hard one. Best effort: the fallback is
/// [`FastPathError::Descriptors`] from a sync that needs more lists than descriptors remain.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write the one struct passed, which lives on the stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            if lim.rlim_max < want {
                let both = libc::rlimit {
                    rlim_cur: want,
                    rlim_max: want,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &both) == 0 {
                    return;
                }
            }
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The soft RLIMIT_NOFILE in force (0 if unknown), for error messages.
/// Descriptors this process may still open for lists, [`RESERVED_FDS`] kept back; `None` when
/// `/proc/self/fd` cannot be read (then only the kernel's EMFILE stops the pool). Counted per
/// growth batch only (geometric: rare).
fn spare_descriptors() -> Option<u64> {
    let open = u64::try_from(std::fs::read_dir("/proc/self/fd").ok()?.count()).ok()?;
    Some(
        nofile_limit()
            .saturating_sub(open)
            .saturating_sub(RESERVED_FDS),
    )
}

fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the one struct passed, which lives on the stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}

fn is_enoent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Removes `port` from an inner devmap (already absent is fine).
fn remove_dev(dev: &mut DevMapHash<MapData>, port: u16) -> Result<(), FastPathError> {
    match dev.remove(u32::from(port)) {
        Ok(()) => Ok(()),
        Err(e) if is_enoent(&e) => Ok(()),
        Err(e) => Err(map_err("inner devmap")(e)),
    }
}

fn sum_flow<'a>(k: &FpKey, per_cpu: impl Iterator<Item = &'a abi::FpCount>) -> FlowCounters {
    let (packets, bytes) = per_cpu.fold((0u64, 0u64), |(p, b), c| {
        (p.wrapping_add(c.packets), b.wrapping_add(c.bytes))
    });
    FlowCounters {
        vlan: k.vlan,
        source: Ipv4Addr::from(k.source),
        group: Ipv4Addr::from(k.group),
        packets,
        bytes,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod scale_tests;
