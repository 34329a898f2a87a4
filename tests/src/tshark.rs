//! Decodes a pcap with tshark, the independent implementation our codecs are checked against.
//!
//! Runs `tshark -r FILE -T json --no-duplicate-keys -o ip.check_checksum:TRUE -o
//! udp.check_checksum:TRUE` (checksum checks on, so `ip.checksum.status`, `udp.checksum.status`,
//! `igmp.checksum.status` and `pim.cksum.status` are real verdicts: "1" good, "0" bad) and exposes each
//! frame's decoded fields by tshark field name (see `tshark -G fields`).
//!
//! Field values are looked up anywhere in a frame's protocol tree. Object keys come back sorted
//! (serde_json's map), so the order of *different* subtrees (e.g. IGMPv3 group records) is not
//! the wire order; repeated values of one field inside one subtree (e.g. a record's sources)
//! keep their wire order.

use std::path::Path;

use serde_json::Value;

use crate::cmd;
use crate::error::{Result, TestbedError};

/// One frame as tshark decoded it: the `_source.layers` object.
#[derive(Clone, Debug)]
pub struct DecodedFrame {
    /// The raw `layers` tree, for lookups the helpers do not cover.
    pub layers: Value,
}

fn collect<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == name {
                    match child {
                        Value::Array(items) => out.extend(items.iter()),
                        other => out.push(other),
                    }
                } else {
                    collect(child, name, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, name, out)),
        _ => {}
    }
}

fn leaf_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl DecodedFrame {
    /// Every value of field `name` in this frame (leaf values only), see the module doc for
    /// ordering.
    pub fn all(&self, name: &str) -> Vec<String> {
        let mut hits = Vec::new();
        collect(&self.layers, name, &mut hits);
        hits.into_iter().filter_map(leaf_string).collect()
    }

    /// The first value of field `name`, if tshark decoded it.
    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    /// Every subtree (object) that directly contains field `name`; e.g. `subtrees("igmp.record_type")`
    /// yields one object per IGMPv3 group record.
    pub fn subtrees(&self, name: &str) -> Vec<DecodedFrame> {
        fn walk(v: &Value, name: &str, out: &mut Vec<DecodedFrame>) {
            match v {
                Value::Object(m) => {
                    if m.contains_key(name) {
                        out.push(DecodedFrame { layers: v.clone() });
                    }
                    m.values().for_each(|c| walk(c, name, out));
                }
                Value::Array(items) => items.iter().for_each(|i| walk(i, name, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.layers, name, &mut out);
        out
    }

    /// The protocol stack tshark saw, e.g. `eth:ethertype:ip:igmp`.
    pub fn protocols(&self) -> String {
        self.get("frame.protocols").unwrap_or_default()
    }
}

/// Parses tshark's `-T json` output into frames.
pub fn parse_json(text: &str) -> Result<Vec<DecodedFrame>> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| TestbedError::Parse(format!("tshark JSON: {e}")))?;
    let Value::Array(packets) = v else {
        return Err(TestbedError::Parse("tshark JSON is not an array".into()));
    };
    packets
        .into_iter()
        .map(|p| {
            p.get("_source")
                .and_then(|s| s.get("layers"))
                .cloned()
                .map(|layers| DecodedFrame { layers })
                .ok_or_else(|| TestbedError::Parse("packet without _source.layers".into()))
        })
        .collect()
}

/// Decodes the pcap at `path` with tshark.
pub fn decode(path: &Path) -> Result<Vec<DecodedFrame>> {
    let p = path
        .to_str()
        .ok_or_else(|| TestbedError::BadName(format!("path {}", path.display())))?;
    let out = cmd::run(
        "tshark",
        &[
            "-r",
            p,
            "-T",
            "json",
            "--no-duplicate-keys",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ],
    )?;
    parse_json(&out)
}

/// Whether tshark can be run at all.
pub fn available() -> bool {
    cmd::run("tshark", &["--version"]).is_ok()
}

/// Returns `true` when tshark is there; otherwise prints why test `name` is skipped and returns
/// `false`, or panics when `XSNOOP_REQUIRE_NETNS=1` (`make test` installs tshark first, so a
/// missing tshark there is a broken setup, not a reason to pass).
pub fn require(name: &str) -> bool {
    if available() {
        return true;
    }
    let required = std::env::var(crate::privilege::REQUIRE_ENV).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{name}: tshark is not installed (run `make deps`)"
    );
    eprintln!("SKIPPED {name}: tshark is not installed (run `make deps`)");
    false
}
