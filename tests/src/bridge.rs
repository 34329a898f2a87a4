//! The Linux bridge with IGMP snooping as the reference switch (issue 3 §6): every end-to-end
//! scenario also runs against `ip link add ... type bridge mcast_snooping 1`, so xsnoop's
//! behaviour is compared with a widely deployed implementation rather than with our own reading
//! of the RFCs alone.
//!
//! The bridge is created inside the test's switch namespace (it dies with it) and is deleted
//! explicitly on drop. Timer knobs are given as [`Duration`]s and written in the centiseconds
//! iproute2 expects. Untagged scenarios only: this kernel has no `vlan_filtering`.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use crate::cmd;
use crate::error::{Result, TestbedError};
use crate::netns::Netns;

/// Bridge-wide snooping knobs (`ip link ... type bridge mcast_*`). `None` keeps the kernel's
/// default (see snooping-anchors.md §a2 for them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// `mcast_snooping`: off makes the bridge flood all multicast like a hub.
    pub snooping: bool,
    /// `mcast_querier`: the bridge sends general queries (source 0.0.0.0).
    pub querier: bool,
    /// `mcast_igmp_version` (2 or 3): 3 is needed for (S,G) state from IGMPv3 source lists.
    pub igmp_version: Option<u8>,
    /// `mcast_query_interval` (RFC 3376 §8.2, kernel minimum 1 s).
    pub query_interval: Option<Duration>,
    /// `mcast_query_response_interval` (RFC 3376 §8.3); also how long the bridge keeps flooding
    /// after its querier is switched on.
    pub query_response_interval: Option<Duration>,
    /// `mcast_last_member_interval` (RFC 3376 §8.8).
    pub last_member_interval: Option<Duration>,
    /// `mcast_last_member_count` (RFC 3376 §8.9).
    pub last_member_count: Option<u32>,
    /// `mcast_membership_interval`: the group membership interval (RFC 3376 §8.4), its own knob
    /// in the bridge rather than derived from QI and QRI.
    pub membership_interval: Option<Duration>,
    /// `mcast_querier_interval`: other-querier-present timeout and mrouter port timeout.
    pub querier_interval: Option<Duration>,
    /// `mcast_startup_query_interval` (RFC 3376 §8.6, kernel minimum 1 s).
    pub startup_query_interval: Option<Duration>,
    /// `mcast_startup_query_count` (RFC 3376 §8.7).
    pub startup_query_count: Option<u32>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            snooping: true,
            querier: false,
            igmp_version: None,
            query_interval: None,
            query_response_interval: None,
            last_member_interval: None,
            last_member_count: None,
            membership_interval: None,
            querier_interval: None,
            startup_query_interval: None,
            startup_query_count: None,
        }
    }
}

/// Per-port multicast knob `mcast_router` (`bridge link set dev P mcast_router N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterMode {
    /// 0: never a router port.
    Never,
    /// 1: learned from queries, PIM hellos and MRD (the default).
    Learn,
    /// 2: always a router port (RFC 4541 §2.1.1(2) "ports configured by management").
    Always,
}

impl RouterMode {
    fn knob(self) -> &'static str {
        match self {
            RouterMode::Never => "0",
            RouterMode::Learn => "1",
            RouterMode::Always => "2",
        }
    }
}

/// One enslaved port and its per-port snooping knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgePort {
    /// Interface name inside the switch namespace.
    pub name: String,
    /// `mcast_fast_leave`: a v2 leave / v3 block removes the port at once.
    pub fast_leave: bool,
    /// `mcast_router`.
    pub router: RouterMode,
}

impl BridgePort {
    /// A port with the kernel defaults (no fast leave, router learned).
    pub fn new(name: &str) -> BridgePort {
        BridgePort {
            name: name.to_owned(),
            fast_leave: false,
            router: RouterMode::Learn,
        }
    }
}

/// One row of `bridge -j -d mdb show`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdbEntry {
    /// Port the entry is on.
    pub port: String,
    /// Group address.
    pub group: Ipv4Addr,
    /// Source of an (S,G) entry, `None` for the (*,G) entry.
    pub source: Option<Ipv4Addr>,
    /// `include` / `exclude` for (*,G) entries of an IGMPv3 bridge, when shown.
    pub filter_mode: Option<String>,
    /// `temp` or `permanent`.
    pub state: String,
    /// Flags such as `fast_leave`, `added_by_star_ex`, `blocked`.
    pub flags: Vec<String>,
}

/// A Linux bridge owned by a test: created in a namespace, deleted on drop.
#[derive(Debug)]
pub struct Bridge {
    netns: String,
    name: String,
    ports: Vec<String>,
}

fn centis(d: Duration) -> String {
    (d.as_millis() / 10).to_string()
}

