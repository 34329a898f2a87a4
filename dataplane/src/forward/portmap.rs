//! The port VLAN model: which VLAN a received frame belongs to, and whether a frame leaves a port
//! tagged or untagged (IEEE 802.1Q §6.9 ingress classification, §8.8.2 egress tagging).
//!
//! The control plane builds a [`PortMap`] from configuration and publishes it through a
//! [`PortMapHandle`] beside the forwarding table; workers read it lock-free. All per-frame
//! questions are answered from precomputed per-VLAN bitmaps, so they cost one or two array reads.

use super::policer::PuntLimit;
use crate::wire::MacAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::portset::{PortId, PortSet, MAX_PORTS};
use crate::table::VlanId;
use crate::wire::VlanTag;

use super::reason::DropReason;

/// Lowest usable VLAN id (0 means "priority-tagged only", IEEE 802.1Q Table 9-2).
pub const MIN_VID: VlanId = 1;
/// Highest usable VLAN id (4095 is reserved, IEEE 802.1Q Table 9-2).
pub const MAX_VID: VlanId = 4094;
/// Number of 12-bit VID values; the size of the per-VLAN bitmap arrays.
const VID_SPACE: usize = 4096;

/// How one port carries VLANs, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortVlanConfig {
    /// An access port: untagged (and priority-tagged) frames belong to `vlan`; frames tagged
    /// with any other VID are dropped; egress is always untagged.
    Access {
        /// The access VLAN.
        vlan: VlanId,
    },
    /// A trunk: tagged frames of the allowed VLANs; untagged frames belong to `native` if set
    /// (and are dropped otherwise); egress in the native VLAN is untagged, all else tagged.
    Trunk {
        /// VLANs the trunk carries.
        allowed: Vec<VlanId>,
        /// The native VLAN, if any. It is carried even if `allowed` does not list it.
        native: Option<VlanId>,
    },
}

/// Why a [`PortVlanConfig`] was refused.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMapError {
    /// The port id is not below [`MAX_PORTS`].
    #[error("port {0} is out of range (at most {MAX_PORTS} ports)")]
    PortOutOfRange(PortId),
    /// A VLAN id outside 1..=4094.
    #[error("VLAN id {0} is outside 1..=4094")]
    BadVid(VlanId),
}

/// The compact per-port mode the worker reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    Absent,
    Access(VlanId),
    Trunk {
        native: Option<VlanId>,
    },
}

/// How a frame leaves one egress port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EgressTag {
    /// Without an 802.1Q tag (access port, or the trunk's native VLAN).
    Untagged,
    /// With an 802.1Q tag carrying this VID.
    Tagged(VlanId),
}

/// Every port's VLAN mode, plus per-VLAN member and untagged-egress bitmaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMap {
    modes: [Mode; MAX_PORTS],
    /// `members[v]`: ports carrying VLAN `v` (the VLAN's flood domain as far as VLANs go).
    members: Box<[PortSet]>,
    /// `untagged[v]`: member ports that send VLAN `v` untagged.
    untagged: Box<[PortSet]>,
    /// Per port, how fast it may punt frames to the CPU (the worker polices).
    punt: [PuntLimit; MAX_PORTS],
    /// Stations pinned to a port by configuration (static FDB entries).
    static_fdb: Vec<(VlanId, MacAddr, PortId)>,
}

impl Default for PortMap {
    fn default() -> Self {
        Self::new()
    }
}

fn check_vid(v: VlanId) -> Result<VlanId, PortMapError> {
    if (MIN_VID..=MAX_VID).contains(&v) {
        Ok(v)
    } else {
        Err(PortMapError::BadVid(v))
    }
}

impl PortMap {
    /// A map with no ports configured (every frame is `unknown_port`).
    pub fn new() -> Self {
        PortMap {
            modes: [Mode::Absent; MAX_PORTS],
            members: vec![PortSet::EMPTY; VID_SPACE].into_boxed_slice(),
            untagged: vec![PortSet::EMPTY; VID_SPACE].into_boxed_slice(),
            punt: [PuntLimit::UNLIMITED; MAX_PORTS],
            static_fdb: Vec::new(),
        }
    }

    /// Sets the static FDB entries the workers install (and keep) in their MAC tables.
    pub fn set_static_fdb(&mut self, entries: Vec<(VlanId, MacAddr, PortId)>) {
        self.static_fdb = entries;
    }

