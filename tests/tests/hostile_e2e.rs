//! A host sends broken and hostile IGMP into a live `xsnoop run`: every frame is dropped or
//! ignored with a counted reason, nothing is learned from it, and a real member keeps receiving
//! its group throughout (RFC 4541 §2.1.1(5): never use damaged IGMP; the switch keeps switching).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use xsnoop_dataplane::wire::checksum::checksum;
use xsnoop_dataplane::wire::{
    parse_frame, to_vec, IgmpRepr, MacAddr, RawIgmpBuilder, RecordKind, RecordSpec,
    ReportV2Builder, ReportV3Builder, L3,
};
use xsnoop_tests::{netns_or_skip, Daemon, Membership, Sender, Star};

const NET: u8 = 66;
const REAL: Ipv4Addr = Ipv4Addr::new(239, 10, 10, 10);
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, NET, 0, 1);
const MAC: MacAddr = MacAddr([0x02, 0x66, 0, 0, 0, 1]);
/// Offset of the IPv4 header in an untagged frame.
const IP: usize = 14;

fn attack_group(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(239, 66, 0, n)
}

fn ihl(f: &[u8]) -> usize {
    usize::from(f[IP] & 0x0f) * 4
}

/// Recomputes the IPv4 header checksum.
fn fix_ip(f: &mut [u8]) {
    let h = ihl(f);
    f[IP + 10..IP + 12].fill(0);
    let c = checksum(&f[IP..IP + h]);
    f[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the IGMP checksum over the IP payload.
fn fix_igmp(f: &mut [u8]) {
    let start = IP + ihl(f);
    let total = usize::from(u16::from_be_bytes([f[IP + 2], f[IP + 3]]));
    let end = (IP + total).min(f.len());
    f[start + 2..start + 4].fill(0);
    let c = checksum(&f[start..end]);
    f[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
}

fn v3_join(group: Ipv4Addr, sources: &[Ipv4Addr], kind: RecordKind) -> Vec<u8> {
    to_vec(&ReportV3Builder {
        src_mac: MAC,
        src_ip: ATTACKER,
        records: &[RecordSpec {
            kind,
            group,
            sources,
            aux_data: &[],
        }],
        vlan: None,
    })
    .unwrap()
}

fn v2_report(group: Ipv4Addr) -> Vec<u8> {
    to_vec(&ReportV2Builder {
        src_mac: MAC,
        src_ip: ATTACKER,
        group,
        vlan: None,
    })
    .unwrap()
}

/// Frames the dataplane must drop as damaged IGMP, each for a different group, with the reason
/// it must be counted under.
fn damaged() -> Vec<(&'static str, Vec<u8>)> {
    let exclude = RecordKind::ModeIsExclude;
    let base = |n| v3_join(attack_group(n), &[], exclude);
    let mut out = Vec::new();
    // Cut inside the record: the IP total length now runs past the frame.
    let f = base(1);
    out.push(("truncated", f[..f.len() - 3].to_vec()));
    let mut f = base(2);
    f[IP + 10] ^= 0xff;
    out.push(("bad IP checksum", f));
    let mut f = base(3);
    let igmp = IP + ihl(&f);
    f[igmp + 2] ^= 0xff;
    out.push(("bad IGMP checksum", f));
    let mut f = base(4);
    f[IP] = 0x44;
    fix_ip(&mut f);
    out.push(("IHL 4", f));
    let mut f = base(5);
    f[IP + 6] |= 0x20; // More Fragments
    fix_ip(&mut f);
    out.push(("fragment", f));
    let mut f = base(6);
    let igmp = IP + ihl(&f);
    f[igmp + 6..igmp + 8].copy_from_slice(&50u16.to_be_bytes());
    fix_igmp(&mut f);
    out.push(("record count past the end", f));
    let mut f = v3_join(
        attack_group(7),
        &[Ipv4Addr::new(10, 9, 9, 9)],
        RecordKind::ModeIsInclude,
    );
    let igmp = IP + ihl(&f);
    f[igmp + 10..igmp + 12].copy_from_slice(&100u16.to_be_bytes());
    fix_igmp(&mut f);
    out.push(("source count past the end", f));
    let mut f = base(8);
    let igmp = IP + ihl(&f);
    f[igmp + 9] = 200; // aux data length, in words
    fix_igmp(&mut f);
    out.push(("aux data past the end", f));
    out
}

/// The counter each damaged frame must land in (`malformed_<WireError::reason>`).
const DAMAGE_REASONS: [&str; 8] = [
    "total_length_past_frame",
    "bad_ip_checksum",
    "bad_igmp_checksum",
    "bad_ihl",
    "fragment",
    "record_past_end",
    "sources_past_end",
    "aux_past_end",
];

/// Frames that parse but must teach the engine nothing.
fn meaningless() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "report for a unicast 'group'",
            v2_report(Ipv4Addr::new(10, 1, 1, 1)),
        ),
        (
            "report for a link-local group",
            v2_report(Ipv4Addr::new(224, 0, 0, 77)),
        ),
        (
            "IS_IN with impossible sources only",
            v3_join(
                attack_group(9),
                &[Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(239, 1, 1, 1)],
                RecordKind::ModeIsInclude,
            ),
        ),
        (
            "unknown record type",
            v3_join(attack_group(10), &[], RecordKind::Unknown(9)),
        ),
    ]
}

