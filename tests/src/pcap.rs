//! A minimal pcap (libpcap 2.4, microsecond, Ethernet link type) writer, so frames we build can
//! be handed to tshark and Wireshark without a dependency.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, TestbedError};

/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;

/// Encodes `frames` as a complete pcap file image; frame `i` gets timestamp `i` ms.
pub fn encode(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        let ms = u32::try_from(i).unwrap_or(u32::MAX);
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&(ms / 1000).to_le_bytes());
        out.extend_from_slice(&((ms % 1000) * 1000).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Writes `frames` to the pcap file `path`.
pub fn write(path: &Path, frames: &[&[u8]]) -> Result<()> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| TestbedError::io(format!("create {}", path.display()), e))?;
    f.write_all(&encode(frames))
        .map_err(|e| TestbedError::io(format!("write {}", path.display()), e))
}
