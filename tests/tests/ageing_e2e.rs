//! Station ageing end to end (`fdb_ageing`, IEEE 802.1Q §8.8.3): the real daemon, in both
//! dataplanes, with the shortest ageing time the standard allows (10 s, Table 8-6).
//!
//! Three hosts on one VLAN. Hosts 1 and 2 send raw frames (ethertype 0x88b5) from station MACs
//! of their own to each other; host 3 is a bystander whose capture sees every frame the switch
//! floods. Stations are made-up MACs, so nothing the hosts' kernels send can refresh them.
//!
//! - *A busy station is never aged*: 1 and 2 exchange a frame each way every 100 ms for 2.5×
//!   the ageing time. With `dataplane = "xdp"` the kernel forwards them and the workers never
//!   see them: only the CPU's reading of the kernel's per-station stamps keeps the stations in
//!   the workers' tables and the kernel's own. A station aged out wrongly floods the frames to
//!   it, and host 3 would receive them.
//! - *An idle station ages out*: host 1 stops (host 2 goes on sending to it); within the
//!   ageing time plus the check interval `xsnoop fdb` drops host 1 (not host 2, and not
//!   before the ageing time), the kernel's table drops it (xdp), and host 2's frames to it are
//!   flooded again: host 3 receives them.

use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_dataplane::wire::MacAddr;
use xsnoop_tests::daemon::kernel_rx;
use xsnoop_tests::{netns_or_skip, Capture, Daemon, Star};

/// The ageing time under test: the shortest IEEE 802.1Q-2018 Table 8-6 allows.
const AGEING: Duration = Duration::from_secs(10);
/// How often the busy stations send.
const PERIOD: Duration = Duration::from_millis(100);
/// How long to wait for frames that should arrive (or prove that none do).
const WINDOW: Duration = Duration::from_millis(400);
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// The station MAC host `host` sends from in the test on subnet `net` (unique per test, so a
/// parallel test's kernel table never holds it).
fn station(net: u8, host: u8) -> [u8; 6] {
    [0x02, 0xa6, 0xe0, net, 0, host]
}

/// A frame from station `src` to station `dst` carrying `marker` and `seq`.
fn frame(dst: [u8; 6], src: [u8; 6], marker: &[u8; 4], seq: u32) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(marker);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(60, 0);
    f
}

/// The (marker, seq) of one of this test's frames received (not sent) by a capture.
fn tagged(f: &xsnoop_tests::Frame) -> Option<([u8; 4], u32)> {
    let b = &f.bytes;
    if f.outgoing || b.get(12..14)? != ETHERTYPE {
        return None;
    }
    let marker: [u8; 4] = b.get(14..18)?.try_into().ok()?;
    let seq = u32::from_be_bytes(b.get(18..22)?.try_into().ok()?);
    Some((marker, seq))
}

/// The sequence numbers of the frames with `marker` among everything `c` holds now.
fn received(c: &Capture, marker: &[u8; 4]) -> Vec<u32> {
    c.collect(WINDOW)
        .unwrap()
        .iter()
        .filter_map(tagged)
        .filter(|(m, _)| m == marker)
        .map(|(_, s)| s)
        .collect()
}

/// Whether `xsnoop fdb --json` lists station `mac`.
fn listed(fdb: &Value, mac: [u8; 6]) -> bool {
    let text = MacAddr(mac).to_string();
    fdb.as_array()
        .is_some_and(|rows| rows.iter().any(|r| r["mac"] == text.as_str()))
}

/// Station `mac`'s row of `xsnoop fdb --json` (`null` if absent).
fn row(fdb: &Value, mac: [u8; 6]) -> Value {
    let text = MacAddr(mac).to_string();
    fdb.as_array()
        .and_then(|rows| rows.iter().find(|r| r["mac"] == text.as_str()))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Every MAC in the kernel's station table (`fp_fdb`) of every running xsnoop, from
/// `bpftool map dump` (maps are not per namespace; the test's MACs are unique to it).
fn kernel_stations() -> Vec<[u8; 6]> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "name", "fp_fdb"])
        .output()
        .expect("bpftool (installed on the testbed)");
    assert!(
        out.status.success(),
        "bpftool map dump name fp_fdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool -j prints JSON");
    let mut macs = Vec::new();
    collect_keys(&v, &mut macs);
    macs
}

