//! What goes into the engine and what comes out of one step.

use std::net::Ipv4Addr;
use std::time::Duration;

use xsnoop_dataplane::{PortId, PortSet, VlanId};

use super::config::EngineConfig;
use super::events::Event;
use super::model::{Message, Version};

/// One thing that happened to the switch.
#[derive(Clone, Debug)]
pub enum Input<'a> {
    /// A decoded IGMP/PIM/MRD message arrived.
    Message {
        /// Ingress port.
        port: PortId,
        /// VLAN of the frame.
        vlan: VlanId,
        /// IP source address.
        src_ip: Ipv4Addr,
        /// IP destination address.
        dst_ip: Ipv4Addr,
        /// The message.
        msg: &'a Message<Ipv4Addr>,
    },
    /// A frame that failed validation: counted per reason, never learned, never forwarded
    /// (RFC 4541 §2.1.1(5)).
    Malformed {
        /// Ingress port.
        port: PortId,
        /// VLAN of the frame.
        vlan: VlanId,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Time passed: process everything due (deliver at [`super::Engine::next_deadline`]).
    Tick,
    /// A port's link came up.
    PortUp(PortId),
    /// A port's link went down.
    PortDown(PortId),
    /// A new configuration replaces the current one.
    Reconfigure(EngineConfig),
}

/// A query this switch sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySpec {
    /// Query version (never newer than the hosts it addresses can understand).
    pub version: Version,
    /// Source address (our querier address; 0.0.0.0 for proxy queries).
    pub src: Ipv4Addr,
    /// `None` for a general query.
    pub group: Option<Ipv4Addr>,
    /// Sources of a group-and-source-specific query.
    pub sources: Vec<Ipv4Addr>,
    /// Max response time.
    pub max_resp: Duration,
    /// The S flag (RFC 3376 §4.1.5).
    pub suppress: bool,
    /// Our robustness variable (QRV field).
    pub qrv: u8,
    /// Our query interval (QQIC field).
    pub qqi: Duration,
}

/// A query to send out of some ports of a VLAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// VLAN to send in.
    pub vlan: VlanId,
    /// Egress ports.
    pub ports: PortSet,
    /// The query.
    pub query: QuerySpec,
}

/// The result of one [`super::Engine::handle`] step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Where the received IGMP/PIM/MRD frame goes (never its ingress port).
    pub forward: PortSet,
    /// Queries this switch sends.
    pub transmit: Vec<Transmit>,
    /// Journal entries.
    pub events: Vec<Event>,
    /// The forwarding table changed: publish [`super::Engine::table`].
    pub table_changed: bool,
}
