//! Behaviour of the snooping engine through its public API: forwarding classes, membership
//! routing, querier, router ports, limits, link events, reconfiguration, views.

mod common;

use common::*;
use xsnoop_control::engine::model::{Message, RecordType, Version};
use xsnoop_control::engine::{
    ConfigError, Engine, EngineConfig, EventKind, Input, MdbFilterMode, MrouterMode, PortConfig,
    PortVlans, StaticGroup, TableFullPolicy, VlanConfig,
};
use xsnoop_dataplane::table::MulticastRule;

// ---------------------------------------------------------------------------------------------
// Configuration

fn err(c: EngineConfig) -> ConfigError {
    Engine::new(c, s(0)).unwrap_err()
}

#[test]
fn config_errors_name_the_field_and_the_fix() {
    let mut c = config();
    c.vlans[0].timers.robustness = 0;
    let e = err(c).to_string();
    assert!(
        e.contains("vlans[0].timers.robustness") && e.contains("use 2"),
        "{e}"
    );

    let mut c = config();
    c.ports[2].name = "p0".into();
    assert_eq!(
        err(c),
        ConfigError::DuplicatePortName {
            index: 2,
            first: 0,
            name: "p0".into()
        }
    );

    for bad in [0u16, 4095] {
        let mut c = config();
        c.vlans[1].id = bad;
        let e = err(c).to_string();
        assert!(e.contains("vlans[1].id") && e.contains("1..=4094"), "{e}");
    }

    let mut c = config();
    c.ports = (0..129)
        .map(|i| PortConfig::access(&format!("p{i}"), VLAN))
        .collect();
    assert!(matches!(
        err(c),
        ConfigError::TooManyPorts {
            count: 129,
            max: 128
        }
    ));

    let mut c = config();
    c.ports[0].vlans = PortVlans::Access(99);
    assert!(err(c)
        .to_string()
        .contains("ports[0].vlans.access: VLAN 99 is not defined"));

    let mut c = config();
    c.vlans[0].timers.query_response_interval = s(200);
    assert!(err(c).to_string().contains("query_response_interval"));

    let mut c = config();
    c.vlans[0].igmp_version = Version::V2;
    c.vlans[0].timers.query_response_interval = s(30);
    assert!(err(c).to_string().contains("max response"));

    let mut c = config();
    c.vlans[0].igmp_version = Version::V1;
    assert_eq!(err(c), ConfigError::BadIgmpVersion { index: 0 });

    let mut c = config();
    c.static_groups.push(StaticGroup {
        vlan: OTHER_VLAN,
        port: 0,
        group: g1(),
        sources: vec![],
    });
    assert!(err(c).to_string().contains("does not carry VLAN 20"));

    let mut c = config();
    c.vlans.push(VlanConfig::new(VLAN));
    assert_eq!(err(c), ConfigError::DuplicateVlan { index: 2, id: VLAN });

    assert!(Engine::new(config(), s(0)).is_ok());
}

#[test]
fn invalid_reconfiguration_keeps_the_running_one() {
    let mut sw = Switch::new(config());
    sw.host(1, &v2_report(g1()));
    let mut bad = config();
    bad.vlans[0].timers.robustness = 0;
    let out = sw.step(Input::Reconfigure(bad));
    assert!(!out.table_changed);
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1])));
    assert_eq!(
        sw.engine.stats().ignored.get("invalid configuration"),
        Some(&1)
    );
    let mut bad = config();
    bad.ports[1].name = "p0".into();
    let e = sw.engine.reconfigure(sw.now, bad).unwrap_err();
    assert!(e.to_string().contains("ports[1].name"), "{e}");
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1])));
}

// ---------------------------------------------------------------------------------------------
// Forwarding of control frames (RFC 4541 §2.1.1)

#[test]
fn reports_and_leaves_go_to_router_ports_and_flood_reports_ports_only() {
    let mut c = config();
    c.ports[3].flood_reports = true;
    let mut sw = Switch::new(c);
    // No router known: a report goes only to the flood_reports port.
    assert_eq!(sw.host(1, &v2_report(g1())).forward, ps(&[3]));
    // A router appears behind port 0.
    sw.msg(0, VLAN, ip(10, 0, 0, 1), &general_query(Version::V2));
    assert_eq!(sw.host(1, &v2_report(g1())).forward, ps(&[0, 3]));
    assert_eq!(
        sw.host(2, &Message::Leave { group: g1() }).forward,
        ps(&[0, 3])
    );
    let v3 = report(Version::V3, RecordType::IsIn, g2(), &[ip(1, 1, 1, 1)]);
    assert_eq!(sw.host(2, &v3).forward, ps(&[0, 3]));
    // Never back out of the ingress port, even when it is a router port.
    assert_eq!(sw.host(0, &v2_report(g1())).forward, ps(&[3]));
}