/// The station MACs of every `fp_fdb` entry under `v`: the BTF-formatted key's `mac` when
/// bpftool has it, else the raw key bytes (`struct fp_fdb_key`: VLAN, then the MAC).
fn collect_keys(v: &Value, out: &mut Vec<[u8; 6]>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_keys(i, out)),
        Value::Object(o) => {
            let formatted = o
                .get("formatted")
                .and_then(|f| f["key"]["mac"].as_array())
                .map(|bytes| bytes.iter().map(byte).collect::<Vec<_>>());
            let raw = o.get("key").and_then(Value::as_array).map(|bytes| {
                bytes
                    .iter()
                    .skip(2)
                    .map(|b| b.as_str().and_then(parse_hex))
                    .collect::<Vec<_>>()
            });
            match formatted.or(raw) {
                Some(bytes) => {
                    if let Some(mac) = bytes.into_iter().collect::<Option<Vec<u8>>>() {
                        if let Ok(mac) = <[u8; 6]>::try_from(mac) {
                            out.push(mac);
                        }
                    }
                }
                None => o.values().for_each(|i| collect_keys(i, out)),
            }
        }
        _ => {}
    }
}

/// One byte of a bpftool key: a number, or a `"0x1a"` string.
fn byte(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::String(s) => parse_hex(s),
        _ => None,
    }
}

