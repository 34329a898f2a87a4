//! The in-kernel fast path: the snooping table drives XDP replication.
//!
//! On veth and every NIC without AF_XDP zero-copy, each AF_XDP transmit copies the frame into a
//! new skb, so a userspace replicator cannot beat the Linux bridge by much; a devmap broadcast
//! in XDP replicates ~5× faster. So, like a hardware switch whose CPU runs the protocol while the
//! ASIC replicates, the engine's [`ForwardingTable`] is compiled into BPF maps and the XDP
//! program (`ebpf/xsnoop.bpf.c`) replicates registered IPv4 multicast data itself: one
//! `HASH_OF_MAPS` keyed by (VLAN, group[, source]) whose inner `DEVMAP_HASH` holds exactly the
//! egress ports (RFC 4541 §2.1.2). IGMP, PIM, MRD and everything else still reach userspace
//! through AF_XDP.
//!
//! - [`plan`] computes the desired map contents (pure);
//! - [`diff`] turns applied → desired into ordered map operations (pure);
//! - [`FastPath`] owns the maps and applies only the difference on each [`FastPath::sync`].
//!
//! Integration: load the [`Classifier`], attach it and register every port with slot = port id
//! (as `xsnoop run` does), then [`FastPath::new`], [`FastPath::set_scope`] and call
//! [`FastPath::sync`] after every table or port-map publication, from inside the switch's
//! network namespace (devmap ifindexes are resolved in the writer's namespace).

pub mod diff;
mod kernel;
pub mod plan;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use aya::maps::xdp::{DevMapHash, XdpMapError};
use aya::maps::{Map, MapData, MapError};

use crate::forward::portmap::PortMap;
use crate::portset::PortId;
use crate::table::{ForwardingTable, VlanId};
use crate::wire::MacAddr;
use crate::xdp::abi::{self, FpFdbKey, FpFdbVal, FpKey, FP_KIND_FLOW};
use crate::xdp::{Classifier, FastPathMaps, XdpError};

pub use diff::MapOp;
pub use plan::{Desired, DevEntry, EgressProg, Scope};

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
    /// The kernel refused to create an inner devmap (memory limits, missing privilege).
    #[error("creating a fast-path devmap failed: {0}; needs CAP_BPF and kernel ≥ 5.4")]
    CreateInner(#[source] std::io::Error),
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
    /// Inner devmaps built and inserted or swapped in.
    pub maps_put: usize,
    /// Outer keys deleted.
    pub maps_deleted: usize,
    /// System calls that changed the outer map; each waits for an RCU grace period (~10 ms
    /// here). Joins and leaves of existing groups need none; new or stale keys one batch each.
    pub outer_syscalls: usize,
    /// In-scope VLANs left to userspace because the outer map (`FP_MAX_KEYS` keys) is full.
    pub overflowed: Vec<VlanId>,
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

/// The fast path's maps, what they hold, and which VLANs it covers.
pub struct FastPath {
    maps: FastPathMaps,
    applied: Desired,
    scope: Scope,
    /// The inner map of every key, kept open for in-place edits (re-opening by id would need
    /// CAP_SYS_ADMIN). One descriptor per key: `new` raises RLIMIT_NOFILE to cover them.
    inner: BTreeMap<FpKey, Inner>,
    /// Known unicast and broadcast in the kernel too (see [`FastPath::set_unicast`]).
    unicast: bool,
    /// `fp_fdb` as written: station → port slot.
    fdb: BTreeMap<FpFdbKey, u32>,
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
            .finish_non_exhaustive()
    }
}

