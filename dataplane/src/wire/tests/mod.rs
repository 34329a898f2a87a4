//! Cross-layer tests: kernel captures → `parse_frame`, builders ↔ `parse_frame`, malformed
//! frames, and property tests that nothing panics.

mod builders;
mod kernel;
mod malformed;
mod props;

use super::checksum;

/// Hex string → bytes (tests only).
pub(super) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The query a parsed frame carries; panics (failing the test) on anything else.
pub(super) fn query_of(l3: super::L3<'_>) -> super::IgmpQuery<'_> {
    match l3 {
        super::L3::Igmp {
            msg: super::IgmpRepr::Query(q),
            ..
        } => q,
        other => panic!("not a query: {other:?}"),
    }
}

/// Recomputes the IPv4 header checksum and, for IGMP, the IGMP checksum of an untagged frame
/// whose fields a test edited, so the test reaches the check it targets.
pub(super) fn refix(frame: &mut [u8]) {
    let l3 = 14;
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let c = checksum::checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    if frame[l3 + 9] == 2 && total >= ihl + 4 {
        let igmp = &mut frame[l3 + ihl..l3 + total];
        igmp[2] = 0;
        igmp[3] = 0;
        let c = checksum::checksum(igmp);
        igmp[2..4].copy_from_slice(&c.to_be_bytes());
    }
}
