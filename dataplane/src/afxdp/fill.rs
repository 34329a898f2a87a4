//! How many frames each socket's fill ring is kept at: many where frames arrive, few where
//! they do not.
//!
//! A frame given to a fill ring stays with the kernel until that socket receives into it; no
//! call takes it back. With one fixed share per socket (`frame_count / (sockets + 1)`, the
//! rule before this module), a switch whose traffic enters on one port parked most of its pool
//! on ports that receive almost nothing: in the bench's 4-member bed, 6 of the 7 sockets sat
//! on 6 144 of 8 192 frames. The frames in flight to the members then had 1 024, the pool ran
//! dry whenever the members' queues were slow to drain, and the busy port's kernel dropped at
//! an empty fill ring after running the XDP program on every frame.
//!
//! So every socket starts at a floor ([`FLOOR`], or its fair share if that is less) and its
//! depth doubles when the kernel is close to running out while frames wait in its RX ring
//! ([`FillDepths::grow`]). A review a few times a second ([`FillDepths::review`]) halves the
//! depth of a socket that received fewer than [`SHRINK_TURNS`] ring-fulls since the last one.
//! All depths together stay within half the pool: the other half is for frames in flight
//! (the old rule also left one share free, a much smaller one with many ports).
//!
//! A lowered depth frees nothing at once: the socket's parked frames come back as it receives.
//! A zero-copy driver takes fill frames into its own RX descriptors ahead of time, so its
//! fill ring looks short even when idle; the depth grows only when a read also left a
//! backlog, so an idle zero-copy queue stays at the floor.

/// The depth a socket starts at and never goes below: enough for a burst of a few NAPI polls
/// (64 frames each) to land while the worker wakes.
pub const FLOOR: u32 = 256;
/// A socket whose ring turned over fewer times than this between two reviews has more depth
/// than it uses (at the busy port of a saturated bed it turns over hundreds of times).
pub const SHRINK_TURNS: u64 = 8;

/// The fill-ring depth of every socket of one UMEM.
#[derive(Clone, Debug)]
pub struct FillDepths {
    floor: u32,
    cap: u32,
    budget: u64,
    depth: Vec<u32>,
}

impl FillDepths {
    /// Depths for `sockets` sockets on a pool of `frame_count` frames with fill rings of
    /// `fill_size` entries; each starts at the floor.
    pub fn new(frame_count: u32, fill_size: u32, sockets: usize) -> FillDepths {
        let floor = floor(frame_count, fill_size, sockets);
        let floors = u64::from(floor) * sockets as u64;
        FillDepths {
            floor,
            cap: fill_size,
            budget: (u64::from(frame_count) / 2).max(floors),
            depth: vec![floor; sockets],
        }
    }

    /// The depth socket `s`'s fill ring is topped up to (0 for no such socket).
    pub fn depth(&self, s: usize) -> u32 {
        self.depth.get(s).copied().unwrap_or(0)
    }

    /// The depth every socket starts at.
    pub fn floor(&self) -> u32 {
        self.floor
    }

    /// Socket `s`'s kernel is close to running out of frames while more wait in its RX ring:
    /// doubles its depth, up to the ring's size and what the budget has left. Returns whether
    /// it grew.
    pub fn grow(&mut self, s: usize) -> bool {
        let all: u64 = self.depth.iter().map(|&d| u64::from(d)).sum();
        let Some(d) = self.depth.get_mut(s) else {
            return false;
        };
        let cur = *d;
        if cur >= self.cap {
            return false;
        }
        let room = self.budget.saturating_sub(all - u64::from(cur));
        let new = u64::from(cur.saturating_mul(2))
            .min(u64::from(self.cap))
            .min(room);
        match u32::try_from(new) {
            Ok(new) if new > cur => {
                *d = new;
                true
            }
            _ => false,
        }
    }

    /// Socket `s` received `received` frames since the last review: halves its depth (not
    /// below the floor) if that is fewer than [`SHRINK_TURNS`] ring-fulls.
    pub fn review(&mut self, s: usize, received: u64) {
        let floor = self.floor;
        let Some(d) = self.depth.get_mut(s) else {
            return;
        };
        let cur = *d;
        if cur > floor && received < u64::from(cur) * SHRINK_TURNS {
            *d = (cur / 2).max(floor);
        }
    }
}

