//! Helpers shared by the engine's integration tests: a small switch, message builders and an
//! invariant check after every step.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use xsnoop_control::engine::model::{GroupRecord, Message, RecordType, Time, Version};
use xsnoop_control::engine::{
    Engine, EngineConfig, Input, Output, PortConfig, PortVlans, VlanConfig,
};
use xsnoop_dataplane::{PortId, PortSet};

pub const VLAN: u16 = 10;
pub const OTHER_VLAN: u16 = 20;

pub fn s(x: u64) -> Duration {
    Duration::from_secs(x)
}

pub fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

pub fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

pub fn ps(ports: &[PortId]) -> PortSet {
    ports.iter().copied().collect()
}

pub fn g1() -> Ipv4Addr {
    ip(239, 1, 1, 1)
}

pub fn g2() -> Ipv4Addr {
    ip(239, 2, 2, 2)
}

/// Ports 0..=4 in VLAN 10 (port 4 a trunk also carrying VLAN 20), port 5 only in VLAN 20.
pub fn config() -> EngineConfig {
    let mut ports: Vec<PortConfig> = (0..4)
        .map(|i| PortConfig::access(&format!("p{i}"), VLAN))
        .collect();
    ports.push(PortConfig {
        vlans: PortVlans::Trunk(vec![VLAN, OTHER_VLAN]),
        ..PortConfig::access("trunk4", VLAN)
    });
    ports.push(PortConfig::access("p5", OTHER_VLAN));
    EngineConfig {
        ports,
        vlans: vec![VlanConfig::new(VLAN), VlanConfig::new(OTHER_VLAN)],
        ..EngineConfig::default()
    }
}

/// `config()` with our querier on in VLAN 10 at 10.0.0.5.
pub fn querier_config() -> EngineConfig {
    let mut c = config();
    c.vlans[0].querier = true;
    c.vlans[0].querier_address = ip(10, 0, 0, 5);
    c
}

pub fn v2_report(group: Ipv4Addr) -> Message<Ipv4Addr> {
    report(Version::V2, RecordType::IsEx, group, &[])
}

pub fn report(
    version: Version,
    kind: RecordType,
    group: Ipv4Addr,
    sources: &[Ipv4Addr],
) -> Message<Ipv4Addr> {
    Message::Report {
        version,
        records: vec![GroupRecord {
            kind,
            group,
            sources: sources.to_vec(),
        }],
    }
}

pub fn general_query(version: Version) -> Message<Ipv4Addr> {
    Message::Query {
        version,
        group: None,
        sources: vec![],
        max_resp: s(10),
        suppress: false,
        qrv: if version == Version::V3 { 2 } else { 0 },
        qqi: (version == Version::V3).then_some(s(125)),
    }
}

pub fn group_query(group: Ipv4Addr, max_resp: Duration) -> Message<Ipv4Addr> {
    Message::Query {
        version: Version::V2,
        group: Some(group),
        sources: vec![],
        max_resp,
        suppress: false,
        qrv: 0,
        qqi: None,
    }
}

/// An engine plus a clock, checking invariants after every step.
pub struct Switch {
    pub engine: Engine,
    pub now: Time,
}

impl Switch {
    pub fn new(config: EngineConfig) -> Self {
        Switch {
            engine: Engine::new(config, Duration::ZERO).unwrap(),
            now: Duration::ZERO,
        }
    }

    pub fn step(&mut self, input: Input<'_>) -> Output {
        let out = self.engine.handle(self.now, input);
        let bad = self.engine.invariant_violations();
        assert!(
            bad.is_empty(),
            "invariants broken at {:?}: {bad:?}",
            self.now
        );
        assert_eq!(self.engine.table(), &self.engine.recompute_table());
        out
    }

    pub fn msg(
        &mut self,
        port: PortId,
        vlan: u16,
        src: Ipv4Addr,
        msg: &Message<Ipv4Addr>,
    ) -> Output {
        self.step(Input::Message {
            port,
            vlan,
            src_ip: src,
            dst_ip: ip(224, 0, 0, 1),
            msg,
        })
    }

    /// A host on `port` in VLAN 10 sends `msg`.
    pub fn host(&mut self, port: PortId, msg: &Message<Ipv4Addr>) -> Output {
        self.msg(port, VLAN, ip(10, 0, 0, 100 + port as u8), msg)
    }

    /// Advances the clock to `at` and ticks; collects every output of the deadlines on the way.
    pub fn run_until(&mut self, at: Time) -> Vec<Output> {
        let mut outs = Vec::new();
        while let Some(d) = self.engine.next_deadline() {
            if d > at {
                break;
            }
            self.now = d.max(self.now);
            outs.push(self.step(Input::Tick));
        }
        self.now = at.max(self.now);
        outs.push(self.step(Input::Tick));
        outs
    }

    pub fn members(&self, vlan: u16, group: Ipv4Addr) -> Option<PortSet> {
        self.engine
            .table()
            .vlans
            .get(&vlan)?
            .groups
            .get(&group)
            .map(|g| g.any_source)
    }
}
