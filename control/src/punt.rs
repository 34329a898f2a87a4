//! Frames punted to the switch CPU become engine messages.
//!
//! This is the boundary between the dataplane's wire codecs and the engine's address-family-
//! independent vocabulary: encodings (Max Resp Code, QQIC), checksums and aux data end here.

use std::net::Ipv4Addr;

use xsnoop_dataplane::wire::{parse_frame, IgmpQuery, IgmpRepr, IgmpVersion, RecordKind, L3};
use xsnoop_dataplane::{PortId, VlanId};

use crate::engine::model::{GroupRecord, Message, RecordType, Time, Version};
use crate::engine::{Engine, Input, Output};

/// An IGMP/PIM/MRD message ready for [`crate::engine::Input::Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Punted {
    /// IP source of the frame.
    pub src_ip: Ipv4Addr,
    /// IP destination of the frame.
    pub dst_ip: Ipv4Addr,
    /// The message.
    pub msg: Message<Ipv4Addr>,
    /// v3 group records of unknown type that were skipped (RFC 3376 §4.2.12: ignore them).
    pub unknown_records: usize,
}

/// The engine's view of a classified frame; `None` for frames the engine does not handle
/// (multicast data, unicast, non-IP).
pub fn punt(l3: &L3<'_>) -> Option<Punted> {
    match l3 {
        L3::Igmp { ip, msg } => {
            let (msg, unknown_records) = igmp_message(msg);
            Some(Punted {
                src_ip: ip.src,
                dst_ip: ip.dst,
                msg,
                unknown_records,
            })
        }
        L3::PimHello { ip } => Some(Punted {
            src_ip: ip.src,
            dst_ip: ip.dst,
            msg: Message::PimHello,
            unknown_records: 0,
        }),
        L3::Ipv4 { .. } | L3::Other { .. } => None,
    }
}

/// Hands one frame that arrived on (`port`, `vlan`) to the engine: parsed, validated and
/// translated, or counted as malformed under its reason (RFC 4541 §2.1.1(5): never learned).
/// `None` when the frame is not for the engine (data, unicast, non-IP). The one path every
/// caller (the daemon, benchmarks, fuzzing) uses, so they all exercise the same code.
pub fn deliver(
    engine: &mut Engine,
    now: Time,
    port: PortId,
    vlan: VlanId,
    frame: &[u8],
) -> Option<Output> {
    match parse_frame(frame) {
        Ok(f) => {
            let p = punt(&f.l3)?;
            engine.count_ignored("unknown_v3_record_type", p.unknown_records);
            Some(engine.handle(
                now,
                Input::Message {
                    port,
                    vlan,
                    src_ip: p.src_ip,
                    dst_ip: p.dst_ip,
                    msg: &p.msg,
                },
            ))
        }
        Err(e) => Some(engine.handle(
            now,
            Input::Malformed {
                port,
                vlan,
                reason: e.reason(),
            },
        )),
    }
}

fn version(v: IgmpVersion) -> Version {
    match v {
        IgmpVersion::V1 => Version::V1,
        IgmpVersion::V2 => Version::V2,
        IgmpVersion::V3 => Version::V3,
    }
}

fn record_type(kind: RecordKind) -> Option<RecordType> {
    Some(match kind {
        RecordKind::ModeIsInclude => RecordType::IsIn,
        RecordKind::ModeIsExclude => RecordType::IsEx,
        RecordKind::ChangeToInclude => RecordType::ToIn,
        RecordKind::ChangeToExclude => RecordType::ToEx,
        RecordKind::AllowNewSources => RecordType::Allow,
        RecordKind::BlockOldSources => RecordType::Block,
        RecordKind::Unknown(_) => return None,
    })
}

fn query(q: &IgmpQuery<'_>) -> Message<Ipv4Addr> {
    Message::Query {
        version: version(q.version),
        group: q.group_opt(),
        sources: q.sources.iter().collect(),
        max_resp: q.max_resp(),
        suppress: q.suppress,
        qrv: q.qrv,
        qqi: q.qqi(),
    }
}

