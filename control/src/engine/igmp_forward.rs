//! Where IGMP, PIM and MRD frames themselves go (RFC 4541 §2.1.1).

use xsnoop_dataplane::{PortId, PortSet};

use super::model::Message;

/// Forwarding class of a control frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgmpClass {
    /// Reports and leaves: to multicast-router ports only, plus ports with `flood_reports`
    /// (RFC 4541 §2.1.1(1)), so hosts do not suppress each other's reports.
    Report,
    /// Queries, PIM hellos, MRD advertisements and unknown IGMP types: every port of the VLAN
    /// (RFC 4541 §2.1.1(4) for unknown types).
    Flood,
}

/// The class of a message.
pub fn classify<A>(msg: &Message<A>) -> IgmpClass {
    match msg {
        Message::Report { .. } | Message::Leave { .. } => IgmpClass::Report,
        Message::Query { .. }
        | Message::MrdAdvertisement
        | Message::PimHello
        | Message::Unknown { .. } => IgmpClass::Flood,
    }
}

/// The port sets of one VLAN that decide control-frame egress.
#[derive(Clone, Copy, Debug)]
pub struct VlanPorts {
    /// Every port of the VLAN that is up.
    pub up: PortSet,
    /// Effective multicast-router ports.
    pub mrouters: PortSet,
    /// Ports with `flood_reports`.
    pub flood_reports: PortSet,
    /// Whether snooping is on in the VLAN (off: everything floods).
    pub snooping: bool,
}

/// Egress of a control frame of `class` that arrived on `ingress`: only ports of the VLAN, never
/// the ingress port.
pub fn egress(class: IgmpClass, ingress: PortId, v: &VlanPorts) -> PortSet {
    let set = match class {
        IgmpClass::Report if v.snooping => v.mrouters.union(v.flood_reports),
        IgmpClass::Report | IgmpClass::Flood => v.up,
    };
    set.intersection(v.up).without(ingress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ps(v: &[PortId]) -> PortSet {
        v.iter().copied().collect()
    }

    fn vp() -> VlanPorts {
        VlanPorts {
            up: ps(&[0, 1, 2, 3, 4]),
            mrouters: ps(&[4, 7]),
            flood_reports: ps(&[3]),
            snooping: true,
        }
    }

    #[test]
    fn reports_and_leaves_go_to_routers_and_flood_reports_ports() {
        let leave = Message::Leave {
            group: Ipv4Addr::new(239, 1, 1, 1),
        };
        assert_eq!(classify(&leave), IgmpClass::Report);
        assert_eq!(egress(IgmpClass::Report, 0, &vp()), ps(&[3, 4]));
        assert_eq!(egress(IgmpClass::Report, 4, &vp()), ps(&[3]));
    }

    #[test]
    fn queries_pim_mrd_unknown_flood_to_the_vlan_except_ingress() {
        for m in [
            Message::<Ipv4Addr>::PimHello,
            Message::MrdAdvertisement,
            Message::Unknown { igmp_type: 0x99 },
        ] {
            assert_eq!(classify(&m), IgmpClass::Flood);
        }
        assert_eq!(egress(IgmpClass::Flood, 2, &vp()), ps(&[0, 1, 3, 4]));
    }

    #[test]
    fn snooping_off_floods_reports() {
        let v = VlanPorts {
            snooping: false,
            ..vp()
        };
        assert_eq!(egress(IgmpClass::Report, 1, &v), ps(&[0, 2, 3, 4]));
    }
}
