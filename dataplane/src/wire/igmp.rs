//! IGMP messages (RFC 1112, RFC 2236, RFC 3376) and Multicast Router Discovery (RFC 4286, which
//! lives in IGMP's type space): a zero-copy view, a [`IgmpRepr`] that borrows source lists and
//! group records from the buffer, and an emitter.

use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

use super::{bytes, checksum, timecode};
use super::{Layer, WireError};

/// IGMP type octets.
pub mod msg_type {
    /// Membership Query, all versions (RFC 3376 §4.1).
    pub const MEMBERSHIP_QUERY: u8 = 0x11;
    /// IGMPv1 Membership Report (RFC 1112 App. I).
    pub const V1_MEMBERSHIP_REPORT: u8 = 0x12;
    /// IGMPv2 Membership Report (RFC 2236 §2.1).
    pub const V2_MEMBERSHIP_REPORT: u8 = 0x16;
    /// IGMPv2 Leave Group (RFC 2236 §2.1).
    pub const V2_LEAVE_GROUP: u8 = 0x17;
    /// IGMPv3 Membership Report (RFC 3376 §4.2).
    pub const V3_MEMBERSHIP_REPORT: u8 = 0x22;
    /// MRD Advertisement (RFC 4286 §4).
    pub const MRD_ADVERTISEMENT: u8 = 0x30;
    /// MRD Solicitation (RFC 4286 §5).
    pub const MRD_SOLICITATION: u8 = 0x31;
    /// MRD Termination (RFC 4286 §6).
    pub const MRD_TERMINATION: u8 = 0x32;
}

/// Byte positions inside IGMP messages and v3 group records.
mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const GROUP: Range<usize> = 4..8;
    // IGMPv3 query (RFC 3376 §4.1).
    pub const QUERY_FLAGS: usize = 8; // Resv:4 S:1 QRV:3
    pub const QQIC: usize = 9;
    pub const NUM_SOURCES: Range<usize> = 10..12;
    pub const QUERY_SOURCES: usize = 12;
    // IGMPv3 report (RFC 3376 §4.2).
    pub const NUM_RECORDS: Range<usize> = 6..8;
    pub const RECORDS: usize = 8;
    // MRD advertisement (RFC 4286 §4): type, adv interval, checksum, QQI, QRV.
    pub const MRD_QQI: Range<usize> = 4..6;
    pub const MRD_QRV: Range<usize> = 6..8;
    // Group record (RFC 3376 §4.2.4).
    pub const REC_TYPE: usize = 0;
    pub const REC_AUX_LEN: usize = 1;
    pub const REC_NUM_SOURCES: Range<usize> = 2..4;
    pub const REC_GROUP: Range<usize> = 4..8;
    pub const REC_SOURCES: usize = 8;
}

/// Length of v1/v2 messages, MRD advertisements and the v3 report header.
pub const BASE_LEN: usize = 8;
/// Length of an IGMPv3 query without sources.
pub const V3_QUERY_HEADER_LEN: usize = field::QUERY_SOURCES;
/// Length of a group record header.
pub const RECORD_HEADER_LEN: usize = field::REC_SOURCES;
/// Length of MRD solicitations and terminations (type, reserved, checksum).
pub const SHORT_LEN: usize = 4;

/// IGMP protocol generation of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IgmpVersion {
    /// RFC 1112.
    V1,
    /// RFC 2236.
    V2,
    /// RFC 3376.
    V3,
}

/// A v3 group record type (RFC 3376 §4.2.12). Unknown values are kept so the caller can skip
/// and count them, as §4.2.12 says to ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// 1: MODE_IS_INCLUDE.
    ModeIsInclude,
    /// 2: MODE_IS_EXCLUDE.
    ModeIsExclude,
    /// 3: CHANGE_TO_INCLUDE_MODE.
    ChangeToInclude,
    /// 4: CHANGE_TO_EXCLUDE_MODE.
    ChangeToExclude,
    /// 5: ALLOW_NEW_SOURCES.
    AllowNewSources,
    /// 6: BLOCK_OLD_SOURCES.
    BlockOldSources,
    /// Anything else (must be ignored, RFC 3376 §4.2.12).
    Unknown(u8),
}

