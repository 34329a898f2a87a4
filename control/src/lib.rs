//! xsnoop's control plane: the switch "CPU".
//!
//! The [`engine`] runs IGMP snooping as a pure, deterministic state machine: it takes
//! `(now, input)` and returns actions, and it computes the forwarding table the dataplane reads.
//! Time and I/O are injected, so every RFC rule is a fast unit test. [`punt`] and [`inject`] are
//! the boundary with the dataplane's wire codecs: frames in, queries out.

pub mod config_file;
pub mod ctl;
pub mod engine;
pub mod inject;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod plane;
pub mod punt;
pub mod show;
pub mod snoop;
pub mod switch;
