//! A small switch configuration decoded from fuzz bytes: 4 ports, 1 or 2 VLANs (VLAN 1 always
//! has our querier), tiny table limits and short timers, so that state builds up, overflows and
//! expires within a few dozen inputs.

use std::net::Ipv4Addr;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use xsnoop_control::engine::model::Version;
use xsnoop_control::engine::timers::TimerConfig;
use xsnoop_control::engine::{
    EngineConfig, MrouterMode, PortConfig, PortVlans, StaticGroup, TableFullPolicy, VlanConfig,
};

/// The VLAN that always exists and always has our querier on.
pub const VLAN_A: u16 = 1;
/// The optional second VLAN.
pub const VLAN_B: u16 = 2;
/// A VLAN the switch never carries (frames claiming it must change nothing harmful).
pub const VLAN_UNKNOWN: u16 = 3;
/// Number of switch ports.
pub const PORTS: u16 = 4;

/// Groups the inputs draw from: two ASM groups, one SSM group, a link-local group (never
/// snooped, RFC 4541 §2.1.2(2)), ALL-SYSTEMS and a unicast address posing as a group.
pub const GROUPS: [Ipv4Addr; 6] = [
    Ipv4Addr::new(239, 1, 1, 1),
    Ipv4Addr::new(239, 1, 1, 2),
    Ipv4Addr::new(232, 1, 1, 1),
    Ipv4Addr::new(224, 0, 0, 251),
    Ipv4Addr::new(224, 0, 0, 1),
    Ipv4Addr::new(10, 1, 1, 1),
];

/// Sources the inputs draw from: three hosts plus two impossible ones (unspecified, multicast)
/// that records must never install.
pub const SOURCES: [Ipv4Addr; 5] = [
    Ipv4Addr::new(10, 9, 0, 1),
    Ipv4Addr::new(10, 9, 0, 2),
    Ipv4Addr::new(10, 9, 0, 3),
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::new(239, 9, 9, 9),
];

/// IP sources of control frames: a proxy querier (0.0.0.0), routers below and above our
/// querier address, our own address, and a host.
pub const SENDERS: [Ipv4Addr; 5] = [
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(10, 0, 0, 5),
    Ipv4Addr::new(10, 0, 0, 9),
    Ipv4Addr::new(10, 0, 0, 101),
];

/// Our querier address when not a proxy querier.
pub const OUR_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// Short or RFC-default timers; always a valid combination (QRI < QI, startup ≤ QI).
fn timers(u: &mut Unstructured<'_>) -> Result<TimerConfig> {
    let robustness = u.int_in_range(1..=3)?;
    let query_interval = *u.choose(&[ms(125_000), ms(20_000), ms(4_000)])?;
    let query_response_interval = *u
        .choose(&[ms(10_000), ms(1_000)])?
        .min(&(query_interval / 2));
    Ok(TimerConfig {
        robustness,
        query_interval,
        query_response_interval,
        last_member_query_interval: *u.choose(&[ms(1_000), ms(200)])?,
        last_member_query_count: u.int_in_range(1..=3)?,
        startup_query_count: u.int_in_range(1..=3)?,
        startup_query_interval: query_interval / 4,
        membership_interval: None,
    })
}

fn vlan(u: &mut Unstructured<'_>, id: u16, querier: bool) -> Result<VlanConfig> {
    let mut v = VlanConfig::new(id);
    v.snooping = id == VLAN_A || u.ratio(7, 8)?;
    v.querier = querier;
    v.querier_address = if u.ratio(3, 4)? {
        OUR_ADDRESS
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    v.igmp_version = if u.arbitrary()? {
        Version::V3
    } else {
        Version::V2
    };
    v.timers = timers(u)?;
    v.table_full = if u.arbitrary()? {
        TableFullPolicy::Flood
    } else {
        TableFullPolicy::Deny
    };
    v.max_groups = u.int_in_range(0..=3)?;
    v.flood_unregistered = u.ratio(1, 4)?;
    Ok(v)
}

fn port(u: &mut Unstructured<'_>, index: u16, two_vlans: bool) -> Result<PortConfig> {
    let vlans = match (index, two_vlans) {
        (0 | 1, _) | (_, false) => PortVlans::Access(VLAN_A),
        (2, true) => u
            .choose(&[
                PortVlans::Access(VLAN_A),
                PortVlans::Access(VLAN_B),
                PortVlans::Trunk(vec![VLAN_A, VLAN_B]),
            ])?
            .clone(),
        _ => u
            .choose(&[
                PortVlans::Trunk(vec![VLAN_A, VLAN_B]),
                PortVlans::Access(VLAN_B),
            ])?
            .clone(),
    };
    Ok(PortConfig {
        name: format!("p{index}"),
        vlans,
        fast_leave: u.ratio(1, 3)?,
        mrouter: *u.choose(&[
            MrouterMode::Auto,
            MrouterMode::Auto,
            MrouterMode::Auto,
            MrouterMode::Always,
            MrouterMode::Never,
        ])?,
        flood_reports: u.ratio(1, 4)?,
        flood_unregistered: u.ratio(1, 4)?,
        max_groups: u.int_in_range(0..=3)?,
    })
}

/// Up to two static groups, each on a port that carries its VLAN (so validation accepts them).
fn statics(u: &mut Unstructured<'_>, ports: &[PortConfig]) -> Result<Vec<StaticGroup>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let port: u16 = u.int_in_range(0..=PORTS - 1)?;
        let Some(vlan) = ports
            .get(usize::from(port))
            .and_then(|p| p.vlans.as_slice().first().copied())
        else {
            continue;
        };
        let group = *u.choose(&GROUPS[..3])?;
        let sources = if u.arbitrary()? {
            vec![SOURCES[0]]
        } else {
            vec![]
        };
        out.push(StaticGroup {
            vlan,
            port,
            group,
            sources,
        });
    }
    Ok(out)
}

/// A whole configuration. VLAN 1 always queries ("one of them querier"); VLAN 2, when present,
/// may or may not.
pub fn config(u: &mut Unstructured<'_>) -> Result<EngineConfig> {
    let two_vlans: bool = u.arbitrary()?;
    let mut vlans = vec![vlan(u, VLAN_A, true)?];
    if two_vlans {
        let q = u.arbitrary()?;
        vlans.push(vlan(u, VLAN_B, q)?);
    }
    let mut ports = Vec::new();
    for i in 0..PORTS {
        ports.push(port(u, i, two_vlans)?);
    }
    let static_groups = statics(u, &ports)?;
    Ok(EngineConfig {
        ports,
        vlans,
        max_groups: u.int_in_range(0..=5)?,
        max_sources: u.int_in_range(0..=4)?,
        static_groups,
    })
}
