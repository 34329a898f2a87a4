//! Why a frame went where it went: drop reasons and forwarding reasons with stable snake_case
//! names, and the per-reason counters a worker keeps. The names are counter labels and `explain`
//! output: never rename one, only add.

use crate::table::MulticastRule;
use crate::wire::WireError;

use super::decide::Decision;

/// Why the dataplane refused a frame. Every variant is a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The ingress port has no VLAN configuration in the [`super::PortMap`].
    UnknownPort,
    /// The frame arrived on a port the caller reports as down.
    IngressDown,
    /// A tagged frame (VID ≠ 0) on an access port.
    TaggedOnAccess,
    /// An untagged or priority-tagged frame on a trunk without a native VLAN.
    UntaggedOnTrunk,
    /// A tagged frame whose VID the trunk does not allow.
    VlanNotAllowed,
    /// VID 4095, reserved by IEEE 802.1Q (Table 9-2): never a VLAN.
    ReservedVid,
    /// The VLAN is admitted by the port map but absent from the published forwarding table.
    VlanNotConfigured,
    /// A group (multicast/broadcast) or all-zero source MAC: no station sends from one, and it
    /// must never be learned (IEEE 802.1Q §8.7; the Linux bridge drops these too).
    InvalidSourceMac,
    /// 01:80:c2:00:00:00–0f (STP, pause, LACP, 802.1X, LLDP): IEEE 802.1Q §8.6.3 forbids relaying.
    ReservedL2Group,
    /// Shorter than an Ethernet header.
    TruncatedEthernet,
    /// An 802.1Q TPID without a whole tag behind it.
    TruncatedVlan,
    /// Stacked tags (QinQ / 802.1ad), which the switch does not support.
    Qinq,
    /// An IGMP frame that fails validation (bad IP or IGMP checksum, bad length, fragment):
    /// never forwarded nor used, only counted (RFC 4541 §2.1.1(5)).
    MalformedIgmp,
    /// A PIM Hello with a bad checksum or a truncated header.
    MalformedPim,
    /// A non-IGMP IPv4 header whose checksum does not verify (RFC 4541 §2.1.2(6)).
    BadIpChecksum,
    /// A non-IGMP IPv4 header that is structurally invalid (version, IHL, lengths, options).
    BadIpv4Header,
    /// A known unicast destination that sits behind the ingress port: nothing to forward.
    SamePort,
}

impl DropReason {
    /// Whether the frame itself was damaged (the codec rejected it), as opposed to a sound frame
    /// the switch had no business forwarding.
    pub const fn is_damage(self) -> bool {
        matches!(
            self,
            DropReason::TruncatedEthernet
                | DropReason::TruncatedVlan
                | DropReason::Qinq
                | DropReason::MalformedIgmp
                | DropReason::MalformedPim
                | DropReason::BadIpChecksum
                | DropReason::BadIpv4Header
        )
    }

    /// Every reason, in counter-index order.
    pub const ALL: [DropReason; 17] = [
        DropReason::UnknownPort,
        DropReason::IngressDown,
        DropReason::TaggedOnAccess,
        DropReason::UntaggedOnTrunk,
        DropReason::VlanNotAllowed,
        DropReason::ReservedVid,
        DropReason::VlanNotConfigured,
        DropReason::InvalidSourceMac,
        DropReason::ReservedL2Group,
        DropReason::TruncatedEthernet,
        DropReason::TruncatedVlan,
        DropReason::Qinq,
        DropReason::MalformedIgmp,
        DropReason::MalformedPim,
        DropReason::BadIpChecksum,
        DropReason::BadIpv4Header,
        DropReason::SamePort,
    ];

