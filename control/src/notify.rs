//! Telling systemd where the daemon is in its life (`Type=notify`), without libsystemd.
//!
//! systemd passes `$NOTIFY_SOCKET`, a Unix datagram socket (a path, or an abstract name written
//! with a leading `@`); each notification is one datagram of newline-separated `KEY=VALUE`
//! assignments (sd_notify(3)). With `READY=1` sent only once the switch forwards, `systemctl
//! start` returns when traffic flows, and units ordered after xsnoop start after it. Outside
//! systemd (no `$NOTIFY_SOCKET`) every call is a no-op. Failures are logged, never fatal: a
//! switch keeps switching when its supervisor's socket is gone.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use thiserror::Error;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is neither an absolute path nor an `@abstract` name.
    #[error("NOTIFY_SOCKET={0:?}: not an absolute path or an @abstract socket name")]
    BadAddress(String),
    /// The datagram socket could not be created or the message not sent.
    #[error("sending to NOTIFY_SOCKET {addr}: {source}")]
    Send {
        /// The socket, as given.
        addr: String,
        /// Why.
        source: io::Error,
    },
}

/// Where notifications go: the socket systemd gave us, if any.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(String, SocketAddr)>,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`; a no-op when it is unset or empty, a logged no-op
    /// when it is malformed.
    pub fn from_env() -> Notifier {
        match std::env::var(NOTIFY_SOCKET) {
            Ok(addr) if !addr.is_empty() => Notifier::to(&addr).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "not notifying systemd");
                Notifier { target: None }
            }),
            _ => Notifier { target: None },
        }
    }

    /// A notifier for the socket `addr` (`/run/...` or `@name`), as `$NOTIFY_SOCKET` writes it.
    pub fn to(addr: &str) -> Result<Notifier, NotifyError> {
        let bad = || NotifyError::BadAddress(addr.to_string());
        let sock = if let Some(name) = addr.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| bad())?
        } else if addr.starts_with('/') {
            SocketAddr::from_pathname(addr).map_err(|_| bad())?
        } else {
            return Err(bad());
        };
        Ok(Notifier {
            target: Some((addr.to_string(), sock)),
        })
    }

    /// Whether notifications go anywhere.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification: `assignments` as `KEY=VALUE` lines. A no-op without a socket.
    pub fn send(&self, assignments: &[(&str, &str)]) -> Result<(), NotifyError> {
        let Some((addr, sock)) = &self.target else {
            return Ok(());
        };
        let msg = message(assignments);
        let err = |source| NotifyError::Send {
            addr: addr.clone(),
            source,
        };
        let s = UnixDatagram::unbound().map_err(err)?;
        s.send_to_addr(msg.as_bytes(), sock).map_err(err)?;
        Ok(())
    }

    /// Sends and logs a failure instead of returning it: notifications never stop the switch.
    fn send_logged(&self, assignments: &[(&str, &str)]) {
        if let Err(e) = self.send(assignments) {
            tracing::warn!(error = %e, "notifying systemd failed");
        }
    }

    /// `READY=1`: start-up (or a reload) is complete, with a one-line status for `systemctl
    /// status`.
    pub fn ready(&self, status: &str) {
        self.send_logged(&[("READY", "1"), ("STATUS", status)]);
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` systemd requires of it: a SIGHUP reload started;
    /// [`Notifier::ready`] follows when it is done, whatever its outcome.
    pub fn reloading(&self) {
        let usec = monotonic_usec().to_string();
        self.send_logged(&[
            ("RELOADING", "1"),
            ("MONOTONIC_USEC", &usec),
            ("STATUS", "reloading the configuration"),
        ]);
    }

    /// `STOPPING=1`: shutdown began (XDP is being detached, workers drained).
    pub fn stopping(&self) {
        self.send_logged(&[("STOPPING", "1"), ("STATUS", "stopping")]);
    }

    /// `STATUS=...` alone: what `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send_logged(&[("STATUS", status)]);
    }
}

/// `READY=1` to `$NOTIFY_SOCKET`, if set; see [`Notifier::ready`].
pub fn ready(status: &str) {
    Notifier::from_env().ready(status);
}

/// `RELOADING=1` to `$NOTIFY_SOCKET`, if set; see [`Notifier::reloading`].
pub fn reloading() {
    Notifier::from_env().reloading();
}

/// `STOPPING=1` to `$NOTIFY_SOCKET`, if set; see [`Notifier::stopping`].
pub fn stopping() {
    Notifier::from_env().stopping();
}

/// The datagram for `assignments`: one `KEY=VALUE` per line. A value cannot span lines (the
/// protocol has no escaping), so line breaks in it become spaces.
fn message(assignments: &[(&str, &str)]) -> String {
    let mut msg = String::new();
    for (key, value) in assignments {
        msg.push_str(key);
        msg.push('=');
        msg.extend(value.chars().map(|c| if c == '\n' { ' ' } else { c }));
        msg.push('\n');
    }
    msg
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(s: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_receives_each_notification_as_one_datagram() {
        let path = std::env::temp_dir().join(format!("xsnoop-notify-unit-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sd = UnixDatagram::bind(&path).unwrap();
        sd.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        assert!(n.is_active());
        n.ready("switching 2 ports\nnow");
        n.reloading();
        n.stopping();
        let ready = recv(&sd);
        let reloading = recv(&sd);
        let stopping = recv(&sd);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(ready, "READY=1\nSTATUS=switching 2 ports now\n");
        let lines: Vec<&str> = reloading.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        let now = monotonic_usec();
        assert!(usec <= now && now - usec < 2_000_000, "{usec} vs {now}");
        assert_eq!(stopping, "STOPPING=1\nSTATUS=stopping\n");
    }

    #[test]
    fn an_abstract_socket_is_written_with_an_at_sign() {
        let name = format!("xsnoop-notify-unit-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sd = UnixDatagram::bind_addr(&addr).unwrap();
        sd.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Notifier::to(&format!("@{name}")).unwrap().status("hello");
        assert_eq!(recv(&sd), "STATUS=hello\n");
    }

    #[test]
    fn bad_or_missing_sockets_are_reported_not_fatal() {
        assert!(matches!(
            Notifier::to("relative/path"),
            Err(NotifyError::BadAddress(_))
        ));
        let gone = Notifier::to("/nonexistent/xsnoop/notify").unwrap();
        assert!(matches!(
            gone.send(&[("READY", "1")]),
            Err(NotifyError::Send { .. })
        ));
        gone.ready("no one listens"); // logged, not a panic
        let off = Notifier { target: None };
        assert!(!off.is_active());
        assert!(off.send(&[("READY", "1")]).is_ok());
    }
}
