//! Cross-module tests of the forwarding pipeline: every decision rule on frames built by the
//! wire builders (or crafted byte by byte), a no-allocation check, property tests, and a timing
//! printout.

mod alloc;
mod perf;
mod props;
mod rules;

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::forward::{process, Decision, Fdb, Inputs, PortMap, PortVlanConfig};
use crate::portset::{PortId, PortSet};
use crate::table::{ForwardingTable, GroupEntry, VlanTable};
use crate::wire::{to_vec, MacAddr, UdpDataBuilder, VlanTag};

pub(super) fn ps(v: &[PortId]) -> PortSet {
    v.iter().copied().collect()
}

pub(super) fn host(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

pub(super) const G_REG: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
pub(super) const G_UNREG: Ipv4Addr = Ipv4Addr::new(239, 2, 2, 2);
pub(super) const S_LISTED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
pub(super) const S_OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// The switch under test:
///
/// | port | mode                                  |
/// |------|---------------------------------------|
/// | 0    | access 10                             |
/// | 1    | access 10                             |
/// | 2    | access 20                             |
/// | 3    | trunk {10, 20}, no native             |
/// | 4    | trunk {10, 20, 30}, native 10         |
/// | 5    | access 10                             |
/// | 6    | access 30 (VLAN 30 not in the table)  |
///
/// VLAN 10: snooping, mrouter port 3, 239.1.1.1 joined on port 1 (any source) and on ports 1, 5
/// for source 10.0.0.9. VLAN 20: snooping, nothing joined, no mrouter.
pub(super) struct Switch {
    pub table: ForwardingTable,
    pub ports: PortMap,
    pub fdb: Fdb,
    pub down: PortSet,
    pub now: Duration,
}

impl Switch {
    pub fn new() -> Self {
        let cfgs = [
            (0, PortVlanConfig::Access { vlan: 10 }),
            (1, PortVlanConfig::Access { vlan: 10 }),
            (2, PortVlanConfig::Access { vlan: 20 }),
            (
                3,
                PortVlanConfig::Trunk {
                    allowed: vec![10, 20],
                    native: None,
                },
            ),
            (
                4,
                PortVlanConfig::Trunk {
                    allowed: vec![10, 20, 30],
                    native: Some(10),
                },
            ),
            (5, PortVlanConfig::Access { vlan: 10 }),
            (6, PortVlanConfig::Access { vlan: 30 }),
        ];
        let ports = PortMap::from_configs(cfgs.iter().map(|(p, c)| (*p, c))).unwrap();
        let mut groups = crate::fasthash::FastMap::default();
        groups.insert(
            G_REG,
            GroupEntry {
                any_source: ps(&[1]),
                by_source: [(S_LISTED, ps(&[1, 5]))].into_iter().collect(),
                flood: false,
            },
        );
        let v10 = VlanTable {
            ports: ps(&[0, 1, 3, 4, 5]),
            snooping: true,
            mrouters: ps(&[3]),
            flood_unregistered: PortSet::EMPTY,
            groups,
        };
        let v20 = VlanTable {
            ports: ps(&[2, 3, 4]),
            snooping: true,
            ..Default::default()
        };
        Switch {
            table: ForwardingTable {
                vlans: [(10, v10), (20, v20)].into_iter().collect(),
            },
            ports,
            fdb: Fdb::default(),
            down: PortSet::EMPTY,
            now: Duration::from_secs(1000),
        }
    }

    /// Runs the whole pipeline (parse, classify, decide, learn) on `frame` arriving on `port`.
    pub fn rx(&mut self, port: PortId, frame: &[u8]) -> Decision {
        let inputs = Inputs {
            table: &self.table,
            ports: &self.ports,
            down: self.down,
        };
        process(&inputs, &mut self.fdb, self.now, port, frame)
    }
}

/// UDP multicast data from `src_mac`/`src_ip` to `group`, optionally tagged.
pub(super) fn udp(
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    group: Ipv4Addr,
    vid: Option<u16>,
) -> Vec<u8> {
    to_vec(&UdpDataBuilder {
        src_mac,
        src_ip,
        group,
        src_port: 4000,
        dst_port: 5000,
        ttl: 16,
        payload: b"xsnoop data",
        vlan: vid.map(|v| VlanTag::new(v, 0)),
    })
    .unwrap()
}

/// A hand-made frame: dst, src, optional 802.1Q tag (VID `vid`, PCP 3), EtherType, payload.
pub(super) fn raw(
    dst: MacAddr,
    src: MacAddr,
    vid: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst.0);
    v.extend_from_slice(&src.0);
    if let Some(vid) = vid {
        v.extend_from_slice(&[0x81, 0x00]);
        v.extend_from_slice(&(0x6000 | vid).to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An ARP request (RFC 826) from `src` asking for 10.0.0.2, broadcast.
pub(super) fn arp_request(src: MacAddr, vid: Option<u16>) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01];
    p.extend_from_slice(&src.0);
    p.extend_from_slice(&[10, 0, 0, 1]);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&[10, 0, 0, 2]);
    raw(MacAddr::BROADCAST, src, vid, 0x0806, &p)
}

/// An ARP reply from `src` to `dst` (unicast).
pub(super) fn arp_reply(dst: MacAddr, src: MacAddr, vid: Option<u16>) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02];
    p.extend_from_slice(&src.0);
    p.extend_from_slice(&[10, 0, 0, 2]);
    p.extend_from_slice(&dst.0);
    p.extend_from_slice(&[10, 0, 0, 1]);
    raw(dst, src, vid, 0x0806, &p)
}
