//! Resident memory of `xsnoop run` per learned group: the daemon runs on a two-port star, a host
//! floods it with IGMPv3 reports (MODE_IS_EXCLUDE {} records, i.e. plain joins, RFC 3376
//! §4.2.12) until the MDB holds 1 000, 10 000, 100 000 groups, and the daemon's resident set
//! (`/proc/PID/status`) is read at each step. The per-group cost is the growth of the anonymous
//! resident memory (heap: engine state, MDB, published forwarding table) over the groups added;
//! the fixed part (UMEM, rings, binary) is reported beside it. The daemon runs `dataplane =
//! "afxdp"` (named, so a change of the default changes no figure): the kernel maps of xdp mode
//! are not in the resident set.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use xsnoop_dataplane::wire::igmp::{RecordKind, RecordSpec};
use xsnoop_dataplane::wire::{to_vec, MacAddr, ReportV3Builder};
use xsnoop_tests::{Capture, Star};

use crate::daemon;

/// Group records per report: 180 × 8 B + headers stays inside a 1500 B MTU.
const RECORDS_PER_REPORT: usize = 180;

/// The `i`-th group of the memory benchmark (239.128.0.0 + i: administratively scoped, never
/// link-local).
fn group(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(239, 128, 0, 0)).wrapping_add(i as u32))
}

/// Resident memory of one process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`, KiB: everything resident.
    pub total_kib: u64,
    /// `RssAnon`, KiB: resident anonymous memory (heap, stacks, anonymous mappings).
    pub anon_kib: u64,
    /// `RssShmem`, KiB: resident shared memory (the AF_XDP UMEM if it is shared-mapped).
    pub shmem_kib: u64,
}

/// Parses the `Vm*`/`Rss*` lines of a `/proc/PID/status` text.
pub fn parse_status(text: &str) -> Rss {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Rss {
        total_kib: field("VmRSS"),
        anon_kib: field("RssAnon"),
        shmem_kib: field("RssShmem"),
    }
}

fn rss_of(pid: libc::pid_t) -> Result<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_status(&text))
}

/// One step: groups in the MDB and the resident memory then.
#[derive(Debug, Clone, Copy)]
pub struct MemoryPoint {
    /// Groups the MDB listed.
    pub groups: usize,
    /// Resident memory.
    pub rss: Rss,
    /// Seconds until the groups were in: from the first report until the engine went quiet
    /// (reports), or from the daemon's start until its control socket answered (static).
    pub learn_s: f64,
}

/// Groups in the daemon's MDB (distinct (vlan, group) pairs).
fn mdb_groups(d: &xsnoop_tests::Daemon) -> Option<usize> {
    let mdb = d.show("mdb")?;
    let mut keys: Vec<(u64, String)> = mdb
        .as_array()?
        .iter()
        .filter_map(|r| Some((r["vlan"].as_u64()?, r["group"].as_str()?.to_owned())))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    Some(keys.len())
}

/// The reports that join groups `from..to`.
fn reports(from: usize, to: usize, src_ip: Ipv4Addr) -> Result<Vec<Vec<u8>>> {
    let groups: Vec<Ipv4Addr> = (from..to).map(group).collect();
    join_reports(&groups, MacAddr([0x02, 0xbe, 0x4d, 0, 0, 2]), src_ip)
}

/// IGMPv3 reports from `src_mac`/`src_ip` joining every group of `groups` (MODE_IS_EXCLUDE {},
/// RECORDS_PER_REPORT records a report): how the memory and table-scale benches fill a table.
pub fn join_reports(
    groups: &[Ipv4Addr],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
) -> Result<Vec<Vec<u8>>> {
    groups
        .chunks(RECORDS_PER_REPORT)
        .map(|chunk| {
            let records: Vec<RecordSpec<'_>> = chunk
                .iter()
                .map(|&g| RecordSpec {
                    kind: RecordKind::ModeIsExclude,
                    group: g,
                    sources: &[],
                    aux_data: &[],
                })
                .collect();
            to_vec(&ReportV3Builder {
                src_mac,
                src_ip,
                records: &records,
                vlan: None,
            })
            .context("building an IGMPv3 report")
        })
        .collect()
}

/// IGMPv3 reports the engine has handled (`xsnoop stats`), a small answer to poll.
fn reports_handled(d: &xsnoop_tests::Daemon) -> Option<u64> {
    d.show("stats")?["received"]["reports_v3"].as_u64()
}

/// Waits until the engine's report counter stops moving (two polls 250 ms apart agree).
fn wait_quiet(d: &xsnoop_tests::Daemon, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = reports_handled(d);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = reports_handled(d);
        if now.is_some() && now == last {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "xsnoop was still handling reports after {timeout:?}\n{}",
                d.log()
            );
        }
        last = now;
    }
}