impl RecordKind {
    /// From the record type octet.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => RecordKind::ModeIsInclude,
            2 => RecordKind::ModeIsExclude,
            3 => RecordKind::ChangeToInclude,
            4 => RecordKind::ChangeToExclude,
            5 => RecordKind::AllowNewSources,
            6 => RecordKind::BlockOldSources,
            other => RecordKind::Unknown(other),
        }
    }

    /// The record type octet.
    pub const fn to_u8(self) -> u8 {
        match self {
            RecordKind::ModeIsInclude => 1,
            RecordKind::ModeIsExclude => 2,
            RecordKind::ChangeToInclude => 3,
            RecordKind::ChangeToExclude => 4,
            RecordKind::AllowNewSources => 5,
            RecordKind::BlockOldSources => 6,
            RecordKind::Unknown(v) => v,
        }
    }
}

/// A validated list of IPv4 addresses inside a message (query sources, record sources), read
/// in place.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceList<'a> {
    bytes: &'a [u8],
}

impl<'a> SourceList<'a> {
    /// The list of whole addresses in `bytes` (a trailing partial address is ignored).
    pub fn new(bytes: &'a [u8]) -> Self {
        let whole = bytes.len() / 4 * 4;
        SourceList {
            bytes: bytes.get(..whole).unwrap_or(&[]),
        }
    }

    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// No addresses.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The `i`th address.
    pub fn get(&self, i: usize) -> Option<Ipv4Addr> {
        let at = i.checked_mul(4)?;
        self.bytes
            .get(at..at.checked_add(4)?)
            .map(|s| bytes::ipv4_at(s, 0))
    }

    /// The addresses in order.
    pub fn iter(&self) -> SourceIter<'a> {
        SourceIter {
            chunks: self.bytes.chunks_exact(4),
        }
    }

    /// The raw octets.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl fmt::Debug for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for SourceList<'a> {
    type Item = Ipv4Addr;
    type IntoIter = SourceIter<'a>;
    fn into_iter(self) -> SourceIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`SourceList`].
#[derive(Debug, Clone)]
pub struct SourceIter<'a> {
    chunks: core::slice::ChunksExact<'a, u8>,
}

impl Iterator for SourceIter<'_> {
    type Item = Ipv4Addr;
    fn next(&mut self) -> Option<Ipv4Addr> {
        self.chunks.next().map(|c| bytes::ipv4_at(c, 0))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for SourceIter<'_> {}

/// One IGMPv3 group record, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRecord<'a> {
    /// Record type; [`RecordKind::Unknown`] ones must be skipped by the caller.
    pub kind: RecordKind,
    /// Multicast address.
    pub group: Ipv4Addr,
    /// Source addresses.
    pub sources: SourceList<'a>,
    /// Auxiliary data (Aux Data Len × 4 octets); RFC 3376 §4.2.10 says ignore it.
    pub aux_data: &'a [u8],
}

/// The validated group records of a v3 report.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecordList<'a> {
    count: u16,
    bytes: &'a [u8],
}

