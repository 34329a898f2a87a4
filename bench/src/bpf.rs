//! The bench's own XDP programs (built from `bench/bpf/*.bpf.c` by `build.rs`) and their loaders:
//! the live-frames generator, the per-host counter (tc or XDP), and the devmap-broadcast ceiling.
//!
//! Attaching resolves the interface in the calling thread's network namespace and creates a
//! bpf_link, so call the attach functions from inside the namespace (`Netns::run`); dropping a
//! loaded program closes its links and detaches it, also when the bench fails half-way.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::maps::{DevMap, MapData, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfError};

/// UDP destination port of the benchmark's frames; the counter counts only these (keep in sync
/// with `BENCH_UDP_PORT` in `bpf/count.bpf.c`).
pub const BENCH_UDP_PORT: u16 = 47000;

static GEN_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gen.bpf.o"));
static COUNT_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/count.bpf.o"));
static CEILING_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ceiling.bpf.o"));

/// Counter slots of `count.bpf.c`.
const CTR_FRAMES: u32 = 0;
const CTR_BYTES: u32 = 1;
const CTR_OTHER: u32 = 2;

/// Why one of the bench's XDP programs could not be loaded, attached or read.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The object was refused (no privilege, no BPF, verifier).
    #[error("loading the {object} XDP object failed: {source}; run as root on a kernel with BPF and XDP")]
    Load {
        /// Which program.
        object: &'static str,
        /// aya's error.
        #[source]
        source: Box<EbpfError>,
    },
    /// The program is missing from the object or did not load.
    #[error("the {object} XDP program did not load: {source}")]
    Program {
        /// Which program.
        object: &'static str,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// The object does not hold the expected program or map (stale build).
    #[error("the {object} XDP object has no {what}; rebuild the bench")]
    Missing {
        /// Which program.
        object: &'static str,
        /// Which program or map is missing.
        what: &'static str,
    },
    /// Attaching to an interface failed (wrong namespace, no such interface, mode refused).
    #[error("attaching the {object} program to {iface} ({mode}) failed: {source}")]
    Attach {
        /// Which program.
        object: &'static str,
        /// Interface name.
        iface: String,
        /// Attach point / mode.
        mode: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// A map could not be read or written.
    #[error("{object} XDP map {map}: {detail}")]
    Map {
        /// Which program.
        object: &'static str,
        /// Which map.
        map: &'static str,
        /// What failed.
        detail: String,
    },
}

/// One loaded XDP program of an object, keeping its maps.
#[derive(Debug)]
struct Loaded {
    object: &'static str,
    program: &'static str,
    ebpf: Ebpf,
}

impl Loaded {
    fn load(object: &'static str, bytes: &[u8], program: &'static str) -> Result<Self, BpfError> {
        let mut ebpf = Ebpf::load(bytes).map_err(|e| BpfError::Load {
            object,
            source: Box::new(e),
        })?;
        let xdp: &mut Xdp = ebpf
            .program_mut(program)
            .ok_or(BpfError::Missing {
                object,
                what: "program",
            })?
            .try_into()
            .map_err(|e| BpfError::Program {
                object,
                source: Box::new(e),
            })?;
        xdp.load().map_err(|e| BpfError::Program {
            object,
            source: Box::new(e),
        })?;
        Ok(Loaded {
            object,
            program,
            ebpf,
        })
    }

    fn xdp(&mut self) -> Result<&mut Xdp, BpfError> {
        let object = self.object;
        self.ebpf
            .program_mut(self.program)
            .ok_or(BpfError::Missing {
                object,
                what: "program",
            })?
            .try_into()
            .map_err(|e| BpfError::Program {
                object,
                source: Box::new(e),
            })
    }

    /// Attaches to `iface` in the calling thread's namespace; the link lives as long as `self`.
    fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<(), BpfError> {
        let object = self.object;
        self.xdp()?
            .attach(iface, mode)
            .map(|_| ())
            .map_err(|e| BpfError::Attach {
                object,
                iface: iface.to_owned(),
                mode: format!("XDP {mode:?}"),
                source: Box::new(e),
            })
    }
}

/// The live-frames generator program (`gen.bpf.c`: XDP_TX, or PASS on loopback).
#[derive(Debug)]
pub struct GenProgram {
    inner: Loaded,
}

impl GenProgram {
    /// Loads the generator.
    pub fn load() -> Result<GenProgram, BpfError> {
        Ok(GenProgram {
            inner: Loaded::load("generator", GEN_OBJECT, "bench_gen")?,
        })
    }

    /// Loads the report-flood generator (`bench_flood` in `gen.bpf.c`): like the generator, but
    /// every frame it sends is the template IGMPv3 report with a new random group
    /// ([`crate::flood`]).
    pub fn load_flood() -> Result<GenProgram, BpfError> {
        Ok(GenProgram {
            inner: Loaded::load("report flood", GEN_OBJECT, "bench_flood")?,
        })
    }

    /// Keeps the program attached (generic XDP) to `lo` of the calling thread's namespace, so
    /// test runs find it in the XDP dispatcher already (testbed-facts.md: 0.65 → ~10 Mpps).
    pub fn anchor_on_loopback(&mut self) -> Result<(), BpfError> {
        self.inner.attach("lo", XdpMode::Skb)
    }

    /// The program's file descriptor, for `BPF_PROG_TEST_RUN` (valid while `self` lives).
    pub fn raw_fd(&mut self) -> Result<RawFd, BpfError> {
        let object = self.inner.object;
        let xdp = self.inner.xdp()?;
        xdp.fd()
            .map(|fd| fd.as_fd().as_raw_fd())
            .map_err(|e| BpfError::Program {
                object,
                source: Box::new(e),
            })
    }
}

/// What a counter has seen since it was attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Benchmark frames (IPv4 multicast UDP to [`BENCH_UDP_PORT`]), counted and dropped.
    pub frames: u64,
    /// Their bytes (Ethernet header included, FCS not).
    pub bytes: u64,
    /// Every other frame (passed to the host's stack).
    pub other: u64,
}

