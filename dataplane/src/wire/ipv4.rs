//! IPv4 (RFC 791): header view with checksum verification, options (Router Alert, RFC 2113) and
//! fragment flags, plus an emitter for the headers the switch sends.

use core::net::Ipv4Addr;

use super::{bytes, checksum};
use super::{Layer, WireError};

/// Byte positions of the fixed IPv4 header.
mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const OPTIONS: usize = 20;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = field::OPTIONS;

/// IP protocol numbers the switch distinguishes.
pub mod protocol {
    /// IGMP (RFC 1112 App. I).
    pub const IGMP: u8 = 2;
    /// UDP.
    pub const UDP: u8 = 17;
    /// PIM (RFC 7761).
    pub const PIM: u8 = 103;
}

/// IPv4 option types (RFC 791 §3.1, RFC 2113).
pub mod option {
    /// End of option list.
    pub const END: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Router Alert (RFC 2113 §2.1): copied flag + class 0 + number 20.
    pub const ROUTER_ALERT: u8 = 0x94;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet. After [`check_len`](Self::check_len) the header length,
/// total length and payload are consistent with the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Ipv4Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    pub(crate) fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks version 4, IHL ≥ 5, header within the buffer, and IHL ≤ total length ≤ buffer
    /// (octets past total length are Ethernet padding and ignored).
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated { layer: Layer::Ipv4 });
        }
        if self.version() != 4 {
            return Err(WireError::NotIpv4);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(WireError::BadIhl);
        }
        if b.len() < hl {
            return Err(WireError::Truncated { layer: Layer::Ipv4 });
        }
        let total = usize::from(self.total_len());
        if total < hl {
            return Err(WireError::BadTotalLength);
        }
        if total > b.len() {
            return Err(WireError::TotalLengthPastFrame);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble.
    pub fn version(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in octets (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// Type of service / DSCP+ECN octet.
    pub fn tos(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TOS)
    }

    /// Total length field.
    pub fn total_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::TOTAL_LEN.start)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::IDENT.start)
    }

    /// DF flag.
    pub fn dont_fragment(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FLAG_DF != 0
    }

    /// MF flag.
    pub fn more_fragments(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FLAG_MF != 0
    }

    /// Fragment offset in octets.
    pub fn frag_offset(&self) -> u16 {
        (bytes::u16_at(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FRAG_OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram (MF set or non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol number.
    pub fn protocol(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        bytes::ipv4_at(self.buffer.as_ref(), field::SRC.start)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        bytes::ipv4_at(self.buffer.as_ref(), field::DST.start)
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[])
    }

    /// True when the header checksum verifies (RFC 791 §3.1).
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }

    /// The options area (header octets after the first 20).
    pub fn options_bytes(&self) -> &[u8] {
        self.header().get(MIN_HEADER_LEN..).unwrap_or(&[])
    }

    /// Iterates the options.
    pub fn options(&self) -> OptionIter<'_> {
        OptionIter {
            rest: self.options_bytes(),
        }
    }

    /// Whether a Router Alert option (RFC 2113) is present; `Err(BadIpOption)` on a malformed
    /// option list.
    pub fn router_alert(&self) -> Result<bool, WireError> {
        for opt in self.options() {
            if opt?.kind == option::ROUTER_ALERT {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The payload: from the end of the header to total length (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or(&[])
    }

    /// Everything the parser reports about the header, options decoded.
    pub fn info(&self) -> Result<Ipv4Info, WireError> {
        Ok(Ipv4Info {
            src: self.src_addr(),
            dst: self.dst_addr(),
            protocol: self.protocol(),
            ttl: self.ttl(),
            tos: self.tos(),
            router_alert: self.router_alert()?,
            dont_fragment: self.dont_fragment(),
            more_fragments: self.more_fragments(),
            frag_offset: self.frag_offset(),
            header_len: self.header_len() as u8,
            total_len: self.total_len(),
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in octets (multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        bytes::put_u8(self.buffer.as_mut(), field::VER_IHL, 0x40 | ihl);
    }

    /// Sets TOS.
    pub fn set_tos(&mut self, v: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::TOS, v);
    }

    /// Sets total length.
    pub fn set_total_len(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::TOTAL_LEN.start, v);
    }

    /// Sets identification.
    pub fn set_ident(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::IDENT.start, v);
    }

    /// Sets DF, MF and the fragment offset (octets, rounded down to 8).
    pub fn set_flags_frag(&mut self, df: bool, mf: bool, offset: u16) {
        let mut v = (offset >> 3) & FRAG_OFFSET_MASK;
        if df {
            v |= FLAG_DF;
        }
        if mf {
            v |= FLAG_MF;
        }
        bytes::put_u16(self.buffer.as_mut(), field::FLAGS_FRAG.start, v);
    }

    /// Sets TTL.
    pub fn set_ttl(&mut self, v: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::TTL, v);
    }

    /// Sets protocol.
    pub fn set_protocol(&mut self, v: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::PROTOCOL, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        bytes::put_ipv4(self.buffer.as_mut(), field::SRC.start, a);
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        bytes::put_ipv4(self.buffer.as_mut(), field::DST.start, a);
    }

    /// Recomputes the header checksum over `header_len()` octets.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }
}

/// One IPv4 option: its type octet and its data (after type and length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    /// Option type octet.
    pub kind: u8,
    /// Option data (empty for END/NOP).
    pub data: &'a [u8],
}

/// Iterator over IPv4 options; yields `Err(BadIpOption)` once on a malformed list, then stops.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<Ipv4Option<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, tail) = self.rest.split_first()?;
        match kind {
            option::END => {
                self.rest = &[];
                None
            }
            option::NOP => {
                self.rest = tail;
                Some(Ok(Ipv4Option { kind, data: &[] }))
            }
            _ => {
                let len = tail.first().map(|&l| usize::from(l));
                match len.and_then(|l| {
                    if l >= 2 {
                        self.rest.get(2..l).zip(self.rest.get(l..))
                    } else {
                        None
                    }
                }) {
                    Some((data, rest)) => {
                        self.rest = rest;
                        Some(Ok(Ipv4Option { kind, data }))
                    }
                    None => {
                        self.rest = &[];
                        Some(Err(WireError::BadIpOption))
                    }
                }
            }
        }
    }
}

