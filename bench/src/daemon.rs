//! `xsnoop run` as the bench drives it: the testbed's [`Daemon`] launcher, with the daemon
//! pinned to the switch CPU (`nice`, `taskset`, inherited by every thread), plus the two
//! questions the bench asks it.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use xsnoop_tests::{Daemon, Netns};

use crate::pin::{BENCH_NICE, SWITCH_CPU};

/// Starts `nice -n BENCH_NICE taskset -c SWITCH_CPU ip netns exec NS xsnoop run --config ...`
/// with `config`; returns once the control socket answers.
pub fn start(ns: &Netns, tag: &str, config: &str) -> Result<Daemon> {
    let (nice, cpu) = (BENCH_NICE.to_string(), SWITCH_CPU.to_string());
    let prefix = ["nice", "-n", &nice, "taskset", "-c", &cpu];
    Daemon::run_prefixed(ns, &format!("bench-{tag}"), config, &prefix)
        .map_err(|e| anyhow!("starting xsnoop run (needs nice, taskset and ip): {e}"))
}

/// Waits until the MDB lists `group` in VLAN 1 on every port of `ports`.
pub fn wait_members(
    d: &Daemon,
    group: Ipv4Addr,
    ports: &[String],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mdb = d.show("mdb").unwrap_or(Value::Null);
        let has = |port: &str| {
            mdb.as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["vlan"] == 1 && r["group"] == group.to_string() && r["port"] == port)
            })
        };
        if ports.iter().all(|p| has(p)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "xsnoop never learned {group} on {ports:?}; mdb: {mdb}\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `dataplane` counters of `xsnoop stats`.
pub fn dataplane_stats(d: &Daemon) -> Option<Value> {
    d.show("stats").map(|v| v["dataplane"].clone())
}

/// Checks that the daemon runs the dataplane `mode` the bench configured (`dataplane.mode` of
/// `xsnoop stats`, where the daemon reports it), so an environment override or a changed
/// default cannot put one mode's figures under the other's name.
pub fn check_mode(d: &Daemon, mode: &str) -> Result<()> {
    let Some(stats) = dataplane_stats(d) else {
        bail!("xsnoop stats has no dataplane section\n{}", d.log());
    };
    match stats["mode"].as_str() {
        Some(m) if m != mode => {
            bail!("xsnoop run reports dataplane {m:?}, the bench asked for {mode:?}")
        }
        _ => {}
    }
    // Only xdp mode programs the kernel path.
    if mode == "xdp" && stats.get("kernel_path").is_none() {
        bail!("xsnoop run was asked for dataplane = \"xdp\" but reports no kernel_path: {stats}");
    }
    Ok(())
}
