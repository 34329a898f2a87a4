//! Any byte string through the one frame classifier: it must never panic, and whatever it
//! accepts must be internally consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsnoop_dataplane::wire::{parse_frame, L3};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = parse_frame(data) {
        assert!(frame.l3_offset <= data.len());
        if let L3::Igmp { ip, .. } | L3::PimHello { ip } = frame.l3 {
            assert!(!ip.is_fragment(), "IGMP/PIM is never taken from a fragment");
        }
    }
});
