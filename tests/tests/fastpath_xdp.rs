//! The in-kernel XDP fast path on real veths (root): the snooping table, programmed into BPF
//! maps by `FastPath::sync`, decides which hosts get each frame, with no userspace forwarder
//! running at all. Every frame is checked at every host, byte for byte.
//!
//! Topology: a star of 6 hosts. Switch ports p1..p4 (port ids 0..3) are access ports of VLAN 10,
//! p5 (4) is an access port of VLAN 20, p6 (5) is a trunk carrying VLANs 10 and 20 tagged.
//! VLAN 10: group G1 has port 1 for any source and ports 1, 2 for source S2 (an IGMPv3 source
//! list); the mrouter is the trunk; port 2 also floods unregistered traffic
//! (flood_unregistered). VLAN 20: group G2 has member port 4.
//!
//! Covered: registered (member + mrouter, tag pushed on the trunk), source-specific entries,
//! unregistered, link-local, snooping off, tagged ingress (tag popped), VLAN isolation, a join
//! and a leave taking effect at the next frame after `sync`, IGMP and PIM still reaching the
//! AF_XDP socket, the fast path off → data to the AF_XDP socket as before, and the per-(S,G)
//! packet and byte counters.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use xsnoop_dataplane::afxdp::{AfXdp, AfXdpConfig, BindMode, FrameDesc, PortSpec, RX_BATCH};
use xsnoop_dataplane::fasthash::FastMap;
use xsnoop_dataplane::fastpath::{FastPath, Scope, SyncReport};
use xsnoop_dataplane::forward::{PortMap, PortVlanConfig};
use xsnoop_dataplane::packet_socket::ifindex;
use xsnoop_dataplane::wire::{
    to_vec, MacAddr, PimHelloBuilder, ReportV2Builder, UdpDataBuilder, VlanTag,
};
use xsnoop_dataplane::xdp::{AttachMode, Classifier, FrameClass};
use xsnoop_dataplane::{ForwardingTable, GroupEntry, PortId, PortSet, VlanTable};
use xsnoop_tests::{netns_or_skip, Capture, Star};

const HOSTS: usize = 6;
const G1: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const G2: Ipv4Addr = Ipv4Addr::new(239, 2, 2, 2);
const G9: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 9);
const MDNS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const S1: Ipv4Addr = Ipv4Addr::new(10, 70, 0, 1);
const S2: Ipv4Addr = Ipv4Addr::new(10, 70, 0, 2);
const MARK: &[u8; 4] = b"FPX1";

fn mac(host: usize) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0x70, u8::try_from(host).unwrap()])
}

fn ps(p: &[PortId]) -> PortSet {
    p.iter().copied().collect()
}

fn port_map() -> PortMap {
    let v10 = PortVlanConfig::Access { vlan: 10 };
    let v20 = PortVlanConfig::Access { vlan: 20 };
    let trunk = PortVlanConfig::Trunk {
        allowed: vec![10, 20],
        native: None,
    };
    PortMap::from_configs([
        (0, &v10),
        (1, &v10),
        (2, &v10),
        (3, &v10),
        (4, &v20),
        (5, &trunk),
    ])
    .unwrap()
}

/// The table of the module doc; `g1_any` are G1's any-source ports.
fn table(g1_any: &[PortId], snooping: bool) -> ForwardingTable {
    let g1 = GroupEntry {
        any_source: ps(g1_any),
        by_source: [(S2, ps(g1_any).union(ps(&[1, 2])))].into_iter().collect(),
        flood: false,
    };
    let v10 = VlanTable {
        ports: ps(&[0, 1, 2, 3, 5]),
        snooping,
        mrouters: ps(&[5]),
        flood_unregistered: ps(&[2]),
        groups: [(G1, g1)].into_iter().collect(),
    };
    let v20 = VlanTable {
        ports: ps(&[4, 5]),
        snooping: true,
        mrouters: PortSet::EMPTY,
        flood_unregistered: PortSet::EMPTY,
        groups: [(
            G2,
            GroupEntry {
                any_source: ps(&[4]),
                ..GroupEntry::default()
            },
        )]
        .into_iter()
        .collect::<FastMap<_, _>>(),
    };
    ForwardingTable {
        vlans: [(10, v10), (20, v20)].into_iter().collect(),
    }
}

struct Bed {
    star: Star,
    caps: Vec<Capture>,
    cls: Classifier,
    xs: AfXdp,
    fp: FastPath,
    ifx: Vec<u32>,
    pm: PortMap,
    seq: u32,
}

