//! The delivery matrix of one scenario on one switch, and the comparison of two.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What the hosts saw during one scenario on one switch.
///
/// `data` maps (phase, receiving host, "S->G") to the number of datagrams received; `igmp` maps a
/// host to the reports and leaves it received ("v2-report G from hN", "v3-report G from hN",
/// "v2-leave G from hN"), aggregated over the whole scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matrix {
    /// The switch.
    pub switch: String,
    /// The scenario.
    pub scenario: String,
    /// Number of hosts (h1..hN).
    pub hosts: usize,
    /// Phases in the order they ran.
    pub phases: Vec<String>,
    /// Flows sent in each phase, as "S->G" (with the sending host).
    pub flows: BTreeMap<String, Vec<String>>,
    /// (phase, host, flow) → datagrams received.
    pub data: BTreeMap<(String, usize, String), usize>,
    /// host → IGMP reports/leaves received.
    pub igmp: BTreeMap<usize, BTreeSet<String>>,
    /// The switch's own view at the end of each phase (informational).
    pub state: Vec<(String, String)>,
}

impl Matrix {
    /// Datagrams of `flow` ("S->G") host `host` received in `phase`.
    pub fn got(&self, phase: &str, host: usize, flow: &str) -> usize {
        self.data
            .get(&(phase.to_owned(), host, flow.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The hosts that received at least one datagram of `flow` in `phase`.
    pub fn receivers(&self, phase: &str, flow: &str) -> Vec<usize> {
        (1..=self.hosts)
            .filter(|h| self.got(phase, *h, flow) > 0)
            .collect()
    }

    /// The hosts that received an IGMP message described as `what` ("v2-leave G from hN").
    pub fn igmp_receivers(&self, what: &str) -> Vec<usize> {
        (1..=self.hosts)
            .filter(|h| self.igmp.get(h).is_some_and(|s| s.contains(what)))
            .collect()
    }

    /// Every cell as (key, value), the form [`diff`] compares.
    pub fn cells(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for ((phase, host, flow), n) in &self.data {
            out.insert(format!("{phase} | {flow} | h{host}"), *n);
        }
        for (host, seen) in &self.igmp {
            for what in seen {
                out.insert(format!("igmp | {what} | h{host}"), 1);
            }
        }
        out
    }

    /// One line per (phase, flow) with every host's count, then the IGMP rows.
    pub fn rows(&self) -> Vec<String> {
        let mut out = Vec::new();
        for phase in &self.phases {
            for flow in self.flows.get(phase).into_iter().flatten() {
                let counts: Vec<String> = (1..=self.hosts)
                    .map(|h| format!("h{h}={}", self.got(phase, h, flow)))
                    .collect();
                out.push(format!("{phase:<14} {flow:<22} {}", counts.join(" ")));
            }
        }
        let mut by_msg: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (h, seen) in &self.igmp {
            for what in seen {
                by_msg.entry(what.as_str()).or_default().push(*h);
            }
        }
        for (what, hosts) in by_msg {
            let hs: Vec<String> = hosts.iter().map(|h| format!("h{h}")).collect();
            out.push(format!(
                "{:<14} {what:<32} seen by {}",
                "igmp",
                hs.join(",")
            ));
        }
        out
    }
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== {} on {} ==", self.scenario, self.switch)?;
        for r in self.rows() {
            writeln!(f, "  {r}")?;
        }
        for (phase, st) in &self.state {
            writeln!(f, "  state after {phase}: {st}")?;
        }
        Ok(())
    }
}

/// One cell in which two matrices differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// "phase | S->G | hN" or "igmp | what | hN".
    pub key: String,
    /// Value in the left matrix (0 = absent).
    pub left: usize,
    /// Value in the right matrix.
    pub right: usize,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} vs {}", self.key, self.left, self.right)
    }
}

/// Cells of `left` and `right` whose values differ (a missing cell counts as 0).
pub fn diff(left: &Matrix, right: &Matrix) -> Vec<Difference> {
    let (l, r) = (left.cells(), right.cells());
    let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (
                l.get(k).copied().unwrap_or(0),
                r.get(k).copied().unwrap_or(0),
            );
            (a != b).then(|| Difference {
                key: k.clone(),
                left: a,
                right: b,
            })
        })
        .collect()
}

