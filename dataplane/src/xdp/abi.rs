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
/// Counters per slot.
pub const SLOT_STRIDE: usize = NUM_CLASSES + 2;

/// The XSKMAP key of (slot, queue).
pub const fn xsk_key(slot: u32, queue: u32) -> u32 {
    slot * MAX_QUEUES + queue
}
