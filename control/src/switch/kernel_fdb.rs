//! The stations the kernel may forward for: the CPU's copy of what the AF_XDP workers learned,
//! written into the fast path's FDB map so known unicast leaves in the kernel.
//!
//! Learning has one owner, the workers: the XDP program forwards a frame in the kernel only if
//! its source MAC is in the map *for its ingress port*, so an unknown or moved station always
//! reaches a worker, which learns it and sends a notice here. Ageing needs both sides: the
//! kernel stamps each entry when it forwards a frame from it (at most once a second), and this
//! table asks for those stamps before it ages a station out, then tells the workers the station
//! is still alive so they do not flood frames towards it (IEEE 802.1Q §8.8.3: an entry ages
//! when no frame from it was seen for the ageing time, whoever forwarded that frame).
//!
//! Pure: time is a `Duration` on the workers' FDB clock, the kernel's stamps are converted by
//! the caller, so every rule is a unit test.

use std::collections::BTreeMap;
use std::time::Duration;

use xsnoop_dataplane::forward::FdbNotice;
use xsnoop_dataplane::wire::MacAddr;
use xsnoop_dataplane::{PortId, PortSet, VlanId};

/// One station as the kernel map should hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Station {
    port: PortId,
    /// When a frame from it was last seen by a worker or the kernel.
    refreshed: Duration,
}

/// The learned stations for the kernel's FDB, bounded by the map's capacity.
#[derive(Debug)]
pub struct KernelStations {
    ageing: Duration,
    capacity: usize,
    map: BTreeMap<(VlanId, MacAddr), Station>,
    changed: bool,
    refused_full: u64,
}

impl KernelStations {
    /// Empty, ageing stations after `ageing` without a frame, holding at most `capacity`.
    pub fn new(ageing: Duration, capacity: usize) -> KernelStations {
        KernelStations {
            ageing,
            capacity,
            map: BTreeMap::new(),
            changed: false,
            refused_full: 0,
        }
    }

    /// Changes the ageing time (`fdb_ageing` reloaded); held stations are judged against the
    /// new time from the next [`KernelStations::due`] and [`KernelStations::expire`] on, as
    /// the workers' tables do.
    pub fn set_ageing(&mut self, ageing: Duration) {
        self.ageing = ageing;
    }

    /// The ageing time in force.
    pub fn ageing(&self) -> Duration {
        self.ageing
    }

    /// A worker's notice: the station is behind `n.port` (new, moved or refreshed), seen at
    /// `n.seen` (never later than `now`).
    pub fn learn(&mut self, n: FdbNotice, now: Duration) {
        if !n.mac.is_unicast() || n.mac == MacAddr::ZERO {
            return;
        }
        let seen = n.seen.min(now);
        let full = self.map.len() >= self.capacity;
        match self.map.get_mut(&(n.vlan, n.mac)) {
            Some(s) => {
                if s.port != n.port {
                    s.port = n.port;
                    self.changed = true;
                }
                s.refreshed = s.refreshed.max(seen);
            }
            None if full => self.refused_full += 1,
            None => {
                self.map.insert(
                    (n.vlan, n.mac),
                    Station {
                        port: n.port,
                        refreshed: seen,
                    },
                );
                self.changed = true;
            }
        }
    }

    /// Forgets the stations behind `ports` (they went down: IEEE 802.1Q §8.7.6, as the
    /// workers do).
    pub fn forget_ports(&mut self, ports: PortSet) {
        let before = self.map.len();
        self.map.retain(|_, s| !ports.contains(s.port));
        self.changed |= self.map.len() != before;
    }