#[test]
fn queries_pim_mrd_and_unknown_types_flood_the_vlan_only() {
    let mut sw = Switch::new(config());
    let vlan10_but_1 = ps(&[0, 2, 3, 4]);
    for m in [
        general_query(Version::V3),
        Message::PimHello,
        Message::MrdAdvertisement,
        Message::Unknown { igmp_type: 0x42 },
    ] {
        let out = sw.msg(1, VLAN, ip(10, 0, 0, 1), &m);
        assert_eq!(out.forward, vlan10_but_1, "{m:?}");
    }
    // The trunk's other VLAN: only its ports.
    let out = sw.msg(4, OTHER_VLAN, ip(10, 0, 0, 1), &Message::PimHello);
    assert_eq!(out.forward, ps(&[5]));
}

#[test]
fn malformed_and_misplaced_frames_go_nowhere_and_are_counted() {
    let mut sw = Switch::new(config());
    let out = sw.step(Input::Malformed {
        port: 1,
        vlan: VLAN,
        reason: "bad igmp checksum",
    });
    assert!(out.forward.is_empty() && !out.table_changed);
    sw.step(Input::Malformed {
        port: 2,
        vlan: VLAN,
        reason: "bad igmp checksum",
    });
    assert_eq!(
        sw.engine.stats().malformed.get("bad igmp checksum"),
        Some(&2)
    );
    // Port 5 is not in VLAN 10.
    let out = sw.msg(5, VLAN, ip(10, 0, 0, 9), &v2_report(g1()));
    assert!(out.forward.is_empty());
    assert_eq!(sw.members(VLAN, g1()), None);
    // Unknown VLAN.
    assert!(sw
        .msg(1, 77, ip(10, 0, 0, 9), &v2_report(g1()))
        .forward
        .is_empty());
}

#[test]
fn snooping_off_floods_reports_and_learns_nothing() {
    let mut c = config();
    c.vlans[0].snooping = false;
    let mut sw = Switch::new(c);
    let out = sw.host(1, &v2_report(g1()));
    assert_eq!(out.forward, ps(&[0, 2, 3, 4]));
    assert!(sw.engine.mdb(sw.now).is_empty());
    let t = &sw.engine.table().vlans[&VLAN];
    assert!(!t.snooping && t.groups.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Membership

#[test]
fn v2_join_registers_the_port_and_expires_after_gmi() {
    let mut sw = Switch::new(config());
    let out = sw.host(1, &v2_report(g1()));
    assert!(out.table_changed);
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::Join && e.port == Some(1) && e.group == Some(g1())));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1])));
    let t = sw.engine.table();
    assert_eq!(
        t.multicast_egress(VLAN, 0, ip(10, 9, 9, 9), g1()),
        (ps(&[1]), MulticastRule::Registered)
    );
    // GMI = 2 × 125 + 10 = 260 s (RFC 3376 §8.4): still there just before, gone at it.
    sw.run_until(s(259));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1])));
    let outs = sw.run_until(s(260));
    assert_eq!(sw.members(VLAN, g1()), None);
    assert!(outs.iter().any(|o| o.table_changed
        && o.events
            .iter()
            .any(|e| e.kind == EventKind::Expire && e.port == Some(1))));
    assert!(sw.engine.mdb(sw.now).is_empty());
}

#[test]
fn v3_include_sources_become_per_source_egress() {
    let mut sw = Switch::new(config());
    let (s1, s2) = (ip(10, 1, 1, 1), ip(10, 1, 1, 2));
    sw.host(1, &report(Version::V3, RecordType::IsIn, g1(), &[s1]));
    sw.host(2, &report(Version::V3, RecordType::IsEx, g1(), &[s2]));
    let e = &sw.engine.table().vlans[&VLAN].groups[&g1()];
    assert_eq!(e.any_source, ps(&[2]));
    assert_eq!(e.by_source[&s1], ps(&[1, 2]));
    assert_eq!(e.by_source[&s2], ps(&[]));
    let t = sw.engine.table();
    assert_eq!(t.multicast_egress(VLAN, 0, s1, g1()).0, ps(&[1, 2]));
    assert_eq!(t.multicast_egress(VLAN, 0, s2, g1()).0, ps(&[]));
    assert_eq!(
        t.multicast_egress(VLAN, 0, ip(10, 1, 1, 3), g1()).0,
        ps(&[2])
    );
}

#[test]
fn link_local_and_unicast_groups_are_never_learned() {
    let mut sw = Switch::new(config());
    let out = sw.host(1, &v2_report(ip(224, 0, 0, 251)));
    assert!(!out.table_changed);
    sw.host(1, &v2_report(ip(10, 1, 2, 3)));
    assert!(sw.engine.table().vlans[&VLAN].groups.is_empty());
    let ig = &sw.engine.stats().ignored;
    assert_eq!(ig.get("report for a link-local group"), Some(&1));
    assert_eq!(ig.get("report for a non-multicast group"), Some(&1));
    assert_eq!(sw.engine.stats().received.reports_v2, 2);
}

