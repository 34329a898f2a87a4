//! `xsnoop`: the switch daemon and its command line.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use xsnoop_control::config_file::SwitchConfig;
use xsnoop_control::ctl::{self, ExplainQuery, Show};
use xsnoop_control::engine::model::Version;
use xsnoop_control::engine::{
    EngineConfig, MdbRow, MrouterMode, PortConfig, PortView, PortVlans, VlanConfig, VlanView,
};
use xsnoop_control::logging::{self, LogFormat};
use xsnoop_control::show;
use xsnoop_control::snoop::SnoopSwitch;
use xsnoop_control::switch::{self, RunOptions, Signals};
use xsnoop_dataplane::afxdp::AfXdpConfig;
use xsnoop_dataplane::xdp::AttachMode;

/// xsnoop — an IGMP-snooping Ethernet switch for Linux (XDP + AF_XDP).
///
/// `xsnoop run` switches frames between interfaces and snoops IGMP so multicast goes only
/// where it is wanted; `xsnoop snoop` runs the snooping engine alone (learning and querying,
/// no forwarding) beside another switch. Show commands read a running daemon's state.
///
/// Start here:  xsnoop check-config docs/xsnoop.example.toml
///              xsnoop run --config my.toml        (as root)
///              xsnoop mdb                         (in another shell)
///              xsnoop events --follow             (watch it learn)
///
/// Runtime changes (`static`, `port set`, `flush`) act on the running daemon only; they are
/// not written to the configuration file.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the switch: forward between ports, multicast only where hosts joined
    ///
    /// Frames are switched between the ports (MACs learned, unknown unicast and broadcast
    /// flooded) and multicast goes only to the ports whose hosts joined the group (IGMP
    /// snooping, RFC 4541), plus multicast-router ports.
    ///
    /// Needs root. Every port gets the XDP classifier and an AF_XDP socket; on SIGINT/SIGTERM the
    /// programs are detached and the interfaces return to the kernel.
    ///
    /// Examples:
    ///   xsnoop run --port swp1 --port swp2 --port swp3 --querier --querier-address 10.0.0.254
    ///   xsnoop run --config /etc/xsnoop.toml --xdp-mode skb
    ///
    /// While it runs, `xsnoop mdb`, `mrouters`, `querier`, `stats` (with a `dataplane` section),
    /// `ports`, `vlans` and `events` show its state, and `xsnoop static`, `port set` and `flush`
    /// change it (until restart; not written to the configuration file).
    ///
    /// Hosts on veth pairs: turn their TX checksum offload off (ethtool -K IF tx off); the
    /// switch forwards frames as they are, and a veth leaves UDP checksums to "the NIC".
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Run the snooping engine alone: learn and query, no forwarding.
    ///
    /// Learns from real IGMP on the interfaces, sends queries as the snooping querier, and
    /// prints the group table whenever it changes (beside another switch, or to watch a LAN).
    ///
    /// Example: xsnoop snoop --port swp1 --port swp2 --querier --querier-address 10.0.0.254
    Snoop(SnoopArgs),
    /// Check a configuration file without touching any interface.
    ///
    /// Prints a summary of ports and VLANs; when the file is wrong, exits non-zero and names
    /// the key, the bad value and the fix.
    CheckConfig {
        /// The TOML file (see docs/xsnoop.example.toml for every key).
        file: PathBuf,
    },
    /// Show the group table: who gets which group, filter mode, time left.
    ///
    /// One row per port-group, and one per source of an IGMPv3 port-group.
    Mdb(ShowArgs),
    /// Show the multicast-router ports (learned from queries, PIM hellos, MRD, or configured).
    Mrouters(ShowArgs),
    /// Show the elected querier of every VLAN, its version and timers.
    Querier(ShowArgs),
    /// Show the counters: IGMP by type and version, drops by reason, limits, dataplane.
    Stats(ShowArgs),
    /// Explain where a multicast data frame would go, and which rule chose the ports.
    ///
    /// Example: xsnoop explain --port swp1 --vlan 10 --source 10.0.0.9 --group 239.1.1.1
    Explain(ExplainArgs),
    /// Show the event journal (joins, leaves, expiries, querier, router and operator changes).
    ///
    /// Without --follow: the most recent events (up to 1024). With --follow: only events from
    /// now on, printed as they happen until Ctrl-C (the daemon is polled every 250 ms with a
    /// sequence number; nothing is held open, so a slow terminal never slows the switch).
    #[command(
        after_help = "Examples:\n  xsnoop events\n  xsnoop events --follow\n  xsnoop events --follow --json | jq 'select(.kind.type == \"leave\")'"
    )]
    Events(EventsArgs),
    /// Show the ports: VLANs, link, fast-leave, router mode, groups, dataplane counters.
    ///
    /// ROUTER-IN lists the VLANs where the port is a multicast-router port right now
    /// (configured or learned); GROUPS counts learned port-groups, STATIC static entries; RX/TX
    /// are the dataplane's frame counters (run mode). A `*` marks a setting changed at runtime.
    #[command(
        after_help = "Examples:\n  xsnoop ports\n  xsnoop ports --json | jq '.[] | select(.link == \"down\")'"
    )]
    Ports(ShowArgs),
    /// Show the MAC learning table: which station sits behind which port, per VLAN.
    ///
    /// Learned from the source addresses of forwarded frames (IEEE 802.1Q independent VLAN
    /// learning); an entry not refreshed for the ageing time (`fdb_ageing`, default 300 s)
    /// ages out, and a port going down forgets its stations. AGE is the time since the station
    /// was last heard; the line under the table says the ageing time. Run mode only.
    #[command(
        after_help = "Examples:\n  xsnoop fdb\n  xsnoop fdb --json | jq '.[] | select(.port == \"swp1\")'"
    )]
    Fdb(ShowArgs),
    /// Show the multicast streams crossing the switch, per (VLAN, group, source).
    ///
    /// Packets and bytes received, time since the last frame, and how the stream is forwarded:
    /// `registered` (to the ports that joined, plus router ports), `unregistered` (nobody
    /// joined: router ports only, RFC 4541 §2.1.2(3)), `link-local` (224.0.0.x: every port),
    /// `snooping-disabled`, `overflow-flood`. Streams silent for 5 minutes are forgotten. Run
    /// mode only.
    #[command(
        after_help = "Examples:\n  xsnoop streams\n  xsnoop streams --json | jq '.streams[] | select(.forwarding == \"mc_unregistered\")'"
    )]
    Streams(ShowArgs),
    /// Show the VLANs: snooping on/off, who is querier, group count, ports, router ports.
    #[command(after_help = "Examples:\n  xsnoop vlans\n  xsnoop vlans --json")]
    Vlans(ShowArgs),
    /// Add or delete static group entries on a running switch.
    ///
    /// A static entry forwards the group to the port whatever IGMP says: it never expires and
    /// is not counted in table limits. Runtime entries are not written to the configuration
    /// file. They survive a reload (SIGHUP) like `bridge mdb add ... permanent` on a Linux
    /// bridge, until `xsnoop static del` or a restart; an entry whose port no longer carries
    /// the VLAN after a reload is dropped (and journalled). Entries from the file are changed
    /// in the file.
    #[command(subcommand, after_help = STATIC_HELP)]
    Static(StaticCmd),
    /// Change a port's settings on a running switch.
    #[command(subcommand, after_help = PORT_HELP)]
    Port(PortCmd),
    /// Forget the learned (dynamic) groups of a port, of a VLAN, or of a port in one VLAN.
    ///
    /// The group table is published at once, so traffic to the flushed ports stops. Static
    /// entries stay. When this switch is the VLAN's querier, a general query goes out on the
    /// flushed ports so hosts that still want a group report it again within the query
    /// response interval (10 s by default); without a querier of ours the groups stay gone
    /// until the hosts' next reports (as after Cisco's `clear ip igmp snooping groups`).
    #[command(
        after_help = "Examples:\n  xsnoop flush --port swp3            # every VLAN of swp3\n  xsnoop flush --vlan 10              # every port of VLAN 10\n  xsnoop flush --port swp3 --vlan 10"
    )]
    Flush(FlushArgs),
}