impl<'a> RecordList<'a> {
    /// Validates `count` records in `bytes` (trailing octets after them are ignored).
    pub fn parse(count: u16, bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut off = 0usize;
        for _ in 0..count {
            let hdr = bytes
                .get(off..)
                .and_then(|s| s.get(..RECORD_HEADER_LEN))
                .ok_or(WireError::RecordPastEnd)?;
            let nsrc = usize::from(bytes::u16_at(hdr, field::REC_NUM_SOURCES.start));
            let aux = usize::from(bytes::u8_at(hdr, field::REC_AUX_LEN)) * 4;
            let src_end = off + RECORD_HEADER_LEN + nsrc * 4;
            if src_end > bytes.len() {
                return Err(WireError::SourcesPastEnd);
            }
            let aux_end = src_end + aux;
            if aux_end > bytes.len() {
                return Err(WireError::AuxPastEnd);
            }
            off = aux_end;
        }
        Ok(RecordList {
            count,
            bytes: bytes.get(..off).unwrap_or(&[]),
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records in order.
    pub fn iter(&self) -> RecordIter<'a> {
        RecordIter {
            rest: self.bytes,
            remaining: self.count,
        }
    }

    /// The raw octets of all records.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl fmt::Debug for RecordList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for RecordList<'a> {
    type Item = GroupRecord<'a>;
    type IntoIter = RecordIter<'a>;
    fn into_iter(self) -> RecordIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`RecordList`].
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    remaining: u16,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = GroupRecord<'a>;

    fn next(&mut self) -> Option<GroupRecord<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let r = self.rest;
        let nsrc = usize::from(bytes::u16_at(r, field::REC_NUM_SOURCES.start));
        let aux = usize::from(bytes::u8_at(r, field::REC_AUX_LEN)) * 4;
        let src_end = RECORD_HEADER_LEN + nsrc * 4;
        let end = src_end + aux;
        if end > r.len() {
            // Unreachable after RecordList::parse; stop rather than panic.
            self.remaining = 0;
            return None;
        }
        let rec = GroupRecord {
            kind: RecordKind::from_u8(bytes::u8_at(r, field::REC_TYPE)),
            group: bytes::ipv4_at(r, field::REC_GROUP.start),
            sources: SourceList::new(r.get(RECORD_HEADER_LEN..src_end).unwrap_or(&[])),
            aux_data: r.get(src_end..end).unwrap_or(&[]),
        };
        self.rest = r.get(end..).unwrap_or(&[]);
        self.remaining -= 1;
        Some(rec)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.remaining);
        (n, Some(n))
    }
}

/// A Membership Query of any version, with its version told apart by length and Max Resp Code
/// per RFC 3376 §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpQuery<'a> {
    /// v1: 8 octets and code 0; v2: 8 octets, code ≠ 0; v3: ≥ 12 octets.
    pub version: IgmpVersion,
    /// The raw Max Resp Code (see [`IgmpQuery::max_resp`]).
    pub max_resp_code: u8,
    /// Group address; 0.0.0.0 in a general query.
    pub group: Ipv4Addr,
    /// S flag, suppress router-side processing (RFC 3376 §4.1.5); false for v1/v2.
    pub suppress: bool,
    /// Querier's Robustness Variable (RFC 3376 §4.1.6); 0 for v1/v2.
    pub qrv: u8,
    /// Querier's Query Interval Code (RFC 3376 §4.1.7); 0 for v1/v2.
    pub qqic: u8,
    /// Sources (v3 only; empty otherwise).
    pub sources: SourceList<'a>,
}

impl IgmpQuery<'_> {
    /// Max response time decoded: v1 means 10 s, v2 is tenths, v3 is the float code.
    pub fn max_resp(&self) -> Duration {
        timecode::max_resp_time(self.version, self.max_resp_code)
    }

    /// QQI decoded; `None` when absent (v1/v2) or 0.
    pub fn qqi(&self) -> Option<Duration> {
        if self.version == IgmpVersion::V3 {
            timecode::qqi_from_code(self.qqic)
        } else {
            None
        }
    }

    /// `None` for a general query (group 0.0.0.0), the group otherwise.
    pub fn group_opt(&self) -> Option<Ipv4Addr> {
        if self.group.is_unspecified() {
            None
        } else {
            Some(self.group)
        }
    }

    /// A general query.
    pub fn is_general(&self) -> bool {
        self.group.is_unspecified()
    }
}