#[test]
fn leave_as_querier_sends_a_group_query_on_that_port_in_the_groups_version() {
    let mut sw = Switch::new(querier_config());
    sw.run_until(s(1)); // startup query
    sw.host(1, &v2_report(g1()));
    sw.host(2, &report(Version::V3, RecordType::IsEx, g2(), &[]));
    let out = sw.host(1, &Message::Leave { group: g1() });
    assert_eq!(out.transmit.len(), 1, "{:?}", out.transmit);
    let t = &out.transmit[0];
    assert_eq!((t.vlan, t.ports), (VLAN, ps(&[1])));
    assert_eq!(t.query.group, Some(g1()));
    // The group is in IGMPv2 compatibility mode: never a v3 query to it (RFC 3376 §7.3.2).
    assert_eq!(t.query.version, Version::V2);
    assert_eq!(t.query.max_resp, s(1), "max resp = LMQI");
    assert_eq!(t.query.src, ip(10, 0, 0, 5));
    // A v3 host's TO_IN {} gets a v3 query.
    let out = sw.host(2, &report(Version::V3, RecordType::ToIn, g2(), &[]));
    assert_eq!(out.transmit.len(), 1);
    assert_eq!(out.transmit[0].query.version, Version::V3);
    assert_eq!(out.transmit[0].ports, ps(&[2]));
    // Nobody answers: gone after LMQT = 2 s, with the retransmission on the way.
    let outs = sw.run_until(sw.now + s(2));
    let rexmit: usize = outs.iter().map(|o| o.transmit.len()).sum();
    assert_eq!(rexmit, 2, "one retransmission per group (LMQC = 2)");
    assert_eq!(sw.members(VLAN, g1()), None);
    assert_eq!(sw.members(VLAN, g2()), None);
    assert_eq!(sw.engine.stats().sent.group_queries, 4);
}

#[test]
fn vlan_igmp_version_2_caps_the_version_of_group_queries() {
    let mut c = querier_config();
    c.vlans[0].igmp_version = Version::V2;
    let mut sw = Switch::new(c);
    sw.host(2, &report(Version::V3, RecordType::IsEx, g2(), &[]));
    let out = sw.host(2, &report(Version::V3, RecordType::ToIn, g2(), &[]));
    assert_eq!(out.transmit[0].query.version, Version::V2);
    assert!(out.transmit[0].query.sources.is_empty());
}

#[test]
fn leave_answered_by_a_report_keeps_the_group() {
    let mut sw = Switch::new(querier_config());
    sw.host(1, &v2_report(g1()));
    sw.host(1, &Message::Leave { group: g1() });
    sw.now += ms(500);
    sw.host(1, &v2_report(g1()));
    sw.run_until(sw.now + s(5));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1])));
}

#[test]
fn fast_leave_removes_at_once() {
    let mut c = querier_config();
    c.ports[1].fast_leave = true;
    let mut sw = Switch::new(c);
    sw.host(1, &v2_report(g1()));
    sw.host(2, &v2_report(g1()));
    let out = sw.host(1, &Message::Leave { group: g1() });
    assert!(out.transmit.is_empty());
    assert!(out.table_changed);
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2])));
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::Leave && e.port == Some(1)));
}

#[test]
fn other_queriers_group_query_lowers_the_timer() {
    let mut sw = Switch::new(config());
    sw.msg(0, VLAN, ip(10, 0, 0, 1), &general_query(Version::V2));
    sw.host(1, &v2_report(g1()));
    // The querier asks for g1 (after some host's leave); nobody answers.
    let out = sw.msg(0, VLAN, ip(10, 0, 0, 1), &group_query(g1(), s(1)));
    assert_eq!(out.forward, ps(&[1, 2, 3, 4]));
    // RFC 3376 §6.6.1: timer lowered to LMQC × max resp = 2 s.
    sw.run_until(sw.now + s(2));
    assert_eq!(sw.members(VLAN, g1()), None);
}

#[test]
fn without_any_querier_a_leave_lowers_the_timer_to_lmqt() {
    let mut sw = Switch::new(config());
    sw.host(1, &v2_report(g1()));
    let out = sw.host(1, &Message::Leave { group: g1() });
    assert!(out.transmit.is_empty(), "nobody queries");
    sw.run_until(s(2));
    assert_eq!(sw.members(VLAN, g1()), None);
}

// ---------------------------------------------------------------------------------------------
// Querier

#[test]
fn querier_startup_then_query_interval_on_all_up_ports() {
    let mut sw = Switch::new(querier_config());
    assert_eq!(sw.engine.next_deadline(), Some(s(0)));
    let out = sw.step(Input::Tick);
    assert_eq!(out.transmit.len(), 1);
    let t = &out.transmit[0];
    assert_eq!((t.vlan, t.ports), (VLAN, ps(&[0, 1, 2, 3, 4])));
    assert_eq!(t.query.group, None);
    assert_eq!(
        (t.query.version, t.query.max_resp, t.query.qrv),
        (Version::V3, s(10), 2)
    );
    assert_eq!(t.query.qqi, s(125));
    // Startup query interval QI/4 (RFC 3376 §8.6), then QI.
    assert_eq!(sw.engine.next_deadline(), Some(ms(31_250)));
    sw.step(Input::PortDown(3));
    let outs = sw.run_until(ms(31_250));
    let q: Vec<_> = outs.iter().flat_map(|o| o.transmit.clone()).collect();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].ports, ps(&[0, 1, 2, 4]), "not on a down port");
    assert_eq!(sw.engine.next_deadline(), Some(ms(31_250) + s(125)));
    assert_eq!(sw.engine.stats().sent.general_queries, 2);
    let st = &sw.engine.querier_status(sw.now)[0];
    assert!(st.we_are_querier && st.querier == Some(ip(10, 0, 0, 5)));
}