fn parse_hex(s: &str) -> Option<u8> {
    u8::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// A counter of `xsnoop stats --json`'s `dataplane.reasons`.
fn reason(stats: &Value, name: &str) -> u64 {
    stats["dataplane"]["reasons"][name].as_u64().unwrap_or(0)
}

fn ageing_end_to_end(dataplane: &str, net: u8) {
    let star = Star::new(net, &[2, 2, 2]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let mut cfg = format!(
        "dataplane = \"{dataplane}\"\nfdb_ageing = \"{}s\"\n",
        AGEING.as_secs()
    );
    for i in 1..=3 {
        cfg.push_str(&format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap()));
    }
    let tag = format!("ageing-{}", star.topo.prefix());
    let d = Daemon::run(star.switch().unwrap(), &tag, &cfg).unwrap_or_else(|e| panic!("{e}"));
    let xdp = dataplane == "xdp";
    let p1 = star.port(1).unwrap();
    let stats = d.show("stats").unwrap();
    assert_eq!(stats["dataplane"]["mode"], dataplane, "{stats}");
    assert_eq!(
        stats["dataplane"]["fdb_ageing_ms"],
        u64::try_from(AGEING.as_millis()).unwrap()
    );
    if xdp {
        assert_eq!(
            stats["dataplane"]["kernel_path"]["kernel_vlans"],
            serde_json::json!([1]),
            "{stats}"
        );
    }
    let caps: Vec<Capture> = (1..=3).map(|i| star.capture(i).unwrap()).collect();
    let (c1, c2, c3) = (&caps[0], &caps[1], &caps[2]);
    let (a, b) = (station(net, 1), station(net, 2));

    // Learning: 2 → 1 is flooded (1 unknown), 1 → 2 is not (2 just learned); both are known.
    c2.inject(&frame(a, b, b"lrn2", 0)).unwrap();
    assert_eq!(received(c3, b"lrn2"), [0], "unknown unicast is flooded");
    c1.inject(&frame(b, a, b"lrn1", 0)).unwrap();
    assert_eq!(received(c2, b"lrn1"), [0]);
    assert!(received(c3, b"lrn1").is_empty(), "known unicast flooded");
    let fdb = d
        .wait_for("fdb", Duration::from_secs(3), |v| {
            listed(v, a) && listed(v, b)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row(&fdb, a)["ageing_ms"], 10_000, "{fdb}");
    assert_eq!(row(&fdb, a)["port"], p1.as_str(), "{fdb}");
    let text = d.show_text("fdb").unwrap();
    assert!(
        text.contains("age out after 10 s without a frame (fdb_ageing)"),
        "{text}"
    );
    if xdp {
        // The CPU hands the learned stations to the kernel.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !(kernel_stations().contains(&a) && kernel_stations().contains(&b)) {
            assert!(
                Instant::now() < deadline,
                "the kernel's fp_fdb never got both stations: {:?}\n{}",
                kernel_stations(),
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for c in &caps {
        c.drain().unwrap();
    }

    // (a) Busy for 2.5× the ageing time: both stations stay known, nothing is flooded.
    let before = d.show("stats").unwrap();
    let busy = AGEING * 5 / 2;
    let started = Instant::now();
    let mut sent = 0u32;
    let mut next_check = started + Duration::from_secs(1);
    let mut last_from_1 = started;
    while started.elapsed() < busy {
        c1.inject(&frame(b, a, b"busy", sent)).unwrap();
        last_from_1 = Instant::now();
        c2.inject(&frame(a, b, b"back", sent)).unwrap();
        sent += 1;
        if Instant::now() >= next_check {
            let fdb = d.show("fdb").unwrap_or(Value::Null);
            assert!(
                listed(&fdb, a) && listed(&fdb, b),
                "a busy station left the FDB after {:?} of traffic: {fdb}\n{}",
                started.elapsed(),
                d.log()
            );
            next_check = Instant::now() + Duration::from_secs(1);
        }
        std::thread::sleep(PERIOD);
    }
    let flooded: Vec<u32> = c3
        .collect(WINDOW)
        .unwrap()
        .iter()
        .filter_map(tagged)
        .filter(|(m, _)| m == b"busy" || m == b"back")
        .map(|(_, s)| s)
        .collect();
    let after = d.show("stats").unwrap();
    assert!(
        flooded.is_empty(),
        "host 3 received {} of the {sent} frames each way between busy stations (seq {:?}): one was aged out while busy\nkernel path: {}\n{}",
        flooded.len(),
        flooded,
        after["dataplane"]["kernel_path"],
        d.log()
    );
    let all: Vec<u32> = (0..sent).collect();
    assert_eq!(received(c2, b"busy"), all, "host 2 missed frames");
    assert_eq!(received(c1, b"back"), all, "host 1 missed frames");
    let fdb = d.show("fdb").unwrap();
    assert!(listed(&fdb, a) && listed(&fdb, b), "{fdb}");
    let by_workers = reason(&after, "fwd_known_unicast") - reason(&before, "fwd_known_unicast");
    let in_kernel = kernel_rx(&after, &p1) - kernel_rx(&before, &p1);
    eprintln!(
        "ageing_e2e {dataplane}: {sent} frames each way in {busy:?}; workers forwarded {by_workers} known unicast, the kernel took {in_kernel} from {p1}; kernel path {}",
        after["dataplane"]["kernel_path"]
    );
    if xdp {
        // The kernel forwarded them and the workers did not see them, so only the kernel's
        // stamps kept the stations alive.
        assert!(
            in_kernel >= u64::from(sent) * 9 / 10,
            "the kernel took {in_kernel} of {sent} frames from {p1}"
        );
        assert!(
            by_workers <= u64::from(sent) / 10,
            "the workers forwarded {by_workers} of {} frames",
            2 * sent
        );
        let kp = &after["dataplane"]["kernel_path"];
        assert!(
            kp["stations_refreshed_by_kernel"].as_u64() > Some(0),
            "no station was refreshed from the kernel's stamps: {kp}"
        );
        let k = kernel_stations();
        assert!(k.contains(&a) && k.contains(&b), "{k:?}");
    } else {
        assert!(
            by_workers >= 2 * u64::from(sent),
            "the workers forwarded {by_workers} of {} frames",
            2 * sent
        );
    }

    // (b) Host 1 has been quiet since its last busy frame; host 2 keeps sending to it.
    let quiet = last_from_1;
    // The ageing time, plus the kernel's stamp period (1 s), one station check (1 s at this
    // ageing time) and a second for polling `xsnoop fdb` under load. (Workers once aged a
    // kernel-forwarded station from the notice's arrival, up to a quarter of the ageing time
    // plus a check late; notices now carry the sighting's time.)
    let bound = AGEING + Duration::from_secs(3);
    let mut seq = 0u32;
    let mut last = Value::Null;
    let gone = loop {
        c2.inject(&frame(a, b, b"idle", seq)).unwrap();
        seq += 1;
        last = d.show("fdb").unwrap_or(last);
        if !listed(&last, a) && (!xdp || !kernel_stations().contains(&a)) {
            break quiet.elapsed();
        }
        assert!(
            quiet.elapsed() < bound,
            "host 1's station still known {bound:?} after its last frame (ageing {AGEING:?}): fdb {last}\nkernel fp_fdb {:?}\nstats {}\n{}",
            kernel_stations(),
            d.show("stats").unwrap_or_default()["dataplane"],
            d.log()
        );
        std::thread::sleep(PERIOD);
    };
    eprintln!(
        "ageing_e2e {dataplane}: host 1 aged out {gone:?} after its last frame (ageing {AGEING:?})"
    );
    assert!(
        gone >= AGEING - Duration::from_millis(500),
        "host 1 aged out after {gone:?}, before the ageing time {AGEING:?}"
    );
    assert!(
        listed(&last, b),
        "host 2 kept sending, it must stay: {last}"
    );
    // Host 1 is unknown: host 2's frames to it are flooded (IEEE 802.1Q §8.8.3), host 3 gets
    // them, and host 1 still does.
    for c in [c1, c3] {
        c.drain().unwrap();
    }
    let after_gone: Vec<u32> = (0..5).map(|i| 1_000_000 + i).collect();
    for &s in &after_gone {
        c2.inject(&frame(a, b, b"lost", s)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        received(c3, b"lost"),
        after_gone,
        "frames to an aged-out station must be flooded\n{}",
        d.show("stats").unwrap_or_default()["dataplane"]
    );
    assert_eq!(received(c1, b"lost"), after_gone);
    if xdp {
        let stats = d.show("stats").unwrap();
        let kp = &stats["dataplane"]["kernel_path"];
        assert!(kp["stations_aged"].as_u64() >= Some(1), "{kp}");
    }
    d.stop().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn stations_age_by_fdb_ageing_in_the_kernel_fast_path() {
    netns_or_skip!();
    ageing_end_to_end("xdp", 91);
}

#[test]
fn stations_age_by_fdb_ageing_in_the_afxdp_workers() {
    netns_or_skip!();
    ageing_end_to_end("afxdp", 92);
}

/// Waits until the daemon's log contains `text`.
fn wait_log(d: &Daemon, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !d.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "never logged {text:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_reload_shortens_the_ageing_time_of_stations_already_learned() {
    netns_or_skip!();
    let net = 93;
    let star = Star::new(net, &[2, 2]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let ports: String = (1..=2)
        .map(|i| format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap()))
        .collect();
    let file = |ageing: &str| format!("dataplane = \"afxdp\"\nfdb_ageing = \"{ageing}\"\n{ports}");
    let tag = format!("ageing-{}", star.topo.prefix());
    let d =
        Daemon::run(star.switch().unwrap(), &tag, &file("1h")).unwrap_or_else(|e| panic!("{e}"));
    let c1 = star.capture(1).unwrap();
    let a = station(net, 1);
    // Learned under an ageing time of an hour.
    c1.inject(&frame(station(net, 2), a, b"once", 0)).unwrap();
    let heard = Instant::now();
    let fdb = d
        .wait_for("fdb", Duration::from_secs(3), |v| listed(v, a))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row(&fdb, a)["ageing_ms"], 3_600_000, "{fdb}");
    // A reload to 10 s applies to it: it ages 10 s after its frame, not an hour.
    std::fs::write(d.config_path(), file("10s")).unwrap();
    d.reload();
    d.wait_for("stats", Duration::from_secs(3), |v| {
        v["dataplane"]["fdb_ageing_ms"] == 10_000
    })
    .unwrap_or_else(|e| panic!("{e}"));
    wait_log(&d, "fdb_ageing changed");
    let fdb = d
        .wait_for("fdb", AGEING * 2, |v| !listed(v, a))
        .unwrap_or_else(|e| panic!("{e}"));
    let gone = heard.elapsed();
    assert!(
        gone >= AGEING - Duration::from_millis(500),
        "aged after {gone:?}: {fdb}"
    );
    // Out of range: refused, named, and the running value stays.
    std::fs::write(d.config_path(), file("5s")).unwrap();
    d.reload();
    wait_log(&d, "reload refused");
    let log = d.log();
    assert!(
        log.contains("fdb_ageing = 5s") && log.contains("10 s to 1000000 s"),
        "{log}"
    );
    assert_eq!(
        d.show("stats").unwrap()["dataplane"]["fdb_ageing_ms"],
        10_000
    );
    d.stop().unwrap_or_else(|e| panic!("{e}"));
}
