//! What the kernel maps should hold: a pure function of the forwarding table, the port VLAN map
//! and the interface indexes. No kernel here, so it is unit-tested directly.
//!
//! Every egress set is the AF_XDP path's answer ([`ForwardingTable::multicast_egress`], RFC 4541
//! §2.1.2) computed once per key instead of per frame: the ingress port is left in and removed
//! by the kernel (`BPF_F_EXCLUDE_INGRESS`), and every set is cut to the ports that carry the VLAN
//! in both the table and the port map, as `forward::decide` does.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::fasthash::FastMap;

use crate::forward::portmap::{PortMap, MAX_VID, MIN_VID};
use crate::portset::{PortId, PortSet};
use crate::table::{ForwardingTable, GroupEntry, VlanId, VlanTable};
use crate::wire::{is_link_local_multicast, is_multicast, VlanTag};
use crate::xdp::abi::{
    unicast_key, FpKey, FpPort, FpVlan, FP_KIND_ANY, FP_KIND_FLOOD, FP_KIND_SOURCE, FP_KIND_UNREG,
    FP_MAX_KEYS, FP_MAX_UNICAST, FP_ON, FP_PORT_ACCESS, FP_PORT_TRUNK, FP_SNOOPING, FP_SOURCES,
    FP_TAGGED, FP_UNICAST, MAX_SLOTS,
};

/// Which VLANs the fast path forwards; the others stay entirely in userspace (AF_XDP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// No VLAN: the program behaves exactly as the plain AF_XDP classifier.
    #[default]
    Off,
    /// Every VLAN of the table.
    All,
    /// Only these VLANs.
    Vlans(BTreeSet<VlanId>),
}

impl Scope {
    /// Whether VLAN `v` is in scope.
    pub fn covers(&self, v: VlanId) -> bool {
        match self {
            Scope::Off => false,
            Scope::All => true,
            Scope::Vlans(s) => s.contains(&v),
        }
    }
}

/// Which devmap egress program runs on one entry (one port of one egress set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EgressProg {
    /// None: the frame leaves as the ingress program left it (untagged). The VLAN has no tagged
    /// egress port, so no metadata either (egress programs cost ~7%: only where needed).
    Plain,
    /// Push the VLAN's tag (IEEE 802.1Q §8.8.2: a trunk port outside its native VLAN).
    Tag,
    /// Untagged, but in a VLAN that carries metadata: strip it.
    Untagged,
}

/// One entry of an inner devmap: which port, its interface, and the egress program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevEntry {
    /// The switch port (also the key in the inner devmap).
    pub port: PortId,
    /// Its interface index, in the switch's namespace.
    pub ifindex: u32,
    /// The egress program on this entry.
    pub prog: EgressProg,
}

/// One egress set: its entries sorted by port, shared. A VLAN's plan builds each distinct set
/// once and every key with that set holds the same allocation, so planning, comparing and
/// recording a VLAN-wide change of 100 000 keys allocates nothing per key (the sets are few:
/// one per distinct member port set, as an ASIC has few replication lists).
pub type EgressSet = Arc<[DevEntry]>;

/// The complete desired content of the fast-path maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// `fp_ports`: slot → classification (absent = zeroes = not a fast-path port).
    pub ports: BTreeMap<u32, FpPort>,
    /// `fp_vlans`: VID → state (absent = zeroes = off).
    pub vlans: BTreeMap<VlanId, FpVlan>,
    /// `fp_groups`: key → exactly the egress entries, sorted by port.
    pub maps: BTreeMap<FpKey, EgressSet>,
    /// `fp_unicast`: (VLAN × MAX_SLOTS + port) → the port (only with unicast on).
    pub unicast: BTreeMap<u32, DevEntry>,
    /// VLANs in scope that were left in userspace because the outer map would overflow.
    pub overflowed: Vec<VlanId>,
}

