//! xsnoop's testbed: network namespaces joined by veth pairs, real kernel IGMP hosts, raw L2
//! capture and injection, and decoding by tshark — the pieces every end-to-end test of the switch
//! is built from.
//!
//! Everything the testbed creates carries a per-test unique prefix and is deleted on drop,
//! including when a test panics; when the process is killed instead, the next run deletes its
//! namespaces and stops its daemons ([`leftovers`]). It never touches interfaces it did not create.

pub mod bridge;
pub mod capture;
pub mod cmd;
pub mod daemon;
pub mod differential;
pub mod error;
pub mod host;
pub mod leftovers;
pub mod netns;
pub mod observe;
pub mod pcap;
pub mod privilege;
pub mod process;
pub mod sink;
pub mod snoop_runner;
pub mod sock;
pub mod star;
pub mod topology;
pub mod tshark;

pub use capture::{Capture, Frame};
pub use daemon::Daemon;
pub use error::{Result, TestbedError};
pub use host::{Membership, Sender};
pub use netns::Netns;
pub use privilege::require_netns;
pub use star::Star;
pub use topology::{Endpoint, HostConfig, Topology};

/// Lower-case hex of `bytes`, two digits per byte, no separators (the fixture file format).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex as written by [`to_hex`] (whitespace ignored); `None` on a bad digit or odd length.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}
