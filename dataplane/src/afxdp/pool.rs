//! The UMEM frame pool: who owns each frame, with a reference count per frame so one received
//! frame can sit on N TX rings at once and come back to the pool only after its last completion.
//!
//! Pure bookkeeping over frame indices: no kernel, no pointers, no allocation after
//! construction (the free stack has room for every frame), so it is tested on its own.

/// Per-frame state: not a reference count.
const FREE: u16 = 0;
/// Per-frame state: handed to a fill ring (the kernel may be writing it).
const IN_FILL: u16 = u16::MAX;
/// Highest reference count; one more reference is refused rather than overflowing into IN_FILL.
const MAX_REFS: u16 = u16::MAX - 1;

/// Where the frames are: the numbers a test uses to prove that none is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Frames in the UMEM.
    pub total: u32,
    /// Frames in the free pool.
    pub free: u32,
    /// Frames handed to fill rings (including those the kernel has filled but userspace has not
    /// read from an RX ring yet).
    pub in_fill: u32,
    /// Frames with references: held by the caller and/or queued for TX awaiting completion.
    pub in_flight: u32,
}

impl Accounting {
    /// `free + in_fill + in_flight == total`.
    pub fn balanced(&self) -> bool {
        u64::from(self.free) + u64::from(self.in_fill) + u64::from(self.in_flight)
            == u64::from(self.total)
    }
}

/// A pool operation on a frame in the wrong state: an address the kernel or the caller gave us
/// that does not correspond to what we handed out. Counted, never trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The address lies outside the UMEM.
    #[error("address {0:#x} outside the UMEM")]
    OutOfRange(u64),
    /// RX returned a frame that was not in a fill ring.
    #[error("frame {0} came back from RX but was not in a fill ring")]
    NotInFill(u32),
    /// A reference was released or added on a frame nobody holds.
    #[error("frame {0} has no reference")]
    NotHeld(u32),
    /// A frame already has `MAX_REFS` references.
    #[error("frame {0} has too many references")]
    TooManyRefs(u32),
}

/// The inconsistency [`FramePool::audit`] found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("frame pool audit: {0}")]
pub struct AuditError(pub String);

/// Reference-counted ownership of `total` frames of `frame_size` octets.
#[derive(Debug)]
pub struct FramePool {
    frame_size: u64,
    /// log2 of `frame_size` when it is a power of two (AF_XDP requires one): every
    /// address-to-index conversion is then a shift, not a 64-bit division, and there are
    /// several per forwarded copy (TX, completion, release).
    shift: Option<u32>,
    state: Box<[u16]>,
    free: Vec<u32>,
    in_fill: u32,
    in_flight: u32,
}

impl FramePool {
    /// A pool of `total` frames, all free. `frame_size` must be non-zero.
    pub fn new(total: u32, frame_size: u32) -> FramePool {
        let frame_size = frame_size.max(1);
        FramePool {
            frame_size: u64::from(frame_size),
            shift: frame_size
                .is_power_of_two()
                .then(|| frame_size.trailing_zeros()),
            state: vec![FREE; total as usize].into_boxed_slice(),
            // Popped from the end: frame 0 is handed out first.
            free: (0..total).rev().collect(),
            in_fill: 0,
            in_flight: 0,
        }
    }

    /// The frame index of UMEM address `addr` (any offset inside the frame).
    pub fn index_of(&self, addr: u64) -> Result<u32, PoolError> {
        let idx = match self.shift {
            Some(s) => addr >> s,
            None => addr / self.frame_size,
        };
        match u32::try_from(idx) {
            Ok(i) if (i as usize) < self.state.len() => Ok(i),
            _ => Err(PoolError::OutOfRange(addr)),
        }
    }

    /// Where `addr` lies inside its frame (octets from the frame's start).
    pub fn offset_in_frame(&self, addr: u64) -> u64 {
        match self.shift {
            Some(s) => addr & ((1u64 << s) - 1),
            None => addr % self.frame_size,
        }
    }

    /// `addr..addr+len` lies inside one frame: checked for every received frame and every
    /// copy sent.
    pub fn fits(&self, addr: u64, len: u32) -> bool {
        self.offset_in_frame(addr) + u64::from(len) <= self.frame_size
    }

    /// UMEM address of the start of frame `idx`.
    pub fn addr_of(&self, idx: u32) -> u64 {
        u64::from(idx) * self.frame_size
    }

