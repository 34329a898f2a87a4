//! The traffic generator: `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on an XDP program
//! that returns `XDP_TX`, run on the sending host's veth. The kernel keeps the test frame in a
//! page pool and, on every repetition, hands it to the interface's `ndo_xdp_xmit` — a frame
//! really leaves the host and crosses the veth into the switch, at ~10 Mpps from one vCPU here,
//! where socket generators stop near 0.3 Mpps (testbed-facts.md). aya 0.14 has no API for live
//! frames, so this module issues the raw `bpf(2)` command.
//!
//! Call [`run_live`] from a thread inside the sender's namespace: the kernel resolves the
//! context's `ingress_ifindex` in the caller's namespace.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use xsnoop_dataplane::wire::{to_vec, MacAddr, UdpDataBuilder};

use crate::bpf::BENCH_UDP_PORT;

/// Program runs per syscall (the kernel's loop reschedules between batches).
pub const REPEAT: u32 = 65_536;
/// Frames the kernel prepares and flushes together.
pub const BATCH: u32 = 64;
/// Ethernet FCS: on the wire but not in the buffer; frame sizes are quoted with it (64 B).
pub const FCS_LEN: usize = 4;
/// Ethernet + IPv4 + UDP headers.
const HEADERS_LEN: usize = 14 + 20 + 8;
/// Largest frame the live-frames page (4 KiB minus headroom and skb_shared_info) carries here;
/// bigger than any Ethernet frame the bench sends.
const MAX_FRAME: usize = 3_000;

/// Why the generator could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The kernel refused the live run.
    #[error("BPF_PROG_RUN with live frames on ifindex {ifindex} failed: {source} (needs Linux 5.18+, root, an XDP program that returns XDP_TX, and a peer with XDP or GRO on)")]
    TestRun {
        /// Interface the frames were to leave by.
        ifindex: u32,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// A frame size the generator cannot send.
    #[error("frame of {0} B (with FCS) cannot be sent: it must be 64..={max} B", max = MAX_FRAME + FCS_LEN)]
    FrameSize(usize),
    /// The frame codec refused the frame.
    #[error("building the test frame: {0}")]
    Build(String),
}

/// What one generator run offered.
#[derive(Debug, Clone, Copy)]
pub struct LiveRun {
    /// Frames handed to the interface (program runs that returned XDP_TX).
    pub frames: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LiveRun {
    /// Offered frames per second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.frames as f64 / s
        } else {
            0.0
        }
    }
}

/// The benchmark frame: IPv4 multicast UDP from `src` to `group`, port [`BENCH_UDP_PORT`], of
/// `wire_len` bytes on the wire including the 4-byte FCS (64 → a 60-byte buffer), built by the
/// dataplane's own codec so its checksums are right.
pub fn test_frame(wire_len: usize, src: Ipv4Addr, group: Ipv4Addr) -> Result<Vec<u8>, GenError> {
    let len = wire_len
        .checked_sub(FCS_LEN)
        .filter(|l| (60..=MAX_FRAME).contains(l))
        .ok_or(GenError::FrameSize(wire_len))?;
    let payload: Vec<u8> = (0..len - HEADERS_LEN).map(|i| i as u8).collect();
    let frame = to_vec(&UdpDataBuilder {
        src_mac: MacAddr([0x02, 0xbe, 0x4c, 0x00, 0x00, 0x01]),
        src_ip: src,
        group,
        src_port: BENCH_UDP_PORT,
        dst_port: BENCH_UDP_PORT,
        ttl: 16,
        payload: &payload,
        vlan: None,
    })
    .map_err(|e| GenError::Build(e.to_string()))?;
    if frame.len() != len {
        return Err(GenError::Build(format!(
            "codec built {} B, expected {len} B",
            frame.len()
        )));
    }
    Ok(frame)
}

/// The unicast benchmark frame: like [`test_frame`] but to host `dst` at `dst_mac` (the dst MAC
/// and address are patched in, the IPv4 header checksum recomputed, the UDP checksum left out,
/// which IPv4 allows: RFC 768).
pub fn unicast_frame(
    wire_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_mac: [u8; 6],
) -> Result<Vec<u8>, GenError> {
    let mut f = test_frame(wire_len, src, Ipv4Addr::new(239, 0, 0, 1))?;
    let bad = || GenError::Build("frame too short to patch".to_owned());
    f.get_mut(0..6).ok_or_else(bad)?.copy_from_slice(&dst_mac);
    f.get_mut(30..34)
        .ok_or_else(bad)?
        .copy_from_slice(&dst.octets());
    f.get_mut(24..26).ok_or_else(bad)?.fill(0);
    let sum = xsnoop_dataplane::wire::checksum::checksum(f.get(14..34).ok_or_else(bad)?);
    f.get_mut(24..26)
        .ok_or_else(bad)?
        .copy_from_slice(&sum.to_be_bytes());
    f.get_mut(40..42).ok_or_else(bad)?.fill(0);
    Ok(f)
}

/// One `BPF_PROG_RUN` of `repeat` live frames; returns the program's last verdict.
fn prog_run(prog_fd: RawFd, ifindex: u32, frame: &[u8], repeat: u32) -> Result<u32, GenError> {
    if u32::try_from(frame.len()).is_err() {
        return Err(GenError::FrameSize(frame.len()));
    }
    xsnoop_dataplane::xdp::probe::live_frames(prog_fd, ifindex, frame, repeat, BATCH)
        .map_err(|source| GenError::TestRun { ifindex, source })
}