    /// The static FDB entries.
    pub fn static_fdb(&self) -> &[(VlanId, MacAddr, PortId)] {
        &self.static_fdb
    }

    /// Sets how fast `port` may punt frames (IGMP, PIM, MRD) to the CPU.
    pub fn set_punt_limit(&mut self, port: PortId, limit: PuntLimit) {
        if let Some(l) = self.punt.get_mut(usize::from(port)) {
            *l = limit;
        }
    }

    /// How fast `port` may punt frames to the CPU ([`PuntLimit::UNLIMITED`] unless set).
    pub fn punt_limit(&self, port: PortId) -> PuntLimit {
        self.punt
            .get(usize::from(port))
            .copied()
            .unwrap_or(PuntLimit::UNLIMITED)
    }

    /// Builds a map from `(port, config)` pairs; a later pair for the same port replaces it.
    pub fn from_configs<'a>(
        configs: impl IntoIterator<Item = (PortId, &'a PortVlanConfig)>,
    ) -> Result<Self, PortMapError> {
        let mut m = Self::new();
        for (p, c) in configs {
            m.set_port(p, c)?;
        }
        Ok(m)
    }

    /// Configures (or reconfigures) `port`. On error the map is unchanged.
    pub fn set_port(&mut self, port: PortId, cfg: &PortVlanConfig) -> Result<(), PortMapError> {
        if usize::from(port) >= MAX_PORTS {
            return Err(PortMapError::PortOutOfRange(port));
        }
        let mode = match cfg {
            PortVlanConfig::Access { vlan } => Mode::Access(check_vid(*vlan)?),
            PortVlanConfig::Trunk { allowed, native } => {
                for v in allowed {
                    check_vid(*v)?;
                }
                Mode::Trunk {
                    native: native.map(check_vid).transpose()?,
                }
            }
        };
        self.remove_port(port);
        if let Some(slot) = self.modes.get_mut(usize::from(port)) {
            *slot = mode;
        }
        match cfg {
            PortVlanConfig::Access { vlan } => self.add(port, *vlan, true),
            PortVlanConfig::Trunk { allowed, native } => {
                for v in allowed {
                    self.add(port, *v, Some(*v) == *native);
                }
                if let Some(n) = native {
                    self.add(port, *n, true);
                }
            }
        }
        Ok(())
    }

    /// Removes `port` from every VLAN (it becomes `unknown_port`).
    pub fn remove_port(&mut self, port: PortId) {
        if let Some(slot) = self.modes.get_mut(usize::from(port)) {
            *slot = Mode::Absent;
        }
        for s in self.members.iter_mut().chain(self.untagged.iter_mut()) {
            s.remove(port);
        }
    }

    fn add(&mut self, port: PortId, vlan: VlanId, untagged: bool) {
        if let Some(s) = self.members.get_mut(usize::from(vlan)) {
            s.insert(port);
        }
        if untagged {
            if let Some(s) = self.untagged.get_mut(usize::from(vlan)) {
                s.insert(port);
            }
        }
    }

    /// Ports carrying `vlan` (empty for an unknown or invalid VID).
    pub fn members(&self, vlan: VlanId) -> PortSet {
        self.members
            .get(usize::from(vlan))
            .copied()
            .unwrap_or_default()
    }

    /// Member ports of `vlan` that send it untagged.
    pub fn untagged(&self, vlan: VlanId) -> PortSet {
        self.untagged
            .get(usize::from(vlan))
            .copied()
            .unwrap_or_default()
    }

    /// Whether `port` is configured at all.
    pub fn is_configured(&self, port: PortId) -> bool {
        !matches!(self.mode(port), Mode::Absent)
    }

    fn mode(&self, port: PortId) -> Mode {
        self.modes
            .get(usize::from(port))
            .copied()
            .unwrap_or_default()
    }

