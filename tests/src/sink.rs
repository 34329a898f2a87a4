//! Receivers that absorb traffic at the driver: an XDP program that drops every frame, attached
//! to a host's interface with iproute2. For tests that push millions of frames through the
//! switch on a 2-CPU machine, where kernel stacks receiving them would starve the switch.

use crate::error::Result;
use crate::netns::Netns;

/// The compiled drop program (built by `build.rs`).
pub const XDP_DROP_OBJECT: &str = concat!(env!("OUT_DIR"), "/xdp_drop.bpf.o");

/// Attaches the drop program to `ifname` in `ns` (generic or native, whichever the driver
/// takes); it goes away with the interface.
pub fn attach_drop(ns: &Netns, ifname: &str) -> Result<()> {
    ns.ip(&[
        "link",
        "set",
        "dev",
        ifname,
        "xdp",
        "obj",
        XDP_DROP_OBJECT,
        "sec",
        "xdp",
    ])
    .map(|_| ())
}
