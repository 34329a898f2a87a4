//! The snooping engine: no I/O, no clock reads.
//!
//! [`Engine`] is the whole engine's face: `(now, input) -> Output`. Behind it, one module per
//! job: configuration ([`config`]), the querier ([`querier`]), router ports ([`mrouter`]),
//! control-frame forwarding ([`igmp_forward`]), the table fold ([`table_builder`]), the journal
//! ([`events`]), counters ([`stats`]), the operator views ([`mdb`]), runtime changes
//! ([`runtime`]) and publication of the table ([`publish`]).
//!
//! The caller's loop: build with [`Engine::new`]; for every punted frame, link change, new
//! configuration, or when the clock reaches [`Engine::next_deadline`], call [`Engine::handle`]
//! with the current time; then send [`Output::forward`] (the received frame's egress) and every
//! [`Output::transmit`], append [`Output::events`] to the journal, and publish
//! [`Engine::table`] when [`Output::table_changed`], through a [`Publisher`] so a change costs
//! what it touches rather than a copy of the whole table ([`publish`]). Right after
//! [`Engine::new`] a querier VLAN has its first startup query due at once, so tick immediately.

pub mod addr;
pub mod config;
pub mod core;
pub mod deadlines;
pub mod events;
pub mod igmp_forward;
pub mod io;
pub mod mdb;
pub mod membership;
pub mod model;
pub mod mrouter;
pub mod publish;
pub mod querier;
pub mod runtime;
pub mod state;
pub mod stats;
pub mod table_builder;
pub mod timers;
pub mod topology;

pub use self::config::{
    ConfigError, EngineConfig, MrouterMode, PortConfig, PortVlans, StaticGroup, TableFullPolicy,
    VlanConfig,
};
pub use self::core::views::{PortView, VlanView};
pub use self::core::{Engine, TableWork};
pub use self::events::{Event, EventKind};
pub use self::io::{Input, Output, QuerySpec, Transmit};
pub use self::mdb::{MdbFilterMode, MdbOrigin, MdbRow};
pub use self::mrouter::MrouterRow;
pub use self::publish::{PublishReport, Publisher, TableDelta};
pub use self::querier::QuerierStatus;
pub use self::runtime::{Command, CommandError};
pub use self::stats::Stats;