#[test]
fn election_lower_address_takes_over_then_expires() {
    let mut sw = Switch::new(querier_config());
    sw.step(Input::Tick);
    // A higher address does not stop us.
    let out = sw.msg(2, VLAN, ip(10, 0, 0, 9), &general_query(Version::V3));
    assert!(out
        .events
        .iter()
        .all(|e| !matches!(e.kind, EventKind::QuerierElected { .. })));
    // A lower one does (RFC 3376 §6.6.2).
    sw.now = s(10);
    let mut lower = general_query(Version::V3);
    if let Message::Query { qrv, qqi, .. } = &mut lower {
        *qrv = 3;
        *qqi = Some(s(60));
    }
    let out = sw.msg(0, VLAN, ip(10, 0, 0, 1), &lower);
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::QuerierElected {
            address: ip(10, 0, 0, 1),
            ours: false
        }));
    let st = &sw.engine.querier_status(sw.now)[0];
    assert!(!st.we_are_querier);
    assert_eq!(st.querier, Some(ip(10, 0, 0, 1)));
    assert_eq!(st.port.as_deref(), Some("p0"));
    assert_eq!((st.qrv, st.qqi_ms), (Some(3), Some(60_000)));
    // OQPI with the adopted QRV 3 and QQI 60 s: 3 × 60 + 5 = 185 s. We stay silent until then.
    let outs = sw.run_until(s(10 + 184));
    assert!(outs.iter().all(|o| o.transmit.is_empty()));
    let outs = sw.run_until(s(10 + 185));
    let ev: Vec<_> = outs.iter().flat_map(|o| o.events.clone()).collect();
    assert!(ev.iter().any(|e| e.kind
        == EventKind::QuerierLost {
            address: ip(10, 0, 0, 1)
        }));
    assert!(ev.iter().any(|e| e.kind
        == EventKind::QuerierElected {
            address: ip(10, 0, 0, 5),
            ours: true
        }));
    assert!(outs
        .iter()
        .any(|o| o.transmit.iter().any(|t| t.query.group.is_none())));
    assert!(sw.engine.querier_status(sw.now)[0].we_are_querier);
}

#[test]
fn zero_address_queries_neither_elect_nor_make_router_ports() {
    let mut sw = Switch::new(querier_config());
    let out = sw.msg(0, VLAN, ip(0, 0, 0, 0), &general_query(Version::V2));
    assert!(out.events.is_empty());
    assert!(sw.engine.mrouter_ports(sw.now).is_empty());
    assert!(sw.engine.querier_status(sw.now)[0].we_are_querier);
}

#[test]
fn proxy_querier_steps_down_for_any_real_querier() {
    let mut c = querier_config();
    c.vlans[0].querier_address = ip(0, 0, 0, 0);
    let mut sw = Switch::new(c);
    let out = sw.step(Input::Tick);
    assert_eq!(out.transmit[0].query.src, ip(0, 0, 0, 0));
    sw.msg(3, VLAN, ip(192, 168, 200, 200), &general_query(Version::V2));
    let st = &sw.engine.querier_status(sw.now)[0];
    assert!(!st.we_are_querier);
    assert_eq!(st.querier, Some(ip(192, 168, 200, 200)));
    assert_eq!(st.version, Some(2));
}

#[test]
fn querier_status_serializes_for_operators() {
    let mut sw = Switch::new(config());
    sw.msg(0, VLAN, ip(10, 0, 0, 1), &general_query(Version::V3));
    let j = serde_json::to_value(sw.engine.querier_status(s(5))).unwrap();
    assert_eq!(j[0]["vlan"], 10);
    assert_eq!(j[0]["querier"], "10.0.0.1");
    assert_eq!(j[0]["port"], "p0");
    assert_eq!(j[0]["expires_ms"], 250_000);
    assert_eq!(j[1]["querier"], serde_json::Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Router ports

#[test]
fn router_ports_learned_from_queries_pim_and_mrd_and_aged_out() {
    let mut sw = Switch::new(config());
    let out = sw.msg(0, VLAN, ip(10, 0, 0, 1), &general_query(Version::V2));
    assert!(out.table_changed);
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::MrouterLearned { via: "query" }));
    sw.msg(2, VLAN, ip(10, 0, 0, 2), &Message::PimHello);
    sw.now = s(100);
    sw.msg(3, VLAN, ip(10, 0, 0, 3), &Message::MrdAdvertisement);
    assert_eq!(sw.engine.table().vlans[&VLAN].mrouters, ps(&[0, 2, 3]));
    // Unregistered data goes to the routers (RFC 4541 §2.1.2(1), (3)).
    assert_eq!(
        sw.engine
            .table()
            .multicast_egress(VLAN, 1, ip(1, 2, 3, 4), g1()),
        (ps(&[0, 2, 3]), MulticastRule::Unregistered)
    );
    let rows = serde_json::to_value(sw.engine.mrouter_ports(sw.now)).unwrap();
    assert_eq!(rows[0]["port"], "p0");
    assert_eq!(rows[0]["mode"], "auto");
    assert_eq!(rows[0]["via"], "query");
    assert_eq!(rows[0]["expires_ms"], 155_000);
    // OQPI = 255 s.
    let outs = sw.run_until(s(255));
    assert!(outs
        .iter()
        .any(|o| o.events.iter().any(|e| e.kind == EventKind::MrouterExpired)));
    assert_eq!(sw.engine.table().vlans[&VLAN].mrouters, ps(&[3]));
    sw.run_until(s(355));
    assert!(sw.engine.table().vlans[&VLAN].mrouters.is_empty());
}