/// A (VLAN, kind, group, source) key.
pub fn key(vlan: VlanId, kind: u16, group: Ipv4Addr, source: Ipv4Addr) -> FpKey {
    FpKey {
        vlan,
        kind,
        group: group.octets(),
        source: source.octets(),
    }
}

fn bitmap(set: PortSet) -> [u64; 2] {
    let b = set.bits();
    // Truncation intended: the two 64-bit halves of the 128-bit bitmap.
    [b as u64, (b >> 64) as u64]
}

/// How port `p` classifies frames, from the port map (`None` if it is not configured).
fn port_entry(pm: &PortMap, p: PortId) -> Option<FpPort> {
    if !pm.is_configured(p) {
        return None;
    }
    let pvid = pm.ingress_vlan_of_tag(p, None).unwrap_or(0);
    // An access port refuses every tagged frame; a trunk refuses only VLANs it lacks.
    let access = matches!(
        pm.ingress_vlan_of_tag(p, Some(VlanTag::new(MIN_VID, 0))),
        Err(crate::forward::reason::DropReason::TaggedOnAccess)
    );
    Some(FpPort {
        pvid,
        mode: if access {
            FP_PORT_ACCESS
        } else {
            FP_PORT_TRUNK
        },
        pad: 0,
    })
}

/// [`desired_with`] with known unicast and broadcast left to userspace (multicast only).
pub fn desired(
    table: &ForwardingTable,
    pm: &PortMap,
    ifindex_of_port: &[u32],
    scope: &Scope,
) -> Desired {
    desired_with(table, pm, ifindex_of_port, scope, false)
}

/// Computes the desired map contents. `ifindex_of_port[p]` is port `p`'s interface index (0 or
/// missing: the port is left out of every egress set and its frames go to userspace). Port ids
/// are the classifier's slots.
///
/// With `unicast`, every in-scope VLAN also forwards known unicast (to the port `fp_fdb` names)
/// and broadcast (to the flood set) in the kernel, and requires a learned source for every
/// fast-path frame.
pub fn desired_with(
    table: &ForwardingTable,
    pm: &PortMap,
    ifindex_of_port: &[u32],
    scope: &Scope,
    unicast: bool,
) -> Desired {
    let caps = Caps::default();
    desired_capped(table, pm, ifindex_of_port, scope, unicast, caps)
}

/// How many `fp_groups` keys and `fp_unicast` entries the maps hold; only tests use others
/// (so that overflow can be exercised with small tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Caps {
    pub keys: usize,
    pub unicast: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            keys: FP_MAX_KEYS as usize,
            unicast: FP_MAX_UNICAST as usize,
        }
    }
}

/// [`desired_with`] with the map capacities `caps`.
pub(super) fn desired_capped(
    table: &ForwardingTable,
    pm: &PortMap,
    ifindex_of_port: &[u32],
    scope: &Scope,
    unicast: bool,
    caps: Caps,
) -> Desired {
    let mut out = Desired::default();
    if *scope == Scope::Off {
        return out;
    }
    let (usable, ports) = usable_ports(pm, ifindex_of_port);
    out.ports = ports;
    let mut vids: Vec<VlanId> = table.vlans.keys().copied().collect();
    vids.sort_unstable();
    for vid in vids {
        let Some(vt) = table.vlans.get(&vid) else {
            continue;
        };
        if !scope.covers(vid) || !(MIN_VID..=MAX_VID).contains(&vid) {
            continue;
        }
        let (mut state, maps, uni) = vlan_plan(vid, vt, pm, usable, ifindex_of_port);
        if out.maps.len() + maps.len() > caps.keys
            || (unicast && out.unicast.len() + uni.len() > caps.unicast)
        {
            out.overflowed.push(vid);
            continue;
        }
        if unicast {
            state.flags |= FP_UNICAST;
            out.unicast.extend(uni);
        }
        out.vlans.insert(vid, state);
        out.maps.extend(maps);
    }
    out
}

