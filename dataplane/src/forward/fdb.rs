//! The filtering database (FDB): which port a unicast MAC sits behind, per VLAN, learned from
//! the source addresses of received frames (IEEE 802.1Q §8.7, independent VLAN learning).
//!
//! Rules:
//! - only individual, non-zero source MACs are learned (a group address is never a station);
//! - a MAC seen on another port moves there (counted as a move: a flapping count is a loop hint);
//! - an entry not refreshed for the ageing time (default 300 s, IEEE 802.1Q Table 8-6) is treated
//!   as absent at once and removed by the next [`Fdb::age`] sweep;
//! - [`Fdb::flush_port`] on link down, [`Fdb::flush_vlan`] when a VLAN is reconfigured;
//! - a hard capacity: once full, new MACs are refused and counted (a MAC flood cannot grow the
//!   table or evict learned stations); known MACs still refresh and move.
//!
//! Time is passed in (`now`, a monotonic [`Duration`] since any fixed epoch); nothing here reads
//! a clock. Storage is allocated once, in [`Fdb::new`]: the map is sized at twice the capacity so
//! that hashbrown's tombstone cleanup always rehashes in place and never reallocates.
//!
//! Sharing: this type is single-writer (one worker). With several workers each keeps its own
//! table, and they keep each other's in step the way the line cards of a chassis switch do: a
//! worker that learns a new station, sees one move, or keeps refreshing one, writes a
//! [`FdbNotice`] ([`Fdb::take_notices`]; only when [`FdbConfig::announce`] is set) that the
//! other workers [`Fdb::install`]. A station heard only on one worker's queues is therefore
//! known to all within a batch, and stays known as long as that worker hears it (a refresh is
//! re-announced every quarter of the ageing time). Notices are bounded: an overflow is counted,
//! and the cost is flooding, never a wrong port for longer than the next notice.

use std::time::Duration;

use crate::fasthash::{FastHashBuilder, FastMap};
use crate::portset::PortId;
use crate::table::VlanId;
use crate::wire::MacAddr;

/// The ageing time IEEE 802.1Q recommends (Table 8-6) and Linux uses.
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// Default capacity (entries over all VLANs).
pub const DEFAULT_CAPACITY: usize = 16 * 1024;

/// FDB limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbConfig {
    /// Most entries over all VLANs; beyond it new MACs are refused. 0 disables learning.
    pub capacity: usize,
    /// An entry not refreshed for this long is gone.
    pub ageing: Duration,
    /// Record a [`FdbNotice`] for every new, moved or long-refreshed station, for the other
    /// workers' tables. Off with one worker.
    pub announce: bool,
}

impl Default for FdbConfig {
    fn default() -> Self {
        FdbConfig {
            capacity: DEFAULT_CAPACITY,
            ageing: DEFAULT_AGEING,
            announce: false,
        }
    }
}

/// What [`Fdb::learn`] did, for counters and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learn {
    /// A new entry (or one that had aged out) was created.
    New,
    /// The entry existed on this port; its age was reset.
    Refreshed,
    /// The MAC moved here from another port.
    Moved {
        /// The port it was on.
        from: PortId,
    },
    /// The source is a group or all-zero MAC: never learned.
    InvalidMac,
    /// The table is full: the new MAC was not learned.
    TableFull,
    /// The MAC has a static entry: it is never learned nor moved (a frame from it on another
    /// port is counted in [`FdbStats::static_conflicts`]).
    Static,
    /// A notice ([`Fdb::install`]) about a sighting older than this table's own, or already
    /// past the ageing time: nothing changed.
    Stale,
}

/// Learning and ageing totals since creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbStats {
    /// Entries created.
    pub learned: u64,
    /// MAC moves between ports.
    pub moved: u64,
    /// New MACs refused because the table was full.
    pub refused_full: u64,
    /// Group or zero source MACs refused.
    pub refused_invalid: u64,
    /// Entries removed by ageing sweeps.
    pub aged: u64,
    /// Entries removed by flushes.
    pub flushed: u64,
    /// Entries installed or updated from other workers' notices.
    pub installed: u64,
    /// Notices not recorded because [`NOTICE_CAPACITY`] were pending.
    pub notices_dropped: u64,
    /// Frames from a statically configured MAC on a port other than its static one.
    pub static_conflicts: u64,
}

