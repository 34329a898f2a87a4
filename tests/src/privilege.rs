//! Whether this process may build namespaces, and what a test does when it may not.
//!
//! Developers without root get a clear skip message instead of a wall of EPERM failures; CI
//! (`make test` sets `XSNOOP_REQUIRE_NETNS=1`) turns the same situation into a failure, so a
//! namespace test can never silently pass by skipping.

use std::sync::OnceLock;

use crate::error::TestbedError;
use crate::netns::Netns;
use crate::topology::unique_prefix;

/// Environment variable that turns a skip into a failure.
pub const REQUIRE_ENV: &str = "XSNOOP_REQUIRE_NETNS";

/// Checks once per process that we are root and that a namespace can really be created (and
/// deleted); the answer is cached.
pub fn netns_available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let euid = unsafe { libc::geteuid() };
            if euid != 0 {
                return Err(format!("not root (euid {euid})"));
            }
            let probe =
                Netns::create(&format!("{}-probe", unique_prefix())).map_err(|e| e.to_string())?;
            probe.run(|| ()).map_err(|e: TestbedError| e.to_string())?;
            Ok(())
        })
        .clone()
}

/// Returns `true` when the calling test may use namespaces. Otherwise prints why the test
/// `name` is skipped and returns `false`, or panics if `XSNOOP_REQUIRE_NETNS=1`.
pub fn require_netns(name: &str) -> bool {
    match netns_available() {
        Ok(()) => true,
        Err(why) => {
            let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{name}: network namespaces unavailable ({why}) but {REQUIRE_ENV}=1"
            );
            eprintln!("SKIPPED {name}: network namespaces unavailable ({why}); run as root");
            false
        }
    }
}

/// Returns early from the calling test when namespaces are unavailable (see [`require_netns`]).
/// `netns_or_skip!("test name")` names the test in the skip message; without an argument the
/// module path is used. (cargo shows the message with `--nocapture`.)
#[macro_export]
macro_rules! netns_or_skip {
    () => {
        $crate::netns_or_skip!(module_path!())
    };
    ($name:expr) => {
        if !$crate::privilege::require_netns($name) {
            return;
        }
    };
}