const STATIC_HELP: &str = "Examples:
  xsnoop static add --vlan 10 --group 239.1.1.1 --port swp2 --port swp3
  xsnoop static add --vlan 10 --group 232.1.1.1 --source 10.0.0.9 --port swp2   # one SSM channel
  xsnoop static del --vlan 10 --group 239.1.1.1 --port swp3

Runtime changes are not saved: put them in the configuration file's [[static_group]] entries
to keep them across restarts. A bad port, VLAN, group or source is refused with a message
naming it, and nothing changes.";

const PORT_HELP: &str = "Examples:
  xsnoop port set swp3 --fast-leave on
  xsnoop port set swp1 --mrouter always
  xsnoop port set swp1 --mrouter auto --fast-leave off

--mrouter: auto (learned from queries, PIM hellos and MRD; aged out), always (configured
router port: receives every group), never (ignore routers heard on it).
Runtime settings are not saved to the configuration file; they survive a reload (SIGHUP),
like `ip link set ... type bridge_slave mcast_router 2`, until changed again or a restart.
Setting the file's own value returns the port to following the file. `xsnoop ports` marks
runtime settings with *.";

#[derive(Args)]
struct EventsArgs {
    /// Keep printing new events as they happen, until Ctrl-C.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Subcommand)]
enum StaticCmd {
    /// Join ports to a group permanently (for every source, or only the --source ones).
    #[command(after_help = STATIC_HELP)]
    Add(StaticArgs),
    /// Remove a runtime static entry from ports.
    #[command(after_help = STATIC_HELP)]
    Del(StaticDelArgs),
}

#[derive(Args)]
struct StaticArgs {
    /// The VLAN of the entry.
    #[arg(long, default_value_t = 1)]
    vlan: u16,
    /// The multicast group (not in 224.0.0.0/24, which is always flooded).
    #[arg(long)]
    group: Ipv4Addr,
    /// Only this source (repeatable): a static INCLUDE list, e.g. an SSM channel.
    #[arg(long = "source", value_name = "S")]
    sources: Vec<Ipv4Addr>,
    /// A port that receives the group (repeatable; at least one).
    #[arg(long = "port", value_name = "IF", required = true)]
    ports: Vec<String>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
struct StaticDelArgs {
    /// The VLAN of the entry.
    #[arg(long, default_value_t = 1)]
    vlan: u16,
    /// The group.
    #[arg(long)]
    group: Ipv4Addr,
    /// A port whose entry goes (repeatable; at least one).
    #[arg(long = "port", value_name = "IF", required = true)]
    ports: Vec<String>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Subcommand)]
enum PortCmd {
    /// Set fast-leave and/or the multicast-router mode of a port.
    #[command(after_help = PORT_HELP)]
    Set(PortSetArgs),
}

/// `on` / `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// The `--mrouter` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum MrouterArg {
    /// Learned from queries, PIM hellos and MRD advertisements; aged out.
    Auto,
    /// Always a router port: receives every group.
    Always,
    /// Never a router port, whatever is heard on it.
    Never,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["fast_leave", "mrouter"]))]
