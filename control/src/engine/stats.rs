//! Counters of everything the engine received, ignored, refused and sent.

use std::collections::BTreeMap;

use serde::Serialize;

use super::events::{Event, EventKind};
use xsnoop_dataplane::{PortId, PortSet, VlanId};

use super::model::{Message, Version};

/// Messages received, by type and version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Received {
    /// IGMPv1 queries.
    pub queries_v1: u64,
    /// IGMPv2 queries.
    pub queries_v2: u64,
    /// IGMPv3 queries.
    pub queries_v3: u64,
    /// IGMPv1 reports.
    pub reports_v1: u64,
    /// IGMPv2 reports.
    pub reports_v2: u64,
    /// IGMPv3 reports.
    pub reports_v3: u64,
    /// IGMPv2 leaves.
    pub leaves: u64,
    /// PIMv2 hellos.
    pub pim_hellos: u64,
    /// MRD advertisements.
    pub mrd_advertisements: u64,
    /// Unknown IGMP types.
    pub unknown: u64,
}

/// Queries this switch sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// General queries (one per transmit, whatever the number of ports).
    pub general_queries: u64,
    /// Group-specific queries.
    pub group_queries: u64,
    /// Group-and-source-specific queries.
    pub group_source_queries: u64,
}

/// Table limit hits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LimitHits {
    /// Global group limit.
    pub global: u64,
    /// Per-VLAN group limit.
    pub vlan: u64,
    /// Per-port group limit.
    pub port: u64,
    /// Sources refused by the per-port-group source cap.
    pub sources_refused: u64,
}

/// Every counter of the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Messages received.
    pub received: Received,
    /// Messages received, per ingress port (the control plane shows port names).
    pub received_by_port: BTreeMap<PortId, Received>,
    /// Messages received, per VLAN.
    pub received_by_vlan: BTreeMap<VlanId, Received>,
    /// Reports, records, leaves and queries ignored, by reason.
    pub ignored: BTreeMap<&'static str, u64>,
    /// Malformed frames, by reason.
    pub malformed: BTreeMap<&'static str, u64>,
    /// Queries sent.
    pub sent: Sent,
    /// Queries sent, per VLAN.
    pub sent_by_vlan: BTreeMap<VlanId, Sent>,
    /// Queries sent, per egress port (a general query to five ports counts once on each).
    pub sent_by_port: BTreeMap<PortId, Sent>,
    /// Malformed frames, per ingress port and reason.
    pub malformed_by_port: BTreeMap<PortId, BTreeMap<&'static str, u64>>,
    /// Limit hits.
    pub limits: LimitHits,
    /// Querier health: elections, changes, losses, and version/timer mismatches.
    pub querier: QuerierCounters,
}

/// Querier health counters (alarms in `xsnoop stats` and metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QuerierCounters {
    /// A querier (another router or this switch) was elected.
    pub elected: u64,
    /// The elected querier changed to another router.
    pub changed: u64,
    /// The elected querier went silent or its link went down.
    pub lost: u64,
    /// The elected querier advertised a version or timers different from ours.
    pub mismatched: u64,
}

impl Stats {
    /// Counts one query sent in `vlan` on `ports`, in total, for the VLAN and for each port
    /// (`which` picks the counter).
    pub(crate) fn count_sent(
        &mut self,
        vlan: VlanId,
        ports: PortSet,
        which: impl Fn(&mut Sent) -> &mut u64,
    ) {
        let c = which(&mut self.sent);
        *c = c.saturating_add(1);
        let c = which(self.sent_by_vlan.entry(vlan).or_default());
        *c = c.saturating_add(1);
        for p in ports.iter() {
            let c = which(self.sent_by_port.entry(p).or_default());
            *c = c.saturating_add(1);
        }
    }

    /// Counts a received message, in total and for its port and VLAN.
    pub(crate) fn count_message<A>(&mut self, msg: &Message<A>, port: PortId, vlan: VlanId) {
        self.received.count(msg);
        self.received_by_port.entry(port).or_default().count(msg);
        self.received_by_vlan.entry(vlan).or_default().count(msg);
    }
}

impl Received {
    /// Counts `msg` by its type and version.
    fn count<A>(&mut self, msg: &Message<A>) {
        let r = self;
        let c = match msg {
            Message::Query { version, .. } => match version {
                Version::V1 => &mut r.queries_v1,
                Version::V2 => &mut r.queries_v2,
                Version::V3 => &mut r.queries_v3,
            },
            Message::Report { version, .. } => match version {
                Version::V1 => &mut r.reports_v1,
                Version::V2 => &mut r.reports_v2,
                Version::V3 => &mut r.reports_v3,
            },
            Message::Leave { .. } => &mut r.leaves,
            Message::MrdAdvertisement => &mut r.mrd_advertisements,
            Message::PimHello => &mut r.pim_hellos,
            Message::Unknown { .. } => &mut r.unknown,
        };
        *c = c.saturating_add(1);
    }
}

impl Stats {
    /// Counts something ignored for `reason`.
    pub(crate) fn ignore(&mut self, reason: &'static str) {
        let c = self.ignored.entry(reason).or_default();
        *c = c.saturating_add(1);
    }

    /// Counts the querier-health events of one step.
    pub(crate) fn count_events(&mut self, events: &[Event]) {
        for e in events {
            let c = match e.kind {
                EventKind::QuerierElected { .. } => &mut self.querier.elected,
                EventKind::QuerierChanged { .. } => &mut self.querier.changed,
                EventKind::QuerierLost { .. } => &mut self.querier.lost,
                EventKind::QuerierMismatch { .. } => &mut self.querier.mismatched,
                _ => continue,
            };
            *c = c.saturating_add(1);
        }
    }

    /// Counts a malformed frame from `port` for `reason`.
    pub(crate) fn malformed(&mut self, port: PortId, reason: &'static str) {
        let c = self.malformed.entry(reason).or_default();
        *c = c.saturating_add(1);
        let c = self
            .malformed_by_port
            .entry(port)
            .or_default()
            .entry(reason)
            .or_default();
        *c = c.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_queries_are_counted_in_total_and_per_vlan() {
        let mut s = Stats::default();
        let two: PortSet = [1u16, 2].into_iter().collect();
        s.count_sent(10, two, |x| &mut x.general_queries);
        s.count_sent(10, PortSet::single(2), |x| &mut x.group_queries);
        s.count_sent(20, PortSet::single(3), |x| &mut x.general_queries);
        assert_eq!(s.sent_by_port[&1].general_queries, 1);
        assert_eq!(s.sent_by_port[&2].general_queries, 1);
        assert_eq!(s.sent_by_port[&2].group_queries, 1);
        assert_eq!(s.sent_by_port[&3].general_queries, 1);
        s.malformed(4, "bad checksum");
        assert_eq!(s.malformed_by_port[&4]["bad checksum"], 1);
        assert_eq!(s.malformed["bad checksum"], 1);
        assert_eq!(s.sent.general_queries, 2);
        assert_eq!(s.sent.group_queries, 1);
        assert_eq!(s.sent_by_vlan[&10].general_queries, 1);
        assert_eq!(s.sent_by_vlan[&10].group_queries, 1);
        assert_eq!(s.sent_by_vlan[&20].general_queries, 1);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["sent_by_vlan"]["20"]["general_queries"], 1);
    }
}
