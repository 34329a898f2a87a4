//! The per-frame decision: given a received frame and its ingress port, where it goes.
//!
//! [`process`] is what a worker calls per received frame: parse, classify into a VLAN, decide,
//! learn the source. [`decide`] is the pure rule for an already classified frame (also what
//! `explain` calls, with no learning). Neither allocates, reads a clock or blocks.
//!
//! Rules, in order:
//! 1. ingress port down → drop; unparsable frames → drop (see [`classify_error`]);
//! 2. VLAN classification by the [`PortMap`] (IEEE 802.1Q §6.9), refusals are drops;
//! 3. group or all-zero source MAC → drop (a station never sends from one; never learned);
//! 4. IGMP / MRD (an IGMP type) / PIM Hello → punt to the control plane, which forwards them
//!    itself (RFC 4541 §2.1.1) and learns mrouters from them;
//! 5. the VLAN must be in the published table, else drop;
//! 6. broadcast → flood; 01:80:c2:00:00:0x → drop (never relayed, IEEE 802.1Q §8.6.3);
//!    IPv4 multicast data (group MAC and destination in 224.0.0.0/4) →
//!    [`ForwardingTable::multicast_egress`] (RFC 4541 §2.1.2, keyed on the IP group as §2.1.2(5)
//!    prefers); any other group MAC (IPv6 33:33:…, non-IP, or IPv4 to a non-group address)
//!    → flood (RFC 4541 §2.1.2(4)); the MAC decides first, so IPv4 multicast inside a unicast
//!    MAC (multicast-to-unicast) is unicast;
//! 7. unicast: a learned, live destination → its port (drop when that is the ingress port);
//!    unknown (or learned behind a port now down or outside the VLAN) → flood.
//!
//! Every egress set is cut to the VLAN's ports (in both the port map and the table), minus down
//! ports, minus the ingress port. The source is learned after deciding, only from frames that
//! were admitted (never from malformed, mis-tagged or invalid-source frames).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::portset::{PortId, PortSet};
use crate::table::{ForwardingTable, VlanId};
use crate::wire::ethernet::{ethertype, HEADER_LEN};
use crate::wire::ipv4::protocol;
use crate::wire::vlan::{VlanTag, TAG_LEN};
use crate::wire::{is_multicast, parse_frame, Frame, Layer, MacAddr, WireError, L3};

use super::fdb::Fdb;
use super::portmap::{EgressTag, PortMap};
use super::reason::{DropReason, ForwardReason};

/// What a decision reads: the published snapshots and the link state. Cheap to build per batch.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The control plane's current forwarding table.
    pub table: &'a ForwardingTable,
    /// The current port VLAN map.
    pub ports: &'a PortMap,
    /// Ports whose link is down: never egress, and frames received on them are dropped.
    pub down: PortSet,
}

/// Where a forwarded frame goes, and in which form on each port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Egress {
    /// The VLAN the frame belongs to.
    pub vlan: VlanId,
    /// Egress ports (possibly empty: e.g. an unregistered group with no router port).
    pub ports: PortSet,
    /// The egress ports that send the frame untagged; the others send it tagged with `vlan`.
    pub untagged: PortSet,
    /// The rule that chose `ports`.
    pub reason: ForwardReason,
}

impl Egress {
    /// How the frame leaves `port`; `None` if `port` is not an egress port.
    pub fn tag_for(&self, port: PortId) -> Option<EgressTag> {
        if !self.ports.contains(port) {
            None
        } else if self.untagged.contains(port) {
            Some(EgressTag::Untagged)
        } else {
            Some(EgressTag::Tagged(self.vlan))
        }
    }

    /// The egress ports that send the frame tagged.
    pub fn tagged(&self) -> PortSet {
        self.ports.difference(self.untagged)
    }

