//! The testbed a scenario runs on: a star of kernel hosts with a capture on every host
//! interface, recording a [`Matrix`] phase by phase.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use xsnoop_dataplane::wire::{parse_frame, to_vec, IgmpRepr, IgmpVersion, MacAddr, QueryBuilder};
use xsnoop_dataplane::wire::{ReportV2Builder, L3};

use super::config::ScenarioConfig;
use super::matrix::Matrix;
use super::switches::{RunningSwitch, SwitchUnderTest};
use crate::capture::Capture;
use crate::host::{Membership, Sender};
use crate::star::Star;

/// Datagrams sent per flow per phase.
pub const BURST: usize = 5;
const DATA_PORT: u16 = 40_000;

/// A star of kernel hosts around one switch under test, with a capture on every host interface,
/// recording a [`Matrix`] phase by phase.
pub struct Bed {
    /// The namespaces and veths (switch `sw`, hosts `h1..hN`).
    pub star: Star,
    /// The scenario configuration the switch was started with.
    pub cfg: ScenarioConfig,
    net: u8,
    caps: Vec<Capture>,
    switch: Option<Box<dyn RunningSwitch>>,
    matrix: Matrix,
    pending_flows: Vec<String>,
}

impl Bed {
    /// Builds the star (`versions[i]` is host i+1's forced IGMP version), opens the captures,
    /// lets `tune` adjust the configuration, starts `sut` and waits for snooping to be active
    /// (one query response interval plus a margin: the bridge floods until then).
    pub fn start(
        sut: &dyn SwitchUnderTest,
        scenario: &str,
        net: u8,
        versions: &[u8],
        tune: impl FnOnce(&mut ScenarioConfig),
    ) -> Result<Bed> {
        let star = Star::new(net, versions).map_err(|e| anyhow!("{e}"))?;
        // Both switches start on oper-up ports, and hosts fill their own checksums as a NIC
        // would (an AF_XDP switch forwards frames as they are).
        star.prepare_for_afxdp().map_err(|e| anyhow!("{e}"))?;
        let ports: Vec<String> = (1..=versions.len())
            .map(|n| star.port(n))
            .collect::<crate::Result<_>>()
            .map_err(|e| anyhow!("{e}"))?;
        let mut cfg = ScenarioConfig::short(&ports);
        cfg.querier_address = Ipv4Addr::new(10, net, 0, 254);
        tune(&mut cfg);
        let mut caps = Vec::new();
        for n in 1..=versions.len() {
            let ns = star.host(n).map_err(|e| anyhow!("{e}"))?;
            let ifname = star.host_if(n).map_err(|e| anyhow!("{e}"))?;
            caps.push(Capture::open(ns, &ifname).map_err(|e| anyhow!("{e}"))?);
        }
        let switch = sut.start(
            star.switch().map_err(|e| anyhow!("{e}"))?,
            star.topo.prefix(),
            &cfg,
        )?;
        let matrix = Matrix {
            switch: sut.name().to_owned(),
            scenario: scenario.to_owned(),
            hosts: versions.len(),
            ..Matrix::default()
        };
        let bed = Bed {
            star,
            cfg,
            net,
            caps,
            switch: Some(switch),
            matrix,
            pending_flows: Vec::new(),
        };
        std::thread::sleep(bed.cfg.query_response_interval + Duration::from_millis(500));
        Ok(bed)
    }