/// Notices one table holds between two [`Fdb::take_notices`].
pub const NOTICE_CAPACITY: usize = 1024;

/// "This station is behind this port": what one worker's table tells the others'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbNotice {
    /// VLAN.
    pub vlan: VlanId,
    /// Station MAC.
    pub mac: MacAddr,
    /// The port it was seen on.
    pub port: PortId,
    /// When a frame from it was last seen, on the clock every table of the switch shares.
    /// The receiver ages the station from here, not from the notice's arrival: a notice can
    /// be late (the CPU relays what the kernel saw up to a quarter of the ageing time ago),
    /// and IEEE 802.1Q §8.8.3 ages an entry from the last frame.
    pub seen: Duration,
}

/// One learned station, for `show` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    /// VLAN.
    pub vlan: VlanId,
    /// Station MAC.
    pub mac: MacAddr,
    /// Port it was last seen on.
    pub port: PortId,
    /// Time since it was last seen (zero for a static entry).
    pub age: Duration,
    /// Configured, not learned: never ages, never moves, survives flushes.
    pub is_static: bool,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    port: PortId,
    last_seen: Duration,
    /// When a notice about this entry was last recorded (or received).
    announced: Duration,
    /// A static entry (configuration): never ages, moves or flushes.
    fixed: bool,
}

impl Slot {
    /// Whether a sighting now, on the same port, is due to be announced again: once a quarter
    /// of the ageing time passed since the last notice.
    fn refresh_due(&self, now: Duration, ageing: Duration) -> bool {
        now.saturating_sub(self.announced) >= ageing / 4
    }
}

fn key(vlan: VlanId, mac: MacAddr) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    let [v0, v1] = vlan.to_be_bytes();
    u64::from_be_bytes([v0, v1, a, b, c, d, e, f])
}

fn unkey(k: u64) -> (VlanId, MacAddr) {
    let [v0, v1, a, b, c, d, e, f] = k.to_be_bytes();
    (u16::from_be_bytes([v0, v1]), MacAddr([a, b, c, d, e, f]))
}

/// The MAC learning table of one switch.
#[derive(Clone, Debug)]
pub struct Fdb {
    cfg: FdbConfig,
    map: FastMap<u64, Slot>,
    stats: FdbStats,
    notices: Vec<FdbNotice>,
}

impl Default for Fdb {
    fn default() -> Self {
        Self::new(FdbConfig::default())
    }
}

