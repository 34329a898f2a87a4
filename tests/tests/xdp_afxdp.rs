//! The XDP classifier and the AF_XDP port layer on real veths, end to end (root).
//!
//! (a) the classifier counts one injected frame of every class on the right port and class,
//!     hands them byte-identical to the port's AF_XDP socket, and passes frames of a queue
//!     without socket or of an unregistered interface to the kernel untouched;
//! (b) a minimal flood forwarder written here with the public API moves frames from host 1 to
//!     hosts 2 and 3 exactly once each (a burst of 5 000 with no loss) by putting the same UMEM
//!     frame on two TX rings, and the refcounted pool ends with every frame accounted for;
//! (c) dropping the loader leaves no XDP program on the interfaces.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use xsnoop_dataplane::afxdp::{
    AfXdp, AfXdpConfig, BindMode, BoundMode, FrameDesc, PortSpec, RxMeta, TxError, RX_BATCH,
};
use xsnoop_dataplane::packet_socket::ifindex;
use xsnoop_dataplane::wire::{
    to_vec, FrameBuilder, IgmpVersion, MacAddr, PimHelloBuilder, QueryBuilder, ReportV2Builder,
    UdpDataBuilder, VlanTag,
};
use xsnoop_dataplane::xdp::{AttachMode, Classifier, FrameClass};
use xsnoop_dataplane::PortSet;
use xsnoop_tests::{netns_or_skip, Capture, Netns, Star};

const HOST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 61, 0, 1);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const MARK: &[u8; 4] = b"XSNP";