struct PortSetArgs {
    /// The port (interface name).
    port: String,
    /// Leaves take effect at once: for ports with a single host behind them.
    #[arg(long, value_enum)]
    fast_leave: Option<OnOff>,
    /// Multicast-router mode.
    #[arg(long, value_enum)]
    mrouter: Option<MrouterArg>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).multiple(true).args(["port", "vlan"]))]
struct FlushArgs {
    /// Only this port.
    #[arg(long, value_name = "IF")]
    port: Option<String>,
    /// Only this VLAN.
    #[arg(long)]
    vlan: Option<u16>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
struct ExplainArgs {
    /// The port the frame arrives on.
    #[arg(long)]
    port: String,
    /// Its VLAN.
    #[arg(long, default_value_t = 1)]
    vlan: u16,
    /// Its IPv4 source (the S of (S,G)).
    #[arg(long)]
    source: Ipv4Addr,
    /// Its destination group.
    #[arg(long)]
    group: Ipv4Addr,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
struct ShowArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The running daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = ctl::DEFAULT_SOCKET)]
    control_socket: PathBuf,
}

/// What both daemons (`run`, `snoop`) take: a configuration file, or the quick form (access
/// ports in VLAN 1), plus the control socket and an optional duration.
#[derive(Args)]
struct SwitchArgs {
    /// Take ports, VLANs (access and trunk ports) and timers from this configuration file
    /// instead of the flags below (`xsnoop check-config FILE` validates it).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ports", "querier", "fast_leave", "mrouter"])]
    config: Option<PathBuf>,
    /// A switch port (Linux interface name); repeat for each port. All are access ports in VLAN 1.
    #[arg(long = "port", value_name = "IF", required_unless_present = "config")]
    ports: Vec<String>,
    /// Act as the snooping querier (general queries, group-specific queries on leave).
    #[arg(long)]
    querier: bool,
    /// Source address of our queries; 0.0.0.0 sends proxy queries that never win an election.
    #[arg(long, default_value = "0.0.0.0")]
    querier_address: Ipv4Addr,
    /// Version of the queries we send (2 or 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    igmp_version: u8,
    /// Ports with a single host behind them: leaves take effect at once. Repeatable.
    #[arg(long = "fast-leave", value_name = "IF")]
    fast_leave: Vec<String>,
    /// Ports that are always multicast-router ports. Repeatable.
    #[arg(long = "mrouter", value_name = "IF")]
    mrouter: Vec<String>,
    /// Where show commands (`xsnoop mdb` ...) reach this daemon.
    #[arg(long, value_name = "PATH", default_value = ctl::DEFAULT_SOCKET)]
    control_socket: PathBuf,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
}

