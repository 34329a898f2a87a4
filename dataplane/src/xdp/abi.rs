//! The contract between `ebpf/xsnoop.bpf.c` and userspace: map names, sizes and the meaning of
//! every counter index. Kept in one place so a change on one side is a change here too (the
//! end-to-end test `tests/tests/xdp_afxdp.rs` fails if the two disagree).

/// Port slots the program's maps hold (the dataplane's `PortSet` has the same limit).
pub const MAX_SLOTS: u32 = 128;
/// RX queues per port that can have an AF_XDP socket (XSKMAP key = slot × this + queue).
pub const MAX_QUEUES: u32 = 64;
/// Name of the XDP program in the object.
pub const PROGRAM: &str = "xsnoop_port";
/// HASH ifindex → slot, written by userspace when a port is registered.
pub const MAP_PORTS: &str = "ports";
/// XSKMAP (slot × MAX_QUEUES + queue) → AF_XDP socket.
pub const MAP_XSKS: &str = "xsks";
/// PERCPU_ARRAY of u64 counters, `SLOT_STRIDE` per slot.
pub const MAP_COUNTERS: &str = "counters";
/// Magic in the first 4 octets of the metadata the program puts in front of a redirected frame.
pub const META_MAGIC: u32 = 0x5853_4e50;
/// Octets of that metadata (`struct xsnoop_meta`: magic u32, class u16, slot u16; host order).
pub const META_LEN: usize = 8;

/// What the classifier decided a frame is. The order is the counter index in the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameClass {
    /// IPv4 protocol 2 with at least 8 octets of IGMP (RFC 2236 §2, RFC 3376 §4): to the engine.
    Igmp = 0,
    /// IPv4 protocol 103: marks a multicast router port (RFC 4541 §2.1.1).
    Pim = 1,
    /// IPv4 to 224.0.0.0/4 outside 224.0.0.0/24: the traffic snooping constrains.
    McastData = 2,
    /// IPv4 to 224.0.0.0/24 that is neither IGMP nor PIM: flooded (RFC 4541 §2.1.2 (2)).
    LinkLocal = 3,
    /// Group MAC that is not IPv4 multicast (e.g. LLDP, STP, IPv6): flooded.
    OtherMcast = 4,
    /// Destination ff:ff:ff:ff:ff:ff.
    Broadcast = 5,
    /// Individual destination MAC.
    Unicast = 6,
    /// Too short for its headers, bad IPv4 header, or truncated IGMP.
    Malformed = 7,
}

impl FrameClass {
    /// Every class, in counter order.
    pub const ALL: [FrameClass; 8] = [
        FrameClass::Igmp,
        FrameClass::Pim,
        FrameClass::McastData,
        FrameClass::LinkLocal,
        FrameClass::OtherMcast,
        FrameClass::Broadcast,
        FrameClass::Unicast,
        FrameClass::Malformed,
    ];

    /// The class with counter index `i` (as found in the metadata), if any.
    pub fn from_index(i: u16) -> Option<FrameClass> {
        FrameClass::ALL.get(usize::from(i)).copied()
    }

