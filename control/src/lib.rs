//! xsnoop's control plane: the switch "CPU".
//!
//! The [`engine`] runs IGMP snooping as a pure, deterministic state machine: it takes
//! `(now, input)` and returns actions, and it computes the forwarding table the dataplane reads.
//! Time and I/O are injected, so every RFC rule is a fast unit test.

pub mod engine;