fn dp(stats: &Value, key: &str) -> u64 {
    stats["dataplane"]["reasons"][key].as_u64().unwrap_or(0)
}

fn ignored(stats: &Value, key: &str) -> u64 {
    stats["ignored"][key].as_u64().unwrap_or(0)
}

#[test]
fn damaged_and_hostile_igmp_is_counted_never_learned_and_forwarding_goes_on() {
    netns_or_skip!();
    let star = Star::new(NET, &[3, 3, 3]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let mut config = String::from("[snooping]\nquerier = false\n");
    for i in 1..=3 {
        config += &format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap());
    }
    let d = Daemon::run(
        star.switch().unwrap(),
        &format!("hostile-{}", star.topo.prefix()),
        &config,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _member =
        Membership::join(star.host(2).unwrap(), &star.host_if(2).unwrap(), REAL, 0).unwrap();
    let p2 = star.port(2).unwrap();
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        v.as_array()
            .is_some_and(|r| r.iter().any(|r| r["port"] == p2.as_str()))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let before = d.show("stats").unwrap();

    // The attacker (h1) injects; meanwhile h3 sends the real group to the member (h2).
    let attacker = star.capture(1).unwrap();
    let member = star.capture(2).unwrap();
    let sender = Sender::new(star.host(3).unwrap(), &star.host_if(3).unwrap(), 8).unwrap();
    let damaged = damaged();
    let meaningless = meaningless();
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        for (_, f) in damaged.iter().chain(&meaningless) {
            attacker.inject(f).unwrap();
        }
        sender
            .send(REAL, 5000, format!("real {round}").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let delivered = member
        .count(Duration::from_millis(500), |f| {
            matches!(parse_frame(f), Ok(p) if matches!(p.l3, L3::Ipv4 { ip, protocol: 17 } if ip.dst == REAL))
        })
        .unwrap();
    assert_eq!(
        delivered, ROUNDS,
        "the member lost real traffic during the barrage"
    );

    // Every damaged frame was dropped as damaged IGMP; the meaningless ones were ignored, each
    // under its reason; nothing of either was learned.
    let deadline = Instant::now() + Duration::from_secs(3);
    let after = loop {
        let s = d.show("stats").unwrap();
        if dp(&s, "drop_malformed_igmp")
            >= dp(&before, "drop_malformed_igmp") + (damaged.len() * ROUNDS) as u64
            || Instant::now() > deadline
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        dp(&after, "drop_malformed_igmp") - dp(&before, "drop_malformed_igmp"),
        (damaged.len() * ROUNDS) as u64,
        "{:#}",
        after["dataplane"]
    );
    // Per port too: every damaged frame is charged to the attacker's port, none elsewhere.
    let malformed_on = |v: &serde_json::Value, i: usize| {
        v["dataplane"]["ports"]
            .as_array()
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p["port"] == star.port(i).unwrap().as_str())
            })
            .and_then(|p| p["malformed"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(
        malformed_on(&after, 1) - malformed_on(&before, 1),
        (damaged.len() * ROUNDS) as u64,
        "{:#}",
        after["dataplane"]["ports"]
    );
    assert_eq!(malformed_on(&after, 2) + malformed_on(&after, 3), 0);
    let n = ROUNDS as u64;
    for ((what, _), reason) in damaged.iter().zip(DAMAGE_REASONS) {
        let key = format!("malformed_{reason}");
        assert_eq!(
            dp(&after, &key) - dp(&before, &key),
            n,
            "{what} must be counted as {key}: {:#}",
            after["dataplane"]["reasons"]
        );
    }
    for (reason, per_round) in [
        ("report for a non-multicast group", 1),
        ("report for a link-local group", 1),
        ("invalid source address in a record", 2),
        ("unknown_v3_record_type", 1),
    ] {
        assert_eq!(
            ignored(&after, reason) - ignored(&before, reason),
            per_round * n,
            "{reason}: {:#}",
            after["ignored"]
        );
    }
    let mdb = d.show("mdb").unwrap();
    let learned: Vec<&Value> = mdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"] != REAL.to_string())
        .collect();
    assert!(
        learned.is_empty(),
        "learned from hostile input: {learned:?}"
    );
    // The switch is still healthy: the member's row is intact and it stops cleanly.
    assert!(mdb
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["port"] == p2.as_str()));
    d.stop().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn reports_with_ttl_above_one_or_without_router_alert_are_accepted_like_the_linux_bridge() {
    // RFC 4541 does not require dropping them and the Linux bridge accepts them; some embedded
    // IGMP stacks omit Router Alert. They are learned (and the facts are kept in Ipv4Info).
    netns_or_skip!();
    let star = Star::new(NET + 1, &[3, 3]).unwrap();
    star.prepare_for_afxdp().unwrap();
    let mut config = String::from("[snooping]\nquerier = false\n");
    for i in 1..=2 {
        config += &format!("[[port]]\nname = \"{}\"\n", star.port(i).unwrap());
    }
    let d = Daemon::run(
        star.switch().unwrap(),
        &format!("lenient-{}", star.topo.prefix()),
        &config,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let host = star.capture(1).unwrap();
    let src = Ipv4Addr::new(10, NET + 1, 0, 1);
    // TTL 64.
    let mut ttl = to_vec(&RawIgmpBuilder {
        src_mac: MAC,
        src_ip: src,
        dst_ip: attack_group(21),
        msg: IgmpRepr::ReportV2 {
            group: attack_group(21),
        },
        vlan: None,
    })
    .unwrap();
    ttl[IP + 8] = 64;
    fix_ip(&mut ttl);
    // No Router Alert: drop the 4-octet option.
    let mut no_ra = v2_report(attack_group(22));
    assert_eq!(ihl(&no_ra), 24, "builders emit Router Alert");
    no_ra.drain(IP + 20..IP + 24);
    no_ra[IP] = 0x45;
    let total = u16::from_be_bytes([no_ra[IP + 2], no_ra[IP + 3]]) - 4;
    no_ra[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    fix_ip(&mut no_ra);
    let L3::Igmp { ip, .. } = parse_frame(&no_ra).unwrap().l3 else {
        panic!("not IGMP")
    };
    assert!(!ip.router_alert);
    host.inject(&ttl).unwrap();
    host.inject(&no_ra).unwrap();
    let p1 = star.port(1).unwrap();
    d.wait_for("mdb", Duration::from_secs(3), |v| {
        let rows = v.as_array().cloned().unwrap_or_default();
        [21, 22].iter().all(|&n| {
            rows.iter()
                .any(|r| r["group"] == attack_group(n).to_string() && r["port"] == p1.as_str())
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    d.stop().unwrap_or_else(|e| panic!("{e}"));
}
