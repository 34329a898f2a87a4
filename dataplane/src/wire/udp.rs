//! Minimal UDP emission, so tests can inject real multicast data frames (the switch itself never
//! parses UDP: multicast data is forwarded on its IPv4 destination).

use core::net::Ipv4Addr;

use super::WireError;
use super::{bytes, checksum, ipv4};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// Writes a UDP datagram (checksum filled, RFC 768 pseudo-header) at the start of `buf`.
pub(crate) fn emit(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Result<usize, WireError> {
    let len = HEADER_LEN + payload.len();
    let len16 = u16::try_from(len).map_err(|_| WireError::TooLong)?;
    let out = bytes::out_prefix(buf, len)?;
    bytes::put_u16(out, 0, src_port);
    bytes::put_u16(out, 2, dst_port);
    bytes::put_u16(out, 4, len16);
    bytes::put_u16(out, 6, 0);
    bytes::put(out, HEADER_LEN, payload);
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = ipv4::protocol::UDP;
    pseudo[10..12].copy_from_slice(&len16.to_be_bytes());
    let mut c = !checksum::fold(checksum::sum(&pseudo) + checksum::sum(out));
    if c == 0 {
        c = 0xffff; // RFC 768: a computed 0 is sent as all ones.
    }
    bytes::put_u16(out, 6, c);
    Ok(len)
}