impl FastPath {
    /// Takes the fast-path maps out of a loaded classifier. The scope starts [`Scope::Off`]: the
    /// program still sends every frame to AF_XDP until [`FastPath::set_scope`] and a sync.
    pub fn new(classifier: &mut Classifier) -> Result<FastPath, FastPathError> {
        raise_nofile(u64::from(abi::FP_MAX_KEYS) + 1024);
        Ok(FastPath {
            maps: classifier.take_fast_path_maps()?,
            applied: Desired::default(),
            scope: Scope::Off,
            inner: BTreeMap::new(),
            unicast: false,
            fdb: BTreeMap::new(),
        })
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
                    pad: 0,
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
    ///
    /// Cost: a changed egress set of an existing key is edited in place (new ports first, then
    /// leavers removed: no frame ever sees a set outside old ∪ new, and none sees a leaver after
    /// this returns), which takes microseconds. New keys and deleted keys change the outer map,
    /// for which the kernel waits one RCU grace period per system call (~10 ms here), so all
    /// new keys of one sync go in one batch, and all stale keys in another.
    pub fn sync(
        &mut self,
        table: &ForwardingTable,
        ports: &PortMap,
        ifindex_of_port: &[u32],
    ) -> Result<SyncReport, FastPathError> {
        let want = plan::desired_with(table, ports, ifindex_of_port, &self.scope, self.unicast);
        let ops = diff::diff(&self.applied, &want);
        let mut report = self.apply_all(&ops)?;
        report.overflowed = want.overflowed.clone();
        self.applied.overflowed = want.overflowed;
        Ok(report)
    }

    /// Switches every VLAN back to userspace and empties the maps (as a sync with
    /// [`Scope::Off`]); the scope stays `Off` afterwards.
    pub fn disable(&mut self) -> Result<SyncReport, FastPathError> {
        self.scope = Scope::Off;
        let ops = diff::diff(&self.applied, &Desired::default());
        self.apply_all(&ops)
    }

    /// Applies `ops` in order, batching runs of outer-map changes; `applied` follows every
    /// operation that took, so a failure part-way leaves an exact record.
    fn apply_all(&mut self, ops: &[MapOp]) -> Result<SyncReport, FastPathError> {
        let mut report = SyncReport::default();
        let mut i = 0;
        while let Some(op) = ops.get(i) {
            let run = ops
                .get(i..)
                .unwrap_or_default()
                .iter()
                .take_while(|o| std::mem::discriminant(*o) == std::mem::discriminant(op))
                .count()
                .max(1);
            let chunk = ops.get(i..i + run).unwrap_or_default();
            match op {
                MapOp::PutMap { .. } => report.outer_syscalls += self.put_maps(chunk)?,
                MapOp::DeleteMap { .. } => report.outer_syscalls += self.delete_maps(chunk)?,
                _ => {
                    for o in chunk {
                        self.apply_one(o)?;
                        diff::record(&mut self.applied, o);
                    }
                }
            }
            for o in chunk {
                report.ops += 1;
                match o {
                    MapOp::PutMap { .. } => report.maps_put += 1,
                    MapOp::DeleteMap { .. } => report.maps_deleted += 1,
                    _ => {}
                }
            }
            i += run;
        }
        Ok(report)
    }

    fn apply_one(&mut self, op: &MapOp) -> Result<(), FastPathError> {
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
            MapOp::PutMap { .. } => self.put_maps(std::slice::from_ref(op)).map(drop),
            MapOp::DeleteMap { .. } => self.delete_maps(std::slice::from_ref(op)).map(drop),
        }
    }

