//! AF_XDP switch ports on one shared UMEM: the dataplane's packet I/O.
//!
//! One UMEM (a caller-sized mmap of equal frames) is shared by one socket per (port, queue): a
//! port whose NIC spreads received frames over several queues (RSS) has a socket on each of
//! them, or frames steered to an unserved queue would reach the host stack instead of being
//! switched. Each socket has its own RX ring and its own fill/completion rings (one pair per
//! (interface, queue)); a port transmits through its first socket. A received frame stays where the kernel wrote it: replicating it to N
//! ports puts the *same* UMEM frame on N TX rings, and a per-frame reference count returns it to
//! the free pool only after the last of its N completions (each read from the completion ring of
//! the device that transmitted it). Nothing is copied in userspace, nothing is allocated and no
//! lock is taken on the per-packet path: every buffer is sized at construction.
//!
//! The usage contract, per frame:
//! - [`AfXdp::rx_batch`] hands out frames with one reference: the caller's *hold*;
//! - [`AfXdp::tx`] adds a reference and stages the frame for a port (any number of ports);
//! - [`AfXdp::release`] drops the hold (exactly once per received or allocated frame);
//! - [`AfXdp::flush`] moves staged frames onto the TX rings (a full ring drops and counts, never
//!   blocks), kicks the kernel until the rings drain (copy mode sends at most 32 frames per
//!   kick), and reaps completions.
//!
//! [`AfXdp::alloc`] gives a free frame to write a frame the switch originates (queries). The
//! accounting ([`AfXdp::accounting`], [`AfXdp::audit`]) proves that no frame is lost.
//!
//! The crate-specific ring code lives in `xsk.rs` only. Sockets are created in the calling
//! thread's network namespace and stay in it; build the set from inside the switch's namespace,
//! then use it from any one thread.

mod fill;
mod mmap;
pub mod pool;
mod xsk;

use std::os::fd::{BorrowedFd, RawFd};

pub use pool::{Accounting, AuditError, PoolError};
pub use xsk::KernelStats;

use crate::portset::{PortId, PortSet};
use crate::xdp::abi::{FrameClass, META_LEN, META_MAGIC};
use fill::FillDepths;
use mmap::Area;
use pool::FramePool;
use xsk::{Flavor, RawDesc, Sizes, XskError, XskSocket, XskUmem};

/// Most descriptors one [`AfXdp::rx_batch`] returns.
pub const RX_BATCH: usize = 64;
/// Completions reaped per ring read.
const COMP_BATCH: usize = 64;
/// A fill ring is topped up once this many of its frames have been consumed.
const REFILL_THRESHOLD: u32 = 32;

/// Which AF_XDP mode to bind in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// Try zero-copy, fall back to copy if any port refuses it. The default.
    #[default]
    Auto,
    /// Copy mode only (works on every driver, e.g. veth).
    Copy,
    /// Zero-copy only (fails if a driver lacks it).
    ZeroCopy,
}

/// The mode the sockets are bound in (one per UMEM: shared sockets inherit it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundMode {
    /// The kernel copies frames between its buffers and the UMEM.
    Copy,
    /// The NIC DMAs straight into the UMEM.
    ZeroCopy,
}

/// Sizes of the UMEM and the rings; every ring size must be a power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// Frames in the UMEM.
    pub frame_count: u32,
    /// Octets per frame: a power of two from 2048 to the page size.
    pub frame_size: u32,
    /// Fill ring entries per (port, queue).
    pub fill_size: u32,
    /// Completion ring entries per (port, queue).
    pub comp_size: u32,
    /// RX ring entries per socket.
    pub rx_size: u32,
    /// TX ring entries per socket.
    pub tx_size: u32,
    /// Requested bind mode.
    pub mode: BindMode,
}

impl Default for AfXdpConfig {
    fn default() -> Self {
        AfXdpConfig {
            frame_count: 8192,
            frame_size: 2048,
            fill_size: 2048,
            comp_size: 2048,
            rx_size: 2048,
            tx_size: 2048,
            mode: BindMode::Auto,
        }
    }
}

/// One socket to open: interface index and queue (in the calling thread's namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Interface index.
    pub ifindex: u32,
    /// RX/TX queue id.
    pub queue: u32,
}

/// One switch port and the receive queues served on it: one socket per queue. The port
/// transmits through the socket of its first queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortQueues {
    /// Interface index.
    pub ifindex: u32,
    /// Queue ids to open a socket on; at least one.
    pub queues: Vec<u32>,
}

