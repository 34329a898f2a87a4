//! Operator changes at runtime (`Engine::command`): static entries, port settings, flushes,
//! their refusals, how they live through a reload, and the port/VLAN views. After every
//! change the engine's invariants hold and its table equals the one recomputed from state.

mod common;

use common::*;
use xsnoop_control::engine::model::{Message, Version};
use xsnoop_control::engine::runtime::{Flush, PortSettings, StaticAdd, StaticDel};
use xsnoop_control::engine::{
    Command, CommandError, EngineConfig, EventKind, Input, MrouterMode, Output, PortVlans,
    StaticGroup,
};

fn cmd(sw: &mut Switch, c: Command) -> Result<Output, CommandError> {
    let before = sw.engine.table().clone();
    let r = sw.engine.command(sw.now, &c);
    let bad = sw.engine.invariant_violations();
    assert!(bad.is_empty(), "invariants broken after {c:?}: {bad:?}");
    assert_eq!(sw.engine.table(), &sw.engine.recompute_table());
    if let Ok(out) = &r {
        assert_eq!(out.table_changed, &before != sw.engine.table(), "{c:?}");
    }
    r
}

fn add(
    vlan: u16,
    group: std::net::Ipv4Addr,
    sources: &[std::net::Ipv4Addr],
    ports: &[&str],
) -> Command {
    Command::StaticAdd(StaticAdd {
        vlan,
        group,
        sources: sources.to_vec(),
        ports: ports.iter().map(|p| p.to_string()).collect(),
    })
}

fn del(vlan: u16, group: std::net::Ipv4Addr, ports: &[&str]) -> Command {
    Command::StaticDel(StaticDel {
        vlan,
        group,
        ports: ports.iter().map(|p| p.to_string()).collect(),
    })
}

fn set(port: &str, fast_leave: Option<bool>, mrouter: Option<MrouterMode>) -> Command {
    Command::PortSet(PortSettings {
        port: port.to_string(),
        fast_leave,
        mrouter,
    })
}

fn flush(port: Option<&str>, vlan: Option<u16>) -> Command {
    Command::Flush(Flush {
        port: port.map(str::to_string),
        vlan,
    })
}

#[test]
fn static_add_registers_the_group_and_del_removes_it_with_journal_entries() {
    let src = ip(10, 9, 9, 9);
    let mut sw = Switch::new(config());
    assert_eq!(sw.members(VLAN, g1()), None);
    let out = cmd(&mut sw, add(VLAN, g1(), &[], &["p2", "p3"])).unwrap();
    assert!(out.table_changed);
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2, 3])));
    let added: Vec<_> = out
        .events
        .iter()
        .filter(|e| e.kind == EventKind::StaticAdded)
        .collect();
    assert_eq!(added.len(), 2, "{:?}", out.events);
    assert!(added
        .iter()
        .all(|e| e.reason == "static group added by operator" && e.group == Some(g1())));
    // A source-pinned entry: only that source reaches the port.
    cmd(&mut sw, add(VLAN, g2(), &[src], &["p1"])).unwrap();
    let entry = sw.engine.table().vlans[&VLAN].groups[&g2()].clone();
    assert_eq!(entry.members_for(src), ps(&[1]));
    assert_eq!(entry.members_for(ip(10, 9, 9, 8)), ps(&[]));
    // Runtime entries never expire.
    sw.run_until(s(100_000));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2, 3])));
    assert!(sw
        .engine
        .mdb(sw.now)
        .iter()
        .any(|r| r.port == "p2" && r.is_static));
    // Delete one port, then the other: the group goes with its last entry.
    let out = cmd(&mut sw, del(VLAN, g1(), &["p3"])).unwrap();
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::StaticRemoved && e.port == Some(3)));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2])));
    cmd(&mut sw, del(VLAN, g1(), &["p2"])).unwrap();
    assert_eq!(sw.members(VLAN, g1()), None);
    assert_eq!(
        cmd(&mut sw, del(VLAN, g1(), &["p2"])).unwrap_err(),
        CommandError::NoSuchStatic {
            port: "p2".into(),
            group: g1(),
            vlan: VLAN
        }
    );
}

#[test]
fn a_static_entry_keeps_a_learned_group_forwarded_after_its_host_leaves() {
    let mut sw = Switch::new(querier_config());
    sw.host(1, &v2_report(g1()));
    cmd(&mut sw, add(VLAN, g1(), &[], &["p1"])).unwrap();
    sw.host(1, &Message::Leave { group: g1() });
    sw.run_until(sw.now + s(300));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1])));
}

