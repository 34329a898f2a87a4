//! PIMv2 Hello recognition (RFC 7761 §4.9.2): a Hello to ALL-PIM-ROUTERS marks its port as a
//! multicast-router port (RFC 4541 §2.1.1(1); the Linux bridge does the same).

use super::{bytes, checksum};
use super::{Layer, WireError};

/// Byte positions of the PIM common header.
mod field {
    use core::ops::Range;
    pub const VER_TYPE: usize = 0;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const OPTIONS: usize = 4;
}

/// Length of the PIM common header.
pub const HEADER_LEN: usize = field::OPTIONS;
/// PIM version 2.
pub const VERSION_2: u8 = 2;
/// Hello message type.
pub const TYPE_HELLO: u8 = 0;
/// Hello option: Holdtime (RFC 7761 §4.9.2).
pub const OPTION_HOLDTIME: u16 = 1;

/// Whether an IP payload of protocol 103 is a PIMv2 Hello. Other PIM versions and types are
/// `Ok(false)`; a Hello whose checksum (over the whole message) fails is `Err(BadPimChecksum)`.
pub fn is_hello(payload: &[u8]) -> Result<bool, WireError> {
    if payload.len() < HEADER_LEN {
        return Err(WireError::Truncated { layer: Layer::Pim });
    }
    let vt = bytes::u8_at(payload, field::VER_TYPE);
    if vt >> 4 != VERSION_2 || vt & 0x0f != TYPE_HELLO {
        return Ok(false);
    }
    if !checksum::verify(payload) {
        return Err(WireError::BadPimChecksum);
    }
    Ok(true)
}

/// Writes a PIMv2 Hello with one Holdtime option; returns its length (8 octets).
pub(crate) fn emit_hello(buf: &mut [u8], holdtime_secs: u16) -> Result<usize, WireError> {
    const LEN: usize = HEADER_LEN + 6;
    let out = bytes::out_prefix(buf, LEN)?;
    out.fill(0);
    bytes::put_u8(out, field::VER_TYPE, (VERSION_2 << 4) | TYPE_HELLO);
    bytes::put_u16(out, field::OPTIONS, OPTION_HOLDTIME);
    bytes::put_u16(out, field::OPTIONS + 2, 2);
    bytes::put_u16(out, field::OPTIONS + 4, holdtime_secs);
    let c = checksum::checksum(out);
    bytes::put_u16(out, field::CHECKSUM.start, c);
    Ok(LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_recognition() {
        let mut b = [0u8; 10];
        assert_eq!(emit_hello(&mut b, 105).unwrap(), 10);
        assert!(is_hello(&b).unwrap());
        let mut bad = b;
        bad[9] ^= 1;
        assert_eq!(is_hello(&bad).unwrap_err(), WireError::BadPimChecksum);
        let mut join = b;
        join[0] = 0x23; // v2 Join/Prune
        assert!(!is_hello(&join).unwrap());
        let mut v1 = b;
        v1[0] = 0x10;
        assert!(!is_hello(&v1).unwrap());
        for n in 0..4 {
            assert_eq!(
                is_hello(&b[..n]).unwrap_err(),
                WireError::Truncated { layer: Layer::Pim }
            );
        }
    }
}
