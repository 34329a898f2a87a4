//! The engine fuzzer: arbitrary bytes become a small configuration and a bounded sequence of
//! inputs (control frames on ports, ticks with time advancing at several scales, jumps to the
//! next deadline, link changes, reconfigurations, operator commands); the engine's promises are
//! checked after every step and, at the end, that silence empties every learned entry.

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use xsnoop_control::engine::runtime::{Flush, PortSettings, StaticAdd, StaticDel};
use xsnoop_control::engine::{Command, Engine, EngineConfig, Input, MrouterMode, Output};
use xsnoop_control::punt::deliver;
use xsnoop_dataplane::PortId;

use crate::checks;
use crate::frames;
use crate::setup::{self, GROUPS, PORTS, SOURCES, VLAN_A, VLAN_B, VLAN_UNKNOWN};

/// Most inputs per run: long enough for joins, queries, leaves and expiries to interleave, short
/// enough to keep thousands of runs per second.
pub const MAX_OPS: usize = 64;

/// One thing that happens to the switch.
#[derive(Debug)]
pub enum Op {
    /// A frame arrives on a port in a VLAN.
    Frame {
        /// Ingress port.
        port: PortId,
        /// The VLAN the dataplane classified it into.
        vlan: u16,
        /// The octets.
        bytes: Vec<u8>,
    },
    /// Time moves on by this much, then a tick.
    Tick(Duration),
    /// Time jumps exactly to the engine's next deadline (timer boundaries).
    TickToDeadline,
    /// A link comes up (the id may be out of range: the engine must cope).
    Up(PortId),
    /// A link goes down.
    Down(PortId),
    /// A new configuration (a SIGHUP reload).
    Reconfigure(EngineConfig),
    /// An operator change over the control socket (`xsnoop static|port|flush`); names and
    /// VLANs may be wrong, which the engine must refuse without changing anything.
    Command(Command),
}

/// A port name: one of the switch's, or one it does not have.
fn port_name(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(format!("p{}", u.int_in_range(0..=PORTS)?))
}

fn port_names(u: &mut Unstructured<'_>) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=2)?;
    (0..n).map(|_| port_name(u)).collect()
}

fn any_vlan(u: &mut Unstructured<'_>) -> Result<u16> {
    u.choose(&[VLAN_A, VLAN_B, VLAN_UNKNOWN]).copied()
}

/// Decodes an operator command from the same small sets of ports, VLANs, groups and sources.
pub fn command(u: &mut Unstructured<'_>) -> Result<Command> {
    let group = *u.choose(&GROUPS)?;
    Ok(match u.int_in_range(0u8..=3)? {
        0 => {
            let n = u.int_in_range(0..=2)?;
            let sources = (0..n)
                .map(|_| u.choose(&SOURCES).copied())
                .collect::<Result<_>>()?;
            Command::StaticAdd(StaticAdd {
                vlan: any_vlan(u)?,
                group,
                sources,
                ports: port_names(u)?,
            })
        }
        1 => Command::StaticDel(StaticDel {
            vlan: any_vlan(u)?,
            group,
            ports: port_names(u)?,
        }),
        2 => Command::PortSet(PortSettings {
            port: port_name(u)?,
            fast_leave: u.arbitrary()?,
            mrouter: if u.arbitrary()? {
                Some(*u.choose(&[MrouterMode::Auto, MrouterMode::Always, MrouterMode::Never])?)
            } else {
                None
            },
        }),
        _ => Command::Flush(Flush {
            port: if u.arbitrary()? {
                Some(port_name(u)?)
            } else {
                None
            },
            vlan: if u.arbitrary()? {
                Some(any_vlan(u)?)
            } else {
                None
            },
        }),
    })
}

fn tick(u: &mut Unstructured<'_>) -> Result<Duration> {
    let ms = match u.int_in_range(0u8..=3)? {
        0 => u.int_in_range(0..=1_500)?,
        1 => u.int_in_range(0..=30_000)?,
        2 => u.int_in_range(0..=400_000)?,
        _ => u.int_in_range(0..=10_000_000)?,
    };
    Ok(Duration::from_millis(ms))
}

