//! Egress rewriting: push, pop or keep an 802.1Q tag so a frame leaves a port in the form the
//! port's VLAN mode prescribes (IEEE 802.1Q §8.8.2, §9.3). Two forms, neither allocates:
//! [`rewrite_into`] copies into a caller buffer (one per egress port, as AF_XDP TX needs), and
//! [`rewrite_in_place`] moves the MAC addresses inside a buffer with headroom (as XDP does with
//! `bpf_xdp_adjust_head`).
//!
//! A retagged frame keeps its PCP and DEI bits; a pushed tag carries PCP 0. Popping may leave a
//! frame shorter than 60 octets; the NIC pads it (veth does not need padding).

use core::ops::Range;

use crate::table::VlanId;
use crate::wire::ethernet::{ethertype, HEADER_LEN};
use crate::wire::vlan::TAG_LEN;

use super::portmap::{EgressTag, MAX_VID, MIN_VID};

/// Octets of the two MAC addresses, which stay in front of any tag.
const MACS_LEN: usize = 12;

/// Why a frame could not be rewritten.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// The frame is shorter than its Ethernet header (and tag, if it claims one).
    #[error("frame too short to rewrite ({0} octets)")]
    Truncated(usize),
    /// The output buffer cannot hold the rewritten frame.
    #[error("output buffer too small: {needed} octets needed, {got} available")]
    BufferTooSmall {
        /// Octets the rewritten frame needs.
        needed: usize,
        /// Octets the buffer has.
        got: usize,
    },
    /// In place: fewer than 4 octets of headroom in front of the frame to push a tag.
    #[error("no headroom to push a tag: {got} octets in front of the frame")]
    NoHeadroom {
        /// Octets available in front of the frame.
        got: usize,
    },
    /// In place: the frame range does not lie inside the buffer.
    #[error("frame range lies outside the buffer")]
    BadRange,
    /// The egress VID is outside 1..=4094.
    #[error("egress VID {0} is outside 1..=4094")]
    BadVid(VlanId),
}

/// Whether `frame` carries an 802.1Q tag right after the MACs.
fn is_tagged(frame: &[u8]) -> bool {
    matches!(frame.get(MACS_LEN..HEADER_LEN), Some(&[a, b]) if u16::from_be_bytes([a, b]) == ethertype::VLAN)
}

fn check_vid(v: VlanId) -> Result<(), RewriteError> {
    if (MIN_VID..=MAX_VID).contains(&v) {
        Ok(())
    } else {
        Err(RewriteError::BadVid(v))
    }
}

/// The 4 tag octets for `vid`, keeping PCP and DEI of `old_tci`.
fn tag_bytes(old_tci: u16, vid: VlanId) -> [u8; TAG_LEN] {
    let [t0, t1] = ethertype::VLAN.to_be_bytes();
    let [c0, c1] = ((old_tci & 0xf000) | (vid & 0x0fff)).to_be_bytes();
    [t0, t1, c0, c1]
}

