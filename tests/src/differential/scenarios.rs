//! The issue-3 §6 scenarios, each a function over any [`SwitchUnderTest`] returning the hosts'
//! delivery matrix.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::bed::{Bed, QueryInjector};
use super::matrix::Matrix;
use super::switches::SwitchUnderTest;

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
/// h3 does nothing; h4 is S1, h5 is S2. Then h2 unblocks S1 (EXCLUDE {}).
pub fn v3_source_filter(sut: &dyn SwitchUnderTest) -> Result<Matrix> {
    let mut bed = Bed::start(sut, "2 v3 include/exclude", 32, &[3, 3, 3, 3, 3], |_| {})?;
    let s1 = bed.addr(4);
    let _m1 = bed.join_source(1, G1, s1)?;
    let m2 = bed.join(2, G1)?;
    // The block as a report of its own (BLOCK {S1}, RFC 3376 §5.1), not folded into the join:
    // the switch then asks Q(G1,{S1}) on h2's port (§6.4.2), deterministically.
    std::thread::sleep(LEARN);
    m2.block_source(s1).map_err(|e| anyhow!("{e}"))?;
    std::thread::sleep(LEARN);
    bed.send(4, G1)?;
    bed.send(5, G1)?;
    bed.phase("filters", SETTLE)?;
    m2.unblock_source(s1).map_err(|e| anyhow!("{e}"))?;
    // Data only after a full query cycle, by which h2 has answered a general query with IS_EX {}
    // (RFC 3376 §6.4.1: EXCLUDE (X,Y) + IS_EX {} deletes S1's source record; S1 is then
    // forwarded like any source). Sooner, the bridge's answer depends on whether that report
    // has arrived yet (it stops forwarding S1 to h2 once it has).
    std::thread::sleep(
        bed.cfg.query_interval + bed.cfg.query_response_interval + Duration::from_secs(1),
    );
    bed.send(4, G1)?;
    bed.send(5, G1)?;
    bed.phase("unblocked+QI", SETTLE)?;
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
