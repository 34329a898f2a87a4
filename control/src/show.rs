//! Aligned human tables for show commands, in the style of `bridge mdb show`.
//!
//! Every show command also has `--json`; these tables are for people at a terminal.

use std::fmt::Write as _;

use crate::engine::{MdbFilterMode, MdbRow, MrouterMode, PortView, VlanView};

/// Formats rows as columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

fn expires(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{}.{:01}s", ms / 1000, (ms % 1000) / 100),
        None => "-".to_string(),
    }
}

/// The multicast database: one line per port-group, indented lines for its sources.
pub fn mdb(rows: &[MdbRow]) -> String {
    if rows.is_empty() {
        return "no groups\n".to_string();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mode = match r.filter_mode {
                MdbFilterMode::Include => "include",
                MdbFilterMode::Exclude => "exclude",
            };
            let mut flags = Vec::new();
            if r.is_static {
                flags.push("static");
            }
            if r.blocked {
                flags.push("blocked");
            }
            vec![
                r.vlan.to_string(),
                r.group.to_string(),
                r.port.clone(),
                r.source
                    .map_or_else(|| "*".to_string(), |s| format!("  {s}")),
                if r.source.is_none() { mode } else { "" }.to_string(),
                flags.join(","),
                r.origin.as_str().to_string(),
                expires(r.expires_ms),
            ]
        })
        .collect();
    table(
        &[
            "VLAN", "GROUP", "PORT", "SOURCE", "MODE", "FLAGS", "ORIGIN", "EXPIRES",
        ],
        &cells,
    )
}

/// An array of flat JSON objects as a table whose columns are the first object's keys; nested
/// values are shown as compact JSON, `null` as `-`. Anything else is pretty-printed JSON.
pub fn json_table(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let Some(rows) = v.as_array() else {
        return serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    };
    let Some(Value::Object(first)) = rows.first() else {
        return "(none)\n".to_string();
    };
    let header: Vec<String> = first.keys().map(|k| k.to_uppercase()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            first
                .keys()
                .map(|k| match r.get(k) {
                    None | Some(Value::Null) => "-".to_string(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&header, &cells)
}

/// A VLAN list as `1,10,20`.
fn vlan_list(vlans: &[u16]) -> String {
    let v: Vec<String> = vlans.iter().map(u16::to_string).collect();
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(",")
    }
}

fn mrouter_word(m: MrouterMode) -> &'static str {
    match m {
        MrouterMode::Auto => "auto",
        MrouterMode::Always => "always",
        MrouterMode::Never => "never",
    }
}

/// `xsnoop fdb`: one line per learned station, like `bridge fdb show` with ages.
pub fn fdb(rows: &[serde_json::Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let age = r["age_ms"].as_u64().unwrap_or(0);
            let age = if r["static"] == true {
                "static".to_string()
            } else {
                format!("{}.{:01}s", age / 1000, (age % 1000) / 100)
            };
            vec![
                r["vlan"].to_string(),
                r["mac"].as_str().unwrap_or("?").to_string(),
                r["port"].as_str().unwrap_or("?").to_string(),
                age,
            ]
        })
        .collect();
    let mut out = table(&["VLAN", "MAC", "PORT", "AGE"], &cells);
    // The daemon puts the ageing time in force on every learned row (`ageing_ms`).
    if let Some(ms) = rows.iter().find_map(|r| r["ageing_ms"].as_u64()) {
        out.push_str(&format!(
            "Learned stations age out after {} s without a frame (fdb_ageing).\n",
            ms as f64 / 1000.0
        ));
    }
    out
}

/// `xsnoop streams`: one line per (VLAN, group, source) with its counts and how it is
/// forwarded (`registered` to members, `unregistered` to router ports only...).
pub fn streams(v: &serde_json::Value) -> String {
    let rows = v["streams"].as_array().map_or(&[][..], Vec::as_slice);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let idle = r["idle_ms"].as_u64().unwrap_or(0);
            let how = r["forwarding"].as_str().unwrap_or("?");
            vec![
                r["vlan"].to_string(),
                r["group"].as_str().unwrap_or("?").to_string(),
                r["source"].as_str().unwrap_or("?").to_string(),
                r["packets"].to_string(),
                r["bytes"].to_string(),
                format!("{}.{:01}s", idle / 1000, (idle % 1000) / 100),
                how.strip_prefix("mc_").unwrap_or(how).replace('_', "-"),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "VLAN",
            "GROUP",
            "SOURCE",
            "PACKETS",
            "BYTES",
            "IDLE",
            "FORWARDING",
        ],
        &cells,
    );
    if let Some(n) = v["untracked_frames"].as_u64().filter(|&n| n > 0) {
        out.push_str(&format!(
            "({n} frames of streams beyond the table's capacity not counted)\n"
        ));
    }
    out
}