#[test]
fn mrouter_always_and_never() {
    let mut c = config();
    c.ports[1].mrouter = MrouterMode::Always;
    c.ports[2].mrouter = MrouterMode::Never;
    let mut sw = Switch::new(c);
    assert_eq!(sw.engine.table().vlans[&VLAN].mrouters, ps(&[1]));
    let out = sw.msg(2, VLAN, ip(10, 0, 0, 1), &general_query(Version::V2));
    assert!(!out.table_changed);
    assert_eq!(sw.engine.table().vlans[&VLAN].mrouters, ps(&[1]));
    assert_eq!(sw.host(3, &v2_report(g1())).forward, ps(&[1]));
    let rows = sw.engine.mrouter_ports(sw.now);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].mode, rows[0].expires_ms),
        (MrouterMode::Always, None)
    );
}

// ---------------------------------------------------------------------------------------------
// Limits

#[test]
fn port_limit_with_deny_refuses_the_new_group() {
    let mut c = config();
    c.ports[1].max_groups = 1;
    let mut sw = Switch::new(c);
    sw.host(1, &v2_report(g1()));
    let out = sw.host(1, &v2_report(g2()));
    assert!(!out.table_changed);
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::Limit {
            scope: "port",
            action: "denied"
        }));
    assert_eq!(sw.members(VLAN, g2()), None);
    assert_eq!(sw.engine.stats().limits.port, 1);
    // Another port may still join it; refreshing the admitted group is not a new group.
    sw.host(2, &v2_report(g2()));
    sw.host(1, &v2_report(g1()));
    assert_eq!(sw.members(VLAN, g2()), Some(ps(&[2])));
    assert_eq!(sw.engine.stats().limits.port, 1);
}

#[test]
fn vlan_limit_with_flood_floods_only_the_overflowing_group() {
    let mut c = config();
    c.vlans[0].max_groups = 1;
    c.vlans[0].table_full = TableFullPolicy::Flood;
    let mut sw = Switch::new(c);
    sw.host(1, &v2_report(g1()));
    let out = sw.host(2, &v2_report(g2()));
    assert!(out.table_changed);
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::Limit {
            scope: "vlan",
            action: "flooded"
        }));
    let t = sw.engine.table();
    assert_eq!(
        t.multicast_egress(VLAN, 0, ip(1, 1, 1, 1), g2()),
        (ps(&[1, 2, 3, 4]), MulticastRule::OverflowFlood)
    );
    assert_eq!(
        t.multicast_egress(VLAN, 0, ip(1, 1, 1, 1), g1()),
        (ps(&[1]), MulticastRule::Registered),
        "snooping stays on for the admitted group"
    );
    assert_eq!(sw.engine.stats().limits.vlan, 1);
    // The flood ends one GMI after the last refused report.
    let outs = sw.run_until(s(260));
    assert!(outs
        .iter()
        .any(|o| o.events.iter().any(|e| e.kind == EventKind::FloodEnded)));
    assert_eq!(sw.members(VLAN, g2()), None);
}

#[test]
fn global_limit_counts_groups_across_vlans() {
    let mut c = config();
    c.max_groups = 1;
    let mut sw = Switch::new(c);
    sw.host(1, &v2_report(g1()));
    sw.msg(5, OTHER_VLAN, ip(10, 0, 0, 9), &v2_report(g2()));
    assert_eq!(sw.engine.stats().limits.global, 1);
    assert!(sw.engine.table().vlans[&OTHER_VLAN].groups.is_empty());
    // Once g1 expires the slot is free again.
    sw.run_until(s(260));
    sw.msg(5, OTHER_VLAN, ip(10, 0, 0, 9), &v2_report(g2()));
    assert!(sw.engine.table().vlans[&OTHER_VLAN]
        .groups
        .contains_key(&g2()));
}