/// What the parser learned from an IPv4 header: addresses, the facts snooping rules look at
/// (TTL, Router Alert), and fragment state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Info {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number.
    pub protocol: u8,
    /// TTL (IGMP should carry 1; accepted otherwise, see `parse_frame`).
    pub ttl: u8,
    /// TOS octet.
    pub tos: u8,
    /// A Router Alert option (RFC 2113) is present.
    pub router_alert: bool,
    /// DF flag.
    pub dont_fragment: bool,
    /// MF flag.
    pub more_fragments: bool,
    /// Fragment offset in octets.
    pub frag_offset: u16,
    /// Header length in octets.
    pub header_len: u8,
    /// Total length field.
    pub total_len: u16,
}

impl Ipv4Info {
    /// Part of a fragmented datagram.
    pub const fn is_fragment(&self) -> bool {
        self.more_fragments || self.frag_offset != 0
    }

    /// Payload length (total length − header length).
    pub const fn payload_len(&self) -> usize {
        (self.total_len as usize).saturating_sub(self.header_len as usize)
    }
}

/// An IPv4 header to emit. Only the Router Alert option can be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number.
    pub protocol: u8,
    /// TTL.
    pub ttl: u8,
    /// TOS octet (0xc0, Internetwork Control, for IGMP).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// DF flag.
    pub dont_fragment: bool,
    /// MF flag (tests inject fragments with it).
    pub more_fragments: bool,
    /// Fragment offset in octets (multiple of 8).
    pub frag_offset: u16,
    /// Emit a Router Alert option (RFC 2113), 4 octets.
    pub router_alert: bool,
    /// Payload length in octets.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Reads a checked packet; options other than Router Alert are dropped.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, WireError> {
        p.check_len()?;
        let i = p.info()?;
        Ok(Ipv4Repr {
            src: i.src,
            dst: i.dst,
            protocol: i.protocol,
            ttl: i.ttl,
            tos: i.tos,
            ident: p.ident(),
            dont_fragment: i.dont_fragment,
            more_fragments: i.more_fragments,
            frag_offset: i.frag_offset,
            router_alert: i.router_alert,
            payload_len: i.payload_len(),
        })
    }

    /// Header length: 20, or 24 with Router Alert.
    pub const fn header_len(&self) -> usize {
        if self.router_alert {
            MIN_HEADER_LEN + 4
        } else {
            MIN_HEADER_LEN
        }
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header (checksum filled) at the start of `buf`; returns the header length.
    /// The payload is the caller's.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let hl = self.header_len();
        let total = u16::try_from(self.buffer_len()).map_err(|_| WireError::TooLong)?;
        if buf.len() < hl {
            return Err(WireError::BufferTooSmall {
                needed: hl,
                got: buf.len(),
            });
        }
        let mut p = Ipv4Packet::new_unchecked(buf);
        p.set_version_and_header_len(hl);
        p.set_tos(self.tos);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_flags_frag(self.dont_fragment, self.more_fragments, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        if self.router_alert {
            // RFC 2113 §2.1: type 148, length 4, value 0 ("router shall examine packet").
            bytes::put(p.buffer, MIN_HEADER_LEN, &[option::ROUTER_ALERT, 4, 0, 0]);
        }
        p.fill_checksum();
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IGMPv2 report header as Linux sends it: TOS 0xc0, TTL 1, Router Alert.
    const HDR: [u8; 24] = [
        0x46, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, 10, 0, 0, 1, 239,
        1, 2, 3, 0x94, 0x04, 0x00, 0x00,
    ];

    fn with_checksum(mut h: Vec<u8>) -> Vec<u8> {
        let hl = usize::from(h[0] & 0xf) * 4;
        h[10] = 0;
        h[11] = 0;
        let c = checksum::checksum(&h[..hl]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn packet() -> Vec<u8> {
        let mut v = HDR.to_vec();
        v.extend_from_slice(&[0x16, 0, 0, 0, 239, 1, 2, 3]);
        with_checksum(v)
    }

    #[test]
    fn fields() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload().len(), 8);
        let i = p.info().unwrap();
        assert_eq!(i.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(i.dst, Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!((i.ttl, i.tos, i.protocol), (1, 0xc0, 2));
        assert!(i.router_alert && i.dont_fragment && !i.is_fragment());
    }

    #[test]
    fn padding_ignored_and_length_errors() {
        let mut b = packet();
        b.extend_from_slice(&[0xee; 14]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 8);

        let b = packet();
        for n in 0..24 {
            assert_eq!(
                Ipv4Packet::new_checked(&b[..n]).unwrap_err(),
                WireError::Truncated { layer: Layer::Ipv4 }
            );
        }
        for n in 24..32 {
            assert_eq!(
                Ipv4Packet::new_checked(&b[..n]).unwrap_err(),
                WireError::TotalLengthPastFrame
            );
        }
        let mut bad = packet();
        bad[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadIhl
        );
        bad[0] = 0x66;
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::NotIpv4
        );
        let mut bad = packet();
        bad[3] = 23;
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadTotalLength
        );
        let mut bad = packet();
        bad[17] ^= 1;
        assert!(!Ipv4Packet::new_checked(&bad[..]).unwrap().verify_checksum());
    }

    #[test]
    fn options() {
        // Four NOPs, then RA.
        let mut h = HDR.to_vec();
        h[0] = 0x47;
        h[3] = 28;
        h.splice(20..20, [1u8, 1, 1, 1]);
        let h = with_checksum(h);
        let p = Ipv4Packet::new_checked(&h[..]).unwrap();
        assert!(p.router_alert().unwrap());
        // END stops the scan before a later RA.
        let mut h2 = h.clone();
        h2[20] = 0;
        let p = Ipv4Packet::new_checked(&h2[..]).unwrap();
        assert!(!p.router_alert().unwrap());
        // Length 1 / past end → malformed.
        for bad in [[0x94u8, 1, 0, 0], [0x94, 9, 0, 0], [0x83, 0, 1, 1]] {
            let mut h3 = HDR.to_vec();
            h3[3] = 24;
            h3[20..24].copy_from_slice(&bad);
            let p = Ipv4Packet::new_checked(&h3[..]).unwrap();
            assert_eq!(p.router_alert().unwrap_err(), WireError::BadIpOption);
        }
    }

    #[test]
    fn repr_round_trip() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        let r = Ipv4Repr::parse(&p).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        assert_eq!(r.emit(&mut out).unwrap(), 24);
        assert_eq!(&out[..24], &b[..24]);
        let frag = Ipv4Repr {
            more_fragments: true,
            frag_offset: 1480,
            dont_fragment: false,
            ..r
        };
        frag.emit(&mut out).unwrap();
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert!(p.verify_checksum() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        let huge = Ipv4Repr {
            payload_len: 65536,
            ..r
        };
        assert_eq!(huge.emit(&mut out).unwrap_err(), WireError::TooLong);
    }
}