/// `xsnoop ports`: one line per port; a `*` marks a value set at runtime (`xsnoop port set`).
pub fn ports(rows: &[PortView]) -> String {
    let mark = |runtime: bool| if runtime { "*" } else { "" };
    let count = |c: Option<u64>| c.map_or_else(|| "-".to_string(), |n| n.to_string());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.port.clone(),
                format!("{} {}", r.vlan_mode, vlan_list(&r.vlans)),
                r.link.clone(),
                format!(
                    "{}{}",
                    if r.fast_leave { "on" } else { "off" },
                    mark(r.fast_leave_runtime)
                ),
                format!("{}{}", mrouter_word(r.mrouter), mark(r.mrouter_runtime)),
                vlan_list(&r.router_in),
                r.groups.to_string(),
                r.static_groups.to_string(),
                count(r.rx),
                count(r.tx),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PORT",
            "VLANS",
            "LINK",
            "FAST-LEAVE",
            "MROUTER",
            "ROUTER-IN",
            "GROUPS",
            "STATIC",
            "RX",
            "TX",
        ],
        &cells,
    );
    if rows
        .iter()
        .any(|r| r.fast_leave_runtime || r.mrouter_runtime)
    {
        out.push_str("* set at runtime (xsnoop port set); survives reloads until set back\n");
    }
    out
}

/// `xsnoop vlans`: one line per VLAN.
pub fn vlans(rows: &[VlanView]) -> String {
    let names = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let querier = match (r.querier.as_str(), r.querier_address) {
                (who, Some(a)) => format!("{who} {a}"),
                (who, None) => who.to_string(),
            };
            vec![
                r.vlan.to_string(),
                if r.snooping { "on" } else { "off" }.to_string(),
                format!(
                    "{}{}",
                    querier,
                    if r.querier_enabled { "" } else { " (ours off)" }
                ),
                r.groups.to_string(),
                names(&r.ports),
                names(&r.router_ports),
            ]
        })
        .collect();
    table(
        &[
            "VLAN",
            "SNOOPING",
            "QUERIER",
            "GROUPS",
            "PORTS",
            "ROUTER-PORTS",
        ],
        &cells,
    )
}

/// The cells of one journal entry (as the control socket sends it): sequence number, time,
/// VLAN, port, group, what happened (with its details), why.
fn event_cells(e: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let at = e.get("at_ms").and_then(Value::as_u64).unwrap_or(0);
    let mut what = text(e.get("kind").and_then(|k| k.get("type")));
    if let Some(kind) = e.get("kind").and_then(Value::as_object) {
        for (k, v) in kind.iter().filter(|(k, _)| k.as_str() != "type") {
            what.push_str(&format!(" {k}={}", text(Some(v))));
        }
    }
    let port = match e.get("port_name") {
        Some(Value::String(s)) => s.clone(),
        _ => text(e.get("port")),
    };
    vec![
        text(e.get("seq")),
        format!("{}.{:03}s", at / 1000, at % 1000),
        text(e.get("vlan")),
        port,
        text(e.get("group")),
        what,
        text(e.get("reason")),
    ]
}

const EVENT_HEADER: [&str; 7] = ["SEQ", "TIME", "VLAN", "PORT", "GROUP", "EVENT", "REASON"];

/// `xsnoop events`: the journal as a table, oldest first.
pub fn events(list: &[serde_json::Value]) -> String {
    if list.is_empty() {
        return "no events\n".to_string();
    }
    let cells: Vec<Vec<String>> = list.iter().map(event_cells).collect();
    table(&EVENT_HEADER, &cells)
}

/// Widths of the columns `xsnoop events --follow` prints line by line (a stream cannot be
/// aligned to its widest cell, so the usual widths are fixed; longer cells push the line).
const FOLLOW_WIDTHS: [usize; 6] = [6, 10, 5, 10, 15, 28];

/// The header of `xsnoop events --follow`.
pub fn event_follow_header() -> String {
    follow_line(EVENT_HEADER.iter().map(|s| s.to_string()).collect())
}

/// One journal entry as a line of `xsnoop events --follow`.
pub fn event_line(e: &serde_json::Value) -> String {
    follow_line(event_cells(e))
}

