//! [`parse_frame`]: the one classifier shared by the dataplane and the control plane's punt path,
//! so both agree on what a frame is.

use super::ethernet::{ethertype, EthernetFrame, MacAddr, HEADER_LEN};
use super::igmp::IgmpRepr;
use super::ipv4::{protocol, Ipv4Info, Ipv4Packet};
use super::vlan::{VlanHeader, VlanTag, TAG_LEN};
use super::{mcast, pim, WireError};

/// A classified frame: L2 addressing, the optional 802.1Q tag, and what the L3 payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// The 802.1Q tag, if the frame had one. A priority-tagged frame reports VID 0: the
    /// caller maps it to the port's native VLAN (IEEE 802.1Q §6.9).
    pub vlan: Option<VlanTag>,
    /// The EtherType after any tag.
    pub ethertype: u16,
    /// Offset of the L3 header in the buffer (14, or 18 when tagged).
    pub l3_offset: usize,
    /// What the L3 payload is.
    pub l3: L3<'a>,
}

/// The L3 classification the switch acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3<'a> {
    /// A checksummed, non-fragmented IGMP/MRD message (unknown IGMP types included, as
    /// [`IgmpRepr::Unknown`]).
    Igmp {
        /// The IPv4 header facts (TTL, Router Alert, addresses).
        ip: Ipv4Info,
        /// The message.
        msg: IgmpRepr<'a>,
    },
    /// A PIMv2 Hello to 224.0.0.13 with a good checksum.
    PimHello {
        /// The IPv4 header facts.
        ip: Ipv4Info,
    },
    /// Any other IPv4 packet, multicast data and IP fragments (not IGMP) included.
    Ipv4 {
        /// The IPv4 header facts.
        ip: Ipv4Info,
        /// IP protocol number.
        protocol: u8,
    },
    /// Not IPv4 (ARP, IPv6, LLDP...).
    Other {
        /// The EtherType after any tag.
        ethertype: u16,
    },
}

/// Parses and classifies a whole Ethernet frame, without allocating.
///
/// Rules:
/// - One 802.1Q tag is decoded; a second tag (0x8100 or 0x88a8, in either position) is `QinQ`.
/// - Every IPv4 header is validated (IHL, total length, header checksum, option syntax);
///   octets after total length are Ethernet padding and ignored.
/// - IGMP (protocol 2) in a fragment is `Err(Fragment)`; IGMP with a bad checksum or a
///   malformed body is an error, so it is never learned from (RFC 4541 §2.1.1(5)).
/// - TTL ≠ 1 and a missing Router Alert option are accepted, as the Linux bridge does; RFC 4541
///   does not require dropping them. The facts are in [`Ipv4Info`] for policy or counters.
/// - PIM (103) is `PimHello` only for an unfragmented v2 Hello to 224.0.0.13; other PIM is
///   `Ipv4`. A Hello with a bad PIM checksum is `Err(BadPimChecksum)`.
pub fn parse_frame(buf: &[u8]) -> Result<Frame<'_>, WireError> {
    let eth = EthernetFrame::new_checked(buf)?;
    let mut ethertype = eth.ethertype();
    let mut l3_offset = HEADER_LEN;
    let mut vlan = None;
    if ethertype == ethertype::QINQ {
        return Err(WireError::QinQ);
    }
    if ethertype == ethertype::VLAN {
        let tag = VlanHeader::new_checked(eth.payload())?;
        let inner = tag.inner_ethertype();
        if inner == ethertype::VLAN || inner == ethertype::QINQ {
            return Err(WireError::QinQ);
        }
        vlan = Some(tag.tag());
        ethertype = inner;
        l3_offset += TAG_LEN;
    }
    let l3 = if ethertype == ethertype::IPV4 {
        classify_ipv4(buf.get(l3_offset..).unwrap_or(&[]))?
    } else {
        L3::Other { ethertype }
    };
    Ok(Frame {
        dst: eth.dst_addr(),
        src: eth.src_addr(),
        vlan,
        ethertype,
        l3_offset,
        l3,
    })
}

fn classify_ipv4(l3: &[u8]) -> Result<L3<'_>, WireError> {
    let p = Ipv4Packet::new_checked(l3)?;
    if !p.verify_checksum() {
        return Err(WireError::BadIpChecksum);
    }
    let ip = p.info()?;
    let payload = l3
        .get(p.header_len()..usize::from(p.total_len()))
        .unwrap_or(&[]);
    match ip.protocol {
        protocol::IGMP => {
            if ip.is_fragment() {
                return Err(WireError::Fragment);
            }
            Ok(L3::Igmp {
                ip,
                msg: IgmpRepr::parse(payload)?,
            })
        }
        protocol::PIM
            if !ip.is_fragment() && ip.dst == mcast::ALL_PIM_ROUTERS && pim::is_hello(payload)? =>
        {
            Ok(L3::PimHello { ip })
        }
        other => Ok(L3::Ipv4 {
            ip,
            protocol: other,
        }),
    }
}