impl SwitchArgs {
    /// The configuration file's, or the quick form's: every `--port` an access port in VLAN 1.
    fn config(&self) -> Result<SwitchConfig> {
        if let Some(path) = &self.config {
            return Ok(SwitchConfig::load(path)?);
        }
        for name in self.fast_leave.iter().chain(&self.mrouter) {
            if !self.ports.contains(name) {
                bail!("{name} is not one of the --port interfaces");
            }
        }
        let mut vlan = VlanConfig::new(1);
        vlan.querier = self.querier;
        vlan.querier_address = self.querier_address;
        vlan.igmp_version = if self.igmp_version == 2 {
            Version::V2
        } else {
            Version::V3
        };
        let engine = EngineConfig {
            ports: self
                .ports
                .iter()
                .map(|name| {
                    let mut p = PortConfig::access(name, 1);
                    p.fast_leave = self.fast_leave.contains(name);
                    if self.mrouter.contains(name) {
                        p.mrouter = MrouterMode::Always;
                    }
                    p
                })
                .collect(),
            vlans: vec![vlan],
            ..EngineConfig::default()
        };
        let n = engine.ports.len();
        Ok(SwitchConfig {
            native_vlans: vec![None; n],
            engine,
            metrics_listen: None,
            workers: 1,
            punt_limits: vec![xsnoop_control::config_file::DEFAULT_PUNT_LIMIT; n],
            placement: Default::default(),
            dataplane: Default::default(),
            xdp_mode: None,
            static_fdb: Vec::new(),
            fdb_ageing: xsnoop_control::config_file::DEFAULT_FDB_AGEING,
        })
    }

    fn duration(&self) -> Option<Duration> {
        self.duration.map(Duration::from_secs_f64)
    }
}

#[derive(Args)]
struct SnoopArgs {
    #[command(flatten)]
    switch: SwitchArgs,
    /// Print the table as JSON lines instead of a human table.
    #[arg(long)]
    json: bool,
}

