//! An interrupted bench leaves nothing behind: SIGTERM in the middle of a run removes every
//! namespace it created and stops the switches it started (see `bench/src/interrupt.rs`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xsnoop_tests::netns::{delete_namespaces_with, namespaces_with};
use xsnoop_tests::topology::prefix_of;

#[test]
fn sigterm_in_the_middle_of_a_run_removes_the_beds() {
    if !xsnoop_tests::require_netns("sigterm_in_the_middle_of_a_run_removes_the_beds") {
        return;
    }
    let out = std::env::temp_dir().join(format!("xsnoop-bench-interrupted-{}", std::process::id()));
    // The bridge alone: no xsnoop binary needed; a long run, so the signal lands inside it.
    let mut bench = Command::new(env!("CARGO_BIN_EXE_xsnoop-bench"))
        .args([
            "--only",
            "packet",
            "--switches",
            "bridge",
            "--members",
            "2",
            "--sizes",
            "64",
            "--runs",
            "1",
            "--seconds",
            "60",
            "--unicast",
            "false",
            "--broadcast",
            "false",
            "--flood-rate",
            "0",
            "--scale",
            "false",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = prefix_of(bench.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while namespaces_with(&prefix).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let created = namespaces_with(&prefix);
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(bench.id() as libc::pid_t, libc::SIGTERM) };
    let status = bench.wait().unwrap();
    let left = namespaces_with(&prefix);
    // Whatever happened, leave nothing behind ourselves.
    delete_namespaces_with(&prefix);
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        created.len() >= 3,
        "the bench never built its beds: {created:?}"
    );
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    assert!(left.is_empty(), "left behind after SIGTERM: {left:?}");
}
