//! `xsnoop mdb` says where each row's membership comes from (issue 4): `learned` from reports,
//! `file` for a `[[static_group]]`, `runtime` for `xsnoop static add` — in JSON (`"origin"`,
//! beside `"static"`) and in the human table's ORIGIN column — and the origin follows an entry
//! when a reload makes the file take it over.

mod common;

use common::*;
use serde_json::Value;
use xsnoop_control::engine::model::{RecordType, Version};
use xsnoop_control::engine::runtime::StaticAdd;
use xsnoop_control::engine::{Command, Input, MdbOrigin, StaticGroup};
use xsnoop_control::show;

fn static_add(group: std::net::Ipv4Addr, sources: &[std::net::Ipv4Addr], port: &str) -> Command {
    Command::StaticAdd(StaticAdd {
        vlan: VLAN,
        group,
        sources: sources.to_vec(),
        ports: vec![port.to_string()],
    })
}

/// `(port, source, static, origin)` of every row of `group`, from the JSON contract.
fn rows(sw: &Switch, group: std::net::Ipv4Addr) -> Vec<(String, Value, bool, String)> {
    let j = serde_json::to_value(sw.engine.mdb(sw.now)).unwrap();
    j.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"] == group.to_string())
        .map(|r| {
            (
                r["port"].as_str().unwrap().to_string(),
                r["source"].clone(),
                r["static"].as_bool().unwrap(),
                r["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row(port: &str, source: Value, is_static: bool, origin: &str) -> (String, Value, bool, String) {
    (port.to_string(), source, is_static, origin.to_string())
}

#[test]
fn learned_file_and_runtime_rows_are_told_apart() {
    let mut c = config();
    c.static_groups.push(StaticGroup {
        vlan: VLAN,
        port: 3,
        group: g1(),
        sources: vec![],
    });
    let mut sw = Switch::new(c);
    sw.host(1, &v2_report(g1()));
    sw.engine
        .command(sw.now, &static_add(g1(), &[], "p2"))
        .unwrap();
    let src = ip(10, 1, 1, 7);
    sw.engine
        .command(sw.now, &static_add(g2(), &[src], "p1"))
        .unwrap();
    sw.host(
        2,
        &report(Version::V3, RecordType::IsIn, g2(), &[ip(10, 1, 1, 8)]),
    );

    assert_eq!(
        rows(&sw, g1()),
        [
            row("p1", Value::Null, false, "learned"),
            row("p2", Value::Null, true, "runtime"),
            row("p3", Value::Null, true, "file"),
        ]
    );
    // A static INCLUDE entry: the port-group row and its source rows share the origin; the
    // learned port beside it stays learned, its source row too.
    assert_eq!(
        rows(&sw, g2()),
        [
            row("p2", Value::Null, false, "learned"),
            row("p2", "10.1.1.8".into(), false, "learned"),
            row("p1", Value::Null, true, "runtime"),
            row("p1", "10.1.1.7".into(), true, "runtime"),
        ]
    );

    // The human table has the same column, row for row.
    let text = show::mdb(&sw.engine.mdb(sw.now));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "ORIGIN").unwrap();
    assert_eq!(header.get(col - 1), Some(&"FLAGS"), "{text}");
    let origins: Vec<String> = sw
        .engine
        .mdb(sw.now)
        .iter()
        .map(|r| r.origin.as_str().to_string())
        .collect();
    let shown: Vec<&str> = lines
        .map(|l| {
            l.split_whitespace()
                .find(|w| ["learned", "file", "runtime"].contains(w))
                .unwrap_or_else(|| panic!("no origin in {l:?}"))
        })
        .collect();
    assert_eq!(shown, origins, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" p3 ") && l.contains(" static ") && l.contains(" file ")),
        "{text}"
    );
}

#[test]
fn a_runtime_entry_the_reloaded_file_takes_over_becomes_file() {
    let base = config();
    let mut sw = Switch::new(base.clone());
    sw.engine
        .command(sw.now, &static_add(g1(), &[], "p2"))
        .unwrap();
    assert_eq!(rows(&sw, g1()), [row("p2", Value::Null, true, "runtime")]);
    let mut next = base.clone();
    next.static_groups.push(StaticGroup {
        vlan: VLAN,
        port: 2,
        group: g1(),
        sources: vec![],
    });
    sw.step(Input::Reconfigure(next));
    assert_eq!(rows(&sw, g1()), [row("p2", Value::Null, true, "file")]);
    // And a reload of the file without it removes the row altogether.
    sw.step(Input::Reconfigure(base));
    assert_eq!(rows(&sw, g1()), []);
}

#[test]
fn origin_names_are_the_json_names() {
    for o in [MdbOrigin::Learned, MdbOrigin::File, MdbOrigin::Runtime] {
        assert_eq!(
            serde_json::to_value(o).unwrap(),
            Value::String(o.as_str().to_string())
        );
    }
}
