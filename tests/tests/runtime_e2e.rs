//! Runtime control of a running `xsnoop run` (issue 4), end to end: the real daemon in a switch
//! namespace, real kernel hosts, real multicast, and the operator's own commands (`xsnoop
//! static`, `port set`, `flush`, `ports`, `vlans`, `events --follow`) over the control socket.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_tests::daemon::xsnoop_bin;
use xsnoop_tests::{netns_or_skip, Membership, Sender, Star};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 7, 7, 7);
const UNREGISTERED: Ipv4Addr = Ipv4Addr::new(239, 8, 8, 8);
const UDP_PORT: u16 = 5000;
const WINDOW: Duration = Duration::from_millis(600);

/// Ports `p1..pN` as access ports in VLAN 1, our querier off (so nothing but the hosts' own
/// joins and the operator's commands change the table), short leave timers.
fn config(star: &Star) -> String {
    let mut s = String::from(
        "[snooping]\nquerier = false\nlast_member_query_interval = \"500ms\"\nlast_member_query_count = 2\n",
    );
    for i in 1..=star.len() {
        s.push_str(&format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap()));
    }
    s
}

fn start(star: &Star) -> xsnoop_tests::Daemon {
    start_with(star, &config(star))
}

fn start_with(star: &Star, config: &str) -> xsnoop_tests::Daemon {
    xsnoop_tests::Daemon::run(
        star.switch().unwrap(),
        &format!("runtime-{}", star.topo.prefix()),
        config,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `xsnoop ARGS --control-socket SOCK`.
fn cli(d: &xsnoop_tests::Daemon, args: &[&str]) -> Output {
    Command::new(xsnoop_bin().unwrap())
        .args(args)
        .arg("--control-socket")
        .arg(d.socket())
        .output()
        .unwrap()
}

/// Runs a change that must succeed; returns its stdout.
fn ok(d: &xsnoop_tests::Daemon, args: &[&str]) -> String {
    let out = cli(d, args);
    assert!(
        out.status.success(),
        "xsnoop {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a change that must be refused; returns its stderr.
fn refused(d: &xsnoop_tests::Daemon, args: &[&str]) -> String {
    let out = cli(d, args);
    assert!(!out.status.success(), "xsnoop {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wait(d: &xsnoop_tests::Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    d.wait_for(what, Duration::from_secs(3), pred)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn rows_of<'a>(mdb: &'a Value, port: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    mdb.as_array()
        .into_iter()
        .flatten()
        .filter(move |r| r["port"] == port && r["group"] == GROUP.to_string())
}

/// An untagged UDP/IPv4 frame to `group`.
fn udp_to(group: Ipv4Addr) -> impl Fn(&[u8]) -> bool {
    move |f| {
        f.get(12..14) == Some(&[8, 0][..])
            && f.get(23) == Some(&17)
            && f.get(30..34) == Some(&group.octets()[..])
    }
}

fn send(tx: &Sender, group: Ipv4Addr, n: usize) {
    for i in 0..n {
        tx.send(group, UDP_PORT, format!("datagram {i}").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How many of `n` datagrams sent to `group` reach host `h` (counted on its wire).
fn delivered(star: &Star, tx: &Sender, h: usize, group: Ipv4Addr, n: usize) -> usize {
    let c = star.capture(h).unwrap();
    send(tx, group, n);
    c.count(WINDOW, udp_to(group)).unwrap()
}

#[test]
fn static_entries_port_settings_and_flushes_act_on_the_running_switch() {
    netns_or_skip!();
    let star = Star::new(87, &[2, 2, 2, 2]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let d = start(&star);
    let p: Vec<String> = (1..=4).map(|i| star.port(i).unwrap()).collect();
    let tx = Sender::new(star.host(1).unwrap(), &star.host_if(1).unwrap(), 4).unwrap();
    let g = GROUP.to_string();

    // A static entry sends the group to h3, which never joined; deleting it stops that.
    assert_eq!(delivered(&star, &tx, 3, GROUP, 10), 0, "before the entry");
    let out = ok(&d, &["static", "add", "--group", &g, "--port", &p[2]]);
    assert!(out.contains("static_added") && out.contains(&p[2]), "{out}");
    let mdb = d.show("mdb").unwrap();
    assert!(rows_of(&mdb, &p[2]).any(|r| r["static"] == true), "{mdb:#}");
    assert_eq!(
        delivered(&star, &tx, 3, GROUP, 10),
        10,
        "with the static entry"
    );
    assert_eq!(delivered(&star, &tx, 4, GROUP, 10), 0, "leak to h4");
    // It survives a reload of the unchanged file (like a permanent bridge mdb entry).
    d.reload();
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
    let mdb = d.show("mdb").unwrap();
    assert!(rows_of(&mdb, &p[2]).any(|r| r["static"] == true), "{mdb:#}");
    ok(&d, &["static", "del", "--group", &g, "--port", &p[2]]);
    wait(&d, "mdb", |v| rows_of(v, &p[2]).next().is_none());
    assert_eq!(delivered(&star, &tx, 3, GROUP, 10), 0, "after the delete");

    // Fast-leave switched on at runtime: a real kernel leave stops the traffic at once
    // (without it, no querier: the group would linger for the last member query time, 1 s).
    let m2 = Membership::join(
        star.host(2).unwrap(),
        &star.host_if(2).unwrap(),
        GROUP,
        UDP_PORT,
    )
    .unwrap();
    wait(&d, "mdb", |v| rows_of(v, &p[1]).next().is_some());
    ok(&d, &["port", "set", &p[1], "--fast-leave", "on"]);
    let t = Instant::now();
    m2.leave().unwrap();
    wait(&d, "mdb", |v| rows_of(v, &p[1]).next().is_none());
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(450),
        "fast leave took {took:?}"
    );
    assert_eq!(
        delivered(&star, &tx, 2, GROUP, 10),
        0,
        "after the fast leave"
    );

    // mrouter always: the port gets unregistered multicast.
    assert_eq!(delivered(&star, &tx, 4, UNREGISTERED, 10), 0, "h4 before");
    ok(&d, &["port", "set", &p[3], "--mrouter", "always"]);
    assert_eq!(
        delivered(&star, &tx, 4, UNREGISTERED, 10),
        10,
        "router port h4"
    );
    assert_eq!(delivered(&star, &tx, 3, UNREGISTERED, 10), 0, "leak to h3");

    // Flush a port: its learned rows go and its traffic stops, even though h3 stays joined.
    let _m3 = Membership::join(
        star.host(3).unwrap(),
        &star.host_if(3).unwrap(),
        GROUP,
        UDP_PORT,
    )
    .unwrap();
    wait(&d, "mdb", |v| rows_of(v, &p[2]).next().is_some());
    // Let the kernel's repeated unsolicited report (100 ms here) pass before flushing.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(delivered(&star, &tx, 3, GROUP, 10), 10, "h3 joined");
    let out = ok(&d, &["flush", "--port", &p[2], "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"][0]["kind"]["type"], "port_flushed", "{v:#}");
    assert_eq!(v["events"][0]["kind"]["groups"], 1, "{v:#}");
    let mdb = d.show("mdb").unwrap();
    assert!(rows_of(&mdb, &p[2]).next().is_none(), "{mdb:#}");
    assert_eq!(delivered(&star, &tx, 3, GROUP, 10), 0, "after the flush");

    // Invalid requests: non-zero exit, a message naming the bad value, nothing changed.
    let before = d.show("mdb").unwrap();
    for (args, needle) in [
        (
            vec!["static", "add", "--group", "224.0.0.251", "--port", &p[0]],
            "224.0.0.251",
        ),
        (
            vec!["static", "add", "--group", &g, "--port", "nope0"],
            "nope0",
        ),
        (
            vec![
                "static", "add", "--group", &g, "--vlan", "42", "--port", &p[0],
            ],
            "VLAN 42",
        ),
        (
            vec![
                "static",
                "add",
                "--group",
                &g,
                "--source",
                "239.1.1.1",
                "--port",
                &p[0],
            ],
            "239.1.1.1",
        ),
        (vec!["static", "del", "--group", &g, "--port", &p[0]], &p[0]),
        (vec!["port", "set", "nope1", "--fast-leave", "on"], "nope1"),
        (vec!["flush", "--vlan", "99"], "VLAN 99"),
        (
            vec!["port", "set", &p[0], "--mrouter", "sometimes"],
            "sometimes",
        ),
        (vec!["flush"], "--port"),
    ] {
        let e = refused(&d, &args);
        assert!(
            e.contains(needle),
            "xsnoop {args:?}: {e:?} does not name {needle:?}"
        );
    }
    assert_eq!(d.show("mdb").unwrap(), before);

    // `ports` and `vlans`, both formats.
    // The dataplane refreshes its per-port counters a few times a second; h1 sent 100.
    let ports = wait(&d, "ports", |v| {
        v[0]["rx"].as_u64().is_some_and(|n| n >= 100)
    });
    let row = |name: &str| {
        ports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["port"] == name)
            .cloned()
            .unwrap()
    };
    let (r2, r4) = (row(&p[1]), row(&p[3]));
    assert_eq!(
        (&r2["fast_leave"], &r2["fast_leave_runtime"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(
        (&r4["mrouter"], &r4["router_in"]),
        (&Value::from("always"), &serde_json::json!([1]))
    );
    assert_eq!(r4["link"], "up");
    assert!(r4["tx"].as_u64().unwrap() >= 10, "{ports:#}");
    let text = d.show_text("ports").unwrap();
    eprintln!("xsnoop ports:\n{text}");
    assert!(text.starts_with("PORT"), "{text}");
    assert!(
        text.contains("FAST-LEAVE") && text.contains("on*") && text.contains("always*"),
        "{text}"
    );
    assert!(text.contains("set at runtime"), "{text}");
    let vlans = d.show("vlans").unwrap();
    assert_eq!(vlans[0]["vlan"], 1, "{vlans:#}");
    assert_eq!(vlans[0]["snooping"], true);
    assert_eq!(vlans[0]["querier"], "none");
    assert_eq!(vlans[0]["router_ports"], serde_json::json!([p[3]]));
    assert_eq!(vlans[0]["ports"].as_array().unwrap().len(), 4);
    let text = d.show_text("vlans").unwrap();
    eprintln!("xsnoop vlans:\n{text}");
    eprintln!("xsnoop events:\n{}", d.show_text("events").unwrap());
    assert!(
        text.starts_with("VLAN") && text.contains("SNOOPING") && text.contains(&p[3]),
        "{text}"
    );

    // The journal has every operator change, with its reason.
    let events = d.show("events").unwrap();
    for reason in [
        "static group added by operator",
        "static group removed by operator",
        "port settings changed by operator",
        "learned groups flushed by operator",
    ] {
        assert!(
            events
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["reason"] == reason),
            "no {reason:?} in {events:#}"
        );
    }
    let log = d.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("static group added by operator"), "{log}");
}

/// A follower process; killed (by its own pid) on drop.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(d: &xsnoop_tests::Daemon, json: bool) -> Follower {
        let mut cmd = Command::new(xsnoop_bin().unwrap());
        cmd.args(["events", "--follow", "--control-socket"])
            .arg(d.socket());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// Lines printed until one matches `pred` (the matching one last), or a panic after 5 s.
    fn until(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = pred(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no matching line; saw {seen:?}");
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_follow_prints_events_that_happen_while_it_runs() {
    netns_or_skip!();
    let star = Star::new(88, &[2, 2]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let d = start(&star);
    let p2 = star.port(2).unwrap();
    let (json, text) = (Follower::start(&d, true), Follower::start(&d, false));
    let header = text.until(|l| l.starts_with("SEQ"));
    assert_eq!(header.len(), 1, "the header comes first: {header:?}");
    // Give both followers time to take their starting cursor, then make things happen: an
    // operator change and a real host's join.
    std::thread::sleep(Duration::from_millis(600));
    ok(
        &d,
        &[
            "static",
            "add",
            "--group",
            &GROUP.to_string(),
            "--port",
            &p2,
        ],
    );
    let _m = Membership::join(
        star.host(2).unwrap(),
        &star.host_if(2).unwrap(),
        UNREGISTERED,
        0,
    )
    .unwrap();
    let lines = json.until(|l| l.contains("\"join\""));
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let added = events
        .iter()
        .find(|e| e["kind"]["type"] == "static_added")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(added["port_name"], p2.as_str());
    assert_eq!(added["group"], GROUP.to_string());
    let join = events.last().unwrap();
    assert_eq!(join["group"], UNREGISTERED.to_string());
    assert!(
        join["seq"].as_u64() > added["seq"].as_u64(),
        "sequence numbers grow: {events:#?}"
    );
    // Nothing from before the follower started (the daemon's start-up events) is repeated.
    assert!(events
        .iter()
        .all(|e| e["seq"].as_u64() >= added["seq"].as_u64()));
    let lines = text.until(|l| l.contains("join"));
    eprintln!("xsnoop events --follow:\n{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("static_added") && l.contains(&p2)),
        "{lines:?}"
    );
    d.stop().unwrap_or_else(|e| panic!("{e}"));
    // The daemon is gone: the follower says so and exits non-zero.
    let mut json = json;
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(s) = json.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the follower outlived the daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
}

/// An IGMP general query (type 0x11, group 0.0.0.0) on an untagged frame.
fn general_query(f: &[u8]) -> bool {
    if f.get(12..14) != Some(&[8, 0][..]) || f.get(23) != Some(&2) {
        return false;
    }
    let ihl = usize::from(f.get(14).copied().unwrap_or(0) & 0x0f) * 4;
    f.get(14 + ihl) == Some(&0x11) && f.get(14 + ihl + 4..14 + ihl + 8) == Some(&[0, 0, 0, 0][..])
}

#[test]
fn flushing_as_querier_sends_a_general_query_so_real_members_report_again() {
    netns_or_skip!();
    let star = Star::new(89, &[2, 2, 2]).unwrap();
    star.prepare_for_afxdp().unwrap();
    // Our querier on, its next general query a minute away once the start-up queries are over:
    // only the flush's own query can bring the member back within seconds.
    let mut config = config(&star).replace(
        "querier = false\n",
        "querier = true\nquerier_address = \"10.89.0.254\"\nquery_interval = \"60s\"\n\
         query_response_interval = \"1s\"\nstartup_query_count = 1\nstartup_query_interval = \"1s\"\n",
    );
    config.push('\n');
    let d = start_with(&star, &config);
    let p3 = star.port(3).unwrap();
    wait(&d, "vlans", |v| v[0]["querier"] == "us");
    let _m3 = Membership::join(
        star.host(3).unwrap(),
        &star.host_if(3).unwrap(),
        GROUP,
        UDP_PORT,
    )
    .unwrap();
    wait(&d, "mdb", |v| rows_of(v, &p3).next().is_some());
    std::thread::sleep(Duration::from_millis(1500));
    let c3 = star.capture(3).unwrap();
    c3.drain().unwrap();
    let v: Value = serde_json::from_str(&ok(&d, &["flush", "--port", &p3, "--json"])).unwrap();
    assert_eq!(v["events"][0]["kind"]["groups"], 1, "{v:#}");
    let t = Instant::now();
    // The general query reaches h3, and h3's kernel answers within the response interval.
    wait(&d, "mdb", |v| rows_of(v, &p3).next().is_some());
    let back = t.elapsed();
    assert!(back < Duration::from_secs(3), "re-learned after {back:?}");
    let queries = c3.count(Duration::from_millis(200), general_query).unwrap();
    assert!(
        queries >= 1,
        "no general query reached h3 after the flush\n{}",
        d.log()
    );
    let stats = d.show("stats").unwrap();
    eprintln!(
        "runtime_e2e: member re-learned {back:?} after the flush; sent {}",
        stats["sent"]
    );
    d.stop().unwrap_or_else(|e| panic!("{e}"));
}
