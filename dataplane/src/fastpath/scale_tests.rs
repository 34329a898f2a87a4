//! What one join or leave costs on real kernel maps as the table grows (issue 7: "a join is
//! forwarding within a millisecond"; issue 5 §3: 1, 1 000 and 100 000 groups). Needs root (it
//! loads the XDP object, attaches nothing), so it is `#[ignore]`d; it reports, never asserts a
//! time (2 shared cores: every figure is noisy). Each join and leave is measured with the
//! engine's delta as a hint (run mode) and without (a scan of the VLAN). Run it in release:
//!
//! `cargo test --release -p xsnoop-dataplane sync_cost -- --ignored --nocapture`

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::{FastPath, Scope};
use crate::fasthash::FastMap;
use crate::forward::portmap::{PortMap, PortVlanConfig};
use crate::portset::{PortId, PortSet};
use crate::table::{ForwardingTable, GroupEntry, TableDelta, VlanTable};
use crate::xdp::Classifier;

/// Group `i` (0..16M), in 239.0.0.0/8 minus nothing link-local.
pub(super) fn nth_group(i: u32) -> Ipv4Addr {
    let [_, b, c, d] = (i + 1).to_be_bytes();
    Ipv4Addr::new(239, b, c, d)
}

/// One of the 15 non-empty subsets of ports 1..=4.
fn nth_set(i: u32) -> PortSet {
    let bits = i % 15 + 1;
    (1..=4u16).filter(|p| bits >> (p - 1) & 1 == 1).collect()
}

fn vlan10(n: u32) -> ForwardingTable {
    let groups: FastMap<Ipv4Addr, GroupEntry> = (0..n)
        .map(|i| {
            (
                nth_group(i),
                GroupEntry {
                    any_source: nth_set(i),
                    ..GroupEntry::default()
                },
            )
        })
        .collect();
    let v = VlanTable {
        ports: (0..5).collect(),
        snooping: true,
        mrouters: PortSet::EMPTY,
        flood_unregistered: PortSet::EMPTY,
        groups,
    };
    ForwardingTable {
        vlans: [(10, v)].into_iter().collect(),
    }
}

/// Kernel memory (`memlock` in fdinfo) of every BPF map this process holds, by map type.
pub(super) fn map_memory() -> BTreeMap<String, (usize, u64)> {
    let mut out: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let (Some(ty), Some(mem)) = (field("map_type:"), field("memlock:")) else {
            continue;
        };
        let max = field("max_entries:").unwrap_or_default();
        let slot = out.entry(format!("type {ty} max {max}")).or_default();
        slot.0 += 1;
        slot.1 += mem.parse::<u64>().unwrap_or(0);
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[test]
#[ignore = "root; a measurement: cargo test --release -p xsnoop-dataplane sync_cost -- --ignored --nocapture"]
fn sync_cost_of_one_join_and_leave_at_scale() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("sync_cost: needs root, skipped");
        return;
    }
    let lo = u32::try_from(crate::packet_socket::ifindex("lo").unwrap()).unwrap();
    let cfg = PortVlanConfig::Access { vlan: 10 };
    let pm = PortMap::from_configs((0..5).map(|p: PortId| (p, &cfg))).unwrap();
    let ifx = vec![lo; 5];
    let mut cls = Classifier::load().unwrap();
    eprintln!("sync_cost: kernel maps after load: {:?}", map_memory());
    let mut fp = FastPath::new(&mut cls).unwrap();
    fp.set_scope(Scope::All);
    const ROUNDS: u32 = 21;
    for n in [1_000u32, 10_000, 100_000] {
        let mut t = vlan10(n);
        let t0 = Instant::now();
        let bulk = fp.sync(&t, &pm, &ifx).unwrap();
        let bulk_t = t0.elapsed();
        assert!(bulk.overflowed.is_empty(), "{bulk:?}");
        // Each join and leave three times: told what changed (the engine's delta, as run mode
        // does), with an egress set some list already holds and with one no list holds (port 0
        // alone: a pooled list is filled, as for the first member on a port); and not told
        // (every group of the VLAN compared).
        for (hinted, fresh) in [(true, false), (true, true), (false, false)] {
            let (mut join, mut leave) = (Vec::new(), Vec::new());
            for r in 0..ROUNDS {
                let g = nth_group(n + r);
                let e = GroupEntry {
                    any_source: if fresh {
                        PortSet::single(0)
                    } else {
                        nth_set(r)
                    },
                    ..GroupEntry::default()
                };
                let mut delta = TableDelta::default();
                delta.group(10, g);
                let hint = hinted.then_some(&delta);
                t.vlans.get_mut(&10).unwrap().groups.insert(g, e);
                let t0 = Instant::now();
                let rep = fp.sync_hinted(&t, &pm, &ifx, hint).unwrap();
                join.push(t0.elapsed());
                assert_eq!(rep.maps_put, 1, "{rep:?}");
                assert_eq!(rep.vlans_hinted, usize::from(hinted), "{rep:?}");
                t.vlans.get_mut(&10).unwrap().groups.remove(&g);
                let t0 = Instant::now();
                let rep = fp.sync_hinted(&t, &pm, &ifx, hint).unwrap();
                leave.push(t0.elapsed());
                assert_eq!(rep.maps_deleted, 1, "{rep:?}");
            }
            eprintln!(
                "sync_cost: {n} groups, {}: bulk sync {bulk_t:?} ({} ops); one join: median {:?} (min {:?}, max {:?}); one leave: median {:?}; keys {}, lists {:?}",
                match (hinted, fresh) {
                    (true, false) => "hinted, shared list",
                    (true, true) => "hinted, new list",
                    _ => "unhinted (scan), shared list",
                },
                bulk.ops,
                median(join.clone()),
                join.iter().min().unwrap(),
                join.iter().max().unwrap(),
                median(leave),
                fp.applied().maps.len(),
                fp.list_stats(),
            );
        }
        // A VLAN-wide change: a multicast router appears on port 0 (every group's egress set
        // gains it), then goes. The VLAN is replanned whole.
        for (what, mrouters) in [
            ("mrouter learned", PortSet::single(0)),
            ("mrouter gone", PortSet::EMPTY),
        ] {
            t.vlans.get_mut(&10).unwrap().mrouters = mrouters;
            let mut delta = TableDelta::default();
            delta.vlan(10);
            let t0 = Instant::now();
            let rep = fp.sync_hinted(&t, &pm, &ifx, Some(&delta)).unwrap();
            eprintln!(
                "sync_cost: {n} groups, {what}: {:?} (applying {:?}); {} ops, {} puts, {} outer syscalls, lists created {} shared {} edited {} rewritten for all their keys {}",
                t0.elapsed(),
                rep.applied_in,
                rep.ops,
                rep.maps_put,
                rep.outer_syscalls,
                rep.lists_created,
                rep.lists_shared,
                rep.lists_edited,
                rep.lists_retargeted,
            );
        }
    }
    eprintln!(
        "sync_cost: kernel maps at 100 000 groups: {:?}",
        map_memory()
    );
}