impl Fdb {
    /// An empty table; allocates its storage once, here.
    pub fn new(cfg: FdbConfig) -> Self {
        Fdb {
            cfg,
            map: FastMap::with_capacity_and_hasher(
                cfg.capacity.saturating_mul(2),
                FastHashBuilder::default(),
            ),
            stats: FdbStats::default(),
            notices: Vec::with_capacity(if cfg.announce { NOTICE_CAPACITY } else { 0 }),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> FdbConfig {
        self.cfg
    }

    /// Changes the ageing time (the operator reloaded `fdb_ageing`): from now on every learned
    /// entry is judged against the new time, as the Linux bridge does when its `ageing_time`
    /// changes (IEEE 802.1Q §8.8.3); entries, ports and counters stay. Rebuilding the table
    /// instead would forget every station and flood until each is heard again.
    pub fn set_ageing(&mut self, ageing: Duration) {
        self.cfg.ageing = ageing;
    }

    /// Learning and ageing totals.
    pub fn stats(&self) -> FdbStats {
        self.stats
    }

    /// Entries held, including aged ones not yet swept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn expired(&self, s: &Slot, now: Duration) -> bool {
        !s.fixed && now.saturating_sub(s.last_seen) >= self.cfg.ageing
    }

    /// Makes `entries` the table's static entries (IEEE 802.1Q §8.8.1 static filtering
    /// entries): each is installed (replacing a learned entry for the same station), and static
    /// entries not listed any more are removed. Group or zero MACs are skipped. Returns how many
    /// are installed. Allocates: for configuration changes, not per packet.
    pub fn set_statics(&mut self, entries: &[(VlanId, MacAddr, PortId)]) -> usize {
        let want: std::collections::HashSet<u64> =
            entries.iter().map(|&(v, m, _)| key(v, m)).collect();
        self.map.retain(|k, s| !s.fixed || want.contains(k));
        let mut n = 0;
        for &(vlan, mac, port) in entries {
            if !mac.is_unicast() || mac == MacAddr::ZERO {
                continue;
            }
            let slot = Slot {
                port,
                last_seen: Duration::ZERO,
                announced: Duration::ZERO,
                fixed: true,
            };
            // A static entry takes precedence over the capacity limit: it is configuration.
            self.map.insert(key(vlan, mac), slot);
            n += 1;
        }
        n
    }

    /// Records that `mac` was seen as a source on `port` in `vlan` at `now`.
    pub fn learn(&mut self, vlan: VlanId, mac: MacAddr, port: PortId, now: Duration) -> Learn {
        if !mac.is_unicast() || mac == MacAddr::ZERO {
            self.stats.refused_invalid += 1;
            return Learn::InvalidMac;
        }
        let (learn, due) = self.update(vlan, mac, port, now);
        if self.cfg.announce && due {
            self.note(vlan, mac, port, now);
        }
        learn
    }

    /// Sets `mac`'s port and last-seen time (the learning rules), in one map lookup; also says
    /// whether the other workers should hear of it: a new or moved station at once, a
    /// refreshed one every quarter of the ageing time since its last notice.
    fn update(&mut self, vlan: VlanId, mac: MacAddr, port: PortId, now: Duration) -> (Learn, bool) {
        let k = key(vlan, mac);
        let ageing = self.cfg.ageing;
        if let Some(s) = self.map.get_mut(&k) {
            if s.fixed {
                if s.port != port {
                    self.stats.static_conflicts += 1;
                }
                return (Learn::Static, false);
            }
            let was_expired = now.saturating_sub(s.last_seen) >= ageing;
            let from = s.port;
            s.port = port;
            s.last_seen = now;
            return if was_expired {
                self.stats.learned += 1;
                (Learn::New, true)
            } else if from != port {
                self.stats.moved += 1;
                (Learn::Moved { from }, true)
            } else {
                (Learn::Refreshed, s.refresh_due(now, ageing))
            };
        }
        if self.map.len() >= self.cfg.capacity {
            self.stats.refused_full += 1;
            return (Learn::TableFull, false);
        }
        self.map.insert(
            k,
            Slot {
                port,
                last_seen: now,
                announced: now,
                fixed: false,
            },
        );
        self.stats.learned += 1;
        (Learn::New, true)
    }

    /// Whether [`Fdb::learn`]`(vlan, mac, port, now)` would change nothing at all: the station
    /// is already behind `port` as of `now` (or pinned there statically) and no notice is due,
    /// so the call would only say [`Learn::Refreshed`] (or [`Learn::Static`]) and move no
    /// counter. Lets the worker skip learning again for the next frame of a flow it just
    /// learned ([`crate::forward::FlowMemo`]).
    pub fn is_settled(&self, vlan: VlanId, mac: MacAddr, port: PortId, now: Duration) -> bool {
        match self.map.get(&key(vlan, mac)) {
            Some(s) if s.fixed => s.port == port,
            // Seen at this very instant and not expired by it (with a zero ageing time every
            // sighting is a new station, see `update`), on this port, no notice due.
            Some(s) => {
                let due = self.cfg.announce && s.refresh_due(now, self.cfg.ageing);
                s.last_seen == now && !self.expired(s, now) && s.port == port && !due
            }
            None => false,
        }
    }

    /// Records a notice for the other workers (only when [`Fdb::update`] said one is due, so
    /// the extra lookup that marks it sent is off the common path).
    fn note(&mut self, vlan: VlanId, mac: MacAddr, port: PortId, now: Duration) {
        if self.notices.len() >= NOTICE_CAPACITY {
            self.stats.notices_dropped += 1;
            return;
        }
        self.notices.push(FdbNotice {
            vlan,
            mac,
            port,
            seen: now,
        });
        if let Some(s) = self.map.get_mut(&key(vlan, mac)) {
            s.announced = now;
        }
    }

    /// The notices recorded since the last call, for the other workers (empty unless
    /// [`FdbConfig::announce`]). Draining keeps the buffer: nothing is allocated.
    pub fn take_notices(&mut self) -> std::vec::Drain<'_, FdbNotice> {
        self.notices.drain(..)
    }