/// A zero-copy view of an IGMP message (the IP payload, exactly: total length − IHL).
#[derive(Debug, Clone, Copy)]
pub struct IgmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IgmpPacket<T> {
    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = IgmpPacket { buffer };
        p.check_len()?;
        Ok(p)
    }

    pub(crate) fn new_unchecked(buffer: T) -> Self {
        IgmpPacket { buffer }
    }

    /// Checks the length the message type needs: 4 octets for MRD solicitation/termination and
    /// unknown types, 8 for v1/v2/MRD advertisement, 8 or ≥ 12 for queries (sources included),
    /// and every group record of a v3 report.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < SHORT_LEN {
            return Err(WireError::Truncated { layer: Layer::Igmp });
        }
        match self.msg_type() {
            msg_type::MEMBERSHIP_QUERY => {
                // RFC 3376 §7.1: 8 octets → v1/v2, ≥ 12 → v3, anything else is ignored.
                if b.len() == BASE_LEN {
                    Ok(())
                } else if b.len() >= V3_QUERY_HEADER_LEN {
                    let n = usize::from(self.num_sources());
                    if V3_QUERY_HEADER_LEN + n * 4 > b.len() {
                        Err(WireError::SourcesPastEnd)
                    } else {
                        Ok(())
                    }
                } else {
                    Err(WireError::BadQueryLength)
                }
            }
            msg_type::V1_MEMBERSHIP_REPORT
            | msg_type::V2_MEMBERSHIP_REPORT
            | msg_type::V2_LEAVE_GROUP
            | msg_type::MRD_ADVERTISEMENT => {
                if b.len() < BASE_LEN {
                    Err(WireError::Truncated { layer: Layer::Igmp })
                } else {
                    Ok(())
                }
            }
            msg_type::V3_MEMBERSHIP_REPORT => {
                if b.len() < BASE_LEN {
                    return Err(WireError::Truncated { layer: Layer::Igmp });
                }
                RecordList::parse(self.num_records(), b.get(field::RECORDS..).unwrap_or(&[]))
                    .map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Type octet.
    pub fn msg_type(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TYPE)
    }

    /// Second octet: Max Resp Code (queries), reserved (reports), Advertisement Interval (MRD).
    pub fn code(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// True when the checksum over the whole message verifies (RFC 3376 §4.1.2, §4.2.2).
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }

    /// Group address (queries, v1/v2 reports, leaves).
    pub fn group_addr(&self) -> Ipv4Addr {
        bytes::ipv4_at(self.buffer.as_ref(), field::GROUP.start)
    }

    /// For a query: its version per RFC 3376 §7.1; `None` for other types and bad lengths.
    pub fn query_version(&self) -> Option<IgmpVersion> {
        let len = self.buffer.as_ref().len();
        if self.msg_type() != msg_type::MEMBERSHIP_QUERY {
            None
        } else if len == BASE_LEN {
            Some(if self.code() == 0 {
                IgmpVersion::V1
            } else {
                IgmpVersion::V2
            })
        } else if len >= V3_QUERY_HEADER_LEN {
            Some(IgmpVersion::V3)
        } else {
            None
        }
    }

    /// v3 query: S flag.
    pub fn s_flag(&self) -> bool {
        bytes::u8_at(self.buffer.as_ref(), field::QUERY_FLAGS) & 0x08 != 0
    }

    /// v3 query: QRV.
    pub fn qrv(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::QUERY_FLAGS) & 0x07
    }

    /// v3 query: QQIC.
    pub fn qqic(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::QQIC)
    }

    /// v3 query: Number of Sources.
    pub fn num_sources(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::NUM_SOURCES.start)
    }

    /// v3 query: its sources (empty for other messages).
    pub fn query_sources(&self) -> SourceList<'_> {
        if self.query_version() != Some(IgmpVersion::V3) {
            return SourceList::default();
        }
        let end = V3_QUERY_HEADER_LEN + usize::from(self.num_sources()) * 4;
        SourceList::new(
            self.buffer
                .as_ref()
                .get(V3_QUERY_HEADER_LEN..end)
                .unwrap_or(&[]),
        )
    }

    /// v3 report: Number of Group Records.
    pub fn num_records(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::NUM_RECORDS.start)
    }

    /// v3 report: its group records (empty if they do not validate).
    pub fn records(&self) -> RecordList<'_> {
        let b = self.buffer.as_ref().get(field::RECORDS..).unwrap_or(&[]);
        RecordList::parse(self.num_records(), b).unwrap_or(RecordList {
            count: 0,
            bytes: &[],
        })
    }

    /// MRD advertisement: Query Interval field.
    pub fn mrd_qqi(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::MRD_QQI.start)
    }

    /// MRD advertisement: Robustness Variable field.
    pub fn mrd_qrv(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::MRD_QRV.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IgmpPacket<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, v: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::TYPE, v);
    }

    /// Sets the second octet.
    pub fn set_code(&mut self, v: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::CODE, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// Sets the group address.
    pub fn set_group_addr(&mut self, a: Ipv4Addr) {
        bytes::put_ipv4(self.buffer.as_mut(), field::GROUP.start, a);
    }

    /// v3 query: sets S and QRV (reserved bits zero).
    pub fn set_query_flags(&mut self, s: bool, qrv: u8) {
        bytes::put_u8(
            self.buffer.as_mut(),
            field::QUERY_FLAGS,
            (u8::from(s) << 3) | (qrv & 0x07),
        );
    }

    /// v3 query: sets QQIC.
    pub fn set_qqic(&mut self, v: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::QQIC, v);
    }

    /// v3 query: sets Number of Sources.
    pub fn set_num_sources(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::NUM_SOURCES.start, v);
    }

    /// v3 report: sets Number of Group Records (and the reserved field before it to 0).
    pub fn set_num_records(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::GROUP.start, 0);
        bytes::put_u16(self.buffer.as_mut(), field::NUM_RECORDS.start, v);
    }

    /// MRD advertisement: sets Query Interval and Robustness Variable.
    pub fn set_mrd_fields(&mut self, qqi: u16, qrv: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::MRD_QQI.start, qqi);
        bytes::put_u16(self.buffer.as_mut(), field::MRD_QRV.start, qrv);
    }

    /// Recomputes the checksum over the whole buffer (which must be exactly the message).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A decoded IGMP/MRD message; lists borrow the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgmpRepr<'a> {
    /// Membership Query, v1/v2/v3.
    Query(IgmpQuery<'a>),
    /// IGMPv1 report 0x12 (RFC 1112).
    ReportV1 {
        /// Group joined.
        group: Ipv4Addr,
    },
    /// IGMPv2 report 0x16 (RFC 2236).
    ReportV2 {
        /// Group joined.
        group: Ipv4Addr,
    },
    /// IGMPv2 Leave Group 0x17 (RFC 2236).
    LeaveV2 {
        /// Group left.
        group: Ipv4Addr,
    },
    /// IGMPv3 report 0x22 (RFC 3376 §4.2).
    ReportV3 {
        /// Its group records, validated.
        records: RecordList<'a>,
    },
    /// MRD Advertisement 0x30 (RFC 4286 §4): the sender is a multicast router.
    MrdAdvertisement {
        /// Advertisement Interval, seconds.
        adv_interval: u8,
        /// The router's Query Interval, seconds (0 if not a querier).
        qqi: u16,
        /// The router's Robustness Variable.
        qrv: u16,
    },
    /// MRD Solicitation 0x31 (RFC 4286 §5).
    MrdSolicitation,
    /// MRD Termination 0x32 (RFC 4286 §6).
    MrdTermination,
    /// Any other type: flooded, never learned (RFC 4541 §2.1.1(4)). Not an error.
    Unknown {
        /// The type octet.
        igmp_type: u8,
    },
}