#[test]
fn source_cap_refuses_extra_sources_and_counts_them() {
    let mut c = config();
    c.max_sources = 2;
    let mut sw = Switch::new(c);
    let srcs = [ip(1, 0, 0, 1), ip(1, 0, 0, 2), ip(1, 0, 0, 3)];
    let out = sw.host(1, &report(Version::V3, RecordType::IsIn, g1(), &srcs));
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::Limit {
            scope: "sources",
            action: "denied"
        }));
    assert_eq!(sw.engine.stats().limits.sources_refused, 1);
    let e = &sw.engine.table().vlans[&VLAN].groups[&g1()];
    assert_eq!(e.by_source.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Link events and reconfiguration

#[test]
fn port_down_flushes_groups_and_router_state_and_up_queries() {
    let mut sw = Switch::new(querier_config());
    sw.step(Input::Tick);
    sw.host(1, &v2_report(g1()));
    sw.host(2, &v2_report(g1()));
    sw.msg(1, VLAN, ip(10, 0, 0, 9), &Message::PimHello);
    let out = sw.step(Input::PortDown(1));
    assert!(out.table_changed);
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::PortFlushed { groups: 1 }));
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::MrouterExpired));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2])));
    assert!(sw.engine.table().vlans[&VLAN].mrouters.is_empty());
    // Messages from a down port are not learned.
    sw.host(1, &v2_report(g2()));
    assert_eq!(sw.members(VLAN, g2()), None);
    let out = sw.step(Input::PortUp(1));
    assert_eq!(out.transmit.len(), 1);
    assert_eq!(out.transmit[0].ports, ps(&[1]));
    assert_eq!(out.transmit[0].query.group, None);
}

#[test]
fn port_down_behind_the_querier_loses_it() {
    let mut sw = Switch::new(querier_config());
    sw.msg(0, VLAN, ip(10, 0, 0, 1), &general_query(Version::V3));
    assert!(!sw.engine.querier_status(sw.now)[0].we_are_querier);
    let out = sw.step(Input::PortDown(0));
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::QuerierLost {
            address: ip(10, 0, 0, 1)
        }));
    assert!(sw.engine.querier_status(sw.now)[0].we_are_querier);
    // We take over at once: a general query on the ports still up.
    assert_eq!(out.transmit.len(), 1);
    assert_eq!(out.transmit[0].ports, ps(&[1, 2, 3, 4]));
}

#[test]
fn reconfigure_keeps_valid_state_and_evicts_the_rest() {
    let mut sw = Switch::new(config());
    sw.host(1, &v2_report(g1()));
    sw.host(2, &v2_report(g1()));
    sw.msg(0, VLAN, ip(10, 0, 0, 1), &general_query(Version::V2));
    let mut c = config();
    c.ports[2].vlans = PortVlans::Access(OTHER_VLAN);
    let out = sw.step(Input::Reconfigure(c));
    assert!(out.table_changed);
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::Evict && e.port == Some(2) && e.group == Some(g1())));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1])));
    assert_eq!(sw.engine.table().vlans[&VLAN].mrouters, ps(&[0]));
    assert_eq!(
        sw.engine.querier_status(sw.now)[0].querier,
        Some(ip(10, 0, 0, 1))
    );
    // Same config again: nothing changes.
    let mut c = config();
    c.ports[2].vlans = PortVlans::Access(OTHER_VLAN);
    let out = sw.step(Input::Reconfigure(c));
    assert!(!out.table_changed && out.events.is_empty());
    // Turning snooping off drops the learned groups and floods.
    let mut c = config();
    c.vlans[0].snooping = false;
    sw.step(Input::Reconfigure(c));
    assert!(sw.engine.table().vlans[&VLAN].groups.is_empty());
    assert!(sw.engine.mdb(sw.now).is_empty());
}

#[test]
fn reconfigure_turning_the_querier_on_starts_it() {
    let mut sw = Switch::new(config());
    sw.now = s(50);
    let out = sw.step(Input::Reconfigure(querier_config()));
    assert_eq!(out.transmit.len(), 1, "first startup query at once");
    assert_eq!(sw.engine.next_deadline(), Some(s(50) + ms(31_250)));
}

// ---------------------------------------------------------------------------------------------
// Views

