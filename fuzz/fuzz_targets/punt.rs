//! Any frame through the whole punt path into a live engine: classifier, adapter and engine must
//! never panic on what a hostile host can send, and the engine's table must stay consistent.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use xsnoop_control::engine::{Engine, EngineConfig, Input, PortConfig, VlanConfig};
use xsnoop_control::punt::deliver;

fuzz_target!(|data: &[u8]| {
    let config = EngineConfig {
        ports: vec![PortConfig::access("p0", 1), PortConfig::access("p1", 1)],
        vlans: vec![{
            let mut v = VlanConfig::new(1);
            v.querier = true;
            v
        }],
        max_groups: 64,
        max_sources: 16,
        ..EngineConfig::default()
    };
    let Ok(mut engine) = Engine::new(config, Duration::ZERO) else {
        return;
    };
    // The first byte picks the ingress port and how far time moves after the frame.
    let (Some(&ctl), Some(frame)) = (data.first(), data.get(1..)) else {
        return;
    };
    let port = u16::from(ctl & 1);
    let now = Duration::from_millis(u64::from(ctl >> 1) * 100);
    if let Some(out) = deliver(&mut engine, now, port, 1, frame) {
        assert!(!out.forward.contains(port), "never back out of the ingress port");
    }
    engine.handle(now + Duration::from_secs(300), Input::Tick);
    assert_eq!(*engine.table(), engine.recompute_table());
});
