//! What a scenario asks of a switch, and how it reads as xsnoop TOML and as bridge knobs.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::bridge::{BridgeConfig, BridgePort, RouterMode};

/// One switch port of a scenario and its per-port snooping settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Interface name inside the switch namespace.
    pub name: String,
    /// Leaves take effect at once (one host behind the port).
    pub fast_leave: bool,
    /// Statically a multicast-router port (RFC 4541 §2.1.1(2), "configured by management").
    pub mrouter_always: bool,
}

/// Everything a scenario asks of the switch, in terms both implementations understand: one
/// untagged VLAN, RFC 3376 §8 timers, per-port knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioConfig {
    /// The switch is the snooping querier.
    pub querier: bool,
    /// Source of xsnoop's queries (the bridge always queries from 0.0.0.0).
    pub querier_address: Ipv4Addr,
    /// Version of the switch's queries and of its group state (2 or 3).
    pub igmp_version: u8,
    /// Query interval (RFC 3376 §8.2).
    pub query_interval: Duration,
    /// Query response interval (RFC 3376 §8.3).
    pub query_response_interval: Duration,
    /// Last member query interval (RFC 3376 §8.8).
    pub last_member_interval: Duration,
    /// Last member query count (RFC 3376 §8.9).
    pub last_member_count: u32,
    /// Startup query interval (RFC 3376 §8.6).
    pub startup_query_interval: Duration,
    /// Group membership interval (RFC 3376 §8.4), set explicitly on both switches.
    pub membership_interval: Duration,
    /// Other querier present interval (RFC 3376 §8.5), the bridge's `mcast_querier_interval`.
    pub other_querier_interval: Duration,
    /// The switch ports.
    pub ports: Vec<PortSpec>,
}

impl ScenarioConfig {
    /// Short timers so RFC behaviour fits in seconds: QI 2 s, QRI 1 s, LMQI 200 ms × 2,
    /// GMI 5 s (= 2 × 2 + 1, RFC 3376 §8.4), other querier present 4.5 s (§8.5).
    pub fn short(ports: &[String]) -> ScenarioConfig {
        ScenarioConfig {
            querier: true,
            querier_address: Ipv4Addr::new(10, 0, 0, 254),
            igmp_version: 3,
            query_interval: Duration::from_secs(2),
            query_response_interval: Duration::from_secs(1),
            last_member_interval: Duration::from_millis(200),
            last_member_count: 2,
            startup_query_interval: Duration::from_secs(1),
            membership_interval: Duration::from_secs(5),
            other_querier_interval: Duration::from_millis(4500),
            ports: ports
                .iter()
                .map(|p| PortSpec {
                    name: p.clone(),
                    fast_leave: false,
                    mrouter_always: false,
                })
                .collect(),
        }
    }

    /// Last member query time (RFC 3376 §8.14): LMQC × LMQI.
    pub fn last_member_query_time(&self) -> Duration {
        self.last_member_interval * self.last_member_count
    }

    /// The configuration as an xsnoop TOML file (format of `docs/xsnoop.example.toml`).
    pub fn to_xsnoop_toml(&self) -> String {
        let ms = |d: Duration| format!("\"{}ms\"", d.as_millis());
        let mut s = String::from("[snooping]\n");
        s += &format!("querier = {}\n", self.querier);
        s += &format!("querier_address = \"{}\"\n", self.querier_address);
        s += &format!("igmp_version = {}\n", self.igmp_version);
        s += &format!("query_interval = {}\n", ms(self.query_interval));
        s += &format!(
            "query_response_interval = {}\n",
            ms(self.query_response_interval)
        );
        s += &format!(
            "last_member_query_interval = {}\n",
            ms(self.last_member_interval)
        );
        s += &format!("last_member_query_count = {}\n", self.last_member_count);
        s += &format!(
            "startup_query_interval = {}\n",
            ms(self.startup_query_interval)
        );
        s += &format!("membership_interval = {}\n", ms(self.membership_interval));
        for p in &self.ports {
            s += &format!("\n[[port]]\nname = \"{}\"\n", p.name);
            if p.fast_leave {
                s += "fast_leave = true\n";
            }
            if p.mrouter_always {
                s += "mrouter = \"always\"\n";
            }
        }
        s
    }