#[test]
fn mdb_rows_follow_the_json_contract() {
    let mut c = config();
    c.static_groups.push(StaticGroup {
        vlan: VLAN,
        port: 3,
        group: g2(),
        sources: vec![],
    });
    let mut sw = Switch::new(c);
    let (s1, s2) = (ip(10, 1, 1, 1), ip(10, 1, 1, 2));
    sw.host(1, &report(Version::V3, RecordType::IsIn, g1(), &[s1]));
    sw.host(2, &report(Version::V3, RecordType::IsEx, g1(), &[s2]));
    sw.now = s(10);
    let j = serde_json::to_value(sw.engine.mdb(sw.now)).unwrap();
    let rows = j.as_array().unwrap();
    assert_eq!(rows.len(), 5, "{j:#}");
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut want = vec![
        "vlan",
        "group",
        "port",
        "source",
        "filter_mode",
        "blocked",
        "static",
        "origin",
        "expires_ms",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    let row = |port: &str, src: serde_json::Value| {
        rows.iter()
            .find(|r| r["port"] == port && r["source"] == src && r["group"] == "239.1.1.1")
            .unwrap_or_else(|| panic!("no row {port} {src} in {j:#}"))
    };
    let p1 = row("p1", serde_json::Value::Null);
    assert_eq!(
        (p1["filter_mode"].as_str(), p1["expires_ms"].is_null()),
        (Some("include"), true)
    );
    let p1s = row("p1", "10.1.1.1".into());
    assert_eq!(p1s["expires_ms"], 250_000);
    assert_eq!(p1s["blocked"], false);
    let p2 = row("p2", serde_json::Value::Null);
    assert_eq!(
        (p2["filter_mode"].as_str(), p2["expires_ms"].as_u64()),
        (Some("exclude"), Some(250_000))
    );
    let p2s = row("p2", "10.1.1.2".into());
    assert_eq!(
        (p2s["blocked"].as_bool(), p2s["expires_ms"].is_null()),
        (Some(true), true)
    );
    let st = rows.iter().find(|r| r["static"] == true).unwrap();
    assert_eq!(
        (st["port"].as_str(), st["group"].as_str()),
        (Some("p3"), Some("239.2.2.2"))
    );
    assert!(st["expires_ms"].is_null());
    assert_eq!(st["origin"], "file");
    assert_eq!(p1["origin"], "learned");
    assert_eq!(sw.members(VLAN, g2()), Some(ps(&[3])));
}

#[test]
fn events_and_stats_serialize() {
    let mut sw = Switch::new(config());
    let out = sw.host(1, &v2_report(g1()));
    let j = serde_json::to_value(&out.events).unwrap();
    assert_eq!(j[0]["kind"]["type"], "join");
    assert_eq!(j[0]["reason"], "IGMPv2 report");
    assert_eq!(j[0]["group"], "239.1.1.1");
    assert!(j[0]["at_ms"].is_u64());
    let st = serde_json::to_value(sw.engine.stats()).unwrap();
    assert_eq!(st["received"]["reports_v2"], 1);
}

#[test]
fn flood_policy_is_bounded_by_the_flood_cap() {
    use xsnoop_control::engine::core::MAX_FLOODED_GROUPS_PER_VLAN;
    let mut c = config();
    c.vlans[0].max_groups = 1;
    c.vlans[0].table_full = TableFullPolicy::Flood;
    let mut sw = Switch::new(c);
    let n = MAX_FLOODED_GROUPS_PER_VLAN + 10;
    let mut denied = 0;
    for i in 0..=n {
        let g = ip(239, 100, (i / 256) as u8, (i % 256) as u8);
        let out = sw.host(1, &v2_report(g));
        denied += out
            .events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Limit {
                        action: "denied",
                        ..
                    }
                )
            })
            .count();
    }
    let flooded = sw.engine.table().vlans[&VLAN]
        .groups
        .values()
        .filter(|e| e.flood)
        .count();
    assert_eq!(flooded, MAX_FLOODED_GROUPS_PER_VLAN);
    assert_eq!(denied, 10);
    assert!(sw.engine.invariant_violations().is_empty());
}

#[test]
fn absurd_times_do_not_panic() {
    let mut sw = Switch::new(querier_config());
    sw.host(1, &v2_report(g1()));
    sw.host(1, &Message::Leave { group: g1() });
    sw.now = std::time::Duration::MAX;
    sw.step(Input::Tick);
    sw.host(2, &v2_report(g2()));
    sw.msg(0, VLAN, ip(10, 0, 0, 1), &general_query(Version::V3));
    sw.step(Input::Tick);
    assert!(sw.engine.next_deadline().is_some());
}

#[test]
fn timer_bounds_are_validated() {
    let mut c = config();
    c.vlans[0].timers.query_interval = s(40_000);
    assert!(err(c).to_string().contains("QQIC"));
    let mut c = config();
    c.vlans[0].timers.startup_query_interval = s(500);
    assert!(err(c).to_string().contains("startup_query_interval"));
    let mut c = config();
    c.vlans[0].timers.membership_interval = Some(s(10_000_000));
    assert!(err(c).to_string().contains("membership_interval"));
}

#[test]
fn reconfiguring_the_querier_journals_role_changes() {
    let mut sw = Switch::new(config());
    let out = sw.step(Input::Reconfigure(querier_config()));
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::QuerierElected {
            address: ip(10, 0, 0, 5),
            ours: true
        }));
    let out = sw.step(Input::Reconfigure(config()));
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::QuerierLost {
            address: ip(10, 0, 0, 5)
        }));
    assert!(!sw.engine.querier_status(sw.now)[0].we_are_querier);
    // An elected other querier that no longer beats our new address is dropped.
    sw.msg(0, VLAN, ip(10, 0, 0, 9), &general_query(Version::V3));
    let out = sw.step(Input::Reconfigure(querier_config()));
    let kinds: Vec<_> = out.events.iter().map(|e| e.kind.clone()).collect();
    assert!(
        kinds.contains(&EventKind::QuerierLost {
            address: ip(10, 0, 0, 9)
        }),
        "{kinds:?}"
    );
    assert!(sw.engine.querier_status(sw.now)[0].we_are_querier);
}

