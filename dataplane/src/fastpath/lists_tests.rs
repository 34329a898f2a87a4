//! The list book against a model of the kernel and of frames in flight: whatever the order of
//! joins, leaves, deletes, frames and grace periods, no frame ever finds a port in its list
//! outside the union of the sets its key had while the frame was in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::{ListBook, ListId, ListMove, Placement, Refill};
use crate::fastpath::plan::{key, EgressSet};
use crate::portset::PortId;
use crate::xdp::abi::{FpKey, FP_KIND_ANY};

use crate::fastpath::tests::plain as set;

fn k(i: u8) -> FpKey {
    key(
        10,
        FP_KIND_ANY,
        Ipv4Addr::new(239, 0, 0, i),
        Ipv4Addr::UNSPECIFIED,
    )
}

/// A frame that read `list` through `key` and has not finished; `allowed` is every port its
/// key had from the read on.
struct Reader {
    key: FpKey,
    list: ListId,
    allowed: BTreeSet<PortId>,
}

/// What the kernel holds, and the frames in flight, driven through the book's decisions.
#[derive(Default)]
struct Bed {
    book: ListBook,
    contents: BTreeMap<ListId, BTreeSet<PortId>>,
    pointer: BTreeMap<FpKey, ListId>,
    readers: Vec<Reader>,
    created: usize,
    shared: usize,
    edited: usize,
    retargeted: usize,
    batches: usize,
}

impl Bed {
    fn with_pool(n: u32) -> Bed {
        let mut b = Bed::default();
        b.grow(n);
        b
    }

    /// A pool batch: every frame in flight finishes during its grace period.
    fn grow(&mut self, n: u32) {
        let g = self.book.grace_begin();
        let start = self.book.pool_size();
        for id in start..start + n {
            self.contents.insert(id, BTreeSet::new());
        }
        self.readers.clear();
        self.book.add_pool(n);
        self.book.grace_done(g);
        self.batches += 1;
    }

    fn write(&mut self, id: ListId, ports: BTreeSet<PortId>) {
        self.contents.insert(id, ports);
        self.check();
    }

    fn check(&self) {
        for r in &self.readers {
            let c = &self.contents[&r.list];
            assert!(
                c.is_subset(&r.allowed),
                "a frame of {:?} holding list {} would reach {:?}, allowed {:?}",
                r.key,
                r.list,
                c,
                r.allowed
            );
        }
    }

    fn put(&mut self, key: FpKey, entries: &EgressSet) {
        let ports: BTreeSet<PortId> = entries.iter().map(|e| e.port).collect();
        for r in self.readers.iter_mut().filter(|r| r.key == key) {
            r.allowed.extend(ports.iter().copied());
        }
        loop {
            match self.book.place(&key, entries) {
                Placement::Unchanged(id) => {
                    assert_eq!(self.pointer.get(&key), Some(&id));
                    assert_eq!(self.contents[&id], ports);
                    return;
                }
                Placement::Share(id) => {
                    assert_eq!(self.contents[&id], ports, "shared list holds the set");
                    self.pointer.insert(key, id);
                    self.book.commit(key, id, entries);
                    self.shared += 1;
                    return;
                }
                Placement::EditInPlace { id, old, exact } => {
                    assert!(exact);
                    let before = self.contents[&id].clone();
                    assert_eq!(before, old.iter().map(|e| e.port).collect());
                    assert_eq!(self.pointer.get(&key), Some(&id), "its own list");
                    self.write(id, before.union(&ports).copied().collect());
                    self.write(id, ports.clone());
                    self.book.commit(key, id, entries);
                    self.edited += 1;
                    return;
                }
                Placement::Fresh { id, old, .. } => {
                    assert!(!self.pointer.values().any(|&l| l == id), "no key uses it");
                    assert_eq!(self.contents[&id], old.iter().map(|e| e.port).collect());
                    self.write(id, ports.clone());
                    self.pointer.insert(key, id);
                    self.book.commit(key, id, entries);
                    self.created += 1;
                    return;
                }
                Placement::NeedPool => self.grow(4),
            }
        }
    }

