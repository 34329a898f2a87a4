//! Ethernet II framing: the outermost layer of every frame the switch sees.

use core::fmt;
use core::ops::{Range, RangeFrom};

use super::bytes;
use super::{Layer, WireError};

/// A 48-bit MAC address. A newtype so MACs cannot be confused with other six-octet values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The I/G bit: group (multicast or broadcast) addresses are flooded or snooped, never learned.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// All ones.
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// Neither multicast nor broadcast: the only kind a switch may learn as a source.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EtherType values the switch distinguishes.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (S-tag, QinQ).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// Byte ranges of the Ethernet II header.
mod field {
    use super::{Range, RangeFrom};
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header (no FCS: neither XDP nor AF_PACKET sees it).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A zero-copy view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = EthernetFrame { buffer };
        f.check_len()?;
        Ok(f)
    }

    pub(crate) fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Ensures the 14-octet header is present, so every accessor reads real octets.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: Layer::Ethernet,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(bytes::mac_at(
            self.buffer.as_ref(),
            field::DESTINATION.start,
        ))
    }

    /// Source MAC.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(bytes::mac_at(self.buffer.as_ref(), field::SOURCE.start))
    }

    /// The EtherType (or 802.1Q TPID when tagged).
    pub fn ethertype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        bytes::put(self.buffer.as_mut(), field::DESTINATION.start, &a.0);
    }

    /// Sets the source MAC.
    pub fn set_src_addr(&mut self, a: MacAddr) {
        bytes::put(self.buffer.as_mut(), field::SOURCE.start, &a.0);
    }

    /// Sets the EtherType / TPID.
    pub fn set_ethertype(&mut self, t: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::ETHERTYPE.start, t);
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD)
            .unwrap_or(&mut [])
    }
}

/// The decoded Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// EtherType (or TPID).
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, WireError> {
        frame.check_len()?;
        Ok(EthernetRepr {
            dst: frame.dst_addr(),
            src: frame.src_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Octets the header occupies.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::BufferTooSmall {
                needed: HEADER_LEN,
                got: buf.len(),
            });
        }
        let mut f = EthernetFrame::new_unchecked(buf);
        f.set_dst_addr(self.dst);
        f.set_src_addr(self.src);
        f.set_ethertype(self.ethertype);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 16] = [
        0x01, 0x00, 0x5e, 0x00, 0x00, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x00, 0xaa,
        0xbb,
    ];

    #[test]
    fn parse_fields() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]));
        assert_eq!(f.src_addr().to_string(), "02:11:22:33:44:55");
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
        assert!(f.dst_addr().is_multicast());
        assert!(f.src_addr().is_unicast());
        assert!(MacAddr::BROADCAST.is_broadcast());
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..n]).unwrap_err(),
                WireError::Truncated {
                    layer: Layer::Ethernet
                }
            );
        }
    }

    #[test]
    fn emit_round_trip() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        let mut out = [0u8; 14];
        assert_eq!(r.emit(&mut out).unwrap(), 14);
        assert_eq!(out, FRAME[..14]);
        assert!(r.emit(&mut [0u8; 13]).is_err());
    }
}