    /// Existing keys: edited in place. New keys: a complete new inner map each, then all
    /// inserted with one batch (one at a time if the kernel refuses batches).
    fn put_maps(&mut self, chunk: &[MapOp]) -> Result<usize, FastPathError> {
        let mut fresh: Vec<(FpKey, Inner)> = Vec::new();
        for op in chunk {
            let MapOp::PutMap { key, entries } = op else {
                continue;
            };
            if self.inner.contains_key(key) {
                self.edit_in_place(key, entries)?;
                diff::record(&mut self.applied, op);
            } else {
                fresh.push((*key, self.build_inner(entries)?));
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut syscalls = 1;
        let keys: Vec<FpKey> = fresh.iter().map(|(k, _)| *k).collect();
        let fds: Vec<u32> = fresh.iter().map(|(_, d)| d.raw_fd).collect();
        let (done, res) = kernel::outer_update_batch(self.maps.groups_fd.as_fd(), &keys, &fds);
        let mut rest = fresh.split_off(done.min(fresh.len()));
        for (k, d) in fresh {
            self.adopt(k, d, chunk);
        }
        if res.is_err() {
            // Fallback: one key at a time (each waits for its own grace period).
            for (k, d) in rest.drain(..) {
                self.maps
                    .groups
                    .insert(k, &d.dev, 0)
                    .map_err(map_err(abi::MAP_FP_GROUPS))?;
                syscalls += 1;
                self.adopt(k, d, chunk);
            }
        }
        Ok(syscalls)
    }

    /// Records a new inner map as applied and keeps its descriptor for later in-place edits.
    fn adopt(&mut self, key: FpKey, dev: Inner, chunk: &[MapOp]) {
        if let Some(op) = chunk
            .iter()
            .find(|o| matches!(o, MapOp::PutMap { key: k, .. } if *k == key))
        {
            diff::record(&mut self.applied, op);
        }
        self.inner.insert(key, dev);
    }

    /// Changes the inner map of `key` from what was applied to `entries`: additions and
    /// program changes first, then removals.
    fn edit_in_place(&mut self, key: &FpKey, entries: &[DevEntry]) -> Result<(), FastPathError> {
        let old: Vec<DevEntry> = self.applied.maps.get(key).cloned().unwrap_or_default();
        let (tag, untagged) = (&self.maps.egress_tag, &self.maps.egress_untagged);
        let Some(Inner { dev, .. }) = self.inner.get_mut(key) else {
            return Ok(());
        };
        for e in entries {
            if old.contains(e) {
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
        for e in &old {
            if entries.iter().any(|n| n.port == e.port) {
                continue;
            }
            remove_dev(dev, e.port)?;
        }
        Ok(())
    }

    /// Deletes stale keys with one batch (one at a time if the kernel refuses batches), then
    /// closes their inner maps.
    fn delete_maps(&mut self, chunk: &[MapOp]) -> Result<usize, FastPathError> {
        let keys: Vec<FpKey> = chunk
            .iter()
            .filter_map(|o| match o {
                MapOp::DeleteMap { key } => Some(*key),
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let mut syscalls = 1;
        let (done, res) = kernel::outer_delete_batch(self.maps.groups_fd.as_fd(), &keys);
        let done = done.min(keys.len());
        let (gone, rest) = keys.split_at(done);
        for k in gone {
            self.forget(k);
        }
        if res.is_err() {
            for k in rest {
                match self.maps.groups.remove(k) {
                    Ok(()) => {}
                    Err(e) if is_enoent(&e) => {}
                    Err(e) => return Err(map_err(abi::MAP_FP_GROUPS)(e)),
                }
                syscalls += 1;
                self.forget(k);
            }
        }
        Ok(syscalls)
    }

    fn forget(&mut self, key: &FpKey) {
        diff::record(&mut self.applied, &MapOp::DeleteMap { key: *key });
        self.inner.remove(key);
    }

    /// A new inner devmap holding exactly `entries`, complete before anyone can see it.
    fn build_inner(&self, entries: &[DevEntry]) -> Result<Inner, FastPathError> {
        let fd: OwnedFd = kernel::create_inner_devmap().map_err(FastPathError::CreateInner)?;
        let raw_fd = u32::try_from(fd.as_raw_fd()).map_err(|_| {
            FastPathError::CreateInner(std::io::Error::from_raw_os_error(libc::EBADF))
        })?;
        let data = MapData::from_fd(fd).map_err(map_err("inner devmap"))?;
        let map = Map::from_map_data(data).map_err(map_err("inner devmap"))?;
        let mut dev = DevMapHash::try_from(map).map_err(map_err("inner devmap"))?;
        for e in entries {
            let prog = match e.prog {
                EgressProg::Plain => None,
                EgressProg::Tag => Some(&self.maps.egress_tag),
                EgressProg::Untagged => Some(&self.maps.egress_untagged),
            };
            dev.insert(u32::from(e.port), e.ifindex, prog, 0)
                .map_err(|source| FastPathError::DevMap {
                    port: e.port,
                    ifindex: e.ifindex,
                    source: Box::new(source),
                })?;
        }
        Ok(Inner { dev, raw_fd })
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

/// Raises the soft RLIMIT_NOFILE towards `want` (never above the hard limit; best effort: the
/// fallback is an error from `sync` naming the descriptor shortage).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write the one struct passed, which lives on the stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
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