#[test]
fn refused_changes_name_the_bad_value_and_change_nothing() {
    let mut c = config();
    c.static_groups.push(StaticGroup {
        vlan: VLAN,
        port: 0,
        group: g1(),
        sources: vec![],
    });
    let mut sw = Switch::new(c);
    let table = sw.engine.table().clone();
    let cases: Vec<(Command, &str)> = vec![
        (add(VLAN, g2(), &[], &["nope"]), "\"nope\""),
        (add(99, g2(), &[], &["p1"]), "VLAN 99"),
        (add(VLAN, g2(), &[], &["p5"]), "p5 does not carry VLAN 10"),
        (add(VLAN, ip(224, 0, 0, 251), &[], &["p1"]), "224.0.0.251"),
        (add(VLAN, ip(10, 1, 1, 1), &[], &["p1"]), "10.1.1.1"),
        (
            add(VLAN, g2(), &[ip(239, 9, 9, 9)], &["p1"]),
            "source 239.9.9.9",
        ),
        (
            add(VLAN, g2(), &[ip(0, 0, 0, 0)], &["p1"]),
            "source 0.0.0.0",
        ),
        (add(VLAN, g2(), &[], &[]), "no port"),
        // One bad port among good ones: nothing is added, not even p1.
        (add(VLAN, g2(), &[], &["p1", "p5"]), "p5"),
        (add(VLAN, g1(), &[], &["p0"]), "configuration file"),
        (del(VLAN, g1(), &["p0"]), "configuration file"),
        (del(VLAN, g2(), &["p1"]), "no static entry for 239.2.2.2"),
        (set("p9", Some(true), None), "\"p9\""),
        (set("p1", None, None), "nothing to change on port p1"),
        (flush(None, None), "--port, --vlan"),
        (flush(Some("zz"), None), "\"zz\""),
        (flush(None, Some(30)), "VLAN 30"),
        (flush(Some("p5"), Some(VLAN)), "p5 does not carry VLAN 10"),
    ];
    for (c, needle) in cases {
        let e = cmd(&mut sw, c.clone()).unwrap_err().to_string();
        assert!(e.contains(needle), "{c:?}: {e:?} lacks {needle:?}");
    }
    assert_eq!(sw.engine.table(), &table);
    assert_eq!(sw.engine.overrides(), &Default::default());
    assert!(sw.engine.mdb(sw.now).iter().all(|r| r.port == "p0"));
}

#[test]
fn fast_leave_set_at_runtime_makes_a_leave_act_at_once_and_setting_it_back_restores_queries() {
    let mut sw = Switch::new(querier_config());
    sw.run_until(s(1));
    sw.host(1, &v2_report(g1()));
    sw.host(2, &v2_report(g1()));
    let out = cmd(&mut sw, set("p1", Some(true), None)).unwrap();
    assert!(!out.table_changed);
    assert!(out.events.iter().any(|e| e.kind
        == EventKind::PortChanged {
            fast_leave: true,
            mrouter: MrouterMode::Auto
        }
        && e.reason == "port settings changed by operator"));
    assert!(sw.engine.config().ports[1].fast_leave);
    assert!(!sw.engine.base_config().ports[1].fast_leave);
    let out = sw.host(1, &Message::Leave { group: g1() });
    assert!(out.transmit.is_empty(), "fast leave sends no group query");
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2])));
    // Back to the file's value: the override goes, a leave is queried again.
    cmd(&mut sw, set("p2", Some(false), None)).unwrap();
    assert!(!sw.engine.overrides().fast_leave.contains_key(&2));
    cmd(&mut sw, set("p1", Some(false), None)).unwrap();
    assert!(sw.engine.overrides().fast_leave.is_empty());
    let out = sw.host(2, &Message::Leave { group: g1() });
    assert_eq!(
        out.transmit.len(),
        1,
        "a group-specific query, not an instant removal"
    );
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2])));
}

#[test]
fn mrouter_mode_set_at_runtime_changes_the_router_ports_at_once() {
    let mut sw = Switch::new(config());
    let mrouters = |sw: &Switch| sw.engine.table().vlans[&VLAN].mrouters;
    let out = cmd(&mut sw, set("p1", None, Some(MrouterMode::Always))).unwrap();
    assert!(out.table_changed);
    assert_eq!(mrouters(&sw), ps(&[1]));
    // Unregistered multicast and reports now reach p1.
    assert_eq!(sw.host(3, &v2_report(g1())).forward, ps(&[1]));
    // A router learned on p2, then p2 set to never: it is forgotten at once.
    sw.msg(2, VLAN, ip(10, 0, 0, 1), &general_query(Version::V2));
    assert_eq!(mrouters(&sw), ps(&[1, 2]));
    cmd(&mut sw, set("p2", None, Some(MrouterMode::Never))).unwrap();
    assert_eq!(mrouters(&sw), ps(&[1]));
    sw.msg(2, VLAN, ip(10, 0, 0, 1), &general_query(Version::V2));
    assert_eq!(
        mrouters(&sw),
        ps(&[1]),
        "never: routers heard there are ignored"
    );
    cmd(&mut sw, set("p1", None, Some(MrouterMode::Auto))).unwrap();
    assert_eq!(mrouters(&sw), ps(&[]));
    let rows = sw.engine.mrouter_ports(sw.now);
    assert!(rows.is_empty(), "{rows:?}");
}