    /// One sync's puts, as the applier runs them: whole-list moves first, then every put.
    fn batch(&mut self, puts: &[(FpKey, EgressSet)]) {
        for (key, entries) in puts {
            for r in self.readers.iter_mut().filter(|r| r.key == *key) {
                r.allowed.extend(entries.iter().map(|e| e.port));
            }
        }
        // The applier waits a grace period when lists wait for one (above a threshold; here
        // always): the frames in flight finish.
        if self
            .book
            .whole_list_moves(puts.iter().map(|(k, e)| (k, e)), true)
            .iter()
            .any(|m| m.needs_grace)
        {
            self.grow(1);
        }
        let moves = self
            .book
            .whole_list_moves(puts.iter().map(|(k, e)| (k, e)), false);
        for m in moves {
            assert!(m.exact && !m.needs_grace);
            let before = self.contents[&m.id].clone();
            assert_eq!(before, m.old.iter().map(|e| e.port).collect());
            let ports: BTreeSet<PortId> = m.new.iter().map(|e| e.port).collect();
            self.write(m.id, before.union(&ports).copied().collect());
            self.write(m.id, ports);
            self.book.retarget(m.id, &m.new);
            self.retargeted += 1;
        }
        for (key, entries) in puts {
            self.put(*key, entries);
        }
    }

    fn delete(&mut self, key: FpKey) {
        self.pointer.remove(&key);
        self.book.remove_key(&key);
    }

    fn read(&mut self, key: FpKey) {
        if let Some(&list) = self.pointer.get(&key) {
            let allowed = self.contents[&list].clone();
            self.readers.push(Reader { key, list, allowed });
        }
    }
}

#[test]
fn keys_with_the_same_ports_share_one_list() {
    let mut b = Bed::with_pool(8);
    b.put(k(1), &set(&[1, 2]));
    b.put(k(2), &set(&[1, 2]));
    b.put(k(3), &set(&[3]));
    assert_eq!((b.created, b.shared), (2, 1));
    assert_eq!(b.book.list_of(&k(1)), b.book.list_of(&k(2)));
    assert_ne!(b.book.list_of(&k(1)), b.book.list_of(&k(3)));
    let shared = b.book.list_of(&k(1)).unwrap();
    assert_eq!(b.book.refs(shared), 2);
    assert_eq!(b.book.live_count(), 2);
    // Same set again: nothing to do.
    assert!(matches!(
        b.book.place(&k(2), &set(&[1, 2])),
        Placement::Unchanged(_)
    ));
}

#[test]
fn a_join_to_a_shared_list_re_points_the_key_and_leaves_the_others_alone() {
    let mut b = Bed::with_pool(8);
    b.put(k(1), &set(&[1]));
    b.put(k(2), &set(&[1]));
    let l = b.book.list_of(&k(1)).unwrap();
    b.read(k(1));
    b.read(k(2));
    // k1 joins port 2: its shared list must not change under k2's frames.
    b.put(k(1), &set(&[1, 2]));
    assert_ne!(b.book.list_of(&k(1)), Some(l), "re-pointed");
    assert_eq!(b.book.entries(l).unwrap(), &set(&[1])[..]);
    // k2 is alone on l now, but k1's frame may still hold it: no in-place edit yet.
    let p = b.book.place(&k(2), &set(&[3]));
    assert!(matches!(p, Placement::Fresh { .. }), "{p:?}");
    // After a grace period it may be edited in place.
    b.grow(1);
    let p = b.book.place(&k(2), &set(&[3]));
    assert!(
        matches!(p, Placement::EditInPlace { id, .. } if id == l),
        "{p:?}"
    );
    b.put(k(2), &set(&[3]));
    assert_eq!(b.edited, 1);
}

#[test]
fn an_unused_list_waits_in_quarantine_for_a_grace_period_that_began_after_it() {
    let mut b = Bed::with_pool(2);
    b.put(k(1), &set(&[1]));
    let l = b.book.list_of(&k(1)).unwrap();
    b.read(k(1));
    // A grace period that begins now...
    let g = b.book.grace_begin();
    // ...does not cover a list quarantined after it began.
    b.delete(k(1));
    assert_eq!(b.book.quarantined(), 1);
    assert!(!b.book.is_free(l));
    b.book.grace_done(g);
    assert!(
        !b.book.is_free(l),
        "released by a grace period older than the delete"
    );
    // The only other free list goes to the next set; then the pool is empty.
    b.put(k(2), &set(&[2]));
    assert_ne!(b.book.list_of(&k(2)), Some(l));
    assert!(matches!(
        b.book.place(&k(3), &set(&[3])),
        Placement::NeedPool
    ));
    let g = b.book.grace_begin();
    b.readers.clear();
    assert_eq!(b.book.grace_done(g), 1);
    assert!(b.book.is_free(l));
    b.put(k(3), &set(&[3]));
    assert_eq!(b.book.list_of(&k(3)), Some(l), "reused only now");
}

