//! An index of every running timer of the engine, so the next deadline and the work due at a
//! tick are found without scanning all state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use xsnoop_dataplane::{PortId, VlanId};

use super::model::Time;

/// What a deadline belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// A port-group's next timer (membership state machine).
    PortGroup {
        /// VLAN.
        vlan: VlanId,
        /// Group.
        group: Ipv4Addr,
        /// Port.
        port: PortId,
    },
    /// End of the flooding of a group that overflowed a limit.
    Flood {
        /// VLAN.
        vlan: VlanId,
        /// Group.
        group: Ipv4Addr,
    },
    /// Our next general query on a VLAN.
    GeneralQuery(VlanId),
    /// Expiry of the other querier on a VLAN (Other Querier Present timer).
    OtherQuerier(VlanId),
    /// Expiry of a learned multicast-router port.
    Mrouter {
        /// VLAN.
        vlan: VlanId,
        /// Port.
        port: PortId,
    },
}

/// Deadlines by time and by key.
#[derive(Clone, Debug, Default)]
pub struct Deadlines {
    by_time: BTreeSet<(Time, TimerKey)>,
    by_key: BTreeMap<TimerKey, Time>,
}

impl Deadlines {
    /// Sets (or with `None` clears) the deadline of `key`.
    pub fn set(&mut self, key: TimerKey, at: Option<Time>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
        if let Some(at) = at {
            self.by_key.insert(key, at);
            self.by_time.insert((at, key));
        }
    }

    /// The earliest deadline.
    pub fn first(&self) -> Option<Time> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Keys whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: Time) -> Vec<TimerKey> {
        self.by_time
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, k)| *k)
            .collect()
    }

    /// The deadline of `key`.
    pub fn get(&self, key: &TimerKey) -> Option<Time> {
        self.by_key.get(key).copied()
    }

    /// Removes every key matching `pred`.
    pub fn retain(&mut self, mut keep: impl FnMut(&TimerKey) -> bool) {
        self.by_key.retain(|k, _| keep(k));
        self.by_time.retain(|(_, k)| keep(k));
    }

    /// Number of running timers.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no timer runs.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn set_replace_clear_and_due() {
        let mut d = Deadlines::default();
        let s = Duration::from_secs;
        d.set(TimerKey::GeneralQuery(1), Some(s(5)));
        d.set(TimerKey::OtherQuerier(1), Some(s(3)));
        d.set(TimerKey::GeneralQuery(1), Some(s(10)));
        assert_eq!(d.first(), Some(s(3)));
        assert_eq!(d.due(s(9)), vec![TimerKey::OtherQuerier(1)]);
        d.set(TimerKey::OtherQuerier(1), None);
        assert_eq!(d.first(), Some(s(10)));
        assert_eq!(d.len(), 1);
        d.retain(|k| !matches!(k, TimerKey::GeneralQuery(_)));
        assert!(d.is_empty());
        assert_eq!(d.first(), None);
    }
}