/// The two matrices of one scenario side by side: per (phase, flow) the receiving hosts with
/// their counts on each switch, then per IGMP message the hosts that saw it.
pub fn side_by_side(left: &Matrix, right: &Matrix) -> String {
    let mut out = format!(
        "  {:<55} | {:<28} | {}\n",
        format!("scenario {}", left.scenario),
        left.switch,
        right.switch
    );
    let who = |m: &Matrix, phase: &str, flow: &str| -> String {
        let hs: Vec<String> = (1..=m.hosts)
            .filter_map(|h| {
                let n = m.got(phase, h, flow);
                (n > 0).then(|| format!("h{h}:{n}"))
            })
            .collect();
        if hs.is_empty() {
            "-".to_owned()
        } else {
            hs.join(" ")
        }
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    for phase in &left.phases {
        for flow in left.flows.get(phase).into_iter().flatten() {
            rows.push((phase.clone(), flow.clone()));
        }
    }
    for (phase, flow) in rows {
        out += &format!(
            "  {:<14} {:<40} | {:<28} | {}\n",
            phase,
            flow,
            who(left, &phase, &flow),
            who(right, &phase, &flow)
        );
    }
    let msgs: BTreeSet<&String> = left
        .igmp
        .values()
        .chain(right.igmp.values())
        .flatten()
        .collect();
    for what in msgs {
        let seen = |m: &Matrix| -> String {
            let hs: Vec<String> = m
                .igmp_receivers(what)
                .iter()
                .map(|h| format!("h{h}"))
                .collect();
            if hs.is_empty() {
                "-".to_owned()
            } else {
                hs.join(" ")
            }
        };
        out += &format!(
            "  {:<14} {:<40} | {:<28} | {}\n",
            "igmp",
            what,
            seen(left),
            seen(right)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(switch: &str, h2: usize, leave_seen_by_h3: bool) -> Matrix {
        let mut m = Matrix {
            switch: switch.into(),
            scenario: "t".into(),
            hosts: 3,
            phases: vec!["p".into()],
            ..Matrix::default()
        };
        m.flows.insert("p".into(), vec!["h1->239.1.1.1".into()]);
        for (h, n) in [(1, 0), (2, h2), (3, 0)] {
            m.data.insert(("p".into(), h, "h1->239.1.1.1".into()), n);
        }
        if leave_seen_by_h3 {
            m.igmp
                .entry(3)
                .or_default()
                .insert("v2-leave 239.1.1.1 from h2".into());
        }
        m
    }

    #[test]
    fn diff_names_each_differing_cell_and_nothing_else() {
        let a = matrix("a", 5, true);
        assert!(diff(&a, &a).is_empty());
        let b = matrix("b", 4, false);
        let d: Vec<String> = diff(&a, &b).iter().map(ToString::to_string).collect();
        assert_eq!(
            d,
            [
                "igmp | v2-leave 239.1.1.1 from h2 | h3: 1 vs 0",
                "p | h1->239.1.1.1 | h2: 5 vs 4"
            ]
        );
    }

    #[test]
    fn receivers_and_side_by_side_show_who_got_what() {
        let (a, b) = (matrix("bridge", 5, true), matrix("xsnoop", 0, false));
        assert_eq!(a.receivers("p", "h1->239.1.1.1"), [2]);
        assert!(b.receivers("p", "h1->239.1.1.1").is_empty());
        assert_eq!(a.igmp_receivers("v2-leave 239.1.1.1 from h2"), [3]);
        let t = side_by_side(&a, &b);
        assert!(t.contains("| h2:5"), "{t}");
        assert!(t.contains("v2-leave 239.1.1.1 from h2"), "{t}");
        assert!(
            t.lines()
                .nth(1)
                .is_some_and(|l| l.trim_end().ends_with('-')),
            "{t}"
        );
    }
}
