//! The only file that knows the AF_XDP crate (xdpilone 1.3): one UMEM, sockets bound to
//! (interface, queue), and their four rings as plain batch operations on addresses and
//! descriptors. Swapping the crate (e.g. for xsk-rs) means rewriting this file only.
//!
//! Pitfalls handled here (see shared/reference/afxdp-crates.md): every (interface, queue) gets
//! its own fill/completion pair; only the socket that owns the UMEM passes COPY / ZEROCOPY /
//! NEED_WAKEUP, the others bind with no flags (xdpilone adds XDP_SHARED_UMEM) and inherit them;
//! and ring writes never hand xdpilone more items than it reserved (its `insert` can consume one
//! item too many when the ring is full).

use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// A descriptor as the rings carry it: UMEM address of the data and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct RawDesc {
    pub addr: u64,
    pub len: u32,
}

/// Ring sizes (entries, powers of two).
#[derive(Clone, Copy, Debug)]
pub(super) struct Sizes {
    pub frame_size: u32,
    pub fill: u32,
    pub comp: u32,
    pub rx: u32,
    pub tx: u32,
}

/// How the UMEM owner binds; everything sharing the UMEM inherits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    Copy,
    ZeroCopy,
}

/// A failed step and the errno it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct XskError {
    pub step: &'static str,
    pub errno: i32,
}

fn step(step: &'static str) -> impl FnOnce(xdpilone::Errno) -> XskError {
    move |e| XskError {
        step,
        errno: e.get_raw().abs(),
    }
}

/// Kernel statistics of one socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames the kernel dropped for other reasons (e.g. no fill frame in copy mode).
    pub rx_dropped: u64,
    /// RX descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid (bad address or length).
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty_descs: u64,
}

impl KernelStats {
    /// Adds `o`'s counts (a port's sockets summed).
    pub(super) fn add(&mut self, o: &KernelStats) {
        self.rx_dropped += o.rx_dropped;
        self.rx_invalid_descs += o.rx_invalid_descs;
        self.tx_invalid_descs += o.tx_invalid_descs;
        self.rx_ring_full += o.rx_ring_full;
        self.rx_fill_ring_empty_descs += o.rx_fill_ring_empty_descs;
        self.tx_ring_empty_descs += o.tx_ring_empty_descs;
    }
}

/// The registered UMEM (its owner socket carries the first port's rings).
pub(super) struct XskUmem {
    umem: Umem,
    sizes: Sizes,
}

// SAFETY: xdpilone's `Umem` is !Send only because it stores the raw pointer to the area; the
// area is owned by `AfXdp` next to it and every access goes through `&mut AfXdp`, so moving the
// whole set to a worker thread is sound.
unsafe impl Send for XskUmem {}

impl XskUmem {
    /// Registers `area` as a UMEM of `area.len() / frame_size` frames.
    ///
    /// # Safety
    /// `area` must be page-aligned memory that outlives this value and every socket opened on it.
    pub(super) unsafe fn new(area: NonNull<[u8]>, sizes: Sizes) -> Result<XskUmem, XskError> {
        let cfg = UmemConfig {
            fill_size: sizes.fill,
            complete_size: sizes.comp,
            frame_size: sizes.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: forwarded from the caller's contract.
        let umem = unsafe { Umem::new(cfg, area) }.map_err(step("UMEM registration"))?;
        Ok(XskUmem { umem, sizes })
    }

    /// Opens a socket on (ifindex, queue) with its own fill/completion rings. `owner` is `Some`
    /// for the first socket (the one whose fd registered the UMEM; it chooses the mode),
    /// `None` for the sockets that share it.
    pub(super) fn open(
        &self,
        ifindex: u32,
        queue: u32,
        owner: Option<Flavor>,
    ) -> Result<XskSocket, XskError> {
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(step("interface lookup"))?;
        info.set_queue(queue);
        let sock = match owner {
            Some(_) => Socket::with_shared(&info, &self.umem),
            None => Socket::new(&info),
        }
        .map_err(step("socket"))?;
        let dq = self
            .umem
            .fq_cq(&sock)
            .map_err(step("fill/completion rings"))?;
        let bind_flags = match owner {
            Some(Flavor::Copy) => SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
            Some(Flavor::ZeroCopy) => {
                SocketConfig::XDP_BIND_ZEROCOPY | SocketConfig::XDP_BIND_NEED_WAKEUP
            }
            // A shared-UMEM bind rejects every mode flag (EINVAL): it inherits the owner's.
            None => 0,
        };
        let user = self
            .umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(self.sizes.rx),
                    tx_size: NonZeroU32::new(self.sizes.tx),
                    bind_flags,
                },
            )
            .map_err(step("RX/TX rings"))?;
        let rx = user.map_rx().map_err(step("mapping the RX ring"))?;
        let tx = user.map_tx().map_err(step("mapping the TX ring"))?;
        self.umem.bind(&user).map_err(step("bind"))?;
        Ok(XskSocket {
            fd: user.as_raw_fd(),
            rx,
            tx,
            dq,
            user,
        })
    }
}

