//! Builders for every frame the switch sends and every control frame tests inject: full
//! Ethernet (+ optional 802.1Q) / IPv4 / payload frames written into a caller's buffer, with no
//! allocation. IGMP and MRD frames carry TOS 0xc0, TTL 1, a Router Alert option and DF clear
//! (RFC 2236 §2, RFC 3376 §4, RFC 4286 §7), correct checksums, and the destination IP and MAC the
//! RFCs prescribe. Frames are not padded to 60 octets (NICs pad; veth does not need it).

use core::net::Ipv4Addr;
use core::time::Duration;

use super::ethernet::{ethertype, EthernetRepr, MacAddr, HEADER_LEN};
use super::igmp::{self, IgmpRepr, IgmpVersion, RecordSpec};
use super::ipv4::{protocol, Ipv4Repr};
use super::vlan::{VlanHeader, VlanTag, TAG_LEN};
use super::{mcast, pim, timecode, udp, WireError};

/// IPv4 TOS of IGMP messages: precedence 6, Internetwork Control (what Linux sends).
pub const IGMP_TOS: u8 = 0xc0;

/// Something that can write a whole frame into a buffer.
pub trait FrameBuilder {
    /// Octets the frame needs.
    fn buffer_len(&self) -> usize;
    /// Writes the frame at the start of `buf`; returns its length.
    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError>;
}

/// Writes L2 (+ tag) and the IPv4 header; returns the offset of the IPv4 payload.
fn emit_l2_l3(
    buf: &mut [u8],
    src_mac: MacAddr,
    vlan: Option<VlanTag>,
    ip: &Ipv4Repr,
) -> Result<usize, WireError> {
    let l2 = l2_len(vlan);
    let needed = l2 + ip.buffer_len();
    if buf.len() < needed {
        return Err(WireError::BufferTooSmall {
            needed,
            got: buf.len(),
        });
    }
    let dst_mac = mcast::multicast_mac(ip.dst);
    match vlan {
        None => {
            EthernetRepr {
                dst: dst_mac,
                src: src_mac,
                ethertype: ethertype::IPV4,
            }
            .emit(buf)?;
        }
        Some(tag) => {
            if !tag.is_valid() {
                return Err(WireError::BadVlanTag);
            }
            EthernetRepr {
                dst: dst_mac,
                src: src_mac,
                ethertype: ethertype::VLAN,
            }
            .emit(buf)?;
            let mut h = VlanHeader::new_unchecked(buf.get_mut(HEADER_LEN..).unwrap_or(&mut []));
            h.set_tci(tag.tci());
            h.set_inner_ethertype(ethertype::IPV4);
        }
    }
    let hl = ip.emit(buf.get_mut(l2..).unwrap_or(&mut []))?;
    Ok(l2 + hl)
}

const fn l2_len(vlan: Option<VlanTag>) -> usize {
    if vlan.is_some() {
        HEADER_LEN + TAG_LEN
    } else {
        HEADER_LEN
    }
}

/// The IPv4 header of an IGMP/MRD message.
fn igmp_ip(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> Ipv4Repr {
    Ipv4Repr {
        src,
        dst,
        protocol: protocol::IGMP,
        ttl: 1,
        tos: IGMP_TOS,
        ident: 0,
        dont_fragment: false,
        more_fragments: false,
        frag_offset: 0,
        router_alert: true,
        payload_len,
    }
}

/// Emits a frame around an IGMP message written by `body` (which gets exactly `igmp_len` octets).
fn emit_igmp_frame(
    buf: &mut [u8],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    vlan: Option<VlanTag>,
    igmp_len: usize,
    body: impl FnOnce(&mut [u8]) -> Result<usize, WireError>,
) -> Result<usize, WireError> {
    let ip = igmp_ip(src_ip, dst_ip, igmp_len);
    let off = emit_l2_l3(buf, src_mac, vlan, &ip)?;
    let n = body(buf.get_mut(off..off + igmp_len).unwrap_or(&mut []))?;
    Ok(off + n)
}

fn igmp_frame_len(vlan: Option<VlanTag>, igmp_len: usize) -> usize {
    l2_len(vlan) + igmp_ip(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, igmp_len).buffer_len()
}

/// A Membership Query: v1/v2 general, v2 group-specific, v3 general / group-specific /
/// group-and-source-specific. Destination 224.0.0.1 for general queries, G otherwise
/// (RFC 3376 §4.1.12, RFC 2236 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryBuilder<'a> {
    /// Query version (v1: always general, code 0; v2: 8 octets; v3: ≥ 12 octets).
    pub version: IgmpVersion,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Querier address (0.0.0.0 is allowed: a proxy querier, as Linux does without an address).
    pub src_ip: Ipv4Addr,
    /// `None` for a general query; `Some(G)` for group(-and-source)-specific.
    pub group: Option<Ipv4Addr>,
    /// Sources (v3 group-specific only).
    pub sources: &'a [Ipv4Addr],
    /// Max response time; encoded rounding down (v2: tenths up to 25.5 s; v3 float code).
    pub max_resp: Duration,
    /// S flag (v3).
    pub s_flag: bool,
    /// QRV (v3), 0..=7.
    pub qrv: u8,
    /// Querier's query interval (v3), encoded rounding up.
    pub qqi: Duration,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl QueryBuilder<'_> {
    fn igmp_len(&self) -> usize {
        match self.version {
            IgmpVersion::V3 => igmp::V3_QUERY_HEADER_LEN + self.sources.len() * 4,
            _ => igmp::BASE_LEN,
        }
    }

    fn validate(&self) -> Result<(), WireError> {
        if self.version == IgmpVersion::V1 && self.group.is_some() {
            return Err(WireError::GroupInV1Query);
        }
        if !self.sources.is_empty() && (self.version != IgmpVersion::V3 || self.group.is_none()) {
            return Err(WireError::SourcesWithoutV3Group);
        }
        if self.qrv > 7 {
            return Err(WireError::QrvTooLarge);
        }
        Ok(())
    }
}