impl Bed {
    fn new(net: u8) -> Bed {
        let star = Star::new(net, &[2; HOSTS]).unwrap();
        star.prepare_for_afxdp().unwrap();
        // An XDP_REDIRECT into a veth is lost unless its peer runs NAPI: GRO on the host ends.
        for i in 1..=HOSTS {
            let host = star.host(i).unwrap();
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", host.name(), "ethtool", "-K"])
                .arg(star.host_if(i).unwrap())
                .args(["gro", "on"])
                .output()
                .unwrap();
            assert!(out.status.success(), "ethtool gro on: {out:?}");
        }
        let caps: Vec<Capture> = (1..=HOSTS)
            .map(|i| Capture::open(star.host(i).unwrap(), &star.host_if(i).unwrap()).unwrap())
            .collect();
        let names: Vec<String> = (1..=HOSTS).map(|i| star.port(i).unwrap()).collect();
        let sw = star.switch().unwrap();
        let (cls, xs, fp, ifx) = sw
            .run(|| {
                let mut cls = Classifier::load().unwrap();
                let mut specs = Vec::new();
                for (slot, name) in names.iter().enumerate() {
                    let idx = u32::try_from(ifindex(name).unwrap()).unwrap();
                    cls.attach(name, AttachMode::Native).unwrap();
                    cls.register_port(idx, u32::try_from(slot).unwrap())
                        .unwrap();
                    specs.push(PortSpec {
                        ifindex: idx,
                        queue: 0,
                    });
                }
                let xs = AfXdp::new(
                    AfXdpConfig {
                        frame_count: 2048,
                        frame_size: 2048,
                        fill_size: 256,
                        comp_size: 256,
                        rx_size: 256,
                        tx_size: 256,
                        mode: BindMode::Auto,
                    },
                    &specs,
                )
                .unwrap();
                for slot in 0..names.len() {
                    cls.install_socket(
                        u32::try_from(slot).unwrap(),
                        0,
                        xs.socket_fd(slot).unwrap(),
                    )
                    .unwrap();
                }
                let fp = FastPath::new(&mut cls).unwrap();
                let ifx: Vec<u32> = specs.iter().map(|s| s.ifindex).collect();
                (cls, xs, fp, ifx)
            })
            .unwrap();
        Bed {
            star,
            caps,
            cls,
            xs,
            fp,
            ifx,
            pm: port_map(),
            seq: 0,
        }
    }

    /// Programs `t` into the kernel (inside the switch namespace) and returns what it did.
    fn sync(&mut self, t: &ForwardingTable) -> SyncReport {
        let Bed {
            star, fp, pm, ifx, ..
        } = self;
        let t0 = Instant::now();
        let r = star
            .switch()
            .unwrap()
            .run(|| fp.sync(t, pm, ifx))
            .unwrap()
            .unwrap();
        eprintln!("fastpath_xdp: sync {r:?} in {:?}", t0.elapsed());
        r
    }

    /// A UDP frame from `host` (1-based) as source `src` to `group`, with a unique marker.
    fn data(&mut self, host: usize, src: Ipv4Addr, group: Ipv4Addr, tag: Option<u16>) -> Vec<u8> {
        self.seq += 1;
        let mut payload = MARK.to_vec();
        payload.extend_from_slice(&self.seq.to_be_bytes());
        payload.extend_from_slice(&[0x5a; 18]);
        to_vec(&UdpDataBuilder {
            src_mac: mac(host),
            src_ip: src,
            group,
            src_port: 4000,
            dst_port: 4001,
            ttl: 8,
            payload: &payload,
            vlan: tag.map(|v| VlanTag::new(v, 0)),
        })
        .unwrap()
    }

    /// Injects `frame` at `host` and returns, per host (index 0 = host 1), the copies of it
    /// (found by its marker) that host received.
    fn deliver(&mut self, host: usize, frame: &[u8]) -> Vec<Vec<Vec<u8>>> {
        for c in &self.caps {
            c.drain().unwrap();
        }
        let at = frame
            .windows(MARK.len())
            .position(|w| w == MARK)
            .expect("marked frame");
        let marker = frame[at..at + 8].to_vec();
        self.caps[host - 1].inject(frame).unwrap();
        let mut out = Vec::new();
        for (i, c) in self.caps.iter().enumerate() {
            let window = Duration::from_millis(if i == 0 { 300 } else { 30 });
            let got: Vec<Vec<u8>> = c
                .collect(window)
                .unwrap()
                .into_iter()
                .filter(|f| !f.outgoing && f.bytes.windows(8).any(|w| w == marker.as_slice()))
                .map(|f| f.bytes)
                .collect();
            out.push(got);
        }
        out
    }