/// One bound socket: RX and TX rings plus the fill/completion pair of its (interface, queue).
pub(super) struct XskSocket {
    fd: RawFd,
    rx: RingRx,
    tx: RingTx,
    dq: DeviceQueue,
    user: User,
}

impl XskSocket {
    /// The socket's fd (for the XSKMAP and for poll).
    pub(super) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Reads up to `out.len()` received descriptors.
    pub(super) fn rx(&mut self, out: &mut [RawDesc]) -> usize {
        let max = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if max == 0 {
            return 0;
        }
        let mut r = self.rx.receive(max);
        let mut n = 0;
        for slot in out.iter_mut() {
            match r.read() {
                Some(d) => {
                    *slot = RawDesc {
                        addr: d.addr,
                        len: d.len,
                    };
                    n += 1;
                }
                None => break,
            }
        }
        r.release();
        n
    }

    /// Queues as many of `descs` as the TX ring has room for; returns how many.
    pub(super) fn tx(&mut self, descs: &[RawDesc]) -> usize {
        let mut done = 0;
        // xdpilone reserves against its cached view of the kernel's consumer and refreshes it
        // only once that view shows no room: a second reservation sees the real free space.
        while let Some(rest) = descs.get(done..).filter(|r| !r.is_empty()) {
            let want = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            let mut w = self.tx.transmit(want);
            let cap = (w.capacity() as usize).min(rest.len());
            if cap == 0 {
                break;
            }
            let it = rest.iter().take(cap).map(|d| XdpDesc {
                addr: d.addr,
                len: d.len,
                options: 0,
            });
            let n = w.insert(it) as usize;
            w.commit();
            done += n;
            if n < cap {
                break;
            }
        }
        done
    }

    /// TX descriptors committed but not yet consumed by the kernel.
    pub(super) fn tx_pending(&self) -> u32 {
        self.tx.pending()
    }

    /// Whether the kernel asked to be woken for TX (always true in copy mode).
    pub(super) fn tx_needs_wakeup(&self) -> bool {
        self.tx.needs_wakeup()
    }

    /// One `sendto` kick; in copy mode this transmits (at most 32 frames per call).
    ///
    /// Issued as a raw system call: libc's `sendto` is a thread cancellation point, and its
    /// enable/disable bookkeeping was 5.6% of the worker's cycles in the profile
    /// (bench/results/profile.md), for a call made once per transmitted copy.
    pub(super) fn kick_tx(&self) -> Result<(), i32> {
        // SAFETY: the sendto system call on our own socket fd with an empty message and no
        // address; every pointer argument is null with a zero length.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sendto,
                libc::c_long::from(self.fd),
                std::ptr::null::<libc::c_void>(),
                0usize,
                libc::c_long::from(libc::MSG_DONTWAIT),
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(())
        }
    }

    /// Puts up to `max` frames into the fill ring, taking each address from `next` only once a
    /// slot is reserved for it; returns how many went in.
    pub(super) fn fill(&mut self, max: u32, mut next: impl FnMut() -> Option<u64>) -> u32 {
        let mut done = 0;
        // Two rounds at most: the second one sees the kernel's real consumer (see `tx`).
        for _ in 0..2 {
            if done >= max {
                break;
            }
            let mut w = self.dq.fill(max - done);
            let cap = w.capacity();
            // At most `cap` items: xdpilone's `insert` never pulls an item it has no slot for.
            let n = w.insert((0..cap).map_while(|_| next()));
            w.commit();
            done += n;
            if n < cap || cap == 0 {
                break;
            }
        }
        done
    }

    /// Frames in the fill ring that the kernel has not taken yet.
    pub(super) fn fill_pending(&self) -> u32 {
        self.dq.pending()
    }

    /// Whether the kernel asked to be woken to take frames from the fill ring.
    pub(super) fn fill_needs_wakeup(&self) -> bool {
        self.dq.needs_wakeup()
    }

    /// Wakes the fill side (a zero-timeout poll on the socket).
    pub(super) fn wake_fill(&mut self) {
        self.dq.wake();
    }

    /// Reads up to `out.len()` completed TX addresses.
    pub(super) fn complete(&mut self, out: &mut [u64]) -> usize {
        let max = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if max == 0 {
            return 0;
        }
        let mut r = self.dq.complete(max);
        let mut n = 0;
        for slot in out.iter_mut() {
            match r.read() {
                Some(a) => {
                    *slot = a;
                    n += 1;
                }
                None => break,
            }
        }
        r.release();
        n
    }

    /// The kernel's statistics for this socket.
    pub(super) fn kernel_stats(&self) -> Result<KernelStats, XskError> {
        let s = self.user.statistics_v2().map_err(step("XDP_STATISTICS"))?;
        Ok(KernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}