#[test]
fn static_groups_pin_every_source_or_just_their_list_and_go_with_their_config() {
    let (s1, s2) = (ip(10, 1, 1, 1), ip(10, 1, 1, 2));
    let mut c = config();
    c.static_groups.push(StaticGroup {
        vlan: VLAN,
        port: 2,
        group: g1(),
        sources: vec![],
    });
    c.static_groups.push(StaticGroup {
        vlan: VLAN,
        port: 3,
        group: g1(),
        sources: vec![s1],
    });
    let mut sw = Switch::new(c.clone());
    let e = |sw: &Switch| sw.engine.table().vlans[&VLAN].groups.get(&g1()).cloned();
    let entry = e(&sw).expect("static groups register the group");
    assert_eq!(
        entry.members_for(s1),
        ps(&[2, 3]),
        "the SSM pin adds port 3 for s1"
    );
    assert_eq!(
        entry.members_for(s2),
        ps(&[2]),
        "other sources only reach the all-sources pin"
    );
    // Static state never expires.
    sw.run_until(s(10_000));
    assert_eq!(e(&sw).map(|g| g.members_for(s1)), Some(ps(&[2, 3])));
    // The mdb shows them as static, the SSM pin as INCLUDE with its source.
    let rows = sw.engine.mdb(sw.now);
    let pin: Vec<_> = rows.iter().filter(|r| r.port == "p3").collect();
    assert_eq!(pin.len(), 2, "{rows:?}");
    assert!(pin
        .iter()
        .all(|r| r.is_static && r.filter_mode == MdbFilterMode::Include));
    assert_eq!(pin[1].source, Some(s1));
    // Removing the entries by reconfigure removes the group.
    let mut without = c;
    without.static_groups.clear();
    sw.step(Input::Reconfigure(without));
    assert!(
        e(&sw).is_none(),
        "a group held only by static entries goes with them"
    );
    assert_eq!(sw.engine.table(), &sw.engine.recompute_table());
}

#[test]
fn querier_health_alarms_on_mismatched_version_or_timers_once_per_change() {
    let mut sw = Switch::new(querier_config());
    let router = ip(10, 0, 0, 1);
    let mismatches = |outs: &[xsnoop_control::engine::Output]| -> Vec<String> {
        outs.iter()
            .flat_map(|o| &o.events)
            .filter_map(|e| match &e.kind {
                EventKind::QuerierMismatch { differs, .. } => Some(differs.clone()),
                _ => None,
            })
            .collect()
    };
    // A lower-addressed IGMPv2 querier wins the election; ours is configured for v3.
    let out = sw.msg(1, VLAN, router, &general_query(Version::V2));
    assert_eq!(mismatches(&[out]), vec!["version 2 (ours 3)".to_string()]);
    // The same difference again is not journalled again.
    sw.now = s(100);
    let out = sw.msg(1, VLAN, router, &general_query(Version::V2));
    assert!(mismatches(&[out]).is_empty());
    // It moves to v3 with robustness 3 and a 60 s query interval: a new difference.
    let v3 = Message::Query {
        version: Version::V3,
        group: None,
        sources: vec![],
        max_resp: s(10),
        suppress: false,
        qrv: 3,
        qqi: Some(s(60)),
    };
    sw.now = s(200);
    let out = sw.msg(1, VLAN, router, &v3);
    assert_eq!(
        mismatches(&[out]),
        vec!["robustness 3 (ours 2), query interval 60s (ours 125s)".to_string()]
    );
    let q = &sw.engine.querier_status(sw.now)[0];
    assert_eq!(q.querier, Some(router));
    assert_eq!(
        q.differs.as_deref(),
        Some("robustness 3 (ours 2), query interval 60s (ours 125s)")
    );
    // A QQI within QQIC precision of ours (128 s vs 125 s) is not a difference.
    let close = Message::Query {
        version: Version::V3,
        group: None,
        sources: vec![],
        max_resp: s(10),
        suppress: false,
        qrv: 2,
        qqi: Some(s(128)),
    };
    sw.now = s(300);
    sw.msg(1, VLAN, router, &close);
    assert_eq!(sw.engine.querier_status(sw.now)[0].differs, None);
    // It goes silent: lost, and we take over.
    let outs = sw.run_until(s(300) + s(2 * 128 + 5) + s(1));
    assert!(mismatches(&outs).is_empty());
    let st = &sw.engine.stats().querier;
    assert_eq!((st.mismatched, st.lost), (2, 1), "{st:?}");
    assert!(st.elected >= 2, "the router, then us: {st:?}");
}

#[test]
fn impossible_sources_in_records_are_dropped_and_counted_never_learned() {
    let mut sw = Switch::new(config());
    let good = ip(10, 1, 1, 1);
    let junk = [
        ip(0, 0, 0, 0),
        ip(255, 255, 255, 255),
        ip(127, 0, 0, 1),
        ip(239, 9, 9, 9),
        ip(250, 1, 1, 1),
    ];
    // Only junk: IS_IN {junk} is IS_IN {}, which joins nothing.
    sw.host(1, &report(Version::V3, RecordType::IsIn, g1(), &junk));
    assert_eq!(sw.members(VLAN, g1()), None);
    // Junk beside a real source: the real one is learned, the junk is not.
    let mut mixed = junk.to_vec();
    mixed.push(good);
    sw.host(1, &report(Version::V3, RecordType::IsIn, g1(), &mixed));
    let entry = sw.engine.table().vlans[&VLAN].groups[&g1()].clone();
    assert_eq!(
        entry.by_source.keys().copied().collect::<Vec<_>>(),
        vec![good]
    );
    assert_eq!(
        sw.engine
            .stats()
            .ignored
            .get("invalid source address in a record"),
        Some(&10)
    );
}
