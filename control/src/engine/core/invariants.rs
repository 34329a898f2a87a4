//! What the engine promises, as checks that return one message per broken promise (empty =
//! healthy): its internal bookkeeping ([`Engine::invariant_violations`]), the contract of one
//! step as seen from outside ([`Engine::step_violations`]: the control-frame output, the data
//! answers of the published table, the table agreeing with the MDB) and the state left after
//! long silence ([`Engine::silence_violations`]). The property tests
//! (`control/tests/engine_props.rs`) and the engine fuzzer (`fuzz/src/checks.rs`) both call
//! these, so one list of promises is checked by both. Test and fuzz support: not for the
//! per-packet path (it allocates and walks the whole state).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use xsnoop_dataplane::{GroupEntry, PortId, PortSet, VlanId};

use super::super::config::MrouterMode;
use super::super::deadlines::TimerKey;
use super::super::io::Output;
use super::super::mdb::{MdbFilterMode, MdbRow};
use super::super::model::{FilterMode, Version};
use super::Engine;

/// A group no table lists is probed with one of these (the first the VLAN does not list): the
/// "unregistered" answer (RFC 4541 §2.1.2(1)).
const UNREGISTERED_PROBES: [Ipv4Addr; 2] = [
    Ipv4Addr::new(239, 255, 77, 1),
    Ipv4Addr::new(239, 255, 77, 2),
];
/// ALL-SYSTEMS: the link-local answer, flooded in the VLAN (RFC 4541 §2.1.2(2)).
const LINK_LOCAL_PROBE: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// A source no port lists is probed with one of these (the first the group does not list): the
/// "any source" answer.
const UNLISTED_SOURCES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 9, 9, 9),
    Ipv4Addr::new(10, 9, 9, 10),
    Ipv4Addr::new(10, 9, 9, 11),
];