/// One VLAN's state, its outer-map keys and its unicast entries.
type VlanPlan = (FpVlan, Vec<(FpKey, EgressSet)>, Vec<(u32, DevEntry)>);

/// Everything VLAN-wide that a VLAN's keys depend on. Two equal heads give every group the same
/// keys for the same [`GroupEntry`], which is what lets [`super::incremental`] replan only the
/// groups that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct VlanHead {
    /// `fp_vlans` value (without `FP_UNICAST`, which the caller adds).
    pub state: FpVlan,
    /// Whether groups are looked up at all (RFC 4541 §2: snooping may be off per VLAN).
    pub snooping: bool,
    /// Multicast-router ports inside the domain.
    pub mrouters: PortSet,
    /// The flood domain as devmap entries: its ports, interfaces and egress programs.
    pub domain: EgressSet,
    /// The unregistered set (mrouters ∪ flood_unregistered, RFC 4541 §2.1.2 (3)) as entries.
    pub unreg: EgressSet,
    /// The egress sets built so far under this head (derived data: not compared).
    pub sets: SetCache,
}

/// The egress sets one [`VlanHead`] has built, by port set: every key of the VLAN with the same
/// ports shares one [`EgressSet`]. A cache of what the head determines, so two heads are equal
/// whatever their caches hold.
#[derive(Clone, Debug, Default)]
pub(super) struct SetCache(RefCell<FastMap<PortSet, EgressSet>>);

impl PartialEq for SetCache {
    fn eq(&self, _: &SetCache) -> bool {
        true
    }
}

impl Eq for SetCache {}

impl VlanHead {
    /// The entries of `set` (cut to the domain), sorted by port; built once per distinct set.
    pub fn entries(&self, set: PortSet) -> EgressSet {
        if let Some(e) = self.sets.0.borrow().get(&set) {
            return e.clone();
        }
        let built: EgressSet = self
            .domain
            .iter()
            .filter(|e| set.contains(e.port))
            .copied()
            .collect();
        self.sets.0.borrow_mut().insert(set, built.clone());
        built
    }

    /// The VLAN's own keys: flood and unregistered.
    pub fn keys(&self, vid: VlanId) -> [(FpKey, EgressSet); 2] {
        let any = Ipv4Addr::UNSPECIFIED;
        [
            (key(vid, FP_KIND_FLOOD, any, any), self.domain.clone()),
            (key(vid, FP_KIND_UNREG, any, any), self.unreg.clone()),
        ]
    }

    /// The VLAN's `fp_unicast` entries.
    pub fn unicast(&self, vid: VlanId) -> impl Iterator<Item = (u32, DevEntry)> + '_ {
        self.domain
            .iter()
            .map(move |e| (unicast_key(vid, e.port), *e))
    }
}

/// The ports that may take part (configured in the port map, with an interface) and their
/// `fp_ports` values.
pub(super) fn usable_ports(
    pm: &PortMap,
    ifindex_of_port: &[u32],
) -> (PortSet, BTreeMap<u32, FpPort>) {
    let mut usable = PortSet::EMPTY;
    let mut ports = BTreeMap::new();
    for (p, &ifindex) in ifindex_of_port.iter().enumerate().take(MAX_SLOTS as usize) {
        let Ok(port) = PortId::try_from(p) else {
            break;
        };
        if ifindex == 0 {
            continue;
        }
        if let Some(e) = port_entry(pm, port) {
            usable.insert(port);
            ports.insert(u32::from(port), e);
        }
    }
    (usable, ports)
}

