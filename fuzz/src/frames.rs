//! Control frames built from structured fuzz choices with the dataplane's own builders, so the
//! engine fuzzer feeds real, checksummed octets through the same punt path as the daemon
//! (`xsnoop_control::punt::deliver`), plus raw and corrupted frames for the malformed paths.

use std::net::Ipv4Addr;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use xsnoop_dataplane::wire::{
    to_vec, FrameBuilder, IgmpVersion, LeaveBuilder, MacAddr, MrdAdvertisementBuilder,
    PimHelloBuilder, QueryBuilder, RecordKind, RecordSpec, ReportV1Builder, ReportV2Builder,
    ReportV3Builder, VlanTag,
};

use crate::setup::{GROUPS, SENDERS, SOURCES};

/// Longest raw frame the fuzzer invents (a corrupted one is as long as what it corrupts).
const MAX_RAW: usize = 96;

/// A subset of [`SOURCES`] chosen by a bitmask, in a fuzz-chosen order of first appearance
/// (duplicates allowed: hosts can send them).
fn sources(u: &mut Unstructured<'_>) -> Result<Vec<Ipv4Addr>> {
    let n = u.int_in_range(0..=SOURCES.len() + 1)?;
    (0..n).map(|_| u.choose(&SOURCES).copied()).collect()
}

fn version(u: &mut Unstructured<'_>) -> Result<IgmpVersion> {
    u.choose(&[IgmpVersion::V1, IgmpVersion::V2, IgmpVersion::V3])
        .copied()
}

/// RFC 3376 §4.2.12 record types 1..=6, plus an unknown one that receivers must skip.
fn record_kind(u: &mut Unstructured<'_>) -> Result<RecordKind> {
    Ok(RecordKind::from_u8(u.int_in_range(1..=7)?))
}

struct Record {
    kind: RecordKind,
    group: Ipv4Addr,
    sources: Vec<Ipv4Addr>,
}

fn mac(u: &mut Unstructured<'_>) -> Result<MacAddr> {
    let last: u8 = u.int_in_range(1..=4)?;
    Ok(MacAddr([0x02, 0, 0, 0, 0, last]))
}

/// Builds one control frame (or junk); `vlan` is the tag to put on it when the fuzzer wants a
/// tagged frame.
pub fn frame(u: &mut Unstructured<'_>, vlan: u16) -> Result<Vec<u8>> {
    let src_mac = mac(u)?;
    let src_ip = *u.choose(&SENDERS)?;
    let tag = u.ratio(1, 8)?.then_some(VlanTag::new(vlan, 0));
    let group = *u.choose(&GROUPS)?;
    let built = match u.int_in_range(0u8..=9)? {
        0 => emit(&ReportV1Builder {
            src_mac,
            src_ip,
            group,
            vlan: tag,
        }),
        1 | 2 => emit(&ReportV2Builder {
            src_mac,
            src_ip,
            group,
            vlan: tag,
        }),
        3 => emit(&LeaveBuilder {
            src_mac,
            src_ip,
            group,
            vlan: tag,
        }),
        4 | 5 => {
            let n = u.int_in_range(1..=3)?;
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                records.push(Record {
                    kind: record_kind(u)?,
                    group: *u.choose(&GROUPS)?,
                    sources: sources(u)?,
                });
            }
            let specs: Vec<RecordSpec<'_>> = records
                .iter()
                .map(|r| RecordSpec {
                    kind: r.kind,
                    group: r.group,
                    sources: &r.sources,
                    aux_data: &[],
                })
                .collect();
            emit(&ReportV3Builder {
                src_mac,
                src_ip,
                records: &specs,
                vlan: tag,
            })
        }
        6 => {
            let version = version(u)?;
            let group = match version {
                IgmpVersion::V1 => None,
                _ if u.arbitrary()? => Some(group),
                _ => None,
            };
            let srcs = match (version, group) {
                (IgmpVersion::V3, Some(_)) => sources(u)?,
                _ => vec![],
            };
            emit(&QueryBuilder {
                version,
                src_mac,
                src_ip,
                group,
                sources: &srcs,
                max_resp: Duration::from_millis(u.int_in_range(0..=30_000)?),
                s_flag: u.arbitrary()?,
                qrv: u.int_in_range(0..=7)?,
                qqi: Duration::from_secs(u.int_in_range(0..=300)?),
                vlan: tag,
            })
        }
        7 => emit(&MrdAdvertisementBuilder {
            src_mac,
            src_ip,
            adv_interval: u.arbitrary()?,
            qqi: u.arbitrary()?,
            qrv: u.arbitrary()?,
            vlan: tag,
        }),
        8 => emit(&PimHelloBuilder {
            src_mac,
            src_ip,
            holdtime: u.arbitrary()?,
            vlan: tag,
        }),
        _ => {
            let len = u.int_in_range(0..=MAX_RAW)?;
            Ok(u.bytes(len)?.to_vec())
        }
    };
    let mut bytes = built?;
    // Sometimes damage a valid frame in one octet: checksum, length and type checks must catch
    // it or the result must still be a well-formed message.
    if u.ratio(1, 8)? && !bytes.is_empty() {
        let at = u.choose_index(bytes.len())?;
        let flip: u8 = u.int_in_range(1..=255)?;
        if let Some(b) = bytes.get_mut(at) {
            *b ^= flip;
        }
    }
    Ok(bytes)
}

/// A builder refusing its fields (e.g. a QRV the wire cannot carry) yields an empty frame, which
/// the engine sees as malformed: still a useful input.
fn emit(b: &impl FrameBuilder) -> Result<Vec<u8>> {
    Ok(to_vec(b).unwrap_or_default())
}