fn raw_frame(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&HOST_MAC.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn udp(group: Ipv4Addr, payload: &[u8], vlan: Option<VlanTag>) -> Vec<u8> {
    to_vec(&UdpDataBuilder {
        src_mac: HOST_MAC,
        src_ip: HOST_IP,
        group,
        src_port: 5000,
        dst_port: 5001,
        ttl: 8,
        payload,
        vlan,
    })
    .unwrap()
}

fn report(group: Ipv4Addr, vlan: Option<VlanTag>) -> Vec<u8> {
    to_vec(&ReportV2Builder {
        src_mac: HOST_MAC,
        src_ip: HOST_IP,
        group,
        vlan,
    })
    .unwrap()
}

/// One or more frames of every class, each with the class the classifier must give it.
fn class_frames() -> Vec<(FrameClass, Vec<u8>)> {
    let mcast_mac = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
    // A truncated IPv4 header (10 of 20 octets) and one with IHL 4.
    let truncated = raw_frame(mcast_mac, 0x0800, &[0x45, 0, 0, 28, 0, 0, 0, 0, 1, 17]);
    let mut bad_ihl = udp(GROUP, b"bad ihl", None);
    bad_ihl[14] = 0x44;
    // IGMP whose IPv4 total length leaves only 4 octets of message.
    let mut short_igmp = report(GROUP, None);
    let ihl = usize::from(short_igmp[14] & 0x0f) * 4;
    let tot = u16::try_from(ihl + 4).unwrap();
    short_igmp[16..18].copy_from_slice(&tot.to_be_bytes());
    short_igmp.truncate(14 + ihl + 4);
    let arp_request: Vec<u8> = [
        &[0, 1, 8, 0, 6, 4, 0, 1][..],
        &HOST_MAC.0,
        &HOST_IP.octets(),
        &[0; 6],
        &[10, 61, 0, 2],
    ]
    .concat();
    vec![
        (FrameClass::Igmp, report(GROUP, None)),
        (FrameClass::Igmp, report(GROUP, Some(VlanTag::new(10, 0)))),
        (
            FrameClass::Pim,
            to_vec(&PimHelloBuilder {
                src_mac: HOST_MAC,
                src_ip: HOST_IP,
                holdtime: 105,
                vlan: None,
            })
            .unwrap(),
        ),
        (FrameClass::McastData, udp(GROUP, b"data", None)),
        (
            FrameClass::McastData,
            udp(GROUP, b"tagged data", Some(VlanTag::new(10, 3))),
        ),
        (
            FrameClass::LinkLocal,
            udp(Ipv4Addr::new(224, 0, 0, 251), b"mdns", None),
        ),
        (
            FrameClass::OtherMcast,
            raw_frame([0x01, 0x80, 0xc2, 0, 0, 0x0e], 0x88cc, &[0u8; 46]),
        ),
        (
            FrameClass::OtherMcast,
            raw_frame([0x33, 0x33, 0, 0, 0, 1], 0x86dd, &[0u8; 40]),
        ),
        (
            FrameClass::Broadcast,
            raw_frame([0xff; 6], 0x0806, &arp_request),
        ),
        (
            FrameClass::Unicast,
            raw_frame([0x02, 0, 0, 0, 0, 0x99], 0x88b5, b"unicast payload"),
        ),
        (FrameClass::Malformed, truncated),
        (FrameClass::Malformed, bad_ihl),
        (FrameClass::Malformed, short_igmp),
    ]
}

/// The switch side of a test: the classifier on ports `p1..pN` (slots 0..N-1) and one AF_XDP
/// socket per port on a shared UMEM, all created inside the switch namespace.
struct Switch {
    xs: AfXdp,
    cls: Classifier,
    ifindexes: Vec<u32>,
}

fn switch_up(sw: &Netns, ports: &[String], cfg: AfXdpConfig) -> Switch {
    switch_up_in(sw, ports, cfg, AttachMode::Native)
}

fn switch_up_in(sw: &Netns, ports: &[String], cfg: AfXdpConfig, mode: AttachMode) -> Switch {
    sw.run(|| {
        let mut cls = Classifier::load().unwrap();
        let mut specs = Vec::new();
        for (slot, name) in ports.iter().enumerate() {
            let idx = u32::try_from(ifindex(name).unwrap()).unwrap();
            assert_eq!(cls.attach(name, mode).unwrap(), mode);
            cls.register_port(idx, u32::try_from(slot).unwrap())
                .unwrap();
            specs.push(PortSpec {
                ifindex: idx,
                queue: 0,
            });
        }
        let xs = AfXdp::new(cfg, &specs).unwrap();
        // veth has no zero-copy: Auto must have fallen back to copy mode.
        assert_eq!(xs.mode(), BoundMode::Copy);
        for slot in 0..ports.len() {
            cls.install_socket(u32::try_from(slot).unwrap(), 0, xs.socket_fd(slot).unwrap())
                .unwrap();
        }
        Switch {
            xs,
            cls,
            ifindexes: specs.iter().map(|s| s.ifindex).collect(),
        }
    })
    .unwrap()
}

fn small_cfg() -> AfXdpConfig {
    AfXdpConfig {
        frame_count: 1024,
        frame_size: 2048,
        fill_size: 256,
        comp_size: 256,
        rx_size: 256,
        tx_size: 256,
        mode: BindMode::Auto,
    }
}

/// Receives from `port` until `want` frames arrived or `deadline`; copies them out with their
/// metadata and releases them.
fn receive(
    xs: &mut AfXdp,
    port: usize,
    want: usize,
    deadline: Instant,
) -> Vec<(Vec<u8>, Option<RxMeta>)> {
    let mut out = Vec::new();
    let mut descs = [FrameDesc::default(); RX_BATCH];
    while out.len() < want && Instant::now() < deadline {
        let n = xs.rx_batch(port, &mut descs);
        if n == 0 {
            xs.wait_rx(10);
        }
        for d in &descs[..n] {
            out.push((xs.frame(*d).unwrap().to_vec(), xs.rx_meta(*d)));
            xs.release(*d).unwrap();
        }
    }
    out
}

fn link_has_xdp(ns: &Netns, ifname: &str) -> bool {
    let out = ns.ip(&["-d", "link", "show", "dev", ifname]).unwrap();
    out.split_whitespace()
        .any(|w| w.starts_with("xdp") || w == "prog/xdp")
}

#[test]
fn classifier_counts_every_class_and_hands_frames_to_the_socket() {
    netns_or_skip!("classifier_counts_every_class_and_hands_frames_to_the_socket");
    classify_on(AttachMode::Native, 61);
}

#[test]
fn classifier_works_in_generic_skb_mode_too() {
    netns_or_skip!("classifier_works_in_generic_skb_mode_too");
    classify_on(AttachMode::Skb, 64);
}

fn classify_on(mode: AttachMode, net: u8) {
    let star = Star::new(net, &[2, 2]).unwrap();
    let sw = star.switch().unwrap();
    let p1 = star.port(1).unwrap();
    let p2 = star.port(2).unwrap();
    let h1 = star.capture(1).unwrap();
    let h2 = star.capture(2).unwrap();
    let sw_p1 = Capture::open(sw, &p1).unwrap();
    let sw_p2 = Capture::open(sw, &p2).unwrap();

    // Only p1 is a registered port; p2 carries the program but no slot.
    let mut s = switch_up_in(sw, std::slice::from_ref(&p1), small_cfg(), mode);
    sw.run(|| s.cls.attach(&p2, mode).unwrap()).unwrap();

    let frames = class_frames();
    for (_, f) in &frames {
        h1.inject(f).unwrap();
    }
    let got = receive(
        &mut s.xs,
        0,
        frames.len(),
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(got.len(), frames.len(), "frames reaching the socket");
    let mut meta_seen = 0;
    for ((class, sent), (bytes, meta)) in frames.iter().zip(&got) {
        assert_eq!(bytes, sent, "frame of class {class:?} altered or reordered");
        if let Some(m) = meta {
            assert_eq!(m.class, *class, "metadata class of {sent:02x?}");
            assert_eq!(m.slot, 0);
            meta_seen += 1;
        }
    }
    eprintln!(
        "xdp_afxdp: {mode:?} XDP, copy-mode AF_XDP: metadata (bpf_xdp_adjust_meta) reached the socket for {meta_seen} of {} frames",
        frames.len()
    );
    // Measured on Linux 6.18 (veth, native and generic XDP, copy mode): the metadata arrives.
    // Asserted so that `rx_meta` is proven to work and a kernel that stops copying it is noticed.
    assert_eq!(meta_seen, frames.len(), "metadata lost in {mode:?} mode");

    let c = s.cls.counters(0).unwrap();
    let mut expect: BTreeMap<usize, u64> = BTreeMap::new();
    for (class, _) in &frames {
        *expect.entry(class.index()).or_default() += 1;
    }
    for class in FrameClass::ALL {
        assert_eq!(
            c.class(class),
            expect.get(&class.index()).copied().unwrap_or(0),
            "counter of {class:?}: {c:?}"
        );
    }
    assert_eq!(c.redirected, frames.len() as u64);
    assert_eq!(c.redirect_failed, 0);
    // Redirected frames bypass the switch's kernel stack entirely.
    let stack_saw = sw_p1.count(Duration::from_millis(200), |_| true).unwrap();
    assert_eq!(stack_saw, 0, "the kernel stack of p1 saw redirected frames");

    // Without a socket for (slot 0, queue 0) the frame is counted and passed to the kernel.
    s.cls.remove_socket(0, 0).unwrap();
    let probe = udp(GROUP, b"to the stack", None);
    h1.inject(&probe).unwrap();
    let (seen, hit) = sw_p1
        .until(Instant::now() + Duration::from_secs(3), |f| {
            f == probe.as_slice()
        })
        .unwrap();
    assert!(
        hit,
        "frame without socket did not reach the stack: {seen:?}"
    );
    let c = s.cls.counters(0).unwrap();
    assert_eq!(c.redirect_failed, 1);
    assert_eq!(c.class(FrameClass::McastData), 3);

    // An interface with the program but no slot passes everything untouched and counts nothing.
    let on_p2 = report(GROUP, None);
    h2.inject(&on_p2).unwrap();
    let (_, hit) = sw_p2
        .until(Instant::now() + Duration::from_secs(3), |f| {
            f == on_p2.as_slice()
        })
        .unwrap();
    assert!(hit, "frame of an unregistered interface did not pass");
    for slot in 1..4 {
        assert_eq!(s.cls.counters(slot).unwrap().total(), 0, "slot {slot}");
    }
    // Nothing was sent back to the host.
    assert_eq!(h1.count(Duration::from_millis(100), |_| true).unwrap(), 0);
    assert!(s.xs.audit().unwrap().balanced());
}

/// Floods every frame from each port to every other port, replicating by reference, until
/// `stop`, publishing the number of frames received in `progress`; then drains. Returns when
/// nothing is in flight.
fn flood(xs: &mut AfXdp, stop: &AtomicBool, progress: &AtomicU64) -> (u64, Duration) {
    let n = xs.port_count();
    let mut descs = [FrameDesc::default(); RX_BATCH];
    let mut moved = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        for inp in 0..n {
            let k = xs.rx_batch(inp, &mut descs);
            for d in &descs[..k] {
                for out in (0..n).filter(|&o| o != inp) {
                    xs.tx(out, *d).unwrap();
                }
                xs.release(*d).unwrap();
            }
            got += k;
        }
        xs.flush();
        if got > 0 {
            moved += got as u64;
            progress.store(moved, Ordering::Relaxed);
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
        } else if xs.tx_outstanding() == 0 {
            xs.wait_rx(2);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while (xs.tx_outstanding() > 0 || xs.accounting().in_flight > 0) && Instant::now() < deadline {
        xs.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    (moved, last.duration_since(first.unwrap_or(last)))
}

/// Everything `cap` reads until half a second after `done` is set (at most 30 s).
fn collect_until(cap: &Capture, done: &AtomicBool) -> Vec<xsnoop_tests::Frame> {
    let hard = Instant::now() + Duration::from_secs(30);
    let mut done_at: Option<Instant> = None;
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        if done.load(Ordering::Relaxed)
            && now >= *done_at.get_or_insert(now) + Duration::from_millis(500)
        {
            break;
        }
        if now >= hard {
            break;
        }
        if let Some(f) = cap.next_frame(now + Duration::from_millis(20)).unwrap() {
            out.push(f);
        }
    }
    out
}

fn seq_of(frame: &[u8]) -> Option<u32> {
    let at = frame.windows(MARK.len()).position(|w| w == MARK)?;
    let s = frame.get(at + 4..at + 8)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

#[test]
fn flood_forwarder_replicates_by_reference_without_loss() {
    netns_or_skip!("flood_forwarder_replicates_by_reference_without_loss");
    let star = Star::new(62, &[2, 2, 2]).unwrap();
    let sw = star.switch().unwrap();
    let ports: Vec<String> = (1..=3).map(|i| star.port(i).unwrap()).collect();
    let caps: Vec<Capture> = (1..=3).map(|i| star.capture(i).unwrap()).collect();

    let cfg = AfXdpConfig::default();
    let mut s = switch_up(sw, &ports, cfg);
    let total = s.xs.accounting().total;
    assert_eq!(total, cfg.frame_count);
    // Every fill ring starts at the floor; a busy one grows from there.
    let floor = s.xs.fill_floor();
    assert_eq!(floor, 256);
    for i in 0..3 {
        assert_eq!(s.xs.fill_depth(i), Some(floor), "fill depth of port {i}");
        assert_eq!(s.xs.in_fill(i), Some(floor), "fill ring of port {i}");
    }

    const BURST: u32 = 5000;
    const REPORTS: u32 = 20;
    let stop = AtomicBool::new(false);
    let sent_all = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let (moved, busy, collected) = std::thread::scope(|scope| {
        let fwd = scope.spawn(|| flood(&mut s.xs, &stop, &progress));
        let collectors: Vec<_> = caps
            .iter()
            .map(|c| scope.spawn(|| collect_until(c, &sent_all)))
            .collect();
        // Host 1 sends the burst in chunks of 64 (a NIC-like burst), with IGMP reports mixed in,
        // waiting before each chunk until it is at most floor / 2 frames ahead of the switch:
        // so never more than floor / 2 + 65 ahead, while the port's fill ring holds at least
        // floor - 31 (it is topped up in steps of 32), and the kernel never runs out of frames
        // however slow this machine is (this test is about losing nothing in the switch, the
        // rate is measured below). floor - 64 ahead lost 19 frames once in CI.
        let mut injected = 0u64;
        let wait_for_switch = |ahead: u64, injected: u64| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while progress.load(Ordering::Relaxed) + ahead < injected && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        };
        for seq in 0..BURST {
            let mut payload = MARK.to_vec();
            payload.extend_from_slice(&seq.to_be_bytes());
            caps[0].inject(&udp(GROUP, &payload, None)).unwrap();
            injected += 1;
            if seq % (BURST / REPORTS) == 0 {
                caps[0].inject(&report(GROUP, None)).unwrap();
                injected += 1;
            }
            if seq % 64 == 63 {
                wait_for_switch(u64::from(floor) / 2, injected);
            }
        }
        wait_for_switch(0, injected);
        sent_all.store(true, Ordering::Relaxed);
        let collected: Vec<_> = collectors.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        let (moved, busy) = fwd.join().unwrap();
        (moved, busy, collected)
    });

    let sent = u64::from(BURST + REPORTS);
    eprintln!(
        "xdp_afxdp: flood moved {moved} frames in, {} out in {:.3} s of forwarding: ~{:.0} frames/s in, ~{:.0} frames/s out (paced sender)",
        moved * 2,
        busy.as_secs_f64(),
        moved as f64 / busy.as_secs_f64().max(1e-6),
        (moved * 2) as f64 / busy.as_secs_f64().max(1e-6)
    );
    for i in 0..3 {
        eprintln!(
            "xdp_afxdp: port {i} {:?} kernel {:?} xdp {:?}",
            s.xs.stats(i).unwrap(),
            s.xs.kernel_stats(i).unwrap().unwrap(),
            s.cls.counters(u32::try_from(i).unwrap()).unwrap()
        );
    }
    assert_eq!(moved, sent, "frames the switch received from host 1");

    // Host 1 gets nothing back; hosts 2 and 3 get every frame exactly once.
    let from_switch = |frames: &Vec<xsnoop_tests::Frame>| -> Vec<Vec<u8>> {
        frames
            .iter()
            .filter(|f| !f.outgoing)
            .map(|f| f.bytes.clone())
            .collect()
    };
    assert_eq!(from_switch(&collected[0]).len(), 0, "echo to the sender");
    for (h, frames) in collected.iter().enumerate().skip(1) {
        let host = h + 1;
        let got = from_switch(frames);
        let mut seqs: Vec<u32> = got.iter().filter_map(|f| seq_of(f)).collect();
        let reports = got.iter().filter(|f| f.get(23) == Some(&2)).count();
        assert_eq!(seqs.len(), BURST as usize, "data frames at host {host}");
        let in_order = seqs.windows(2).all(|w| w[0] < w[1]);
        seqs.dedup();
        assert_eq!(seqs.len(), BURST as usize, "duplicates at host {host}");
        assert!(in_order, "reordered at host {host}");
        assert_eq!(reports, REPORTS as usize, "IGMP reports at host {host}");
        assert_eq!(
            got.len(),
            (BURST + REPORTS) as usize,
            "other frames at host {host}"
        );
    }
    for i in 0..3 {
        let st = s.xs.stats(i).unwrap();
        if i > 0 {
            assert_eq!(st.tx, sent, "TX on port {i}");
            assert_eq!(st.completions, sent, "completions on port {i}'s own ring");
        }
        assert_eq!(st.tx_ring_full + st.rx_bad + st.completions_bad, 0);
    }
    // Every frame is back: free or in a fill ring, nothing in flight, and the per-frame states
    // agree with the counters.
    let acc = s.xs.audit().unwrap();
    assert_eq!(acc.in_flight, 0, "{acc:?}");
    assert_eq!(acc.free + acc.in_fill, total, "{acc:?}");

    // Unpaced: the sender injects as fast as it can. Only the rate is reported (the sender and
    // the forwarder share 2 CPUs); the pool must still balance whatever the kernel dropped.
    const FAST: u32 = 20_000;
    let frames: Vec<Vec<u8>> = (0..FAST)
        .map(|seq| {
            let mut payload = MARK.to_vec();
            payload.extend_from_slice(&seq.to_be_bytes());
            udp(GROUP, &payload, None)
        })
        .collect();
    let before = s.xs.stats(1).unwrap().tx;
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let (moved, busy, send_time) = std::thread::scope(|scope| {
        let fwd = scope.spawn(|| flood(&mut s.xs, &stop, &progress));
        let t0 = Instant::now();
        for f in &frames {
            caps[0].inject(f).unwrap();
        }
        let send_time = t0.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let (moved, busy) = fwd.join().unwrap();
        (moved, busy, send_time)
    });
    let out = s.xs.stats(1).unwrap().tx - before;
    eprintln!(
        "xdp_afxdp: unpaced: sender {FAST} frames in {:.3} s ({:.0}/s); switch moved {moved} in / {} out (port 2) in {:.3} s: ~{:.0} frames/s in, ~{:.0} replicas/s out; kernel port 1 {:?}; its fill depth {:?}",
        send_time.as_secs_f64(),
        f64::from(FAST) / send_time.as_secs_f64().max(1e-6),
        out,
        busy.as_secs_f64(),
        moved as f64 / busy.as_secs_f64().max(1e-6),
        (2 * out) as f64 / busy.as_secs_f64().max(1e-6),
        s.xs.kernel_stats(0).unwrap().unwrap(),
        s.xs.fill_depth(0)
    );
    let acc = s.xs.audit().unwrap();
    assert_eq!(acc.in_flight, 0, "{acc:?}");
    assert_eq!(acc.free + acc.in_fill, total, "{acc:?}");
}

#[test]
fn switch_originated_frame_is_built_in_the_umem_and_sent_on_every_port() {
    netns_or_skip!("switch_originated_frame_is_built_in_the_umem_and_sent_on_every_port");
    let star = Star::new(65, &[2, 2]).unwrap();
    let sw = star.switch().unwrap();
    let ports: Vec<String> = (1..=2).map(|i| star.port(i).unwrap()).collect();
    let caps: Vec<Capture> = (1..=2).map(|i| star.capture(i).unwrap()).collect();
    let mut s = switch_up(sw, &ports, small_cfg());
    let query = QueryBuilder {
        version: IgmpVersion::V2,
        src_mac: MacAddr([0x02, 0, 0, 0, 0, 0xfe]),
        src_ip: Ipv4Addr::new(10, 65, 0, 254),
        group: None,
        sources: &[],
        max_resp: Duration::from_secs(1),
        s_flag: false,
        qrv: 0,
        qqi: Duration::from_secs(125),
        vlan: None,
    };
    let before = s.xs.accounting();
    let mut frame = s.xs.alloc().unwrap();
    let len = query.emit(s.xs.frame_mut(frame).unwrap()).unwrap();
    frame.len = u32::try_from(len).unwrap();
    // All ports or none: a port beyond the set stages no copy and takes no reference (a leak
    // would show in the final audit).
    assert!(matches!(
        s.xs.tx_each(PortSet::from_bits(0b101), frame),
        Err(TxError::NoSuchPort(2))
    ));
    assert_eq!(s.xs.tx_each(PortSet::from_bits(0b11), frame).unwrap(), 2);
    s.xs.release(frame).unwrap();
    assert_eq!(
        s.xs.accounting().in_flight,
        1,
        "one frame, two TX references"
    );
    s.xs.flush();
    let expected = to_vec(&query).unwrap();
    for (i, c) in caps.iter().enumerate() {
        let (seen, hit) = c
            .until(Instant::now() + Duration::from_secs(3), |f| {
                f == expected.as_slice()
            })
            .unwrap();
        assert!(hit, "query not received by host {}: {seen:?}", i + 1);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.xs.accounting().in_flight > 0 && Instant::now() < deadline {
        s.xs.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        s.xs.audit().unwrap(),
        before,
        "the frame came back after both completions"
    );
    assert!(
        s.xs.tx(0, frame).is_err(),
        "a released frame cannot be sent"
    );
}

#[test]
fn dropping_the_loader_detaches_everything() {
    netns_or_skip!("dropping_the_loader_detaches_everything");
    let star = Star::new(63, &[2, 2]).unwrap();
    let sw = star.switch().unwrap();
    let ports: Vec<String> = (1..=2).map(|i| star.port(i).unwrap()).collect();
    let s = switch_up(sw, &ports, small_cfg());
    for p in &ports {
        assert!(link_has_xdp(sw, p), "{p} has no XDP program while attached");
    }
    assert_eq!(s.ifindexes.len(), 2);
    drop(s);
    for p in &ports {
        assert!(
            !link_has_xdp(sw, p),
            "{p} still has an XDP program: {}",
            sw.ip(&["-d", "link", "show", "dev", p]).unwrap()
        );
    }
    // Explicit detach of one port while the loader lives.
    let mut s = switch_up(sw, &ports, small_cfg());
    sw.run(|| s.cls.detach(&ports[0]).unwrap()).unwrap();
    assert!(!link_has_xdp(sw, &ports[0]));
    assert!(link_has_xdp(sw, &ports[1]));
    assert!(s.cls.detach(&ports[0]).is_err());

    // Loopback has no native XDP: Native fails with a hint, NativeOrSkb falls back to generic.
    sw.run(|| {
        let err = s
            .cls
            .attach("lo", AttachMode::Native)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NativeOrSkb"), "{err}");
        assert_eq!(
            s.cls.attach("lo", AttachMode::NativeOrSkb).unwrap(),
            AttachMode::Skb
        );
        let err = s
            .cls
            .attach("nosuchif0", AttachMode::Skb)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such interface"), "{err}");
    })
    .unwrap();
    assert!(link_has_xdp(sw, "lo"));
    drop(s);
    assert!(!link_has_xdp(sw, "lo"));
}
