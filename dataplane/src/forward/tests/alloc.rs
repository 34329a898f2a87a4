//! Proof that the per-packet path never allocates: a counting global allocator (per thread, so
//! tests running in parallel do not disturb each other) around `process` and the rewrites.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::*;
use crate::forward::{rewrite_in_place, rewrite_into, EgressTag};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

fn count() {
    // `try_with`: the slot may be gone while a thread is being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

#[test]
fn process_and_rewrite_never_allocate() {
    let mut sw = Switch::new();
    let frames: Vec<(PortId, Vec<u8>)> = (1..=50u8)
        .flat_map(|n| {
            [
                (0, udp(host(n), S_LISTED, G_REG, None)),
                (3, udp(host(n), S_OTHER, G_UNREG, Some(10))),
                (0, arp_request(host(n), None)),
                (1, arp_reply(host(n), host(n + 100), None)),
                (4, arp_reply(host(n + 100), host(n), Some(20))),
                (0, arp_request(host(n), Some(20))),
                (0, vec![0u8; 10]),
            ]
        })
        .collect();
    let mut out = [0u8; 2048];
    let mut inplace = [0u8; 2048];
    let before = allocations();
    let mut forwarded = 0;
    for round in 0..3 {
        sw.now += std::time::Duration::from_secs(round);
        for (p, f) in &frames {
            let d = sw.rx(*p, f);
            if let Decision::Forward(e) = d {
                forwarded += 1;
                for port in e.ports.iter() {
                    let tag = e.tag_for(port).unwrap_or(EgressTag::Untagged);
                    let n = rewrite_into(f, tag, &mut out).unwrap();
                    assert!(n > 0);
                    inplace[16..16 + f.len()].copy_from_slice(f);
                    rewrite_in_place(&mut inplace, 16..16 + f.len(), tag).unwrap();
                }
            }
        }
    }
    let n = allocations() - before;
    assert!(
        forwarded > 100,
        "the loop exercised forwarding ({forwarded})"
    );
    assert_eq!(n, 0, "{n} allocations on the per-packet path");
    // The counter works: this allocates.
    let v: Box<u64> = std::hint::black_box(Box::new(7));
    assert!(allocations() > before && *v == 7);
}