    /// The egress ports that send the frame exactly as it arrived, `received` being the VID of
    /// the 802.1Q tag it arrived with (`None`: untagged). They need no tag pushed, popped or
    /// rewritten, so the received frame itself can go onto their TX rings; every other egress
    /// port needs a rewritten copy. A priority-tagged frame (VID 0) matches no port: the tag is
    /// popped on access ports and rewritten to the VLAN on trunks (IEEE 802.1Q §6.9).
    pub fn unchanged_for(&self, received: Option<VlanId>) -> PortSet {
        match received {
            None => self.ports.intersection(self.untagged),
            Some(v) if v == self.vlan => self.tagged(),
            Some(_) => PortSet::EMPTY,
        }
    }
}

/// The verdict on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send copies to these ports.
    Forward(Egress),
    /// Hand the frame to the control plane (IGMP, MRD, PIM Hello); it decides the egress.
    Punt {
        /// The VLAN the frame was received in.
        vlan: VlanId,
    },
    /// Discard and count.
    Drop(DropReason),
}

impl Decision {
    /// The egress, if forwarded.
    pub fn egress(&self) -> Option<&Egress> {
        match self {
            Decision::Forward(e) => Some(e),
            _ => None,
        }
    }
}

/// The drop reason for a frame `parse_frame` refused with `err`.
///
/// - Ethernet/802.1Q damage and QinQ: their own reasons.
/// - Anything wrong in an IGMP message, or in the IPv4 header of a packet whose protocol octet
///   says IGMP: `malformed_igmp`, never forwarded (RFC 4541 §2.1.1(5)).
/// - A bad PIM Hello: `malformed_pim`.
/// - Any other broken IPv4 header: `bad_ip_checksum` (RFC 4541 §2.1.2(6): verify before use) or
///   `bad_ipv4_header`. These are dropped even when unicast: no IPv4 receiver accepts such a
///   header (RFC 1122 §3.2.1.2), so relaying it only spends bandwidth, and forwarding it as
///   non-IP would bypass snooping for multicast.
pub fn classify_error(buf: &[u8], err: WireError) -> DropReason {
    match err {
        WireError::Truncated {
            layer: Layer::Ethernet,
        } => DropReason::TruncatedEthernet,
        WireError::Truncated { layer: Layer::Vlan } => DropReason::TruncatedVlan,
        WireError::QinQ => DropReason::Qinq,
        WireError::Truncated { layer: Layer::Igmp }
        | WireError::Fragment
        | WireError::BadIgmpChecksum
        | WireError::BadQueryLength
        | WireError::RecordPastEnd
        | WireError::SourcesPastEnd
        | WireError::AuxPastEnd => DropReason::MalformedIgmp,
        WireError::Truncated { layer: Layer::Pim } | WireError::BadPimChecksum => {
            DropReason::MalformedPim
        }
        WireError::Truncated { layer: Layer::Ipv4 }
        | WireError::NotIpv4
        | WireError::BadIhl
        | WireError::BadTotalLength
        | WireError::TotalLengthPastFrame
        | WireError::BadIpChecksum
        | WireError::BadIpOption
        // Builder-only errors never come out of parse_frame; classify them as header damage.
        | WireError::BufferTooSmall { .. }
        | WireError::TooLong
        | WireError::BadVlanTag
        | WireError::SourcesWithoutV3Group
        | WireError::GroupInV1Query
        | WireError::QrvTooLarge
        | WireError::BadAuxLength => {
            if ip_protocol_octet(buf) == Some(protocol::IGMP) {
                DropReason::MalformedIgmp
            } else if err == WireError::BadIpChecksum {
                DropReason::BadIpChecksum
            } else {
                DropReason::BadIpv4Header
            }
        }
    }
}

/// The IPv4 protocol octet of a (possibly broken) frame, if the frame is long enough to hold it.
fn ip_protocol_octet(buf: &[u8]) -> Option<u8> {
    let et = |at: usize| match buf.get(at..at + 2) {
        Some(&[a, b]) => Some(u16::from_be_bytes([a, b])),
        _ => None,
    };
    let mut l3 = HEADER_LEN;
    let mut t = et(12)?;
    if t == ethertype::VLAN {
        t = et(HEADER_LEN + 2)?;
        l3 += TAG_LEN;
    }
    if t != ethertype::IPV4 {
        return None;
    }
    buf.get(l3 + 9).copied()
}

