//! The differential harness (issue 3 §6): the same end-to-end scenario runs against any
//! [`SwitchUnderTest`] — the Linux bridge with `mcast_snooping 1` as reference, and the real
//! `xsnoop run` process — and yields a [`Matrix`] of what every host received. Two matrices are
//! compared with [`diff`]; every difference must then be explained by an RFC 4541 section.
//!
//! Scenarios drive real kernel hosts (joins, leaves, source filters through the socket API) and
//! count what arrives on each host interface with `AF_PACKET` captures, so the matrix reflects
//! frames on the wire, not either switch's own account of its state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use xsnoop_dataplane::wire::{parse_frame, to_vec, IgmpRepr, IgmpVersion, MacAddr, QueryBuilder};
use xsnoop_dataplane::wire::{ReportV2Builder, L3};

use crate::bridge::{Bridge, BridgeConfig, BridgePort, RouterMode};
use crate::capture::Capture;
use crate::host::{Membership, Sender};
use crate::netns::Netns;
use crate::star::Star;

/// One switch port of a scenario and its per-port snooping settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Interface name inside the switch namespace.
    pub name: String,
    /// Leaves take effect at once (one host behind the port).
    pub fast_leave: bool,
    /// Statically a multicast-router port (RFC 4541 §2.1.1(2), "configured by management").
    pub mrouter_always: bool,
}

/// Everything a scenario asks of the switch, in terms both implementations understand: one
/// untagged VLAN, RFC 3376 §8 timers, per-port knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioConfig {
    /// The switch is the snooping querier.
    pub querier: bool,
    /// Source of xsnoop's queries (the bridge always queries from 0.0.0.0).
    pub querier_address: Ipv4Addr,
    /// Version of the switch's queries and of its group state (2 or 3).
    pub igmp_version: u8,
    /// Query interval (RFC 3376 §8.2).
    pub query_interval: Duration,
    /// Query response interval (RFC 3376 §8.3).
    pub query_response_interval: Duration,
    /// Last member query interval (RFC 3376 §8.8).
    pub last_member_interval: Duration,
    /// Last member query count (RFC 3376 §8.9).
    pub last_member_count: u32,
    /// Startup query interval (RFC 3376 §8.6).
    pub startup_query_interval: Duration,
    /// Group membership interval (RFC 3376 §8.4), set explicitly on both switches.
    pub membership_interval: Duration,
    /// Other querier present interval (RFC 3376 §8.5), the bridge's `mcast_querier_interval`.
    pub other_querier_interval: Duration,
    /// The switch ports.
    pub ports: Vec<PortSpec>,
}

impl ScenarioConfig {
    /// Short timers so RFC behaviour fits in seconds: QI 2 s, QRI 1 s, LMQI 200 ms × 2,
    /// GMI 5 s (= 2 × 2 + 1, RFC 3376 §8.4), other querier present 4.5 s (§8.5).
    pub fn short(ports: &[String]) -> ScenarioConfig {
        ScenarioConfig {
            querier: true,
            querier_address: Ipv4Addr::new(10, 0, 0, 254),
            igmp_version: 3,
            query_interval: Duration::from_secs(2),
            query_response_interval: Duration::from_secs(1),
            last_member_interval: Duration::from_millis(200),
            last_member_count: 2,
            startup_query_interval: Duration::from_secs(1),
            membership_interval: Duration::from_secs(5),
            other_querier_interval: Duration::from_millis(4500),
            ports: ports
                .iter()
                .map(|p| PortSpec {
                    name: p.clone(),
                    fast_leave: false,
                    mrouter_always: false,
                })
                .collect(),
        }
    }

    /// Last member query time (RFC 3376 §8.14): LMQC × LMQI.
    pub fn last_member_query_time(&self) -> Duration {
        self.last_member_interval * self.last_member_count
    }

