//! Link state of the switch ports, polled from the switch's own network namespace.
//!
//! A port whose link goes down stops forwarding (the worker's down set), forgets its stations
//! (FDB flush) and tells the engine (`PortDown`: its memberships and router state go, as
//! RFC 4541 §2.1.1 lets a switch react to topology changes); a port that comes back tells the
//! engine `PortUp`, which sends a general query when this switch is the querier.

use tracing::{info, warn};
use xsnoop_dataplane::{PortId, PortSet};

use super::iface;

/// The last known state of every port.
///
/// A change counts once two consecutive polls agree on it: attaching XDP and binding AF_XDP
/// sockets on a veth can drop its carrier for a moment, and a port that flaps for less than a
/// poll interval should not flush its groups.
#[derive(Debug)]
pub struct LinkWatch {
    names: Vec<String>,
    down: PortSet,
    /// Ports whose last reading differed from `down` (a change waiting for confirmation).
    pending: PortSet,
}

impl LinkWatch {
    /// Watches `names` (port id = position); every port starts as up.
    pub fn new(names: Vec<String>) -> LinkWatch {
        LinkWatch {
            names,
            down: PortSet::EMPTY,
            pending: PortSet::EMPTY,
        }
    }

    /// Ports currently down.
    pub fn down(&self) -> PortSet {
        self.down
    }

    /// Reads every port's state; returns the ports that changed, with their new state
    /// (`true` = up). A port whose state cannot be read (e.g. deleted) counts as down.
    pub fn poll(&mut self) -> Vec<(PortId, bool)> {
        let mut changes = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            let Ok(port) = PortId::try_from(i) else {
                continue;
            };
            let up = match iface::link_up(name) {
                Ok(up) => up,
                Err(e) => {
                    if !self.down.contains(port) {
                        warn!(port = %name, error = %e, "cannot read link state; treating as down");
                    }
                    false
                }
            };
            if up != self.down.contains(port) {
                self.pending.remove(port);
                continue;
            }
            if !self.pending.contains(port) {
                self.pending.insert(port);
                continue;
            }
            self.pending.remove(port);
            {
                info!(port = %name, up, "link state changed");
                if up {
                    self.down.remove(port);
                } else {
                    self.down.insert(port);
                }
                changes.push((port, up));
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_counts_when_two_polls_agree() {
        // "lo" is always up; a missing interface reads as down.
        let mut w = LinkWatch::new(vec!["lo".into(), "nosuchif0".into()]);
        assert!(
            w.poll().is_empty(),
            "the first reading only arms the change"
        );
        assert_eq!(w.poll(), vec![(1, false)]);
        assert!(w.down().contains(1) && !w.down().contains(0));
        assert!(w.poll().is_empty());
    }
}