    /// Takes a free frame for a fill ring.
    pub fn take_for_fill(&mut self) -> Option<u32> {
        let idx = self.free.pop()?;
        if let Some(s) = self.state.get_mut(idx as usize) {
            *s = IN_FILL;
        }
        self.in_fill += 1;
        Some(idx)
    }

    /// Returns a frame taken with [`FramePool::take_for_fill`] that did not fit in the ring.
    pub fn untake_fill(&mut self, idx: u32) {
        if let Some(s) = self.state.get_mut(idx as usize) {
            if *s == IN_FILL {
                *s = FREE;
                self.in_fill -= 1;
                self.free.push(idx);
            }
        }
    }

    /// An RX ring returned the frame at `addr`: it now has one reference (the caller's hold).
    pub fn received(&mut self, addr: u64) -> Result<u32, PoolError> {
        let idx = self.index_of(addr)?;
        match self.state.get_mut(idx as usize) {
            Some(s) if *s == IN_FILL => {
                *s = 1;
                self.in_fill -= 1;
                self.in_flight += 1;
                Ok(idx)
            }
            _ => Err(PoolError::NotInFill(idx)),
        }
    }

    /// Takes a free frame for the caller to write (a frame the switch originates); one reference.
    pub fn alloc(&mut self) -> Option<u32> {
        let idx = self.free.pop()?;
        if let Some(s) = self.state.get_mut(idx as usize) {
            *s = 1;
        }
        self.in_flight += 1;
        Some(idx)
    }

    /// Adds a reference to a held frame (before queueing it on one more TX ring).
    pub fn retain(&mut self, addr: u64) -> Result<u32, PoolError> {
        let idx = self.index_of(addr)?;
        match self.state.get_mut(idx as usize) {
            Some(s) if *s == FREE || *s == IN_FILL => Err(PoolError::NotHeld(idx)),
            Some(s) if *s >= MAX_REFS => Err(PoolError::TooManyRefs(idx)),
            Some(s) => {
                *s += 1;
                Ok(idx)
            }
            None => Err(PoolError::OutOfRange(addr)),
        }
    }

    /// Adds `n` references at once (one per TX ring a replicated frame goes onto): the same as
    /// `n` calls of [`FramePool::retain`], all or none.
    pub fn retain_n(&mut self, addr: u64, n: u16) -> Result<u32, PoolError> {
        let idx = self.index_of(addr)?;
        match self.state.get_mut(idx as usize) {
            Some(s) if *s == FREE || *s == IN_FILL => Err(PoolError::NotHeld(idx)),
            Some(s) if MAX_REFS - *s < n => Err(PoolError::TooManyRefs(idx)),
            Some(s) => {
                *s += n;
                Ok(idx)
            }
            None => Err(PoolError::OutOfRange(addr)),
        }
    }

