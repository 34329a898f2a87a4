//! The one error type of the codecs. Every variant names a reason a frame was refused, because the
//! dataplane and the punt path turn them into drop counters (see [`WireError::reason`]).

use core::fmt;

/// The protocol layer a [`WireError::Truncated`] happened in, so counters can tell a runt Ethernet
/// frame from an IGMP message cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The 14-octet Ethernet II header.
    Ethernet,
    /// The 4-octet IEEE 802.1Q tag.
    Vlan,
    /// The IPv4 header (20 octets plus options).
    Ipv4,
    /// The IGMP message.
    Igmp,
    /// The PIM header.
    Pim,
}

impl Layer {
    /// Stable lowercase name, used inside counter labels.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Ipv4 => "ipv4",
            Layer::Igmp => "igmp",
            Layer::Pim => "pim",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a frame could not be parsed, or why a builder refused to emit one.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ends before the named layer's fixed header does.
    #[error("frame truncated in the {layer} header")]
    Truncated {
        /// Which header was cut short.
        layer: Layer,
    },
    /// A second VLAN tag (0x8100 or 0x88a8, inner or outer): QinQ / 802.1ad is not supported.
    #[error("stacked VLAN tags (QinQ / 802.1ad) are not supported")]
    QinQ,
    /// The IP version nibble is not 4 although the EtherType said IPv4.
    #[error("IP version is not 4")]
    NotIpv4,
    /// IHL below 5 (an IPv4 header is at least 20 octets, RFC 791 §3.1).
    #[error("IPv4 IHL below 5")]
    BadIhl,
    /// IPv4 total length smaller than the header length.
    #[error("IPv4 total length shorter than its header")]
    BadTotalLength,
    /// IPv4 total length claims more octets than the frame carries.
    #[error("IPv4 total length runs past the end of the frame")]
    TotalLengthPastFrame,
    /// The IPv4 header checksum does not verify (RFC 791 §3.1).
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    /// An IPv4 option with a length below 2 or running past the header.
    #[error("malformed IPv4 option")]
    BadIpOption,
    /// IGMP inside an IP fragment: never parsed as IGMP (a fragment cannot be checksummed alone).
    #[error("IGMP in an IP fragment")]
    Fragment,
    /// The IGMP checksum over the whole message does not verify (RFC 3376 §4.1.2).
    #[error("bad IGMP checksum")]
    BadIgmpChecksum,
    /// A Membership Query that is neither 8 octets nor at least 12 (RFC 3376 §7.1: ignored).
    #[error("membership query length is neither 8 nor >= 12 octets")]
    BadQueryLength,
    /// A v3 report's group record header runs past the end of the message.
    #[error("IGMPv3 group record runs past the end of the message")]
    RecordPastEnd,
    /// A source list (v3 query or group record) runs past the end of the message.
    #[error("source list runs past the end of the message")]
    SourcesPastEnd,
    /// A group record's auxiliary data runs past the end of the message.
    #[error("auxiliary data runs past the end of the message")]
    AuxPastEnd,
    /// The PIM checksum of a Hello does not verify (RFC 7761 §4.9).
    #[error("bad PIM checksum")]
    BadPimChecksum,
    /// Builder: the output buffer is smaller than the frame.
    #[error("output buffer too small: {needed} octets needed, {got} available")]
    BufferTooSmall {
        /// Octets the frame needs.
        needed: usize,
        /// Octets the buffer has.
        got: usize,
    },
    /// Builder: the packet would exceed IPv4's 65535-octet total length or a 16-bit count field.
    #[error("packet too long for its length or count fields")]
    TooLong,
    /// Builder: a VLAN ID above 4094 or 0x000, or a PCP above 7.
    #[error("VLAN ID or PCP out of range")]
    BadVlanTag,
    /// Builder: sources given for a query that is not a v3 group-specific query.
    #[error("query sources need an IGMPv3 group-specific query")]
    SourcesWithoutV3Group,
    /// Builder: a group given for an IGMPv1 query (v1 queries are always general, RFC 1112 App. I).
    #[error("IGMPv1 queries cannot be group-specific")]
    GroupInV1Query,
    /// Builder: QRV above 7 (it is a 3-bit field, RFC 3376 §4.1.6).
    #[error("QRV above 7")]
    QrvTooLarge,
    /// Builder: a group record's auxiliary data is not a whole number of 32-bit words (≤ 255).
    #[error("auxiliary data is not a whole number of 32-bit words, or longer than 255 words")]
    BadAuxLength,
}

impl WireError {
    /// A stable snake_case name per variant, used as a drop-counter label. Never renamed.
    pub const fn reason(&self) -> &'static str {
        match self {
            WireError::Truncated { layer } => match layer {
                Layer::Ethernet => "truncated_ethernet",
                Layer::Vlan => "truncated_vlan",
                Layer::Ipv4 => "truncated_ipv4",
                Layer::Igmp => "truncated_igmp",
                Layer::Pim => "truncated_pim",
            },
            WireError::QinQ => "qinq",
            WireError::NotIpv4 => "not_ipv4",
            WireError::BadIhl => "bad_ihl",
            WireError::BadTotalLength => "bad_total_length",
            WireError::TotalLengthPastFrame => "total_length_past_frame",
            WireError::BadIpChecksum => "bad_ip_checksum",
            WireError::BadIpOption => "bad_ip_option",
            WireError::Fragment => "fragment",
            WireError::BadIgmpChecksum => "bad_igmp_checksum",
            WireError::BadQueryLength => "bad_query_length",
            WireError::RecordPastEnd => "record_past_end",
            WireError::SourcesPastEnd => "sources_past_end",
            WireError::AuxPastEnd => "aux_past_end",
            WireError::BadPimChecksum => "bad_pim_checksum",
            WireError::BufferTooSmall { .. } => "buffer_too_small",
            WireError::TooLong => "too_long",
            WireError::BadVlanTag => "bad_vlan_tag",
            WireError::SourcesWithoutV3Group => "sources_without_v3_group",
            WireError::GroupInV1Query => "group_in_v1_query",
            WireError::QrvTooLarge => "qrv_too_large",
            WireError::BadAuxLength => "bad_aux_length",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_snake_case() {
        let all = [
            WireError::Truncated {
                layer: Layer::Ethernet,
            },
            WireError::Truncated { layer: Layer::Vlan },
            WireError::Truncated { layer: Layer::Ipv4 },
            WireError::Truncated { layer: Layer::Igmp },
            WireError::Truncated { layer: Layer::Pim },
            WireError::QinQ,
            WireError::NotIpv4,
            WireError::BadIhl,
            WireError::BadTotalLength,
            WireError::TotalLengthPastFrame,
            WireError::BadIpChecksum,
            WireError::BadIpOption,
            WireError::Fragment,
            WireError::BadIgmpChecksum,
            WireError::BadQueryLength,
            WireError::RecordPastEnd,
            WireError::SourcesPastEnd,
            WireError::AuxPastEnd,
            WireError::BadPimChecksum,
            WireError::BufferTooSmall { needed: 1, got: 0 },
            WireError::TooLong,
            WireError::BadVlanTag,
            WireError::SourcesWithoutV3Group,
            WireError::GroupInV1Query,
            WireError::QrvTooLarge,
            WireError::BadAuxLength,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            let r = e.reason();
            assert!(seen.insert(r), "duplicate reason {r}");
            assert!(r
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
    }
}