impl Bridge {
    /// Creates bridge `name` in `ns` with `cfg`, enslaves `ports` (which must exist in `ns`) with
    /// their knobs and brings everything up. The querier is switched on last, after the timers,
    /// so its start-up flooding lasts one (short) query response interval.
    pub fn create(
        ns: &Netns,
        name: &str,
        cfg: &BridgeConfig,
        ports: &[BridgePort],
    ) -> Result<Bridge> {
        let mut args: Vec<String> = ["link", "add", name, "type", "bridge"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut knob = |k: &str, v: String| {
            args.push(k.to_owned());
            args.push(v);
        };
        knob("mcast_snooping", u8::from(cfg.snooping).to_string());
        if let Some(v) = cfg.igmp_version {
            knob("mcast_igmp_version", v.to_string());
        }
        let durations = [
            ("mcast_query_interval", cfg.query_interval),
            ("mcast_query_response_interval", cfg.query_response_interval),
            ("mcast_last_member_interval", cfg.last_member_interval),
            ("mcast_membership_interval", cfg.membership_interval),
            ("mcast_querier_interval", cfg.querier_interval),
            ("mcast_startup_query_interval", cfg.startup_query_interval),
        ];
        for (k, d) in durations {
            if let Some(d) = d {
                knob(k, centis(d));
            }
        }
        if let Some(n) = cfg.last_member_count {
            knob("mcast_last_member_count", n.to_string());
        }
        if let Some(n) = cfg.startup_query_count {
            knob("mcast_startup_query_count", n.to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ns.ip(&refs)?;
        let bridge = Bridge {
            netns: ns.name().to_owned(),
            name: name.to_owned(),
            ports: ports.iter().map(|p| p.name.clone()).collect(),
        };
        for p in ports {
            ns.ip(&["link", "set", &p.name, "master", name])?;
            ns.ip(&[
                "link",
                "set",
                &p.name,
                "type",
                "bridge_slave",
                "fastleave",
                if p.fast_leave { "on" } else { "off" },
                "mcast_router",
                p.router.knob(),
            ])?;
            ns.ip(&["link", "set", &p.name, "up"])?;
        }
        ns.ip(&["link", "set", name, "up"])?;
        if cfg.querier {
            ns.ip(&["link", "set", name, "type", "bridge", "mcast_querier", "1"])?;
        }
        Ok(bridge)
    }

    /// The bridge device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The enslaved ports, in creation order.
    pub fn ports(&self) -> &[String] {
        &self.ports
    }

    fn mdb_json(&self) -> Result<Value> {
        let out = cmd::run(
            "bridge",
            &[
                "-n",
                &self.netns,
                "-j",
                "-d",
                "mdb",
                "show",
                "dev",
                &self.name,
            ],
        )?;
        serde_json::from_str(&out)
            .map_err(|e| TestbedError::Parse(format!("bridge -j mdb show: {e}: {out}")))
    }

    /// The multicast database (`bridge -j -d mdb show dev NAME`), IPv4 entries only.
    pub fn mdb(&self) -> Result<Vec<MdbEntry>> {
        let v = self.mdb_json()?;
        let mut rows = Vec::new();
        for dev in v.as_array().into_iter().flatten() {
            for e in dev["mdb"].as_array().into_iter().flatten() {
                let group = match e["grp"].as_str().and_then(|g| g.parse().ok()) {
                    Some(g) => g,
                    None => continue, // IPv6 or L2 entry
                };
                let strs = |key: &str| -> Vec<String> {
                    e[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                };
                rows.push(MdbEntry {
                    port: e["port"].as_str().unwrap_or_default().to_owned(),
                    group,
                    source: e["src"].as_str().and_then(|s| s.parse().ok()),
                    filter_mode: e["filter_mode"].as_str().map(str::to_owned),
                    state: e["state"].as_str().unwrap_or_default().to_owned(),
                    flags: strs("flags"),
                });
            }
        }
        Ok(rows)
    }

    /// The multicast router ports (learned or configured), from the same `mdb show` output.
    pub fn router_ports(&self) -> Result<Vec<String>> {
        let v = self.mdb_json()?;
        let mut ports = Vec::new();
        for dev in v.as_array().into_iter().flatten() {
            if let Some(map) = dev["router"].as_object() {
                for list in map.values() {
                    for r in list.as_array().into_iter().flatten() {
                        if let Some(p) = r["port"].as_str() {
                            ports.push(p.to_owned());
                        }
                    }
                }
            }
        }
        Ok(ports)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Deleting the bridge releases its ports (they stay, and go with their veth pairs).
        if let Err(e) = cmd::ip(&["-n", &self.netns, "link", "del", &self.name]) {
            eprintln!("xsnoop-tests: cleanup of bridge {}: {e}", self.name);
        }
    }
}
