//! A fixed-size set of switch ports.
//!
//! Egress decisions are sets of ports; a bitmap makes union, difference and "all but the ingress
//! port" single instructions and never allocates on the per-packet path.

use std::fmt;

/// Index of a switch port, in configuration order (0-based). Not a Linux ifindex: the control plane
/// owns the mapping from names to ids.
pub type PortId = u16;

/// How many ports one switch instance can have (the width of [`PortSet`]).
pub const MAX_PORTS: usize = 128;

/// A set of [`PortId`]s below [`MAX_PORTS`], stored as a bitmap.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PortSet(u128);

impl PortSet {
    /// The empty set.
    pub const EMPTY: PortSet = PortSet(0);

    /// The empty set.
    pub const fn new() -> Self {
        PortSet(0)
    }

    /// A set holding exactly `port` (empty if `port` is out of range).
    pub fn single(port: PortId) -> Self {
        let mut s = Self::new();
        s.insert(port);
        s
    }

    /// Adds `port`; returns false (and changes nothing) when it is out of range.
    pub fn insert(&mut self, port: PortId) -> bool {
        match 1u128.checked_shl(u32::from(port)) {
            Some(bit) if usize::from(port) < MAX_PORTS => {
                self.0 |= bit;
                true
            }
            _ => false,
        }
    }

    /// Removes `port` if present.
    pub fn remove(&mut self, port: PortId) {
        if let Some(bit) = 1u128.checked_shl(u32::from(port)) {
            self.0 &= !bit;
        }
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: PortId) -> bool {
        1u128
            .checked_shl(u32::from(port))
            .is_some_and(|bit| self.0 & bit != 0)
    }

    /// Ports in either set.
    pub const fn union(self, other: PortSet) -> PortSet {
        PortSet(self.0 | other.0)
    }

    /// Ports in both sets.
    pub const fn intersection(self, other: PortSet) -> PortSet {
        PortSet(self.0 & other.0)
    }

    /// Ports in `self` but not in `other`.
    pub const fn difference(self, other: PortSet) -> PortSet {
        PortSet(self.0 & !other.0)
    }

    /// The set without `port`: "never send a frame back out of its ingress port".
    pub fn without(mut self, port: PortId) -> PortSet {
        self.remove(port);
        self
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Number of ports in the set.
    pub const fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The raw bitmap (bit `i` = port `i`), for maps shared with BPF programs.
    pub const fn bits(&self) -> u128 {
        self.0
    }

    /// Builds a set from a raw bitmap.
    pub const fn from_bits(bits: u128) -> Self {
        PortSet(bits)
    }

    /// The ports in ascending order.
    pub fn iter(&self) -> PortSetIter {
        PortSetIter(self.0)
    }
}

impl FromIterator<PortId> for PortSet {
    fn from_iter<I: IntoIterator<Item = PortId>>(iter: I) -> Self {
        let mut s = PortSet::new();
        for p in iter {
            s.insert(p);
        }
        s
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Iterator over the ports of a [`PortSet`], lowest first.
#[derive(Clone)]
pub struct PortSetIter(u128);

impl Iterator for PortSetIter {
    type Item = PortId;

    fn next(&mut self) -> Option<PortId> {
        if self.0 == 0 {
            return None;
        }
        let low = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        // `low` < 128, so it always fits a PortId.
        Some(low as PortId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_remove_and_bounds() {
        let mut s = PortSet::new();
        assert!(s.insert(0));
        assert!(s.insert(127));
        assert!(!s.insert(128), "port 128 is out of range");
        assert!(!s.insert(u16::MAX));
        assert!(s.contains(0) && s.contains(127) && !s.contains(128) && !s.contains(5));
        assert_eq!(s.len(), 2);
        s.remove(0);
        s.remove(999);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![127]);
    }

    #[test]
    fn set_algebra() {
        let a: PortSet = [1, 2, 3].into_iter().collect();
        let b: PortSet = [3, 4].into_iter().collect();
        assert_eq!(a.union(b).iter().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(a.intersection(b).iter().collect::<Vec<_>>(), vec![3]);
        assert_eq!(a.difference(b).iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(a.without(2).iter().collect::<Vec<_>>(), vec![1, 3]);
        assert!(PortSet::EMPTY.is_empty());
    }
}
