//! `make demo` is the first thing a newcomer runs: it must complete, and every host must
//! receive exactly what IGMP snooping should deliver at every step (the demo checks the
//! deliveries itself and exits non-zero otherwise).

use std::process::Command;

use xsnoop_tests::netns_or_skip;

#[test]
fn demo_completes_with_the_expected_deliveries() {
    netns_or_skip!();
    let out = Command::new(env!("CARGO_BIN_EXE_xsnoop-demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("!!"), "{stdout}");
    for step in [
        "The router says hello",
        "bob leaves 239.1.1.1",
        "alice leaves 239.1.1.1",
        "Every host received exactly the groups it should",
    ] {
        assert!(stdout.contains(step), "missing {step:?}:\n{stdout}");
    }
}