/// Why the AF_XDP ports could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// The configuration is unusable.
    #[error("AF_XDP configuration: {0}")]
    Config(String),
    /// The UMEM memory could not be mapped.
    #[error("mapping {bytes} bytes for the UMEM failed: {source}; lower frame_count or raise the memory limit")]
    Mmap {
        /// Requested size.
        bytes: usize,
        /// What mmap said.
        #[source]
        source: std::io::Error,
    },
    /// A socket step failed.
    #[error("AF_XDP {step} for ifindex {ifindex} queue {queue} failed: {errno_text}; {hint}")]
    Socket {
        /// Which step (socket, rings, bind...).
        step: &'static str,
        /// Interface.
        ifindex: u32,
        /// Queue.
        queue: u32,
        /// errno.
        errno: i32,
        /// errno as text.
        errno_text: String,
        /// What to try.
        hint: &'static str,
    },
}

impl AfXdpError {
    fn socket(e: XskError, spec: PortSpec) -> AfXdpError {
        let hint = match (e.step, e.errno) {
            (_, libc::EPERM) => "run as root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK)",
            ("UMEM registration", libc::ENOMEM) => "raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK",
            ("bind", libc::EOPNOTSUPP) => "the driver lacks zero-copy: use BindMode::Copy or Auto",
            ("bind", libc::EBUSY) => "another AF_XDP socket already owns this interface queue",
            ("bind", libc::EINVAL) => "the queue does not exist on this interface (ethtool -l)",
            ("interface lookup", _) => "no such interface in this network namespace",
            _ => "see the errno",
        };
        AfXdpError::Socket {
            step: e.step,
            ifindex: spec.ifindex,
            queue: spec.queue,
            errno: e.errno,
            errno_text: std::io::Error::from_raw_os_error(e.errno).to_string(),
            hint,
        }
    }
}

/// A frame handed out by the ports: UMEM address of its first octet and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameDesc {
    /// UMEM address (offset from the UMEM start) of the frame's first octet.
    pub addr: u64,
    /// Length in octets.
    pub len: u32,
}

/// Why a per-packet operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// No port with this index.
    #[error("no port {0}")]
    NoSuchPort(usize),
    /// The frame is not held or its descriptor is out of range.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The descriptor spills over the end of its frame.
    #[error("descriptor {addr:#x}+{len} crosses a frame boundary")]
    BadLength {
        /// Address.
        addr: u64,
        /// Length.
        len: u32,
    },
}

/// Userspace counters of one socket, or of a port's sockets summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames read from the RX ring.
    pub rx: u64,
    /// Octets of the frames read from the RX ring.
    pub rx_bytes: u64,
    /// RX descriptors that did not match a frame in a fill ring (dropped; a kernel/ring bug).
    pub rx_bad: u64,
    /// Frames placed on the TX ring.
    pub tx: u64,
    /// Octets of the frames placed on the TX ring.
    pub tx_bytes: u64,
    /// Frames dropped because the TX ring was full.
    pub tx_ring_full: u64,
    /// TX completions reaped.
    pub completions: u64,
    /// Completion addresses that did not match an in-flight frame (ignored).
    pub completions_bad: u64,
    /// `sendto` kicks.
    pub kicks: u64,
    /// Kicks that returned an error other than EAGAIN (EBUSY/ENOBUFS are transient and
    /// retried; anything else stops the kicking until the next flush).
    pub kick_errors: u64,
    /// errno of the last failed kick.
    pub last_kick_errno: i32,
    /// Kicks that moved nothing (EAGAIN with the ring as it was: the device's queue is
    /// stopped because its peer is full, as a veth's is once the receiver falls behind): the
    /// frames wait in the TX ring for the next flush instead of being kicked again at once.
    pub kick_stalls: u64,
    /// Fill-ring wakeups.
    pub fill_wakeups: u64,
    /// Times the socket's fill depth doubled (see [`AfXdp::fill_depth`]).
    pub fill_grown: u64,
}

impl PortStats {
    /// Adds `o`'s counts (the last errno: `o`'s if it has one).
    fn add(&mut self, o: &PortStats) {
        self.rx += o.rx;
        self.rx_bytes += o.rx_bytes;
        self.rx_bad += o.rx_bad;
        self.tx += o.tx;
        self.tx_bytes += o.tx_bytes;
        self.tx_ring_full += o.tx_ring_full;
        self.completions += o.completions;
        self.completions_bad += o.completions_bad;
        self.kicks += o.kicks;
        self.kick_errors += o.kick_errors;
        self.kick_stalls += o.kick_stalls;
        if o.last_kick_errno != 0 {
            self.last_kick_errno = o.last_kick_errno;
        }
        self.fill_wakeups += o.fill_wakeups;
        self.fill_grown += o.fill_grown;
    }
}

