//! The forwarding pipeline: the pure per-frame decision layer an AF_XDP worker calls.
//!
//! No sockets, threads or clocks: time is an argument, the published table and port map are
//! read-only inputs, the FDB is the worker's own state. Every rule is a unit test.
//!
//! - [`portmap`]: access/trunk ports, ingress VLAN classification, egress tagging ([`PortMap`],
//!   published through [`PortMapHandle`]).
//! - [`fdb`]: MAC learning with ageing, flushes and a capacity limit ([`Fdb`]).
//! - [`decide`](mod@decide): [`process`] (parse → VLAN → decide → learn), its flow memo
//!   ([`FlowMemo`]), and [`decide()`] → [`Decision`] (`Forward(Egress)` / `Punt` /
//!   `Drop(DropReason)`).
//! - [`policer`]: per-port control-plane policing of punted frames ([`PuntPolicer`]).
//! - [`streams`]: per-(VLAN, source, group) packet and byte counters ([`StreamCounters`]).
//! - [`rewrite`]: push / pop / retag an 802.1Q tag for each egress port, without allocating.
//! - [`reason`]: [`DropReason`] and [`ForwardReason`] with stable snake_case names, and
//!   per-worker [`Counters`].
//!
//! A worker's loop, per batch: load the table and the port map once, then for each frame call
//! [`process_with_memo`] (with a new [`FlowMemo`] per batch: [`process`] that lets the next
//! frame of a multicast flow reuse the decision), count it with [`Counters::record`], and for `Forward` copy the frame to every
//! egress port with [`rewrite::rewrite_into`] using [`Egress::tag_for`]; call [`Fdb::age`] about
//! once a second and [`Fdb::flush_port`] when a link goes down.

pub mod decide;
pub mod fdb;
pub mod policer;
pub mod portmap;
pub mod reason;
pub mod rewrite;
pub mod streams;

#[cfg(test)]
mod tests;

pub use decide::{
    classify_error, decide, process, process_with_memo, Decision, Egress, FlowMemo, Inputs,
};
pub use fdb::{Fdb, FdbConfig, FdbEntry, FdbNotice, FdbStats, Learn};
pub use policer::{PuntLimit, PuntPolicer};
pub use portmap::{EgressTag, PortMap, PortMapError, PortMapHandle, PortVlanConfig};
pub use reason::{Counters, DropReason, ForwardReason, ParseErrors};
pub use rewrite::{rewrite_in_place, rewrite_into, RewriteError};
pub use streams::{ipv4_addresses, Stream, StreamCounters, StreamStat, StreamsConfig};
