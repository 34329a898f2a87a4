//! What the engine promises after every step, checked from the outside with the engine's own
//! checker (`Engine::step_violations`, `Engine::silence_violations` in
//! control/src/engine/core/invariants.rs, shared with control/tests/engine_props.rs): its
//! bookkeeping, the control-frame output (RFC 4541 §2.1.1), the data-forwarding answers of the
//! table, and agreement between the table and the MDB (RFC 3376 §6.3 filter semantics).
//! Any violation panics so libFuzzer records the input.

use xsnoop_control::engine::{Engine, Output};
use xsnoop_dataplane::PortId;

/// Everything that must hold after one step whose input arrived on `ingress` (port, VLAN), if
/// it was a frame.
pub fn step(engine: &Engine, ingress: Option<(PortId, u16)>, out: &Output) {
    let bad = engine.step_violations(ingress, out);
    assert!(
        bad.is_empty(),
        "engine promises broken at {:?} (ingress {ingress:?}): {bad:#?}",
        engine.now()
    );
}

/// After silence longer than every interval: nothing learned survives. Only management's static
/// groups and `mrouter = always` ports remain.
pub fn after_silence(engine: &Engine) {
    let bad = engine.silence_violations();
    assert!(bad.is_empty(), "state survived the silence: {bad:#?}");
}
