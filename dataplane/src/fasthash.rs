//! A fast, seeded hasher for the dataplane's small fixed-size keys (VLAN ids, IPv4 addresses,
//! (VLAN, MAC) keys).
//!
//! The standard SipHash costs more than the rest of a multicast lookup; a folded 64×64→128-bit
//! multiply per 8 key octets is several times cheaper. The seed is random per map, so a host
//! flooding groups or MACs cannot aim for one collision chain (table limits bound the damage
//! regardless).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Builds [`FastHasher`]s sharing one random seed.
#[derive(Clone, Copy, Debug)]
pub struct FastHashBuilder {
    seed: u64,
}

impl Default for FastHashBuilder {
    /// A builder with a fresh random seed.
    fn default() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x7873_6e6f_6f70_6664);
        FastHashBuilder { seed: h.finish() }
    }
}

impl BuildHasher for FastHashBuilder {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            seed: self.seed,
            state: 0,
        }
    }
}

/// The hasher: each 64-bit word is mixed in with one folded multiply.
#[derive(Clone, Debug)]
pub struct FastHasher {
    seed: u64,
    state: u64,
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let m = u128::from(x ^ self.seed ^ self.state).wrapping_mul(u128::from(MUL));
        self.state = (m as u64) ^ ((m >> 64) as u64);
    }
}

/// A `HashMap` with [`FastHashBuilder`].
pub type FastMap<K, V> = HashMap<K, V, FastHashBuilder>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;
    use std::net::Ipv4Addr;

    fn hash<T: Hash>(b: &FastHashBuilder, v: T) -> u64 {
        b.hash_one(v)
    }

    #[test]
    fn same_key_same_hash_and_neighbours_spread() {
        let b = FastHashBuilder::default();
        let a = Ipv4Addr::new(239, 1, 1, 1);
        assert_eq!(hash(&b, a), hash(&b, a));
        // Consecutive groups must land in different buckets of a small table.
        let buckets: std::collections::BTreeSet<u64> = (0..256u32)
            .map(|i| hash(&b, Ipv4Addr::from(0xef00_0000 + i)) & 1023)
            .collect();
        assert!(
            buckets.len() > 200,
            "poor spread: {} buckets",
            buckets.len()
        );
    }

    #[test]
    fn seeds_differ_between_maps() {
        let (b1, b2) = (FastHashBuilder::default(), FastHashBuilder::default());
        assert_ne!(hash(&b1, 7u32), hash(&b2, 7u32));
    }
}
