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

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use aya::maps::xdp::{DevMapHash, XdpMapError};
use aya::maps::{Map, MapData, MapError};

use crate::forward::portmap::PortMap;
use crate::table::{ForwardingTable, VlanId};
use crate::xdp::abi::{self, FpKey, FP_KIND_FLOW};
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
    /// In-scope VLANs left to userspace because the outer map (`FP_MAX_KEYS` keys) is full.
    pub overflowed: Vec<VlanId>,
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
        Ok(FastPath {
            maps: classifier.take_fast_path_maps()?,
            applied: Desired::default(),
            scope: Scope::Off,
        })
    }

    /// Chooses the VLANs the fast path forwards; takes effect at the next [`FastPath::sync`].
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
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
    pub fn sync(
        &mut self,
        table: &ForwardingTable,
        ports: &PortMap,
        ifindex_of_port: &[u32],
    ) -> Result<SyncReport, FastPathError> {
        let want = plan::desired(table, ports, ifindex_of_port, &self.scope);
        let ops = diff::diff(&self.applied, &want);
        let mut report = SyncReport {
            overflowed: want.overflowed.clone(),
            ..SyncReport::default()
        };
        for op in &ops {
            self.apply(op)?;
            diff::record(&mut self.applied, op);
            report.ops += 1;
            match op {
                MapOp::PutMap { .. } => report.maps_put += 1,
                MapOp::DeleteMap { .. } => report.maps_deleted += 1,
                _ => {}
            }
        }
        self.applied.overflowed = want.overflowed;
        Ok(report)
    }

    /// Switches every VLAN back to userspace and empties the maps (as a sync with
    /// [`Scope::Off`]); the scope stays `Off` afterwards.
    pub fn disable(&mut self) -> Result<SyncReport, FastPathError> {
        self.scope = Scope::Off;
        let ops = diff::diff(&self.applied, &Desired::default());
        let mut report = SyncReport::default();
        for op in &ops {
            self.apply(op)?;
            diff::record(&mut self.applied, op);
            report.ops += 1;
        }
        Ok(report)
    }

    fn apply(&mut self, op: &MapOp) -> Result<(), FastPathError> {
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
            MapOp::PutMap { key, entries } => {
                let inner = self.build_inner(entries)?;
                self.maps
                    .groups
                    .insert(key, &inner, 0)
                    .map_err(map_err(abi::MAP_FP_GROUPS))
                // `inner`'s descriptor closes here; the outer map keeps the map alive.
            }
            MapOp::DeleteMap { key } => match self.maps.groups.remove(key) {
                Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
                {
                    Ok(())
                }
                Err(e) => Err(map_err(abi::MAP_FP_GROUPS)(e)),
            },
        }
    }

    /// A new inner devmap holding exactly `entries`, complete before anyone can see it.
    fn build_inner(&self, entries: &[DevEntry]) -> Result<DevMapHash<MapData>, FastPathError> {
        let fd: OwnedFd = kernel::create_inner_devmap().map_err(FastPathError::CreateInner)?;
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
        Ok(dev)
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
