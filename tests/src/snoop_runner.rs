//! A snoop-mode switch running inside a test namespace on a background thread.
//!
//! The switch's sockets are opened inside the switch namespace; the engine is then stepped on its
//! own thread while the test (or the demo) drives real hosts and reads consistent snapshots of
//! the engine's state. Dropping the runner stops the thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use xsnoop_control::engine::{EngineConfig, Event, MdbRow, MrouterRow, QuerierStatus, Stats};
use xsnoop_control::snoop::SnoopSwitch;
use xsnoop_dataplane::TableHandle;

use crate::netns::Netns;

/// The engine's state at one moment, as show commands would print it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Engine time of the snapshot.
    pub now: Duration,
    /// The multicast database.
    pub mdb: Vec<MdbRow>,
    /// Multicast-router ports.
    pub mrouters: Vec<MrouterRow>,
    /// Querier state per VLAN.
    pub querier: Vec<QuerierStatus>,
    /// Counters.
    pub stats: Stats,
    /// Every event since start, oldest first.
    pub events: Vec<Event>,
}

impl Snapshot {
    /// The port-group row (source `null`) of `group` on `port`, if the port is a member.
    pub fn member(&self, group: std::net::Ipv4Addr, port: &str) -> Option<&MdbRow> {
        self.mdb
            .iter()
            .find(|r| r.group == group && r.port == port && r.source.is_none())
    }
}

/// A [`SnoopSwitch`] stepping on a background thread.
pub struct SnoopRunner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
    state: Arc<Mutex<Snapshot>>,
    table: TableHandle,
}

impl SnoopRunner {
    /// Opens the switch's ports inside `ns` and starts stepping it.
    pub fn start(ns: &Netns, config: EngineConfig) -> Result<SnoopRunner> {
        let mut sw = ns
            .run(|| SnoopSwitch::open(config))
            .map_err(|e| anyhow!("entering {}: {e}", ns.name()))??;
        let table = sw.table().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(Snapshot::default()));
        let (stop2, state2) = (stop.clone(), state.clone());
        let thread = std::thread::spawn(move || -> Result<()> {
            let mut events = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let outs = sw.step(Duration::from_millis(20))?;
                for o in outs {
                    events.extend(o.events);
                }
                let e = sw.engine();
                let now = sw.now();
                let snap = Snapshot {
                    now,
                    mdb: e.mdb(now),
                    mrouters: e.mrouter_ports(now),
                    querier: e.querier_status(now),
                    stats: e.stats().clone(),
                    events: events.clone(),
                };
                *state2.lock().unwrap_or_else(PoisonError::into_inner) = snap;
            }
            Ok(())
        });
        Ok(SnoopRunner {
            stop,
            thread: Some(thread),
            state,
            table,
        })
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Polls snapshots until `pred` holds (returns that snapshot) or `timeout` passes (returns
    /// the last one as the error, for the failure message).
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> std::result::Result<Snapshot, Box<Snapshot>> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.snapshot();
            if pred(&s) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(Box::new(s));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The forwarding table the switch publishes.
    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// Stops the switch and reports an error its thread hit.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(anyhow!("snoop thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for SnoopRunner {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
