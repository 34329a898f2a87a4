//! A small network of namespaces joined by veth pairs, built from a description and torn down
//! (exactly what it built, also on panic) when dropped.
//!
//! Names are unique per test: every topology gets a prefix made of the process id and an atomic
//! counter, so tests running in parallel (and leftovers of a crashed run) never collide. Interface
//! names carry the prefix too and must fit Linux's 15-byte limit (`IFNAMSIZ - 1`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Result, TestbedError};
use crate::netns::Netns;

/// Linux refuses interface names longer than this (IFNAMSIZ 16 including the NUL).
pub const MAX_IFNAME: usize = 15;

static NEXT_TOPOLOGY: AtomicU32 = AtomicU32::new(0);

fn base36(mut n: u32, min_width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 && out.len() >= min_width {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh unique prefix: [`process_prefix`] + counter (base 36), e.g. `x02s9k0`.
pub fn unique_prefix() -> String {
    let n = NEXT_TOPOLOGY.fetch_add(1, Ordering::Relaxed);
    format!("{}{}", process_prefix(), base36(n, 1))
}

/// What every namespace and interface name this process creates begins with: `x` + pid (5
/// base-36 digits). Lets a process that is being interrupted find and remove exactly its own
/// testbeds, whose `Drop` will not run.
pub fn process_prefix() -> String {
    prefix_of(std::process::id())
}

/// [`process_prefix`] of the process `pid` (a test that starts a testbed-using program finds
/// that program's namespaces by it).
pub fn prefix_of(pid: u32) -> String {
    format!("x{}", base36(pid, 5))
}

/// How a namespace acting as an IGMP host is configured (see [`Topology::configure_host`]).
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// IPv4 address of the host interface; IGMP reports carry it as source.
    pub addr: Ipv4Addr,
    /// Prefix length of `addr`.
    pub prefix_len: u8,
    /// `force_igmp_version` for the interface: `Some(1|2|3)`, or `None` to leave the kernel's
    /// default (0 = follow the querier, start with v3).
    pub igmp_version: Option<u8>,
    /// Unsolicited report interval in ms (v2 and v3): how soon Linux repeats a report after a
    /// join. Small values keep tests fast and deterministic. `None` keeps the kernel default.
    pub unsolicited_interval_ms: Option<u32>,
}

impl HostConfig {
    /// A host with address `addr/24`, forced IGMP `version`, and a 100 ms repeat interval.
    pub fn new(addr: Ipv4Addr, version: u8) -> HostConfig {
        HostConfig {
            addr,
            prefix_len: 24,
            igmp_version: Some(version),
            unsolicited_interval_ms: Some(100),
        }
    }
}

/// One end of a veth pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Full name of the namespace holding this end.
    pub netns: String,
    /// Interface name inside that namespace.
    pub ifname: String,
}

/// A set of namespaces and veth pairs owned by one test. Dropping it deletes the veth pairs it
/// created and then the namespaces it created; nothing else (never `eth0`, never the root
/// namespace's interfaces: both veth ends are created directly inside their namespaces).
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    // (role, namespace)
    namespaces: Vec<(String, Netns)>,
    veths: Vec<(Endpoint, Endpoint)>,
}

impl Topology {
    /// An empty topology with a fresh unique prefix.
    pub fn new() -> Topology {
        Topology {
            prefix: unique_prefix(),
            namespaces: Vec::new(),
            veths: Vec::new(),
        }
    }

    /// The prefix every name of this topology starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Adds a plain namespace called `<prefix>-<role>` (for a switch or a bridge).
    pub fn add_namespace(&mut self, role: &str) -> Result<&Netns> {
        if self.find(role).is_some() {
            return Err(TestbedError::BadName(format!("role {role:?} used twice")));
        }
        let ns = Netns::create(&format!("{}-{}", self.prefix, role))?;
        self.namespaces.push((role.to_owned(), ns));
        self.ns(role)
    }

    /// Adds a namespace meant to be an IGMP host: like [`Topology::add_namespace`] but with IPv6
    /// disabled before any interface exists, so no MLD, router solicitations or DAD add noise.
    pub fn add_host(&mut self, role: &str) -> Result<&Netns> {
        self.add_namespace(role)?;
        let ns = self.ns(role)?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(ns)
    }