impl Counts {
    /// Counts since `earlier` (counters only grow).
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            frames: self.frames.saturating_sub(earlier.frames),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            other: self.other.saturating_sub(earlier.other),
        }
    }
}

/// Where a receiving host counts: tc ingress (default) or XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Receiver {
    /// tc ingress (TCX link) with GRO on for NAPI: skbs arrive without a copy.
    Tc,
    /// Native XDP: cheapest for XDP-transmitted frames, but a veth copies every skb for it.
    Xdp,
}

/// The count-and-drop receiver program (`count.bpf.c`) with its own per-CPU counters.
#[derive(Debug)]
pub struct Counter {
    ebpf: Ebpf,
    receiver: Receiver,
}

impl Counter {
    const OBJECT: &'static str = "counter";

    fn program(receiver: Receiver) -> &'static str {
        match receiver {
            Receiver::Tc => "bench_count_tc",
            Receiver::Xdp => "bench_count",
        }
    }

    /// Loads a counter with fresh (zero) counters, for attaching at `receiver`.
    pub fn load(receiver: Receiver) -> Result<Counter, BpfError> {
        let object = Self::OBJECT;
        let name = Self::program(receiver);
        let mut ebpf = Ebpf::load(COUNT_OBJECT).map_err(|e| BpfError::Load {
            object,
            source: Box::new(e),
        })?;
        let prog = ebpf.program_mut(name).ok_or(BpfError::Missing {
            object,
            what: "program",
        })?;
        let loaded = match receiver {
            Receiver::Tc => <&mut SchedClassifier>::try_from(prog).and_then(|p| p.load()),
            Receiver::Xdp => <&mut Xdp>::try_from(prog).and_then(|p| p.load()),
        };
        loaded.map_err(|e| BpfError::Program {
            object,
            source: Box::new(e),
        })?;
        Ok(Counter { ebpf, receiver })
    }

    /// Attaches to `iface` in the calling thread's namespace: tc ingress, or native XDP.
    pub fn attach(&mut self, iface: &str) -> Result<(), BpfError> {
        let object = Self::OBJECT;
        let name = Self::program(self.receiver);
        let prog = self.ebpf.program_mut(name).ok_or(BpfError::Missing {
            object,
            what: "program",
        })?;
        let attach_err = |what: &str, e: ProgramError| BpfError::Attach {
            object,
            iface: iface.to_owned(),
            mode: what.to_owned(),
            source: Box::new(e),
        };
        match self.receiver {
            Receiver::Tc => {
                let p = <&mut SchedClassifier>::try_from(prog)
                    .map_err(|e| attach_err("tc ingress", e))?;
                p.attach(iface, TcAttachType::Ingress)
                    .map_err(|e| attach_err("tc ingress", e))?;
            }
            Receiver::Xdp => {
                let p = <&mut Xdp>::try_from(prog).map_err(|e| attach_err("XDP driver", e))?;
                p.attach(iface, XdpMode::Driver)
                    .map_err(|e| attach_err("XDP driver", e))?;
            }
        }
        Ok(())
    }

    /// Sums the per-CPU counters.
    pub fn read(&self) -> Result<Counts, BpfError> {
        let object = Self::OBJECT;
        let map_err = |detail: String| BpfError::Map {
            object,
            map: "counts",
            detail,
        };
        let map = self.ebpf.map("counts").ok_or(BpfError::Missing {
            object,
            what: "map counts",
        })?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|e| map_err(e.to_string()))?;
        let sum = |slot: u32| -> Result<u64, BpfError> {
            let values = array.get(&slot, 0).map_err(|e| map_err(e.to_string()))?;
            Ok(values.iter().sum())
        };
        Ok(Counts {
            frames: sum(CTR_FRAMES)?,
            bytes: sum(CTR_BYTES)?,
            other: sum(CTR_OTHER)?,
        })
    }
}

