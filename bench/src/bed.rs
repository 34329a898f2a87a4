//! One benchmark testbed: a sender host, N member hosts and one non-member host, each behind its
//! own port of one switch under test, in network namespaces joined by veth pairs (the project's
//! testbed, [`xsnoop_tests::Star`]). Host 1 sends, hosts 2..=N+1 are members, host N+2 never
//! joins: it proves that the switch does not leak the group to a port without members. Host N+3
//! is the flooder: it joins nothing and sends the IGMP report flood ([`crate::flood`]) when a
//! measurement asks for one.
//!
//! The switches compared:
//! - [`SwitchKind::XsnoopAfxdp`] and [`SwitchKind::XsnoopXdp`]: `xsnoop run` with
//!   `dataplane = "afxdp"` (every frame through the AF_XDP workers) and `dataplane = "xdp"`
//!   (registered multicast replicated in the kernel, issue 7), the mode always written in the
//!   config so a change of the daemon's default changes no figure; membership learned from the
//!   hosts' real kernel joins (IGMPv2 reports, RFC 2236 §3; querier on);
//! - [`SwitchKind::AfxdpC`]: an AF_XDP copy-mode forwarder in C (`bench/afxdp-fwd/`, [`cfwd`]):
//!   no switch logic, every frame of the sender's port sent to the members through one shared
//!   UMEM — what issue 7 asks xsnoop's afxdp mode to match;
//! - [`SwitchKind::Bridge`]: the Linux bridge with `mcast_snooping 1` and its querier on, so it
//!   prunes (RFC 4541 §2.1.1) once its querier counts as present;
//! - [`SwitchKind::Ceiling`]: no switch logic at all, an XDP program on the sender-facing port
//!   broadcasting to a devmap of exactly the member ports — the in-kernel bound.
//!
//! Every host's interface counts and drops the benchmark frames ([`Counter`], tc or XDP); the sender
//! transmits with the live-frames generator ([`crate::livegen`]). Dropping a bed stops the
//! switch, detaches every program and deletes exactly the namespaces it created.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use xsnoop_tests::bridge::{Bridge, BridgeConfig, BridgePort};
use xsnoop_tests::{Membership, Netns, Star};

use crate::bpf::{Ceiling, Counter, Counts, GenProgram, Receiver};
use crate::cfwd::{self, Forwarder};
use crate::cpu;
use crate::daemon;
use crate::flood::{FloodPlan, FloodRun};
use crate::livegen::{run_live, test_frame, unicast_frame as test_unicast_frame, LiveRun};
use crate::pin::{self, HOST_CPU, SWITCH_CPU};
use xsnoop_tests::Daemon;

/// The multicast group every bed sends to (administratively scoped, RFC 2365).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

/// Which switch a bed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SwitchKind {
    /// `xsnoop run` with `dataplane = "afxdp"`.
    XsnoopAfxdp,
    /// `xsnoop run` with `dataplane = "xdp"`.
    XsnoopXdp,
    /// The AF_XDP copy-mode forwarder in C (`make bench-fwd`): static replication to the
    /// members, the baseline of xsnoop's afxdp mode.
    AfxdpC,
    /// The Linux bridge with IGMP snooping.
    Bridge,
    /// XDP devmap broadcast to the members (the ceiling).
    Ceiling,
}

impl SwitchKind {
    /// All five, in report order.
    pub const ALL: [SwitchKind; 5] = [
        SwitchKind::XsnoopAfxdp,
        SwitchKind::XsnoopXdp,
        SwitchKind::AfxdpC,
        SwitchKind::Bridge,
        SwitchKind::Ceiling,
    ];

    /// The two xsnoop modes, in report order.
    pub const XSNOOP: [SwitchKind; 2] = [SwitchKind::XsnoopAfxdp, SwitchKind::XsnoopXdp];

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            SwitchKind::XsnoopAfxdp => "xsnoop run, afxdp",
            SwitchKind::XsnoopXdp => "xsnoop run, xdp",
            SwitchKind::AfxdpC => "AF_XDP C forwarder",
            SwitchKind::Bridge => "Linux bridge",
            SwitchKind::Ceiling => "XDP ceiling",
        }
    }

    /// Short id in the CSV.
    pub fn id(self) -> &'static str {
        match self {
            SwitchKind::XsnoopAfxdp => "xsnoop-afxdp",
            SwitchKind::XsnoopXdp => "xsnoop-xdp",
            SwitchKind::AfxdpC => "afxdp-c",
            SwitchKind::Bridge => "bridge",
            SwitchKind::Ceiling => "ceiling",
        }
    }

    /// The `dataplane` value of the daemon's config; `None` for the other switches.
    pub fn dataplane(self) -> Option<&'static str> {
        match self {
            SwitchKind::XsnoopAfxdp => Some("afxdp"),
            SwitchKind::XsnoopXdp => Some("xdp"),
            SwitchKind::AfxdpC | SwitchKind::Bridge | SwitchKind::Ceiling => None,
        }
    }

    /// Whether the bed runs `xsnoop run`.
    pub fn is_xsnoop(self) -> bool {
        self.dataplane().is_some()
    }

    /// Whether the switch forwards through AF_XDP sockets in userspace (xsnoop's afxdp mode
    /// and the C forwarder): it shares the switch CPU with its ingress NAPI thread and gets
    /// the same scheduling.
    pub fn is_afxdp(self) -> bool {
        matches!(self, SwitchKind::XsnoopAfxdp | SwitchKind::AfxdpC)
    }
}

