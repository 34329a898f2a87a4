//! Running `ip` and friends: the testbed configures namespaces with iproute2, the tool an operator
//! would use, so a failing step can be replayed by hand from the error message.

use std::process::Command;

use crate::error::{Result, TestbedError};

/// Runs `prog args...`, returning stdout; a non-zero exit becomes [`TestbedError::Command`]
/// carrying stderr.
pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let cmd = format!("{prog} {}", args.join(" "));
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| TestbedError::Command {
            cmd: cmd.clone(),
            detail: format!("cannot start: {e}"),
        })?;
    if !out.status.success() {
        return Err(TestbedError::Command {
            cmd,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip args...` (iproute2).
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}
