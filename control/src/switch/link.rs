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
/// A port going down counts once two consecutive polls agree: attaching XDP and binding AF_XDP
/// sockets on a veth can drop its carrier for a moment, and a port that flaps for less than a
/// poll interval should not flush its groups. A port coming up counts at once: holding a
/// working link down only drops traffic (a fresh veth reports IFF_RUNNING up to ~1 s after it
/// is set up, which is often just after the switch started).
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
        self.poll_with(iface::link_up)
    }

    /// [`LinkWatch::poll`] with the link reader given (tests drive it).
    fn poll_with<E: std::fmt::Display>(
        &mut self,
        read: impl Fn(&str) -> Result<bool, E>,
    ) -> Vec<(PortId, bool)> {
        let mut changes = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            let Ok(port) = PortId::try_from(i) else {
                continue;
            };
            let up = match read(name) {
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
            if !up && !self.pending.contains(port) {
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
    fn down_counts_when_two_polls_agree_up_counts_at_once() {
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

    #[test]
    fn a_blip_shorter_than_a_poll_changes_nothing_and_recovery_is_immediate() {
        let mut w = LinkWatch::new(vec!["p0".into()]);
        let read = |up: bool| move |_: &str| Ok::<bool, String>(up);
        assert!(
            w.poll_with(read(false)).is_empty(),
            "one down reading is a blip"
        );
        assert!(w.poll_with(read(true)).is_empty(), "and it is forgotten");
        assert!(w.poll_with(read(false)).is_empty());
        assert_eq!(w.poll_with(read(false)), vec![(0, false)], "confirmed down");
        assert_eq!(
            w.poll_with(read(true)),
            vec![(0, true)],
            "up at the first reading: a working link is never held down"
        );
        assert!(w.down().is_empty());
    }
}
