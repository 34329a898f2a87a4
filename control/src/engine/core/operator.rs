//! [`Engine::command`]: operator changes at runtime, checked in full before anything changes.
//!
//! Static entries and port settings become [`Overrides`] on top of the base configuration and
//! go through the same path as a reload ([`Engine::apply_config`]), so learned state is kept and
//! the table is rebuilt exactly as the configuration file would have built it. A flush removes
//! learned port-groups like a link going down does.

use std::net::Ipv4Addr;

use xsnoop_dataplane::{PortId, PortSet, VlanId};

use super::super::config::StaticGroup;
use super::super::events::EventKind;
use super::super::io::Output;
use super::super::model::{QuerierRole, Time};
use super::super::querier::general_query;
use super::super::runtime::{
    check_port_in_vlan, check_static, check_vlan, find_static, port_id, Command, CommandError,
    Flush, Overrides, PortSettings, StaticAdd, StaticDel,
};
use super::Engine;

/// A checked command, ready to apply.
enum Plan {
    /// New overrides, and the journal entries that describe the change.
    Overlay {
        overrides: Overrides,
        events: Vec<(VlanId, PortId, Option<Ipv4Addr>, EventKind, &'static str)>,
    },
    /// Flush these ports of these VLANs; `port_named` when the operator named a port.
    Flush {
        targets: Vec<(VlanId, PortSet)>,
        port_named: bool,
    },
}

const BY_OPERATOR_ADD: &str = "static group added by operator";
const BY_OPERATOR_DEL: &str = "static group removed by operator";
const BY_OPERATOR_SET: &str = "port settings changed by operator";
const BY_OPERATOR_FLUSH: &str = "learned groups flushed by operator";

impl Engine {
    /// Applies an operator change at `now` (timers due run first, as for any input). A change
    /// that names an unknown port or VLAN, a port outside the VLAN, a group that cannot be
    /// snooped or a static entry that does not exist is refused whole: nothing changes.
    pub fn command(&mut self, now: Time, cmd: &Command) -> Result<Output, CommandError> {
        let plan = self.plan(cmd)?;
        Ok(self.step(now, true, |e, now, out| e.carry_out(now, plan, out)))
    }

    /// The runtime overlay in force (what `xsnoop ports` marks as set at runtime).
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// The configuration as given, without runtime changes.
    pub fn base_config(&self) -> &super::super::config::EngineConfig {
        &self.base
    }

    fn plan(&self, cmd: &Command) -> Result<Plan, CommandError> {
        match cmd {
            Command::StaticAdd(a) => self.plan_static_add(a),
            Command::StaticDel(d) => self.plan_static_del(d),
            Command::PortSet(p) => self.plan_port_set(p),
            Command::Flush(f) => self.plan_flush(f),
        }
    }