    /// The namespace added under `role`.
    pub fn ns(&self, role: &str) -> Result<&Netns> {
        self.find(role)
            .ok_or_else(|| TestbedError::BadName(format!("no namespace with role {role:?}")))
    }

    fn find(&self, role: &str) -> Option<&Netns> {
        self.namespaces
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, ns)| ns)
    }

    /// The interface name this topology uses for `role`: `<prefix><role>`, at most 15 bytes.
    pub fn ifname(&self, role: &str) -> Result<String> {
        let name = format!("{}{}", self.prefix, role);
        if name.len() > MAX_IFNAME
            || role.is_empty()
            || !role.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(TestbedError::BadName(format!(
                "interface {name:?}: role must be ASCII alphanumeric and the name at most {MAX_IFNAME} bytes"
            )));
        }
        Ok(name)
    }

    /// Creates a veth pair with end `a = (namespace role, interface role)` and end `b`, both
    /// created directly inside their namespaces and brought up. Returns the two endpoints.
    pub fn add_veth(&mut self, a: (&str, &str), b: (&str, &str)) -> Result<(Endpoint, Endpoint)> {
        self.add_veth_queues(a, b, 1)
    }

    /// Like [`Topology::add_veth`], with `queues` receive and transmit queues on both ends: the
    /// sending end spreads flows over its TX queues by hash, and a veth delivers on the peer's
    /// RX queue of the same number, so a multi-queue NIC's RSS can be tested on veth.
    pub fn add_veth_queues(
        &mut self,
        a: (&str, &str),
        b: (&str, &str),
        queues: u32,
    ) -> Result<(Endpoint, Endpoint)> {
        let q = queues.max(1).to_string();
        let ea = Endpoint {
            netns: self.ns(a.0)?.name().to_owned(),
            ifname: self.ifname(a.1)?,
        };
        let eb = Endpoint {
            netns: self.ns(b.0)?.name().to_owned(),
            ifname: self.ifname(b.1)?,
        };
        crate::cmd::ip(&[
            "link",
            "add",
            &ea.ifname,
            "netns",
            &ea.netns,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &eb.ifname,
            "netns",
            &eb.netns,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ])?;
        self.veths.push((ea.clone(), eb.clone()));
        for e in [&ea, &eb] {
            crate::cmd::ip(&["-n", &e.netns, "link", "set", &e.ifname, "up"])?;
        }
        Ok((ea, eb))
    }

    /// Turns interface `if_role` of namespace `ns_role` into an IGMP host port: address,
    /// `force_igmp_version`, unsolicited report intervals, IPv6 off, link up.
    pub fn configure_host(&self, ns_role: &str, if_role: &str, cfg: &HostConfig) -> Result<()> {
        let ns = self.ns(ns_role)?;
        let ifname = self.ifname(if_role)?;
        ns.sysctl(&format!("net.ipv6.conf.{ifname}.disable_ipv6"), "1")?;
        if let Some(v) = cfg.igmp_version {
            ns.sysctl(
                &format!("net.ipv4.conf.{ifname}.force_igmp_version"),
                &v.to_string(),
            )?;
        }
        if let Some(ms) = cfg.unsolicited_interval_ms {
            for v in ["igmpv2", "igmpv3"] {
                ns.sysctl(
                    &format!("net.ipv4.conf.{ifname}.{v}_unsolicited_report_interval"),
                    &ms.to_string(),
                )?;
            }
        }
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/{}", cfg.addr, cfg.prefix_len),
            "dev",
            &ifname,
        ])?;
        ns.ip(&["link", "set", &ifname, "up"])?;
        Ok(())
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Links first (by the name and namespace we created them with), then the namespaces
        // (dropped with `self.namespaces`). A link already gone with its peer is not an error.
        for (a, _) in self.veths.drain(..).rev() {
            let _ = crate::cmd::ip(&["-n", &a.netns, "link", "del", &a.ifname]);
        }
    }
}