    /// The same configuration as Linux bridge knobs.
    pub fn to_bridge(&self) -> (BridgeConfig, Vec<BridgePort>) {
        let cfg = BridgeConfig {
            snooping: true,
            querier: self.querier,
            igmp_version: Some(self.igmp_version),
            query_interval: Some(self.query_interval),
            query_response_interval: Some(self.query_response_interval),
            last_member_interval: Some(self.last_member_interval),
            last_member_count: Some(self.last_member_count),
            membership_interval: Some(self.membership_interval),
            querier_interval: Some(self.other_querier_interval),
            startup_query_interval: Some(self.startup_query_interval),
            startup_query_count: None,
        };
        let ports = self
            .ports
            .iter()
            .map(|p| BridgePort {
                name: p.name.clone(),
                fast_leave: p.fast_leave,
                router: if p.mrouter_always {
                    RouterMode::Always
                } else {
                    RouterMode::Learn
                },
            })
            .collect();
        (cfg, ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsnoop_control::config_file::SwitchConfig;
    use xsnoop_control::engine::MrouterMode;

    fn cfg() -> ScenarioConfig {
        let mut c = ScenarioConfig::short(&["a1".into(), "a2".into(), "a3".into()]);
        c.querier_address = Ipv4Addr::new(10, 9, 0, 254);
        c.ports[1].fast_leave = true;
        c.ports[2].mrouter_always = true;
        c
    }

    #[test]
    fn xsnoop_toml_is_read_back_by_xsnoops_own_parser_with_every_value() {
        let c = cfg();
        let parsed = SwitchConfig::parse(&c.to_xsnoop_toml()).unwrap();
        let e = parsed.engine;
        let names: Vec<&str> = e.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a1", "a2", "a3"]);
        let fast: Vec<bool> = e.ports.iter().map(|p| p.fast_leave).collect();
        assert_eq!(fast, [false, true, false]);
        assert_eq!(e.ports[2].mrouter, MrouterMode::Always);
        assert_ne!(e.ports[0].mrouter, MrouterMode::Always);
        assert_eq!(e.vlans.len(), 1);
        let v = &e.vlans[0];
        assert!(v.querier);
        assert_eq!(v.querier_address, c.querier_address);
        let t = &v.timers;
        assert_eq!(t.query_interval, c.query_interval);
        assert_eq!(t.query_response_interval, c.query_response_interval);
        assert_eq!(t.last_member_query_interval, c.last_member_interval);
        assert_eq!(u32::from(t.last_member_query_count), c.last_member_count);
        assert_eq!(t.startup_query_interval, c.startup_query_interval);
        assert_eq!(t.group_membership_interval(), c.membership_interval);
        // The bridge's other-querier knob matches what xsnoop derives (RFC 3376 §8.5).
        assert_eq!(t.other_querier_present_interval(), c.other_querier_interval);
    }

    #[test]
    fn bridge_knobs_carry_the_same_values() {
        let c = cfg();
        let (b, ports) = c.to_bridge();
        assert!(b.snooping && b.querier);
        assert_eq!(b.igmp_version, Some(3));
        assert_eq!(b.membership_interval, Some(c.membership_interval));
        assert_eq!(b.last_member_count, Some(2));
        let modes: Vec<(bool, RouterMode)> =
            ports.iter().map(|p| (p.fast_leave, p.router)).collect();
        assert_eq!(
            modes,
            [
                (false, RouterMode::Learn),
                (true, RouterMode::Learn),
                (false, RouterMode::Always)
            ]
        );
    }
}