    /// Applies another worker's notice at `now`: the station is behind `n.port` as of
    /// `n.seen` (never later than `now`), unless this table saw it more recently itself or the
    /// sighting is already past the ageing time ([`Learn::Stale`]). Records no notice of its
    /// own (the sender told everyone).
    pub fn install(&mut self, n: FdbNotice, now: Duration) -> Learn {
        if !n.mac.is_unicast() || n.mac == MacAddr::ZERO {
            return Learn::InvalidMac;
        }
        let seen = n.seen.min(now);
        let k = key(n.vlan, n.mac);
        let newer_here = self
            .map
            .get(&k)
            .is_some_and(|s| !s.fixed && s.last_seen > seen);
        if newer_here || now.saturating_sub(seen) >= self.cfg.ageing {
            return Learn::Stale;
        }
        let (learn, _) = self.update(n.vlan, n.mac, n.port, seen);
        if let Some(s) = self.map.get_mut(&k) {
            s.announced = now;
            self.stats.installed += 1;
        }
        learn
    }

    /// The port `mac` was last seen on in `vlan`, if not aged out at `now`.
    pub fn lookup(&self, vlan: VlanId, mac: MacAddr, now: Duration) -> Option<PortId> {
        self.map
            .get(&key(vlan, mac))
            .filter(|s| !self.expired(s, now))
            .map(|s| s.port)
    }

    /// Removes every entry aged out at `now`; returns how many. Call periodically (every second
    /// or so): lookups already ignore aged entries, the sweep only frees their room.
    pub fn age(&mut self, now: Duration) -> usize {
        let ageing = self.cfg.ageing;
        let before = self.map.len();
        self.map
            .retain(|_, s| s.fixed || now.saturating_sub(s.last_seen) < ageing);
        let n = before - self.map.len();
        self.stats.aged += n as u64;
        n
    }

    fn flush_where(&mut self, mut pred: impl FnMut(u64, &Slot) -> bool) -> usize {
        let before = self.map.len();
        // Static entries are configuration: flushes leave them.
        self.map.retain(|k, s| s.fixed || !pred(*k, s));
        let n = before - self.map.len();
        self.stats.flushed += n as u64;
        n
    }

    /// Forgets every station behind `port` (link down, port reconfigured); returns how many.
    pub fn flush_port(&mut self, port: PortId) -> usize {
        self.flush_where(|_, s| s.port == port)
    }

    /// Forgets every station of `vlan`; returns how many.
    pub fn flush_vlan(&mut self, vlan: VlanId) -> usize {
        self.flush_where(|k, _| unkey(k).0 == vlan)
    }

    /// Forgets everything.
    pub fn flush_all(&mut self) -> usize {
        self.flush_where(|_, _| true)
    }