    /// Counter index of this class within a slot's block.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Number of classes.
pub const NUM_CLASSES: usize = FrameClass::ALL.len();
/// Counter index: frames handed to an AF_XDP socket.
pub const CTR_REDIRECTED: usize = NUM_CLASSES;
/// Counter index: frames with no socket for their (slot, queue), or whose redirect was refused.
pub const CTR_REDIRECT_FAIL: usize = NUM_CLASSES + 1;
/// Counter index: frames replicated in the kernel by the fast path.
pub const CTR_FAST: usize = NUM_CLASSES + 2;
/// Counter index: fast-path frames dropped because no egress map existed for them (a VLAN
/// switched on without its flood/unregistered maps: a programming error, counted).
pub const CTR_FAST_DROP: usize = NUM_CLASSES + 3;
/// Counters per slot.
pub const SLOT_STRIDE: usize = NUM_CLASSES + 4;

/// The XSKMAP key of (slot, queue).
pub const fn xsk_key(slot: u32, queue: u32) -> u32 {
    slot * MAX_QUEUES + queue
}

// ---- The in-kernel fast path (see `crate::fastpath`). ----

/// Devmap egress program that pushes the 802.1Q tag named by the fast-path metadata.
pub const PROG_EGRESS_TAG: &str = "xsnoop_egress_tag";
/// Devmap egress program that only removes the fast-path metadata (untagged egress in a VLAN
/// that also has tagged egress ports).
pub const PROG_EGRESS_UNTAGGED: &str = "xsnoop_egress_untagged";
/// ARRAY slot → [`FpPort`]: how a port classifies untagged and tagged frames into VLANs.
pub const MAP_FP_PORTS: &str = "fp_ports";
/// ARRAY VID → [`FpVlan`]: the per-VLAN fast-path switch and member bitmap.
pub const MAP_FP_VLANS: &str = "fp_vlans";
/// HASH [`FpKey`] → u32 replication-list id (an index into [`MAP_FP_LISTS`]). A plain hash:
/// updating it does not wait for an RCU grace period, as a map-in-map update does.
pub const MAP_FP_GROUPS: &str = "fp_groups";
/// ARRAY_OF_MAPS list id → DEVMAP_HASH of exactly one egress set (shared by every key with that
/// set). Filled ahead of need in batches, since each update of it waits for a grace period.
pub const MAP_FP_LISTS: &str = "fp_lists";
/// LRU_PERCPU_HASH [`FpKey`] (kind 0) → [`FpCount`]: per-(VLAN, S, G) packets and bytes.
pub const MAP_FP_FLOWS: &str = "fp_flows";
/// HASH [`FpFdbKey`] → [`FpFdbVal`]: stations userspace learned (known unicast destinations, and
/// the sources the kernel may forward from when `FP_UNICAST` is on).
pub const MAP_FP_FDB: &str = "fp_fdb";
/// DEVMAP_HASH (VLAN × `MAX_SLOTS` + slot) → the port, for known unicast.
pub const MAP_FP_UNICAST: &str = "fp_unicast";
/// Stations `fp_fdb` holds.
pub const FP_MAX_FDB: u32 = 16_384;
/// (VLAN, port) entries `fp_unicast` holds.
pub const FP_MAX_UNICAST: u32 = 8192;
/// VLAN ids the `fp_vlans` array covers (0..4096).
pub const FP_MAX_VLANS: u32 = 4096;
/// Outer keys `fp_groups` holds (must equal `FP_MAX_KEYS` in `ebpf/xsnoop.bpf.c`): 100 000
/// groups, issue 5's table-scale point, plus their (S,G) keys and two keys per VLAN. A VLAN whose
/// keys do not fit is left whole to the AF_XDP workers (`SyncReport::overflowed`).
///
/// Cost: `fp_groups` is a preallocated HASH, so it is paid at load time, used or not.
/// Measured here (Linux 6.18, `memlock` in the map's fdinfo, see `fastpath/scale_tests.rs`):
/// 11 535 392 B (~88 B per key) at 131 072 keys, against ~1.44 MB at the former 16 384; the
/// replication lists come on top (~1.4 KB per inner devmap, e.g. 64 lists = 90 KB), and
/// `fp_lists`'s slots 262 KB.
pub const FP_MAX_KEYS: u32 = 131_072;
/// Replication lists `fp_lists` holds: one live list per distinct egress set (keys with the same
/// set share it) plus quarantined ones. Independent of [`FP_MAX_KEYS`]: only the array's slots
/// (8 B each) are reserved; each list is an inner devmap created on demand and kept open as a
/// descriptor by the switch process, so RLIMIT_NOFILE bounds the pool in practice.
pub const FP_MAX_LISTS: u32 = 32_768;
/// Flows `fp_flows` counts at a time (an LRU: the least recently seen flow is evicted).
pub const FP_MAX_FLOWS: u32 = 16_384;
/// Entries of every inner devmap (its keys are port slots).
pub const FP_INNER_MAX_ENTRIES: u32 = MAX_SLOTS;
/// Octets of an inner devmap value (`struct bpf_devmap_val`: ifindex, program fd/id).
pub const FP_INNER_VALUE_SIZE: u32 = 8;
/// Metadata magic of a fast-path frame whose VLAN has tagged egress ports.
pub const FP_META_MAGIC: u32 = 0x5853_4650;

/// `FpPort::mode`: not a fast-path port (everything goes to userspace).
pub const FP_PORT_NONE: u8 = 0;
/// `FpPort::mode`: an access port; tagged frames go to userspace (which drops them).
pub const FP_PORT_ACCESS: u8 = 1;
/// `FpPort::mode`: a trunk; tagged frames of VLANs whose member bitmap holds the port are
/// forwarded in the kernel.
pub const FP_PORT_TRUNK: u8 = 2;

/// `FpVlan::flags`: the fast path forwards this VLAN's IPv4 multicast data.
pub const FP_ON: u32 = 1;
/// `FpVlan::flags`: snooping is on (off: all multicast data is flooded).
pub const FP_SNOOPING: u32 = 2;
/// `FpVlan::flags`: some egress entry of the VLAN pushes a tag, so ingress adds metadata.
pub const FP_TAGGED: u32 = 4;
/// `FpVlan::flags`: known unicast and broadcast are forwarded in the kernel too, and every
/// fast-path frame needs a source MAC learned on its ingress port (`fp_fdb`).
pub const FP_UNICAST: u32 = 8;
/// `FpVlan::flags`: some group of the VLAN has an (S,G) key; without it the kernel looks up
/// only the (*,G) key of a multicast frame.
pub const FP_SOURCES: u32 = 16;

/// The `fp_unicast` key of (VLAN, slot).
pub const fn unicast_key(vlan: u16, slot: u16) -> u32 {
    vlan as u32 * MAX_SLOTS + slot as u32
}

/// `FpKey::kind`: a counter key (flows map only).
pub const FP_KIND_FLOW: u16 = 0;
/// `FpKey::kind`: (VLAN, G, S) for a source some port lists in an INCLUDE/EXCLUDE filter.
pub const FP_KIND_SOURCE: u16 = 1;
/// `FpKey::kind`: (VLAN, G) for every other source of a registered group.
pub const FP_KIND_ANY: u16 = 2;
/// `FpKey::kind`: (VLAN): all the VLAN's ports (snooping off, 224.0.0.0/24).
pub const FP_KIND_FLOOD: u16 = 3;
/// `FpKey::kind`: (VLAN): where unregistered groups go (mrouters + flood_unregistered).
pub const FP_KIND_UNREG: u16 = 4;

/// `struct fp_port`: a port's VLAN classification as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FpPort {
    /// VLAN of untagged frames (access VLAN or native VLAN); 0 = untagged frames to userspace.
    pub pvid: u16,
    /// `FP_PORT_*`.
    pub mode: u8,
    /// Zero.
    pub pad: u8,
}

