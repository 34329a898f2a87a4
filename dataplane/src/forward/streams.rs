//! Per-(VLAN, source, group) traffic counters: which multicast streams cross the switch, how
//! much of each, and how each is forwarded (to members, or unregistered to router ports only).
//!
//! An operator asks "is the camera feed reaching the switch at all?", "who sends to a group
//! nobody joined?" — a switch's `show ip mroute count`. The worker keeps one table, bounded and
//! allocated once: a new stream beyond [`StreamsConfig::capacity`] is not tracked (counted in
//! [`StreamCounters::untracked`]), and streams silent for [`StreamsConfig::idle`] are swept.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::fasthash::{FastHashBuilder, FastMap};
use crate::forward::reason::ForwardReason;
use crate::table::VlanId;

/// Limits of the stream table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamsConfig {
    /// Most streams tracked at once.
    pub capacity: usize,
    /// A stream with no packet for this long is forgotten by [`StreamCounters::sweep`].
    pub idle: Duration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            capacity: 16 * 1024,
            idle: Duration::from_secs(300),
        }
    }
}

/// One stream's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamStat {
    /// Frames received.
    pub packets: u64,
    /// Octets received (whole frames).
    pub bytes: u64,
    /// When the last frame arrived.
    pub last_seen: Duration,
    /// How its last frame was forwarded.
    pub reason: ForwardReason,
}

/// One stream, for `show` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    /// VLAN.
    pub vlan: VlanId,
    /// IPv4 source.
    pub source: Ipv4Addr,
    /// Group.
    pub group: Ipv4Addr,
    /// Its counts.
    pub stat: StreamStat,
}

type StreamKey = (VlanId, u32, u32);

/// The stream table of one worker.
///
/// The counts of the stream recorded last are held aside and added to the table when another
/// stream's frame comes or someone reads (every reader takes `&mut self` for that): frames of
/// one stream arrive back to back, and a hash lookup per frame was a measurable share of the
/// worker's time.
#[derive(Clone, Debug)]
pub struct StreamCounters {
    cfg: StreamsConfig,
    map: FastMap<StreamKey, StreamStat>,
    untracked: u64,
    pending: Option<(StreamKey, StreamStat)>,
}

impl Default for StreamCounters {
    fn default() -> Self {
        Self::new(StreamsConfig::default())
    }
}

impl StreamCounters {
    /// An empty table; allocates its storage once, here (twice the capacity, so hashbrown
    /// rehashes in place and never grows).
    pub fn new(cfg: StreamsConfig) -> Self {
        StreamCounters {
            cfg,
            map: FastMap::with_capacity_and_hasher(
                cfg.capacity.saturating_mul(2),
                FastHashBuilder::default(),
            ),
            untracked: 0,
            pending: None,
        }
    }

    /// Counts one frame of `len` octets from `source` to `group` in `vlan`, forwarded by
    /// `reason`, at `now`.
    pub fn record(
        &mut self,
        vlan: VlanId,
        source: Ipv4Addr,
        group: Ipv4Addr,
        len: usize,
        reason: ForwardReason,
        now: Duration,
    ) {
        let key = (vlan, u32::from(source), u32::from(group));
        let frame = StreamStat {
            packets: 1,
            bytes: len as u64,
            last_seen: now,
            reason,
        };
        match &mut self.pending {
            Some((k, s)) if *k == key => add(s, frame),
            _ => {
                self.settle();
                self.pending = Some((key, frame));
            }
        }
    }

    /// Adds the held-aside counts to the table (a new stream beyond the capacity is counted
    /// as untracked, all its frames).
    fn settle(&mut self) {
        let Some((key, frames)) = self.pending.take() else {
            return;
        };
        if let Some(s) = self.map.get_mut(&key) {
            add(s, frames);
        } else if self.map.len() >= self.cfg.capacity {
            self.untracked += frames.packets;
        } else {
            self.map.insert(key, frames);
        }
    }

    /// Forgets streams silent for the idle time; returns how many.
    pub fn sweep(&mut self, now: Duration) -> usize {
        self.settle();
        let idle = self.cfg.idle;
        let before = self.map.len();
        self.map
            .retain(|_, s| now.saturating_sub(s.last_seen) < idle);
        before - self.map.len()
    }

    /// Frames of streams not tracked because the table was full.
    pub fn untracked(&mut self) -> u64 {
        self.settle();
        self.untracked
    }

    /// Streams tracked now.
    pub fn len(&mut self) -> usize {
        self.settle();
        self.map.len()
    }

    /// Whether no stream is tracked.
    pub fn is_empty(&mut self) -> bool {
        self.settle();
        self.map.is_empty()
    }

    /// Every stream, sorted by (VLAN, group, source). Allocates: for `show`, not per packet.
    pub fn entries(&mut self) -> Vec<Stream> {
        self.settle();
        let mut v: Vec<Stream> = self
            .map
            .iter()
            .map(|(&(vlan, s, g), &stat)| Stream {
                vlan,
                source: Ipv4Addr::from(s),
                group: Ipv4Addr::from(g),
                stat,
            })
            .collect();
        v.sort_by_key(|s| (s.vlan, s.group, s.source));
        v
    }
}