    /// Sends a fresh frame and asserts exactly which hosts got it, once each, in which form.
    fn expect(
        &mut self,
        what: &str,
        host: usize,
        src: Ipv4Addr,
        group: Ipv4Addr,
        tag: Option<u16>,
        want: &[(usize, Option<u16>)],
    ) -> Vec<u8> {
        let frame = self.data(host, src, group, tag);
        let got = self.deliver(host, &frame);
        let untagged = retag(&frame, None);
        for h in 1..=HOSTS {
            let copies = &got[h - 1];
            match want.iter().find(|(w, _)| *w == h) {
                Some((_, form)) => {
                    assert_eq!(copies.len(), 1, "{what}: copies at host {h}: {copies:02x?}");
                    assert_eq!(
                        copies[0],
                        retag(&untagged, *form),
                        "{what}: bytes at host {h} (tag {form:?})"
                    );
                }
                None => assert!(copies.is_empty(), "{what}: leaked to host {h}"),
            }
        }
        frame
    }

    /// Frames the AF_XDP socket of port `slot` received within `window`.
    fn xsk_frames(&mut self, slot: usize, window: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        let mut descs = [FrameDesc::default(); RX_BATCH];
        while Instant::now() < deadline {
            let n = self.xs.rx_batch(slot, &mut descs);
            if n == 0 {
                self.xs.wait_rx(10);
            }
            for d in &descs[..n] {
                out.push(self.xs.frame(*d).unwrap().to_vec());
                self.xs.release(*d).unwrap();
            }
        }
        out
    }
}

/// `frame` with its 802.1Q tag removed (`None`) or set to VID `v`, PCP 0.
fn retag(frame: &[u8], tag: Option<u16>) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f[12..14] == [0x81, 0x00] {
        f.drain(12..16);
    }
    if let Some(v) = tag {
        let mut t = vec![0x81, 0x00];
        t.extend_from_slice(&v.to_be_bytes());
        f.splice(12..12, t);
    }
    f
}

