//! Raw L2 access to one interface with an `AF_PACKET` socket: capture every frame with a
//! deadline, and inject crafted frames.
//!
//! Built on the dataplane's [`PacketSocket`], which puts back the 802.1Q tag the kernel strips
//! before packet sockets see a frame, so tests see the bytes that were on the wire.

use std::time::{Duration, Instant};

use xsnoop_dataplane::packet_socket::{CaptureFilter, PacketSocket, SocketOptions};

use crate::error::{Result, TestbedError};
use crate::netns::Netns;
use crate::sock;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame as on the wire (Ethernet header first, VLAN tag restored, no FCS).
    pub bytes: Vec<u8>,
    /// `true` if the frame was sent by this interface rather than received.
    pub outgoing: bool,
    /// When the capture read it.
    pub at: Instant,
}

/// An `AF_PACKET` socket bound to one interface of one namespace.
#[derive(Debug)]
pub struct Capture {
    sock: PacketSocket,
    ifindex: u32,
}

impl Capture {
    /// Opens a capture on `ifname` inside `ns` with a large receive buffer (4 MiB, forced), so a
    /// burst is not lost while the test is busy elsewhere.
    pub fn open(ns: &Netns, ifname: &str) -> Result<Capture> {
        ns.run(|| Capture::open_here(ifname))?
    }

    /// Like [`Capture::open`] in the calling thread's namespace.
    pub fn open_here(ifname: &str) -> Result<Capture> {
        let sock = PacketSocket::open_with(
            ifname,
            SocketOptions {
                filter: CaptureFilter::All,
                outgoing: true,
                rcvbuf: Some(4 << 20),
            },
        )
        .map_err(|e| TestbedError::io(format!("AF_PACKET capture on {ifname}"), e))?;
        let ifindex =
            u32::try_from(sock.ifindex()).map_err(|_| TestbedError::BadName(ifname.into()))?;
        Ok(Capture { sock, ifindex })
    }

    /// The next frame, or `None` once `deadline` passes.
    pub fn next_frame(&self, deadline: Instant) -> Result<Option<Frame>> {
        loop {
            if !sock::poll_readable(&self.sock, sock::ms_until(deadline))? {
                return Ok(None);
            }
            if let Some(f) = self.recv_one()? {
                return Ok(Some(f));
            }
        }
    }

    /// All frames that arrive within `window` from now.
    pub fn collect(&self, window: Duration) -> Result<Vec<Frame>> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(f) = self.next_frame(deadline)? {
            out.push(f);
        }
        Ok(out)
    }

    /// How many received (not sent) frames within `window` satisfy `pred`: counting multicast data
    /// on a port, e.g. to prove that nothing leaks to a non-member.
    pub fn count(&self, window: Duration, mut pred: impl FnMut(&[u8]) -> bool) -> Result<usize> {
        Ok(self
            .collect(window)?
            .iter()
            .filter(|f| !f.outgoing && pred(&f.bytes))
            .count())
    }

    /// Frames (received, not sent) until one satisfies `pred` or `deadline` passes; returns all
    /// frames read, the matching one last, and whether one matched.
    pub fn until(
        &self,
        deadline: Instant,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> Result<(Vec<Frame>, bool)> {
        let mut out = Vec::new();
        while let Some(f) = self.next_frame(deadline)? {
            let hit = !f.outgoing && pred(&f.bytes);
            out.push(f);
            if hit {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// Discards everything queued so far.
    pub fn drain(&self) -> Result<usize> {
        let mut n = 0;
        while sock::poll_readable(&self.sock, 0)? {
            self.recv_one()?;
            n += 1;
        }
        Ok(n)
    }

    /// Transmits `frame` (a complete Ethernet frame, no FCS) out of the interface.
    pub fn inject(&self, frame: &[u8]) -> Result<()> {
        self.sock
            .send(frame)
            .map_err(|e| TestbedError::io("send on AF_PACKET", e))
    }

    /// The interface index the capture is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn recv_one(&self) -> Result<Option<Frame>> {
        let mut buf = vec![0u8; 65_536 + 4];
        let rx = self
            .sock
            .recv(&mut buf)
            .map_err(|e| TestbedError::io("recvmsg on AF_PACKET", e))?;
        Ok(rx.map(|r| Frame {
            bytes: r.frame.to_vec(),
            outgoing: r.outgoing,
            at: Instant::now(),
        }))
    }
}
