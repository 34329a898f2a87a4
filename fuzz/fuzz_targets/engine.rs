//! The engine fed arbitrary sequences of real control frames, ticks, link changes and reloads,
//! with its invariants checked after every step (see `xsnoop_fuzz::engine`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xsnoop_fuzz::engine::run(data));
