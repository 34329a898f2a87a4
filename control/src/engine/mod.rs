//! The snooping engine: no I/O, no clock reads.

pub mod membership;
pub mod model;
pub mod timers;