    /// The stations no worker has reported for a quarter of the ageing time: the caller asks
    /// the kernel when it last forwarded a frame from each ([`KernelStations::seen`]).
    pub fn due(&self, now: Duration) -> Vec<(VlanId, MacAddr, PortId)> {
        self.map
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.refreshed) >= self.ageing / 4)
            .map(|(&(v, m), s)| (v, m, s.port))
            .collect()
    }

    /// The kernel forwarded a frame from the station at `at`; returns whether that refreshed
    /// it (then the workers should hear of it).
    pub fn seen(&mut self, vlan: VlanId, mac: MacAddr, at: Duration) -> bool {
        match self.map.get_mut(&(vlan, mac)) {
            Some(s) if at > s.refreshed => {
                s.refreshed = at;
                true
            }
            _ => false,
        }
    }

    /// Asks `stamp` (the kernel's `seen_ns` of a station, CLOCK_MONOTONIC ns) about every
    /// station [`KernelStations::due`] at `now`, and refreshes those the kernel forwarded a
    /// frame from since; returns them, for the workers' tables. `epoch_ns` is CLOCK_MONOTONIC
    /// at the workers' FDB epoch, fixed once: an unchanged stamp then converts to the same time
    /// every round, so it refreshes a station once. (Converted against a fresh clock reading
    /// each round, it came out a few microseconds later now and then, and an idle station was
    /// refreshed again in the workers' tables, outliving its ageing time there by seconds.)
    pub fn refresh_from_kernel(
        &mut self,
        now: Duration,
        epoch_ns: u64,
        mut stamp: impl FnMut(VlanId, MacAddr) -> Option<u64>,
    ) -> Vec<FdbNotice> {
        let mut alive = Vec::new();
        for (vlan, mac, port) in self.due(now) {
            let Some(ns) = stamp(vlan, mac) else {
                continue;
            };
            let at = Duration::from_nanos(ns.saturating_sub(epoch_ns));
            if self.seen(vlan, mac, at) {
                // The kernel's stamp, not now: the workers age the station from its last frame.
                alive.push(FdbNotice {
                    vlan,
                    mac,
                    port,
                    seen: at,
                });
            }
        }
        alive
    }

    /// Removes the stations not seen for the ageing time at `now`; returns how many.
    pub fn expire(&mut self, now: Duration) -> usize {
        let before = self.map.len();
        let ageing = self.ageing;
        self.map
            .retain(|_, s| now.saturating_sub(s.refreshed) < ageing);
        let gone = before - self.map.len();
        self.changed |= gone > 0;
        gone
    }

    /// Whether the set of (station, port) changed since the last call (the kernel map needs
    /// writing).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Every station and its port.
    pub fn stations(&self) -> impl Iterator<Item = (VlanId, MacAddr, PortId)> + '_ {
        self.map.iter().map(|(&(v, m), s)| (v, m, s.port))
    }

    /// How many stations are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Notices refused because the table was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(300);

    fn mac(b: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, b])
    }

    fn notice(b: u8, port: PortId, seen: Duration) -> FdbNotice {
        FdbNotice {
            vlan: 1,
            mac: mac(b),
            port,
            seen,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn new_and_moved_stations_change_the_map_refreshes_do_not() {
        let mut t = KernelStations::new(AGE, 16);
        t.learn(notice(1, 3, secs(0)), secs(0));
        assert!(t.take_changed());
        t.learn(notice(1, 3, secs(80)), secs(80));
        assert!(!t.take_changed(), "a refresh writes nothing to the kernel");
        t.learn(notice(1, 4, secs(90)), secs(90));
        assert!(t.take_changed());
        assert_eq!(t.stations().collect::<Vec<_>>(), vec![(1, mac(1), 4)]);
        // Group MACs and the zero MAC are never stations.
        t.learn(
            FdbNotice {
                vlan: 1,
                mac: MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
                port: 1,
                seen: secs(90),
            },
            secs(90),
        );
        t.learn(
            FdbNotice {
                vlan: 1,
                mac: MacAddr::ZERO,
                port: 1,
                seen: secs(90),
            },
            secs(90),
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_station_the_kernel_keeps_forwarding_does_not_age() {
        let mut t = KernelStations::new(AGE, 16);
        t.learn(notice(1, 3, secs(0)), secs(0));
        t.learn(notice(2, 3, secs(0)), secs(0));
        assert!(t.due(secs(74)).is_empty());
        assert_eq!(
            t.due(secs(75)).len(),
            2,
            "due at a quarter of the ageing time"
        );
        // The kernel forwarded from station 1 at 250 s; station 2 went quiet.
        assert!(t.seen(1, mac(1), secs(250)));
        assert!(
            !t.seen(1, mac(1), secs(200)),
            "an older stamp refreshes nothing"
        );
        assert!(
            !t.seen(1, mac(9), secs(250)),
            "unknown stations are not created"
        );
        assert_eq!(t.expire(secs(299)), 0);
        assert_eq!(t.expire(secs(300)), 1);
        assert_eq!(t.stations().collect::<Vec<_>>(), vec![(1, mac(1), 3)]);
        assert!(t.take_changed());
        assert_eq!(t.expire(secs(549)), 0);
        assert_eq!(t.expire(secs(550)), 1);
    }

    #[test]
    fn a_short_ageing_time_is_honoured_and_can_change() {
        let mut t = KernelStations::new(secs(10), 16);
        assert_eq!(t.ageing(), secs(10));
        t.learn(notice(1, 3, secs(0)), secs(0));
        t.learn(notice(2, 3, secs(0)), secs(0));
        assert!(t.due(Duration::from_millis(2_499)).is_empty());
        assert_eq!(t.due(Duration::from_millis(2_500)).len(), 2);
        // The kernel keeps forwarding station 1's frames: it outlives many ageing times.
        for s in 1..=30 {
            t.seen(1, mac(1), secs(s));
            t.expire(secs(s));
        }
        assert_eq!(t.stations().collect::<Vec<_>>(), vec![(1, mac(1), 3)]);
        assert_eq!(t.expire(secs(40)), 1, "10 s after its last frame");
        t.learn(notice(3, 4, secs(100)), secs(100));
        t.set_ageing(secs(300));
        assert_eq!(t.expire(secs(150)), 0, "the longer time applies at once");
        t.set_ageing(secs(20));
        assert_eq!(t.expire(secs(150)), 1, "and so does a shorter one");
    }

    #[test]
    fn a_kernel_stamp_refreshes_a_station_once() {
        let epoch = 7_000_000_000u64; // CLOCK_MONOTONIC at the FDB epoch
        let ns = |s: u64| epoch + s * 1_000_000_000;
        let mut t = KernelStations::new(secs(10), 16);
        t.learn(notice(1, 3, secs(0)), secs(0));
        t.learn(notice(2, 4, secs(0)), secs(0));
        // Station 1 sent until 4 s (the kernel forwarded it); station 2 never did.
        let stamp = |_: VlanId, m: MacAddr| (m == mac(1)).then_some(ns(4));
        assert!(
            t.refresh_from_kernel(secs(2), epoch, stamp).is_empty(),
            "not due"
        );
        assert_eq!(
            t.refresh_from_kernel(secs(5), epoch, stamp),
            [notice(1, 3, secs(4))],
            "the notice carries the kernel's stamp: the workers age from it too"
        );
        // Every later round sees the same stamp: no more refreshes, whenever it is read.
        for s in 6..=13 {
            assert!(
                t.refresh_from_kernel(secs(s), epoch, stamp).is_empty(),
                "{s} s"
            );
            t.expire(secs(s));
        }
        assert_eq!(t.stations().collect::<Vec<_>>(), vec![(1, mac(1), 3)]);
        assert_eq!(
            t.expire(secs(14)),
            1,
            "10 s after the stamp, not after the notice"
        );
        // A station the kernel lost (no stamp) is left to expire.
        t.learn(notice(5, 1, secs(20)), secs(20));
        assert!(t
            .refresh_from_kernel(secs(23), epoch, |_, _| None)
            .is_empty());
        assert_eq!(t.expire(secs(30)), 1);
    }

    #[test]
    fn a_late_notice_ages_from_its_sighting_not_its_arrival() {
        let mut t = KernelStations::new(secs(10), 16);
        // A worker saw station 1 at 2 s; the notice arrived at 6 s.
        t.learn(notice(1, 3, secs(2)), secs(6));
        assert_eq!(t.expire(Duration::from_millis(11_999)), 0);
        assert_eq!(t.expire(secs(12)), 1, "10 s after the frame");
        // A notice from the future (another clock's rounding) counts as now.
        t.learn(notice(2, 3, secs(50)), secs(20));
        assert_eq!(t.expire(secs(29)), 0);
        assert_eq!(t.expire(secs(30)), 1);
    }

    #[test]
    fn a_port_going_down_forgets_its_stations_and_capacity_is_kept() {
        let mut t = KernelStations::new(AGE, 2);
        t.learn(notice(1, 3, secs(0)), secs(0));
        t.learn(notice(2, 4, secs(0)), secs(0));
        t.learn(notice(3, 4, secs(0)), secs(0));
        assert_eq!((t.len(), t.refused_full()), (2, 1));
        t.take_changed();
        t.forget_ports(PortSet::single(4));
        assert!(t.take_changed());
        assert_eq!(t.stations().collect::<Vec<_>>(), vec![(1, mac(1), 3)]);
        t.forget_ports(PortSet::single(9));
        assert!(!t.take_changed());
    }
}