impl FrameBuilder for QueryBuilder<'_> {
    fn buffer_len(&self) -> usize {
        igmp_frame_len(self.vlan, self.igmp_len())
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        self.validate()?;
        let group = self.group.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let dst = self.group.unwrap_or(mcast::ALL_SYSTEMS);
        let code = timecode::max_resp_code(self.version, self.max_resp);
        emit_igmp_frame(
            buf,
            self.src_mac,
            self.src_ip,
            dst,
            self.vlan,
            self.igmp_len(),
            |b| match self.version {
                IgmpVersion::V3 => igmp::emit_v3_query(
                    b,
                    code,
                    group,
                    self.s_flag,
                    self.qrv,
                    timecode::qqi_code(self.qqi),
                    self.sources,
                ),
                v => IgmpRepr::Query(igmp::IgmpQuery {
                    version: v,
                    max_resp_code: code,
                    group,
                    suppress: false,
                    qrv: 0,
                    qqic: 0,
                    sources: igmp::SourceList::default(),
                })
                .emit(b),
            },
        )
    }
}

/// Emits a whole frame around one 8-octet IGMP message (v1/v2 report, leave) sent to `dst`.
fn emit_short_igmp(
    buf: &mut [u8],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst: Ipv4Addr,
    vlan: Option<VlanTag>,
    msg: IgmpRepr<'_>,
) -> Result<usize, WireError> {
    emit_igmp_frame(buf, src_mac, src_ip, dst, vlan, igmp::BASE_LEN, |b| {
        msg.emit(b)
    })
}

/// An IGMPv1 report (0x12) to the group it reports (RFC 1112 App. I).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportV1Builder {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Host address.
    pub src_ip: Ipv4Addr,
    /// Group reported (also the destination).
    pub group: Ipv4Addr,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl FrameBuilder for ReportV1Builder {
    fn buffer_len(&self) -> usize {
        igmp_frame_len(self.vlan, igmp::BASE_LEN)
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let msg = IgmpRepr::ReportV1 { group: self.group };
        emit_short_igmp(buf, self.src_mac, self.src_ip, self.group, self.vlan, msg)
    }
}

/// An IGMPv2 report (0x16) to the group it reports (RFC 2236 §2, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportV2Builder {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Host address.
    pub src_ip: Ipv4Addr,
    /// Group reported (also the destination).
    pub group: Ipv4Addr,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl FrameBuilder for ReportV2Builder {
    fn buffer_len(&self) -> usize {
        igmp_frame_len(self.vlan, igmp::BASE_LEN)
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let msg = IgmpRepr::ReportV2 { group: self.group };
        emit_short_igmp(buf, self.src_mac, self.src_ip, self.group, self.vlan, msg)
    }
}

/// An IGMPv2 Leave Group (0x17) to ALL-ROUTERS 224.0.0.2 (RFC 2236 §3, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaveBuilder {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Host address.
    pub src_ip: Ipv4Addr,
    /// Group left.
    pub group: Ipv4Addr,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl FrameBuilder for LeaveBuilder {
    fn buffer_len(&self) -> usize {
        igmp_frame_len(self.vlan, igmp::BASE_LEN)
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let msg = IgmpRepr::LeaveV2 { group: self.group };
        emit_short_igmp(
            buf,
            self.src_mac,
            self.src_ip,
            mcast::ALL_ROUTERS,
            self.vlan,
            msg,
        )
    }
}

/// An IGMPv3 report (0x22) to 224.0.0.22 with arbitrary records (RFC 3376 §4.2.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportV3Builder<'a> {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Host address.
    pub src_ip: Ipv4Addr,
    /// Group records, emitted in order.
    pub records: &'a [RecordSpec<'a>],
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl FrameBuilder for ReportV3Builder<'_> {
    fn buffer_len(&self) -> usize {
        igmp_frame_len(self.vlan, igmp::v3_report_len(self.records))
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = igmp::v3_report_len(self.records);
        emit_igmp_frame(
            buf,
            self.src_mac,
            self.src_ip,
            mcast::IGMPV3_ROUTERS,
            self.vlan,
            len,
            |b| igmp::emit_v3_report(b, self.records),
        )
    }
}

