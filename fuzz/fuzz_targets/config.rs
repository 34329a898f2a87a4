//! Any text as a configuration file (what SIGHUP makes the running daemon re-read): parsing must
//! never panic, and whatever it accepts must be a configuration the engine itself accepts, with
//! one entry per port in every per-port list.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use xsnoop_control::config_file::{parse_interval, SwitchConfig};
use xsnoop_control::engine::Engine;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_interval(text);
    if let Ok(c) = SwitchConfig::parse(text) {
        let ports = c.engine.ports.len();
        assert_eq!(c.native_vlans.len(), ports, "native_vlans per port");
        assert_eq!(c.punt_limits.len(), ports, "punt_limits per port");
        assert!(c.workers >= 1, "at least one worker");
        if let Err(e) = Engine::new(c.engine, Duration::ZERO) {
            panic!("the file parser accepted a configuration the engine refuses: {e}");
        }
    }
});