impl<'a> IgmpRepr<'a> {
    /// Parses one IGMP message: `bytes` is exactly the IP payload. The checksum is verified
    /// first (a corrupted length field then reads as `BadIgmpChecksum`, not as a length error).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        if bytes.len() < SHORT_LEN {
            return Err(WireError::Truncated { layer: Layer::Igmp });
        }
        let p = IgmpPacket::new_unchecked(bytes);
        if !p.verify_checksum() {
            return Err(WireError::BadIgmpChecksum);
        }
        p.check_len()?;
        Ok(match p.msg_type() {
            msg_type::MEMBERSHIP_QUERY => {
                let version = p.query_version().ok_or(WireError::BadQueryLength)?;
                let v3 = version == IgmpVersion::V3;
                let end = V3_QUERY_HEADER_LEN + usize::from(p.num_sources()) * 4;
                IgmpRepr::Query(IgmpQuery {
                    version,
                    max_resp_code: p.code(),
                    group: p.group_addr(),
                    suppress: v3 && p.s_flag(),
                    qrv: if v3 { p.qrv() } else { 0 },
                    qqic: if v3 { p.qqic() } else { 0 },
                    sources: if v3 {
                        SourceList::new(bytes.get(V3_QUERY_HEADER_LEN..end).unwrap_or(&[]))
                    } else {
                        SourceList::default()
                    },
                })
            }
            msg_type::V1_MEMBERSHIP_REPORT => IgmpRepr::ReportV1 {
                group: p.group_addr(),
            },
            msg_type::V2_MEMBERSHIP_REPORT => IgmpRepr::ReportV2 {
                group: p.group_addr(),
            },
            msg_type::V2_LEAVE_GROUP => IgmpRepr::LeaveV2 {
                group: p.group_addr(),
            },
            msg_type::V3_MEMBERSHIP_REPORT => IgmpRepr::ReportV3 {
                records: RecordList::parse(
                    p.num_records(),
                    bytes.get(field::RECORDS..).unwrap_or(&[]),
                )?,
            },
            msg_type::MRD_ADVERTISEMENT => IgmpRepr::MrdAdvertisement {
                adv_interval: p.code(),
                qqi: p.mrd_qqi(),
                qrv: p.mrd_qrv(),
            },
            msg_type::MRD_SOLICITATION => IgmpRepr::MrdSolicitation,
            msg_type::MRD_TERMINATION => IgmpRepr::MrdTermination,
            other => IgmpRepr::Unknown { igmp_type: other },
        })
    }

    /// Length of the emitted message.
    pub fn buffer_len(&self) -> usize {
        match self {
            IgmpRepr::Query(q) => match q.version {
                IgmpVersion::V3 => V3_QUERY_HEADER_LEN + q.sources.as_bytes().len(),
                _ => BASE_LEN,
            },
            IgmpRepr::ReportV3 { records } => BASE_LEN + records.as_bytes().len(),
            IgmpRepr::MrdSolicitation | IgmpRepr::MrdTermination => SHORT_LEN,
            _ => BASE_LEN,
        }
    }

    /// Writes the message (checksum filled) at the start of `buf`; returns its length.
    /// `Unknown` emits 8 octets: the type, zeros and the checksum.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let out = bytes::out_prefix(buf, len)?;
        out.fill(0);
        let mut p = IgmpPacket::new_unchecked(&mut *out);
        match self {
            IgmpRepr::Query(q) => {
                p.set_msg_type(msg_type::MEMBERSHIP_QUERY);
                p.set_code(if q.version == IgmpVersion::V1 {
                    0
                } else {
                    q.max_resp_code
                });
                p.set_group_addr(q.group);
                if q.version == IgmpVersion::V3 {
                    p.set_query_flags(q.suppress, q.qrv);
                    p.set_qqic(q.qqic);
                    p.set_num_sources(
                        u16::try_from(q.sources.len()).map_err(|_| WireError::TooLong)?,
                    );
                    bytes::put(p.buffer, V3_QUERY_HEADER_LEN, q.sources.as_bytes());
                }
            }
            IgmpRepr::ReportV1 { group } => {
                p.set_msg_type(msg_type::V1_MEMBERSHIP_REPORT);
                p.set_group_addr(*group);
            }
            IgmpRepr::ReportV2 { group } => {
                p.set_msg_type(msg_type::V2_MEMBERSHIP_REPORT);
                p.set_group_addr(*group);
            }
            IgmpRepr::LeaveV2 { group } => {
                p.set_msg_type(msg_type::V2_LEAVE_GROUP);
                p.set_group_addr(*group);
            }
            IgmpRepr::ReportV3 { records } => {
                p.set_msg_type(msg_type::V3_MEMBERSHIP_REPORT);
                p.set_num_records(records.count);
                bytes::put(p.buffer, field::RECORDS, records.as_bytes());
            }
            IgmpRepr::MrdAdvertisement {
                adv_interval,
                qqi,
                qrv,
            } => {
                p.set_msg_type(msg_type::MRD_ADVERTISEMENT);
                p.set_code(*adv_interval);
                p.set_mrd_fields(*qqi, *qrv);
            }
            IgmpRepr::MrdSolicitation => p.set_msg_type(msg_type::MRD_SOLICITATION),
            IgmpRepr::MrdTermination => p.set_msg_type(msg_type::MRD_TERMINATION),
            IgmpRepr::Unknown { igmp_type } => p.set_msg_type(*igmp_type),
        }
        p.fill_checksum();
        Ok(len)
    }
}