/// An MRD Advertisement (0x30) to ALL-SNOOPERS 224.0.0.106 (RFC 4286 §4, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MrdAdvertisementBuilder {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Router address.
    pub src_ip: Ipv4Addr,
    /// Advertisement Interval, seconds (RFC 4286 default 20).
    pub adv_interval: u8,
    /// The router's query interval, seconds.
    pub qqi: u16,
    /// The router's robustness variable.
    pub qrv: u16,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl FrameBuilder for MrdAdvertisementBuilder {
    fn buffer_len(&self) -> usize {
        igmp_frame_len(self.vlan, igmp::BASE_LEN)
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let msg = IgmpRepr::MrdAdvertisement {
            adv_interval: self.adv_interval,
            qqi: self.qqi,
            qrv: self.qrv,
        };
        emit_igmp_frame(
            buf,
            self.src_mac,
            self.src_ip,
            mcast::ALL_SNOOPERS,
            self.vlan,
            igmp::BASE_LEN,
            |b| msg.emit(b),
        )
    }
}

/// Any IGMP message from an [`IgmpRepr`] to an explicit destination: for tests that need
/// unusual messages (unknown types, MRD solicitations, queries to odd addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawIgmpBuilder<'a> {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Source address.
    pub src_ip: Ipv4Addr,
    /// Destination address (the MAC is derived from it).
    pub dst_ip: Ipv4Addr,
    /// The message.
    pub msg: IgmpRepr<'a>,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl FrameBuilder for RawIgmpBuilder<'_> {
    fn buffer_len(&self) -> usize {
        igmp_frame_len(self.vlan, self.msg.buffer_len())
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let msg = self.msg;
        emit_igmp_frame(
            buf,
            self.src_mac,
            self.src_ip,
            self.dst_ip,
            self.vlan,
            msg.buffer_len(),
            |b| msg.emit(b),
        )
    }
}

/// A PIMv2 Hello to ALL-PIM-ROUTERS 224.0.0.13, TTL 1 (RFC 7761 §4.3.1), with a Holdtime
/// option: makes the switch see a multicast router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PimHelloBuilder {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Router address.
    pub src_ip: Ipv4Addr,
    /// Holdtime, seconds (RFC 7761 default 105).
    pub holdtime: u16,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

const PIM_HELLO_LEN: usize = pim::HEADER_LEN + 6;

impl PimHelloBuilder {
    fn ip(&self) -> Ipv4Repr {
        Ipv4Repr {
            src: self.src_ip,
            dst: mcast::ALL_PIM_ROUTERS,
            protocol: protocol::PIM,
            ttl: 1,
            tos: IGMP_TOS,
            ident: 0,
            dont_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            router_alert: false,
            payload_len: PIM_HELLO_LEN,
        }
    }
}

impl FrameBuilder for PimHelloBuilder {
    fn buffer_len(&self) -> usize {
        l2_len(self.vlan) + self.ip().buffer_len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let off = emit_l2_l3(buf, self.src_mac, self.vlan, &self.ip())?;
        let n = pim::emit_hello(buf.get_mut(off..).unwrap_or(&mut []), self.holdtime)?;
        Ok(off + n)
    }
}

/// A UDP datagram to a group: the multicast data tests inject and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDataBuilder<'a> {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Sender address (the S of (S,G)).
    pub src_ip: Ipv4Addr,
    /// Destination group (the MAC is derived from it).
    pub group: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// IP TTL.
    pub ttl: u8,
    /// UDP payload.
    pub payload: &'a [u8],
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
}

impl UdpDataBuilder<'_> {
    fn ip(&self) -> Ipv4Repr {
        Ipv4Repr {
            src: self.src_ip,
            dst: self.group,
            protocol: protocol::UDP,
            ttl: self.ttl,
            tos: 0,
            ident: 0,
            dont_fragment: true,
            more_fragments: false,
            frag_offset: 0,
            router_alert: false,
            payload_len: udp::HEADER_LEN + self.payload.len(),
        }
    }
}

impl FrameBuilder for UdpDataBuilder<'_> {
    fn buffer_len(&self) -> usize {
        l2_len(self.vlan) + self.ip().buffer_len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let off = emit_l2_l3(buf, self.src_mac, self.vlan, &self.ip())?;
        let n = udp::emit(
            buf.get_mut(off..).unwrap_or(&mut []),
            self.src_ip,
            self.group,
            self.src_port,
            self.dst_port,
            self.payload,
        )?;
        Ok(off + n)
    }
}

/// Writes `b`'s frame into a fresh `Vec` (for tests and the control plane's slow path only; the
/// dataplane emits into its own buffers).
pub fn to_vec(b: &impl FrameBuilder) -> Result<Vec<u8>, WireError> {
    let mut v = vec![0u8; b.buffer_len()];
    let n = b.emit(&mut v)?;
    v.truncate(n);
    Ok(v)
}
