//! The differential harness (issue 3 §6): the same end-to-end scenario runs against any
//! [`SwitchUnderTest`] — the Linux bridge with `mcast_snooping 1` as reference, and the real
//! `xsnoop run` process — and yields a [`Matrix`] of what every host received. Two matrices are
//! compared with [`diff`]; every difference must then be explained by an RFC 4541 section.
//!
//! Scenarios drive real kernel hosts (joins, leaves, source filters through the socket API) and
//! count what arrives on each host interface with `AF_PACKET` captures, so the matrix reflects
//! frames on the wire, not either switch's own account of its state.

mod bed;
mod config;
mod matrix;
mod scenarios;
mod switches;

pub use bed::{Bed, QueryInjector, BURST};
pub use config::{PortSpec, ScenarioConfig};
pub use matrix::{diff, side_by_side, Difference, Matrix};
pub use scenarios::*;
pub use switches::{LinuxBridge, RunningSwitch, SwitchUnderTest, Xsnoop};