    /// Host `n`'s address.
    pub fn addr(&self, n: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, u8::try_from(n).unwrap_or(u8::MAX))
    }

    fn is_host(&self, a: Ipv4Addr) -> bool {
        let o = a.octets();
        o[0] == 10
            && o[1] == self.net
            && o[2] == 0
            && (1..=self.matrix.hosts).contains(&usize::from(o[3]))
    }

    fn host_name(&self, a: Ipv4Addr) -> String {
        if self.is_host(a) {
            format!("h{}", a.octets()[3])
        } else {
            a.to_string()
        }
    }

    /// Joins `group` (any source) on host `n`.
    pub fn join(&self, n: usize, group: Ipv4Addr) -> Result<Membership> {
        let ns = self.star.host(n).map_err(|e| anyhow!("{e}"))?;
        let ifname = self.star.host_if(n).map_err(|e| anyhow!("{e}"))?;
        Membership::join(ns, &ifname, group, 0).map_err(|e| anyhow!("{e}"))
    }

    /// Joins (`source`, `group`) on host `n` (IGMPv3 INCLUDE).
    pub fn join_source(&self, n: usize, group: Ipv4Addr, source: Ipv4Addr) -> Result<Membership> {
        let ns = self.star.host(n).map_err(|e| anyhow!("{e}"))?;
        let ifname = self.star.host_if(n).map_err(|e| anyhow!("{e}"))?;
        Membership::join_source(ns, &ifname, group, source, 0).map_err(|e| anyhow!("{e}"))
    }

    /// Injects a raw frame out of host `n`'s interface (its kernel never sees it).
    pub fn inject(&self, n: usize, frame: &[u8]) -> Result<()> {
        let cap = self
            .caps
            .get(n.wrapping_sub(1))
            .ok_or_else(|| anyhow!("no host {n}"))?;
        cap.inject(frame).map_err(|e| anyhow!("{e}"))
    }

    /// A made-up but stable MAC for frames injected on behalf of host `n`.
    pub fn mac(&self, n: usize) -> MacAddr {
        MacAddr([
            0x02,
            0x58,
            0x53,
            self.net,
            0,
            u8::try_from(n).unwrap_or(u8::MAX),
        ])
    }

    /// Injects one IGMPv2 report for `group` from host `n` without its kernel joining: a member
    /// that then falls silent (never answers a query).
    pub fn inject_v2_report(&self, n: usize, group: Ipv4Addr) -> Result<()> {
        let frame = to_vec(&ReportV2Builder {
            src_mac: self.mac(n),
            src_ip: self.addr(n),
            group,
            vlan: None,
        })
        .map_err(|e| anyhow!("{e}"))?;
        self.inject(n, &frame)
    }

    /// An IGMPv3 general query from host `n` (an external querier with a real source address,
    /// max response time 1 s).
    pub fn query_frame(&self, n: usize) -> Result<Vec<u8>> {
        to_vec(&QueryBuilder {
            version: IgmpVersion::V3,
            src_mac: self.mac(n),
            src_ip: self.addr(n),
            group: None,
            sources: &[],
            max_resp: Duration::from_secs(1),
            s_flag: false,
            qrv: 2,
            qqi: Duration::from_secs(1),
            vlan: None,
        })
        .map_err(|e| anyhow!("{e}"))
    }

    /// Sends [`BURST`] datagrams to `group` from host `n` (10 ms apart), recording the flow as
    /// part of the phase being built.
    pub fn send(&mut self, n: usize, group: Ipv4Addr) -> Result<()> {
        let ns = self.star.host(n).map_err(|e| anyhow!("{e}"))?;
        let ifname = self.star.host_if(n).map_err(|e| anyhow!("{e}"))?;
        let tx = Sender::new(ns, &ifname, 8).map_err(|e| anyhow!("{e}"))?;
        for i in 0..BURST {
            tx.send(
                group,
                DATA_PORT,
                format!("xsnoop-differential {i}").as_bytes(),
            )
            .map_err(|e| anyhow!("{e}"))?;
            std::thread::sleep(Duration::from_millis(10));
        }
        let flow = format!("{}->{group}", self.host_name(self.addr(n)));
        self.pending_flows.push(flow);
        Ok(())
    }

    /// Ends a phase: waits `settle`, then reads every capture and records what each host
    /// received (data of this phase's flows, IGMP reports and leaves) under `phase`.
    pub fn phase(&mut self, phase: &str, settle: Duration) -> Result<()> {
        std::thread::sleep(settle);
        let flows = std::mem::take(&mut self.pending_flows);
        self.matrix.phases.push(phase.to_owned());
        self.matrix.flows.insert(phase.to_owned(), flows.clone());
        for (i, cap) in self.caps.iter().enumerate() {
            let host = i + 1;
            for flow in &flows {
                self.matrix
                    .data
                    .entry((phase.to_owned(), host, flow.clone()))
                    .or_insert(0);
            }
            let frames = cap.collect(Duration::ZERO).map_err(|e| anyhow!("{e}"))?;
            for f in frames.iter().filter(|f| !f.outgoing) {
                let Ok(parsed) = parse_frame(&f.bytes) else {
                    continue;
                };
                match parsed.l3 {
                    L3::Ipv4 {
                        ip, protocol: 17, ..
                    } => {
                        let flow = format!("{}->{}", self.host_name(ip.src), ip.dst);
                        *self
                            .matrix
                            .data
                            .entry((phase.to_owned(), host, flow))
                            .or_insert(0) += 1;
                    }
                    L3::Igmp { ip, msg } => {
                        if let Some(what) = self.describe_igmp(ip.src, &msg) {
                            self.matrix.igmp.entry(host).or_default().extend(what);
                        }
                    }
                    _ => {}
                }
            }
        }
        let state = self.switch.as_ref().map(|s| s.state()).unwrap_or_default();
        self.matrix.state.push((phase.to_owned(), state));
        Ok(())
    }

    /// Names an IGMP message for the matrix: the hosts' reports and leaves ("v2-report G from
    /// h1"), and queries from a host or from the switch ("query general from switch", "query G
    /// from switch"; the switch is 0.0.0.0 for the bridge, the querier address for xsnoop).
    /// The switch's own reports (the bridge joins 224.0.0.106 from 0.0.0.0) are not
    /// forwarding behaviour and are left out.
    fn describe_igmp(&self, src: Ipv4Addr, msg: &IgmpRepr<'_>) -> Option<Vec<String>> {
        let from = if self.is_host(src) {
            self.host_name(src)
        } else if src.is_unspecified() || src == self.cfg.querier_address {
            "switch".to_owned()
        } else {
            src.to_string()
        };
        let host = self.is_host(src);
        Some(match msg {
            IgmpRepr::Query(q) => {
                let mut target = q
                    .group_opt()
                    .map_or("general".to_owned(), |g| g.to_string());
                let sources: Vec<String> = q.sources.iter().map(|s| self.host_name(s)).collect();
                if !sources.is_empty() {
                    target += &format!(" ({})", sources.join(","));
                }
                vec![format!("query {target} from {from}")]
            }
            IgmpRepr::ReportV1 { group } if host => vec![format!("v1-report {group} from {from}")],
            IgmpRepr::ReportV2 { group } if host => vec![format!("v2-report {group} from {from}")],
            IgmpRepr::LeaveV2 { group } if host => vec![format!("v2-leave {group} from {from}")],
            IgmpRepr::ReportV3 { records } if host => records
                .iter()
                .map(|r| format!("v3-report {} from {from}", r.group))
                .collect(),
            _ => return None,
        })
    }

    /// Stops the switch and returns the matrix.
    pub fn finish(mut self) -> Result<Matrix> {
        if let Some(sw) = self.switch.take() {
            sw.stop()?;
        }
        Ok(std::mem::take(&mut self.matrix))
    }
}

/// Sends a general query from one host every second on a thread of its own (an external
/// querier), until stopped or dropped.
pub struct QueryInjector {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl QueryInjector {
    /// Starts injecting [`Bed::query_frame`] of host `n` out of its interface.
    pub fn start(bed: &Bed, n: usize) -> Result<QueryInjector> {
        let frame = bed.query_frame(n)?;
        let ns = bed.star.host(n).map_err(|e| anyhow!("{e}"))?;
        let ifname = bed.star.host_if(n).map_err(|e| anyhow!("{e}"))?;
        let cap = Capture::open(ns, &ifname).map_err(|e| anyhow!("{e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || -> Result<()> {
            while !stop2.load(Ordering::Relaxed) {
                cap.inject(&frame).map_err(|e| anyhow!("{e}"))?;
                let next = Instant::now() + Duration::from_secs(1);
                while Instant::now() < next && !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Ok(())
        });
        Ok(QueryInjector {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops injecting and reports an error the thread hit.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(anyhow!("query injector panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for QueryInjector {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
