//! What a decision costs: a timing loop, printed (run with `--release -- --nocapture`); nothing
//! is asserted about speed.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use super::*;
use crate::forward::{process_with_memo, rewrite_into, EgressTag, Fdb, FdbConfig, FlowMemo};
use crate::table::GroupEntry;

fn time(label: &str, iters: u32, mut f: impl FnMut() -> usize) {
    let start = Instant::now();
    let mut sink = 0usize;
    for _ in 0..iters {
        sink = sink.wrapping_add(f());
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
    black_box(sink);
    println!("forward perf: {label:<44} {ns:>8.1} ns/frame");
}

#[test]
fn decision_cost_printout() {
    let iters: u32 = if cfg!(debug_assertions) {
        20_000
    } else {
        2_000_000
    };
    let mut sw = Switch::new();
    sw.fdb = Fdb::new(FdbConfig::default());
    // 1000 more groups and 1000 more stations, so lookups hit realistic tables.
    let v10 = sw.table.vlans.get_mut(&10).unwrap();
    for i in 0..1000u16 {
        let [a, b] = i.to_be_bytes();
        v10.groups.insert(
            Ipv4Addr::new(239, 10, a, b),
            GroupEntry {
                any_source: ps(&[1, 5]),
                ..Default::default()
            },
        );
    }
    for i in 0..1000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        sw.fdb.learn(10, MacAddr([2, 9, 0, a, b, c]), 5, sw.now);
    }
    let (a, b) = (host(1), host(2));
    sw.rx(1, &arp_request(b, None));
    let mc = udp(a, S_OTHER, G_REG, None);
    let mc_tagged = udp(a, S_LISTED, G_REG, Some(10));
    let uni = arp_reply(b, a, None);
    let bc = arp_request(a, None);
    let unknown = raw(host(77), a, None, 0x88b5, &[0; 46]);
    time("multicast data, registered (access)", iters, || {
        sw.rx(0, &mc).egress().map_or(0, |e| e.ports.len())
    });
    time("multicast data, registered (trunk, tagged)", iters, || {
        sw.rx(3, &mc_tagged).egress().map_or(0, |e| e.ports.len())
    });
    {
        let inputs = Inputs {
            table: &sw.table,
            ports: &sw.ports,
            down: sw.down,
        };
        let mut memo = FlowMemo::default();
        time("multicast data, the flow memo's next frame", iters, || {
            process_with_memo(&inputs, &mut sw.fdb, sw.now, 0, black_box(&mc), &mut memo)
                .egress()
                .map_or(0, |e| e.ports.len())
        });
    }
    time("known unicast (ARP reply)", iters, || {
        sw.rx(0, &uni).egress().map_or(0, |e| e.ports.len())
    });
    time("broadcast (ARP request)", iters, || {
        sw.rx(0, &bc).egress().map_or(0, |e| e.ports.len())
    });
    time("unknown unicast", iters, || {
        sw.rx(0, &unknown).egress().map_or(0, |e| e.ports.len())
    });
    time("  of which parse_frame (multicast data)", iters, || {
        crate::wire::parse_frame(black_box(&mc)).map_or(0, |f| f.l3_offset)
    });
    time("  of which FDB lookup", iters, || {
        usize::from(sw.fdb.lookup(10, black_box(b), sw.now).unwrap_or(0))
    });
    time("  of which table multicast_egress", iters, || {
        sw.table
            .multicast_egress(10, 0, black_box(S_OTHER), black_box(G_REG))
            .0
            .len()
    });
    let mut out = [0u8; 2048];
    time("rewrite_into: push a tag (64 B frame)", iters, || {
        rewrite_into(black_box(&mc), EgressTag::Tagged(10), &mut out).unwrap_or(0)
    });
    time("rewrite_into: pop a tag", iters, || {
        rewrite_into(black_box(&mc_tagged), EgressTag::Untagged, &mut out).unwrap_or(0)
    });
}