/// How the XDP classifier is attached (the `--xdp-mode` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum XdpModeArg {
    /// Driver XDP, falling back to generic per interface when the driver lacks it.
    Auto,
    /// Driver (native) XDP only: fastest; fails on drivers without XDP support.
    Native,
    /// Generic (skb) XDP: works on every interface, slower.
    Skb,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    switch: SwitchArgs,
    /// How to attach the XDP classifier (overrides `xdp_mode` in the file; default auto).
    #[arg(long, value_enum)]
    xdp_mode: Option<XdpModeArg>,
    /// Forwarding threads (overrides `workers` in the config file; default 1). Worker w
    /// serves receive queue q of every port when q % N == w, so every port needs at least N
    /// queues (`ethtool -L IF combined N`).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Where registered multicast, known unicast and broadcast are replicated: `auto` (the
    /// default: in the kernel in every VLAN whose ports all accept XDP redirects, by the
    /// AF_XDP workers elsewhere; a veth accepts them while its peer has GRO on or an XDP
    /// program), `xdp` (in the kernel in every VLAN) or `afxdp` (everything through the AF_XDP
    /// workers). IGMP and unknown stations always reach the workers. `xsnoop stats` shows the
    /// choice under dataplane.kernel_path. Overrides `dataplane` in the file.
    #[arg(long, value_name = "MODE")]
    dataplane: Option<switch::kernel_path::DataplaneMode>,
}

static SIGNALS: Signals = Signals::new();

extern "C" fn on_stop(_: libc::c_int) {
    SIGNALS.stop.store(true, Ordering::Relaxed);
}