fn tci_of(frame: &[u8]) -> u16 {
    match frame.get(HEADER_LEN..HEADER_LEN + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// The length `frame` will have after rewriting for `tag`.
pub fn rewritten_len(frame: &[u8], tag: EgressTag) -> usize {
    match (is_tagged(frame), tag) {
        (false, EgressTag::Tagged(_)) => frame.len() + TAG_LEN,
        (true, EgressTag::Untagged) => frame.len().saturating_sub(TAG_LEN),
        _ => frame.len(),
    }
}

fn check_frame(frame: &[u8]) -> Result<bool, RewriteError> {
    let tagged = is_tagged(frame);
    let min = if tagged {
        HEADER_LEN + TAG_LEN
    } else {
        HEADER_LEN
    };
    if frame.len() < min {
        return Err(RewriteError::Truncated(frame.len()));
    }
    Ok(tagged)
}

/// Writes `frame` as it must leave a port with egress form `tag` into `out`; returns the length
/// written. Pushes a tag (PCP 0) onto an untagged frame, pops the tag of a tagged frame, or
/// rewrites the VID of a tagged one (keeping PCP/DEI).
pub fn rewrite_into(frame: &[u8], tag: EgressTag, out: &mut [u8]) -> Result<usize, RewriteError> {
    let tagged = check_frame(frame)?;
    if let EgressTag::Tagged(v) = tag {
        check_vid(v)?;
    }
    let needed = rewritten_len(frame, tag);
    let got = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(RewriteError::BufferTooSmall { needed, got })?;
    let (macs, rest) = frame.split_at(MACS_LEN.min(frame.len()));
    let (out_macs, out_rest) = out.split_at_mut(MACS_LEN.min(needed));
    out_macs.copy_from_slice(macs);
    match (tagged, tag) {
        (false, EgressTag::Untagged) => out_rest.copy_from_slice(rest),
        (true, EgressTag::Untagged) => {
            out_rest.copy_from_slice(rest.get(TAG_LEN..).unwrap_or(&[]));
        }
        (false, EgressTag::Tagged(v)) => {
            let (t, body) = out_rest.split_at_mut(TAG_LEN.min(out_rest.len()));
            t.copy_from_slice(&tag_bytes(0, v));
            body.copy_from_slice(rest);
        }
        (true, EgressTag::Tagged(v)) => {
            out_rest.copy_from_slice(rest);
            let (t, _) = out_rest.split_at_mut(TAG_LEN.min(out_rest.len()));
            t.copy_from_slice(&tag_bytes(tci_of(frame), v));
        }
    }
    Ok(needed)
}

/// Rewrites the frame at `buf[frame]` in place for egress form `tag` and returns its new range.
/// Pushing a tag needs 4 octets of headroom in front of `frame.start` (the MACs move 4 octets
/// toward the start); popping moves them 4 octets toward the end.
pub fn rewrite_in_place(
    buf: &mut [u8],
    frame: Range<usize>,
    tag: EgressTag,
) -> Result<Range<usize>, RewriteError> {
    let Range { start, end } = frame;
    let bytes = buf.get(start..end).ok_or(RewriteError::BadRange)?;
    let tagged = check_frame(bytes)?;
    if let EgressTag::Tagged(v) = tag {
        check_vid(v)?;
    }
    match (tagged, tag) {
        (false, EgressTag::Untagged) => Ok(start..end),
        (true, EgressTag::Tagged(v)) => {
            let old = tci_of(bytes);
            let t = buf
                .get_mut(start + MACS_LEN..start + HEADER_LEN + 2)
                .ok_or(RewriteError::BadRange)?;
            t.copy_from_slice(&tag_bytes(old, v));
            Ok(start..end)
        }
        (false, EgressTag::Tagged(v)) => {
            let new_start = start
                .checked_sub(TAG_LEN)
                .ok_or(RewriteError::NoHeadroom { got: start })?;
            // Both ranges were checked: start..end lies in buf and new_start < start.
            buf.copy_within(start..start + MACS_LEN, new_start);
            let t = buf
                .get_mut(new_start + MACS_LEN..new_start + MACS_LEN + TAG_LEN)
                .ok_or(RewriteError::BadRange)?;
            t.copy_from_slice(&tag_bytes(0, v));
            Ok(new_start..end)
        }
        (true, EgressTag::Untagged) => {
            // The frame holds at least MACs + tag, so the destination range is inside it.
            buf.copy_within(start..start + MACS_LEN, start + TAG_LEN);
            Ok(start + TAG_LEN..end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dst, src, then `rest`.
    fn frame(rest: &[u8]) -> Vec<u8> {
        let mut v = vec![1, 0, 0x5e, 1, 2, 3, 2, 0, 0, 0, 0, 9];
        v.extend_from_slice(rest);
        v
    }

    const UNTAGGED_BODY: [u8; 6] = [0x08, 0x06, 0xaa, 0xbb, 0xcc, 0xdd];
    // PCP 5, DEI 1, VID 10.
    const TAGGED_BODY: [u8; 10] = [0x81, 0x00, 0xb0, 0x0a, 0x08, 0x06, 0xaa, 0xbb, 0xcc, 0xdd];

    #[test]
    fn push_pop_retag_keep_byte_exact() {
        let untagged = frame(&UNTAGGED_BODY);
        let tagged = frame(&TAGGED_BODY);
        let mut out = [0u8; 64];

        let n = rewrite_into(&untagged, EgressTag::Tagged(10), &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &frame(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x06, 0xaa, 0xbb, 0xcc, 0xdd])[..],
            "push: PCP 0"
        );
        let mut back = [0u8; 64];
        let n2 = rewrite_into(&out[..n], EgressTag::Untagged, &mut back).unwrap();
        assert_eq!(&back[..n2], &untagged[..], "push then pop is the identity");

        let n = rewrite_into(&tagged, EgressTag::Untagged, &mut out).unwrap();
        assert_eq!(&out[..n], &untagged[..], "pop");

        let n = rewrite_into(&tagged, EgressTag::Tagged(4094), &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &frame(&[0x81, 0x00, 0xbf, 0xfe, 0x08, 0x06, 0xaa, 0xbb, 0xcc, 0xdd])[..],
            "retag keeps PCP 5 and DEI"
        );
        assert_eq!(&out[14..16], &[0xbf, 0xfe]);

        let n = rewrite_into(&tagged, EgressTag::Tagged(10), &mut out).unwrap();
        assert_eq!(&out[..n], &tagged[..], "keep");
        let n = rewrite_into(&untagged, EgressTag::Untagged, &mut out).unwrap();
        assert_eq!(&out[..n], &untagged[..], "keep");
    }

    #[test]
    fn in_place_matches_copying() {
        let cases = [
            (frame(&UNTAGGED_BODY), EgressTag::Tagged(77)),
            (frame(&UNTAGGED_BODY), EgressTag::Untagged),
            (frame(&TAGGED_BODY), EgressTag::Untagged),
            (frame(&TAGGED_BODY), EgressTag::Tagged(3)),
            (frame(&TAGGED_BODY), EgressTag::Tagged(10)),
        ];
        for (f, tag) in cases {
            let mut expect = [0u8; 64];
            let n = rewrite_into(&f, tag, &mut expect).unwrap();
            let mut buf = vec![0xeeu8; 8 + f.len()];
            buf[8..].copy_from_slice(&f);
            let r = rewrite_in_place(&mut buf, 8..8 + f.len(), tag).unwrap();
            assert_eq!(&buf[r], &expect[..n], "{tag:?}");
        }
    }

    #[test]
    fn refusals() {
        let untagged = frame(&UNTAGGED_BODY);
        let tagged = frame(&TAGGED_BODY);
        let mut small = [0u8; 19];
        assert_eq!(
            rewrite_into(&untagged, EgressTag::Tagged(5), &mut small),
            Err(RewriteError::BufferTooSmall {
                needed: 22,
                got: 19
            })
        );
        assert_eq!(
            rewrite_into(&untagged, EgressTag::Tagged(0), &mut [0u8; 64]),
            Err(RewriteError::BadVid(0))
        );
        assert_eq!(
            rewrite_into(&untagged, EgressTag::Tagged(4095), &mut [0u8; 64]),
            Err(RewriteError::BadVid(4095))
        );
        assert_eq!(
            rewrite_into(&untagged[..13], EgressTag::Untagged, &mut [0u8; 64]),
            Err(RewriteError::Truncated(13))
        );
        assert_eq!(
            rewrite_into(&tagged[..17], EgressTag::Untagged, &mut [0u8; 64]),
            Err(RewriteError::Truncated(17))
        );
        let mut buf = untagged.clone();
        let len = buf.len();
        assert_eq!(
            rewrite_in_place(&mut buf, 0..len, EgressTag::Tagged(5)),
            Err(RewriteError::NoHeadroom { got: 0 })
        );
        assert_eq!(
            rewrite_in_place(&mut buf, 2..len + 1, EgressTag::Untagged),
            Err(RewriteError::BadRange)
        );
        assert_eq!(buf, untagged, "refusals leave the buffer untouched");
    }
}
