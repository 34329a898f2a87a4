//! Learned multicast-router ports of one VLAN (RFC 4541 §2.1.1(2)).
//!
//! A port becomes a router port when a query with a source other than 0.0.0.0, a PIMv2 hello or
//! an MRD advertisement (RFC 4286) arrives on it; it stops being one when nothing of the kind
//! was heard for the Other Querier Present Interval (RFC 3376 §8.5), as the Linux bridge does.

use std::collections::BTreeMap;

use serde::Serialize;
use xsnoop_dataplane::{PortId, PortSet, VlanId};

use super::config::MrouterMode;
use super::model::Time;

/// One learned router port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learned {
    /// When it ages out.
    pub expires: Time,
    /// What revealed it last: "query", "pim_hello" or "mrd".
    pub via: &'static str,
}

/// Learned router ports of a VLAN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mrouters {
    learned: BTreeMap<PortId, Learned>,
}

impl Mrouters {
    /// Learns or refreshes `port`; true when it is new. Ports with `mrouter = never` are not
    /// learned (the caller checks the mode).
    pub fn learn(&mut self, port: PortId, expires: Time, via: &'static str) -> bool {
        self.learned
            .insert(port, Learned { expires, via })
            .is_none()
    }

    /// Removes `port` if its timer ran out at `now`; true when removed.
    pub fn expire(&mut self, port: PortId, now: Time) -> bool {
        match self.learned.get(&port) {
            Some(l) if l.expires <= now => {
                self.learned.remove(&port);
                true
            }
            _ => false,
        }
    }

    /// Forgets `port` (link down, reconfiguration); true when it was learned.
    pub fn forget(&mut self, port: PortId) -> bool {
        self.learned.remove(&port).is_some()
    }

    /// The learned ports.
    pub fn learned(&self) -> PortSet {
        self.learned.keys().copied().collect()
    }

    /// Expiry of a learned port.
    pub fn get(&self, port: PortId) -> Option<Learned> {
        self.learned.get(&port).copied()
    }

    /// Every learned port with its state.
    pub fn iter(&self) -> impl Iterator<Item = (PortId, Learned)> + '_ {
        self.learned.iter().map(|(p, l)| (*p, *l))
    }
}

/// The router ports the table uses: (learned ∪ always) − never, within the VLAN.
pub fn effective(
    learned: PortSet,
    always: PortSet,
    never: PortSet,
    vlan_ports: PortSet,
) -> PortSet {
    learned
        .union(always)
        .difference(never)
        .intersection(vlan_ports)
}

/// One router port, for operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MrouterRow {
    /// The VLAN.
    pub vlan: VlanId,
    /// Port name.
    pub port: String,
    /// "auto" (learned) or "always" (configured).
    pub mode: MrouterMode,
    /// How it was learned ("query", "pim_hello", "mrd"); `null` for configured ports.
    pub via: Option<&'static str>,
    /// Milliseconds until it ages out; `null` for configured ports.
    pub expires_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn learn_refresh_expire() {
        let mut m = Mrouters::default();
        let s = Duration::from_secs;
        assert!(m.learn(2, s(10), "query"));
        assert!(!m.learn(2, s(20), "pim_hello"));
        assert!(!m.expire(2, s(10)), "refreshed to 20 s");
        assert!(m.expire(2, s(20)));
        assert!(m.learned().is_empty());
    }

    #[test]
    fn never_beats_always_and_learned() {
        let ps = |v: &[PortId]| v.iter().copied().collect::<PortSet>();
        assert_eq!(
            effective(ps(&[1, 2]), ps(&[3, 9]), ps(&[2]), ps(&[0, 1, 2, 3])),
            ps(&[1, 3])
        );
    }
}