extern "C" fn on_reload(_: libc::c_int) {
    SIGNALS.reload.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM stop the daemon cleanly; SIGHUP reloads its configuration file.
fn install_signal_handlers() {
    let handlers: [(libc::c_int, extern "C" fn(libc::c_int)); 3] = [
        (libc::SIGINT, on_stop),
        (libc::SIGTERM, on_stop),
        (libc::SIGHUP, on_reload),
    ];
    for (sig, handler) in handlers {
        // SAFETY: the handlers only store to atomics, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

fn run(a: &RunArgs) -> Result<()> {
    let mut config = a.switch.config()?;
    if let Some(n) = a.workers {
        if n == 0 || n > xsnoop_control::config_file::MAX_WORKERS {
            anyhow::bail!(
                "--workers {n}: the number of forwarding threads must be 1 to {}",
                xsnoop_control::config_file::MAX_WORKERS
            );
        }
        config.workers = n;
    }
    // The command line overrides the file, which overrides the defaults.
    let xdp_mode = match a.xdp_mode {
        Some(XdpModeArg::Auto) => AttachMode::NativeOrSkb,
        Some(XdpModeArg::Native) => AttachMode::Native,
        Some(XdpModeArg::Skb) => AttachMode::Skb,
        None => config.xdp_mode.unwrap_or(AttachMode::NativeOrSkb),
    };
    let dataplane = a.dataplane.unwrap_or(config.dataplane);
    install_signal_handlers();
    let opts = RunOptions {
        config,
        xdp_mode,
        dataplane,
        control_socket: Some(a.switch.control_socket.clone()),
        afxdp: AfXdpConfig::default(),
        duration: a.switch.duration(),
        config_path: a.switch.config.clone(),
    };
    switch::run(opts, &SIGNALS)?;
    Ok(())
}

fn snoop(a: &SnoopArgs) -> Result<()> {
    let config = a.switch.config()?;
    let mut sw = SnoopSwitch::open(config.engine)?;
    sw.listen(&a.switch.control_socket)?;
    if let Some(addr) = config.metrics_listen {
        sw.listen_metrics(addr)?;
    }
    install_signal_handlers();
    tracing::info!(ports = ?a.switch.ports, querier = a.switch.querier, "snooping");
    let stop_at = a.switch.duration();
    while !SIGNALS.stop.load(Ordering::Relaxed) && stop_at.is_none_or(|d| sw.now() < d) {
        if SIGNALS.reload.swap(false, Ordering::Relaxed) {
            match &a.switch.config {
                Some(path) => match SwitchConfig::load(path)
                    .map_err(anyhow::Error::from)
                    .and_then(|c| sw.reconfigure(c.engine))
                {
                    Ok(()) => tracing::info!(file = %path.display(), "configuration reloaded"),
                    Err(e) => {
                        // A refused file never reached reconfigure(), which brackets itself:
                        // tell systemd the reload happened (and changed nothing).
                        xsnoop_control::notify::reloading();
                        tracing::warn!(error = %format!("{e:#}"), "reload refused; the running configuration stays");
                        xsnoop_control::notify::ready("snooping (reload refused)");
                    }
                },
                None => tracing::warn!("SIGHUP: started without --config, nothing to reload"),
            }
        }
        let outputs = sw.step(Duration::from_millis(200))?;
        if outputs.iter().any(|o| o.table_changed) {
            let rows = sw.engine().mdb(sw.now());
            if a.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                print!("{}", show::mdb(&rows));
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn check_config(file: &Path) -> Result<()> {
    let c = SwitchConfig::load(file)?;
    println!("{}: ok", file.display());
    let rows: Vec<Vec<String>> = c
        .engine
        .ports
        .iter()
        .zip(&c.native_vlans)
        .map(|(p, native)| {
            let vlans = match &p.vlans {
                PortVlans::Access(v) => format!("access {v}"),
                PortVlans::Trunk(list) => format!(
                    "trunk {list:?}{}",
                    native.map_or_else(String::new, |n| format!(" native {n}"))
                ),
            };
            let mut flags = Vec::new();
            if p.fast_leave {
                flags.push("fast-leave".to_string());
            }
            if p.mrouter != MrouterMode::Auto {
                flags.push(format!("mrouter={:?}", p.mrouter).to_lowercase());
            }
            if p.flood_reports {
                flags.push("flood-reports".into());
            }
            if p.flood_unregistered {
                flags.push("flood-unregistered".into());
            }
            vec![p.name.clone(), vlans, flags.join(",")]
        })
        .collect();
    print!("{}", show::table(&["PORT", "VLANS", "FLAGS"], &rows));
    for v in &c.engine.vlans {
        let t = &v.timers;
        println!(
            "VLAN {}: querier {} (address {}, IGMPv{}), GMI {:?}, LMQT {:?}",
            v.id,
            if v.querier { "on" } else { "off" },
            v.querier_address,
            if v.igmp_version == Version::V2 { 2 } else { 3 },
            t.group_membership_interval(),
            t.last_member_query_time()
        );
    }
    Ok(())
}

fn show_cmd(what: Show, a: &ShowArgs) -> Result<()> {
    let v = ctl::query(&a.control_socket, what.clone())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Show::Explain(q) = &what {
        let ports = |k: &str| -> String {
            let list: Vec<&str> = v[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .collect();
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        };
        println!(
            "{} from {} arriving on {} in VLAN {} goes to: {}",
            q.group,
            q.source,
            q.port,
            q.vlan,
            ports("egress")
        );
        println!(
            "  rule: {} - {}",
            v["rule"].as_str().unwrap_or("?"),
            v["why"].as_str().unwrap_or("")
        );
        println!(
            "  members: {}; router ports: {}",
            ports("members"),
            ports("mrouters")
        );
    } else if what == Show::Mdb {
        let rows: Vec<MdbRow> = serde_json::from_value(v)?;
        print!("{}", show::mdb(&rows));
    } else if what == Show::Ports {
        let rows: Vec<PortView> = serde_json::from_value(v)?;
        print!("{}", show::ports(&rows));
    } else if what == Show::Vlans {
        let rows: Vec<VlanView> = serde_json::from_value(v)?;
        print!("{}", show::vlans(&rows));
    } else if what == Show::Streams {
        print!("{}", show::streams(&v));
    } else if what == Show::Fdb {
        let list = v.as_array().map_or(&[][..], Vec::as_slice);
        print!("{}", show::fdb(list));
    } else if what == Show::Events {
        let list = v.as_array().map_or(&[][..], Vec::as_slice);
        print!("{}", show::events(list));
    } else {
        print!("{}", show::json_table(&v));
    }
    Ok(())
}

/// Sends an operator change; prints the journal entries it made (or, refused, fails with the
/// daemon's reason).
fn change_cmd(cmd: ctl::Command, a: &ShowArgs) -> Result<()> {
    let v = ctl::change(&a.control_socket, cmd)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let list = v["events"].as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        println!("ok: nothing changed");
    } else {
        print!("{}", show::events(list));
    }
    Ok(())
}

/// How often `xsnoop events --follow` polls the daemon.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// `xsnoop events --follow`: polls the journal with a sequence number and prints new events
/// until interrupted; fails when the daemon goes away.
fn follow_events(a: &ShowArgs) -> Result<()> {
    let sock = &a.control_socket;
    let start = ctl::query(sock, Show::EventsSince(u64::MAX))?;
    let mut cursor = start["next"].as_u64().unwrap_or(0);
    if !a.json {
        print!("{}", show::event_follow_header());
    }
    loop {
        std::thread::sleep(FOLLOW_POLL);
        let v = ctl::query(sock, Show::EventsSince(cursor))
            .map_err(|e| e.context("following events: the daemon stopped answering"))?;
        let next = v["next"].as_u64().unwrap_or(cursor);
        if next < cursor {
            eprintln!("xsnoop: the daemon restarted; following its new journal");
            cursor = 0;
            continue;
        }
        if let Some(missed) = v["missed"].as_u64().filter(|m| *m > 0) {
            eprintln!("xsnoop: {missed} events left the journal before they could be shown");
        }
        for e in v["events"].as_array().into_iter().flatten() {
            if a.json {
                println!("{e}");
            } else {
                print!("{}", show::event_line(e));
            }
        }
        cursor = next;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log_level, cli.log_format);
    let result = match &cli.command {
        Command::Run(a) => run(a),
        Command::Snoop(a) => snoop(a),
        Command::CheckConfig { file } => check_config(file),
        Command::Mdb(a) => show_cmd(Show::Mdb, a),
        Command::Explain(a) => show_cmd(
            Show::Explain(ExplainQuery {
                port: a.port.clone(),
                vlan: a.vlan,
                source: a.source,
                group: a.group,
            }),
            &a.show,
        ),
        Command::Mrouters(a) => show_cmd(Show::Mrouters, a),
        Command::Querier(a) => show_cmd(Show::Querier, a),
        Command::Stats(a) => show_cmd(Show::Stats, a),
        Command::Events(a) if a.follow => follow_events(&a.show),
        Command::Events(a) => show_cmd(Show::Events, &a.show),
        Command::Ports(a) => show_cmd(Show::Ports, a),
        Command::Vlans(a) => show_cmd(Show::Vlans, a),
        Command::Fdb(a) => show_cmd(Show::Fdb, a),
        Command::Streams(a) => show_cmd(Show::Streams, a),
        Command::Static(StaticCmd::Add(a)) => change_cmd(
            ctl::Command::StaticAdd(ctl::StaticAdd {
                vlan: a.vlan,
                group: a.group,
                sources: a.sources.clone(),
                ports: a.ports.clone(),
            }),
            &a.show,
        ),
        Command::Static(StaticCmd::Del(a)) => change_cmd(
            ctl::Command::StaticDel(ctl::StaticDel {
                vlan: a.vlan,
                group: a.group,
                ports: a.ports.clone(),
            }),
            &a.show,
        ),
        Command::Port(PortCmd::Set(a)) => change_cmd(
            ctl::Command::PortSet(ctl::PortSettings {
                port: a.port.clone(),
                fast_leave: a.fast_leave.map(|v| v == OnOff::On),
                mrouter: a.mrouter.map(|m| match m {
                    MrouterArg::Auto => MrouterMode::Auto,
                    MrouterArg::Always => MrouterMode::Always,
                    MrouterArg::Never => MrouterMode::Never,
                }),
            }),
            &a.show,
        ),
        Command::Flush(a) => change_cmd(
            ctl::Command::Flush(ctl::Flush {
                port: a.port.clone(),
                vlan: a.vlan,
            }),
            &a.show,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xsnoop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