    /// The live entries at `now`, sorted by (VLAN, MAC). Allocates: for `show`, not per packet.
    pub fn entries(&self, now: Duration) -> Vec<FdbEntry> {
        let mut v: Vec<FdbEntry> = self
            .map
            .iter()
            .filter(|(_, s)| !self.expired(s, now))
            .map(|(k, s)| {
                let (vlan, mac) = unkey(*k);
                FdbEntry {
                    vlan,
                    mac,
                    port: s.port,
                    age: if s.fixed {
                        Duration::ZERO
                    } else {
                        now.saturating_sub(s.last_seen)
                    },
                    is_static: s.fixed,
                }
            })
            .collect();
        v.sort_by_key(|e| (e.vlan, e.mac));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> MacAddr {
        let [a, b, c, d] = n.to_be_bytes();
        MacAddr([0x02, 0x00, a, b, c, d])
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn learns_unicast_sources_only() {
        let mut f = Fdb::default();
        assert_eq!(f.learn(1, mac(1), 3, s(0)), Learn::New);
        assert_eq!(f.lookup(1, mac(1), s(0)), Some(3));
        assert_eq!(f.lookup(2, mac(1), s(0)), None, "learning is per VLAN");
        for bad in [
            MacAddr::BROADCAST,
            MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            MacAddr::ZERO,
        ] {
            assert_eq!(f.learn(1, bad, 3, s(0)), Learn::InvalidMac, "{bad}");
            assert_eq!(f.lookup(1, bad, s(0)), None);
        }
        assert_eq!(f.len(), 1);
        assert_eq!(f.stats().refused_invalid, 4);
    }

    #[test]
    fn a_new_ageing_time_applies_to_entries_already_learned() {
        let mut f = Fdb::default();
        f.learn(1, mac(1), 3, s(0));
        f.learn(1, mac(2), 4, s(50));
        assert_eq!(f.lookup(1, mac(1), s(60)), Some(3), "300 s by default");
        f.set_ageing(s(30));
        assert_eq!(f.config().ageing, s(30));
        assert_eq!(f.lookup(1, mac(1), s(60)), None, "60 s old: gone at once");
        assert_eq!(f.lookup(1, mac(2), s(60)), Some(4), "10 s old: kept");
        assert_eq!(f.age(s(60)), 1);
        assert_eq!(f.lookup(1, mac(2), s(80)), None);
        // Lengthening keeps what the shorter time had not yet removed.
        f.learn(1, mac(3), 5, s(100));
        f.set_ageing(s(600));
        assert_eq!(f.lookup(1, mac(3), s(500)), Some(5));
        assert_eq!(f.len(), 2, "entries survive the change");
    }

    #[test]
    fn refresh_and_move() {
        let mut f = Fdb::default();
        f.learn(1, mac(1), 3, s(0));
        assert_eq!(f.learn(1, mac(1), 3, s(10)), Learn::Refreshed);
        assert_eq!(f.learn(1, mac(1), 5, s(11)), Learn::Moved { from: 3 });
        assert_eq!(f.lookup(1, mac(1), s(11)), Some(5));
        assert_eq!(f.stats().moved, 1);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn ageing_hides_then_sweeps() {
        let mut f = Fdb::new(FdbConfig {
            capacity: 10,
            ageing: s(300),
            ..FdbConfig::default()
        });
        f.learn(1, mac(1), 3, s(0));
        f.learn(1, mac(2), 4, s(100));
        assert_eq!(f.lookup(1, mac(1), s(299)), Some(3));
        assert_eq!(f.lookup(1, mac(1), s(300)), None, "aged at exactly 300 s");
        assert_eq!(f.len(), 2, "hidden but not yet swept");
        assert_eq!(f.age(s(300)), 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f.lookup(1, mac(2), s(399)), Some(4));
        // A refresh restarts the clock.
        f.learn(1, mac(2), 4, s(399));
        assert_eq!(f.lookup(1, mac(2), s(698)), Some(4));
        // An aged entry seen again counts as new, on whatever port.
        assert_eq!(f.learn(1, mac(2), 6, s(1000)), Learn::New);
        assert_eq!(f.stats().moved, 0);
        assert_eq!(f.stats().aged, 1);
        // A clock that steps back does not age anything.
        assert_eq!(f.lookup(1, mac(2), s(5)), Some(6));
    }

    #[test]
    fn flush_per_port_and_per_vlan() {
        let mut f = Fdb::default();
        f.learn(1, mac(1), 3, s(0));
        f.learn(1, mac(2), 4, s(0));
        f.learn(2, mac(3), 3, s(0));
        f.learn(2, mac(4), 5, s(0));
        assert_eq!(f.flush_port(3), 2);
        assert_eq!(f.lookup(1, mac(1), s(0)), None);
        assert_eq!(f.lookup(2, mac(3), s(0)), None);
        assert_eq!(f.lookup(1, mac(2), s(0)), Some(4));
        assert_eq!(f.flush_vlan(2), 1);
        assert_eq!(f.lookup(2, mac(4), s(0)), None);
        assert_eq!(f.lookup(1, mac(2), s(0)), Some(4));
        assert_eq!(f.flush_all(), 1);
        assert!(f.is_empty());
        assert_eq!(f.stats().flushed, 4);
    }

    #[test]
    fn capacity_limit_refuses_and_counts_a_mac_flood() {
        let mut f = Fdb::new(FdbConfig {
            capacity: 100,
            ageing: s(300),
            ..FdbConfig::default()
        });
        let cap_before = f.map.capacity();
        for n in 0..10_000 {
            f.learn(1, mac(n), (n % 7) as PortId, s(1));
        }
        assert_eq!(f.len(), 100);
        assert_eq!(f.stats().learned, 100);
        assert_eq!(f.stats().refused_full, 9_900);
        assert_eq!(f.map.capacity(), cap_before, "never grew");
        // Known stations keep working while full.
        assert_eq!(f.learn(1, mac(5), 9, s(2)), Learn::Moved { from: 5 });
        assert_eq!(f.lookup(1, mac(5), s(2)), Some(9));
        // Room comes back through ageing.
        assert_eq!(f.learn(1, mac(20_000), 1, s(2)), Learn::TableFull);
        f.age(s(301));
        assert_eq!(f.len(), 1);
        assert_eq!(f.learn(1, mac(20_000), 1, s(302)), Learn::New);
    }

    #[test]
    fn churn_never_reallocates() {
        let mut f = Fdb::new(FdbConfig {
            capacity: 64,
            ageing: s(1),
            ..FdbConfig::default()
        });
        let cap = f.map.capacity();
        for round in 0..200u32 {
            for n in 0..64 {
                f.learn(1, mac(round * 64 + n), 1, s(u64::from(round) * 2));
            }
            f.age(s(u64::from(round) * 2 + 1));
        }
        assert_eq!(f.map.capacity(), cap);
    }

    #[test]
    fn zero_capacity_disables_learning() {
        let mut f = Fdb::new(FdbConfig {
            capacity: 0,
            ageing: s(300),
            ..FdbConfig::default()
        });
        assert_eq!(f.learn(1, mac(1), 1, s(0)), Learn::TableFull);
        assert!(f.is_empty());
    }

    #[test]
    fn entries_are_sorted_and_skip_aged() {
        let mut f = Fdb::default();
        f.learn(2, mac(1), 1, s(0));
        f.learn(1, mac(9), 2, s(400));
        f.learn(1, mac(3), 3, s(450));
        let e = f.entries(s(500));
        assert_eq!(
            e,
            vec![
                FdbEntry {
                    vlan: 1,
                    mac: mac(3),
                    port: 3,
                    age: s(50),
                    is_static: false,
                },
                FdbEntry {
                    vlan: 1,
                    mac: mac(9),
                    port: 2,
                    age: s(100),
                    is_static: false,
                },
            ]
        );
    }

    fn announcing() -> Fdb {
        Fdb::new(FdbConfig {
            announce: true,
            ..FdbConfig::default()
        })
    }

    #[test]
    fn new_and_moved_stations_are_announced_at_once_refreshes_every_quarter_ageing() {
        let mut a = announcing();
        assert_eq!(a.learn(1, mac(1), 2, s(0)), Learn::New);
        assert_eq!(a.learn(1, mac(1), 2, s(1)), Learn::Refreshed);
        let n: Vec<_> = a.take_notices().collect();
        assert_eq!(
            n,
            vec![FdbNotice {
                vlan: 1,
                mac: mac(1),
                port: 2,
                seen: s(0),
            }],
            "a refresh right after learning says nothing new"
        );
        assert_eq!(a.learn(1, mac(1), 3, s(2)), Learn::Moved { from: 2 });
        assert_eq!(a.take_notices().map(|n| n.port).collect::<Vec<_>>(), [3]);
        // 300 s ageing: a refresh is re-announced once 75 s passed since the last notice.
        a.learn(1, mac(1), 3, s(76));
        a.learn(1, mac(1), 3, s(77));
        assert_eq!(a.take_notices().count(), 1);
        a.learn(1, mac(1), 3, s(100));
        assert_eq!(a.take_notices().count(), 0);
        // Invalid sources and a silent (non-announcing) table say nothing.
        a.learn(1, MacAddr::BROADCAST, 3, s(100));
        assert_eq!(a.take_notices().count(), 0);
        let mut quiet = Fdb::default();
        quiet.learn(1, mac(1), 2, s(0));
        assert_eq!(quiet.take_notices().count(), 0);
    }

    #[test]
    fn a_notice_teaches_another_table_without_echo_and_keeps_it_alive() {
        let mut a = announcing();
        let mut b = announcing();
        a.learn(5, mac(7), 4, s(10));
        for n in a.take_notices() {
            assert_eq!(b.install(n, s(10)), Learn::New);
        }
        assert_eq!(b.lookup(5, mac(7), s(11)), Some(4));
        assert_eq!(
            b.take_notices().count(),
            0,
            "installing is not re-announced"
        );
        assert_eq!(b.stats().installed, 1);
        // `a` keeps hearing the station; its periodic notices keep `b`'s entry from ageing.
        let mut t = 10;
        while t < 1000 {
            t += 5;
            a.learn(5, mac(7), 4, s(t));
            for n in a.take_notices() {
                b.install(n, s(t));
            }
        }
        assert_eq!(b.lookup(5, mac(7), s(t)), Some(4));
        // Once `a` stops hearing it, `b` ages it like any entry.
        assert_eq!(b.lookup(5, mac(7), s(t + 300)), None);
        assert_eq!(
            b.install(
                FdbNotice {
                    vlan: 1,
                    mac: MacAddr::ZERO,
                    port: 1,
                    seen: s(0),
                },
                s(0)
            ),
            Learn::InvalidMac
        );
    }

    #[test]
    fn a_notice_ages_from_its_sighting_and_never_undoes_a_newer_one() {
        let notice = |port, seen| FdbNotice {
            vlan: 1,
            mac: mac(1),
            port,
            seen,
        };
        let mut b = announcing();
        // Seen at 100 s, told at 160 s (the CPU relaying a kernel stamp): gone at 400 s.
        assert_eq!(b.install(notice(4, s(100)), s(160)), Learn::New);
        assert_eq!(b.lookup(1, mac(1), s(399)), Some(4));
        assert_eq!(b.lookup(1, mac(1), s(400)), None, "300 s after the frame");
        // This table heard the station on port 2 at 500 s; a notice of an older sighting on
        // port 4 changes neither its port nor its age.
        b.learn(1, mac(1), 2, s(500));
        assert_eq!(b.install(notice(4, s(450)), s(510)), Learn::Stale);
        assert_eq!(b.lookup(1, mac(1), s(799)), Some(2));
        // A newer sighting elsewhere is a move.
        assert_eq!(
            b.install(notice(4, s(600)), s(601)),
            Learn::Moved { from: 2 }
        );
        assert_eq!(b.lookup(1, mac(1), s(899)), Some(4));
        // A sighting already past the ageing time teaches nothing; one from a clock ahead of
        // ours counts as now.
        let mut c = announcing();
        assert_eq!(c.install(notice(3, s(0)), s(300)), Learn::Stale);
        assert_eq!(c.lookup(1, mac(1), s(300)), None);
        assert_eq!(c.install(notice(3, s(900)), s(10)), Learn::New);
        assert_eq!(c.lookup(1, mac(1), s(309)), Some(3));
        assert_eq!(c.lookup(1, mac(1), s(310)), None);
        assert_eq!(c.stats().installed, 1);
    }

    #[test]
    fn a_notice_overflow_is_counted_not_grown() {
        let mut a = announcing();
        for i in 0..(NOTICE_CAPACITY as u32 + 10) {
            a.learn(1, mac(i), 1, s(0));
        }
        assert_eq!(a.stats().notices_dropped, 10);
        assert_eq!(a.take_notices().count(), NOTICE_CAPACITY);
        assert!(a.notices.capacity() == NOTICE_CAPACITY);
    }

    #[test]
    fn static_entries_never_age_move_or_flush_and_can_be_replaced() {
        let mut f = announcing();
        f.learn(1, mac(1), 4, s(0));
        assert_eq!(
            f.set_statics(&[(1, mac(1), 2), (1, mac(2), 3), (1, MacAddr::BROADCAST, 3)]),
            2
        );
        assert_eq!(
            f.lookup(1, mac(1), s(0)),
            Some(2),
            "the static entry replaced the learned one"
        );
        assert_eq!(f.learn(1, mac(1), 4, s(10)), Learn::Static);
        assert_eq!(f.stats().static_conflicts, 1);
        assert_eq!(
            f.lookup(1, mac(1), s(10)),
            Some(2),
            "a static station never moves"
        );
        assert_eq!(f.learn(1, mac(2), 3, s(10)), Learn::Static);
        assert_eq!(f.stats().static_conflicts, 1, "its own port is no conflict");
        f.flush_port(3);
        f.flush_all();
        f.age(s(100_000));
        assert_eq!(f.lookup(1, mac(2), s(100_000)), Some(3));
        let e = f.entries(s(100_000));
        assert!(
            e.iter().all(|e| e.is_static && e.age == Duration::ZERO),
            "{e:?}"
        );
        // Replacing the set removes what is no longer listed.
        f.set_statics(&[(1, mac(2), 1)]);
        assert_eq!(f.lookup(1, mac(1), s(0)), None);
        assert_eq!(f.lookup(1, mac(2), s(0)), Some(1));
        assert_eq!(
            f.take_notices().count(),
            1,
            "only the first learning was announced"
        );
    }

    #[test]
    fn key_round_trips() {
        let m = MacAddr([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]);
        assert_eq!(unkey(key(4094, m)), (4094, m));
    }
}
