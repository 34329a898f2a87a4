//! Replication lists: which inner devmap (list id in `fp_lists`) each fast-path key points at,
//! and when a list may be rewritten. Pure bookkeeping, unit-tested without a kernel; the
//! applier in `super` performs what [`ListBook::place`] decides and reports back with
//! [`ListBook::commit`].
//!
//! Why lists: every update or delete of a map-in-map waits for an RCU grace period (~10 ms
//! here), so a new key must not need one. Keys live in a plain hash (`fp_groups`, key → list
//! id; updating it waits for nothing and a reader sees the old or the new id), lists are
//! inner devmaps created ahead of need in a pool (one batch, one grace period, per growth),
//! and keys with the same egress entries share a list, as ASICs share replication lists.
//!
//! # When a list may be rewritten (the quarantine argument)
//!
//! The XDP program reads a key's list id and then broadcasts through that list, all inside one
//! RCU read-side critical section (XDP runs in NAPI/softirq context with bottom halves off, and
//! the devmap clones are made during `bpf_redirect_map`, flushed in the same NAPI poll; since
//! Linux 4.20 `synchronize_rcu` waits for such sections). A frame may therefore still use list
//! `L` after the last key stopped pointing at `L`, but only until the end of the current grace
//! period. Rewriting `L` for another set before then could send that frame to a port outside
//! its key's old ∪ new set. So:
//!
//! - a list no key uses any more goes to quarantine, not to the free pool;
//! - a list that one key left while others still use it is "recently left": it may not be
//!   edited in place for the remaining key (the leaver's frames may still be reading it);
//! - both are cleared only by an operation that waited for a grace period and *started after*
//!   they were recorded: every update of `fp_lists` (an ARRAY_OF_MAPS) calls
//!   `synchronize_rcu()` before returning (`maybe_wait_bpf_programs`, once per batch), so the
//!   applier takes a [`Grace`] snapshot right before such a call and hands it to
//!   [`ListBook::grace_done`] only after the call succeeded. Nothing here guesses a time.
//!
//! In-place edits of a list used by exactly one key (and not recently left) keep the old
//! guarantee: additions first, removals last, so a frame sees a set between old ∩ new and
//! old ∪ new. A free list is unreachable, so it is rewritten in any order before a key points
//! at it.
//!
//! One window is the kernel's, not ours: a preallocated hash element replaced by an update is
//! recycled by a later update on the same CPU without waiting for readers, so a reader stalled
//! for two whole update system calls between its lookup and its 4-byte load could read another
//! key's id. `HASH_OF_MAPS` (the previous design) has the same property.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::plan::{DevEntry, EgressSet};
use crate::fasthash::FastMap;
use crate::xdp::abi::FpKey;

/// Index of a replication list in `fp_lists`.
pub type ListId = u32;

/// How to give a key its egress set, as decided by [`ListBook::place`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The key already points at a list holding exactly this set: nothing to do.
    Unchanged(ListId),
    /// A live list already holds the set: point the key at it (one hash update).
    Share(ListId),
    /// The key's own list (no other key uses it, none left it within the current grace period)
    /// is edited in place from `old`: additions first, removals last.
    EditInPlace {
        /// The key's list.
        id: ListId,
        /// What the list holds now.
        old: EgressSet,
        /// `old` is exact; if not (a failed write), every wanted entry is (re)written.
        exact: bool,
    },
    /// A free list is rewritten from `old` (any order: no reader can reach it), then the key
    /// points at it.
    Fresh {
        /// The free list.
        id: ListId,
        /// What the list holds now.
        old: EgressSet,
        /// As in [`Placement::EditInPlace`].
        exact: bool,
    },
    /// No free list: the pool must grow (or a grace period pass) first.
    NeedPool,
}

/// A list to rewrite in place for all of its keys (see [`ListBook::whole_list_moves`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListMove {
    /// The list.
    pub id: ListId,
    /// What it holds now.
    pub old: EgressSet,
    /// `old` is exact (as in [`Placement::EditInPlace`]).
    pub exact: bool,
    /// The set all of its keys move to.
    pub new: EgressSet,
    /// How many keys point at it: the key updates the rewrite spares.
    pub keys: u32,
    /// A key left it within the current grace period: only after one more may it be rewritten.
    pub needs_grace: bool,
}