/// The depth each of `sockets` sockets starts at: [`FLOOR`], less if the ring is smaller or
/// the pool gives a socket less than a fair share (one each for every socket and the frames in
/// flight). [`super::check_config`] refuses a configuration where this is too small.
pub fn floor(frame_count: u32, fill_size: u32, sockets: usize) -> u32 {
    let share = u64::from(frame_count) / (sockets as u64 + 1);
    FLOOR
        .min(u32::try_from(share).unwrap_or(u32::MAX))
        .min(fill_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_start_at_the_floor_or_their_fair_share_if_less() {
        let d = FillDepths::new(8192, 2048, 7);
        assert_eq!((0..7).map(|s| d.depth(s)).collect::<Vec<_>>(), [256; 7]);
        // 40 sockets on 8192 frames: 199 each.
        let d = FillDepths::new(8192, 2048, 40);
        assert_eq!(d.depth(0), 199);
        assert_eq!(d.floor(), 199);
        // A small ring is its own floor.
        assert_eq!(FillDepths::new(8192, 128, 2).depth(1), 128);
        assert_eq!(d.depth(40), 0, "no such socket");
    }

    #[test]
    fn a_busy_socket_doubles_up_to_the_ring_size() {
        let mut d = FillDepths::new(8192, 2048, 7);
        let steps: Vec<u32> = (0..5)
            .map(|_| {
                d.grow(0);
                d.depth(0)
            })
            .collect();
        assert_eq!(steps, [512, 1024, 2048, 2048, 2048]);
        assert!(!d.grow(0));
        assert_eq!(d.depth(1), 256, "the others keep theirs");
    }

    #[test]
    fn all_depths_stay_within_half_the_pool() {
        // Budget 4096; 4 sockets start at 256 each.
        let mut d = FillDepths::new(8192, 4096, 4);
        while d.grow(0) {}
        assert_eq!(
            d.depth(0),
            4096 - 3 * 256,
            "socket 0 takes what the others leave"
        );
        assert!(!d.grow(1), "no room left for socket 1");
        assert_eq!(d.depth(1), 256);
        // Socket 0 goes quiet: the reviews give its depth back, socket 1 can grow.
        for _ in 0..4 {
            d.review(0, 0);
        }
        assert_eq!(d.depth(0), 256);
        while d.grow(1) {}
        assert_eq!(d.depth(1), 4096 - 3 * 256);
        let sum: u32 = (0..4).map(|s| d.depth(s)).sum();
        assert!(sum <= 4096, "{sum}");
    }

    #[test]
    fn reviews_shrink_only_what_turns_over_rarely() {
        let mut d = FillDepths::new(8192, 2048, 7);
        d.grow(0);
        d.grow(0);
        d.grow(0);
        assert_eq!(d.depth(0), 2048);
        // Busy: 8 ring-fulls or more since the last review keep the depth.
        d.review(0, 2048 * SHRINK_TURNS);
        assert_eq!(d.depth(0), 2048);
        // Quieter: one halving per review, never below the floor.
        d.review(0, 2048 * SHRINK_TURNS - 1);
        assert_eq!(d.depth(0), 1024);
        for _ in 0..5 {
            d.review(0, 0);
        }
        assert_eq!(d.depth(0), 256);
        // The freed budget is counted: socket 1 can take the same path.
        for _ in 0..3 {
            assert!(d.grow(1));
        }
        assert_eq!(d.depth(1), 2048);
    }

    #[test]
    fn too_small_a_pool_for_the_floors_still_gives_every_socket_its_floor() {
        // 64 frames for 3 sockets: fair share 16; half the pool (32) is less than the floors
        // (48), so the budget is the floors and nobody grows.
        let mut d = FillDepths::new(64, 2048, 3);
        assert_eq!(d.floor(), 16);
        assert_eq!((0..3).map(|s| d.depth(s)).sum::<u32>(), 48);
        assert!(!d.grow(0));
        assert_eq!(d.depth(0), 16);
    }
}