/// The XDP ceiling (`ceiling.bpf.c`): devmap broadcast to the member ports (broadcast frames:
/// to every port).
#[derive(Debug)]
pub struct Ceiling {
    inner: Loaded,
}

impl Ceiling {
    /// Loads the ceiling with an empty member map.
    pub fn load() -> Result<Ceiling, BpfError> {
        Ok(Ceiling {
            inner: Loaded::load("ceiling", CEILING_OBJECT, "bench_ceiling")?,
        })
    }

    /// Puts `ifindexes` into the member devmap. Devmap values are resolved in the namespace of
    /// the writing thread: call this inside the switch namespace.
    pub fn set_members(&mut self, ifindexes: &[u32]) -> Result<(), BpfError> {
        self.fill("members", ifindexes)
    }

    /// Puts `ifindexes` (every port but the sender's) into the devmap broadcast frames go to;
    /// like [`Ceiling::set_members`], call it inside the switch namespace.
    pub fn set_everyone(&mut self, ifindexes: &[u32]) -> Result<(), BpfError> {
        self.fill("everyone", ifindexes)
    }

    fn fill(&mut self, name: &'static str, ifindexes: &[u32]) -> Result<(), BpfError> {
        let object = self.inner.object;
        let map_err = |detail: String| BpfError::Map {
            object,
            map: name,
            detail,
        };
        let map = self.inner.ebpf.map_mut(name).ok_or(BpfError::Missing {
            object,
            what: "devmap",
        })?;
        let mut devmap: DevMap<&mut MapData> =
            DevMap::try_from(map).map_err(|e| map_err(e.to_string()))?;
        for (slot, ifindex) in (0u32..).zip(ifindexes) {
            devmap
                .set(slot, *ifindex, None, 0)
                .map_err(|e| map_err(format!("slot {slot} = ifindex {ifindex}: {e}")))?;
        }
        Ok(())
    }

    /// Attaches natively to `iface` (the sender-facing switch port) in the calling namespace.
    pub fn attach(&mut self, iface: &str) -> Result<(), BpfError> {
        self.inner.attach(iface, XdpMode::Driver)
    }
}