/// A group record to emit (the builders' input; [`GroupRecord`] is the parser's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpec<'a> {
    /// Record type (unknown types can be emitted to test receivers).
    pub kind: RecordKind,
    /// Multicast address.
    pub group: Ipv4Addr,
    /// Sources.
    pub sources: &'a [Ipv4Addr],
    /// Auxiliary data: a whole number of 32-bit words, at most 255 words.
    pub aux_data: &'a [u8],
}

impl RecordSpec<'_> {
    /// Octets the record occupies.
    pub fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN + self.sources.len() * 4 + self.aux_data.len()
    }

    /// Writes the record at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        if !self.aux_data.len().is_multiple_of(4) || self.aux_data.len() > 255 * 4 {
            return Err(WireError::BadAuxLength);
        }
        let nsrc = u16::try_from(self.sources.len()).map_err(|_| WireError::TooLong)?;
        let out = bytes::out_prefix(buf, len)?;
        bytes::put_u8(out, field::REC_TYPE, self.kind.to_u8());
        bytes::put_u8(out, field::REC_AUX_LEN, (self.aux_data.len() / 4) as u8);
        bytes::put_u16(out, field::REC_NUM_SOURCES.start, nsrc);
        bytes::put_ipv4(out, field::REC_GROUP.start, self.group);
        let mut at = RECORD_HEADER_LEN;
        for s in self.sources {
            bytes::put_ipv4(out, at, *s);
            at += 4;
        }
        bytes::put(out, at, self.aux_data);
        Ok(len)
    }
}