    /// The configuration as an xsnoop TOML file (format of `docs/xsnoop.example.toml`).
    pub fn to_xsnoop_toml(&self) -> String {
        let ms = |d: Duration| format!("\"{}ms\"", d.as_millis());
        let mut s = String::from("[snooping]\n");
        s += &format!("querier = {}\n", self.querier);
        s += &format!("querier_address = \"{}\"\n", self.querier_address);
        s += &format!("igmp_version = {}\n", self.igmp_version);
        s += &format!("query_interval = {}\n", ms(self.query_interval));
        s += &format!(
            "query_response_interval = {}\n",
            ms(self.query_response_interval)
        );
        s += &format!(
            "last_member_query_interval = {}\n",
            ms(self.last_member_interval)
        );
        s += &format!("last_member_query_count = {}\n", self.last_member_count);
        s += &format!(
            "startup_query_interval = {}\n",
            ms(self.startup_query_interval)
        );
        s += &format!("membership_interval = {}\n", ms(self.membership_interval));
        for p in &self.ports {
            s += &format!("\n[[port]]\nname = \"{}\"\n", p.name);
            if p.fast_leave {
                s += "fast_leave = true\n";
            }
            if p.mrouter_always {
                s += "mrouter = \"always\"\n";
            }
        }
        s
    }

    /// The same configuration as Linux bridge knobs.
    pub fn to_bridge(&self) -> (BridgeConfig, Vec<BridgePort>) {
        let cfg = BridgeConfig {
            snooping: true,
            querier: self.querier,
            igmp_version: Some(self.igmp_version),
            query_interval: Some(self.query_interval),
            query_response_interval: Some(self.query_response_interval),
            last_member_interval: Some(self.last_member_interval),
            last_member_count: Some(self.last_member_count),
            membership_interval: Some(self.membership_interval),
            querier_interval: Some(self.other_querier_interval),
            startup_query_interval: Some(self.startup_query_interval),
            startup_query_count: None,
        };
        let ports = self
            .ports
            .iter()
            .map(|p| BridgePort {
                name: p.name.clone(),
                fast_leave: p.fast_leave,
                router: if p.mrouter_always {
                    RouterMode::Always
                } else {
                    RouterMode::Learn
                },
            })
            .collect();
        (cfg, ports)
    }
}

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

/// The real `xsnoop run --config FILE --control-socket PATH` process.
#[derive(Clone, Debug)]
pub struct Xsnoop {
    /// The `xsnoop` binary.
    pub bin: PathBuf,
}

