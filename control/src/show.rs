//! Aligned human tables for show commands, in the style of `bridge mdb show`.
//!
//! Every show command also has `--json`; these tables are for people at a terminal.

use std::fmt::Write as _;

use crate::engine::{MdbFilterMode, MdbRow};

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
                expires(r.expires_ms),
            ]
        })
        .collect();
    table(
        &[
            "VLAN", "GROUP", "PORT", "SOURCE", "MODE", "FLAGS", "EXPIRES",
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
    fn json_rows_become_columns() {
        let v = serde_json::json!([{"vlan": 1, "port": "swp1", "expires_ms": null}]);
        assert_eq!(json_table(&v), "VLAN  PORT  EXPIRES_MS\n1     swp1  -\n");
        assert_eq!(json_table(&serde_json::json!([])), "(none)\n");
    }
}