/// 01:80:c2:00:00:00–0f, the IEEE 802.1Q §8.6.3 reserved addresses a bridge never relays.
fn is_reserved_l2_group(mac: MacAddr) -> bool {
    matches!(mac.0, [0x01, 0x80, 0xc2, 0x00, 0x00, x] if x & 0xf0 == 0)
}

/// Whether a station may send from (and be learned as) `mac`.
fn is_station(mac: MacAddr) -> bool {
    mac.is_unicast() && mac != MacAddr::ZERO
}

/// The decision for `frame`, received on `ingress` and classified into `vlan`, at `now` (for
/// FDB ageing). Pure: reads the inputs and the FDB, changes nothing.
pub fn decide(
    inputs: &Inputs<'_>,
    fdb: &Fdb,
    now: Duration,
    ingress: PortId,
    vlan: VlanId,
    frame: &Frame<'_>,
) -> Decision {
    if !is_station(frame.src) {
        return Decision::Drop(DropReason::InvalidSourceMac);
    }
    let l3_ip = match frame.l3 {
        L3::Igmp { .. } | L3::PimHello { .. } => return Decision::Punt { vlan },
        L3::Ipv4 { ip, .. } => Some(ip),
        L3::Other { .. } => None,
    };
    // Every egress set is cut to this: the VLAN's ports per the port map, up, not the ingress.
    let base = inputs
        .ports
        .members(vlan)
        .difference(inputs.down)
        .without(ingress);
    let forward = |ports: PortSet, reason| {
        let ports = ports.intersection(base);
        Decision::Forward(Egress {
            vlan,
            ports,
            untagged: ports.intersection(inputs.ports.untagged(vlan)),
            reason,
        })
    };
    let dst = frame.dst;
    if dst.is_multicast() && !dst.is_broadcast() {
        if is_reserved_l2_group(dst) {
            return Decision::Drop(DropReason::ReservedL2Group);
        }
        if let Some(ip) = l3_ip.filter(|ip| is_multicast(ip.dst)) {
            // The table applies RFC 4541 §2.1.2 and cuts to its own VLAN ports; an unknown VLAN
            // comes back as `UnknownVlan`. Kept as the one lookup on this path.
            let (ports, rule) = inputs.table.multicast_egress(vlan, ingress, ip.src, ip.dst);
            return match ForwardReason::from_rule(rule) {
                Some(reason) => forward(ports, reason),
                None => Decision::Drop(DropReason::VlanNotConfigured),
            };
        }
    }
    let Some(vt) = inputs.table.vlans.get(&vlan) else {
        return Decision::Drop(DropReason::VlanNotConfigured);
    };
    let domain = vt.ports.intersection(base);
    if dst.is_broadcast() {
        return forward(domain, ForwardReason::Broadcast);
    }
    if dst.is_multicast() {
        return forward(domain, ForwardReason::L2Multicast);
    }
    match fdb.lookup(vlan, dst, now) {
        Some(p) if p == ingress => Decision::Drop(DropReason::SamePort),
        Some(p) if domain.contains(p) => forward(PortSet::single(p), ForwardReason::KnownUnicast),
        _ => forward(domain, ForwardReason::UnknownUnicast),
    }
}

/// Whether the source of a frame with decision `d` may be learned: every admitted frame, also
/// when it is punted or has nowhere to go, but not when it was refused as invalid.
fn learnable(d: &Decision) -> bool {
    match d {
        Decision::Forward(_) | Decision::Punt { .. } => true,
        Decision::Drop(r) => matches!(r, DropReason::SamePort | DropReason::ReservedL2Group),
    }
}

/// The whole per-frame pipeline for a frame `buf` received on `ingress` at `now`: parse, VLAN
/// classification, [`decide`], then source learning into `fdb`.
pub fn process(
    inputs: &Inputs<'_>,
    fdb: &mut Fdb,
    now: Duration,
    ingress: PortId,
    buf: &[u8],
) -> Decision {
    process_frame(inputs, fdb, now, ingress, buf, None)
}