/// What the classifier put in front of a frame (bpf_xdp_adjust_meta), when it reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// The class the XDP program decided.
    pub class: FrameClass,
    /// The port slot the program looked up.
    pub slot: u16,
}

/// One AF_XDP socket: a (port, queue).
struct Port {
    spec: PortSpec,
    /// The switch port this socket belongs to.
    port: usize,
    sock: XskSocket,
    staged: Vec<RawDesc>,
    in_fill: u32,
    stats: PortStats,
    /// `stats.rx` at the last [`AfXdp::review_fill`].
    rx_at_review: u64,
}

/// The AF_XDP sockets of all switch ports on one shared UMEM, with the frame pool.
///
/// Sockets are numbered port by port, queue by queue (with one queue per port, socket `i` is
/// port `i`): [`AfXdp::rx_batch`] reads a socket, [`AfXdp::tx`] sends on a port.
pub struct AfXdp {
    // Field order is drop order: sockets before the UMEM registration before the memory.
    /// Every socket, port-major.
    ports: Vec<Port>,
    /// Per switch port: the index of its first socket (its TX socket); one more entry at the
    /// end so port `p`'s sockets are `first[p]..first[p + 1]`.
    first: Vec<usize>,
    _umem: XskUmem,
    area: Area,
    pool: FramePool,
    cfg: AfXdpConfig,
    /// How many frames each socket's fill ring is kept at (follows its traffic).
    depths: FillDepths,
    mode: BoundMode,
    comp_buf: [u64; COMP_BATCH],
    pollfds: Vec<libc::pollfd>,
}

impl std::fmt::Debug for AfXdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdp")
            .field("mode", &self.mode)
            .field(
                "ports",
                &self.ports.iter().map(|p| p.spec).collect::<Vec<_>>(),
            )
            .field("accounting", &self.pool.accounting())
            .finish_non_exhaustive()
    }
}

fn check_config(cfg: &AfXdpConfig, ports: usize) -> Result<(), AfXdpError> {
    let bad = |m: String| Err(AfXdpError::Config(m));
    // SAFETY: sysconf has no preconditions.
    let page = u32::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if !cfg.frame_size.is_power_of_two() || cfg.frame_size < 2048 || cfg.frame_size > page {
        return bad(format!(
            "frame_size {} must be a power of two in 2048..={page}",
            cfg.frame_size
        ));
    }
    for (name, v) in [
        ("fill_size", cfg.fill_size),
        ("comp_size", cfg.comp_size),
        ("rx_size", cfg.rx_size),
        ("tx_size", cfg.tx_size),
    ] {
        if !v.is_power_of_two() {
            return bad(format!("{name} {v} must be a power of two"));
        }
    }
    if cfg.frame_count == 0 {
        return bad("frame_count must be positive".into());
    }
    if ports == 0 {
        return bad("no ports".into());
    }
    if u64::from(cfg.frame_count) * u64::from(cfg.frame_size) > isize::MAX as u64 {
        return bad("UMEM too large".into());
    }
    let target = fill::floor(cfg.frame_count, cfg.fill_size, ports);
    if target < MIN_FILL {
        return bad(format!(
            "{} frames leave only {target} per fill ring for {ports} sockets (need {MIN_FILL}): raise frame_count",
            cfg.frame_count
        ));
    }
    Ok(())
}

/// Fewest frames a port's fill ring may start with.
const MIN_FILL: u32 = 64;

impl AfXdp {
    /// Maps the UMEM and opens one socket per entry of `ports` (port index = position, one
    /// queue each), binding in the requested mode ([`BindMode::Auto`]: zero-copy if every port
    /// supports it, copy otherwise). Fill rings are primed from the pool.
    pub fn new(cfg: AfXdpConfig, ports: &[PortSpec]) -> Result<AfXdp, AfXdpError> {
        let ports: Vec<PortQueues> = ports
            .iter()
            .map(|s| PortQueues {
                ifindex: s.ifindex,
                queues: vec![s.queue],
            })
            .collect();
        Self::with_queues(cfg, &ports)
    }