    /// Number of reasons (the size of a counter array).
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case label. Never renamed.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::UnknownPort => "unknown_port",
            DropReason::IngressDown => "ingress_down",
            DropReason::TaggedOnAccess => "tagged_on_access",
            DropReason::UntaggedOnTrunk => "untagged_on_trunk",
            DropReason::VlanNotAllowed => "vlan_not_allowed",
            DropReason::ReservedVid => "reserved_vid",
            DropReason::VlanNotConfigured => "vlan_not_configured",
            DropReason::InvalidSourceMac => "invalid_source_mac",
            DropReason::ReservedL2Group => "reserved_l2_group",
            DropReason::TruncatedEthernet => "truncated_ethernet",
            DropReason::TruncatedVlan => "truncated_vlan",
            DropReason::Qinq => "qinq",
            DropReason::MalformedIgmp => "malformed_igmp",
            DropReason::MalformedPim => "malformed_pim",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::BadIpv4Header => "bad_ipv4_header",
            DropReason::SamePort => "same_port",
        }
    }

    /// Index into a counter array (position in [`DropReason::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Which rule chose the egress ports of a forwarded frame (for counters and `explain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardReason {
    /// IPv4 multicast data to a registered group (RFC 4541 §2.1.2(1), (7)).
    McRegistered,
    /// IPv4 multicast data to an unregistered group: mrouters + flood ports (RFC 4541 §2.1.2(3)).
    McUnregistered,
    /// IPv4 multicast data to 224.0.0.0/24: flooded (RFC 4541 §2.1.2(2)).
    McLinkLocal,
    /// IPv4 multicast data in a VLAN with snooping off: flooded.
    McSnoopingDisabled,
    /// IPv4 multicast data to a group that overflowed a table limit under the `flood` policy.
    McOverflowFlood,
    /// Destination ff:ff:ff:ff:ff:ff: flooded.
    Broadcast,
    /// A group MAC that is not IPv4 multicast (IPv6 33:33:…, other L2 groups): flooded, snooping
    /// must not starve other protocols (RFC 4541 §2.1.2(4)).
    L2Multicast,
    /// Unicast to a MAC the FDB does not know (or knows behind a down port): flooded.
    UnknownUnicast,
    /// Unicast to a learned MAC: that port only.
    KnownUnicast,
}

impl ForwardReason {
    /// Every reason, in counter-index order.
    pub const ALL: [ForwardReason; 9] = [
        ForwardReason::McRegistered,
        ForwardReason::McUnregistered,
        ForwardReason::McLinkLocal,
        ForwardReason::McSnoopingDisabled,
        ForwardReason::McOverflowFlood,
        ForwardReason::Broadcast,
        ForwardReason::L2Multicast,
        ForwardReason::UnknownUnicast,
        ForwardReason::KnownUnicast,
    ];

    /// Number of reasons (the size of a counter array).
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case label. Never renamed.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardReason::McRegistered => "mc_registered",
            ForwardReason::McUnregistered => "mc_unregistered",
            ForwardReason::McLinkLocal => "mc_link_local",
            ForwardReason::McSnoopingDisabled => "mc_snooping_disabled",
            ForwardReason::McOverflowFlood => "mc_overflow_flood",
            ForwardReason::Broadcast => "broadcast",
            ForwardReason::L2Multicast => "l2_multicast",
            ForwardReason::UnknownUnicast => "unknown_unicast",
            ForwardReason::KnownUnicast => "known_unicast",
        }
    }

    /// Index into a counter array (position in [`ForwardReason::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The forwarding reason for a table rule; `None` for [`MulticastRule::UnknownVlan`], which
    /// is a drop.
    pub const fn from_rule(rule: MulticastRule) -> Option<ForwardReason> {
        match rule {
            MulticastRule::UnknownVlan => None,
            MulticastRule::SnoopingDisabled => Some(ForwardReason::McSnoopingDisabled),
            MulticastRule::LinkLocal => Some(ForwardReason::McLinkLocal),
            MulticastRule::Registered => Some(ForwardReason::McRegistered),
            MulticastRule::OverflowFlood => Some(ForwardReason::McOverflowFlood),
            MulticastRule::Unregistered => Some(ForwardReason::McUnregistered),
        }
    }
}

/// Per-worker decision counters: one slot per reason, plain integers (a worker owns its
/// counters; a stats reader sums the workers' snapshots).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    drops: [u64; DropReason::COUNT],
    forwards: [u64; ForwardReason::COUNT],
    /// Forwarded frames whose egress set came out empty (no member, everything down...).
    forwarded_nowhere: u64,
    punts: u64,
}

impl Counters {
    /// Counts one decision.
    pub fn record(&mut self, d: &Decision) {
        let slot = match d {
            Decision::Drop(r) => self.drops.get_mut(r.index()),
            Decision::Punt { .. } => Some(&mut self.punts),
            Decision::Forward(e) => {
                if e.ports.is_empty() {
                    self.forwarded_nowhere = self.forwarded_nowhere.wrapping_add(1);
                }
                self.forwards.get_mut(e.reason.index())
            }
        };
        if let Some(c) = slot {
            *c = c.wrapping_add(1);
        }
    }