/// Writes a v3 query body with sources from a slice (used by the builders; [`IgmpRepr::emit`]
/// copies sources that are already in wire form).
pub(crate) fn emit_v3_query(
    buf: &mut [u8],
    max_resp_code: u8,
    group: Ipv4Addr,
    suppress: bool,
    qrv: u8,
    qqic: u8,
    sources: &[Ipv4Addr],
) -> Result<usize, WireError> {
    let nsrc = u16::try_from(sources.len()).map_err(|_| WireError::TooLong)?;
    let len = V3_QUERY_HEADER_LEN + sources.len() * 4;
    let out = bytes::out_prefix(buf, len)?;
    out.fill(0);
    let mut p = IgmpPacket::new_unchecked(&mut *out);
    p.set_msg_type(msg_type::MEMBERSHIP_QUERY);
    p.set_code(max_resp_code);
    p.set_group_addr(group);
    p.set_query_flags(suppress, qrv);
    p.set_qqic(qqic);
    p.set_num_sources(nsrc);
    let mut at = V3_QUERY_HEADER_LEN;
    for s in sources {
        bytes::put_ipv4(p.buffer, at, *s);
        at += 4;
    }
    p.fill_checksum();
    Ok(len)
}

/// Writes a v3 report from record specs; returns its length.
pub(crate) fn emit_v3_report(
    buf: &mut [u8],
    records: &[RecordSpec<'_>],
) -> Result<usize, WireError> {
    let count = u16::try_from(records.len()).map_err(|_| WireError::TooLong)?;
    let len = BASE_LEN + records.iter().map(RecordSpec::buffer_len).sum::<usize>();
    let out = bytes::out_prefix(buf, len)?;
    out.fill(0);
    let mut at = BASE_LEN;
    for r in records {
        at += r.emit(out.get_mut(at..).unwrap_or(&mut []))?;
    }
    let mut p = IgmpPacket::new_unchecked(&mut *out);
    p.set_msg_type(msg_type::V3_MEMBERSHIP_REPORT);
    p.set_num_records(count);
    p.fill_checksum();
    Ok(len)
}

/// Octets of a v3 report carrying `records`.
pub(crate) fn v3_report_len(records: &[RecordSpec<'_>]) -> usize {
    BASE_LEN + records.iter().map(RecordSpec::buffer_len).sum::<usize>()
}
