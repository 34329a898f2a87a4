//! The IGMP report flood of issue 5 §4: while the multicast measurement runs, one extra port of
//! the bed sends IGMPv3 reports (RFC 3376 §4.2), each for a different random group, at a fixed
//! rate. A snooping switch must keep forwarding its registered groups meanwhile and its control
//! plane must survive (xsnoop polices reports per port before the engine; the Linux bridge
//! learns every group it can).
//!
//! The sender is the live-frames generator with `bench_flood` (`bpf/gen.bpf.c`), which writes a
//! random group from 239.128.0.0/9 into the template below and recomputes the IGMP checksum on
//! every repetition; this module builds the template with the dataplane's codec and paces the
//! runs so the flood offers [`FloodPlan::rate`] reports per second rather than all one CPU can.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use xsnoop_dataplane::wire::{to_vec, MacAddr, RecordKind, RecordSpec, ReportV3Builder};

use crate::livegen::{GenError, BATCH};

/// Offset of the IGMP message in the template: 14 B Ethernet + 24 B IPv4 with Router Alert
/// (keep in sync with `FLOOD_IGMP_OFF` in `bpf/gen.bpf.c`).
pub const FLOOD_IGMP_OFF: usize = 38;
/// Length of the IGMP message: an 8 B report header and one 8 B record without sources (keep in
/// sync with `FLOOD_IGMP_LEN`).
pub const FLOOD_IGMP_LEN: usize = 16;
/// Offset of the record's group address, which `bench_flood` rewrites.
pub const FLOOD_GROUP_OFF: usize = FLOOD_IGMP_OFF + 12;
/// Reports per `BPF_PROG_RUN` call: small enough to pace smoothly, large enough that the
/// syscall costs little next to the frames.
const CHUNK: u32 = 256;

/// How hard the flood is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodPlan {
    /// Reports offered per second.
    pub rate: u32,
}

/// What one flood run offered.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FloodRun {
    /// Reports handed to the interface.
    pub reports: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl FloodRun {
    /// Offered reports per second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.reports as f64 / s
        } else {
            0.0
        }
    }
}

/// The template report from host `src` (MAC `src_mac`): one MODE_IS_EXCLUDE record with no
/// sources, i.e. a join (RFC 3376 §4.2.12), for a placeholder group `bench_flood` replaces.
pub fn template(src_mac: [u8; 6], src: Ipv4Addr) -> Result<Vec<u8>, GenError> {
    let records = [RecordSpec {
        kind: RecordKind::ModeIsExclude,
        group: Ipv4Addr::new(239, 128, 0, 1),
        sources: &[],
        aux_data: &[],
    }];
    let frame = to_vec(&ReportV3Builder {
        src_mac: MacAddr(src_mac),
        src_ip: src,
        records: &records,
        vlan: None,
    })
    .map_err(|e| GenError::Build(e.to_string()))?;
    if frame.len() != FLOOD_IGMP_OFF + FLOOD_IGMP_LEN {
        return Err(GenError::Build(format!(
            "the v3 report template is {} B, bench_flood expects {} B",
            frame.len(),
            FLOOD_IGMP_OFF + FLOOD_IGMP_LEN
        )));
    }
    let placeholder = Ipv4Addr::new(239, 128, 0, 1).octets();
    if frame.get(FLOOD_GROUP_OFF..FLOOD_GROUP_OFF + 4) != Some(&placeholder[..]) {
        return Err(GenError::Build(format!(
            "the v3 report template has no group at offset {FLOOD_GROUP_OFF}"
        )));
    }
    Ok(frame)
}

/// Runs the flood from `ifindex` (in the calling thread's namespace) until `stop` says so or
/// `limit` has passed, pacing chunks of [`CHUNK`] reports to `plan.rate` per second.
pub fn run(
    prog_fd: RawFd,
    ifindex: u32,
    frame: &[u8],
    plan: FloodPlan,
    limit: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<FloodRun, GenError> {
    let rate = f64::from(plan.rate.max(1));
    let start = Instant::now();
    let mut reports = 0u64;
    while start.elapsed() < limit && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        xsnoop_dataplane::xdp::probe::live_frames(prog_fd, ifindex, frame, CHUNK, BATCH)
            .map_err(|source| GenError::TestRun { ifindex, source })?;
        reports += u64::from(CHUNK);
        let due = Duration::from_secs_f64(reports as f64 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(FloodRun {
        reports,
        elapsed: start.elapsed(),
    })
}

/// What `bench_flood` does to the template on every repetition, in Rust: writes `group` and
/// recomputes the IGMP checksum from scratch. The test runs it on the codec's template and
/// parses the result, which pins the offsets the BPF program uses.
#[cfg(test)]
fn rewrite(frame: &mut [u8], group: Ipv4Addr) {
    let igmp = &mut frame[FLOOD_IGMP_OFF..FLOOD_IGMP_OFF + FLOOD_IGMP_LEN];
    igmp[12..16].copy_from_slice(&group.octets());
    igmp[2] = 0;
    igmp[3] = 0;
    let mut sum: u32 = igmp
        .chunks(2)
        .map(|w| (u32::from(w[0]) << 8) | u32::from(w[1]))
        .sum();
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let sum = !sum & 0xffff;
    igmp[2] = (sum >> 8) as u8;
    igmp[3] = (sum & 0xff) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsnoop_dataplane::wire::{parse_frame, IgmpRepr, WireError, L3};

    /// The group of the one record, read by the dataplane's parser (which checks the IGMP
    /// checksum).
    fn group_of(frame: &[u8]) -> Result<Ipv4Addr, WireError> {
        let parsed = parse_frame(frame)?;
        let L3::Igmp {
            msg: IgmpRepr::ReportV3 { records },
            ..
        } = parsed.l3
        else {
            panic!("not a v3 report: {parsed:?}");
        };
        let all: Vec<_> = records.iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].kind, RecordKind::ModeIsExclude);
        assert_eq!(all[0].sources.len(), 0);
        Ok(all[0].group)
    }

    #[test]
    fn the_template_is_a_valid_v3_join_whose_group_the_flood_program_can_rewrite() {
        let mut f = template([2, 0, 0, 0, 0, 9], Ipv4Addr::new(10, 1, 0, 9)).unwrap();
        assert_eq!(f.len(), FLOOD_IGMP_OFF + FLOOD_IGMP_LEN);
        assert_eq!(f[FLOOD_IGMP_OFF], 0x22, "IGMPv3 report type");
        assert_eq!(&f[30..34], &[224, 0, 0, 22], "to IGMPv3-capable routers");
        assert_eq!(group_of(&f).unwrap(), Ipv4Addr::new(239, 128, 0, 1));
        for g in [
            Ipv4Addr::new(239, 200, 7, 9),
            Ipv4Addr::new(239, 255, 255, 255),
            Ipv4Addr::new(239, 128, 0, 0),
        ] {
            rewrite(&mut f, g);
            assert_eq!(
                group_of(&f).unwrap(),
                g,
                "the checksum holds after a rewrite"
            );
            assert_eq!(&f[FLOOD_GROUP_OFF..FLOOD_GROUP_OFF + 4], &g.octets());
        }
        // A wrong checksum is refused, so the parse above really checked it.
        f[FLOOD_IGMP_OFF + 3] ^= 1;
        assert_eq!(group_of(&f), Err(WireError::BadIgmpChecksum));
    }
}
