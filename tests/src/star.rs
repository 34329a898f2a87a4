//! The topology almost every switch test needs: one switch namespace with N ports, each wired to
//! its own IGMP host namespace. Built on [`Topology`], so it is cleaned up the same way.

use std::net::Ipv4Addr;

use crate::error::Result;
use crate::netns::Netns;
use crate::topology::{HostConfig, Topology};

/// A switch namespace `sw` with ports `p1..pN`, port `pi` linked to host namespace `hi`
/// (interface `hie0`, address `10.<net>.0.i/24`).
#[derive(Debug)]
pub struct Star {
    /// The underlying topology (namespaces `sw`, `h1`..`hN`).
    pub topo: Topology,
    hosts: usize,
}

impl Star {
    /// Builds the star with one host per entry of `versions` (the host's `force_igmp_version`,
    /// 0 = kernel default), on subnet `10.net.0.0/24`. Switch ports are up, without addresses,
    /// and IPv6 is off everywhere so the switch sees only what the test causes.
    pub fn new(net: u8, versions: &[u8]) -> Result<Star> {
        Star::with_queues(net, versions, 1)
    }

    /// Like [`Star::new`], with `queues` receive and transmit queues on every veth end (a
    /// multi-queue NIC: the hosts' flows land on different queues of the switch ports).
    pub fn with_queues(net: u8, versions: &[u8], queues: u32) -> Result<Star> {
        let mut topo = Topology::new();
        topo.add_host("sw")?;
        for (i, v) in versions.iter().enumerate() {
            let n = i + 1;
            let host = format!("h{n}");
            topo.add_host(&host)?;
            topo.add_veth_queues(
                (&host, &format!("h{n}e0")),
                ("sw", &format!("p{n}")),
                queues,
            )?;
            let last = u8::try_from(n).unwrap_or(u8::MAX);
            let mut cfg = HostConfig::new(Ipv4Addr::new(10, net, 0, last), *v);
            if *v == 0 {
                cfg.igmp_version = None;
            }
            topo.configure_host(&host, &format!("h{n}e0"), &cfg)?;
        }
        Ok(Star {
            topo,
            hosts: versions.len(),
        })
    }

    /// Makes the hosts' traffic forwardable by an AF_XDP switch and waits until every switch
    /// port is oper-up.
    ///
    /// A veth hands a locally sent UDP datagram on with its checksum left for "the NIC" to fill
    /// (CHECKSUM_PARTIAL); a switch that forwards raw bytes is no NIC, so the receiver would
    /// drop it: TX checksum offload goes off (`ethtool -K IF tx off`), as a real NIC would have
    /// filled it before the wire. And a fresh veth reports IFF_RUNNING only once linkwatch has
    /// run (up to ~1 s later); a switch started earlier rightly treats the port as down.
    pub fn prepare_for_afxdp(&self) -> Result<()> {
        for i in 1..=self.hosts {
            let host = self.host(i)?;
            crate::cmd::run(
                "ip",
                &[
                    "netns",
                    "exec",
                    host.name(),
                    "ethtool",
                    "-K",
                    &self.host_if(i)?,
                    "tx",
                    "off",
                    // A veth end takes frames redirected by XDP (the switch's in-kernel fast
                    // path) only with NAPI: GRO on, as a real NIC always has a receive path.
                    "gro",
                    "on",
                ],
            )?;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for i in 1..=self.hosts {
            let port = self.port(i)?;
            loop {
                let line = self.switch()?.ip(&["-br", "link", "show", "dev", &port])?;
                if line.split_whitespace().any(|w| w == "UP") {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(crate::error::TestbedError::Parse(format!(
                        "switch port {port} never came up: {line}"
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Number of hosts (and switch ports).
    pub fn len(&self) -> usize {
        self.hosts
    }

    /// `true` for a star without hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts == 0
    }

    /// The switch namespace.
    pub fn switch(&self) -> Result<&Netns> {
        self.topo.ns("sw")
    }

    /// Interface name of switch port `n` (1-based), inside the switch namespace.
    pub fn port(&self, n: usize) -> Result<String> {
        self.topo.ifname(&format!("p{n}"))
    }

    /// Namespace of host `n` (1-based).
    pub fn host(&self, n: usize) -> Result<&Netns> {
        self.topo.ns(&format!("h{n}"))
    }

    /// Interface name of host `n`, inside its namespace.
    pub fn host_if(&self, n: usize) -> Result<String> {
        self.topo.ifname(&format!("h{n}e0"))
    }

    /// A capture on host `n`'s interface, inside its namespace (what it sends and receives).
    pub fn capture(&self, n: usize) -> Result<crate::Capture> {
        crate::Capture::open(self.host(n)?, &self.host_if(n)?)
    }

    /// Host `n`'s kernel joins `group` (`IP_ADD_MEMBERSHIP` on a UDP socket bound to `port`).
    pub fn join(&self, n: usize, group: Ipv4Addr, port: u16) -> Result<crate::Membership> {
        crate::Membership::join(self.host(n)?, &self.host_if(n)?, group, port)
    }

    /// Whether switch port `n` has an XDP program attached (`ip -d link`).
    pub fn has_xdp(&self, n: usize) -> Result<bool> {
        let out = self
            .switch()?
            .ip(&["-d", "link", "show", "dev", &self.port(n)?])?;
        Ok(out
            .split_whitespace()
            .any(|w| w.starts_with("xdp") || w == "prog/xdp"))
    }

    /// Turns GRO on or off on host `n`'s end of its veth. With GRO off (and no XDP program
    /// there) the switch's end stops accepting XDP redirects: how a test makes a port that
    /// the in-kernel fast path must not use.
    pub fn set_host_gro(&self, n: usize, on: bool) -> Result<()> {
        crate::cmd::run(
            "ip",
            &[
                "netns",
                "exec",
                self.host(n)?.name(),
                "ethtool",
                "-K",
                &self.host_if(n)?,
                "gro",
                if on { "on" } else { "off" },
            ],
        )
        .map(|_| ())
    }
}