#[test]
fn flushing_a_port_removes_its_learned_groups_only_and_queries_when_we_are_querier() {
    for querier in [false, true] {
        let mut sw = Switch::new(if querier { querier_config() } else { config() });
        sw.run_until(s(200));
        sw.host(1, &v2_report(g1()));
        sw.host(1, &v2_report(g2()));
        sw.host(2, &v2_report(g1()));
        cmd(&mut sw, add(VLAN, g2(), &[], &["p1"])).unwrap();
        let out = cmd(&mut sw, flush(Some("p1"), None)).unwrap();
        assert!(out.table_changed);
        assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2])));
        assert_eq!(
            sw.members(VLAN, g2()),
            Some(ps(&[1])),
            "the static entry stays"
        );
        assert!(out
            .events
            .iter()
            .any(|e| e.kind == EventKind::PortFlushed { groups: 2 }
                && e.port == Some(1)
                && e.reason == "learned groups flushed by operator"));
        let rows = sw.engine.mdb(sw.now);
        assert!(
            rows.iter().all(|r| r.port != "p1" || r.is_static),
            "{rows:?}"
        );
        if querier {
            assert_eq!(out.transmit.len(), 1, "{:?}", out.transmit);
            let t = &out.transmit[0];
            assert_eq!((t.vlan, t.ports, t.query.group), (VLAN, ps(&[1]), None));
        } else {
            assert!(out.transmit.is_empty());
        }
        // The host reports again: learned again.
        sw.host(1, &v2_report(g1()));
        assert_eq!(sw.members(VLAN, g1()), Some(ps(&[1, 2])));
    }
}

#[test]
fn flushing_a_vlan_or_a_port_in_one_vlan_leaves_the_other_vlans_alone() {
    let mut sw = Switch::new(querier_config());
    sw.run_until(s(200));
    sw.host(0, &v2_report(g1()));
    sw.host(4, &v2_report(g1()));
    sw.msg(4, OTHER_VLAN, ip(10, 0, 1, 4), &v2_report(g1()));
    sw.msg(5, OTHER_VLAN, ip(10, 0, 1, 5), &v2_report(g1()));
    // The trunk in VLAN 20 only.
    let out = cmd(&mut sw, flush(Some("trunk4"), Some(OTHER_VLAN))).unwrap();
    assert_eq!(sw.members(OTHER_VLAN, g1()), Some(ps(&[5])));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[0, 4])));
    assert!(out.transmit.is_empty(), "we are not querier in VLAN 20");
    // All of VLAN 10.
    let out = cmd(&mut sw, flush(None, Some(VLAN))).unwrap();
    assert_eq!(sw.members(VLAN, g1()), None);
    assert_eq!(sw.members(OTHER_VLAN, g1()), Some(ps(&[5])));
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::VlanFlushed { groups: 2 } && e.port.is_none()));
    assert_eq!(out.transmit.len(), 1);
    assert_eq!(out.transmit[0].ports, ps(&[0, 1, 2, 3, 4]));
    // A flush with nothing to remove still succeeds and says so.
    let out = cmd(&mut sw, flush(Some("p2"), None)).unwrap();
    assert!(!out.table_changed);
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventKind::PortFlushed { groups: 0 }));
}

