//! xsnoop's testbed.