/// [`process`], reusing the decision on the previous frame of the same multicast flow from
/// `memo` (see [`FlowMemo`]): the same decision and the same FDB afterwards, for less work.
/// `memo` must be new whenever `inputs` change.
pub fn process_with_memo(
    inputs: &Inputs<'_>,
    fdb: &mut Fdb,
    now: Duration,
    ingress: PortId,
    buf: &[u8],
    memo: &mut FlowMemo,
) -> Decision {
    process_frame(inputs, fdb, now, ingress, buf, Some(memo))
}

fn process_frame(
    inputs: &Inputs<'_>,
    fdb: &mut Fdb,
    now: Duration,
    ingress: PortId,
    buf: &[u8],
    memo: Option<&mut FlowMemo>,
) -> Decision {
    if inputs.down.contains(ingress) {
        return Decision::Drop(DropReason::IngressDown);
    }
    // Every frame is parsed, so every frame's headers are verified, memo or not.
    let frame = match parse_frame(buf) {
        Ok(f) => f,
        Err(e) => return Decision::Drop(classify_error(buf, e)),
    };
    let flow = memo
        .as_ref()
        .and_then(|_| FlowKey::of(ingress, now, &frame));
    if let (Some(m), Some(k)) = (&memo, flow) {
        if let Some(d) = m.recall(k) {
            return d;
        }
    }
    let vlan = match inputs.ports.ingress_vlan(ingress, &frame) {
        Ok(v) => v,
        Err(r) => return Decision::Drop(r),
    };
    let d = decide(inputs, fdb, now, ingress, vlan, &frame);
    if learnable(&d) {
        fdb.learn(vlan, frame.src, ingress, now);
    }
    if let Some(m) = memo {
        // This frame may have moved a station (the kept flow's source, even): keep its own
        // decision if it can be kept, else none.
        m.last = flow
            .filter(|_| matches!(d, Decision::Forward(_)))
            .filter(|_| fdb.is_settled(vlan, frame.src, ingress, now))
            .map(|k| (k, d));
    }
    d
}

/// The decision on the last IPv4 multicast data frame, kept for the next frame of the same
/// flow: what a switch ASIC's flow cache does for the CPU's table walk.
///
/// Frames of one stream come back to back (a camera, a market-data feed, a benchmark's
/// generator). Received on the same port at the same instant, with the same MAC addresses,
/// 802.1Q tag and IPv4 source and group, they classify into the same VLAN, meet the same
/// table lookup and get the same egress; learning their source again at the same instant
/// changes nothing ([`Fdb::is_settled`] checks that before a decision is kept). Only frames
/// back to back share a decision: any frame that reaches learning in between replaces or
/// clears it (it may have moved the kept flow's source; found by the property test). Frames
/// dropped before that (damaged, wrong VLAN) change no state and leave it. Multicast data is
/// the only kind kept: its decision reads no FDB entry. Every frame is still parsed, so
/// damaged headers are still refused.
///
/// Valid for one set of [`Inputs`]: make a new one when they change.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowMemo {
    last: Option<(FlowKey, Decision)>,
}

impl FlowMemo {
    /// The decision kept, if any (for tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> Option<Decision> {
        self.last.map(|(_, d)| d)
    }

    fn recall(&self, k: FlowKey) -> Option<Decision> {
        self.last.filter(|(mk, _)| *mk == k).map(|(_, d)| d)
    }
}

/// Everything [`process`] reads from a multicast data frame and its arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlowKey {
    ingress: PortId,
    now: Duration,
    tag: Option<VlanTag>,
    dst: MacAddr,
    src: MacAddr,
    source: Ipv4Addr,
    group: Ipv4Addr,
}

impl FlowKey {
    /// The key of an IPv4 multicast data frame (group MAC, group address); `None` for others.
    fn of(ingress: PortId, now: Duration, frame: &Frame<'_>) -> Option<FlowKey> {
        let L3::Ipv4 { ip, .. } = frame.l3 else {
            return None;
        };
        let group_mac = frame.dst.is_multicast() && !frame.dst.is_broadcast();
        (group_mac && is_multicast(ip.dst)).then_some(FlowKey {
            ingress,
            now,
            tag: frame.vlan,
            dst: frame.dst,
            src: frame.src,
            source: ip.src,
            group: ip.dst,
        })
    }
}