impl Xsnoop {
    /// The binary of this build: `$XSNOOP_BIN`, else `xsnoop` next to the test executable's
    /// `deps/` directory (where `cargo build -p xsnoop-control` puts it).
    pub fn of_this_build() -> Result<Xsnoop> {
        if let Some(p) = std::env::var_os("XSNOOP_BIN") {
            return Ok(Xsnoop { bin: p.into() });
        }
        let exe = std::env::current_exe()?;
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("xsnoop"))
            .ok_or_else(|| anyhow!("no directory above {}", exe.display()))?;
        if !bin.exists() {
            bail!(
                "{} missing: build it first (`cargo build -p xsnoop-control`)",
                bin.display()
            );
        }
        Ok(Xsnoop { bin })
    }

    /// Whether this binary has the `run` subcommand (the AF_XDP forwarding daemon).
    pub fn has_run(&self) -> bool {
        Command::new(&self.bin)
            .args(["run", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

struct RunningXsnoop {
    bin: PathBuf,
    child: Option<Child>,
    socket: PathBuf,
    config: PathBuf,
}

impl RunningXsnoop {
    fn show(&self, what: &str) -> Option<String> {
        let out = Command::new(&self.bin)
            .args([what, "--json", "--control-socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn halt(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.config);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("xsnoop run exited with {status} on SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("xsnoop run did not exit within 3 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl SwitchUnderTest for Xsnoop {
    fn name(&self) -> &'static str {
        "xsnoop"
    }

    fn start(&self, ns: &Netns, tag: &str, cfg: &ScenarioConfig) -> Result<Box<dyn RunningSwitch>> {
        let dir = std::env::temp_dir();
        let config = dir.join(format!("{tag}-xsnoop.toml"));
        let socket = dir.join(format!("{tag}-xsnoop.sock"));
        std::fs::write(&config, cfg.to_xsnoop_toml())
            .with_context(|| format!("writing {}", config.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(&self.bin)
            .args(["--log-level", "warn", "run", "--config"])
            .arg(&config)
            .arg("--control-socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning xsnoop run")?;
        let mut run = RunningXsnoop {
            bin: self.bin.clone(),
            child: Some(child),
            socket,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if run.show("mdb").is_some() {
                return Ok(Box::new(run));
            }
            if let Some(child) = run.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    run.child = None;
                    bail!("xsnoop run exited with {status} before answering: {err}");
                }
            }
            if Instant::now() >= deadline {
                bail!("xsnoop run did not answer `mdb --json` within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl RunningSwitch for RunningXsnoop {
    fn state(&self) -> String {
        format!(
            "mdb {} mrouters {}",
            self.show("mdb").unwrap_or_default().trim(),
            self.show("mrouters").unwrap_or_default().trim()
        )
    }

    fn stop(mut self: Box<Self>) -> Result<()> {
        self.halt()
    }
}

impl Drop for RunningXsnoop {
    fn drop(&mut self) {
        if let Err(e) = self.halt() {
            eprintln!("xsnoop-tests: stopping xsnoop: {e}");
        }
    }
}

/// What the hosts saw during one scenario on one switch.
///
/// `data` maps (phase, receiving host, "S->G") to the number of datagrams received; `igmp` maps a
/// host to the reports and leaves it received ("v2-report G from hN", "v3-report G from hN",
/// "v2-leave G from hN"), aggregated over the whole scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matrix {
    /// The switch.
    pub switch: String,
    /// The scenario.
    pub scenario: String,
    /// Number of hosts (h1..hN).
    pub hosts: usize,
    /// Phases in the order they ran.
    pub phases: Vec<String>,
    /// Flows sent in each phase, as "S->G" (with the sending host).
    pub flows: BTreeMap<String, Vec<String>>,
    /// (phase, host, flow) → datagrams received.
    pub data: BTreeMap<(String, usize, String), usize>,
    /// host → IGMP reports/leaves received.
    pub igmp: BTreeMap<usize, BTreeSet<String>>,
    /// The switch's own view at the end of each phase (informational).
    pub state: Vec<(String, String)>,
}

impl Matrix {
    /// Datagrams of `flow` ("S->G") host `host` received in `phase`.
    pub fn got(&self, phase: &str, host: usize, flow: &str) -> usize {
        self.data
            .get(&(phase.to_owned(), host, flow.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The hosts that received at least one datagram of `flow` in `phase`.
    pub fn receivers(&self, phase: &str, flow: &str) -> Vec<usize> {
        (1..=self.hosts)
            .filter(|h| self.got(phase, *h, flow) > 0)
            .collect()
    }

    /// The hosts that received an IGMP message described as `what` ("v2-leave G from hN").
    pub fn igmp_receivers(&self, what: &str) -> Vec<usize> {
        (1..=self.hosts)
            .filter(|h| self.igmp.get(h).is_some_and(|s| s.contains(what)))
            .collect()
    }

    /// Every cell as (key, value), the form [`diff`] compares.
    pub fn cells(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for ((phase, host, flow), n) in &self.data {
            out.insert(format!("{phase} | {flow} | h{host}"), *n);
        }
        for (host, seen) in &self.igmp {
            for what in seen {
                out.insert(format!("igmp | {what} | h{host}"), 1);
            }
        }
        out
    }

    /// One line per (phase, flow) with every host's count, then the IGMP rows.
    pub fn rows(&self) -> Vec<String> {
        let mut out = Vec::new();
        for phase in &self.phases {
            for flow in self.flows.get(phase).into_iter().flatten() {
                let counts: Vec<String> = (1..=self.hosts)
                    .map(|h| format!("h{h}={}", self.got(phase, h, flow)))
                    .collect();
                out.push(format!("{phase:<14} {flow:<22} {}", counts.join(" ")));
            }
        }
        let mut by_msg: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (h, seen) in &self.igmp {
            for what in seen {
                by_msg.entry(what.as_str()).or_default().push(*h);
            }
        }
        for (what, hosts) in by_msg {
            let hs: Vec<String> = hosts.iter().map(|h| format!("h{h}")).collect();
            out.push(format!(
                "{:<14} {what:<32} seen by {}",
                "igmp",
                hs.join(",")
            ));
        }
        out
    }
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== {} on {} ==", self.scenario, self.switch)?;
        for r in self.rows() {
            writeln!(f, "  {r}")?;
        }
        for (phase, st) in &self.state {
            writeln!(f, "  state after {phase}: {st}")?;
        }
        Ok(())
    }
}

/// One cell in which two matrices differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// "phase | S->G | hN" or "igmp | what | hN".
    pub key: String,
    /// Value in the left matrix (0 = absent).
    pub left: usize,
    /// Value in the right matrix.
    pub right: usize,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} vs {}", self.key, self.left, self.right)
    }
}

/// Cells of `left` and `right` whose values differ (a missing cell counts as 0).
pub fn diff(left: &Matrix, right: &Matrix) -> Vec<Difference> {
    let (l, r) = (left.cells(), right.cells());
    let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (
                l.get(k).copied().unwrap_or(0),
                r.get(k).copied().unwrap_or(0),
            );
            (a != b).then(|| Difference {
                key: k.clone(),
                left: a,
                right: b,
            })
        })
        .collect()
}

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
                    // Only the hosts' own reports: the switch's own IGMP (the bridge
                    // reports 224.0.0.106 from 0.0.0.0) is not forwarding behaviour.
                    L3::Igmp { ip, msg } if self.is_host(ip.src) => {
                        let from = self.host_name(ip.src);
                        let seen = self.matrix.igmp.entry(host).or_default();
                        match msg {
                            IgmpRepr::ReportV1 { group } => {
                                seen.insert(format!("v1-report {group} from {from}"));
                            }
                            IgmpRepr::ReportV2 { group } => {
                                seen.insert(format!("v2-report {group} from {from}"));
                            }
                            IgmpRepr::LeaveV2 { group } => {
                                seen.insert(format!("v2-leave {group} from {from}"));
                            }
                            IgmpRepr::ReportV3 { records } => {
                                for r in records.iter() {
                                    seen.insert(format!("v3-report {} from {from}", r.group));
                                }
                            }
                            _ => {}
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

    /// Stops the switch and returns the matrix.
    pub fn finish(mut self) -> Result<Matrix> {
        if let Some(sw) = self.switch.take() {
            sw.stop()?;
        }
        Ok(std::mem::take(&mut self.matrix))
    }
}

/// Groups used by the scenarios.
pub const G1: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
/// A second group.
pub const G2: Ipv4Addr = Ipv4Addr::new(239, 2, 2, 2);
/// A group nobody joins.
pub const UNREG: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 9);
/// mDNS, in the link-local block 224.0.0.0/24 (RFC 4541 §2.1.2(2)).
pub const MDNS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

const SETTLE: Duration = Duration::from_millis(300);
const LEARN: Duration = Duration::from_millis(500);

/// Scenario 1: IGMPv2 join → only members receive; leave → forwarding stops within the last
/// member query time, and at once on a fast-leave port (p2).
///
/// Hosts h1, h2, h3 are IGMPv2; h1 joins G1, h2 joins G2 (its port is fast-leave), h3 sends.
pub fn v2_join_leave(sut: &dyn SwitchUnderTest) -> Result<Matrix> {
    let mut bed = Bed::start(sut, "1 v2 join/leave", 31, &[2, 2, 2], |c| {
        if let Some(p) = c.ports.get_mut(1) {
            p.fast_leave = true;
        }
    })?;
    let m1 = bed.join(1, G1)?;
    let m2 = bed.join(2, G2)?;
    std::thread::sleep(LEARN);
    bed.send(3, G1)?;
    bed.send(3, G2)?;
    bed.phase("joined", SETTLE)?;
    m1.leave()?;
    m2.leave()?;
    let left = Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    // Within the last member query time only the fast-leave port has stopped.
    bed.send(3, G1)?;
    bed.send(3, G2)?;
    bed.phase("left+50ms", Duration::ZERO)?;
    let lmqt = bed.cfg.last_member_query_time();
    std::thread::sleep(
        (left + lmqt + Duration::from_millis(600)).saturating_duration_since(Instant::now()),
    );
    bed.send(3, G1)?;
    bed.send(3, G2)?;
    bed.phase("left+LMQT", SETTLE)?;
    bed.finish()
}

/// Scenario 2: IGMPv3 source filtering with kernel hosts (RFC 3376 §6.4, RFC 4541 §2.1.2(7)).
///
/// All hosts IGMPv3. h1 joins (S1,G1) (INCLUDE {S1}); h2 joins G1 blocking S1 (EXCLUDE {S1});
/// h3 does nothing; h4 is S1, h5 is S2. Then h2 unblocks S1.
pub fn v3_source_filter(sut: &dyn SwitchUnderTest) -> Result<Matrix> {
    let mut bed = Bed::start(sut, "2 v3 include/exclude", 32, &[3, 3, 3, 3, 3], |_| {})?;
    let s1 = bed.addr(4);
    let _m1 = bed.join_source(1, G1, s1)?;
    let m2 = bed.join(2, G1)?;
    m2.block_source(s1).map_err(|e| anyhow!("{e}"))?;
    std::thread::sleep(LEARN);
    bed.send(4, G1)?;
    bed.send(5, G1)?;
    bed.phase("filters", SETTLE)?;
    m2.unblock_source(s1).map_err(|e| anyhow!("{e}"))?;
    std::thread::sleep(LEARN);
    bed.send(4, G1)?;
    bed.send(5, G1)?;
    bed.phase("unblocked", SETTLE)?;
    bed.finish()
}

/// Scenario 3: the switch as querier. Kernel hosts h1 (v2) and h2 (v3) answer its queries and
/// stay members past the group membership interval; h3 reported once (an injected v2 report)
/// and then fell silent, so it expires after the GMI (RFC 3376 §8.4, RFC 4541 §2.1.1(4)/C7).
/// h4 sends.
pub fn querier_keeps_and_expires(sut: &dyn SwitchUnderTest) -> Result<Matrix> {
    let mut bed = Bed::start(sut, "3 querier/expiry", 33, &[2, 3, 2, 2], |_| {})?;
    let _m1 = bed.join(1, G1)?;
    let _m2 = bed.join(2, G1)?;
    bed.inject_v2_report(3, G1)?;
    let joined = Instant::now();
    std::thread::sleep(LEARN);
    bed.send(4, G1)?;
    bed.phase("joined", SETTLE)?;
    let past_gmi = joined + bed.cfg.membership_interval + Duration::from_millis(1500);
    std::thread::sleep(past_gmi.saturating_duration_since(Instant::now()));
    bed.send(4, G1)?;
    bed.phase("GMI+1.5s", SETTLE)?;
    bed.finish()
}

/// Scenario 4: an external querier on h4 (queries with a real source address every second, the
/// switch not querying) makes p4 a multicast-router port: it receives every report and all group
/// traffic, registered or not (RFC 4541 §2.1.1(1)(2), §2.1.2(1)(3)). h1 (v2) and h2 (v3) join
/// G1; h3 sends to G1 and to an unregistered group.
pub fn external_querier(sut: &dyn SwitchUnderTest) -> Result<Matrix> {
    let mut bed = Bed::start(sut, "4 external querier", 34, &[2, 3, 2, 3], |c| {
        c.querier = false;
    })?;
    let injector = QueryInjector::start(&bed, 4)?;
    // The first query starts the bridge's querier-present delay (max response time 1 s).
    std::thread::sleep(Duration::from_millis(1500));
    let _m1 = bed.join(1, G1)?;
    let _m2 = bed.join(2, G1)?;
    std::thread::sleep(Duration::from_millis(1500));
    bed.send(3, G1)?;
    bed.send(3, UNREG)?;
    bed.phase("members", SETTLE)?;
    injector.stop()?;
    bed.finish()
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

/// Scenario 5: unregistered group → router ports only (RFC 4541 §2.1.2(3)); 224.0.0.251 →
/// every port (§2.1.2(2)). p4 is a static router port; the switch is querier; h1 sends.
pub fn unregistered_and_link_local(sut: &dyn SwitchUnderTest) -> Result<Matrix> {
    let mut bed = Bed::start(sut, "5 unregistered/224.0.0.251", 35, &[3, 3, 3, 3], |c| {
        if let Some(p) = c.ports.get_mut(3) {
            p.mrouter_always = true;
        }
    })?;
    bed.send(1, UNREG)?;
    bed.send(1, MDNS)?;
    bed.phase("no members", SETTLE)?;
    let _m2 = bed.join(2, G1)?;
    std::thread::sleep(LEARN);
    bed.send(1, G1)?;
    bed.send(1, UNREG)?;
    bed.phase("h2 joined G1", SETTLE)?;
    bed.finish()
}

/// A scenario: drives hosts around any switch and returns what they received.
pub type Scenario = fn(&dyn SwitchUnderTest) -> Result<Matrix>;

/// Every scenario, in issue order.
pub const SCENARIOS: &[(&str, Scenario)] = &[
    ("v2_join_leave", v2_join_leave),
    ("v3_source_filter", v3_source_filter),
    ("querier_keeps_and_expires", querier_keeps_and_expires),
    ("external_querier", external_querier),
    ("unregistered_and_link_local", unregistered_and_link_local),
];