/// One list's bookkeeping.
#[derive(Clone, Debug)]
struct List {
    /// What its devmap holds (as far as known, see `exact`).
    entries: EgressSet,
    /// Keys pointing at it.
    refs: u32,
    /// `entries` is exactly the devmap's content (false after a failed write: then it is a
    /// superset of the ports that may be in it).
    exact: bool,
}

/// A snapshot taken right before an operation that waits for an RCU grace period: what that
/// operation will make safe once it has returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "hand it to ListBook::grace_done once the waiting operation succeeded"]
pub struct Grace {
    quarantined: usize,
    recently_left: BTreeSet<ListId>,
}

/// The kind of grace-period operation that refills the free lists ([`ListBook::refill`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refill {
    /// A grace period alone: the quarantine suffices.
    Reclaim,
    /// Add this many new lists (the same batch frees the quarantine too).
    Grow(u32),
}

/// Every list, who points at it, and which lists are free.
#[derive(Clone, Debug, Default)]
pub struct ListBook {
    /// Index = list id; every list inserted into `fp_lists` so far.
    lists: Vec<List>,
    /// Live lists (refs > 0, exact) by their set: the dedup index.
    live: FastMap<EgressSet, ListId>,
    /// Key → its list.
    of_key: FastMap<FpKey, ListId>,
    /// Lists no reader can reach; the last one is handed out first.
    free: Vec<ListId>,
    /// Lists nobody points at, oldest first, that a frame may still hold.
    quarantine: VecDeque<ListId>,
    /// Lists some key left within the current grace period while others still use them.
    recently_left: BTreeSet<ListId>,
}

impl ListBook {
    /// Decides how `key` gets `entries` (sorted by port, as the plan builds them).
    pub fn place(&self, key: &FpKey, entries: &[DevEntry]) -> Placement {
        let current = self.of_key.get(key).copied();
        if let Some(c) = current {
            if let Some(l) = self.list(c) {
                if l.exact && &l.entries[..] == entries {
                    return Placement::Unchanged(c);
                }
            }
        }
        if let Some(&l) = self.live.get(entries) {
            return Placement::Share(l);
        }
        if let Some(c) = current {
            if let Some(l) = self.list(c) {
                if l.refs == 1 && !self.recently_left.contains(&c) {
                    return Placement::EditInPlace {
                        id: c,
                        old: l.entries.clone(),
                        exact: l.exact,
                    };
                }
            }
        }
        match self.free.last().and_then(|&id| Some((id, self.list(id)?))) {
            Some((id, l)) => Placement::Fresh {
                id,
                old: l.entries.clone(),
                exact: l.exact,
            },
            None => Placement::NeedPool,
        }
    }

