//! The XDP classifier on every switch port, and its loader.
//!
//! Every frame that arrives on a switch port is classified in the kernel (`ebpf/xsnoop.bpf.c`),
//! counted per port and class, and redirected into the port's AF_XDP socket (see
//! [`crate::afxdp`]), where the userspace dataplane forwards it. This module loads the embedded
//! object with aya, attaches it to interfaces through a bpf_link (so a process that dies leaves no
//! program behind), and fills the program's maps: which interface is which port slot, which socket
//! serves (slot, queue). It also reads the per-CPU counters back, summed.
//!
//! Everything here resolves interface names in the calling thread's network namespace: create
//! the [`Classifier`] and attach from inside the switch's namespace.

pub mod abi;
pub mod probe;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use aya::maps::xdp::DevMapHash;
use aya::maps::{
    Array, ArrayOfMaps, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap,
    XskMap,
};
use aya::programs::{ProgramError, ProgramFd, Xdp, XdpMode};
use aya::{Ebpf, EbpfError};

pub use abi::FrameClass;
use abi::{
    FpCount, FpFdbKey, FpFdbVal, FpKey, FpPort, FpVlan, CTR_FAST, CTR_FAST_DROP, CTR_REDIRECTED,
    CTR_REDIRECT_FAIL, MAX_QUEUES, MAX_SLOTS, NUM_CLASSES, SLOT_STRIDE,
};

/// The compiled classifier (clang -target bpf, built by `dataplane/build.rs`), embedded so the
/// binary runs the exact program it was built and tested with.
pub static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsnoop.bpf.o"));

/// Helper XDP programs for rate probes (`ebpf/xsnoop_probe.bpf.c`): `probe_tx` (XDP_TX, for a
/// BPF_PROG_RUN live-frames generator), `probe_count` (count in `probe_counts`, drop) and
/// `probe_pass`. Never attached to switch ports; tests and benchmarks load it with aya.
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsnoop_probe.bpf.o"));

/// Why loading, attaching or programming the classifier failed. Every variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The kernel refused the object or the program (verifier, missing BPF support, no
    /// privilege).
    #[error("loading the XDP classifier failed: {0}; run as root (CAP_BPF + CAP_NET_ADMIN) on a kernel with BPF and XDP")]
    Load(#[source] Box<EbpfError>),
    /// The embedded object lacks a program or map this code expects (object and abi.rs differ).
    #[error("the XDP object has no {0}; rebuild: ebpf/xsnoop.bpf.c and dataplane/src/xdp/abi.rs disagree")]
    Missing(&'static str),
    /// The program could not be prepared (wrong type, load failure).
    #[error("preparing the XDP program failed: {0}; check the kernel log and the verifier output")]
    Program(#[source] Box<ProgramError>),
    /// Attaching to an interface failed.
    #[error("attaching XDP to {ifname} in {mode:?} mode failed: {source}; {hint}")]
    Attach {
        /// Interface name.
        ifname: String,
        /// Requested mode.
        mode: AttachMode,
        /// What the kernel said.
        #[source]
        source: Box<ProgramError>,
        /// What to try.
        hint: &'static str,
    },
    /// Detaching failed or the interface was not attached by this classifier.
    #[error("detaching XDP from {0} failed: not attached by this classifier")]
    NotAttached(String),
    /// A map update or lookup failed.
    #[error("XDP map {map}: {source}; is the program still loaded?")]
    Map {
        /// Map name.
        map: &'static str,
        /// What aya/kernel said.
        #[source]
        source: Box<MapError>,
    },
    /// A port slot outside `0..MAX_SLOTS`.
    #[error("port slot {0} out of range (the classifier has {MAX_SLOTS} slots)")]
    SlotOutOfRange(u32),
    /// A queue outside `0..MAX_QUEUES`.
    #[error("queue {0} out of range (the classifier serves queues 0..{MAX_QUEUES}); reduce the port's channels (ethtool -L)")]
    QueueOutOfRange(u32),
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> XdpError {
    move |e| XdpError::Map {
        map,
        source: Box::new(e),
    }
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) XDP: fastest, needed for zero-copy AF_XDP. The default.
    Native,
    /// Generic (skb) XDP: works on every interface, slower; for drivers without XDP support.
    Skb,
    /// Native, and generic if the driver refuses native.
    NativeOrSkb,
}

/// Counters of one port, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames per class, indexed by [`FrameClass::index`].
    pub by_class: [u64; NUM_CLASSES],
    /// Frames handed to an AF_XDP socket.
    pub redirected: u64,
    /// Frames with no socket for their (slot, queue), or whose redirect was refused; they went to
    /// the kernel stack instead.
    pub redirect_failed: u64,
    /// Frames the in-kernel fast path replicated itself (never seen by userspace).
    pub fast_path: u64,
    /// Fast-path frames dropped because their VLAN had no egress map (should stay 0).
    pub fast_path_dropped: u64,
}

/// The fast path's maps and egress programs, taken out of a loaded [`Classifier`] by
/// [`Classifier::take_fast_path_maps`] so that `crate::fastpath::FastPath` can own them while
/// the classifier keeps the program and its links. The kernel keeps every map alive as long as
/// the program or this struct refers to it.
pub struct FastPathMaps {
    /// `fp_ports`: slot → VLAN classification.
    pub ports: Array<MapData, FpPort>,
    /// `fp_vlans`: VID → fast-path flags and member bitmap.
    pub vlans: Array<MapData, FpVlan>,
    /// `fp_groups`: (VLAN, kind, group, source) → replication-list id.
    pub groups: BpfHashMap<MapData, FpKey, u32>,
    /// `fp_lists`: list id → inner devmap of the egress ports (ARRAY_OF_MAPS).
    pub lists: ArrayOfMaps<MapData, DevMapHash<MapData>>,
    /// A second descriptor of `fp_lists`, for the batch system calls aya does not wrap.
    pub lists_fd: OwnedFd,
    /// `fp_fdb`: learned stations, written by userspace, `seen_ns` refreshed by the kernel.
    pub fdb: BpfHashMap<MapData, FpFdbKey, FpFdbVal>,
    /// `fp_unicast`: (VLAN, port) → the port, with its egress program.
    pub unicast: DevMapHash<MapData>,
    /// `fp_flows`: per-CPU (VLAN, S, G) packet and byte counters (LRU-bounded).
    pub flows: PerCpuHashMap<MapData, FpKey, FpCount>,
    /// The loaded `xsnoop_egress_tag` devmap program (pushes the VLAN tag).
    pub egress_tag: ProgramFd,
    /// The loaded `xsnoop_egress_untagged` devmap program (only strips the metadata).
    pub egress_untagged: ProgramFd,
}

impl std::fmt::Debug for FastPathMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPathMaps").finish_non_exhaustive()
    }
}

