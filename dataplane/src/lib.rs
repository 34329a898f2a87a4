//! xsnoop's dataplane: the switch "ASIC".
//!
//! It is fast, dumb and table-driven. It parses and builds frames ([`wire`]), and forwards them by
//! reading the immutable [`table::ForwardingTable`] that the control plane publishes. It never runs
//! a protocol state machine and never allocates per packet.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod afxdp;
pub mod fasthash;
pub mod fastpath;
pub mod forward;
pub mod packet_socket;
pub mod portset;
pub mod table;
pub mod wire;
pub mod xdp;

pub use portset::{PortId, PortSet, MAX_PORTS};
pub use table::{ForwardingTable, GroupEntry, MulticastRule, TableHandle, VlanId, VlanTable};