    /// Drops one reference (the caller's hold, a TX completion, or a TX that was dropped). Returns
    /// `true` when that was the last one and the frame went back to the free pool.
    pub fn release(&mut self, addr: u64) -> Result<bool, PoolError> {
        let idx = self.index_of(addr)?;
        match self.state.get_mut(idx as usize) {
            Some(s) if *s == FREE || *s == IN_FILL => Err(PoolError::NotHeld(idx)),
            Some(s) => {
                *s -= 1;
                if *s == FREE {
                    self.in_flight -= 1;
                    self.free.push(idx);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            None => Err(PoolError::OutOfRange(addr)),
        }
    }

    /// References on the frame at `addr` (0 when free or in a fill ring).
    pub fn refs(&self, addr: u64) -> u16 {
        match self
            .index_of(addr)
            .ok()
            .and_then(|i| self.state.get(i as usize))
        {
            Some(&s) if s != IN_FILL => s,
            _ => 0,
        }
    }

    /// Number of free frames.
    pub fn free_count(&self) -> u32 {
        self.free.len() as u32
    }

    /// The running counters.
    pub fn accounting(&self) -> Accounting {
        Accounting {
            total: self.state.len() as u32,
            free: self.free_count(),
            in_fill: self.in_fill,
            in_flight: self.in_flight,
        }
    }

    /// Recomputes the accounting from the per-frame states and checks it against the running
    /// counters and the free stack (no duplicates, every listed frame really free). Slow (it
    /// scans every frame and allocates): for tests and diagnostics only.
    pub fn audit(&self) -> Result<Accounting, AuditError> {
        let mut seen = vec![false; self.state.len()];
        for &i in &self.free {
            match (self.state.get(i as usize), seen.get_mut(i as usize)) {
                (Some(&FREE), Some(s)) if !*s => *s = true,
                (Some(_), Some(true)) => {
                    return Err(AuditError(format!("frame {i} twice in the free stack")))
                }
                (Some(st), _) => {
                    return Err(AuditError(format!(
                        "frame {i} in the free stack with state {st}"
                    )))
                }
                _ => {
                    return Err(AuditError(format!(
                        "free stack holds {i}, outside the pool"
                    )))
                }
            }
        }
        let mut acc = Accounting {
            total: self.state.len() as u32,
            ..Accounting::default()
        };
        for (i, &s) in self.state.iter().enumerate() {
            match s {
                FREE if seen.get(i).copied().unwrap_or(false) => acc.free += 1,
                FREE => {
                    return Err(AuditError(format!(
                        "frame {i} is free but not in the free stack (leaked)"
                    )))
                }
                IN_FILL => acc.in_fill += 1,
                _ => acc.in_flight += 1,
            }
        }
        if acc != self.accounting() {
            return Err(AuditError(format!(
                "counters {:?} differ from the frame states {acc:?}",
                self.accounting()
            )));
        }
        Ok(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_receive_replicate_complete() {
        let mut p = FramePool::new(4, 2048);
        let a = p.take_for_fill().unwrap();
        let b = p.take_for_fill().unwrap();
        assert_eq!(
            p.accounting(),
            Accounting {
                total: 4,
                free: 2,
                in_fill: 2,
                in_flight: 0
            }
        );
        // The kernel returns the frame with a data offset inside it.
        let addr = p.addr_of(a) + 256;
        assert_eq!(p.received(addr), Ok(a));
        // Queued on three TX rings, then the hold is released.
        for _ in 0..3 {
            p.retain(addr).unwrap();
        }
        assert_eq!(p.release(addr), Ok(false));
        assert_eq!(p.refs(addr), 3);
        assert_eq!(p.release(addr), Ok(false));
        assert_eq!(p.release(addr), Ok(false));
        assert_eq!(p.accounting().in_flight, 1);
        assert_eq!(p.release(addr), Ok(true));
        assert_eq!(
            p.audit().unwrap(),
            Accounting {
                total: 4,
                free: 3,
                in_fill: 1,
                in_flight: 0
            }
        );
        // A completion for a frame nobody holds is refused, not double-freed.
        assert_eq!(p.release(addr), Err(PoolError::NotHeld(a)));
        assert_eq!(p.received(p.addr_of(b)), Ok(b));
        assert_eq!(p.received(p.addr_of(b)), Err(PoolError::NotInFill(b)));
        assert_eq!(p.received(4 * 2048), Err(PoolError::OutOfRange(4 * 2048)));
        assert!(p.audit().unwrap().balanced());
    }

    #[test]
    fn addresses_map_to_frames_by_shift_or_by_division() {
        let p = FramePool::new(4, 2048);
        assert_eq!(p.index_of(2 * 2048 + 300), Ok(2));
        assert_eq!(p.index_of(4 * 2048), Err(PoolError::OutOfRange(4 * 2048)));
        let q = FramePool::new(4, 3000);
        assert_eq!(q.index_of(2 * 3000 + 2999), Ok(2));
        assert_eq!(q.index_of(3 * 3000), Ok(3));
        assert_eq!(q.addr_of(3), 9000);
    }

    #[test]
    fn alloc_until_empty_and_untake() {
        let mut p = FramePool::new(2, 64);
        let x = p.alloc().unwrap();
        let y = p.take_for_fill().unwrap();
        assert!(p.alloc().is_none());
        assert!(p.take_for_fill().is_none());
        p.untake_fill(y);
        assert_eq!(p.free_count(), 1);
        assert_eq!(p.release(p.addr_of(x)), Ok(true));
        assert_eq!(p.audit().unwrap().free, 2);
    }

    #[test]
    fn audit_detects_a_leak() {
        let mut p = FramePool::new(3, 64);
        let x = p.alloc().unwrap();
        // Simulate a bug: the state says free but the frame never went back to the stack.
        p.state[x as usize] = FREE;
        p.in_flight -= 1;
        assert!(p.audit().is_err());
    }

    #[test]
    fn refcount_saturates_instead_of_wrapping() {
        let mut p = FramePool::new(1, 64);
        let x = p.alloc().unwrap();
        let addr = p.addr_of(x);
        for _ in 1..MAX_REFS {
            p.retain(addr).unwrap();
        }
        assert_eq!(p.retain(addr), Err(PoolError::TooManyRefs(x)));
        assert_eq!(p.refs(addr), MAX_REFS);
        // Several at once: all or none.
        p.release(addr).unwrap();
        p.release(addr).unwrap();
        assert_eq!(p.retain_n(addr, 3), Err(PoolError::TooManyRefs(x)));
        assert_eq!(p.refs(addr), MAX_REFS - 2);
        assert_eq!(p.retain_n(addr, 2), Ok(x));
        assert_eq!(p.refs(addr), MAX_REFS);
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        TakeFill,
        Receive(u32),
        Alloc,
        Retain(u32),
        RetainN(u32, u16),
        Release(u32),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Op::TakeFill),
            (0u32..10).prop_map(Op::Receive),
            Just(Op::Alloc),
            (0u32..10).prop_map(Op::Retain),
            (0u32..10, 0u16..4).prop_map(|(i, n)| Op::RetainN(i, n)),
            (0u32..10).prop_map(Op::Release),
        ]
    }

    /// Model: `None` = free, `Some(None)` = in fill, `Some(Some(n))` = n references.
    type Model = Vec<Option<Option<u16>>>;

    proptest::proptest! {
        /// Any sequence of operations, valid or not (frame 8 and 9 are out of range), keeps the
        /// pool equal to a naive model and its accounting balanced; invalid operations change
        /// nothing.
        #[test]
        fn pool_matches_a_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut p = FramePool::new(8, 2048);
            let mut m: Model = vec![None; 8];
            for o in ops {
                match o {
                    Op::TakeFill => {
                        let got = p.take_for_fill();
                        proptest::prop_assert_eq!(got.is_some(), m.iter().any(|s| s.is_none()));
                        if let Some(i) = got {
                            proptest::prop_assert!(m[i as usize].is_none());
                            m[i as usize] = Some(None);
                        }
                    }
                    Op::Alloc => {
                        let got = p.alloc();
                        proptest::prop_assert_eq!(got.is_some(), m.iter().any(|s| s.is_none()));
                        if let Some(i) = got {
                            proptest::prop_assert!(m[i as usize].is_none());
                            m[i as usize] = Some(Some(1));
                        }
                    }
                    Op::Receive(i) => {
                        let r = p.received(u64::from(i) * 2048 + 256);
                        match m.get(i as usize) {
                            Some(Some(None)) => {
                                proptest::prop_assert_eq!(r, Ok(i));
                                m[i as usize] = Some(Some(1));
                            }
                            _ => proptest::prop_assert!(r.is_err()),
                        }
                    }
                    Op::Retain(i) => {
                        let r = p.retain(u64::from(i) * 2048);
                        match m.get(i as usize) {
                            Some(Some(Some(n))) => {
                                proptest::prop_assert_eq!(r, Ok(i));
                                m[i as usize] = Some(Some(n + 1));
                            }
                            _ => proptest::prop_assert!(r.is_err()),
                        }
                    }
                    Op::RetainN(i, n) => {
                        let r = p.retain_n(u64::from(i) * 2048 + 60, n);
                        match m.get(i as usize) {
                            Some(Some(Some(c))) => {
                                proptest::prop_assert_eq!(r, Ok(i));
                                m[i as usize] = Some(Some(c + n));
                            }
                            _ => proptest::prop_assert!(r.is_err()),
                        }
                    }
                    Op::Release(i) => {
                        let r = p.release(u64::from(i) * 2048 + 100);
                        match m.get(i as usize) {
                            Some(Some(Some(n))) => {
                                proptest::prop_assert_eq!(r, Ok(*n == 1));
                                m[i as usize] = if *n == 1 { None } else { Some(Some(n - 1)) };
                            }
                            _ => proptest::prop_assert!(r.is_err()),
                        }
                    }
                }
                let acc = p.audit().map_err(|e| proptest::test_runner::TestCaseError::fail(e.0))?;
                proptest::prop_assert!(acc.balanced());
                proptest::prop_assert_eq!(acc.free as usize, m.iter().filter(|s| s.is_none()).count());
                proptest::prop_assert_eq!(acc.in_fill as usize, m.iter().filter(|s| **s == Some(None)).count());
            }
        }
    }
}
