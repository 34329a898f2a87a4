//! IEEE 802.1Q: one customer VLAN tag. A second tag (QinQ) is recognised and refused by
//! [`super::parse_frame`].

use core::ops::{Range, RangeFrom};

use super::bytes;
use super::{Layer, WireError};

/// The fields of an 802.1Q tag the switch uses: which VLAN, and at what priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// VLAN identifier, 12 bits (1..=4094 are usable; 0 means priority-tagged only).
    pub vid: u16,
    /// Priority code point, 3 bits (IEEE 802.1p).
    pub pcp: u8,
}

impl VlanTag {
    /// A tag with the given VID and PCP.
    pub const fn new(vid: u16, pcp: u8) -> Self {
        VlanTag { vid, pcp }
    }

    /// Splits a TCI (PCP:3, DEI:1, VID:12); DEI is dropped.
    pub const fn from_tci(tci: u16) -> Self {
        VlanTag {
            vid: tci & 0x0fff,
            pcp: (tci >> 13) as u8,
        }
    }

    /// The TCI to put on the wire (DEI 0). Out-of-range fields are masked.
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | (self.vid & 0x0fff)
    }

    /// True when VID is 1..=4094 and PCP ≤ 7 (what a builder may emit; 0 and 4095 are reserved).
    pub const fn is_valid(&self) -> bool {
        self.vid >= 1 && self.vid <= 4094 && self.pcp <= 7
    }
}

/// Byte ranges of the tag, counted from just after the outer TPID.
mod field {
    use super::{Range, RangeFrom};
    pub const TCI: Range<usize> = 0..2;
    pub const INNER_ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Octets an 802.1Q tag adds to a frame (TPID + TCI).
pub const TAG_LEN: usize = 4;

/// A zero-copy view of the 802.1Q tag body (TCI + inner EtherType) following a 0x8100 TPID.
#[derive(Debug, Clone, Copy)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let h = VlanHeader { buffer };
        h.check_len()?;
        Ok(h)
    }

    pub(crate) fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Ensures TCI and inner EtherType are present.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < field::PAYLOAD.start {
            return Err(WireError::Truncated { layer: Layer::Vlan });
        }
        Ok(())
    }

    /// Raw TCI.
    pub fn tci(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::TCI.start)
    }

    /// VID and PCP.
    pub fn tag(&self) -> VlanTag {
        VlanTag::from_tci(self.tci())
    }

    /// The drop-eligible indicator bit.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// The EtherType of what the tag encapsulates.
    pub fn inner_ethertype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::INNER_ETHERTYPE.start)
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets the TCI.
    pub fn set_tci(&mut self, tci: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }

    /// Sets the inner EtherType.
    pub fn set_inner_ethertype(&mut self, t: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::INNER_ETHERTYPE.start, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tci_round_trip() {
        let t = VlanTag::new(100, 6);
        assert_eq!(t.tci(), 0xc064);
        assert_eq!(VlanTag::from_tci(0xc064), t);
        assert_eq!(VlanTag::from_tci(0xd064), t); // DEI ignored
        assert!(t.is_valid());
        assert!(!VlanTag::new(0, 0).is_valid());
        assert!(!VlanTag::new(4095, 0).is_valid());
        assert!(!VlanTag::new(5, 8).is_valid());
    }

    #[test]
    fn header_view() {
        let b = [0x30, 0x0a, 0x08, 0x00, 0x45];
        let h = VlanHeader::new_checked(&b[..]).unwrap();
        assert_eq!(h.tag(), VlanTag::new(10, 1));
        assert!(h.dei());
        assert_eq!(h.inner_ethertype(), 0x0800);
        assert_eq!(h.payload(), &[0x45]);
        for n in 0..4 {
            assert!(VlanHeader::new_checked(&b[..n]).is_err());
        }
        let mut w = [0u8; 4];
        let mut h = VlanHeader::new_unchecked(&mut w[..]);
        h.set_tci(VlanTag::new(4094, 7).tci());
        h.set_inner_ethertype(0x0800);
        assert_eq!(w, [0xef, 0xfe, 0x08, 0x00]);
    }
}
