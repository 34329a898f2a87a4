//! The engine's queries become frames on the wire.
//!
//! The engine decides *what* to ask (a [`QuerySpec`]); this module decides how it looks on the
//! wire: destination per RFC 3376 §4.1.12, Router Alert, TTL 1, checksums, and the 802.1Q tag a
//! trunk port needs.

use xsnoop_dataplane::wire::{
    FrameBuilder, IgmpVersion, MacAddr, QueryBuilder, VlanTag, WireError,
};

use crate::engine::model::Version;
use crate::engine::QuerySpec;

/// Largest query frame we build: headers plus a v3 query listing every source that fits in a
/// 1500-octet IP packet.
pub const MAX_QUERY_FRAME: usize = 1518;

fn wire_version(v: Version) -> IgmpVersion {
    match v {
        Version::V1 => IgmpVersion::V1,
        Version::V2 => IgmpVersion::V2,
        Version::V3 => IgmpVersion::V3,
    }
}

/// Builds `query` into `buf`, sent from `src_mac`, tagged with `vlan` when the egress port needs
/// a tag. Returns the frame length.
pub fn build_query(
    query: &QuerySpec,
    src_mac: MacAddr,
    vlan: Option<VlanTag>,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let version = wire_version(query.version);
    QueryBuilder {
        version,
        src_mac,
        src_ip: query.src,
        // An IGMPv1 query is always general (RFC 1112 App. I).
        group: if version == IgmpVersion::V1 {
            None
        } else {
            query.group
        },
        sources: if version == IgmpVersion::V3 {
            &query.sources
        } else {
            &[]
        },
        max_resp: query.max_resp,
        s_flag: query.suppress,
        // The QRV field holds 3 bits; larger robustness values are sent as 0 (RFC 3376 §4.1.6).
        qrv: if query.qrv > 7 { 0 } else { query.qrv },
        qqi: query.qqi,
        vlan,
    }
    .emit(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;
    use xsnoop_dataplane::wire::{parse_frame, IgmpRepr, L3};

    fn spec(version: Version, group: Option<Ipv4Addr>, sources: Vec<Ipv4Addr>) -> QuerySpec {
        QuerySpec {
            version,
            src: Ipv4Addr::new(10, 0, 0, 1),
            group,
            sources,
            max_resp: Duration::from_secs(10),
            suppress: false,
            qrv: 9,
            qqi: Duration::from_secs(125),
        }
    }

    fn built(q: &QuerySpec) -> Vec<u8> {
        let mut buf = [0u8; MAX_QUERY_FRAME];
        let n = build_query(q, MacAddr([2, 0, 0, 0, 0, 1]), None, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn group_and_source_query_goes_to_the_group_with_its_sources() {
        let g = Ipv4Addr::new(239, 1, 2, 3);
        let s = Ipv4Addr::new(10, 9, 9, 9);
        let frame = built(&spec(Version::V3, Some(g), vec![s]));
        let f = parse_frame(&frame).unwrap();
        let L3::Igmp {
            ip,
            msg: IgmpRepr::Query(q),
        } = f.l3
        else {
            panic!("not a query: {:?}", f.l3)
        };
        assert_eq!((ip.dst, ip.ttl, ip.router_alert), (g, 1, true));
        assert_eq!(q.group, g);
        assert_eq!(q.sources.iter().collect::<Vec<_>>(), vec![s]);
        assert_eq!(q.qrv, 0, "a robustness above 7 is sent as 0");
    }

    #[test]
    fn v2_query_never_carries_sources() {
        let g = Ipv4Addr::new(239, 1, 2, 3);
        let frame = built(&spec(
            Version::V2,
            Some(g),
            vec![Ipv4Addr::new(10, 0, 0, 5)],
        ));
        let f = parse_frame(&frame).unwrap();
        let L3::Igmp {
            msg: IgmpRepr::Query(q),
            ..
        } = f.l3
        else {
            panic!("not a query")
        };
        assert_eq!(
            (q.version, q.group, q.sources.len()),
            (IgmpVersion::V2, g, 0)
        );
    }
}
