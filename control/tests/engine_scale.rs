//! The engine's cost at scale, asserted structurally rather than timed (issue 5 §3): start-up
//! builds the table once whatever the number of static groups, one change touches one entry, and
//! the [`Publisher`] copies only the changed entries into the table readers see, while the
//! published table always equals the engine's.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use xsnoop_control::engine::model::{RecordType, Version};
use xsnoop_control::engine::{Engine, Input, Publisher, StaticGroup, TableWork};
use xsnoop_dataplane::{ForwardingTable, TableHandle};

fn group(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).unwrap() + 256;
    Ipv4Addr::from(0xEF00_0000 | (i & 0x00FF_FFFF))
}

fn with_statics(n: usize) -> Engine {
    let mut c = config();
    c.static_groups = (0..n)
        .map(|g| StaticGroup {
            vlan: VLAN,
            port: 2,
            group: group(g),
            sources: if g % 7 == 0 {
                vec![ip(10, 1, 1, 1)]
            } else {
                vec![]
            },
        })
        .collect();
    Engine::new(c, Duration::ZERO).unwrap()
}

/// A quadratic start-up (a table rebuild or a full-table scan per static group) shows here as
/// more than one full build or as per-group entry updates, on any machine.
#[test]
fn start_up_builds_the_table_once_whatever_the_number_of_static_groups() {
    for n in [0, 1, 100, 5_000] {
        let e = with_statics(n);
        assert_eq!(e.table().vlans[&VLAN].groups.len(), n);
        assert_eq!(
            e.table_work(),
            TableWork {
                full_builds: 1,
                entry_updates: 0
            },
            "{n} static groups"
        );
    }
}

#[test]
fn one_join_one_leave_and_one_expiry_each_touch_one_entry_and_publish_one() {
    let n = 5_000;
    let mut e = with_statics(n);
    let handle = TableHandle::new(ForwardingTable::default());
    let mut p = Publisher::new();
    let first = p.publish(&mut e, &handle);
    assert!(first.full_copy, "the first publication copies the table");
    // The second publication finds the handle's initial table as its spare: not ours, so it is
    // rebuilt in full once.
    let g = group(n + 1);
    let mut now = s(1);
    let step = |e: &mut Engine, now, port, kind| {
        let m = report(Version::V3, kind, g, &[]);
        e.handle(
            now,
            Input::Message {
                port,
                vlan: VLAN,
                src_ip: ip(10, 0, 0, 9),
                dst_ip: ip(224, 0, 0, 22),
                msg: &m,
            },
        )
    };
    let before = e.table_work();
    let out = step(&mut e, now, 1, RecordType::IsEx);
    assert!(out.table_changed);
    assert_eq!(e.table_work().full_builds, before.full_builds);
    assert_eq!(e.table_work().entry_updates, before.entry_updates + 1);
    p.publish(&mut e, &handle);
    assert_eq!(*handle.load().as_ref(), *e.table());

    // From now on the spare is ours and free: each publication copies exactly what changed.
    for round in 0..3 {
        now += s(1);
        let other = group(n + 100 + round);
        let m = report(Version::V3, RecordType::IsEx, other, &[]);
        let out = e.handle(
            now,
            Input::Message {
                port: 0,
                vlan: VLAN,
                src_ip: ip(10, 0, 0, 8),
                dst_ip: ip(224, 0, 0, 22),
                msg: &m,
            },
        );
        assert!(out.table_changed);
        let r = p.publish(&mut e, &handle);
        assert!(!r.full_copy, "round {round}: {r:?}");
        // The spare missed the previous publication's entry and this one's.
        assert!(r.entries_copied <= 2, "round {round}: {r:?}");
        assert_eq!(*handle.load().as_ref(), *e.table());
    }

    // The leave (TO_IN {}) starts the last-member queries; their expiry removes the group.
    now += s(1);
    step(&mut e, now, 1, RecordType::ToIn);
    let before = e.table_work();
    let mut expired = false;
    for _ in 0..10 {
        let Some(d) = e.next_deadline() else { break };
        now = now.max(d);
        let out = e.handle(now, Input::Tick);
        if out.table_changed {
            let r = p.publish(&mut e, &handle);
            assert!(!r.full_copy && r.entries_copied <= 2, "{r:?}");
        }
        if !e.table().vlans[&VLAN].groups.contains_key(&g) {
            expired = true;
            break;
        }
    }
    assert!(expired, "the group expired after the last-member queries");
    assert_eq!(e.table_work().full_builds, before.full_builds);
    assert!(e.table_work().entry_updates - before.entry_updates <= 4);
    assert_eq!(*handle.load().as_ref(), *e.table());
    assert_eq!(handle.load().vlans[&VLAN].groups.len(), n + 3);
}

/// A deterministic random walk of joins, leaves, queries, ticks, link changes and
/// reconfigurations, publishing after every changed step, sometimes while a reader holds the
/// published snapshot: the published table always equals the engine's.
#[test]
fn the_published_table_always_equals_the_engines() {
    let mut sw = Switch::new(querier_config());
    let handle = TableHandle::new(ForwardingTable::default());
    let mut p = Publisher::new();
    p.publish(&mut sw.engine, &handle);
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut held = None;
    let mut reused = 0;
    for i in 0..3_000 {
        let port = rnd(5) as u16;
        let g = ip(239, 1, 0, rnd(40) as u8 + 1);
        let src = ip(10, 9, 9, rnd(4) as u8 + 1);
        let kind = [
            RecordType::IsEx,
            RecordType::IsIn,
            RecordType::ToIn,
            RecordType::ToEx,
            RecordType::Allow,
            RecordType::Block,
        ][rnd(6) as usize];
        let out = match rnd(12) {
            0..=6 => sw.host(port, &report(Version::V3, kind, g, &[src])),
            7 => sw.host(port, &v2_report(g)),
            8 => {
                sw.now += ms(rnd(30_000));
                sw.step(Input::Tick)
            }
            9 => sw.step(if rnd(2) == 0 {
                Input::PortDown(port)
            } else {
                Input::PortUp(port)
            }),
            10 => {
                let mut c = querier_config();
                c.vlans[0].snooping = rnd(4) != 0;
                c.ports[port as usize].mrouter = xsnoop_control::engine::MrouterMode::Always;
                sw.step(Input::Reconfigure(c))
            }
            _ => sw.msg(port, VLAN, ip(10, 0, 0, 1), &general_query(Version::V3)),
        };
        if out.table_changed {
            let r = p.publish(&mut sw.engine, &handle);
            if !r.full_copy {
                reused += 1;
            }
        }
        assert_eq!(*handle.load().as_ref(), *sw.engine.table(), "step {i}");
        // Sometimes a reader keeps a snapshot across publications (the spare is then busy).
        match rnd(5) {
            0 => held = Some(handle.load()),
            1 => held = None,
            _ => {}
        }
    }
    drop(held);
    assert!(reused > 100, "the spare was reused {reused} times");
}