/// Measures `xsnoop run`'s resident memory at each group count of `steps`, learned from IGMPv3
/// reports, on a fresh star in subnet `10.net.0.0/24`. Each step gets a fresh daemon: the
/// resident set is read once the engine is quiet and *before* the MDB is listed to count the
/// groups (a listing of 100 000 rows is itself megabytes the allocator keeps). Reports the
/// punt path dropped are sent again (then the count of a retry includes the earlier listing).
pub fn measure(net: u8, steps: &[usize]) -> Result<Vec<MemoryPoint>> {
    let star = Star::new(net, &[3, 3]).context("building the memory star")?;
    let ports = [star.port(1)?, star.port(2)?];
    let cap = Capture::open(star.host(2)?, &star.host_if(2)?)?;
    let src_ip = Ipv4Addr::new(10, net, 0, 2);
    let mut out = Vec::new();
    for (i, &n) in steps.iter().enumerate() {
        let config = format!(
            "dataplane = \"afxdp\"\n[snooping]\nmax_groups = {}\nquery_interval = \"125s\"\n\
             [[port]]\nname = \"{}\"\n[[port]]\nname = \"{}\"\n",
            n + 1000,
            ports[0],
            ports[1]
        );
        let tag = format!("{}mem{i}", star.topo.prefix());
        let d = daemon::start(star.switch()?, &tag, &config)?;
        let pid = d.pid().context("xsnoop run has no pid")?;
        // Let start-up allocations (rings, UMEM, first table) settle.
        std::thread::sleep(Duration::from_millis(300));
        let frames = reports(0, n, src_ip)?;
        let t = Instant::now();
        let mut attempt = 0;
        let (groups, rss, learn_s) = loop {
            attempt += 1;
            for (k, f) in frames.iter().enumerate() {
                cap.inject(f)?;
                // Pace the burst so the punt path's rings are not overrun.
                if k % 16 == 15 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            wait_quiet(&d, Duration::from_secs(90))?;
            let learn_s = t.elapsed().as_secs_f64();
            let rss = rss_of(pid)?;
            let got = mdb_groups(&d).unwrap_or(0);
            if got >= n {
                break (got, rss, learn_s);
            }
            if attempt >= 4 {
                bail!(
                    "xsnoop learned {got} of {n} groups after {attempt} bursts\n{}",
                    d.log()
                );
            }
            eprintln!("bench: memory: {got} of {n} groups learned, sending again");
        };
        eprintln!(
            "bench: memory: {groups} groups, VmRSS {} KiB, RssAnon {} KiB, RssShmem {} KiB",
            rss.total_kib, rss.anon_kib, rss.shmem_kib
        );
        out.push(MemoryPoint {
            groups,
            rss,
            learn_s,
        });
        let _ = d.stop();
    }
    drop(cap);
    drop(star);
    Ok(out)
}

/// Measures `xsnoop run`'s resident memory with each group count of `steps` configured as
/// static groups (`[[static_group]]` on port 2): one daemon per step, started with the whole
/// table, so no learning churn inflates the figure (the at-rest cost of a group).
pub fn measure_static(net: u8, steps: &[usize]) -> Result<Vec<MemoryPoint>> {
    let star = Star::new(net, &[3, 3]).context("building the memory star")?;
    let ports = [star.port(1)?, star.port(2)?];
    let mut out = Vec::new();
    for (i, &n) in steps.iter().enumerate() {
        let mut config = format!(
            "dataplane = \"afxdp\"\n[snooping]\nmax_groups = {}\n[[port]]\nname = \"{}\"\n[[port]]\nname = \"{}\"\n",
            n + 1000,
            ports[0],
            ports[1]
        );
        for g in 0..n {
            let _ = write!(
                config,
                "[[static_group]]\ngroup = \"{}\"\nports = [\"{}\"]\n",
                group(g),
                ports[1]
            );
        }
        let t = Instant::now();
        let tag = format!("{}st{i}", star.topo.prefix());
        // The engine applies static groups before the control socket answers.
        let d = daemon::start(star.switch()?, &tag, &config)?;
        let pid = d.pid().context("xsnoop run has no pid")?;
        let learn_s = t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(500));
        // Read before listing the MDB (the listing itself allocates).
        let rss = rss_of(pid)?;
        let groups = mdb_groups(&d).unwrap_or(0);
        if groups < n {
            bail!("xsnoop listed {groups} of {n} static groups\n{}", d.log());
        }
        eprintln!(
            "bench: memory (static): {groups} groups, VmRSS {} KiB, RssAnon {} KiB",
            rss.total_kib, rss.anon_kib
        );
        out.push(MemoryPoint {
            groups,
            rss,
            learn_s,
        });
        let _ = d.stop();
    }
    Ok(out)
}

/// Bytes of resident memory per group between the first point and `p`, from `pick` (KiB).
fn per_group(first: &MemoryPoint, p: &MemoryPoint, pick: impl Fn(&Rss) -> u64) -> Option<f64> {
    let dg = p.groups.checked_sub(first.groups).filter(|d| *d > 0)?;
    let dk = pick(&p.rss) as f64 - pick(&first.rss) as f64;
    Some(dk * 1024.0 / dg as f64)
}

