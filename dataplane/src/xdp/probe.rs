//! Rate-probe helpers (`ebpf/xsnoop_probe.bpf.c`): a line-rate frame generator and a
//! count-and-drop receiver, for tests and benchmarks of the switch on veth, where trafgen and
//! pktgen cannot reach the fast path's rates (testbed facts: ~44 kpps and unavailable).
//!
//! - [`Generator`]: `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on an XDP_TX program
//!   transmits a frame out of an interface as fast as one CPU can (~10 Mpps here). It keeps a
//!   program attached to `lo` (generic mode), or every run re-attaches the XDP dispatcher.
//! - [`Counter`]: counts and drops every frame arriving on an interface, in the driver.
//!
//! Both resolve interface names in the calling thread's network namespace.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::maps::PerCpuArray;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use super::{XdpError, PROBE_OBJECT};

fn load(names: &[&'static str]) -> Result<Ebpf, XdpError> {
    let mut ebpf = Ebpf::load(PROBE_OBJECT).map_err(|e| XdpError::Load(Box::new(e)))?;
    for name in names {
        prog(&mut ebpf, name)?
            .load()
            .map_err(|e| XdpError::Program(Box::new(e)))?;
    }
    Ok(ebpf)
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, XdpError> {
    ebpf.program_mut(name)
        .ok_or(XdpError::Missing("a probe program"))?
        .try_into()
        .map_err(|e| XdpError::Program(Box::new(e)))
}

fn attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    ifname: &str,
    mode: XdpMode,
) -> Result<(), XdpError> {
    prog(ebpf, name)?
        .attach(ifname, mode)
        .map(drop)
        .map_err(|e| XdpError::Attach {
            ifname: ifname.to_owned(),
            mode: if mode == XdpMode::Skb {
                super::AttachMode::Skb
            } else {
                super::AttachMode::Native
            },
            source: Box::new(e),
            hint: "another XDP program may be attached",
        })
}

/// A receiver that counts and drops every frame arriving on one interface (native XDP).
pub struct Counter {
    ebpf: Ebpf,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter").finish_non_exhaustive()
    }
}

impl Counter {
    /// Attaches the counter to `ifname` (in the caller's namespace); detached on drop.
    pub fn attach(ifname: &str) -> Result<Counter, XdpError> {
        let mut ebpf = load(&["probe_count"])?;
        attach(&mut ebpf, "probe_count", ifname, XdpMode::Driver)?;
        Ok(Counter { ebpf })
    }

    /// Frames counted so far (summed over CPUs).
    pub fn count(&self) -> Result<u64, XdpError> {
        let map = self
            .ebpf
            .map("probe_counts")
            .ok_or(XdpError::Missing("probe_counts"))?;
        let m: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(|e| XdpError::Map {
            map: "probe_counts",
            source: Box::new(e),
        })?;
        let v = m.get(&0, 0).map_err(|e| XdpError::Map {
            map: "probe_counts",
            source: Box::new(e),
        })?;
        Ok(v.iter().copied().fold(0u64, u64::wrapping_add))
    }
}

/// A line-rate frame generator (see the module docs).
pub struct Generator {
    ebpf: Ebpf,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").finish_non_exhaustive()
    }
}

/// `struct xdp_md` as `BPF_PROG_RUN` takes it for its context.
#[repr(C)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`.
#[repr(C)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, so the tail the kernel checks for zeroes is never uninitialised padding.
    pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

impl Generator {
    /// Loads the generator and attaches its pass-through program to `lo` (generic mode) in the
    /// caller's namespace.
    pub fn new() -> Result<Generator, XdpError> {
        let mut ebpf = load(&["probe_tx", "probe_pass"])?;
        attach(&mut ebpf, "probe_pass", "lo", XdpMode::Skb)?;
        Ok(Generator { ebpf })
    }

    /// Transmits `frame` `repeat` times out of interface `ifindex` (in the caller's
    /// namespace), in batches of 64, from the calling CPU.
    pub fn send(&mut self, ifindex: u32, frame: &[u8], repeat: u32) -> std::io::Result<()> {
        let fd = prog(&mut self.ebpf, "probe_tx")
            .and_then(|p| p.fd().map_err(|e| XdpError::Program(Box::new(e))))
            .map_err(std::io::Error::other)?
            .as_fd()
            .as_raw_fd();
        live_frames(fd, ifindex, frame, repeat, 64).map(drop)
    }
}

/// One `BPF_PROG_RUN` of XDP program `prog_fd` with `BPF_F_TEST_XDP_LIVE_FRAMES`: `frame` goes
/// through it `repeat` times, `batch` at a time, as if received on `ifindex` (XDP_TX sends it
/// out of that interface). Returns the program's last verdict. Shared by [`Generator`] and the
/// bench's generator.
pub fn live_frames(
    prog_fd: RawFd,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
    batch: u32,
) -> std::io::Result<u32> {
    let fd = u32::try_from(prog_fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    let len = u32::try_from(frame.len()).map_err(|_| std::io::Error::other("frame too long"))?;
    let ctx = XdpMd {
        data: 0,
        data_end: len,
        data_meta: 0,
        ingress_ifindex: ifindex,
        rx_queue_index: 0,
        egress_ifindex: 0,
    };
    let mut attr = TestRunAttr {
        prog_fd: fd,
        retval: 0,
        data_size_in: len,
        data_size_out: 0,
        data_in: frame.as_ptr() as u64,
        data_out: 0,
        repeat,
        duration: 0,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_size_out: 0,
        ctx_in: &ctx as *const XdpMd as u64,
        ctx_out: 0,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        cpu: 0,
        batch_size: batch,
        pad: 0,
    };
    // SAFETY: `attr` and what it points at (`frame`, `ctx`) live across the call; the
    // kernel reads them and writes only into `attr`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(attr.retval)
    }
}
