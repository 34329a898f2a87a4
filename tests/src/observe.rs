//! An owned, comparable summary of a frame as *our* parser (`xsnoop_dataplane::wire::parse_frame`)
//! reads it. End-to-end tests compare what arrived on a port with what they expected using
//! `assert_eq!` on these values, so a mismatch prints both sides readably.

use std::net::Ipv4Addr;

use xsnoop_dataplane::wire::{parse_frame, IgmpRepr, IgmpVersion, WireError, L3};

pub use xsnoop_dataplane::wire::RecordKind as RecordType;

/// One IGMPv3 group record with its sources in wire order (RFC 3376 §4.2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Record type (RFC 3376 §4.2.12).
    pub record_type: RecordType,
    /// Multicast address.
    pub group: Ipv4Addr,
    /// Source addresses, in order.
    pub sources: Vec<Ipv4Addr>,
}

/// An IGMP/MRD message, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Igmp {
    /// Membership Query (RFC 3376 §4.1, RFC 2236 §2).
    Query {
        /// Version told apart by length and code (RFC 3376 §7.1).
        version: IgmpVersion,
        /// Raw Max Resp Code.
        max_resp_code: u8,
        /// Group field (0.0.0.0 for general queries).
        group: Ipv4Addr,
        /// S flag (v3).
        suppress: bool,
        /// QRV (v3).
        qrv: u8,
        /// QQIC (v3).
        qqic: u8,
        /// Sources (v3).
        sources: Vec<Ipv4Addr>,
    },
    /// IGMPv1 Membership Report 0x12 (RFC 1112).
    V1Report {
        /// Group reported.
        group: Ipv4Addr,
    },
    /// IGMPv2 Membership Report 0x16 (RFC 2236).
    V2Report {
        /// Group reported.
        group: Ipv4Addr,
    },
    /// IGMPv2 Leave Group 0x17 (RFC 2236).
    V2Leave {
        /// Group left.
        group: Ipv4Addr,
    },
    /// IGMPv3 Membership Report 0x22 (RFC 3376 §4.2).
    V3Report {
        /// Records in wire order.
        records: Vec<Record>,
    },
    /// MRD Advertisement 0x30 (RFC 4286 §4).
    MrdAdvertisement {
        /// Advertisement interval, seconds.
        adv_interval: u8,
        /// Query interval field.
        qqi: u16,
        /// Robustness variable field.
        qrv: u16,
    },
    /// MRD Solicitation 0x31 (RFC 4286 §5).
    MrdSolicitation,
    /// MRD Termination 0x32 (RFC 4286 §6).
    MrdTermination,
    /// Any other IGMP type.
    Unknown(u8),
}

/// What an IGMP frame looked like to our parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Destination MAC.
    pub eth_dst: [u8; 6],
    /// Source MAC.
    pub eth_src: [u8; 6],
    /// 802.1Q VLAN id and PCP, if tagged.
    pub vlan: Option<(u16, u8)>,
    /// IPv4 source.
    pub ip_src: Ipv4Addr,
    /// IPv4 destination.
    pub ip_dst: Ipv4Addr,
    /// IPv4 TTL.
    pub ttl: u8,
    /// IPv4 TOS.
    pub tos: u8,
    /// Router Alert option present (RFC 2113).
    pub router_alert: bool,
    /// The message.
    pub igmp: Igmp,
}

/// Why a frame could not be summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObserveError {
    /// Our parser refused the frame.
    Wire(WireError),
    /// It parsed, but is not IGMP (the classification is given).
    NotIgmp(String),
}

impl std::fmt::Display for ObserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObserveError::Wire(e) => write!(f, "parse_frame refused it: {e}"),
            ObserveError::NotIgmp(what) => write!(f, "not IGMP: {what}"),
        }
    }
}

impl std::error::Error for ObserveError {}

/// Parses `bytes` with `parse_frame` and summarises an IGMP/MRD frame.
pub fn observe(bytes: &[u8]) -> Result<Observed, ObserveError> {
    let f = parse_frame(bytes).map_err(ObserveError::Wire)?;
    let (ip, msg) = match f.l3 {
        L3::Igmp { ip, msg } => (ip, msg),
        other => return Err(ObserveError::NotIgmp(format!("{other:?}"))),
    };
    let igmp = match msg {
        IgmpRepr::Query(q) => Igmp::Query {
            version: q.version,
            max_resp_code: q.max_resp_code,
            group: q.group,
            suppress: q.suppress,
            qrv: q.qrv,
            qqic: q.qqic,
            sources: q.sources.iter().collect(),
        },
        IgmpRepr::ReportV1 { group } => Igmp::V1Report { group },
        IgmpRepr::ReportV2 { group } => Igmp::V2Report { group },
        IgmpRepr::LeaveV2 { group } => Igmp::V2Leave { group },
        IgmpRepr::ReportV3 { records } => Igmp::V3Report {
            records: records
                .iter()
                .map(|r| Record {
                    record_type: r.kind,
                    group: r.group,
                    sources: r.sources.iter().collect(),
                })
                .collect(),
        },
        IgmpRepr::MrdAdvertisement {
            adv_interval,
            qqi,
            qrv,
        } => Igmp::MrdAdvertisement {
            adv_interval,
            qqi,
            qrv,
        },
        IgmpRepr::MrdSolicitation => Igmp::MrdSolicitation,
        IgmpRepr::MrdTermination => Igmp::MrdTermination,
        IgmpRepr::Unknown { igmp_type } => Igmp::Unknown(igmp_type),
    };
    Ok(Observed {
        eth_dst: f.dst.0,
        eth_src: f.src.0,
        vlan: f.vlan.map(|t| (t.vid, t.pcp)),
        ip_src: ip.src,
        ip_dst: ip.dst,
        ttl: ip.ttl,
        tos: ip.tos,
        router_alert: ip.router_alert,
        igmp,
    })
}