    /// The VLAN a frame received on `port` with 802.1Q tag `tag` belongs to (IEEE 802.1Q §6.9):
    /// - access port: untagged or priority-tagged (VID 0) → the access VLAN; any other tag →
    ///   `tagged_on_access`;
    /// - trunk: untagged or VID 0 → the native VLAN, or `untagged_on_trunk` without one; VID
    ///   4095 → `reserved_vid`; a VID the trunk does not carry → `vlan_not_allowed`.
    pub fn ingress_vlan_of_tag(
        &self,
        port: PortId,
        tag: Option<VlanTag>,
    ) -> Result<VlanId, DropReason> {
        let vid = tag.map_or(0, |t| t.vid);
        match self.mode(port) {
            Mode::Absent => Err(DropReason::UnknownPort),
            Mode::Access(v) if vid == 0 => Ok(v),
            Mode::Access(_) => Err(DropReason::TaggedOnAccess),
            Mode::Trunk { native } if vid == 0 => native.ok_or(DropReason::UntaggedOnTrunk),
            Mode::Trunk { .. } if vid > MAX_VID => Err(DropReason::ReservedVid),
            Mode::Trunk { .. } if self.members(vid).contains(port) => Ok(vid),
            Mode::Trunk { .. } => Err(DropReason::VlanNotAllowed),
        }
    }

    /// [`PortMap::ingress_vlan_of_tag`] for a parsed frame.
    pub fn ingress_vlan(
        &self,
        port: PortId,
        frame: &crate::wire::Frame<'_>,
    ) -> Result<VlanId, DropReason> {
        self.ingress_vlan_of_tag(port, frame.vlan)
    }

    /// How a frame of `vlan` leaves `port` (IEEE 802.1Q §8.8.2): untagged on access ports and
    /// in a trunk's native VLAN, tagged otherwise. `None` when the port does not carry `vlan`.
    pub fn egress_tag(&self, port: PortId, vlan: VlanId) -> Option<EgressTag> {
        if !self.members(vlan).contains(port) {
            None
        } else if self.untagged(vlan).contains(port) {
            Some(EgressTag::Untagged)
        } else {
            Some(EgressTag::Tagged(vlan))
        }
    }
}

/// The published port map: one writer (the control plane), lock-free readers. Published
/// together with the [`crate::table::TableHandle`]; a worker loads both per batch. A reader that
/// sees one new and one old snapshot stays safe: egress is always the intersection of both.
#[derive(Clone, Default)]
pub struct PortMapHandle(Arc<ArcSwap<PortMap>>);

impl PortMapHandle {
    /// A handle holding `map`.
    pub fn new(map: PortMap) -> Self {
        PortMapHandle(Arc::new(ArcSwap::from_pointee(map)))
    }

    /// The current snapshot (an atomic pointer load).
    pub fn load(&self) -> Guard<Arc<PortMap>> {
        self.0.load()
    }