#[test]
fn the_snooping_table_decides_every_frame_in_the_kernel() {
    netns_or_skip!("the_snooping_table_decides_every_frame_in_the_kernel");
    let mut bed = Bed::new(70);

    // Fast path off (the AF_XDP mode): multicast data goes to the AF_XDP socket, no host sees it.
    let r = bed.sync(&table(&[1], true));
    assert_eq!(r.ops, 0, "scope Off programs nothing");
    let f = bed.expect("fast path off", 1, S1, G1, None, &[]);
    let at_xsk = bed.xsk_frames(0, Duration::from_millis(200));
    assert_eq!(at_xsk, vec![f], "data reaches userspace unchanged");

    bed.fp.set_scope(Scope::All);
    let r = bed.sync(&table(&[1], true));
    assert!(r.maps_put >= 5 && r.maps_deleted == 0, "{r:?}");
    assert_eq!(r.outer_syscalls, 1, "all new keys in one batch: {r:?}");
    assert_eq!(
        bed.sync(&table(&[1], true)).ops,
        0,
        "an unchanged table changes nothing"
    );

    // VLAN 10 from host 1 (port 0). The trunk (host 6) is the mrouter: tag 10 pushed.
    let trunk10 = (6, Some(10));
    let s1g1 = bed.expect(
        "registered G1 from S1",
        1,
        S1,
        G1,
        None,
        &[(2, None), trunk10],
    );
    bed.expect(
        "source-specific (S2,G1)",
        1,
        S2,
        G1,
        None,
        &[(2, None), (3, None), trunk10],
    );
    bed.expect(
        "unregistered G9 → mrouter + flood_unregistered",
        1,
        S1,
        G9,
        None,
        &[(3, None), trunk10],
    );
    bed.expect(
        "link-local 224.0.0.251 → whole VLAN",
        1,
        S1,
        MDNS,
        None,
        &[(2, None), (3, None), (4, None), trunk10],
    );
    // Tagged ingress on the trunk: the tag is popped for access ports, never back to the trunk.
    bed.expect(
        "tagged G1 from the trunk",
        6,
        S1,
        G1,
        Some(10),
        &[(2, None)],
    );
    // VLAN 20: only host 5 and the trunk carry it; VLAN 10 ports never see it.
    bed.expect(
        "VLAN 20 G2 from the trunk",
        6,
        S1,
        G2,
        Some(20),
        &[(5, None)],
    );
    bed.expect("VLAN 20 G2 from host 5", 5, S1, G2, None, &[]);
    bed.expect("VLAN 20 unregistered", 5, S1, G9, None, &[]);
    bed.expect(
        "VLAN 20 link-local floods VLAN 20 only",
        5,
        S1,
        MDNS,
        None,
        &[(6, Some(20))],
    );
    // A tag on an access port, a VLAN the trunk lacks: userspace's to drop, not the kernel's.
    bed.expect("tagged on an access port", 1, S1, G1, Some(10), &[]);
    bed.expect("VLAN 30 on the trunk", 6, S1, G1, Some(30), &[]);
    let to_xsk = bed.xsk_frames(0, Duration::from_millis(100)).len()
        + bed.xsk_frames(5, Duration::from_millis(100)).len();
    assert_eq!(to_xsk, 2, "the two refused frames went to userspace");

    // IGMP and PIM still reach the engine's socket, and nothing else.
    let report = to_vec(&ReportV2Builder {
        src_mac: mac(1),
        src_ip: S1,
        group: G1,
        vlan: None,
    })
    .unwrap();
    let hello = to_vec(&PimHelloBuilder {
        src_mac: mac(1),
        src_ip: S1,
        holdtime: 105,
        vlan: None,
    })
    .unwrap();
    for c in &bed.caps {
        c.drain().unwrap();
    }
    bed.caps[0].inject(&report).unwrap();
    bed.caps[0].inject(&hello).unwrap();
    let got = bed.xsk_frames(0, Duration::from_millis(300));
    assert_eq!(
        got,
        vec![report.clone(), hello.clone()],
        "IGMP + PIM to AF_XDP"
    );
    for (i, c) in bed.caps.iter().enumerate().skip(1) {
        assert_eq!(
            c.count(Duration::from_millis(30), |_| true).unwrap(),
            0,
            "host {}",
            i + 1
        );
    }

    // A join takes effect for the very next frame after sync returns, and only one map changes.
    let r = bed.sync(&table(&[1, 3], true));
    assert_eq!(
        (r.maps_put, r.maps_deleted),
        (2, 0),
        "(*,G1) and (S2,G1): {r:?}"
    );
    bed.expect(
        "after port 3 joined",
        1,
        S1,
        G1,
        None,
        &[(2, None), (4, None), trunk10],
    );
    // A leave: port 1 gone at once.
    bed.sync(&table(&[3], true));
    bed.expect("after port 1 left", 1, S1, G1, None, &[(4, None), trunk10]);
    bed.expect(
        "S2 still has its source-specific ports",
        1,
        S2,
        G1,
        None,
        &[(2, None), (3, None), (4, None), trunk10],
    );
    // Everybody leaves: G1 is unregistered again.
    let r = bed.sync(&table(&[], true).tap_remove_group(G1));
    assert_eq!(
        (r.maps_deleted, r.outer_syscalls),
        (2, 1),
        "one batch delete: {r:?}"
    );
    bed.expect(
        "G1 unregistered again",
        1,
        S1,
        G1,
        None,
        &[(3, None), trunk10],
    );

    // Snooping off floods every multicast frame in the VLAN.
    bed.sync(&table(&[1], false));
    bed.expect(
        "snooping off",
        1,
        S1,
        G1,
        None,
        &[(2, None), (3, None), (4, None), trunk10],
    );

    // Counters: per (VLAN, S, G) packets and bytes; per port, frames replicated in the kernel.
    let flow = bed.fp.flow(10, S1, G1).unwrap().expect("flow (10, S1, G1)");
    // From host 1: registered, after join, after leave, unregistered, snooping off = 5 frames
    // of the same length, plus one tagged (4 octets longer) from the trunk.
    let len = s1g1.len() as u64;
    assert_eq!(flow.packets, 6, "{flow:?}");
    assert_eq!(flow.bytes, 6 * len + 4, "{flow:?}");
    let all = bed.fp.flows().unwrap();
    assert!(
        all.iter()
            .any(|f| f.vlan == 20 && f.group == G2 && f.packets == 2),
        "{all:?}"
    );
    let c = bed.cls.counters(0).unwrap();
    assert_eq!(c.fast_path, 9, "{c:?}");
    assert_eq!(c.fast_path_dropped, 0);
    assert_eq!(c.class(FrameClass::Igmp), 1);
    assert_eq!(c.class(FrameClass::Pim), 1);

    // Scope back to Off: the kernel maps empty again, and data goes to userspace as before.
    let Bed { star, fp, .. } = &mut bed;
    let r = star
        .switch()
        .unwrap()
        .run(|| fp.disable())
        .unwrap()
        .unwrap();
    assert!(r.ops > 0);
    assert!(bed.fp.applied().maps.is_empty());
    let f = bed.expect("fast path disabled", 1, S1, G1, None, &[]);
    assert_eq!(bed.xsk_frames(0, Duration::from_millis(200)), vec![f]);
}

trait TapRemove {
    fn tap_remove_group(self, g: Ipv4Addr) -> Self;
}

impl TapRemove for ForwardingTable {
    fn tap_remove_group(mut self, g: Ipv4Addr) -> Self {
        if let Some(v) = self.vlans.get_mut(&10) {
            v.groups.remove(&g);
        }
        self
    }
}
