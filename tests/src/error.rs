//! The testbed's error type.
//!
//! Every variant names why the testbed could not do what a test asked, so a failing end-to-end test
//! says "`ip netns add` failed: File exists" instead of a bare errno.
//! (Hand-written rather than `thiserror`: adding a dependency would rewrite the shared Cargo.lock.)

use std::fmt;
use std::io;

/// Why a testbed operation failed.
#[derive(Debug)]
pub enum TestbedError {
    /// An external command (`ip`, `tshark`) could not be started or exited unsuccessfully.
    Command {
        /// The command line, for the message.
        cmd: String,
        /// Exit status or spawn error, and stderr.
        detail: String,
    },
    /// A system call failed.
    Sys {
        /// What the testbed was doing.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// A name does not fit (interface names are at most 15 bytes) or is unknown to this topology.
    BadName(String),
    /// The process cannot create network namespaces (not root, or no netns support).
    NoPrivilege(String),
    /// An external tool's output could not be understood.
    Parse(String),
    /// The process is shutting down and creates no more namespaces
    /// ([`crate::netns::close_creation`]).
    Closed,
}

impl TestbedError {
    /// Wraps the current `errno` with a description of the failed step.
    pub fn last_os(what: impl Into<String>) -> Self {
        TestbedError::Sys {
            what: what.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// Wraps an `io::Error` with a description of the failed step.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        TestbedError::Sys {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for TestbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestbedError::Command { cmd, detail } => write!(f, "command `{cmd}` failed: {detail}"),
            TestbedError::Sys { what, source } => write!(f, "{what}: {source}"),
            TestbedError::BadName(s) => write!(f, "bad name: {s}"),
            TestbedError::NoPrivilege(s) => write!(f, "cannot build network namespaces: {s}"),
            TestbedError::Parse(s) => write!(f, "cannot parse tool output: {s}"),
            TestbedError::Closed => write!(f, "shutting down: no more namespaces are created"),
        }
    }
}

impl std::error::Error for TestbedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestbedError::Sys { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The testbed's result type.
pub type Result<T> = std::result::Result<T, TestbedError>;