    /// Frames dropped for `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops.get(r.index()).copied().unwrap_or(0)
    }

    /// Frames forwarded by rule `r` (including those whose egress set was empty).
    pub fn forwards(&self, r: ForwardReason) -> u64 {
        self.forwards.get(r.index()).copied().unwrap_or(0)
    }

    /// Frames handed to the control plane.
    pub fn punts(&self) -> u64 {
        self.punts
    }

    /// Forward decisions with no egress port left.
    pub fn forwarded_nowhere(&self) -> u64 {
        self.forwarded_nowhere
    }

    /// Every non-zero counter as (`drop_<reason>` / `fwd_<reason>` / `punt` / `fwd_nowhere`,
    /// value), for export. Allocates: not for the per-packet path.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for r in DropReason::ALL {
            let v = self.drops(r);
            if v != 0 {
                out.push((format!("drop_{}", r.name()), v));
            }
        }
        for r in ForwardReason::ALL {
            let v = self.forwards(r);
            if v != 0 {
                out.push((format!("fwd_{}", r.name()), v));
            }
        }
        if self.forwarded_nowhere != 0 {
            out.push(("fwd_nowhere".to_string(), self.forwarded_nowhere));
        }
        if self.punts != 0 {
            out.push(("punt".to_string(), self.punts));
        }
        out
    }
}

/// How many distinct parse-error reasons [`ParseErrors`] can hold (more than `WireError` has).
const PARSE_ERROR_SLOTS: usize = 32;

/// Damaged frames by the codec's own reason ([`WireError::reason`]): `malformed_igmp` says a
/// frame was dropped, this says why (bad checksum, record past the end ...), which is what an
/// operator needs to find the broken or hostile host. Fixed storage: recording never allocates.
#[derive(Clone, Debug)]
pub struct ParseErrors {
    slots: [(&'static str, u64); PARSE_ERROR_SLOTS],
    used: usize,
}

impl Default for ParseErrors {
    fn default() -> Self {
        ParseErrors {
            slots: [("", 0); PARSE_ERROR_SLOTS],
            used: 0,
        }
    }
}

impl ParseErrors {
    /// Counts one frame rejected with `err`.
    pub fn record(&mut self, err: WireError) {
        let reason = err.reason();
        let used = self.used.min(PARSE_ERROR_SLOTS);
        if let Some(slot) = self.slots[..used].iter_mut().find(|(r, _)| *r == reason) {
            slot.1 = slot.1.saturating_add(1);
        } else if let Some(slot) = self.slots.get_mut(used) {
            *slot = (reason, 1);
            self.used = used + 1;
        }
    }

    /// Every reason seen, with its count, as `malformed_<reason>` (allocates: housekeeping only).
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.slots[..self.used.min(PARSE_ERROR_SLOTS)]
            .iter()
            .map(|(r, n)| (format!("malformed_{r}"), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn snake(s: &str) -> bool {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    #[test]
    fn names_are_unique_snake_case_and_indices_match_all() {
        let mut seen = HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert!(snake(r.name()) && seen.insert(r.name()), "{}", r.name());
        }
        let mut seen = HashSet::new();
        for (i, r) in ForwardReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert!(snake(r.name()) && seen.insert(r.name()), "{}", r.name());
        }
    }

    #[test]
    fn every_table_rule_but_unknown_vlan_maps_to_a_forward_reason() {
        assert_eq!(ForwardReason::from_rule(MulticastRule::UnknownVlan), None);
        assert_eq!(
            ForwardReason::from_rule(MulticastRule::Registered),
            Some(ForwardReason::McRegistered)
        );
        assert_eq!(
            ForwardReason::from_rule(MulticastRule::Unregistered),
            Some(ForwardReason::McUnregistered)
        );
    }

    #[test]
    fn parse_errors_count_per_reason_without_growing() {
        let mut p = ParseErrors::default();
        p.record(WireError::BadIgmpChecksum);
        p.record(WireError::BadIgmpChecksum);
        p.record(WireError::Fragment);
        let snap = p.snapshot();
        assert_eq!(
            snap,
            vec![
                ("malformed_bad_igmp_checksum".to_string(), 2),
                ("malformed_fragment".to_string(), 1)
            ]
        );
    }
}