    /// Like [`AfXdp::new`], with a socket on each listed queue of every port.
    pub fn with_queues(cfg: AfXdpConfig, ports: &[PortQueues]) -> Result<AfXdp, AfXdpError> {
        let mut first = Vec::with_capacity(ports.len() + 1);
        let mut specs = Vec::new();
        let mut owner = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            if p.queues.is_empty() {
                return Err(AfXdpError::Config(format!(
                    "port {i} (ifindex {}) has no queue to serve",
                    p.ifindex
                )));
            }
            first.push(specs.len());
            for &queue in &p.queues {
                specs.push(PortSpec {
                    ifindex: p.ifindex,
                    queue,
                });
                owner.push(i);
            }
        }
        first.push(specs.len());
        let ports = specs.as_slice();
        check_config(&cfg, ports.len())?;
        let ports_len = ports.len();
        let bytes = cfg.frame_count as usize * cfg.frame_size as usize;
        let area = Area::new(bytes).map_err(|source| AfXdpError::Mmap { bytes, source })?;
        let sizes = Sizes {
            frame_size: cfg.frame_size,
            fill: cfg.fill_size,
            comp: cfg.comp_size,
            rx: cfg.rx_size,
            tx: cfg.tx_size,
        };
        let (umem, socks, mode) = match cfg.mode {
            BindMode::Copy => Self::open_all(&area, sizes, ports, Flavor::Copy)?,
            BindMode::ZeroCopy => Self::open_all(&area, sizes, ports, Flavor::ZeroCopy)?,
            BindMode::Auto => match Self::open_all(&area, sizes, ports, Flavor::ZeroCopy) {
                Ok(r) => r,
                // Everything opened so far is dropped; the memory is registered again.
                Err(_) => Self::open_all(&area, sizes, ports, Flavor::Copy)?,
            },
        };
        let ports = socks
            .into_iter()
            .zip(ports)
            .zip(owner)
            .map(|((sock, &spec), port)| Port {
                spec,
                port,
                sock,
                staged: Vec::with_capacity(cfg.tx_size as usize),
                in_fill: 0,
                stats: PortStats::default(),
                rx_at_review: 0,
            })
            .collect::<Vec<_>>();
        let pollfds = ports
            .iter()
            .map(|p| libc::pollfd {
                fd: p.sock.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut me = AfXdp {
            ports,
            first,
            _umem: umem,
            area,
            pool: FramePool::new(cfg.frame_count, cfg.frame_size),
            depths: FillDepths::new(cfg.frame_count, cfg.fill_size, ports_len),
            cfg,
            mode,
            comp_buf: [0; COMP_BATCH],
            pollfds,
        };
        me.refill_all();
        Ok(me)
    }

    fn open_all(
        area: &Area,
        sizes: Sizes,
        specs: &[PortSpec],
        flavor: Flavor,
    ) -> Result<(XskUmem, Vec<XskSocket>, BoundMode), AfXdpError> {
        let first = specs
            .first()
            .copied()
            .ok_or_else(|| AfXdpError::Config("no ports".into()))?;
        // SAFETY: `area` is a page-aligned mapping owned by the `AfXdp` that will own the UMEM
        // and the sockets; its field order drops them before the area.
        let umem = unsafe { XskUmem::new(area.as_raw(), sizes) }
            .map_err(|e| AfXdpError::socket(e, first))?;
        let mut socks = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let owner = (i == 0).then_some(flavor);
            let s = umem
                .open(spec.ifindex, spec.queue, owner)
                .map_err(|e| AfXdpError::socket(e, *spec))?;
            socks.push(s);
        }
        let mode = match flavor {
            Flavor::Copy => BoundMode::Copy,
            Flavor::ZeroCopy => BoundMode::ZeroCopy,
        };
        Ok((umem, socks, mode))
    }

    /// The mode the sockets were bound in.
    pub fn mode(&self) -> BoundMode {
        self.mode
    }

    /// The configuration in force.
    pub fn config(&self) -> &AfXdpConfig {
        &self.cfg
    }

    /// Number of switch ports.
    pub fn port_count(&self) -> usize {
        self.first.len().saturating_sub(1)
    }

    /// Number of sockets (one per served (port, queue)).
    pub fn socket_count(&self) -> usize {
        self.ports.len()
    }

    /// The switch port socket `socket` receives for.
    pub fn socket_port(&self, socket: usize) -> Option<usize> {
        self.ports.get(socket).map(|p| p.port)
    }