/// The switch side of a bed; dropped before the namespaces.
#[derive(Debug)]
enum Switch {
    Xsnoop {
        daemon: Daemon,
        _joins: Vec<Membership>,
    },
    Bridge {
        bridge: Bridge,
        _joins: Vec<Membership>,
    },
    Ceiling {
        _ceiling: Ceiling,
    },
    AfxdpC {
        fwd: Forwarder,
    },
}

/// Which receiving hosts a measurement counts as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The N members; the non-member's count is the leakage.
    Members,
    /// Every host but the sender (broadcast): members, non-member and flooder.
    Everyone,
    /// Host 2 alone (unicast to it); every other host's count is the leakage.
    Host2,
}

/// One measurement of one bed.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Frames per second the generator handed to the sender's interface.
    pub offered_pps: f64,
    /// Frames per second the sender-facing switch port received (kernel counter).
    pub port_rx_pps: f64,
    /// Frames per second the member ports dropped on transmit (the receiving veth's ring was
    /// full): non-zero means the receivers, not the switch, limited delivery.
    pub member_drop_pps: f64,
    /// Benchmark frames per second counted at each member host.
    pub member_pps: Vec<f64>,
    /// Benchmark frames counted at the non-member host (must be 0).
    pub leaked: u64,
    /// Length of the generator run.
    pub seconds: f64,
    /// Busy CPU time during the generator run (machine-wide and on the switch CPU).
    pub busy: cpu::Busy,
    /// Busy CPU seconds per second of the same beds with no traffic (this round's idle window),
    /// the baseline subtracted in [`Sample::net_cpu_per_mframe`].
    pub idle_per_s: cpu::Busy,
    /// The report flood that ran meanwhile, if any.
    pub flood: Option<FloodRun>,
    /// CPU seconds of the switch's own threads during the generator run: its ingress (and
    /// flood-port) NAPI threads, and every thread of `xsnoop run`.
    pub switch_threads_s: f64,
    /// The user-space part (utime) of [`Sample::switch_threads_s`]: the switch's own code, apart
    /// from the kernel work an AF_XDP switch shares with any AF_XDP program (0 for kernel-only
    /// switches, whose NAPI threads have no user space).
    pub switch_threads_user_s: f64,
}

impl Sample {
    /// Delivered frames per second, all members together.
    pub fn total_pps(&self) -> f64 {
        self.member_pps.iter().sum()
    }

    /// Mean delivered rate per member.
    pub fn per_member_pps(&self) -> f64 {
        if self.member_pps.is_empty() {
            0.0
        } else {
            self.total_pps() / self.member_pps.len() as f64
        }
    }

    /// Delivered frames, in millions.
    fn mframes(&self) -> f64 {
        self.total_pps() * self.seconds / 1e6
    }

    /// Busy CPU seconds of the whole machine per million delivered frames (generator and
    /// receivers included); `NaN` when nothing was delivered.
    pub fn cpu_per_mframe(&self) -> f64 {
        self.busy.all_s / self.mframes()
    }

    /// [`Sample::cpu_per_mframe`] less what the idle beds used in as long: the cost of the
    /// traffic itself, as far as the machine's other work stayed the same; `NaN` when the idle
    /// window was as busy as the run (the background changed, nothing can be said).
    pub fn net_cpu_per_mframe(&self) -> f64 {
        let net = self.busy.all_s - self.idle_per_s.all_s * self.seconds;
        if net > 0.0 {
            net / self.mframes()
        } else {
            f64::NAN
        }
    }

    /// CPU seconds of the switch's own threads per million delivered frames.
    pub fn switch_threads_per_mframe(&self) -> f64 {
        self.switch_threads_s / self.mframes()
    }