#[test]
fn the_pool_asks_for_growth_when_fewer_than_a_quarter_is_free() {
    let mut b = Bed::with_pool(8);
    for i in 0..6 {
        b.put(k(i), &set(&[PortId::from(i)]));
        assert!(!b.book.needs_growth(), "{} free of 8", b.book.free_count());
    }
    b.put(k(6), &set(&[6]));
    assert_eq!(b.book.free_count(), 1);
    assert!(b.book.needs_growth());
    // Deleting keys does not make lists free by itself: they are quarantined.
    for i in 0..7 {
        b.delete(k(i));
    }
    assert_eq!((b.book.free_count(), b.book.quarantined()), (1, 7));
    assert!(b.book.needs_growth());
    b.grow(4);
    assert_eq!((b.book.free_count(), b.book.quarantined()), (12, 0));
    assert!(!b.book.needs_growth());
}

#[test]
fn churn_reclaims_the_quarantine_and_only_a_growing_table_grows_the_pool() {
    let mut b = Bed::with_pool(8);
    for i in 0..7 {
        b.put(k(i), &set(&[PortId::from(i)]));
    }
    // 7 live, 1 free, nothing quarantined: grow, by at least the batch.
    assert_eq!(b.book.refill(0, 4), Refill::Grow(4));
    assert_eq!(
        b.book.refill(10, 4),
        Refill::Grow(9),
        "covers what is missing"
    );
    // Churn: the keys leave; their lists wait in quarantine, enough to refill without growth.
    for i in 0..5 {
        b.delete(k(i));
    }
    assert_eq!(b.book.refill(0, 4), Refill::Reclaim);
    assert_eq!(b.book.refill(6, 4), Refill::Reclaim);
    assert_eq!(
        b.book.refill(7, 4),
        Refill::Grow(4),
        "the quarantine is too small"
    );
}

#[test]
fn fresh_needed_counts_distinct_sets_no_live_list_holds() {
    let mut b = Bed::with_pool(4);
    b.put(k(1), &set(&[1]));
    let (a, c, d) = (set(&[1]), set(&[2]), set(&[2, 3]));
    let sets = [&a[..], &c[..], &c[..], &d[..]];
    assert_eq!(b.book.fresh_needed(sets), 2);
}