/// Markdown table of the learned ([`measure`]) and static ([`measure_static`]) points; the
/// per-group figures compare each row with the first row of its own series.
pub fn markdown(learned: &[MemoryPoint], statics: &[MemoryPoint]) -> String {
    let mut s = String::from(
        "## Resident memory of `xsnoop run` per group\n\n\
         | groups | from | VmRSS (KiB) | RssAnon (KiB) | bytes/group (VmRSS growth) | bytes/group (RssAnon growth) | groups in after (s) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (from, points) in [
        ("IGMPv3 reports", learned),
        ("static_group config", statics),
    ] {
        let first = points.first();
        for p in points {
            let per = |pick: fn(&Rss) -> u64| {
                first
                    .and_then(|f| per_group(f, p, pick))
                    .map_or("–".to_owned(), |b| format!("{b:.0}"))
            };
            let _ = writeln!(
                s,
                "| {} | {from} | {} | {} | {} | {} | {:.1} |",
                p.groups,
                p.rss.total_kib,
                p.rss.anon_kib,
                per(|r| r.total_kib),
                per(|r| r.anon_kib),
                p.learn_s,
            );
        }
    }
    s.push_str(
        "\n`xsnoop run` on a two-port star (querier off, default rings and frames), a fresh \
         daemon per row; resident set from `/proc/PID/status` read once the groups are in and \
         before the MDB is listed to count them (a 100 000-row listing is itself megabytes the \
         allocator keeps). *IGMPv3 reports*: host 2 joins the groups with reports of 180 \
         MODE_IS_EXCLUDE {} records each, injected on its veth (sent again when the punt path \
         dropped some); read when the engine's report counter stops moving; the growth \
         includes what the allocator kept from the forwarding tables rebuilt while learning. \
         *static_group config*: the daemon starts with that many `[[static_group]]` entries: \
         the cost of a group at rest. *bytes/group* = growth over the series' first row / \
         groups added. The machine is shared (2 vCPUs): the times, not the sizes, depend on \
         its load.\n",
    );
    s
}

/// CSV of both series (`source` = `reports` or `static`).
pub fn csv(learned: &[MemoryPoint], statics: &[MemoryPoint]) -> String {
    let mut s = String::from("source,groups,vmrss_kib,rss_anon_kib,rss_shmem_kib,seconds\n");
    for (from, points) in [("reports", learned), ("static", statics)] {
        for p in points {
            let _ = writeln!(
                s,
                "{from},{},{},{},{},{:.2}",
                p.groups, p.rss.total_kib, p.rss.anon_kib, p.rss.shmem_kib, p.learn_s
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsnoop_dataplane::wire::igmp::IgmpPacket;

    #[test]
    fn status_fields_are_read_in_kib() {
        let text = "Name:\txsnoop\nVmHWM:\t  9000 kB\nVmRSS:\t  8192 kB\nRssAnon:\t  4096 kB\nRssFile:\t 3072 kB\nRssShmem:\t 1024 kB\n";
        let r = parse_status(text);
        assert_eq!(
            r,
            Rss {
                total_kib: 8192,
                anon_kib: 4096,
                shmem_kib: 1024
            }
        );
        assert_eq!(parse_status("garbage"), Rss::default());
    }

    #[test]
    fn per_group_cost_is_growth_over_groups_added() {
        let pt = |groups, kib| MemoryPoint {
            groups,
            rss: Rss {
                total_kib: kib,
                anon_kib: kib / 2,
                shmem_kib: 0,
            },
            learn_s: 0.0,
        };
        let pts = [pt(0, 10_000), pt(1000, 10_200), pt(10_000, 12_000)];
        assert_eq!(per_group(&pts[0], &pts[1], |r| r.total_kib), Some(204.8));
        assert_eq!(per_group(&pts[0], &pts[0], |r| r.total_kib), None);
        let md = markdown(&pts, &pts[1..]);
        assert!(
            md.contains("| 1000 | IGMPv3 reports | 10200 | 5100 | 205 | 102 |"),
            "{md}"
        );
        assert!(
            md.contains("| 10000 | static_group config | 12000 | 6000 | 205 | 102 |"),
            "{md}"
        );
        assert_eq!(csv(&pts, &pts[1..]).lines().count(), 6);
    }

    #[test]
    fn reports_carry_every_group_once_and_fit_the_mtu() {
        let frames = reports(0, 1000, Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        assert_eq!(frames.len(), 1000usize.div_ceil(RECORDS_PER_REPORT));
        let mut seen = Vec::new();
        for f in &frames {
            assert!(f.len() <= 1514, "{}", f.len());
            let ip = &f[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let p = IgmpPacket::new_checked(&ip[ihl..]).unwrap();
            for r in p.records().iter() {
                assert_eq!(r.kind, RecordKind::ModeIsExclude);
                seen.push(r.group);
            }
        }
        assert_eq!(seen.len(), 1000);
        assert_eq!(seen.first(), Some(&group(0)));
        assert_eq!(seen.last(), Some(&Ipv4Addr::new(239, 128, 3, 231)));
    }
}