/// Translates one decoded IGMP message; returns it with the number of skipped v3 records.
pub fn igmp_message(msg: &IgmpRepr<'_>) -> (Message<Ipv4Addr>, usize) {
    // RFC 3376 §7.3.2: v1/v2 reports are IS_EX({}) from an older host; the version travels
    // with the message so the engine can start the older-host-present timer.
    let asm_join = |v, group| Message::Report {
        version: v,
        records: vec![GroupRecord {
            kind: RecordType::IsEx,
            group,
            sources: Vec::new(),
        }],
    };
    match msg {
        IgmpRepr::Query(q) => (query(q), 0),
        IgmpRepr::ReportV1 { group } => (asm_join(Version::V1, *group), 0),
        IgmpRepr::ReportV2 { group } => (asm_join(Version::V2, *group), 0),
        IgmpRepr::LeaveV2 { group } => (Message::Leave { group: *group }, 0),
        IgmpRepr::ReportV3 { records } => {
            let mut unknown = 0;
            let mut out = Vec::with_capacity(records.len());
            for r in records.iter() {
                match record_type(r.kind) {
                    Some(kind) => out.push(GroupRecord {
                        kind,
                        group: r.group,
                        sources: r.sources.iter().collect(),
                    }),
                    None => unknown += 1,
                }
            }
            (
                Message::Report {
                    version: Version::V3,
                    records: out,
                },
                unknown,
            )
        }
        IgmpRepr::MrdAdvertisement { .. } => (Message::MrdAdvertisement, 0),
        // RFC 4286 solicitations and terminations teach the switch nothing it acts on yet; they go
        // to link-local groups and are flooded like any IGMP type the engine does not learn from.
        IgmpRepr::MrdSolicitation => (Message::Unknown { igmp_type: 0x31 }, 0),
        IgmpRepr::MrdTermination => (Message::Unknown { igmp_type: 0x32 }, 0),
        IgmpRepr::Unknown { igmp_type } => (
            Message::Unknown {
                igmp_type: *igmp_type,
            },
            0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use xsnoop_dataplane::wire::{
        parse_frame, to_vec, LeaveBuilder, MacAddr, QueryBuilder, RecordSpec, ReportV2Builder,
        ReportV3Builder,
    };

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn punt_bytes(frame: &[u8]) -> Punted {
        let f = parse_frame(frame).unwrap();
        punt(&f.l3).unwrap()
    }

    #[test]
    fn v2_report_and_leave_become_asm_join_and_leave() {
        let r = to_vec(&ReportV2Builder {
            src_mac: MAC,
            src_ip: ip("10.0.0.2"),
            group: ip("239.1.1.1"),
            vlan: None,
        })
        .unwrap();
        let p = punt_bytes(&r);
        assert_eq!(p.src_ip, ip("10.0.0.2"));
        assert_eq!(
            p.msg,
            Message::Report {
                version: Version::V2,
                records: vec![GroupRecord {
                    kind: RecordType::IsEx,
                    group: ip("239.1.1.1"),
                    sources: vec![]
                }]
            }
        );
        let l = to_vec(&LeaveBuilder {
            src_mac: MAC,
            src_ip: ip("10.0.0.2"),
            group: ip("239.1.1.1"),
            vlan: None,
        })
        .unwrap();
        assert_eq!(
            punt_bytes(&l).msg,
            Message::Leave {
                group: ip("239.1.1.1")
            }
        );
    }

    #[test]
    fn v3_records_keep_their_types_and_sources() {
        let s = [ip("10.0.0.9"), ip("10.0.0.10")];
        let records = [
            RecordSpec {
                kind: RecordKind::AllowNewSources,
                group: ip("232.1.1.1"),
                sources: &s,
                aux_data: &[],
            },
            RecordSpec {
                kind: RecordKind::Unknown(9),
                group: ip("232.1.1.2"),
                sources: &[],
                aux_data: &[],
            },
            RecordSpec {
                kind: RecordKind::ChangeToExclude,
                group: ip("239.2.2.2"),
                sources: &[],
                aux_data: &[1, 2, 3, 4],
            },
        ];
        let f = to_vec(&ReportV3Builder {
            src_mac: MAC,
            src_ip: ip("10.0.0.3"),
            records: &records,
            vlan: None,
        })
        .unwrap();
        let p = punt_bytes(&f);
        assert_eq!(p.unknown_records, 1);
        assert_eq!(
            p.msg,
            Message::Report {
                version: Version::V3,
                records: vec![
                    GroupRecord {
                        kind: RecordType::Allow,
                        group: ip("232.1.1.1"),
                        sources: s.to_vec()
                    },
                    GroupRecord {
                        kind: RecordType::ToEx,
                        group: ip("239.2.2.2"),
                        sources: vec![]
                    },
                ]
            }
        );
    }

    #[test]
    fn v3_query_fields_are_decoded() {
        let s = [ip("10.1.1.1")];
        let f = to_vec(&QueryBuilder {
            version: IgmpVersion::V3,
            src_mac: MAC,
            src_ip: ip("10.0.0.1"),
            group: Some(ip("239.1.1.1")),
            sources: &s,
            max_resp: Duration::from_secs(1),
            s_flag: true,
            qrv: 3,
            qqi: Duration::from_secs(60),
            vlan: None,
        })
        .unwrap();
        assert_eq!(
            punt_bytes(&f).msg,
            Message::Query {
                version: Version::V3,
                group: Some(ip("239.1.1.1")),
                sources: s.to_vec(),
                max_resp: Duration::from_secs(1),
                suppress: true,
                qrv: 3,
                qqi: Some(Duration::from_secs(60)),
            }
        );
    }
}