#[test]
fn a_failed_write_takes_the_list_out_of_sharing() {
    let mut b = Bed::with_pool(4);
    b.put(k(1), &set(&[1]));
    let l = b.book.list_of(&k(1)).unwrap();
    b.book.write_failed(l, &set(&[1, 2]));
    // Another key wanting [1] must not share a list of unknown content.
    assert!(matches!(
        b.book.place(&k(2), &set(&[1])),
        Placement::Fresh { .. }
    ));
    // k1 rewrites its own list completely.
    match b.book.place(&k(1), &set(&[1])) {
        Placement::EditInPlace { id, exact, old } => {
            assert_eq!(id, l);
            assert!(!exact);
            assert_eq!(old, set(&[1, 2]));
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn a_list_whose_keys_all_move_to_one_new_set_is_rewritten_not_its_keys() {
    let mut b = Bed::with_pool(8);
    for i in 0..4 {
        b.put(k(i), &set(&[1]));
    }
    b.put(k(4), &set(&[2]));
    b.put(k(5), &set(&[0, 2]));
    let (one, two) = (b.pointer[&k(0)], b.pointer[&k(4)]);
    // A router on port 0: every set gains it. {1}'s list is rewritten for its four keys; {2}
    // would become {0, 2}, which a list already holds, so k4 shares that one.
    let puts: Vec<(FpKey, EgressSet)> = vec![
        (k(0), set(&[0, 1])),
        (k(1), set(&[0, 1])),
        (k(2), set(&[0, 1])),
        (k(3), set(&[0, 1])),
        (k(4), set(&[0, 2])),
        (k(5), set(&[0, 2])),
    ];
    let moves = b
        .book
        .whole_list_moves(puts.iter().map(|(k, e)| (k, e)), false);
    assert_eq!(
        moves,
        vec![ListMove {
            id: one,
            old: set(&[1]),
            exact: true,
            new: set(&[0, 1]),
            keys: 4,
            needs_grace: false,
        }]
    );
    let (shared, created) = (b.shared, b.created);
    b.batch(&puts);
    assert_eq!(b.retargeted, 1);
    assert_eq!(b.shared, shared + 1, "only k4 re-pointed");
    assert_eq!(b.created, created);
    for i in 0..4 {
        assert_eq!(b.pointer[&k(i)], one, "k{i} untouched");
    }
    assert_eq!(b.contents[&one], [0, 1].into_iter().collect());
    assert_eq!(b.book.refs(two), 0, "{{2}} left for quarantine");

    // Not all of a list's keys move the same way: each key is placed on its own.
    let split = [(k(0), set(&[3])), (k(1), set(&[0, 1, 3]))];
    assert!(b
        .book
        .whole_list_moves(split.iter().map(|(k, e)| (k, e)), true)
        .is_empty());
    // A key left the list within this grace period: its frames may still read the list.
    b.put(k(3), &set(&[3]));
    let rest: Vec<(FpKey, EgressSet)> = (0..3).map(|i| (k(i), set(&[1, 3]))).collect();
    let moves = |b: &Bed, after_grace| {
        b.book
            .whole_list_moves(rest.iter().map(|(k, e)| (k, e)), after_grace)
    };
    assert!(moves(&b, false).is_empty());
    let waiting = moves(&b, true);
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0].needs_grace && waiting[0].keys == 3);
    b.grow(1);
    assert_eq!(
        moves(&b, false),
        vec![ListMove {
            needs_grace: false,
            ..waiting[0].clone()
        }]
    );
}

#[derive(Clone, Debug)]
enum Step {
    Batch(Vec<(u8, u8)>),
    Put(u8, u8),
    Delete(u8),
    Read(u8),
    Finish(usize),
    Grace,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => prop::collection::vec((0u8..6, 0u8..16), 1..6).prop_map(Step::Batch),
        4 => (0u8..6, 0u8..16).prop_map(|(k, s)| Step::Put(k, s)),
        1 => (0u8..6).prop_map(Step::Delete),
        4 => (0u8..6).prop_map(Step::Read),
        1 => (0usize..8).prop_map(Step::Finish),
        1 => Just(Step::Grace),
    ]
}

proptest! {
    #[test]
    fn no_frame_ever_reaches_a_port_outside_its_keys_sets(steps in prop::collection::vec(step(), 1..200)) {
        let mut b = Bed::with_pool(4);
        for s in steps {
            match s {
                Step::Batch(puts) => {
                    // One put per key, as a sync's ops are; a router appearing is a batch
                    // where every key gains one port.
                    let mut seen = BTreeSet::new();
                    let puts: Vec<(FpKey, EgressSet)> = puts
                        .into_iter()
                        .filter(|(key, _)| seen.insert(*key))
                        .map(|(key, bits)| {
                            let ports: Vec<PortId> =
                                (0..4u16).filter(|p| bits >> p & 1 == 1).collect();
                            (k(key), set(&ports))
                        })
                        .collect();
                    b.batch(&puts);
                }
                Step::Put(key, bits) => {
                    let ports: Vec<PortId> = (0..4u16).filter(|p| bits >> p & 1 == 1).collect();
                    b.put(k(key), &set(&ports));
                }
                Step::Delete(key) => b.delete(k(key)),
                Step::Read(key) => b.read(k(key)),
                Step::Finish(i) => {
                    if i < b.readers.len() {
                        b.readers.remove(i);
                    }
                }
                Step::Grace => b.grow(1),
            }
            // The book's view agrees with the model kernel.
            for (key, id) in &b.pointer {
                prop_assert_eq!(b.book.list_of(key), Some(*id));
            }
            prop_assert!(b.book.live_count() <= b.pointer.len());
        }
    }
}