/// `more` frames of a stream on top of `s`: their counts add, the latest frame's time and
/// forwarding rule win.
fn add(s: &mut StreamStat, more: StreamStat) {
    s.packets += more.packets;
    s.bytes += more.bytes;
    s.last_seen = more.last_seen;
    s.reason = more.reason;
}

/// The IPv4 source and destination of a frame (untagged or with one 802.1Q tag) without a full
/// parse: for counting frames the pipeline already classified as IPv4 multicast.
pub fn ipv4_addresses(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let et = frame.get(12..14)?;
    let l3 = if et == [0x81, 0x00] { 18 } else { 14 };
    let a = |at: usize| -> Option<Ipv4Addr> {
        let b = frame.get(l3 + at..l3 + at + 4)?;
        Some(Ipv4Addr::new(
            *b.first()?,
            *b.get(1)?,
            *b.get(2)?,
            *b.get(3)?,
        ))
    };
    Some((a(12)?, a(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const G: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

    #[test]
    fn counts_per_vlan_source_and_group_and_sweeps_idle_streams() {
        let mut c = StreamCounters::default();
        let t = Duration::from_secs;
        c.record(1, S, G, 100, ForwardReason::McRegistered, t(1));
        c.record(1, S, G, 60, ForwardReason::McRegistered, t(2));
        c.record(2, S, G, 60, ForwardReason::McUnregistered, t(2));
        let e = c.entries();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].vlan, e[0].stat.packets, e[0].stat.bytes), (1, 2, 160));
        assert_eq!(e[1].stat.reason, ForwardReason::McUnregistered);
        assert_eq!(c.sweep(t(301)), 0);
        assert_eq!(c.sweep(t(302)), 2);
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_table_counts_new_streams_as_untracked_and_never_grows() {
        let mut c = StreamCounters::new(StreamsConfig {
            capacity: 4,
            idle: Duration::from_secs(1),
        });
        let cap = c.map.capacity();
        for i in 0..10u32 {
            c.record(
                1,
                Ipv4Addr::from(i),
                G,
                64,
                ForwardReason::McRegistered,
                Duration::ZERO,
            );
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.untracked(), 6);
        assert_eq!(c.map.capacity(), cap);
    }

    /// What the table must count: a lookup per frame, no frame held aside.
    #[derive(Default)]
    struct Naive {
        map: std::collections::HashMap<(VlanId, Ipv4Addr), StreamStat>,
        untracked: u64,
    }

    proptest::proptest! {
        /// Holding the last stream's counts aside changes no figure: the same streams
        /// tracked, the same counts, times and rules, the same untracked frames, the same
        /// sweeps, for any interleaving of streams, a table that fills up, and reads between.
        #[test]
        fn counts_equal_a_lookup_per_frame(
            ops in proptest::collection::vec((0u8..4, 0u16..3, 1usize..1500, 0u64..3, 0u8..12), 0..200),
        ) {
            let cfg = StreamsConfig { capacity: 3, idle: Duration::from_secs(2) };
            let mut c = StreamCounters::new(cfg);
            let mut n = Naive::default();
            let mut now = Duration::ZERO;
            for (src, vlan, len, wait, what) in ops {
                now += Duration::from_secs(wait);
                let source = Ipv4Addr::new(10, 0, 0, src);
                let reason = if len % 2 == 0 { ForwardReason::McRegistered } else { ForwardReason::McUnregistered };
                match what {
                    0 => {
                        let swept = c.sweep(now);
                        let before = n.map.len();
                        n.map.retain(|_, s| now.saturating_sub(s.last_seen) < cfg.idle);
                        proptest::prop_assert_eq!(swept, before - n.map.len());
                    }
                    1 => {
                        let got: Vec<_> = c.entries().into_iter().map(|s| ((s.vlan, s.source), s.stat)).collect();
                        let mut want: Vec<_> = n.map.iter().map(|(k, v)| (*k, *v)).collect();
                        want.sort_by_key(|((v, s), _)| (*v, *s));
                        proptest::prop_assert_eq!(got, want);
                        proptest::prop_assert_eq!(c.untracked(), n.untracked);
                    }
                    _ => {
                        c.record(vlan, source, G, len, reason, now);
                        let frame = StreamStat { packets: 1, bytes: len as u64, last_seen: now, reason };
                        let full = n.map.len() >= cfg.capacity;
                        match n.map.get_mut(&(vlan, source)) {
                            Some(s) => add(s, frame),
                            None if full => n.untracked += 1,
                            None => {
                                n.map.insert((vlan, source), frame);
                            }
                        }
                    }
                }
            }
            proptest::prop_assert_eq!(c.len(), n.map.len());
            proptest::prop_assert_eq!(c.untracked(), n.untracked);
        }
    }

    #[test]
    fn addresses_of_tagged_and_untagged_frames() {
        let mut f = vec![0u8; 34];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[26..30].copy_from_slice(&S.octets());
        f[30..34].copy_from_slice(&G.octets());
        assert_eq!(ipv4_addresses(&f), Some((S, G)));
        let mut t = vec![0u8; 38];
        t[12..14].copy_from_slice(&[0x81, 0x00]);
        t[30..34].copy_from_slice(&S.octets());
        t[34..38].copy_from_slice(&G.octets());
        assert_eq!(ipv4_addresses(&t), Some((S, G)));
        assert_eq!(ipv4_addresses(&t[..37]), None);
        assert_eq!(ipv4_addresses(&[]), None);
    }
}
