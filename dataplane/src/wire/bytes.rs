//! Total (never panicking) big-endian readers and writers. Views check lengths once in
//! `check_len`; these helpers make a length bug return zeros instead of panicking on packet data.

use core::net::Ipv4Addr;

/// Reads one octet, 0 if out of range.
#[inline]
pub(crate) fn u8_at(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// Reads a big-endian u16, 0 if out of range.
#[inline]
pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..).and_then(|s| s.get(..2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// Reads a big-endian u32, 0 if out of range.
#[inline]
pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..).and_then(|s| s.get(..4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Reads an IPv4 address, 0.0.0.0 if out of range.
#[inline]
pub(crate) fn ipv4_at(buf: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32_at(buf, at))
}

/// Reads six octets, zeros if out of range.
#[inline]
pub(crate) fn mac_at(buf: &[u8], at: usize) -> [u8; 6] {
    match buf.get(at..).and_then(|s| s.get(..6)) {
        Some(&[a, b, c, d, e, f]) => [a, b, c, d, e, f],
        _ => [0; 6],
    }
}

/// Writes octets at `at`; does nothing if they do not fit (callers size buffers first).
#[inline]
pub(crate) fn put(buf: &mut [u8], at: usize, data: &[u8]) {
    if let Some(dst) = buf.get_mut(at..).and_then(|s| s.get_mut(..data.len())) {
        dst.copy_from_slice(data);
    }
}

/// Writes one octet.
#[inline]
pub(crate) fn put_u8(buf: &mut [u8], at: usize, v: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = v;
    }
}

/// Writes a big-endian u16.
#[inline]
pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    put(buf, at, &v.to_be_bytes());
}

/// Writes an IPv4 address.
#[inline]
pub(crate) fn put_ipv4(buf: &mut [u8], at: usize, v: Ipv4Addr) {
    put(buf, at, &v.octets());
}

/// The first `len` octets of an output buffer, or `BufferTooSmall`.
#[inline]
pub(crate) fn out_prefix(buf: &mut [u8], len: usize) -> Result<&mut [u8], super::WireError> {
    let got = buf.len();
    buf.get_mut(..len)
        .ok_or(super::WireError::BufferTooSmall { needed: len, got })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_reads_are_zero_and_writes_are_ignored() {
        let mut b = [1u8, 2, 3];
        assert_eq!(u16_at(&b, 1), 0x0203);
        assert_eq!(u16_at(&b, 2), 0);
        assert_eq!(u32_at(&b, 0), 0);
        assert_eq!(u8_at(&b, 3), 0);
        assert_eq!(u16_at(&b, usize::MAX), 0);
        put_u16(&mut b, 2, 0xffff);
        assert_eq!(b, [1, 2, 3]);
    }
}
