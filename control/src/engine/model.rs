//! Vocabulary shared by every part of the engine, independent of the address family.
//!
//! IGMPv3 (RFC 3376) and MLDv2 (RFC 3810) share their router-side rules; everything here is generic
//! over the group/source address type so MLD can reuse the state machines unchanged.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Engine time: a monotonic duration since an epoch chosen by the caller. The engine never reads a
/// clock; tests drive it with exact values.
pub type Time = Duration;

/// A group or source address. Implemented for [`Ipv4Addr`]; IPv6 joins when MLD is built.
pub trait GroupAddress: Copy + Ord + Hash + Debug + Display + Send + Sync + 'static {}

impl GroupAddress for Ipv4Addr {}

/// Protocol generation of a message or of a compatibility mode.
///
/// For IGMP: v1 (RFC 1112), v2 (RFC 2236), v3 (RFC 3376). For MLD later: MLDv1 maps to `V2`
/// and MLDv2 to `V3` (RFC 3810 §8), which is why the compatibility logic is written once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// IGMPv1.
    V1,
    /// IGMPv2 (or MLDv1).
    V2,
    /// IGMPv3 (or MLDv2).
    V3,
}

/// Router-side filter mode of a group on a port (RFC 3376 §6.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterMode {
    /// Only the listed sources (with running timers) are forwarded.
    Include,
    /// Every source is forwarded except those in the exclude list.
    Exclude,
}

/// IGMPv3 group record types (RFC 3376 §4.2.12), the same six as MLDv2's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// MODE_IS_INCLUDE (current state, answer to a query).
    IsIn,
    /// MODE_IS_EXCLUDE (current state, answer to a query).
    IsEx,
    /// CHANGE_TO_INCLUDE_MODE (filter-mode change).
    ToIn,
    /// CHANGE_TO_EXCLUDE_MODE (filter-mode change).
    ToEx,
    /// ALLOW_NEW_SOURCES (source-list change).
    Allow,
    /// BLOCK_OLD_SOURCES (source-list change).
    Block,
}

/// One group record of a membership report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord<A> {
    /// What the record says.
    pub kind: RecordType,
    /// The group it is about.
    pub group: A,
    /// Its source list (possibly empty).
    pub sources: Vec<A>,
}

/// A parsed membership message as the engine sees it: decoded, checksummed and validated by the
/// dataplane's codecs, with wire details (encodings, checksums, aux data) already gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<A> {
    /// A Membership Query (RFC 3376 §4.1; version per §7.1).
    Query {
        /// Query version: v1 (max resp 0, 8 octets), v2 (8 octets), v3 (≥ 12 octets).
        version: Version,
        /// `None` for a general query; `Some(G)` for a group(-and-source)-specific query.
        group: Option<A>,
        /// Sources of a group-and-source-specific query (v3 only).
        sources: Vec<A>,
        /// Max response time, decoded (v1 queries: 10 s per RFC 3376 §7.3.1).
        max_resp: Duration,
        /// The S flag: "suppress router-side processing" (RFC 3376 §4.1.5).
        suppress: bool,
        /// The querier's robustness variable; 0 when absent (v1/v2) or unset.
        qrv: u8,
        /// The querier's query interval, decoded from QQIC; `None` when absent (v1/v2) or 0.
        qqi: Option<Duration>,
    },
    /// A membership report: v1 (0x12) and v2 (0x16) reports arrive as one `IsEx` record with no
    /// sources and their own `version`, v3 reports (0x22) with their records.
    Report {
        /// Which report type carried it.
        version: Version,
        /// Its group records.
        records: Vec<GroupRecord<A>>,
    },
    /// An IGMPv2 Leave Group (0x17) for a group.
    Leave {
        /// The group left.
        group: A,
    },
    /// A Multicast Router Discovery advertisement (RFC 4286): the sender is a multicast router.
    MrdAdvertisement,
    /// A PIMv2 Hello to ALL-PIM-ROUTERS: the sender is a multicast router.
    PimHello,
    /// An IGMP type this switch does not know: flooded, never learned (RFC 4541 §2.1.1(4)).
    Unknown {
        /// The IGMP type octet.
        igmp_type: u8,
    },
}

/// A query the membership state machine wants sent on its port (only when we are the querier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRequest<A> {
    /// The group queried.
    pub group: A,
    /// Empty for a group-specific query Q(G); otherwise Q(G, sources).
    pub sources: Vec<A>,
    /// The S flag ("suppress router-side processing") to set (RFC 3376 §6.6.3.1/§6.6.3.2).
    pub suppress: bool,
}

/// Who is querying on a VLAN, as far as the per-port state machines care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuerierRole {
    /// This switch is the elected querier: it sends Q(G) / Q(G,S) itself (RFC 3376 §6.4, §6.6.3).
    Us,
    /// Another querier is present: we lower timers when we see its group-specific queries
    /// (RFC 3376 §6.6.1) instead of querying.
    Other,
    /// Nobody queries: leaves lower the port-group timer to the last member query time (as the
    /// Linux bridge does), since no query will come to confirm remaining members.
    Nobody,
}