fn follow_line(cells: Vec<String>) -> String {
    let mut l = String::new();
    for (i, c) in cells.iter().enumerate() {
        match FOLLOW_WIDTHS.get(i) {
            Some(w) => {
                let _ = write!(l, "{c:<w$}  ");
            }
            None => l.push_str(c),
        }
    }
    l.trim_end().to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long-cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        assert_eq!(t, "A          BB\nlong-cell  x\ny          z\n");
    }

    #[test]
    fn the_fdb_says_the_ageing_time_under_its_table() {
        let rows = [
            serde_json::json!({"vlan": 1, "mac": "02:00:00:00:00:01", "port": "p1", "age_ms": 1234, "static": false, "ageing_ms": 12_500}),
            serde_json::json!({"vlan": 1, "mac": "02:00:00:00:00:02", "port": "p2", "age_ms": 0, "static": true, "ageing_ms": null}),
        ];
        let t = fdb(&rows);
        assert!(t.contains("1.2s") && t.contains("static"), "{t}");
        assert!(
            t.ends_with("Learned stations age out after 12.5 s without a frame (fdb_ageing).\n"),
            "{t}"
        );
        let mut whole = rows[0].clone();
        whole["ageing_ms"] = 300_000.into();
        assert!(fdb(&[whole]).contains("after 300 s without"));
        // Static stations only (or an older daemon): no ageing line.
        assert!(!fdb(&rows[1..]).contains("age out"));
    }

    fn port(name: &str) -> PortView {
        PortView {
            port: name.into(),
            vlan_mode: "trunk".into(),
            vlans: vec![10, 20],
            link: "up".into(),
            fast_leave: false,
            fast_leave_runtime: false,
            mrouter: MrouterMode::Auto,
            mrouter_runtime: false,
            router_in: vec![],
            groups: 3,
            static_groups: 0,
            rx: None,
            tx: Some(12),
        }
    }

    #[test]
    fn ports_mark_runtime_settings_and_explain_the_mark() {
        let plain = ports(&[port("swp1")]);
        assert_eq!(
            plain,
            "PORT  VLANS        LINK  FAST-LEAVE  MROUTER  ROUTER-IN  GROUPS  STATIC  RX  TX\n\
             swp1  trunk 10,20  up    off         auto     -          3       0       -   12\n"
        );
        let mut p = port("swp10");
        p.fast_leave = true;
        p.fast_leave_runtime = true;
        p.mrouter = MrouterMode::Never;
        p.router_in = vec![20];
        let t = ports(&[port("swp1"), p]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[2].contains("on*") && lines[2].contains("never ") && lines[2].contains(" 20 "),
            "{t}"
        );
        assert!(lines[3].starts_with("* set at runtime"), "{t}");
        // Columns line up: every row's VLANS column starts where the header's does.
        let col = lines[0].find("VLANS").unwrap();
        assert_eq!(&lines[2][col..col + 5], "trunk");
    }

    #[test]
    fn vlans_say_who_queries() {
        let v = VlanView {
            vlan: 10,
            snooping: true,
            querier_enabled: true,
            querier: "us".into(),
            querier_address: Some(std::net::Ipv4Addr::new(10, 0, 0, 254)),
            groups: 2,
            ports: vec!["a".into(), "b".into()],
            router_ports: vec![],
        };
        assert_eq!(
            vlans(&[v]),
            "VLAN  SNOOPING  QUERIER        GROUPS  PORTS  ROUTER-PORTS\n\
             10    on        us 10.0.0.254  2       a,b    -\n"
        );
    }

    #[test]
    fn events_show_names_details_and_reasons() {
        let e = serde_json::json!({
            "seq": 7, "at_ms": 61_005, "vlan": 1, "port": 2, "port_name": "swp3",
            "group": null, "kind": {"type": "port_flushed", "groups": 4},
            "reason": "learned groups flushed by operator"
        });
        let t = events(std::slice::from_ref(&e));
        assert!(t.starts_with("SEQ"), "{t}");
        assert!(
            t.contains("7    61.005s  1     swp3  -      port_flushed groups=4  learned groups flushed by operator"),
            "{t}"
        );
        assert_eq!(events(&[]), "no events\n");
        let line = event_line(&e);
        assert!(line.starts_with("7       61.005s"), "{line:?}");
        assert!(
            line.ends_with("learned groups flushed by operator\n"),
            "{line:?}"
        );
        assert!(event_follow_header().starts_with("SEQ     TIME"));
    }

    #[test]
    fn json_rows_become_columns() {
        let v = serde_json::json!([{"vlan": 1, "port": "swp1", "expires_ms": null}]);
        assert_eq!(json_table(&v), "VLAN  PORT  EXPIRES_MS\n1     swp1  -\n");
        assert_eq!(json_table(&serde_json::json!([])), "(none)\n");
    }
}