/// The VLAN-wide part of VLAN `vid`'s plan.
pub(super) fn vlan_head(
    vt: &VlanTable,
    vid: VlanId,
    pm: &PortMap,
    usable: PortSet,
    ifindex_of_port: &[u32],
) -> VlanHead {
    let members = pm.members(vid).intersection(usable);
    let domain = vt.ports.intersection(members);
    let tagged = domain.difference(pm.untagged(vid));
    let mut flags = FP_ON;
    if vt.snooping {
        flags |= FP_SNOOPING;
    }
    if !tagged.is_empty() {
        flags |= FP_TAGGED;
    }
    let domain_entries: EgressSet = domain
        .iter()
        .filter_map(|p| {
            let ifindex = *ifindex_of_port.get(usize::from(p))?;
            let prog = if tagged.is_empty() {
                EgressProg::Plain
            } else if tagged.contains(p) {
                EgressProg::Tag
            } else {
                EgressProg::Untagged
            };
            Some(DevEntry {
                port: p,
                ifindex,
                prog,
            })
        })
        .collect();
    let mut head = VlanHead {
        state: FpVlan {
            flags,
            pad: 0,
            members: bitmap(members),
        },
        snooping: vt.snooping,
        mrouters: vt.mrouters.intersection(domain),
        domain: domain_entries,
        unreg: EgressSet::from([]),
        sets: SetCache::default(),
    };
    head.unreg = head.entries(vt.mrouters.union(vt.flood_unregistered));
    head
}

fn vlan_plan(
    vid: VlanId,
    vt: &VlanTable,
    pm: &PortMap,
    usable: PortSet,
    ifindex_of_port: &[u32],
) -> VlanPlan {
    let head = vlan_head(vt, vid, pm, usable, ifindex_of_port);
    let mut maps = Vec::from(head.keys(vid));
    if vt.snooping {
        for (g, e) in vt.groups.iter() {
            group_keys(vid, *g, e, &head, &mut maps);
        }
    }
    let uni = head.unicast(vid).collect();
    let mut state = head.state;
    state.flags |= vlan_flags(maps.iter().any(|(k, _)| is_source_key(k)));
    (state, maps, uni)
}

/// Whether `k` is an (S,G) key.
pub(super) fn is_source_key(k: &FpKey) -> bool {
    k.kind == FP_KIND_SOURCE
}

/// The VLAN flags that depend on its groups rather than on its head: `FP_SOURCES` when some
/// group has an (S,G) key, so that in the (usual) VLAN without any the kernel skips that
/// lookup, which always misses there. It is one hash lookup of three per multicast frame.
pub(super) fn vlan_flags(has_source_keys: bool) -> u32 {
    if has_source_keys {
        FP_SOURCES
    } else {
        0
    }
}

/// Appends group `g`'s keys to `maps` (none for a group that is not snooped). Only with
/// snooping on in the VLAN.
pub(super) fn group_keys(
    vid: VlanId,
    g: Ipv4Addr,
    e: &GroupEntry,
    head: &VlanHead,
    maps: &mut Vec<(FpKey, EgressSet)>,
) {
    // 224.0.0.0/24 is flooded before any group lookup (RFC 4541 §2.1.2 (2)).
    if !is_multicast(g) || is_link_local_multicast(g) {
        return;
    }
    let any = Ipv4Addr::UNSPECIFIED;
    if e.flood {
        maps.push((key(vid, FP_KIND_ANY, g, any), head.domain.clone()));
        return;
    }
    // RFC 4541 §2.1.2 (1), (7): members admitted by the source filter plus mrouter ports.
    let any_set = e.any_source.union(head.mrouters);
    let any_entries = head.entries(any_set);
    let mut sources: Vec<(Ipv4Addr, EgressSet)> = e
        .by_source
        .iter()
        .map(|(s, set)| (*s, head.entries(set.union(head.mrouters))))
        // A source whose egress equals the any-source set needs no key of its own.
        .filter(|(_, entries)| *entries != any_entries)
        .collect();
    sources.sort_unstable_by_key(|(s, _)| *s);
    maps.push((key(vid, FP_KIND_ANY, g, any), any_entries));
    maps.extend(
        sources
            .into_iter()
            .map(|(s, entries)| (key(vid, FP_KIND_SOURCE, g, s), entries)),
    );
}