/// `struct fp_vlan`: one VLAN's fast-path state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FpVlan {
    /// `FP_ON | FP_SNOOPING | FP_TAGGED`.
    pub flags: u32,
    /// Zero.
    pub pad: u32,
    /// Port slots carrying the VLAN, as a little 128-bit bitmap in two words (slot i = bit i).
    pub members: [u64; 2],
}

/// `struct fp_key`: the key of `fp_groups` and `fp_flows`. Addresses are in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FpKey {
    /// VLAN id.
    pub vlan: u16,
    /// `FP_KIND_*`.
    pub kind: u16,
    /// Group address octets (zero for FLOOD/UNREG).
    pub group: [u8; 4],
    /// Source address octets (zero unless SOURCE or a flow key).
    pub source: [u8; 4],
}

/// `struct fp_count`: one CPU's share of a flow's counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpCount {
    /// Packets replicated.
    pub packets: u64,
    /// Octets of those packets as received (tag included).
    pub bytes: u64,
}

/// `struct fp_fdb_key`: a station in a VLAN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FpFdbKey {
    /// VLAN id.
    pub vlan: u16,
    /// MAC address.
    pub mac: [u8; 6],
}

/// `struct fp_fdb_val`: where a station was learned, and when the kernel last saw it send.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpFdbVal {
    /// Port slot.
    pub slot: u32,
    /// The kernel's jiffies (low 32 bits) when it last wrote `seen_ns`: it rewrites the stamp
    /// once jiffies moved on by `FP_SEEN_JIFFIES` (64), so most frames read no clock. Userspace
    /// writes 0.
    pub seen_jiffies: u32,
    /// CLOCK_MONOTONIC ns of a frame from the station forwarded by the kernel, at most 64
    /// jiffies (0.64 s at HZ=100) old while it keeps sending; 0 = none since userspace wrote
    /// the entry.
    pub seen_ns: u64,
}

// SAFETY: as below (sizes 8 and 16, no padding).
unsafe impl aya::Pod for FpFdbKey {}
// SAFETY: as below.
unsafe impl aya::Pod for FpFdbVal {}

// SAFETY: plain `repr(C)` structs of integers with no padding (sizes 4, 24, 12, 16), matching
// the C structs in ebpf/xsnoop.bpf.c; every bit pattern is a valid value.
unsafe impl aya::Pod for FpPort {}
// SAFETY: as above.
unsafe impl aya::Pod for FpVlan {}
// SAFETY: as above.
unsafe impl aya::Pod for FpKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FpCount {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_structs_have_the_c_layout() {
        assert_eq!(std::mem::size_of::<FpPort>(), 4);
        assert_eq!(std::mem::size_of::<FpVlan>(), 24);
        assert_eq!(std::mem::size_of::<FpKey>(), 12);
        assert_eq!(std::mem::size_of::<FpCount>(), 16);
        assert_eq!(std::mem::size_of::<FpFdbKey>(), 8);
        assert_eq!(std::mem::size_of::<FpFdbVal>(), 16);
    }
}
