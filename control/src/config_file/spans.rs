//! Where each key of a TOML file is written, so a semantic error can say `FILE:LINE:COLUMN`.
//!
//! The typed schema is deserialized once for its values; when one of them is refused, the text
//! is parsed again into a tree that keeps only the position of every value (through the `toml`
//! crate's span support, the protocol `toml::Spanned` uses), and the error's key path
//! (`port.0.vlan`) is looked up in it. Keeping positions apart from the schema means a new key
//! needs no span plumbing, and a file that is accepted never pays for the second parse.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A position in the file: 1-based line and column (in characters), as editors count them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut at = offset.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let before = text.get(..at).unwrap_or("");
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before.get(line_start..).map_or(0, |l| l.chars().count()) + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One value of the file and where it is written (`None` for tables TOML creates implicitly).
#[derive(Debug, Default)]
struct Node {
    span: Option<Range<usize>>,
    children: Children,
}

#[derive(Debug, Default)]
enum Children {
    #[default]
    Leaf,
    Table(BTreeMap<String, Node>),
    Array(Vec<Node>),
}

/// The positions of every value of one file.
#[derive(Debug)]
pub struct Spans<'t> {
    text: &'t str,
    root: Node,
}

impl<'t> Spans<'t> {
    /// Positions of `text`'s values; empty when the text is not TOML (its parse error has its
    /// own position then).
    pub fn parse(text: &'t str) -> Spans<'t> {
        let root = toml::Deserializer::new(text)
            .deserialize_any(NodeVisitor)
            .unwrap_or_default();
        Spans { text, root }
    }

    /// Where the value at `path` is written: dot-separated keys, array elements by index
    /// (`"port.0.trunk.1"`). `None` when the file does not write that key.
    pub fn at(&self, path: &str) -> Option<Location> {
        let mut node = &self.root;
        for seg in path.split('.') {
            node = match &node.children {
                Children::Table(map) => map.get(seg)?,
                Children::Array(list) => list.get(seg.parse::<usize>().ok()?)?,
                Children::Leaf => return None,
            };
        }
        node.span
            .as_ref()
            .map(|s| Location::of_offset(self.text, s.start))
    }

    /// The key whose value starts at byte `offset`, written the way errors name keys
    /// (`port[0].mrouter`); `None` when no value starts there (an unknown key's name).
    pub fn key_at(&self, offset: usize) -> Option<String> {
        fn walk(node: &Node, offset: usize, name: &mut String) -> bool {
            let here = name.len();
            let found = match &node.children {
                Children::Leaf => false,
                Children::Table(map) => map.iter().any(|(k, n)| {
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.push_str(k);
                    walk(n, offset, name) || {
                        name.truncate(here);
                        false
                    }
                }),
                Children::Array(list) => list.iter().enumerate().any(|(i, n)| {
                    name.push_str(&format!("[{i}]"));
                    walk(n, offset, name) || {
                        name.truncate(here);
                        false
                    }
                }),
            };
            found || node.span.as_ref().is_some_and(|s| s.start == offset)
        }
        let mut name = String::new();
        (walk(&self.root, offset, &mut name) && !name.is_empty()).then_some(name)
    }

    /// The first of `paths` the file writes: the offending key when it is written, else the
    /// key or section it was derived from.
    pub fn first(&self, paths: &[String]) -> Option<Location> {
        paths.iter().find_map(|p| self.at(p))
    }
}

/// The field names by which the `toml` deserializer recognizes a request for a value's span
/// (the protocol behind `toml::Spanned`; a unit test notices if a new `toml` changes it).
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const START: &str = "$__serde_spanned_private_start";
const END: &str = "$__serde_spanned_private_end";
const VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[START, END, VALUE];

/// Deserializes one value, asking for its span; values TOML has no span for (implicit tables
/// of dotted keys) come back as plain values and are kept without one.
struct SpannedNode;

impl<'de> DeserializeSeed<'de> for SpannedNode {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_struct(SPANNED, SPANNED_FIELDS, NodeVisitor)
    }
}

/// Builds a [`Node`] from whatever value the deserializer has.
struct NodeVisitor;

impl NodeVisitor {
    fn leaf<E>(self) -> Result<Node, E> {
        Ok(Node::default())
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        self.leaf()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut list = Vec::new();
        while let Some(n) = seq.next_element_seed(SpannedNode)? {
            list.push(n);
        }
        Ok(Node {
            span: None,
            children: Children::Array(list),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut table = BTreeMap::new();
        let mut start = None;
        let mut end = None;
        let mut inner = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                START => start = Some(map.next_value::<usize>()?),
                END => end = Some(map.next_value::<usize>()?),
                VALUE => inner = Some(map.next_value_seed(PlainNode)?),
                _ => {
                    let n = map.next_value_seed(SpannedNode)?;
                    table.insert(key, n);
                }
            }
        }
        if let (Some(start), Some(end), Some(mut n)) = (start, end, inner) {
            n.span = Some(start..end);
            return Ok(n);
        }
        Ok(Node {
            span: None,
            children: Children::Table(table),
        })
    }
}

/// The value inside a span: any value, its own children asking for their spans again.
struct PlainNode;

impl<'de> DeserializeSeed<'de> for PlainNode {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "workers = 0\n\n[snooping]\nquerier = true\n\n[[port]]\nname = \"a\"\n  trunk = [10, 0]\n[[port]]\nname = \"bé\" # x\nvlan = 4095\nsnooping.robustness = 0\n";

    #[test]
    fn keys_are_found_at_their_value() {
        let s = Spans::parse(TEXT);
        let at = |p: &str| s.at(p).map(|l| (l.line, l.column));
        assert_eq!(at("workers"), Some((1, 11)));
        assert_eq!(at("snooping.querier"), Some((4, 11)));
        assert_eq!(at("port.0.name"), Some((7, 8)));
        assert_eq!(at("port.0.trunk"), Some((8, 11)));
        assert_eq!(at("port.0.trunk.1"), Some((8, 16)));
        assert_eq!(at("port.1.vlan"), Some((11, 8)));
        assert_eq!(at("port.1.snooping.robustness"), Some((12, 23)));
        assert_eq!(at("port.2.vlan"), None);
        assert_eq!(at("port.x"), None);
        assert_eq!(at("nosuch"), None);
        assert_eq!(
            s.first(&["port.0.vlan".into(), "port.1.vlan".into()]),
            Some(Location {
                line: 11,
                column: 8
            })
        );
    }

    #[test]
    fn the_key_of_a_value_is_named_like_errors_name_it() {
        let s = Spans::parse(TEXT);
        let offset = |needle: &str| TEXT.find(needle).unwrap();
        assert_eq!(s.key_at(offset("4095")).as_deref(), Some("port[1].vlan"));
        assert_eq!(s.key_at(offset("0]")).as_deref(), Some("port[0].trunk[1]"));
        assert_eq!(
            s.key_at(offset("true")).as_deref(),
            Some("snooping.querier")
        );
        assert_eq!(s.key_at(offset("querier")), None, "a key name is no value");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let s = Spans::parse("name = \"é\"\nx = \"é\" ; y = 1\n");
        assert!(s.at("x").is_none(), "not TOML: no positions at all");
        let s = Spans::parse("a = \"é\"\nb = [\"é\", 4]\n");
        assert_eq!(
            s.at("b.1"),
            Some(Location {
                line: 2,
                column: 11
            })
        );
    }
}
