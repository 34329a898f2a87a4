//! The switches a scenario can run against: the Linux bridge and the `xsnoop run` process.

use anyhow::{anyhow, Result};

use super::config::ScenarioConfig;
use crate::bridge::Bridge;
use crate::daemon::Daemon;
use crate::netns::Netns;

/// A switch implementation the scenarios can run against.
pub trait SwitchUnderTest {
    /// Short name for matrices and messages ("bridge", "xsnoop").
    fn name(&self) -> &'static str;
    /// Starts the switch in `ns` over `cfg.ports`; `tag` is unique per topology (for device and
    /// socket names). Returns once the switch answers (not necessarily once snooping is active:
    /// scenarios wait the query response interval for that, on every switch alike).
    fn start(&self, ns: &Netns, tag: &str, cfg: &ScenarioConfig) -> Result<Box<dyn RunningSwitch>>;
}

/// A started switch; dropping it stops it too, [`RunningSwitch::stop`] also reports failures.
pub trait RunningSwitch {
    /// The switch's group table in its own words, for failure messages and the printout.
    fn state(&self) -> String;
    /// Stops the switch and reports an error it hit.
    fn stop(self: Box<Self>) -> Result<()>;
}

/// The Linux bridge as the reference switch.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxBridge;

struct RunningBridge(Bridge);

impl SwitchUnderTest for LinuxBridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn start(&self, ns: &Netns, tag: &str, cfg: &ScenarioConfig) -> Result<Box<dyn RunningSwitch>> {
        let (bcfg, ports) = cfg.to_bridge();
        let name = format!("{tag}br");
        let br = Bridge::create(ns, &name, &bcfg, &ports).map_err(|e| anyhow!("{e}"))?;
        Ok(Box::new(RunningBridge(br)))
    }
}

impl RunningSwitch for RunningBridge {
    fn state(&self) -> String {
        match (self.0.mdb(), self.0.router_ports()) {
            (Ok(mdb), Ok(routers)) => {
                let rows: Vec<String> = mdb
                    .iter()
                    .map(|e| {
                        let src = e.source.map(|s| format!(" src {s}")).unwrap_or_default();
                        format!("{} {}{src} {:?}", e.port, e.group, e.flags)
                    })
                    .collect();
                format!("mdb [{}] routers {routers:?}", rows.join("; "))
            }
            (Err(e), _) | (_, Err(e)) => format!("(bridge state unreadable: {e})"),
        }
    }

    fn stop(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
}

/// The real `xsnoop run --config FILE` process, started with the testbed's [`Daemon`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Xsnoop;

struct RunningXsnoop(Option<Daemon>);

impl RunningXsnoop {
    fn show(&self, what: &str) -> Option<serde_json::Value> {
        self.0.as_ref()?.show(what)
    }
}

impl SwitchUnderTest for Xsnoop {
    fn name(&self) -> &'static str {
        "xsnoop"
    }

    fn start(&self, ns: &Netns, tag: &str, cfg: &ScenarioConfig) -> Result<Box<dyn RunningSwitch>> {
        let daemon = Daemon::run(ns, &format!("diff-{tag}"), &cfg.to_xsnoop_toml())
            .map_err(|e| anyhow!("starting xsnoop run: {e}"))?;
        Ok(Box::new(RunningXsnoop(Some(daemon))))
    }
}

impl RunningSwitch for RunningXsnoop {
    fn state(&self) -> String {
        // One compact line per row: port, group, source, filter mode (the JSON is long).
        let rows = |what: &str, keys: &[&str]| -> String {
            let Some(v) = self.show(what) else {
                return format!("({what} unavailable)");
            };
            let serde_json::Value::Array(rows) = v else {
                return v.to_string();
            };
            let cells: Vec<String> = rows
                .iter()
                .map(|r| {
                    keys.iter()
                        .filter_map(|k| match &r[*k] {
                            serde_json::Value::Null => None,
                            serde_json::Value::String(s) => Some(s.clone()),
                            v => Some(v.to_string()),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            format!("[{}]", cells.join("; "))
        };
        // The dataplane's decision counters explain a missing datagram (drop reasons).
        let dataplane = self
            .show("stats")
            .map(|v| v["dataplane"].to_string())
            .unwrap_or_default();
        format!(
            "mdb {} mrouters {} dataplane {dataplane}",
            rows("mdb", &["port", "group", "source", "filter_mode"]),
            rows("mrouters", &["port", "via"])
        )
    }

    fn stop(mut self: Box<Self>) -> Result<()> {
        match self.0.take() {
            Some(d) => d.stop().map(|_| ()).map_err(|e| anyhow!("{e}")),
            None => Ok(()),
        }
    }
}