    /// User-space CPU seconds of the switch's own threads per million delivered frames.
    pub fn switch_threads_user_per_mframe(&self) -> f64 {
        self.switch_threads_user_s / self.mframes()
    }

    /// Busy seconds of the switch CPU alone per million delivered frames.
    pub fn switch_cpu_per_mframe(&self) -> f64 {
        self.busy.one_s / self.mframes()
    }

    /// Fraction of the offered frames a member did not get (mean over members).
    pub fn loss(&self) -> f64 {
        if self.offered_pps > 0.0 {
            (1.0 - self.per_member_pps() / self.offered_pps).max(0.0)
        } else {
            0.0
        }
    }
}

/// How a bed is built and placed on the CPUs.
#[derive(Debug, Clone, Copy)]
pub struct BedOptions {
    /// Where the receiving hosts count.
    pub receiver: Receiver,
    /// Nice value of the ingress port's NAPI thread in the xsnoop bed, which shares the switch
    /// CPU with the daemon's worker (the bridge and the ceiling do all their work in that
    /// thread, which runs at [`pin::BENCH_NICE`]).
    pub xsnoop_ingress_nice: i32,
    /// Run the xsnoop worker thread (`xsnoop-asic`) SCHED_FIFO 1 (`worker_realtime = true` in
    /// its config).
    pub xsnoop_worker_fifo: bool,
    /// Run xsnoop's control thread (the process's main thread: engine, kernel sync) SCHED_FIFO
    /// 2, above the worker (`control_realtime = true`): its IGMP work is bounded by the punt
    /// policer (its kernel syncs are not: a VLAN-wide change at 100k groups is ~0.13 s, which
    /// is why the daemon leaves it off by default), and under a SCHED_FIFO worker and the
    /// ingress NAPI thread on the same CPU it otherwise waits for both (a report flood filled
    /// its punt queue; a join waited behind the stream's NAPI runs).
    pub xsnoop_control_fifo: bool,
    /// xsnoop's `max_groups` and a 600 s query interval, for the table-scale beds (`None`:
    /// the daemon's default of 4096 groups, which bounds what a report flood can add, and 30 s).
    pub max_groups: Option<usize>,
}

/// A running testbed with one switch under test.
#[derive(Debug)]
pub struct Bed {
    /// The switch under test.
    pub kind: SwitchKind,
    /// Number of member hosts.
    pub members: usize,
    switch: Switch,
    // Hosts 2..=N+3: members, non-member, flooder.
    counters: Vec<Counter>,
    // Owns the program `gen_fd` refers to and its loopback anchor.
    _gen: GenProgram,
    gen_fd: RawFd,
    sender_ifindex: u32,
    // The report flood from host N+3: its program (anchored on that host's loopback), the
    // program's fd, the interface and the template report.
    _flood_gen: GenProgram,
    flood_fd: RawFd,
    flood_ifindex: u32,
    flood_frame: Vec<u8>,
    net: u8,
    /// NAPI threads pinned, for the setup notes: (interface, thread ids, cpu, nice).
    pub napi: Vec<(String, Vec<i32>, usize, i32)>,
    // Last: the namespaces go after everything living in them.
    star: Star,
}

fn ethtool(ns: &Netns, args: &[&str]) -> Result<()> {
    let mut full = vec!["netns", "exec", ns.name(), "ethtool"];
    full.extend_from_slice(args);
    xsnoop_tests::cmd::run("ip", &full)
        .map(|_| ())
        .with_context(|| format!("ethtool {}", args.join(" ")))
}

fn join_all(star: &Star, hosts: std::ops::RangeInclusive<usize>) -> Result<Vec<Membership>> {
    hosts
        .map(|i| {
            Membership::join(star.host(i)?, &star.host_if(i)?, GROUP, 0)
                .with_context(|| format!("host {i} joining {GROUP}"))
        })
        .collect()
}

/// The xsnoop config for a bed: the dataplane mode written out (never the daemon's default),
/// every port an access port in VLAN 1, querier on with timers long enough that nothing expires
/// during a measurement. `fast_leave` names the non-member's port (where the latency benchmark
/// joins and leaves), which has fast leave on like the bridge's. The worker and control thread
/// classes are the daemon's own keys (`worker_realtime`, `control_realtime`).
fn xsnoop_config(
    net: u8,
    dataplane: &str,
    ports: &[String],
    fast_leave: &str,
    opts: &BedOptions,
) -> String {
    let mut s = format!(
        "dataplane = \"{dataplane}\"\nworker_realtime = {}\ncontrol_realtime = {}\n[snooping]\nquerier = true\n\
         querier_address = \"10.{net}.0.254\"\n\
         query_interval = \"30s\"\nquery_response_interval = \"5s\"\n",
        opts.xsnoop_worker_fifo, opts.xsnoop_control_fifo
    );
    for p in ports {
        s.push_str(&format!("[[port]]\nname = \"{p}\"\n"));
        if p == fast_leave {
            s.push_str("fast_leave = true\n");
        }
    }
    s
}