    /// The lists a batch of puts can rewrite in place instead of re-pointing their keys, as an
    /// ASIC edits one multicast group index rather than every entry using it: each list whose
    /// every key moves to one and the same new set in `puts`, that no key left within the
    /// current grace period, while no live list holds that set yet (one list per set; a second
    /// list moving to it leaves its keys to share). Returns (list, what it holds, `exact`, the
    /// new set). A multicast router appearing or a port going down changes the set of every
    /// group of a VLAN: at 100 000 groups that was 100 000 key updates (about 1 s here)
    /// against a few list edits. Safe for the same reason as [`Placement::EditInPlace`]:
    /// additions first, removals last, and every reader of the list belongs to a moving key.
    ///
    /// With `after_grace`, lists some key left within the current grace period count too
    /// (marked [`ListMove::needs_grace`]): the caller may wait for one grace period first.
    pub fn whole_list_moves<'a>(
        &self,
        puts: impl IntoIterator<Item = (&'a FpKey, &'a EgressSet)>,
        after_grace: bool,
    ) -> Vec<ListMove> {
        // List → (its keys' common target so far, how many, all the same).
        let mut moving: BTreeMap<ListId, (&'a EgressSet, u32, bool)> = BTreeMap::new();
        for (key, entries) in puts {
            let Some(&id) = self.of_key.get(key) else {
                continue;
            };
            moving
                .entry(id)
                .and_modify(|(t, n, same)| {
                    *n += 1;
                    *same &= *t == entries;
                })
                .or_insert((entries, 1, true));
        }
        let mut claimed: BTreeSet<&[DevEntry]> = BTreeSet::new();
        let mut out = Vec::new();
        for (id, (target, n, same)) in moving {
            let Some(l) = self.list(id) else {
                continue;
            };
            let needs_grace = self.recently_left.contains(&id);
            if !same
                || n != l.refs
                || (needs_grace && !after_grace)
                || l.entries == *target
                || self.live.contains_key(&target[..])
                || !claimed.insert(&target[..])
            {
                continue;
            }
            out.push(ListMove {
                id,
                old: l.entries.clone(),
                exact: l.exact,
                new: target.clone(),
                keys: n,
                needs_grace,
            });
        }
        out
    }

    /// Records that list `id` was rewritten in place to hold exactly `entries` (a move from
    /// [`ListBook::whole_list_moves`]); its keys keep pointing at it.
    pub fn retarget(&mut self, id: ListId, entries: &EgressSet) {
        self.holds(id, entries);
    }

    /// Records that list `id` holds exactly `entries` (the dedup index follows).
    fn holds(&mut self, id: ListId, entries: &EgressSet) {
        let Some(l) = self.list(id) else {
            return;
        };
        if !(l.exact && l.entries == *entries) {
            let old = l.entries.clone();
            if self.live.get(&old) == Some(&id) {
                self.live.remove(&old);
            }
            if let Some(l) = self.list_mut(id) {
                l.entries = entries.clone();
                l.exact = true;
            }
        }
        self.live.insert(entries.clone(), id);
    }

    fn list(&self, id: ListId) -> Option<&List> {
        self.lists.get(usize::try_from(id).ok()?)
    }

    fn list_mut(&mut self, id: ListId) -> Option<&mut List> {
        self.lists.get_mut(usize::try_from(id).ok()?)
    }

    /// Records that list `id` now holds exactly `entries` and `key` points at it (after the
    /// applier carried out a [`Placement`] other than `NeedPool`). The key's previous list, if
    /// another, loses a reference: unused, it goes to quarantine; still used, it is recently
    /// left.
    pub fn commit(&mut self, key: FpKey, id: ListId, entries: &EgressSet) {
        let prev = self.of_key.get(&key).copied();
        if self.list(id).is_none() {
            return;
        }
        self.holds(id, entries);
        if prev == Some(id) {
            return;
        }
        self.free.retain(|&f| f != id);
        if let Some(l) = self.list_mut(id) {
            l.refs += 1;
        }
        self.of_key.insert(key, id);
        if let Some(p) = prev {
            self.unref(p);
        }
    }

    /// Records that a write to list `id` failed part-way: it may hold any of `old` and `new`.
    /// It is taken out of the dedup index (no key may share a list of unknown content) and the
    /// next write to it rewrites every wanted entry.
    pub fn write_failed(&mut self, id: ListId, new: &[DevEntry]) {
        let Some(l) = self.list(id) else {
            return;
        };
        let both: EgressSet = l
            .entries
            .iter()
            .chain(new.iter().filter(|e| !l.entries.contains(e)))
            .copied()
            .collect();
        if self.live.get(&l.entries) == Some(&id) {
            let old = l.entries.clone();
            self.live.remove(&old);
        }
        if let Some(l) = self.list_mut(id) {
            l.entries = both;
            l.exact = false;
        }
    }

    /// Records that `key` was deleted from `fp_groups`.
    pub fn remove_key(&mut self, key: &FpKey) {
        if let Some(id) = self.of_key.remove(key) {
            self.unref(id);
        }
    }

    fn unref(&mut self, id: ListId) {
        let Some(l) = self.list_mut(id) else {
            return;
        };
        l.refs = l.refs.saturating_sub(1);
        if l.refs > 0 {
            self.recently_left.insert(id);
            return;
        }
        let entries = l.entries.clone();
        if self.live.get(&entries) == Some(&id) {
            self.live.remove(&entries);
        }
        self.recently_left.remove(&id);
        self.quarantine.push_back(id);
    }

    /// Records that `n` new, empty lists were inserted into `fp_lists` after the existing ones
    /// (ids `pool_size()..pool_size() + n`); they are free at once (no key ever named them).
    pub fn add_pool(&mut self, n: u32) {
        for _ in 0..n {
            let Ok(id) = ListId::try_from(self.lists.len()) else {
                return;
            };
            self.lists.push(List {
                entries: EgressSet::from([]),
                refs: 0,
                exact: true,
            });
            self.free.push(id);
        }
    }

    /// Snapshot to take right before an operation that waits for a grace period.
    pub fn grace_begin(&self) -> Grace {
        Grace {
            quarantined: self.quarantine.len(),
            recently_left: self.recently_left.clone(),
        }
    }

    /// That operation returned successfully: what was quarantined or recently left before it
    /// began is safe now. Returns how many lists left quarantine.
    pub fn grace_done(&mut self, g: Grace) -> usize {
        let n = g.quarantined.min(self.quarantine.len());
        for id in self.quarantine.drain(..n).collect::<Vec<_>>() {
            // A quarantined list nobody re-took (lists in quarantine are never handed out).
            self.free.push(id);
        }
        for id in g.recently_left {
            self.recently_left.remove(&id);
        }
        n
    }

    /// Lists inserted into `fp_lists` so far.
    pub fn pool_size(&self) -> u32 {
        u32::try_from(self.lists.len()).unwrap_or(u32::MAX)
    }

    /// Lists free to take now.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Lists waiting for a grace period.
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }

    /// Lists some key points at.
    pub fn live_count(&self) -> usize {
        self.lists.iter().filter(|l| l.refs > 0).count()
    }

    /// Fewer than a quarter of the pool is free: time for a batch (growth, or at least a grace
    /// period that frees the quarantine).
    pub fn needs_growth(&self) -> bool {
        self.free.len() * 4 < self.lists.len()
    }

    /// How to leave at least `need` lists free with one grace-period operation: a grace period
    /// alone when the quarantine covers `need` and leaves half the pool free (churn then
    /// recycles lists instead of growing the pool), else growth by at least `batch` and half
    /// the pool (geometric, so a large table costs few batches).
    pub fn refill(&self, need: usize, batch: u32) -> Refill {
        let after = self.free.len() + self.quarantine.len();
        if !self.quarantine.is_empty() && after >= need && after * 2 >= self.lists.len() {
            return Refill::Reclaim;
        }
        let short = u32::try_from(need.saturating_sub(after)).unwrap_or(u32::MAX);
        Refill::Grow(short.max(batch).max(self.pool_size() / 2))
    }

    /// The list `key` points at.
    pub fn list_of(&self, key: &FpKey) -> Option<ListId> {
        self.of_key.get(key).copied()
    }

    /// What list `id` holds (as far as known).
    pub fn entries(&self, id: ListId) -> Option<&[DevEntry]> {
        self.list(id).map(|l| &l.entries[..])
    }

    /// Keys pointing at list `id`.
    pub fn refs(&self, id: ListId) -> u32 {
        self.list(id).map_or(0, |l| l.refs)
    }

    /// Whether list `id` is free (may be handed out for a new set).
    pub fn is_free(&self, id: ListId) -> bool {
        self.free.contains(&id)
    }

    /// How many lists a sync that puts these sets could take from the pool at most (one per
    /// distinct set no live list holds yet).
    pub fn fresh_needed<'a>(&self, sets: impl IntoIterator<Item = &'a [DevEntry]>) -> usize {
        let mut distinct: BTreeSet<&[DevEntry]> = BTreeSet::new();
        for s in sets {
            if !self.live.contains_key(s) {
                distinct.insert(s);
            }
        }
        distinct.len()
    }
}

#[cfg(test)]
#[path = "lists_tests.rs"]
mod tests;
