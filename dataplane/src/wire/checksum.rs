//! The Internet checksum (RFC 1071), shared by IPv4, IGMP, PIM and UDP.

/// Ones'-complement sum of `data` as 16-bit big-endian words (odd tail padded with zero),
/// not yet folded, so pseudo-headers can be added before folding.
///
/// Adds 32-bit big-endian words into a 64-bit accumulator: a ones'-complement sum may be
/// taken in any word width and folded at the end (RFC 1071 §2(B), "parallel summation"), and
/// half as many additions matter on the per-frame path, which verifies every IPv4 header.
pub fn sum(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    let mut acc: u64 = 0;
    for w in &mut words {
        if let &[a, b, c, d] = w {
            acc += u64::from(u32::from_be_bytes([a, b, c, d]));
        }
    }
    match *words.remainder() {
        [a, b, c] => {
            acc + u64::from(u16::from_be_bytes([a, b])) + u64::from(u16::from_be_bytes([c, 0]))
        }
        [a, b] => acc + u64::from(u16::from_be_bytes([a, b])),
        [a] => acc + u64::from(u16::from_be_bytes([a, 0])),
        _ => acc,
    }
}

/// Folds a [`sum`] to 16 bits with end-around carry.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to store in a header whose checksum field is currently zero.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// True when `data`, checksum field included, verifies (its folded sum is all ones).
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 after folding.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    /// The 16-bit-word sum of RFC 1071 §1, the definition the wide [`sum`] must fold equal to.
    fn sum16(data: &[u8]) -> u64 {
        data.chunks(2)
            .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
            .sum()
    }

    proptest::proptest! {
        #[test]
        fn the_wide_sum_folds_like_the_sum_of_16_bit_words(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
            extra in proptest::prelude::any::<u32>(),
        ) {
            proptest::prop_assert_eq!(fold(sum(&data)), fold(sum16(&data)));
            // Callers add pseudo-headers before folding: that must agree too.
            proptest::prop_assert_eq!(
                fold(sum(&data) + u64::from(extra)),
                fold(sum16(&data) + u64::from(extra))
            );
        }
    }

    #[test]
    fn checksum_then_verify() {
        let mut d = [
            0x45u8, 0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0, 10, 0, 0, 1, 224, 0, 0, 1, 7,
        ];
        let c = checksum(&d);
        d[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&d));
        d[20] ^= 1;
        assert!(!verify(&d));
    }
}