/// The VLAN a frame is classified into: the port's own VLAN most of the time, sometimes another
/// one the port may not carry, or one the switch does not know.
fn vlan(u: &mut Unstructured<'_>, config: &EngineConfig, port: PortId) -> Result<u16> {
    let own = config
        .ports
        .get(usize::from(port))
        .map(|p| p.vlans.as_slice().to_vec())
        .unwrap_or_default();
    if !own.is_empty() && u.ratio(7, 8)? {
        return u.choose(&own).copied();
    }
    u.choose(&[VLAN_A, VLAN_B, VLAN_UNKNOWN]).copied()
}

/// Decodes the next input.
pub fn op(u: &mut Unstructured<'_>, config: &EngineConfig) -> Result<Op> {
    Ok(match u.int_in_range(0u8..=21)? {
        0..=10 => {
            let port = u.int_in_range(0..=PORTS - 1)?;
            let vlan = vlan(u, config, port)?;
            Op::Frame {
                port,
                vlan,
                bytes: frames::frame(u, vlan)?,
            }
        }
        11..=14 => Op::Tick(tick(u)?),
        15 | 16 => Op::TickToDeadline,
        17 => Op::Up(u.int_in_range(0..=PORTS)?),
        18 => Op::Down(u.int_in_range(0..=PORTS)?),
        19 => Op::Reconfigure(setup::config(u)?),
        _ => Op::Command(command(u)?),
    })
}

/// A switch under test: the engine and the clock the caller drives.
struct Switch {
    engine: Engine,
    now: Duration,
}

impl Switch {
    fn apply(&mut self, op: Op) {
        let (ingress, out) = match op {
            Op::Frame { port, vlan, bytes } => {
                match deliver(&mut self.engine, self.now, port, vlan, &bytes) {
                    Some(out) => (Some((port, vlan)), out),
                    // Not for the engine (data, unicast, non-IP): still tick so the checks see
                    // a processed state.
                    None => (None, self.engine.handle(self.now, Input::Tick)),
                }
            }
            Op::Tick(d) => {
                self.now = self.now.saturating_add(d);
                (None, self.engine.handle(self.now, Input::Tick))
            }
            Op::TickToDeadline => {
                if let Some(d) = self.engine.next_deadline() {
                    self.now = self.now.max(d);
                }
                (None, self.engine.handle(self.now, Input::Tick))
            }
            Op::Up(p) => (None, self.engine.handle(self.now, Input::PortUp(p))),
            Op::Down(p) => (None, self.engine.handle(self.now, Input::PortDown(p))),
            Op::Reconfigure(c) => (None, self.engine.handle(self.now, Input::Reconfigure(c))),
            Op::Command(c) => {
                let before = (
                    self.engine.table().clone(),
                    self.engine.mdb(self.now),
                    self.engine.config().clone(),
                );
                match self.engine.command(self.now, &c) {
                    Ok(out) => (None, out),
                    Err(e) => {
                        let after = (
                            self.engine.table().clone(),
                            self.engine.mdb(self.now),
                            self.engine.config().clone(),
                        );
                        assert!(before == after, "refused command {c:?} ({e}) changed state");
                        (None, Output::default())
                    }
                }
            }
        };
        checks::step(&self.engine, ingress, &out);
    }
}

/// One fuzz case. Inputs the decoder cannot turn into a valid configuration are skipped.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(config) = setup::config(&mut u) else {
        return;
    };
    let engine = match Engine::new(config, Duration::ZERO) {
        Ok(e) => e,
        Err(e) => panic!("the fuzzer's configuration must be valid: {e}"),
    };
    let mut sw = Switch {
        engine,
        now: Duration::ZERO,
    };
    // A querier VLAN has its first startup query due at once (RFC 3376 §8.6/§8.7).
    sw.apply(Op::Tick(Duration::ZERO));
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = op(&mut u, sw.engine.config()) else {
            break;
        };
        sw.apply(op);
    }
    // Silence for far longer than any interval a hostile querier can advertise (QQIC caps the
    // query interval at 31744 s, RFC 3376 §4.1.7; robustness at 7): all learned state is gone.
    for _ in 0..3 {
        sw.apply(Op::Tick(Duration::from_secs(1_000_000)));
    }
    checks::after_silence(&sw.engine);
}