    /// The sockets of switch port `port`.
    fn sockets_of(&self, port: usize) -> std::ops::Range<usize> {
        match (self.first.get(port), self.first.get(port + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        }
    }

    /// The (interface, queue) of socket `socket`.
    pub fn port_spec(&self, socket: usize) -> Option<PortSpec> {
        self.ports.get(socket).map(|p| p.spec)
    }

    /// Socket `socket`, to install in the classifier's XSKMAP under its (port, queue).
    pub fn socket_fd(&self, socket: usize) -> Option<BorrowedFd<'_>> {
        let fd: RawFd = self.ports.get(socket)?.sock.fd();
        // SAFETY: the fd belongs to a socket owned by `self`, which outlives the borrow.
        Some(unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// Userspace counters of switch port `port`, summed over its sockets.
    pub fn stats(&self, port: usize) -> Option<PortStats> {
        let range = self.sockets_of(port);
        if range.is_empty() {
            return None;
        }
        let mut sum = PortStats::default();
        for p in self.ports.get(range)? {
            sum.add(&p.stats);
        }
        Some(sum)
    }

    /// Userspace counters of socket `socket` alone.
    pub fn socket_stats(&self, socket: usize) -> Option<PortStats> {
        self.ports.get(socket).map(|p| p.stats)
    }

    /// The kernel's counters of switch port `port`'s sockets (drops the kernel saw), summed.
    pub fn kernel_stats(&self, port: usize) -> Option<Result<KernelStats, AfXdpError>> {
        let range = self.sockets_of(port);
        if range.is_empty() {
            return None;
        }
        let mut sum = KernelStats::default();
        for p in self.ports.get(range)? {
            match p.sock.kernel_stats() {
                Ok(k) => sum.add(&k),
                Err(e) => return Some(Err(AfXdpError::socket(e, p.spec))),
            }
        }
        Some(Ok(sum))
    }

    /// Where the frames are now (running counters).
    pub fn accounting(&self) -> Accounting {
        self.pool.accounting()
    }

    /// Frames socket `socket`'s fill ring is topped up to now: it starts at
    /// [`AfXdp::fill_floor`], doubles (up to `fill_size`) while the kernel runs short under a
    /// backlog, and halves at [`AfXdp::review_fill`] when the socket receives little; all of
    /// them together stay within half the pool, the rest is for frames in flight.
    pub fn fill_depth(&self, socket: usize) -> Option<u32> {
        (socket < self.ports.len()).then(|| self.depths.depth(socket))
    }

    /// The fill depth every socket starts at: 256 frames, or less when the pool is small for
    /// the number of sockets.
    pub fn fill_floor(&self) -> u32 {
        self.depths.floor()
    }

    /// Shrinks the fill depth of the sockets that received little since the last call (see
    /// [`AfXdp::fill_depth`]); call it a few times a second. Cheap: no system call.
    pub fn review_fill(&mut self) {
        for (s, p) in self.ports.iter_mut().enumerate() {
            self.depths
                .review(s, p.stats.rx.saturating_sub(p.rx_at_review));
            p.rx_at_review = p.stats.rx;
        }
    }

    /// Frames socket `socket`'s fill ring holds.
    pub fn in_fill(&self, socket: usize) -> Option<u32> {
        self.ports.get(socket).map(|p| p.in_fill)
    }

    /// Recomputes the accounting from every frame's state and checks it against the counters
    /// and the per-port fill counts. Slow: for tests and diagnostics.
    pub fn audit(&self) -> Result<Accounting, AuditError> {
        let acc = self.pool.audit()?;
        let per_port: u64 = self.ports.iter().map(|p| u64::from(p.in_fill)).sum();
        if per_port != u64::from(acc.in_fill) {
            return Err(AuditError(format!(
                "ports claim {per_port} frames in fill rings, the pool {}",
                acc.in_fill
            )));
        }
        Ok(acc)
    }

    /// Tops up every port's fill ring from the free pool.
    pub fn refill_all(&mut self) {
        for i in 0..self.ports.len() {
            self.refill(i, true, false);
        }
    }

    /// Tops up socket `port`'s fill ring to its depth (once it is [`REFILL_THRESHOLD`] short,
    /// unless `force`). `backlog`: the last read left frames in its RX ring; if the kernel is
    /// then down to less than half its depth, the depth grows first.
    fn refill(&mut self, port: usize, force: bool, backlog: bool) {
        let AfXdp {
            ports,
            pool,
            depths,
            ..
        } = self;
        let Some(p) = ports.get_mut(port) else {
            return;
        };
        if backlog && p.sock.fill_pending() < depths.depth(port) / 2 && depths.grow(port) {
            p.stats.fill_grown += 1;
        }
        let want = depths.depth(port).saturating_sub(p.in_fill);
        if want == 0 || (!force && want < REFILL_THRESHOLD) {
            return;
        }
        let n = p
            .sock
            .fill(want, || pool.take_for_fill().map(|i| pool.addr_of(i)));
        p.in_fill += n;
        if p.sock.fill_needs_wakeup() {
            p.sock.wake_fill();
            p.stats.fill_wakeups += 1;
        }
    }

    /// Reads up to `out.len()` (at most [`RX_BATCH`]) frames received on socket `port` (its
    /// switch port is [`AfXdp::socket_port`]). Each returned frame carries one reference, the
    /// caller's hold: pass it to [`AfXdp::tx`] for every destination, then
    /// [`AfXdp::release`] it once. The socket's fill ring is topped up.
    pub fn rx_batch(&mut self, port: usize, out: &mut [FrameDesc]) -> usize {
        let mut raw = [RawDesc::default(); RX_BATCH];
        let want = out.len().min(RX_BATCH);
        let AfXdp { ports, pool, .. } = self;
        let Some(p) = ports.get_mut(port) else {
            return 0;
        };
        let got = p.sock.rx(raw.get_mut(..want).unwrap_or(&mut []));
        let mut n = 0;
        for d in raw.iter().take(got) {
            match pool.received(d.addr) {
                Ok(_) => {
                    p.in_fill = p.in_fill.saturating_sub(1);
                    if !pool.fits(d.addr, d.len) {
                        p.stats.rx_bad += 1;
                        let _ = pool.release(d.addr);
                        continue;
                    }
                    if let Some(slot) = out.get_mut(n) {
                        *slot = FrameDesc {
                            addr: d.addr,
                            len: d.len,
                        };
                        n += 1;
                        p.stats.rx_bytes += u64::from(d.len);
                    }
                }
                Err(_) => p.stats.rx_bad += 1,
            }
        }
        p.stats.rx += n as u64;
        // A read that filled its batch may have left more behind.
        self.refill(port, false, want > 0 && got == want);
        n
    }

    /// Stages held frame `frame` for transmission on switch port `port` (through its first
    /// socket), adding a reference that its completion (or a drop) gives back. Staged frames
    /// go to the ring at the next [`AfXdp::flush`] (or now, if the staging area is full).
    pub fn tx(&mut self, port: usize, frame: FrameDesc) -> Result<(), TxError> {
        // One port is a set of one: the same checks, reference and staging as a replication.
        match PortId::try_from(port).map(PortSet::single) {
            Ok(one) if !one.is_empty() => self.tx_each(one, frame).map(|_| ()),
            // A port no PortSet can hold is no port of ours (the descriptor is judged first,
            // as for any other port).
            _ if !self.pool.fits(frame.addr, frame.len) => Err(TxError::BadLength {
                addr: frame.addr,
                len: frame.len,
            }),
            _ => Err(TxError::NoSuchPort(port)),
        }
    }

    /// Puts a descriptor of `frame` (its reference already taken) in socket `sock`'s staging
    /// area, flushing that socket first if the area is full; `false` if there is no such socket.
    fn stage(&mut self, sock: usize, frame: FrameDesc) -> bool {
        let tx_size = self.cfg.tx_size as usize;
        if self
            .ports
            .get(sock)
            .is_some_and(|p| p.staged.len() >= tx_size)
        {
            self.flush_port(sock);
        }
        let Some(p) = self.ports.get_mut(sock) else {
            return false;
        };
        // Capacity is tx_size and the area was flushed when full: no reallocation.
        p.staged.push(RawDesc {
            addr: frame.addr,
            len: frame.len,
        });
        true
    }

    /// Stages held frame `frame` on every port in `ports`, as [`AfXdp::tx`] once per port would,
    /// but with the descriptor checked once and the references taken together: replicating a
    /// frame is the hot path, and these checks were paid per copy. All ports or none: returns
    /// how many copies were staged, or the error that staged none.
    pub fn tx_each(&mut self, ports: PortSet, frame: FrameDesc) -> Result<usize, TxError> {
        if !self.pool.fits(frame.addr, frame.len) {
            return Err(TxError::BadLength {
                addr: frame.addr,
                len: frame.len,
            });
        }
        if let Some(p) = ports.iter().find(|&p| usize::from(p) >= self.port_count()) {
            return Err(TxError::NoSuchPort(usize::from(p)));
        }
        let copies = ports.len();
        self.pool
            .retain_n(frame.addr, u16::try_from(copies).unwrap_or(u16::MAX))?;
        for port in ports.iter() {
            let sock = self.first.get(usize::from(port)).copied();
            if !sock.is_some_and(|sock| self.stage(sock, frame)) {
                // Not reached (every port was checked above); the reference goes back anyway.
                let _ = self.pool.release(frame.addr);
            }
        }
        Ok(copies)
    }

    /// Drops the caller's hold on `frame` (from [`AfXdp::rx_batch`] or [`AfXdp::alloc`]).
    pub fn release(&mut self, frame: FrameDesc) -> Result<(), PoolError> {
        self.pool.release(frame.addr).map(|_| ())
    }

    /// Takes a free frame for the caller to write a frame of its own (e.g. a query); `len` is
    /// the whole frame. Write it through [`AfXdp::frame_mut`], set `len`, [`AfXdp::tx`] it, and
    /// [`AfXdp::release`] it. `None` when the pool is empty.
    pub fn alloc(&mut self) -> Option<FrameDesc> {
        let idx = self.pool.alloc()?;
        Some(FrameDesc {
            addr: self.pool.addr_of(idx),
            len: self.cfg.frame_size,
        })
    }

    /// The bytes of a held frame.
    pub fn frame(&self, frame: FrameDesc) -> Option<&[u8]> {
        if !self.pool.fits(frame.addr, frame.len) {
            return None;
        }
        self.area
            .get(usize::try_from(frame.addr).ok()?, frame.len as usize)
    }

    /// The bytes of a held frame, writable (to build or rewrite a frame before TX).
    pub fn frame_mut(&mut self, frame: FrameDesc) -> Option<&mut [u8]> {
        if !self.pool.fits(frame.addr, frame.len) {
            return None;
        }
        self.area
            .get_mut(usize::try_from(frame.addr).ok()?, frame.len as usize)
    }

    /// The classifier's metadata in front of a received frame, if it reached userspace (the
    /// program writes it with bpf_xdp_adjust_meta; whether the kernel copies it depends on
    /// the mode and kernel).
    pub fn rx_meta(&self, frame: FrameDesc) -> Option<RxMeta> {
        let off = self.pool.offset_in_frame(frame.addr);
        if off < META_LEN as u64 {
            return None;
        }
        let start = usize::try_from(frame.addr - META_LEN as u64).ok()?;
        let m = self.area.get(start, META_LEN)?;
        let magic = u32::from_ne_bytes([*m.first()?, *m.get(1)?, *m.get(2)?, *m.get(3)?]);
        if magic != META_MAGIC {
            return None;
        }
        let class = u16::from_ne_bytes([*m.get(4)?, *m.get(5)?]);
        let slot = u16::from_ne_bytes([*m.get(6)?, *m.get(7)?]);
        Some(RxMeta {
            class: FrameClass::from_index(class)?,
            slot,
        })
    }

    /// Moves every socket's staged frames onto its TX ring (a full ring drops the rest and counts
    /// them in `tx_ring_full`), kicks the kernel while the rings drain, and reaps completions.
    /// Returns whether anything moved: a frame onto a ring, out of one (sent, or dropped by
    /// the device), or back from a completion ring. A caller whose frames are all stuck (every
    /// device refusing) may sleep a little rather than spin on kicks that cannot succeed.
    pub fn flush(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.ports.len() {
            moved |= self.flush_port(i);
        }
        moved | (self.reap_all() > 0)
    }

    fn flush_port(&mut self, port: usize) -> bool {
        let AfXdp { ports, pool, .. } = self;
        let Some(p) = ports.get_mut(port) else {
            return false;
        };
        let mut moved = false;
        if !p.staged.is_empty() {
            let sent = p.sock.tx(&p.staged);
            for d in p.staged.iter().skip(sent) {
                // The TX ring is full: drop, give back the reference taken in tx().
                let _ = pool.release(d.addr);
                p.stats.tx_ring_full += 1;
            }
            p.stats.tx += sent as u64;
            p.stats.tx_bytes += p
                .staged
                .iter()
                .take(sent)
                .map(|d| u64::from(d.len))
                .sum::<u64>();
            p.staged.clear();
            moved = sent > 0;
        }
        self.kick(port) | moved
    }

    /// Kicks port `port` while its TX ring drains (copy mode transmits inside `sendto`, at most
    /// 32 frames per call), reaping completions in between so a full completion ring cannot
    /// stall the kicks. It stops at the first kick that moved nothing and freed no completion
    /// (the kernel's TX path does the same for xdpsock): the device's queue is stopped, and
    /// kicking again at once only burns the CPU that the device's peer needs to drain it (on
    /// veth, measured: 89% of the worker's kicks were such EAGAINs when receivers fell behind).
    /// Returns whether any frame left the ring or completed.
    fn kick(&mut self, port: usize) -> bool {
        let max_rounds = self.cfg.tx_size / 16 + 8;
        let zero_copy = self.mode == BoundMode::ZeroCopy;
        let mut moved = false;
        for _ in 0..max_rounds {
            let Some(p) = self.ports.get_mut(port) else {
                return moved;
            };
            let before = p.sock.tx_pending();
            if before == 0 {
                return moved;
            }
            if zero_copy && !p.sock.tx_needs_wakeup() {
                return moved;
            }
            p.stats.kicks += 1;
            match p.sock.kick_tx() {
                // EAGAIN: the kernel sent its batch, or the device was busy, or the completion
                // ring was full; more is pending.
                Ok(()) | Err(libc::EAGAIN) => {}
                Err(errno) => {
                    // EBUSY: the device dropped a frame (it left the ring); ENOBUFS: no skb.
                    p.stats.kick_errors += 1;
                    p.stats.last_kick_errno = errno;
                    if !matches!(errno, libc::EBUSY | libc::ENOBUFS) {
                        return moved;
                    }
                }
            }
            let sent = p.sock.tx_pending() < before;
            let reaped = self.reap(port) > 0;
            moved |= sent | reaped;
            if zero_copy {
                // The driver transmits asynchronously: one wakeup is enough.
                return moved;
            }
            if !sent && !reaped {
                if let Some(p) = self.ports.get_mut(port) {
                    p.stats.kick_stalls += 1;
                }
                return moved;
            }
        }
        moved
    }

    /// Reaps the completion rings of every socket; returns how many frames completed.
    pub fn reap_all(&mut self) -> usize {
        (0..self.ports.len()).map(|i| self.reap(i)).sum()
    }

    fn reap(&mut self, port: usize) -> usize {
        let AfXdp {
            ports,
            pool,
            comp_buf,
            ..
        } = self;
        let Some(p) = ports.get_mut(port) else {
            return 0;
        };
        let mut total = 0;
        loop {
            let n = p.sock.complete(comp_buf);
            total += n;
            for &addr in comp_buf.iter().take(n) {
                match pool.release(addr) {
                    Ok(_) => p.stats.completions += 1,
                    Err(_) => p.stats.completions_bad += 1,
                }
            }
            if n < COMP_BATCH {
                break;
            }
        }
        total
    }

    /// Frames staged or committed to TX rings but not completed yet, over all sockets.
    pub fn tx_outstanding(&self) -> u64 {
        self.ports
            .iter()
            .map(|p| p.staged.len() as u64 + u64::from(p.sock.tx_pending()))
            .sum()
    }

    /// Makes [`AfXdp::wait_rx`] also return when `fd` becomes readable (a doorbell the
    /// worker's other inputs ring, so an idle worker sleeps in one `poll` on everything that
    /// can give it work). The caller keeps `fd` open for as long as it calls `wait_rx`.
    pub fn wake_on(&mut self, fd: std::os::fd::RawFd) {
        self.pollfds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }

    /// Waits up to `timeout_ms` for any socket to have received frames (or a descriptor given
    /// to [`AfXdp::wake_on`] to be readable); returns whether one has.
    pub fn wait_rx(&mut self, timeout_ms: i32) -> bool {
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        let n = self.pollfds.len() as libc::nfds_t;
        // SAFETY: `pollfds` is a valid array of `n` pollfd structs owned by self.
        let rc = unsafe { libc::poll(self.pollfds.as_mut_ptr(), n, timeout_ms) };
        rc > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_must_leave_every_fill_ring_a_useful_share() {
        let cfg = AfXdpConfig::default();
        // 8 ports: 8192 / 9 frames each would do.
        assert!(check_config(&cfg, 8).is_ok());
        assert!(check_config(&cfg, 127).is_ok());
        // 200 ports would leave 40 frames per ring: refused with the reason.
        let err = check_config(&cfg, 200).unwrap_err().to_string();
        assert!(err.contains("raise frame_count"), "{err}");
    }

    #[test]
    fn config_checks_name_the_bad_field() {
        let base = AfXdpConfig::default();
        for (cfg, field) in [
            (
                AfXdpConfig {
                    frame_size: 3000,
                    ..base
                },
                "frame_size",
            ),
            (
                AfXdpConfig {
                    frame_size: 1024,
                    ..base
                },
                "frame_size",
            ),
            (
                AfXdpConfig {
                    tx_size: 1000,
                    ..base
                },
                "tx_size",
            ),
            (
                AfXdpConfig {
                    fill_size: 0,
                    ..base
                },
                "fill_size",
            ),
            (
                AfXdpConfig {
                    frame_count: 0,
                    ..base
                },
                "frame_count",
            ),
        ] {
            let err = check_config(&cfg, 2).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        assert!(check_config(&base, 0).is_err());
    }

    #[test]
    fn descriptors_must_stay_inside_their_frame() {
        let fits = |addr: u64, len: u32, size: u32| FramePool::new(1, size).fits(addr, len);
        assert!(fits(0, 2048, 2048));
        assert!(fits(2048 + 256, 1792, 2048));
        assert!(!fits(2048 + 256, 1793, 2048));
        assert!(!fits(u64::MAX, u32::MAX, 2048));
        // A size that is not a power of two (refused by check_config) is still exact.
        assert!(fits(3000 + 100, 2900, 3000));
        assert!(!fits(3000 + 100, 2901, 3000));
        assert!(
            !fits(2048 + 100, 1000, 3000),
            "2148 is not a frame start of 3000"
        );
    }
}
