//! Frame codecs: zero-copy views over `&[u8]` and builders into `&mut [u8]`.
//!
//! Modelled on smoltcp's `wire`: per layer a `Packet<T: AsRef<[u8]>>` view whose single
//! `check_len` (called by `new_checked`) makes every accessor panic-free, setters on
//! `T: AsMut<[u8]>`, and a `Repr` with `parse` / `emit` / `buffer_len`. Nothing allocates;
//! source lists and group records are iterators over the frame's own bytes.
//!
//! Public API:
//! - [`parse_frame`] → [`Frame`] { dst, src, vlan, ethertype, l3_offset, l3: [`L3`] } with
//!   `L3::Igmp { ip: Ipv4Info, msg: IgmpRepr }`, `L3::PimHello { ip }`, `L3::Ipv4 { ip, protocol }`,
//!   `L3::Other { ethertype }`. The one classifier for the dataplane and the punt path.
//! - [`WireError`] (+ [`WireError::reason`], a stable counter label) and [`Layer`].
//! - Views: [`EthernetFrame`], [`VlanHeader`], [`Ipv4Packet`], [`IgmpPacket`]; reprs
//!   [`EthernetRepr`], [`Ipv4Repr`]/[`Ipv4Info`], [`IgmpRepr`] (queries v1/v2/v3 as [`IgmpQuery`],
//!   reports v1/v2/v3, leave, MRD advertisement/solicitation/termination, unknown types), with
//!   [`SourceList`], [`RecordList`], [`GroupRecord`], [`RecordKind`].
//! - [`timecode`]: Max Resp Code / QQIC float encodings, both directions.
//! - [`mcast`]: well-known groups, [`mcast::multicast_mac`] (RFC 1112 §6.4), `is_multicast`,
//!   `is_link_local_multicast`.
//! - Builders ([`FrameBuilder`]): [`QueryBuilder`], [`ReportV1Builder`], [`ReportV2Builder`],
//!   [`LeaveBuilder`], [`ReportV3Builder`] (with [`RecordSpec`]), [`MrdAdvertisementBuilder`],
//!   [`RawIgmpBuilder`], [`PimHelloBuilder`], [`UdpDataBuilder`]; [`to_vec`] for tests.
//! - [`checksum`]: the Internet checksum.

mod builder;
mod bytes;
pub mod checksum;
mod error;
pub mod ethernet;
mod frame;
pub mod igmp;
pub mod ipv4;
pub mod mcast;
pub mod pim;
pub mod timecode;
mod udp;
pub mod vlan;

#[cfg(test)]
mod tests;

pub use builder::{
    to_vec, FrameBuilder, LeaveBuilder, MrdAdvertisementBuilder, PimHelloBuilder, QueryBuilder,
    RawIgmpBuilder, ReportV1Builder, ReportV2Builder, ReportV3Builder, UdpDataBuilder, IGMP_TOS,
};
pub use error::{Layer, WireError};
pub use ethernet::{EthernetFrame, EthernetRepr, MacAddr};
pub use frame::{parse_frame, Frame, L3};
pub use igmp::{
    GroupRecord, IgmpPacket, IgmpQuery, IgmpRepr, IgmpVersion, RecordIter, RecordKind, RecordList,
    RecordSpec, SourceIter, SourceList,
};
pub use ipv4::{Ipv4Info, Ipv4Packet, Ipv4Repr};
pub use mcast::{is_link_local_multicast, is_multicast, multicast_mac};
pub use vlan::{VlanHeader, VlanTag};