impl PortCounters {
    /// Frames counted in class `c`.
    pub fn class(&self, c: FrameClass) -> u64 {
        self.by_class.get(c.index()).copied().unwrap_or(0)
    }

    /// Frames seen (sum over classes).
    pub fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }
}

/// The loaded classifier: the program, its maps, and the interfaces it is attached to.
/// Dropping it detaches every link and unloads the program.
pub struct Classifier {
    // Field order is drop order: maps and links go before the object that owns the program.
    ports: BpfHashMap<MapData, u32, u32>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    links: HashMap<String, (aya::programs::xdp::XdpLinkId, AttachMode)>,
    ebpf: Ebpf,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("attached", &self.links.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// Loads the embedded classifier into the kernel (not attached anywhere yet).
    pub fn load() -> Result<Classifier, XdpError> {
        Self::load_object(PROGRAM_OBJECT)
    }

    /// Loads a classifier from object bytes (tests and experiments; the switch uses
    /// [`Classifier::load`]).
    pub fn load_object(object: &[u8]) -> Result<Classifier, XdpError> {
        let mut ebpf = Ebpf::load(object).map_err(|e| XdpError::Load(Box::new(e)))?;
        let prog: &mut Xdp = ebpf
            .program_mut(abi::PROGRAM)
            .ok_or(XdpError::Missing("program xsnoop_port"))?
            .try_into()
            .map_err(|e| XdpError::Program(Box::new(e)))?;
        prog.load().map_err(|e| XdpError::Program(Box::new(e)))?;
        // The fast path's devmap egress programs (SEC("xdp/devmap"): aya loads them with the
        // BPF_XDP_DEVMAP attach type). Loaded always, so the object is verified as a whole.
        for name in [abi::PROG_EGRESS_TAG, abi::PROG_EGRESS_UNTAGGED] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(XdpError::Missing("a devmap egress program"))?
                .try_into()
                .map_err(|e| XdpError::Program(Box::new(e)))?;
            p.load().map_err(|e| XdpError::Program(Box::new(e)))?;
        }
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(XdpError::Missing(name))
        };
        let ports = BpfHashMap::try_from(take(&mut ebpf, abi::MAP_PORTS)?)
            .map_err(map_err(abi::MAP_PORTS))?;
        let xsks =
            XskMap::try_from(take(&mut ebpf, abi::MAP_XSKS)?).map_err(map_err(abi::MAP_XSKS))?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, abi::MAP_COUNTERS)?)
            .map_err(map_err(abi::MAP_COUNTERS))?;
        Ok(Classifier {
            ports,
            xsks,
            counters,
            links: HashMap::new(),
            ebpf,
        })
    }

    /// Takes the fast path's maps and egress programs out of the loaded object (once; a second
    /// call fails with [`XdpError::Missing`]). Until something writes `fp_vlans`, every VLAN's
    /// fast path is off and the program behaves exactly as without them.
    pub fn take_fast_path_maps(&mut self) -> Result<FastPathMaps, XdpError> {
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(XdpError::Missing(name))
        };
        let ports = Array::try_from(take(&mut self.ebpf, abi::MAP_FP_PORTS)?)
            .map_err(map_err(abi::MAP_FP_PORTS))?;
        let vlans = Array::try_from(take(&mut self.ebpf, abi::MAP_FP_VLANS)?)
            .map_err(map_err(abi::MAP_FP_VLANS))?;
        let groups = BpfHashMap::try_from(take(&mut self.ebpf, abi::MAP_FP_GROUPS)?)
            .map_err(map_err(abi::MAP_FP_GROUPS))?;
        let lists_map = take(&mut self.ebpf, abi::MAP_FP_LISTS)?;
        let lists_fd = match &lists_map {
            Map::ArrayOfMaps(md) => md
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| map_err(abi::MAP_FP_LISTS)(MapError::IoError(e)))?,
            _ => return Err(XdpError::Missing(abi::MAP_FP_LISTS)),
        };
        let lists = ArrayOfMaps::try_from(lists_map).map_err(map_err(abi::MAP_FP_LISTS))?;
        let fdb = BpfHashMap::try_from(take(&mut self.ebpf, abi::MAP_FP_FDB)?)
            .map_err(map_err(abi::MAP_FP_FDB))?;
        let unicast = DevMapHash::try_from(take(&mut self.ebpf, abi::MAP_FP_UNICAST)?)
            .map_err(map_err(abi::MAP_FP_UNICAST))?;
        let flows = PerCpuHashMap::try_from(take(&mut self.ebpf, abi::MAP_FP_FLOWS)?)
            .map_err(map_err(abi::MAP_FP_FLOWS))?;
        let egress_tag = self.program_fd(abi::PROG_EGRESS_TAG)?;
        let egress_untagged = self.program_fd(abi::PROG_EGRESS_UNTAGGED)?;
        Ok(FastPathMaps {
            ports,
            vlans,
            groups,
            lists,
            lists_fd,
            fdb,
            unicast,
            flows,
            egress_tag,
            egress_untagged,
        })
    }

    fn program_fd(&mut self, name: &'static str) -> Result<ProgramFd, XdpError> {
        let p: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(XdpError::Missing("a devmap egress program"))?
            .try_into()
            .map_err(|e| XdpError::Program(Box::new(e)))?;
        p.fd()
            .map_err(|e| XdpError::Program(Box::new(e)))?
            .try_clone()
            .map_err(|e| XdpError::Program(Box::new(ProgramError::IOError(e))))
    }

    fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        self.ebpf
            .program_mut(abi::PROGRAM)
            .ok_or(XdpError::Missing("program xsnoop_port"))?
            .try_into()
            .map_err(|e| XdpError::Program(Box::new(e)))
    }

    /// Attaches the classifier to interface `ifname` (in the caller's namespace) and returns the
    /// mode that took. The attachment is a bpf_link owned by this process: it goes away with the
    /// classifier or the process, never lingering on the interface.
    pub fn attach(&mut self, ifname: &str, mode: AttachMode) -> Result<AttachMode, XdpError> {
        if self.links.contains_key(ifname) {
            self.detach(ifname)?;
        }
        let attach = |prog: &mut Xdp, m: AttachMode| {
            let xm = match m {
                AttachMode::Skb => XdpMode::Skb,
                _ => XdpMode::Driver,
            };
            prog.attach(ifname, xm)
        };
        let prog = self.program()?;
        let (id, took) = match (attach(prog, mode), mode) {
            (Ok(id), AttachMode::Skb) => (id, AttachMode::Skb),
            (Ok(id), _) => (id, AttachMode::Native),
            (Err(_), AttachMode::NativeOrSkb) => match attach(prog, AttachMode::Skb) {
                Ok(id) => (id, AttachMode::Skb),
                Err(e) => return Err(attach_error(ifname, mode, e)),
            },
            (Err(e), _) => return Err(attach_error(ifname, mode, e)),
        };
        self.links.insert(ifname.to_owned(), (id, took));
        Ok(took)
    }

    /// Detaches the classifier from `ifname`.
    pub fn detach(&mut self, ifname: &str) -> Result<(), XdpError> {
        let (id, _) = self
            .links
            .remove(ifname)
            .ok_or_else(|| XdpError::NotAttached(ifname.to_owned()))?;
        self.program()?
            .detach(id)
            .map_err(|_| XdpError::NotAttached(ifname.to_owned()))
    }

    /// The interfaces the classifier is attached to, with the mode that took.
    pub fn attached(&self) -> impl Iterator<Item = (&str, AttachMode)> {
        self.links.iter().map(|(n, (_, m))| (n.as_str(), *m))
    }

    /// Makes interface `ifindex` switch port `slot`: from now on its frames are classified,
    /// counted and redirected (or passed to the kernel while no socket serves the queue).
    pub fn register_port(&mut self, ifindex: u32, slot: u32) -> Result<(), XdpError> {
        if slot >= MAX_SLOTS {
            return Err(XdpError::SlotOutOfRange(slot));
        }
        self.ports
            .insert(ifindex, slot, 0)
            .map_err(map_err(abi::MAP_PORTS))
    }

    /// Stops treating `ifindex` as a switch port: its frames pass untouched again.
    pub fn unregister_port(&mut self, ifindex: u32) -> Result<(), XdpError> {
        self.ports.remove(&ifindex).map_err(map_err(abi::MAP_PORTS))
    }

    /// Installs AF_XDP socket `fd` as the receiver of (slot, queue). The socket must be bound to
    /// that port's interface and queue, or the kernel drops what is redirected to it.
    pub fn install_socket(
        &mut self,
        slot: u32,
        queue: u32,
        fd: impl AsRawFd,
    ) -> Result<(), XdpError> {
        let key = checked_key(slot, queue)?;
        self.xsks.set(key, fd, 0).map_err(map_err(abi::MAP_XSKS))
    }

    /// Removes the socket of (slot, queue): that queue's frames go to the kernel stack again.
    pub fn remove_socket(&mut self, slot: u32, queue: u32) -> Result<(), XdpError> {
        let key = checked_key(slot, queue)?;
        self.xsks.unset(key).map_err(map_err(abi::MAP_XSKS))
    }

    /// The counters of port `slot`, summed over all CPUs.
    pub fn counters(&self, slot: u32) -> Result<PortCounters, XdpError> {
        if slot >= MAX_SLOTS {
            return Err(XdpError::SlotOutOfRange(slot));
        }
        let mut out = PortCounters::default();
        let base = slot as usize * SLOT_STRIDE;
        for i in 0..SLOT_STRIDE {
            let key = u32::try_from(base + i).map_err(|_| XdpError::SlotOutOfRange(slot))?;
            let per_cpu = self
                .counters
                .get(&key, 0)
                .map_err(map_err(abi::MAP_COUNTERS))?;
            let sum: u64 = per_cpu.iter().copied().fold(0u64, u64::wrapping_add);
            match i {
                CTR_REDIRECTED => out.redirected = sum,
                CTR_REDIRECT_FAIL => out.redirect_failed = sum,
                CTR_FAST => out.fast_path = sum,
                CTR_FAST_DROP => out.fast_path_dropped = sum,
                _ => {
                    if let Some(slot) = out.by_class.get_mut(i) {
                        *slot = sum;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn checked_key(slot: u32, queue: u32) -> Result<u32, XdpError> {
    if slot >= MAX_SLOTS {
        return Err(XdpError::SlotOutOfRange(slot));
    }
    if queue >= MAX_QUEUES {
        return Err(XdpError::QueueOutOfRange(queue));
    }
    Ok(abi::xsk_key(slot, queue))
}

fn attach_error(ifname: &str, mode: AttachMode, e: ProgramError) -> XdpError {
    let hint = match (&e, mode) {
        (ProgramError::UnknownInterface { .. }, _) => {
            "no such interface in this network namespace (attach from inside the switch's namespace)"
        }
        (_, AttachMode::Native) => {
            "the driver may lack native XDP: try AttachMode::NativeOrSkb, or detach another XDP program first"
        }
        _ => "another XDP program may be attached (ip link set dev IF xdp off), or the MTU is too large for XDP",
    };
    XdpError::Attach {
        ifname: ifname.to_owned(),
        mode,
        source: Box::new(e),
        hint,
    }
}