    fn ports_of(&self, names: &[String], vlan: VlanId) -> Result<Vec<PortId>, CommandError> {
        if names.is_empty() {
            return Err(CommandError::NoPorts);
        }
        let mut ids = Vec::new();
        for name in names {
            let id = port_id(&self.base, name)?;
            check_port_in_vlan(&self.base, id, vlan)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn plan_static_add(&self, a: &StaticAdd) -> Result<Plan, CommandError> {
        check_vlan(&self.base, a.vlan)?;
        check_static(a.group, &a.sources)?;
        let ports = self.ports_of(&a.ports, a.vlan)?;
        let mut overrides = self.overrides.clone();
        let mut events = Vec::new();
        for port in ports {
            let origin = if find_static(&self.base.static_groups, a.vlan, a.group, port).is_some() {
                Some("from the configuration file")
            } else if find_static(&overrides.statics, a.vlan, a.group, port).is_some() {
                Some("added at runtime")
            } else {
                None
            };
            if let Some(origin) = origin {
                return Err(CommandError::StaticExists {
                    port: self.port_name(port),
                    group: a.group,
                    vlan: a.vlan,
                    origin,
                });
            }
            let mut sources = a.sources.clone();
            sources.sort();
            sources.dedup();
            overrides.statics.push(StaticGroup {
                vlan: a.vlan,
                port,
                group: a.group,
                sources,
            });
            events.push((
                a.vlan,
                port,
                Some(a.group),
                EventKind::StaticAdded,
                BY_OPERATOR_ADD,
            ));
        }
        Ok(Plan::Overlay { overrides, events })
    }

    fn plan_static_del(&self, d: &StaticDel) -> Result<Plan, CommandError> {
        check_vlan(&self.base, d.vlan)?;
        let ports = self.ports_of(&d.ports, d.vlan)?;
        let mut overrides = self.overrides.clone();
        let mut events = Vec::new();
        for port in ports {
            match find_static(&overrides.statics, d.vlan, d.group, port) {
                Some(i) => {
                    overrides.statics.remove(i);
                }
                None => {
                    let (name, group, vlan) = (self.port_name(port), d.group, d.vlan);
                    let in_file =
                        find_static(&self.base.static_groups, vlan, group, port).is_some();
                    return Err(if in_file {
                        CommandError::StaticFromFile {
                            port: name,
                            group,
                            vlan,
                        }
                    } else {
                        CommandError::NoSuchStatic {
                            port: name,
                            group,
                            vlan,
                        }
                    });
                }
            }
            events.push((
                d.vlan,
                port,
                Some(d.group),
                EventKind::StaticRemoved,
                BY_OPERATOR_DEL,
            ));
        }
        Ok(Plan::Overlay { overrides, events })
    }

    fn plan_port_set(&self, p: &PortSettings) -> Result<Plan, CommandError> {
        let port = port_id(&self.base, &p.port)?;
        if p.fast_leave.is_none() && p.mrouter.is_none() {
            return Err(CommandError::NothingToSet {
                port: p.port.clone(),
            });
        }
        let Some(base) = self.base.ports.get(usize::from(port)) else {
            return Err(CommandError::NoPorts);
        };
        let mut overrides = self.overrides.clone();
        // Setting the file's own value drops the override: the port follows the file again.
        if let Some(on) = p.fast_leave {
            if on == base.fast_leave {
                overrides.fast_leave.remove(&port);
            } else {
                overrides.fast_leave.insert(port, on);
            }
        }
        if let Some(mode) = p.mrouter {
            if mode == base.mrouter {
                overrides.mrouter.remove(&port);
            } else {
                overrides.mrouter.insert(port, mode);
            }
        }
        let kind = EventKind::PortChanged {
            fast_leave: overrides
                .fast_leave
                .get(&port)
                .copied()
                .unwrap_or(base.fast_leave),
            mrouter: overrides
                .mrouter
                .get(&port)
                .copied()
                .unwrap_or(base.mrouter),
        };
        let events = base
            .vlans
            .as_slice()
            .iter()
            .map(|&vlan| (vlan, port, None, kind.clone(), BY_OPERATOR_SET))
            .collect();
        Ok(Plan::Overlay { overrides, events })
    }

    fn plan_flush(&self, f: &Flush) -> Result<Plan, CommandError> {
        let port = f
            .port
            .as_deref()
            .map(|name| port_id(&self.base, name))
            .transpose()?;
        let vlans: Vec<VlanId> = match (f.vlan, port) {
            (None, None) => return Err(CommandError::NothingToFlush),
            (Some(v), p) => {
                check_vlan(&self.base, v)?;
                if let Some(p) = p {
                    check_port_in_vlan(&self.base, p, v)?;
                }
                vec![v]
            }
            (None, Some(p)) => self
                .base
                .ports
                .get(usize::from(p))
                .map(|c| c.vlans.as_slice().to_vec())
                .unwrap_or_default(),
        };
        let targets = vlans
            .into_iter()
            .map(|v| {
                let ports = match port {
                    Some(p) => PortSet::single(p),
                    None => self.topo.ports(v),
                };
                (v, ports)
            })
            .collect();
        Ok(Plan::Flush {
            targets,
            port_named: port.is_some(),
        })
    }

    fn carry_out(&mut self, now: Time, plan: Plan, out: &mut Output) {
        match plan {
            Plan::Overlay { overrides, events } => {
                let effective = overrides.apply(&self.base);
                let before = self.overrides.clone();
                self.overrides = overrides;
                for (vlan, port, group, kind, reason) in events {
                    Self::event(out, now, vlan, Some(port), group, kind, reason);
                }
                if let Err(e) = self.apply_config(now, effective, out) {
                    // Unreachable when the plan's checks match the configuration's; if they
                    // ever do not, the switch keeps running as it was.
                    tracing::warn!(error = %e, "runtime change refused by validation");
                    self.overrides = before;
                    self.stats.ignore("invalid runtime change");
                }
            }
            Plan::Flush {
                targets,
                port_named,
            } => {
                for (vlan, ports) in targets {
                    let mut total = 0;
                    for port in ports.iter() {
                        let n = self.flush_port(now, vlan, port, out);
                        total += n;
                        if port_named {
                            Self::event(
                                out,
                                now,
                                vlan,
                                Some(port),
                                None,
                                EventKind::PortFlushed { groups: n },
                                BY_OPERATOR_FLUSH,
                            );
                        }
                    }
                    if !port_named {
                        Self::event(
                            out,
                            now,
                            vlan,
                            None,
                            None,
                            EventKind::VlanFlushed { groups: total },
                            BY_OPERATOR_FLUSH,
                        );
                    }
                    self.query_after_flush(vlan, ports, out);
                }
            }
        }
    }

    /// When we are the VLAN's querier, a general query on the flushed ports: hosts that still
    /// want a group report it again within the query response interval (RFC 3376 §6.1, the
    /// same reason RFC 4541 §2.1.1(4) gives for querying a port that comes up), so a flush
    /// clears stale state without cutting real listeners off for a whole query interval.
    /// Without a querier of ours the groups stay removed until the next report, as after
    /// Cisco's `clear ip igmp snooping groups`.
    fn query_after_flush(&mut self, vlan: VlanId, ports: PortSet, out: &mut Output) {
        let Some(cfg) = self.vlan_cfg.get(&vlan).cloned() else {
            return;
        };
        let us = self
            .vlans
            .get(&vlan)
            .is_some_and(|vs| vs.querier.role(&cfg) == QuerierRole::Us);
        if us && cfg.snooping {
            let ports = ports.intersection(self.up_ports(vlan));
            self.send_general(vlan, ports, general_query(&cfg), out);
        }
    }
}