#[test]
fn runtime_changes_survive_a_reload_unless_the_reloaded_file_no_longer_allows_them() {
    let base = config();
    let mut sw = Switch::new(base.clone());
    cmd(&mut sw, add(VLAN, g1(), &[], &["p2", "p3"])).unwrap();
    cmd(&mut sw, set("p1", Some(true), Some(MrouterMode::Always))).unwrap();
    // Reloading the same file keeps everything.
    sw.step(Input::Reconfigure(base.clone()));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2, 3])));
    assert!(sw.engine.config().ports[1].fast_leave);
    assert_eq!(sw.engine.table().vlans[&VLAN].mrouters, ps(&[1]));
    // p3 moves to VLAN 20 and the file takes over p2's entry.
    let mut next = base.clone();
    next.ports[3].vlans = PortVlans::Access(OTHER_VLAN);
    next.static_groups.push(StaticGroup {
        vlan: VLAN,
        port: 2,
        group: g1(),
        sources: vec![],
    });
    let out = sw.step(Input::Reconfigure(next.clone()));
    let dropped: Vec<_> = out
        .events
        .iter()
        .filter(|e| e.kind == EventKind::StaticRemoved)
        .collect();
    assert_eq!(dropped.len(), 1, "{:?}", out.events);
    assert_eq!(dropped[0].port, Some(3));
    assert_eq!(sw.members(VLAN, g1()), Some(ps(&[2])));
    assert!(sw.engine.overrides().statics.is_empty());
    assert!(matches!(
        cmd(&mut sw, del(VLAN, g1(), &["p2"])),
        Err(CommandError::StaticFromFile { .. })
    ));
    // The port settings still stand.
    assert!(sw.engine.config().ports[1].fast_leave);
    // An invalid reload changes nothing, overrides included.
    let mut bad: EngineConfig = next;
    bad.vlans[0].timers.robustness = 0;
    assert!(sw.engine.reconfigure(sw.now, bad).is_err());
    assert_eq!(
        sw.engine.overrides().mrouter.get(&1),
        Some(&MrouterMode::Always)
    );
}

#[test]
fn port_and_vlan_views_show_settings_links_routers_and_groups() {
    let mut sw = Switch::new(querier_config());
    sw.run_until(s(1));
    sw.host(1, &v2_report(g1()));
    sw.host(1, &v2_report(g2()));
    cmd(&mut sw, add(VLAN, g1(), &[], &["p2"])).unwrap();
    cmd(&mut sw, set("p3", Some(true), Some(MrouterMode::Always))).unwrap();
    sw.step(Input::PortDown(0));
    let ports = sw.engine.port_views();
    assert_eq!(ports.len(), 6);
    let p = |name: &str| ports.iter().find(|r| r.port == name).unwrap().clone();
    assert_eq!(
        (p("p0").link.as_str(), p("p1").link.as_str()),
        ("down", "up")
    );
    assert_eq!((p("p1").groups, p("p1").static_groups), (2, 0));
    assert_eq!((p("p2").groups, p("p2").static_groups), (0, 1));
    let p3 = p("p3");
    assert!(p3.fast_leave && p3.fast_leave_runtime && p3.mrouter_runtime);
    assert_eq!(
        (p3.mrouter, p3.router_in.clone()),
        (MrouterMode::Always, vec![VLAN])
    );
    let t = p("trunk4");
    assert_eq!(
        (t.vlan_mode.as_str(), t.vlans.clone()),
        ("trunk", vec![VLAN, OTHER_VLAN])
    );
    assert!(!t.fast_leave_runtime && t.rx.is_none());
    let vlans = sw.engine.vlan_views();
    assert_eq!(vlans.len(), 2);
    let v = &vlans[0];
    assert_eq!((v.vlan, v.snooping, v.querier.as_str()), (VLAN, true, "us"));
    assert_eq!(v.querier_address, Some(ip(10, 0, 0, 5)));
    assert_eq!(v.groups, 2);
    assert_eq!(v.ports, vec!["p0", "p1", "p2", "p3", "trunk4"]);
    assert_eq!(v.router_ports, vec!["p3"]);
    assert_eq!((vlans[1].querier.as_str(), vlans[1].groups), ("none", 0));
}

#[test]
fn commands_have_a_stable_json_shape() {
    let c = add(VLAN, g1(), &[ip(10, 0, 0, 9)], &["p1"]);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"static_add": {"vlan": 10, "group": "239.1.1.1", "sources": ["10.0.0.9"], "ports": ["p1"]}})
    );
    let back: Command = serde_json::from_value(v).unwrap();
    assert_eq!(back, c);
    let p: Command =
        serde_json::from_str(r#"{"port_set": {"port": "p1", "mrouter": "never"}}"#).unwrap();
    assert_eq!(p, set("p1", None, Some(MrouterMode::Never)));
    let f: Command = serde_json::from_str(r#"{"flush": {"vlan": 10}}"#).unwrap();
    assert_eq!(f, flush(None, Some(10)));
    assert!(serde_json::from_str::<Command>(r#"{"flush": {"vlan": 10, "bogus": 1}}"#).is_err());
    assert!(serde_json::from_str::<Command>(
        r#"{"port_set": {"port": "p1", "mrouter": "sometimes"}}"#
    )
    .is_err());
}