    /// Replaces the map; readers switch at their next [`PortMapHandle::load`].
    pub fn publish(&self, map: PortMap) {
        self.0.store(Arc::new(map));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(v: &[PortId]) -> PortSet {
        v.iter().copied().collect()
    }

    fn map() -> PortMap {
        let access10 = PortVlanConfig::Access { vlan: 10 };
        let access20 = PortVlanConfig::Access { vlan: 20 };
        let trunk = PortVlanConfig::Trunk {
            allowed: vec![10, 20, 30],
            native: Some(30),
        };
        let bare = PortVlanConfig::Trunk {
            allowed: vec![20],
            native: None,
        };
        PortMap::from_configs([(0, &access10), (1, &access20), (2, &trunk), (3, &bare)]).unwrap()
    }

    fn tag(vid: u16) -> Option<VlanTag> {
        Some(VlanTag::new(vid, 5))
    }

    #[test]
    fn access_port_ingress() {
        let m = map();
        assert_eq!(m.ingress_vlan_of_tag(0, None), Ok(10));
        assert_eq!(m.ingress_vlan_of_tag(0, tag(0)), Ok(10), "priority-tagged");
        assert_eq!(
            m.ingress_vlan_of_tag(0, tag(10)),
            Err(DropReason::TaggedOnAccess),
            "even its own VID tagged is refused"
        );
        assert_eq!(
            m.ingress_vlan_of_tag(0, tag(20)),
            Err(DropReason::TaggedOnAccess)
        );
    }

    #[test]
    fn trunk_ingress() {
        let m = map();
        assert_eq!(m.ingress_vlan_of_tag(2, tag(10)), Ok(10));
        assert_eq!(m.ingress_vlan_of_tag(2, tag(20)), Ok(20));
        assert_eq!(m.ingress_vlan_of_tag(2, tag(30)), Ok(30), "native tagged");
        assert_eq!(m.ingress_vlan_of_tag(2, None), Ok(30));
        assert_eq!(m.ingress_vlan_of_tag(2, tag(0)), Ok(30));
        assert_eq!(
            m.ingress_vlan_of_tag(2, tag(40)),
            Err(DropReason::VlanNotAllowed)
        );
        assert_eq!(
            m.ingress_vlan_of_tag(2, tag(4095)),
            Err(DropReason::ReservedVid)
        );
        assert_eq!(
            m.ingress_vlan_of_tag(3, None),
            Err(DropReason::UntaggedOnTrunk)
        );
        assert_eq!(
            m.ingress_vlan_of_tag(3, tag(0)),
            Err(DropReason::UntaggedOnTrunk)
        );
        assert_eq!(m.ingress_vlan_of_tag(3, tag(20)), Ok(20));
        assert_eq!(m.ingress_vlan_of_tag(9, None), Err(DropReason::UnknownPort));
        assert_eq!(
            m.ingress_vlan_of_tag(999, None),
            Err(DropReason::UnknownPort)
        );
    }

    #[test]
    fn members_and_egress_tagging() {
        let m = map();
        assert_eq!(m.members(10), ps(&[0, 2]));
        assert_eq!(m.members(20), ps(&[1, 2, 3]));
        assert_eq!(m.members(30), ps(&[2]));
        assert_eq!(m.members(4095), PortSet::EMPTY);
        assert_eq!(m.members(u16::MAX), PortSet::EMPTY);
        assert_eq!(m.egress_tag(0, 10), Some(EgressTag::Untagged));
        assert_eq!(m.egress_tag(2, 10), Some(EgressTag::Tagged(10)));
        assert_eq!(m.egress_tag(2, 30), Some(EgressTag::Untagged), "native");
        assert_eq!(m.egress_tag(3, 20), Some(EgressTag::Tagged(20)));
        assert_eq!(m.egress_tag(0, 20), None);
    }

    #[test]
    fn reconfigure_and_remove() {
        let mut m = map();
        m.set_port(2, &PortVlanConfig::Access { vlan: 20 }).unwrap();
        assert_eq!(m.members(10), ps(&[0]));
        assert_eq!(m.members(30), PortSet::EMPTY);
        assert_eq!(m.egress_tag(2, 20), Some(EgressTag::Untagged));
        m.remove_port(2);
        assert!(!m.is_configured(2));
        assert_eq!(m.members(20), ps(&[1, 3]));
        assert_eq!(m.ingress_vlan_of_tag(2, None), Err(DropReason::UnknownPort));
    }

    #[test]
    fn bad_configs_are_refused_and_leave_the_map_unchanged() {
        let mut m = map();
        let before = m.clone();
        assert_eq!(
            m.set_port(0, &PortVlanConfig::Access { vlan: 0 }),
            Err(PortMapError::BadVid(0))
        );
        assert_eq!(
            m.set_port(
                1,
                &PortVlanConfig::Trunk {
                    allowed: vec![5, 4095],
                    native: None
                }
            ),
            Err(PortMapError::BadVid(4095))
        );
        assert_eq!(
            m.set_port(
                1,
                &PortVlanConfig::Trunk {
                    allowed: vec![5],
                    native: Some(5000)
                }
            ),
            Err(PortMapError::BadVid(5000))
        );
        assert_eq!(
            m.set_port(128, &PortVlanConfig::Access { vlan: 1 }),
            Err(PortMapError::PortOutOfRange(128))
        );
        assert_eq!(m, before);
    }

    #[test]
    fn native_vlan_is_carried_even_if_not_listed() {
        let m = PortMap::from_configs([(
            5,
            &PortVlanConfig::Trunk {
                allowed: vec![7],
                native: Some(8),
            },
        )])
        .unwrap();
        assert_eq!(m.ingress_vlan_of_tag(5, tag(8)), Ok(8));
        assert_eq!(m.egress_tag(5, 8), Some(EgressTag::Untagged));
        assert_eq!(m.egress_tag(5, 7), Some(EgressTag::Tagged(7)));
    }

    #[test]
    fn handle_publishes_atomically() {
        let h = PortMapHandle::default();
        let old = h.load();
        h.publish(map());
        assert!(!old.is_configured(0));
        assert!(h.load().is_configured(0));
    }
}