/// Bytes counted at each receiving host.
fn read_all(counters: &[Counter]) -> Result<Vec<Counts>> {
    counters
        .iter()
        .map(|c| c.read().map_err(anyhow::Error::from))
        .collect()
}

/// Kernel interface counters of one namespace (`ip -s -j link show`), by interface name.
fn link_stats(ns: &Netns) -> Result<Vec<(String, serde_json::Value)>> {
    let out = ns.ip(&["-s", "-j", "link", "show"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -s -j link show")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| Some((l["ifname"].as_str()?.to_owned(), l["stats64"].clone())))
        .collect())
}

/// Counter `dir`.`what` (e.g. `rx`.`packets`) of `iface` in `stats`.
fn stat(stats: &[(String, serde_json::Value)], iface: &str, dir: &str, what: &str) -> Result<u64> {
    stats
        .iter()
        .find(|(n, _)| n == iface)
        .and_then(|(_, s)| s[dir][what].as_u64())
        .ok_or_else(|| anyhow!("no {dir}.{what} counter for {iface}"))
}

/// What the kernel counted on the switch's ports: frames the ingress port received, and frames
/// dropped on the way to the member hosts (the member ports' tx_dropped: a full veth ring on
/// the receiving side, i.e. a receiver that could not keep up).
#[derive(Debug, Clone, Copy)]
struct PortCounts {
    ingress_rx: u64,
    member_drops: u64,
}

impl Bed {
    /// The ingress port's rx and the tx drops of the ports `delivery` counts.
    fn port_counts(&self, delivery: Delivery) -> Result<PortCounts> {
        let stats = link_stats(self.star.switch()?)?;
        let mut member_drops = 0;
        let last = match delivery {
            Delivery::Members => self.members + 1,
            Delivery::Everyone => self.members + 3,
            Delivery::Host2 => 2,
        };
        for i in 2..=last {
            member_drops += stat(&stats, &self.star.port(i)?, "tx", "dropped")?;
        }
        Ok(PortCounts {
            ingress_rx: stat(&stats, &self.star.port(1)?, "rx", "packets")?,
            member_drops,
        })
    }
}

impl Bed {
    /// Builds the testbed for `kind` with `members` member hosts on subnet `10.net.0.0/24`,
    /// starts the switch, waits until it has learned the members, attaches the counters and
    /// places the work on the CPUs (see [`crate::pin`]).
    pub fn new(kind: SwitchKind, members: usize, net: u8, opts: &BedOptions) -> Result<Bed> {
        let receiver = opts.receiver;
        if members == 0 {
            bail!("a bed needs at least one member");
        }
        // Sender, members, non-member, flooder.
        let hosts = members + 3;
        let star = Star::new(net, &vec![2u8; hosts]).context("building the namespaces")?;
        let sw = star.switch()?;
        let ports: Vec<String> = (1..=hosts)
            .map(|i| star.port(i))
            .collect::<Result<_, _>>()?;
        let member_ports = ports.get(1..=members).unwrap_or_default().to_vec();
        let ingress = ports.first().cloned().context("no sender port")?;
        let nonmember_port = star.port(members + 2)?;
        let flood_port = star.port(hosts)?;
        // Forwarded skbs must go through the receivers' NAPI, not skip it as GSO super-frames.
        for p in &ports {
            ethtool(sw, &["-K", p, "tso", "off", "gso", "off"])?;
        }

        let mut gen = GenProgram::load()?;
        let h1 = star.host(1)?;
        h1.run(|| gen.anchor_on_loopback())??;
        let sender_if = star.host_if(1)?;
        let sender_ifindex = h1.run(|| xsnoop_tests::sock::ifindex(&sender_if))??;
        let gen_fd = gen.raw_fd()?;

        let mut flood_gen = GenProgram::load_flood()?;
        let hf = star.host(hosts)?;
        hf.run(|| flood_gen.anchor_on_loopback())??;
        let flood_if = star.host_if(hosts)?;
        let flood_ifindex = hf.run(|| xsnoop_tests::sock::ifindex(&flood_if))??;
        let flood_fd = flood_gen.raw_fd()?;
        let flood_frame = crate::flood::template(
            [0x02, 0xf1, 0x00, 0x00, net, 0x01],
            Ipv4Addr::new(10, net, 0, u8::try_from(hosts).unwrap_or(250)),
        )?;

        let switch = match kind {
            SwitchKind::XsnoopAfxdp | SwitchKind::XsnoopXdp => {
                let mode = kind.dataplane().unwrap_or("afxdp");
                let mut config = xsnoop_config(net, mode, &ports, &nonmember_port, opts);
                if let Some(max) = opts.max_groups {
                    // Injected joins have no host behind them to answer queries: a long
                    // interval keeps them for the whole benchmark.
                    config = config
                        .replacen(
                            "[snooping]\n",
                            &format!("[snooping]\nmax_groups = {max}\n"),
                            1,
                        )
                        .replacen("query_interval = \"30s\"", "query_interval = \"600s\"", 1);
                }
                let daemon = daemon::start(sw, star.topo.prefix(), &config)?;
                daemon::check_mode(&daemon, mode)?;
                let joins = join_all(&star, 2..=members + 1)?;
                daemon::wait_members(&daemon, GROUP, &member_ports, Duration::from_secs(10))?;
                // The daemon applies the classes itself (`worker_realtime`,
                // `control_realtime`) and only warns when refused: check they hold.
                let pid = daemon.pid().context("xsnoop run has no pid")?;
                let workers = pin::threads_named(pid, "xsnoop-asic");
                if workers.is_empty() {
                    bail!("no xsnoop-asic thread in xsnoop run (pid {pid})");
                }
                let want = |fifo: bool, prio: i32| {
                    if fifo {
                        (libc::SCHED_FIFO, prio)
                    } else {
                        (libc::SCHED_OTHER, 0)
                    }
                };
                // The main thread runs the CPU loop (its tid is the pid).
                let threads = workers
                    .iter()
                    .map(|&t| (t, want(opts.xsnoop_worker_fifo, 1)))
                    .chain([(pid, want(opts.xsnoop_control_fifo, 2))]);
                for (tid, expected) in threads {
                    let got = pin::policy(tid)?;
                    if got != expected {
                        bail!(
                            "xsnoop run (pid {pid}) thread {tid}: scheduling policy/priority \
                             {got:?}, its config asked for {expected:?} (see its log)"
                        );
                    }
                }
                Switch::Xsnoop {
                    daemon,
                    _joins: joins,
                }
            }
            SwitchKind::Bridge => {
                // The live-frames generator transmits with ndo_xdp_xmit, which a veth accepts
                // only when its peer has NAPI: GRO on gives the bridge's ingress port NAPI
                // without an XDP program (which would copy every frame).
                ethtool(sw, &["-K", &ingress, "gro", "on"])?;
                ethtool(sw, &["-K", &flood_port, "gro", "on"])?;
                let cfg = BridgeConfig {
                    querier: true,
                    igmp_version: Some(2),
                    query_interval: Some(Duration::from_secs(30)),
                    query_response_interval: Some(Duration::from_secs(1)),
                    startup_query_interval: Some(Duration::from_secs(1)),
                    ..BridgeConfig::default()
                };
                let mut bports: Vec<BridgePort> =
                    ports.iter().map(|p| BridgePort::new(p)).collect();
                // The non-member's port: the latency benchmark's joins and fast leaves.
                for p in bports.iter_mut().filter(|p| p.name == nonmember_port) {
                    p.fast_leave = true;
                }
                let bridge = Bridge::create(sw, "benchbr", &cfg, &bports)?;
                let joins = join_all(&star, 2..=members + 1)?;
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let mdb = bridge.mdb()?;
                    let learned = member_ports
                        .iter()
                        .all(|p| mdb.iter().any(|e| &e.port == p && e.group == GROUP));
                    if learned {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("the bridge never learned {GROUP} on {member_ports:?}: {mdb:?}");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Switch::Bridge {
                    bridge,
                    _joins: joins,
                }
            }
            SwitchKind::Ceiling => {
                // The flood's frames need NAPI on the port to be accepted (and then die in the
                // switch namespace's stack: the ceiling has no control plane).
                ethtool(sw, &["-K", &flood_port, "gro", "on"])?;
                let mut ceiling = Ceiling::load()?;
                sw.run(|| -> Result<()> {
                    let index = |names: &[String]| {
                        names
                            .iter()
                            .map(|p| xsnoop_tests::sock::ifindex(p))
                            .collect::<Result<Vec<u32>, _>>()
                    };
                    ceiling.set_members(&index(&member_ports)?)?;
                    ceiling.set_everyone(&index(ports.get(1..).unwrap_or_default())?)?;
                    ceiling.attach(&ingress)?;
                    Ok(())
                })??;
                Switch::Ceiling { _ceiling: ceiling }
            }
            SwitchKind::AfxdpC => {
                // As for the ceiling: the flood's frames need NAPI on their port.
                ethtool(sw, &["-K", &flood_port, "gro", "on"])?;
                let bin = cfwd::locate()?;
                // The ceiling's three devmaps: the members, the first member for unicast,
                // every port but the sender's for broadcast.
                let egress = cfwd::Egress {
                    multicast: member_ports.clone(),
                    unicast: member_ports.iter().take(1).cloned().collect(),
                    broadcast: ports.get(1..).unwrap_or_default().to_vec(),
                };
                let args = cfwd::args(&ingress, &egress, &cfwd::program_of(&bin));
                let fwd = Forwarder::start(sw, &bin, &args)?;
                if opts.xsnoop_worker_fifo {
                    // The scheduling xsnoop's AF_XDP worker gets (`--xsnoop-worker`).
                    pin::fifo(fwd.pid(), 1)?;
                }
                Switch::AfxdpC { fwd }
            }
        };

        let mut counters = Vec::new();
        for i in 2..=hosts {
            let mut c = Counter::load(receiver)?;
            let (host, iface) = (star.host(i)?, star.host_if(i)?);
            if receiver == Receiver::Tc {
                // NAPI for the receiving veth without an XDP program: needed to accept the
                // ceiling's XDP-transmitted frames and to make its NAPI threaded.
                ethtool(host, &["-K", &iface, "gro", "on"])?;
            }
            host.run(|| c.attach(&iface))??;
            counters.push(c);
        }

        let mut napi = Vec::new();
        let ingress_nice = if kind.is_xsnoop() || kind.is_afxdp() {
            opts.xsnoop_ingress_nice
        } else {
            pin::BENCH_NICE
        };
        // The flood arrives on the switch CPU too: the switch pays for what it must parse.
        for port in [&ingress, &flood_port] {
            let t = pin::threaded_napi_on(sw, port, SWITCH_CPU, ingress_nice)?;
            napi.push((port.clone(), t, SWITCH_CPU, ingress_nice));
        }
        for i in 2..=hosts {
            let iface = star.host_if(i)?;
            let t = pin::threaded_napi_on(star.host(i)?, &iface, HOST_CPU, pin::BENCH_NICE)?;
            napi.push((iface, t, HOST_CPU, pin::BENCH_NICE));
        }

        Ok(Bed {
            kind,
            members,
            switch,
            counters,
            _gen: gen,
            gen_fd,
            _flood_gen: flood_gen,
            flood_fd,
            flood_ifindex,
            flood_frame,
            net,
            sender_ifindex,
            napi,
            star,
        })
    }

    /// Runs the generator for `duration` from the sender host, on the host CPU.
    fn generate(&self, frame: &[u8], duration: Duration) -> Result<LiveRun> {
        let (fd, ifindex) = (self.gen_fd, self.sender_ifindex);
        let run = self.star.host(1)?.run(|| -> Result<LiveRun> {
            pin::pin(0, HOST_CPU)?;
            pin::nice_current_thread(pin::GEN_NICE)?;
            Ok(run_live(fd, ifindex, frame, duration)?)
        })??;
        Ok(run)
    }

    /// One measurement: generator for `duration` (with the report flood from host N+3 alongside
    /// when `flood` is given), then a short pause for frames in flight, and the counters'
    /// deltas as rates over the generator's run time; the busy CPU time is taken over the
    /// generator's run. `idle_per_s` is left zero for the caller's baseline.
    pub fn sample_with(
        &self,
        frame: &[u8],
        duration: Duration,
        delivery: Delivery,
        flood: Option<FloodPlan>,
    ) -> Result<Sample> {
        let before = read_all(&self.counters)?;
        let p0 = self.port_counts(delivery)?;
        let tids = self.switch_tids();
        let t0 = cpu::task_ticks(&tids);
        let c0 = cpu::snapshot(SWITCH_CPU)?;
        let (run, flood_run) = match flood {
            None => (self.generate(frame, duration)?, None),
            Some(plan) => {
                let stop = AtomicBool::new(false);
                std::thread::scope(|sc| -> Result<(LiveRun, Option<FloodRun>)> {
                    let flooder = sc.spawn(|| self.flood(plan, duration * 2, &stop));
                    let run = self.generate(frame, duration);
                    stop.store(true, Ordering::Relaxed);
                    let flooded = flooder
                        .join()
                        .map_err(|_| anyhow!("the flood thread panicked"))??;
                    Ok((run?, Some(flooded)))
                })?
            }
        };
        let c1 = cpu::snapshot(SWITCH_CPU)?;
        let t1 = cpu::task_ticks(&tids);
        std::thread::sleep(Duration::from_millis(150));
        let after = read_all(&self.counters)?;
        let p1 = self.port_counts(delivery)?;
        let secs = run.elapsed.as_secs_f64().max(1e-9);
        let deltas: Vec<Counts> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.since(*b))
            .collect();
        let counted = match delivery {
            Delivery::Members => self.members,
            Delivery::Everyone => deltas.len(),
            Delivery::Host2 => 1,
        };
        let member_pps = deltas
            .iter()
            .take(counted)
            .map(|c| c.frames as f64 / secs)
            .collect();
        let leaked = match delivery {
            Delivery::Members => deltas.get(self.members).map_or(0, |c| c.frames),
            Delivery::Everyone => 0,
            Delivery::Host2 => deltas.iter().skip(1).map(|c| c.frames).sum(),
        };
        let threads = cpu::tasks_busy_s(&t0, &t1)?;
        Ok(Sample {
            offered_pps: run.rate(),
            port_rx_pps: p1.ingress_rx.saturating_sub(p0.ingress_rx) as f64 / secs,
            member_drop_pps: p1.member_drops.saturating_sub(p0.member_drops) as f64 / secs,
            member_pps,
            leaked,
            seconds: secs,
            busy: cpu::busy_between(c0, c1)?,
            idle_per_s: cpu::Busy::default(),
            flood: flood_run,
            switch_threads_s: threads.total_s(),
            switch_threads_user_s: threads.user_s,
        })
    }

    /// The switch's own threads: the NAPI threads pinned to the switch CPU and, for xsnoop and
    /// the C forwarder, every thread of the process.
    fn switch_tids(&self) -> Vec<libc::pid_t> {
        let mut tids: Vec<libc::pid_t> = self
            .napi
            .iter()
            .filter(|(_, _, cpu, _)| *cpu == SWITCH_CPU)
            .flat_map(|(_, t, _, _)| t.iter().copied())
            .collect();
        if let Some(pid) = self.xsnoop_pid() {
            tids.extend(cpu::tasks_of(pid));
        }
        if let Switch::AfxdpC { fwd } = &self.switch {
            tids.extend(cpu::tasks_of(fwd.pid()));
        }
        tids
    }

    /// The report flood from host N+3 until `stop` is set (at most `limit`), on the host CPU.
    fn flood(&self, plan: FloodPlan, limit: Duration, stop: &AtomicBool) -> Result<FloodRun> {
        let (fd, ifindex, frame) = (self.flood_fd, self.flood_ifindex, &self.flood_frame);
        let host = self.star.host(self.members + 3)?;
        let run = host.run(|| -> Result<FloodRun> {
            pin::pin(0, HOST_CPU)?;
            pin::nice_current_thread(pin::GEN_NICE)?;
            Ok(crate::flood::run(fd, ifindex, frame, plan, limit, stop)?)
        })??;
        Ok(run)
    }

    /// Waits until the switch delivers to every member and nothing to the non-member (the
    /// bridge floods until its own querier counts as present), probing with short bursts.
    /// Returns how long that took; an error if it never happened within `timeout`.
    pub fn settle(&self, timeout: Duration) -> Result<Duration> {
        let frame = test_frame(64, Ipv4Addr::new(10, 0, 0, 1), GROUP)?;
        self.settle_with(&frame, Delivery::Members, timeout)
    }

    /// [`Bed::settle`] with `frame` as the probe, delivered as `delivery` says.
    pub fn settle_with(
        &self,
        frame: &[u8],
        delivery: Delivery,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let s = self.sample_with(frame, Duration::from_millis(200), delivery, None)?;
            if s.leaked == 0 && s.member_pps.iter().all(|r| *r > 0.0) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} with {} members never settled: members got {:?} fps, non-member {} frames{}",
                    self.kind.label(),
                    self.members,
                    s.member_pps,
                    s.leaked,
                    self.switch_log()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The 64 B unicast frame from host 1 to host 2 (its real MAC and address). Host 2 first
    /// sends a datagram to host 1, so the switch has seen both MACs (ARP) and forwards to host 2
    /// alone rather than flooding an unknown unicast destination.
    pub fn unicast_frame(&self) -> Result<Vec<u8>> {
        let (h2, if2) = (self.star.host(2)?, self.star.host_if(2)?);
        let out = h2.ip(&["-j", "link", "show", "dev", &if2])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("ip -j link show")?;
        let mac_text = v[0]["address"].as_str().unwrap_or_default().to_owned();
        let bytes: Vec<u8> = mac_text
            .split(':')
            .filter_map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        let mac: [u8; 6] = bytes
            .try_into()
            .map_err(|_| anyhow!("cannot read the MAC of {if2}: {out}"))?;
        let h1_addr = Ipv4Addr::new(10, self.net, 0, 1);
        let h2_addr = Ipv4Addr::new(10, self.net, 0, 2);
        h2.run(|| -> std::io::Result<()> {
            let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
            for _ in 0..3 {
                s.send_to(b"xsnoop-bench", (h1_addr, 9))?;
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        })?
        .context("host 2 priming the switch's FDB")?;
        Ok(test_unicast_frame(64, h1_addr, h2_addr, mac)?)
    }

    /// The 64 B broadcast frame from host 1 (to ff:ff:ff:ff:ff:ff and the subnet's broadcast
    /// address, UDP to the benchmark port), which every other host counts.
    pub fn broadcast_frame(&self) -> Result<Vec<u8>> {
        Ok(test_unicast_frame(
            64,
            Ipv4Addr::new(10, self.net, 0, 1),
            Ipv4Addr::new(10, self.net, 0, 255),
            [0xff; 6],
        )?)
    }

    /// What became of the switch's control plane after a report flood, in words: for xsnoop
    /// whether it still answers, its groups and its policer's counts; for the bridge its MDB
    /// size and whether snooping is still on (the kernel turns it off when the MDB overflows
    /// `hash_max`).
    pub fn control_plane_after_flood(&self) -> Result<String> {
        match &self.switch {
            Switch::Xsnoop { daemon, .. } => {
                let alive = daemon
                    .pid()
                    .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                let Some(stats) = daemon.show("stats") else {
                    return Ok(format!(
                        "**no answer** to `xsnoop stats` (process {})",
                        if alive { "alive" } else { "gone" }
                    ));
                };
                let groups = daemon
                    .show("mdb")
                    .and_then(|m| m.as_array().map(Vec::len))
                    .unwrap_or(0);
                let n = |k: &str| stats["dataplane"][k].as_u64().unwrap_or(0);
                Ok(format!(
                    "answers; {groups} MDB rows; {} reports policed, {} punted to the engine, \
                     punt queue full {}",
                    n("punt_policed"),
                    n("punted"),
                    n("punt_queue_full")
                ))
            }
            Switch::Bridge { bridge, .. } => {
                let rows = bridge.mdb().map_or(0, |m| m.len());
                let out = self
                    .star
                    .switch()?
                    .ip(&["-j", "-d", "link", "show", "benchbr"])?;
                let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                let snooping = &v[0]["linkinfo"]["info_data"]["mcast_snooping"];
                Ok(format!("{rows} MDB rows; mcast_snooping = {snooping}"))
            }
            Switch::Ceiling { .. } | Switch::AfxdpC { .. } => Ok("no control plane".to_owned()),
        }
    }

    /// The namespaces and veths of this bed (for the latency taps).
    pub fn star(&self) -> &Star {
        &self.star
    }

    /// The `xsnoop run` daemon (`None` for other switches).
    pub fn daemon(&self) -> Option<&Daemon> {
        match &self.switch {
            Switch::Xsnoop { daemon, .. } => Some(daemon),
            _ => None,
        }
    }

    /// The bed's subnet: 10.net.0.0/24.
    pub fn net(&self) -> u8 {
        self.net
    }

    /// The pid of `xsnoop run` (`None` for other switches), for RSS and perf.
    pub fn xsnoop_pid(&self) -> Option<libc::pid_t> {
        match &self.switch {
            Switch::Xsnoop { daemon, .. } => daemon.pid(),
            _ => None,
        }
    }

    /// `xsnoop stats` dataplane counters (`None` for other switches).
    pub fn xsnoop_stats(&self) -> Option<serde_json::Value> {
        match &self.switch {
            Switch::Xsnoop { daemon, .. } => daemon::dataplane_stats(daemon),
            _ => None,
        }
    }

    /// The daemon's log and counters, for error messages (empty for other switches).
    fn switch_log(&self) -> String {
        match &self.switch {
            Switch::Xsnoop { daemon, .. } => format!(
                "\nxsnoop stats: {}\nxsnoop log:\n{}",
                daemon::dataplane_stats(daemon).unwrap_or_default(),
                daemon.log()
            ),
            Switch::AfxdpC { fwd } => format!("\n{} output:\n{}", cfwd::BINARY, fwd.log()),
            _ => String::new(),
        }
    }
}
