//! The control socket: how `xsnoop mdb` and the other show commands talk to a running daemon.
//!
//! A Unix stream socket, mode 0600 (root only by default). One request per connection: a JSON
//! line, answered by one JSON line, `{"ok": ...}` or `{"error": "..."}`. Requests are
//! `{"show": ...}` (read-only, e.g. `{"show":"mdb"}`) or `{"change": ...}` (an operator change
//! such as `{"change":{"flush":{"port":"swp1"}}}`, see [`Command`]). The daemon polls the
//! listening socket in its own loop, so answers are consistent with the engine's state at one
//! instant, changes apply between two engine steps, and nothing needs a lock. Nothing holds a
//! connection open: `xsnoop events --follow` polls with a sequence number instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::engine::runtime::{Command, Flush, PortSettings, StaticAdd, StaticDel};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/xsnoop.sock";

/// Longest request line accepted; anything longer is refused.
const MAX_REQUEST: u64 = 4096;

/// What a client can ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Show {
    /// The multicast database.
    Mdb,
    /// Multicast-router ports.
    Mrouters,
    /// Querier state per VLAN.
    Querier,
    /// Counters.
    Stats,
    /// Recent events.
    Events,
    /// Events with a sequence number of at least this one, and the next number to ask for
    /// (`xsnoop events --follow`).
    EventsSince(u64),
    /// Per-port summary: link, VLANs, fast-leave, router mode, groups, dataplane counters.
    Ports,
    /// Per-VLAN summary: snooping, querier, groups, ports.
    Vlans,
    /// Where a multicast data frame would go, and the rule that chose it.
    Explain(ExplainQuery),
    /// The MAC learning table (filtering database).
    Fdb,
    /// Per-(VLAN, source, group) multicast traffic counters.
    Streams,
}

/// A multicast data frame to explain: where it arrives and what it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    /// Ingress port name.
    pub port: String,
    /// VLAN of the frame.
    pub vlan: u16,
    /// IPv4 source (the S of (S,G)).
    pub source: std::net::Ipv4Addr,
    /// Destination group.
    pub group: std::net::Ipv4Addr,
}

/// One request: `{"show": ...}` or `{"change": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Read state; changes nothing.
    Show(Show),
    /// Change the running switch (not written to the configuration file).
    Change(Command),
}

/// The listening side, owned by the daemon loop.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file) with mode 0600.
    pub fn bind(path: &Path) -> Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "{}: another xsnoop is already listening there; stop it or pass --control-socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Answers every client waiting now, each with `answer(request)`. A client that sends
    /// nothing for 200 ms or garbage gets an error line; none can stall the daemon for longer.
    pub fn serve(&self, mut answer: impl FnMut(Request) -> Result<Value>) {
        while let Ok((stream, _)) = self.listener.accept() {
            let reply = read_request(&stream).and_then(&mut answer);
            let line = match reply {
                Ok(v) => serde_json::json!({ "ok": v }),
                Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
            };
            let mut w = &stream;
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            let _ = w.write_all(&bytes);
        }
    }
}

impl AsRawFd for ControlServer {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_request(stream: &UnixStream) -> Result<Request> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_REQUEST))
        .read_line(&mut line)
        .context("reading the request")?;
    serde_json::from_str(line.trim()).context(
        "the request is not {\"show\": \"mdb|mrouters|querier|stats|events|ports|vlans\"}, \
         {\"show\": {\"explain\"|\"events_since\": ...}} or \
         {\"change\": {\"static_add\"|\"static_del\"|\"port_set\"|\"flush\": ...}}",
    )
}

/// Asks the daemon at `path` for `show` and returns its answer.
pub fn query(path: &Path, show: Show) -> Result<Value> {
    request(path, &Request::Show(show))
}

/// Asks the daemon at `path` to make an operator change; returns its answer (the journal
/// entries the change made) or the daemon's reason for refusing it.
pub fn change(path: &Path, cmd: Command) -> Result<Value> {
    request(path, &Request::Change(cmd))
}

/// Sends one request to the daemon at `path` and returns the `ok` part of its answer.
pub fn request(path: &Path, req: &Request) -> Result<Value> {
    let mut s = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is xsnoop running? are you root?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "{}", serde_json::to_string(req)?)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let mut v: Value = serde_json::from_str(&line).context("the daemon's answer is not JSON")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("the daemon refused: {e}");
    }
    v.get_mut("ok")
        .map(Value::take)
        .context("the daemon's answer has no result")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_the_show_shape_and_add_changes() {
        let show: Request = serde_json::from_str(r#"{"show":"mdb"}"#).unwrap();
        assert_eq!(show, Request::Show(Show::Mdb));
        assert_eq!(serde_json::to_string(&show).unwrap(), r#"{"show":"mdb"}"#);
        let since: Request = serde_json::from_str(r#"{"show":{"events_since":5}}"#).unwrap();
        assert_eq!(since, Request::Show(Show::EventsSince(5)));
        let ch: Request = serde_json::from_str(
            r#"{"change":{"static_del":{"vlan":1,"group":"239.1.1.1","ports":["a"]}}}"#,
        )
        .unwrap();
        assert!(matches!(ch, Request::Change(Command::StaticDel(_))));
        for bad in [
            r#"{"show":"mdb","change":{"flush":{"vlan":1}}}"#,
            r#"{"show":"everything"}"#,
            r#"{"change":{"reboot":{}}}"#,
            r#"{"change":{"static_del":{"vlan":1,"group":"239.1.1.1","ports":["a"],"sources":[]}}}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_answer_and_refusal_round_trip() {
        let dir = std::env::temp_dir().join(format!("xsnoop-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let p2 = path.clone();
        let client = std::thread::spawn(move || query(&p2, Show::Mdb));
        let mut served = false;
        for _ in 0..200 {
            server.serve(|req| {
                served = true;
                let Request::Show(show) = req else {
                    bail!("not a show")
                };
                Ok(serde_json::json!({ "asked": show }))
            });
            if served {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            client.join().unwrap().unwrap(),
            serde_json::json!({"asked": "mdb"})
        );
        // Garbage gets an error line, not a hang or a crash.
        let mut s = UnixStream::connect(&path).unwrap();
        writeln!(s, "{{\"show\": \"everything\"}}").unwrap();
        server.serve(|_| unreachable!("an invalid request is never answered"));
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert!(line.contains("error"), "{line}");
        // A change request reaches the answer function as a change.
        let p3 = path.clone();
        let client = std::thread::spawn(move || {
            change(
                &p3,
                Command::Flush(Flush {
                    port: Some("swp1".into()),
                    vlan: None,
                }),
            )
        });
        let mut got = None;
        for _ in 0..200 {
            server.serve(|req| {
                got = Some(req);
                bail!("port swp1 is not here")
            });
            if got.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = client.join().unwrap().unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "the daemon refused: port swp1 is not here"
        );
        assert!(matches!(got, Some(Request::Change(Command::Flush(_)))));
        // A second daemon on the same socket is refused while the first runs.
        assert!(ControlServer::bind(&path).is_err());
        drop(server);
        assert!(!path.exists(), "the socket file is removed on shutdown");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