/// Sends `frame` out of `ifindex` (in the calling thread's namespace) as fast as the program
/// runs, in rounds of [`REPEAT`], until `duration` has passed.
pub fn run_live(
    prog_fd: RawFd,
    ifindex: u32,
    frame: &[u8],
    duration: Duration,
) -> Result<LiveRun, GenError> {
    // Short runs (the smoke test) use smaller rounds so they stop close to `duration`.
    let repeat = if duration < Duration::from_millis(500) {
        4_096
    } else {
        REPEAT
    };
    let start = Instant::now();
    let mut frames = 0u64;
    while start.elapsed() < duration {
        prog_run(prog_fd, ifindex, frame, repeat)?;
        frames += u64::from(repeat);
    }
    Ok(LiveRun {
        frames,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_quoted_size_and_are_udp_to_the_group() {
        let group = Ipv4Addr::new(239, 1, 2, 3);
        for wire in [64, 128, 1518] {
            let f = test_frame(wire, Ipv4Addr::new(10, 0, 0, 1), group).unwrap();
            assert_eq!(f.len() + FCS_LEN, wire);
            assert_eq!(&f[0..6], &[0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);
            assert_eq!(f[23], 17, "UDP");
            assert_eq!(&f[30..34], &group.octets());
            assert_eq!(u16::from_be_bytes([f[36], f[37]]), BENCH_UDP_PORT);
        }
        assert!(matches!(
            test_frame(63, Ipv4Addr::LOCALHOST, group),
            Err(GenError::FrameSize(63))
        ));
        assert!(test_frame(9000, Ipv4Addr::LOCALHOST, group).is_err());
    }

    #[test]
    fn unicast_frames_are_valid_ipv4_to_the_host() {
        let mac = [0x02, 1, 2, 3, 4, 5];
        let dst = Ipv4Addr::new(10, 1, 0, 2);
        let f = unicast_frame(64, Ipv4Addr::new(10, 1, 0, 1), dst, mac).unwrap();
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &mac);
        assert_eq!(&f[30..34], &dst.octets());
        assert!(xsnoop_dataplane::wire::checksum::verify(&f[14..34]));
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), BENCH_UDP_PORT);
    }

    /// The generator really puts frames on a veth and the counter tells benchmark frames from
    /// others: a fraction of a second on a two-namespace testbed.
    fn smoke(receiver: crate::bpf::Receiver) {
        use crate::bpf::{Counter, GenProgram, Receiver};
        use xsnoop_tests::Topology;

        if !xsnoop_tests::require_netns("bench generator smoke test") {
            return;
        }
        let mut topo = Topology::new();
        topo.add_host("a").unwrap();
        topo.add_host("b").unwrap();
        let (ea, eb) = topo.add_veth(("a", "ga"), ("b", "gb")).unwrap();
        let b = topo.ns("b").unwrap();
        if receiver == Receiver::Tc {
            // A veth takes XDP-transmitted frames only with NAPI on the peer: GRO gives it.
            xsnoop_tests::cmd::run(
                "ip",
                &[
                    "netns",
                    "exec",
                    b.name(),
                    "ethtool",
                    "-K",
                    &eb.ifname,
                    "gro",
                    "on",
                ],
            )
            .unwrap();
        }
        let mut counter = Counter::load(receiver).unwrap();
        b.run(|| counter.attach(&eb.ifname)).unwrap().unwrap();
        let mut gen = GenProgram::load().unwrap();
        let a = topo.ns("a").unwrap();
        a.run(|| gen.anchor_on_loopback()).unwrap().unwrap();
        let fd = gen.raw_fd().unwrap();
        let ifindex = a
            .run(|| xsnoop_tests::sock::ifindex(&ea.ifname))
            .unwrap()
            .unwrap();
        let frame =
            test_frame(64, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(239, 9, 9, 9)).unwrap();
        let mut other = frame.clone();
        other[36..38].copy_from_slice(&(BENCH_UDP_PORT + 1).to_be_bytes());

        let send = |f: &[u8]| {
            a.run(|| run_live(fd, ifindex, f, Duration::from_millis(150)))
                .unwrap()
                .unwrap()
        };
        let run = send(&frame);
        std::thread::sleep(Duration::from_millis(100));
        let c = counter.read().unwrap();
        assert!(run.frames > 0 && run.rate() > 0.0);
        assert!(
            c.frames > 0 && c.frames <= run.frames,
            "{receiver:?}: sent {} counted {c:?}",
            run.frames
        );
        assert_eq!(c.bytes, c.frames * 60, "64 B on the wire = 60 B counted");

        let run2 = send(&other);
        std::thread::sleep(Duration::from_millis(100));
        let c2 = counter.read().unwrap().since(c);
        assert_eq!(c2.frames, 0, "another UDP port is not a benchmark frame");
        assert!(
            c2.other > 0 && c2.other <= run2.frames,
            "{receiver:?}: {c2:?}"
        );
    }

    #[test]
    fn generated_frames_cross_a_veth_and_tc_counts_only_benchmark_frames() {
        smoke(crate::bpf::Receiver::Tc);
    }

    #[test]
    fn generated_frames_cross_a_veth_and_xdp_counts_only_benchmark_frames() {
        smoke(crate::bpf::Receiver::Xdp);
    }
}