impl Engine {
    /// Checks the engine's internal invariants right after a step: the incremental table equals
    /// the recomputed one; no empty port-group is kept; every EXCLUDE port-group has a running
    /// group timer; every port-group's deadline is indexed and in the future; group counters
    /// match the state. Returns one message per violation (empty = healthy).
    pub fn invariant_violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let now = self.now;
        if self.table != self.recompute_table() {
            v.push("table() differs from recompute_table()".to_string());
        }
        let mut per_port = vec![0usize; self.config.ports.len()];
        let mut total = 0;
        for (&vlan, vs) in &self.vlans {
            let mut dynamic = 0;
            for (&group, gs) in &vs.groups {
                if gs.is_unused() {
                    v.push(format!("vlan {vlan} group {group}: unused group kept"));
                }
                if !gs.ports.is_empty() {
                    dynamic += 1;
                }
                for (&port, pg) in &gs.ports {
                    if let Some(c) = per_port.get_mut(usize::from(port)) {
                        *c += 1;
                    }
                    let at = format!("vlan {vlan} group {group} port {port}");
                    if pg.is_empty() {
                        v.push(format!("{at}: empty port-group kept"));
                    }
                    if pg.mode() == FilterMode::Exclude
                        && pg.group_timer_remaining(now).is_none_or(|d| d.is_zero())
                    {
                        v.push(format!("{at}: EXCLUDE without a running group timer"));
                    }
                    let key = TimerKey::PortGroup { vlan, group, port };
                    if self.deadlines.get(&key) != pg.next_deadline() {
                        v.push(format!("{at}: deadline index out of step"));
                    }
                    if pg.next_deadline().is_some_and(|d| d <= now) {
                        v.push(format!(
                            "{at}: deadline {:?} not processed at {now:?}",
                            pg.next_deadline()
                        ));
                    }
                }
            }
            total += dynamic;
            if dynamic != vs.dynamic_groups {
                v.push(format!(
                    "vlan {vlan}: dynamic group count {} != {dynamic}",
                    vs.dynamic_groups
                ));
            }
        }
        if total != self.total_groups {
            v.push(format!(
                "total group count {} != {total}",
                self.total_groups
            ));
        }
        if per_port != self.port_groups {
            v.push("per-port group counts out of step".to_string());
        }
        v
    }

    /// Everything that must hold after one step whose input arrived on `ingress` (port, VLAN)
    /// if it was a frame and produced `out`: [`Engine::invariant_violations`], no deadline left
    /// behind, the output's promises (RFC 4541 §2.1.1), data never back to its ingress port or
    /// outside its VLAN, and the table agreeing with the MDB (RFC 3376 §6.3). One message per
    /// violation (empty = healthy).
    pub fn step_violations(&self, ingress: Option<(PortId, VlanId)>, out: &Output) -> Vec<String> {
        let mut v = self.invariant_violations();
        if let Some(d) = self.next_deadline() {
            if d <= self.now {
                v.push(format!("deadline {d:?} left unprocessed at {:?}", self.now));
            }
        }
        self.output_violations(ingress, out, &mut v);
        let mdb = self.mdb(self.now);
        self.data_forwarding_violations(&mdb, &mut v);
        self.table_mdb_violations(&mdb, &mut v);
        v
    }

    /// What must hold after silence longer than every interval: nothing learned survives. Only
    /// management's static groups (never flooded) and `mrouter = always` ports remain. One
    /// message per violation (empty = healthy).
    pub fn silence_violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        for r in self.mdb(self.now).iter().filter(|r| !r.is_static) {
            v.push(format!("state survived its timers: {r:?}"));
        }
        let always: PortSet = self
            .config
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.mrouter == MrouterMode::Always)
            .filter_map(|(i, _)| PortId::try_from(i).ok())
            .collect();
        for (&vlan, t) in &self.table.vlans {
            for (g, e) in &t.groups {
                let configured = self
                    .config
                    .static_groups
                    .iter()
                    .any(|s| s.vlan == vlan && s.group == *g);
                if !configured {
                    v.push(format!("group {vlan}/{g} survived its timers"));
                }
                if e.flood {
                    v.push(format!("static group {vlan}/{g} flooded"));
                }
            }
            let learned = t.mrouters.difference(always);
            if !learned.is_empty() {
                v.push(format!(
                    "learned router ports {learned:?} survived their timers in VLAN {vlan}"
                ));
            }
        }
        v
    }

    /// A control frame never goes back out of its ingress port nor outside its VLAN, and a step
    /// without a frame forwards nothing (RFC 4541 §2.1.1); our queries go only to ports of their
    /// VLAN, only where our querier runs, in a version the VLAN speaks (RFC 3376 §7.3.1), group
    /// queries out of one port and never as v1, sources only in v3 group queries (RFC 3376
    /// §4.1.9).
    fn output_violations(
        &self,
        ingress: Option<(PortId, VlanId)>,
        out: &Output,
        v: &mut Vec<String>,
    ) {
        let t = &self.table;
        if let Some((port, vlan)) = ingress {
            if out.forward.contains(port) {
                v.push(format!("control frame from port {port} sent back to it"));
            }
            let vports = t.vlans.get(&vlan).map(|x| x.ports).unwrap_or_default();
            if !out.forward.difference(vports).is_empty() {
                v.push(format!("control frame of VLAN {vlan} forwarded outside it"));
            }
        } else if !out.forward.is_empty() {
            v.push("forwarding without a frame".to_string());
        }
        for tx in &out.transmit {
            let at = format!("query {:?} into VLAN {}", tx.query, tx.vlan);
            let Some(vt) = t.vlans.get(&tx.vlan) else {
                v.push(format!("{at}: VLAN not in the table"));
                continue;
            };
            if tx.ports.is_empty() {
                v.push(format!("{at}: to no port"));
            }
            if !tx.ports.difference(vt.ports).is_empty() {
                v.push(format!("{at}: to ports outside the VLAN"));
            }
            let Some(cfg) = self.config.vlans.iter().find(|c| c.id == tx.vlan) else {
                v.push(format!("{at}: VLAN not configured"));
                continue;
            };
            if !cfg.querier {
                v.push(format!("{at}: sent where our querier is off"));
            }
            if tx.query.version > cfg.igmp_version {
                v.push(format!("{at}: newer than the VLAN speaks"));
            }
            if tx.query.group.is_some() {
                if tx.ports.len() != 1 {
                    v.push(format!("{at}: a group query goes out of one port"));
                }
                if tx.query.version == Version::V1 {
                    v.push(format!("{at}: v1 has no group queries"));
                }
            } else if !tx.query.sources.is_empty() {
                v.push(format!("{at}: general query with sources"));
            }
            if tx.query.version != Version::V3 && !tx.query.sources.is_empty() {
                v.push(format!("{at}: sources in a v1/v2 query"));
            }
        }
    }

    /// Data frames never leave by their ingress port nor outside their VLAN, for every ingress
    /// (and one port past the last), every listed group plus an unregistered and a link-local
    /// one, and every listed source plus an unlisted one.
    fn data_forwarding_violations(&self, mdb: &[MdbRow], v: &mut Vec<String>) {
        let port_count = u16::try_from(self.config.ports.len()).unwrap_or(u16::MAX);
        for (&vlan, t) in &self.table.vlans {
            let unregistered = UNREGISTERED_PROBES
                .iter()
                .find(|g| !t.groups.contains_key(g));
            let groups = t
                .groups
                .keys()
                .chain(unregistered)
                .chain([&LINK_LOCAL_PROBE]);
            for g in groups {
                let sources = probe_sources(vlan, *g, t.groups.get(g), mdb);
                for ingress in 0..=port_count {
                    for s in &sources {
                        let (egress, _) = self.table.multicast_egress(vlan, ingress, *s, *g);
                        if egress.contains(ingress) {
                            v.push(format!("{vlan}/{g} from {s}: data back to port {ingress}"));
                        }
                        if !egress.difference(t.ports).is_empty() {
                            v.push(format!("{vlan}/{g} from {s}: data outside the VLAN"));
                        }
                    }
                }
            }
        }
    }

    /// Every member port in the table has a port-group row in the MDB (an expired port-group
    /// forwards nothing); a learned EXCLUDE port-group has a running group timer; and for each
    /// source the table's members are exactly the ports whose MDB filter admits it: INCLUDE
    /// forwards listed unblocked sources, EXCLUDE all but blocked ones (RFC 3376 §6.3).
    fn table_mdb_violations(&self, mdb: &[MdbRow], v: &mut Vec<String>) {
        let mut rows: BTreeMap<(VlanId, Ipv4Addr), PortSet> = BTreeMap::new();
        for r in mdb.iter().filter(|r| r.source.is_none()) {
            match self.port_index(&r.port) {
                Some(p) => {
                    rows.entry((r.vlan, r.group)).or_default().insert(p);
                }
                None => v.push(format!("mdb names unknown port: {r:?}")),
            }
            if r.filter_mode == MdbFilterMode::Exclude
                && !r.is_static
                && r.expires_ms.is_none_or(|m| m == 0)
            {
                v.push(format!("EXCLUDE without a group timer: {r:?}"));
            }
        }
        for (&vlan, t) in &self.table.vlans {
            for (g, e) in &t.groups {
                let mut members = e.any_source;
                for p in e.by_source.values() {
                    members = members.union(*p);
                }
                let have = rows.get(&(vlan, *g)).copied().unwrap_or_default();
                if !members.difference(have).is_empty() {
                    v.push(format!("{vlan}/{g}: ports without state forward"));
                }
                if e.flood {
                    continue;
                }
                for s in probe_sources(vlan, *g, Some(e), mdb) {
                    let want = self.mdb_admits(mdb, vlan, *g, s);
                    let got = e.members_for(s);
                    if got != want {
                        v.push(format!(
                            "{vlan}/{g} source {s}: table says {got:?}, mdb says {want:?}"
                        ));
                    }
                }
            }
        }
    }

    /// The ports whose MDB rows for (`vlan`, `group`) admit `source` (RFC 3376 §6.3).
    fn mdb_admits(
        &self,
        mdb: &[MdbRow],
        vlan: VlanId,
        group: Ipv4Addr,
        source: Ipv4Addr,
    ) -> PortSet {
        let mut want = PortSet::EMPTY;
        let port_groups = mdb
            .iter()
            .filter(|r| r.vlan == vlan && r.group == group && r.source.is_none());
        for r in port_groups {
            let row = mdb.iter().find(|x| {
                x.vlan == vlan
                    && x.group == group
                    && x.port == r.port
                    && x.is_static == r.is_static
                    && x.source == Some(source)
            });
            let admits = match r.filter_mode {
                MdbFilterMode::Include => row.is_some_and(|x| !x.blocked),
                MdbFilterMode::Exclude => row.is_none_or(|x| !x.blocked),
            };
            if let (true, Some(p)) = (admits, self.port_index(&r.port)) {
                want.insert(p);
            }
        }
        want
    }

    /// The index of the port called `name`.
    fn port_index(&self, name: &str) -> Option<PortId> {
        let i = self.config.ports.iter().position(|p| p.name == name)?;
        PortId::try_from(i).ok()
    }
}

/// The sources worth asking the table about for one group: every source the table or the MDB
/// lists for it, and one it does not (any other source gets the same answer as that one).
fn probe_sources(
    vlan: VlanId,
    group: Ipv4Addr,
    entry: Option<&GroupEntry>,
    mdb: &[MdbRow],
) -> Vec<Ipv4Addr> {
    let mut listed: BTreeSet<Ipv4Addr> = mdb
        .iter()
        .filter(|r| r.vlan == vlan && r.group == group)
        .filter_map(|r| r.source)
        .collect();
    if let Some(e) = entry {
        listed.extend(e.by_source.keys().copied());
    }
    let unlisted = UNLISTED_SOURCES.iter().find(|s| !listed.contains(s));
    listed.into_iter().chain(unlisted.copied()).collect()
}
