//! Prometheus text exposition (`metrics_listen = "127.0.0.1:9650"`, off by default).
//!
//! Rendered from the same JSON the show commands answer with, so `xsnoop stats` and the metrics
//! can never disagree: counters from `stats` (per reason, per message kind, per dataplane port),
//! gauges from `mdb` and `mrouters`. Served by the daemon's own loop: one short request per
//! connection, bounded in size and time, like the control socket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

/// How long a scrape may take to send its request (and to take the reply): the daemon's loop
/// waits for it.
const REQUEST_TIME: Duration = Duration::from_millis(200);

/// Reads a request head into `buf` until its blank line, a full buffer, end of stream or
/// `limit` in all; returns the octets read. A request arrives in as many segments as the
/// client wrote (one test client wrote "GET " on its own): a single read answered the rest
/// with a 404 and a closed socket.
fn read_head(stream: &mut std::net::TcpStream, buf: &mut [u8], limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut n = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return n;
        }
        let Some(room) = buf.get_mut(n..).filter(|r| !r.is_empty()) else {
            return n;
        };
        match stream.read(room) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k,
        }
        if buf
            .get(..n)
            .is_some_and(|h| h.windows(4).any(|w| w == b"\r\n\r\n"))
        {
            return n;
        }
    }
}

/// Prometheus metric names allow `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name(parts: &[&str]) -> String {
    let mut s = String::from("xsnoop");
    for p in parts {
        s.push('_');
        s.extend(
            p.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    s
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Lines of one metric family, keyed by name so each gets one `# TYPE` line.
#[derive(Default)]
struct Families(BTreeMap<String, (&'static str, Vec<String>)>);

impl Families {
    fn add(&mut self, name: String, kind: &'static str, labels: &[(&str, &str)], value: u64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let series = if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{}}} {value}", labels.join(","))
        };
        self.0
            .entry(name)
            .or_insert((kind, Vec::new()))
            .1
            .push(series);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, (kind, lines)) in &self.0 {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }
}

/// Counters of one stats object: an object whose values are all numbers becomes one family
/// `<prefix>_<key>_total{kind="<field>"}`; a lone number `<prefix>_<key>_total`; rows with a
/// `port` field `<prefix>_<key>_<field>_total{port="..."}`; other objects recurse.
fn counters(f: &mut Families, prefix: &[&str], v: &Value) {
    let Some(obj) = v.as_object() else {
        return;
    };
    for (k, v) in obj {
        // Per-port and per-VLAN message counts: the port or VLAN is a label, not a name part.
        let label = match k.as_str() {
            "received_by_port" => Some(("port", "xsnoop_port_received_total")),
            "received_by_vlan" => Some(("vlan", "xsnoop_vlan_received_total")),
            "sent_by_vlan" => Some(("vlan", "xsnoop_vlan_sent_total")),
            "sent_by_port" => Some(("port", "xsnoop_port_sent_total")),
            "malformed_by_port" => Some(("port", "xsnoop_port_malformed_total")),
            _ => None,
        };
        if let (Some((label, name)), Some(by)) = (label, v.as_object()) {
            for (who, kinds) in by {
                for (kind, n) in kinds.as_object().into_iter().flatten() {
                    if let Some(n) = n.as_u64() {
                        f.add(
                            name.to_string(),
                            "counter",
                            &[(label, who), ("kind", kind)],
                            n,
                        );
                    }
                }
            }
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(k);
        match v {
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    f.add(metric_name(&[&path.join("_"), "total"]), "counter", &[], n);
                }
            }
            Value::Object(m) if m.values().all(Value::is_number) => {
                for (key, n) in m {
                    if let Some(n) = n.as_u64() {
                        f.add(
                            metric_name(&[&path.join("_"), "total"]),
                            "counter",
                            &[("kind", key)],
                            n,
                        );
                    }
                }
            }
            Value::Object(_) => counters(f, &path, v),
            Value::Array(rows) => {
                // Per-port rows (the dataplane's): every number of a row, labelled by its port.
                for row in rows {
                    let Some(port) = row.get("port").and_then(Value::as_str) else {
                        continue;
                    };
                    for (field, n) in row.as_object().into_iter().flatten() {
                        if let Some(n) = n.as_u64() {
                            let name = metric_name(&[&path.join("_"), field, "total"]);
                            f.add(name, "counter", &[("port", port)], n);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The exposition text from the daemon's `stats`, `mdb`, `mrouters` and `streams` answers.
pub fn render(stats: &Value, mdb: &Value, mrouters: &Value, streams: &Value) -> String {
    let mut f = Families::default();
    counters(&mut f, &[], stats);
    // Per-(VLAN, source, group) traffic, whoever forwarded it (the workers, or the kernel's
    // per-CPU flow counters in dataplane xdp/auto): bounded by the streams table (16k rows).
    for r in streams["streams"].as_array().into_iter().flatten() {
        let vlan = r["vlan"].as_u64().unwrap_or(0).to_string();
        let (source, group) = (
            r["source"].as_str().unwrap_or("?"),
            r["group"].as_str().unwrap_or("?"),
        );
        let labels = [
            ("vlan", vlan.as_str()),
            ("source", source),
            ("group", group),
        ];
        for field in ["packets", "bytes", "kernel_packets"] {
            if let Some(n) = r[field].as_u64() {
                f.add(
                    metric_name(&["stream", field, "total"]),
                    "counter",
                    &labels,
                    n,
                );
            }
        }
    }
    // Gauges: port-groups per (VLAN, port), and router ports per VLAN.
    let mut port_groups: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for r in mdb.as_array().into_iter().flatten() {
        if r.get("source").is_some_and(Value::is_null) {
            let vlan = r["vlan"].as_u64().unwrap_or(0);
            let port = r["port"].as_str().unwrap_or("?").to_string();
            *port_groups.entry((vlan, port)).or_default() += 1;
        }
    }
    for ((vlan, port), n) in port_groups {
        let vlan = vlan.to_string();
        f.add(
            metric_name(&["port_groups"]),
            "gauge",
            &[("vlan", &vlan), ("port", &port)],
            n,
        );
    }
    let mut routers: BTreeMap<u64, u64> = BTreeMap::new();
    for r in mrouters.as_array().into_iter().flatten() {
        *routers.entry(r["vlan"].as_u64().unwrap_or(0)).or_default() += 1;
    }
    for (vlan, n) in routers {
        f.add(
            metric_name(&["mrouter_ports"]),
            "gauge",
            &[("vlan", &vlan.to_string())],
            n,
        );
    }
    f.render()
}

/// The metrics listener, polled by the daemon loop.
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Listens on `addr` (keep it on a management address: the metrics are not authenticated).
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("metrics_listen = \"{addr}\": cannot listen there"))?;
        listener.set_nonblocking(true)?;
        Ok(MetricsServer { listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Answers every scrape waiting now with `body()`; a client that stalls gets cut off after
    /// 200 ms.
    pub fn serve(&self, body: impl Fn() -> String) {
        while let Ok((mut stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(REQUEST_TIME));
            let mut req = [0u8; 1024];
            let n = read_head(&mut stream, &mut req, REQUEST_TIME);
            let head = String::from_utf8_lossy(req.get(..n).unwrap_or_default());
            let reply = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
                let b = body();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_become_labelled_counters_and_the_mdb_gauges() {
        let stats = json!({
            "received": {"reports_v2": 3, "leaves": 1},
            "received_by_port": {"swp1": {"reports_v2": 3}},
            "received_by_vlan": {"10": {"leaves": 1}},
            "ignored": {"report for a link-local group": 2},
            "querier": {"lost": 1},
            "dataplane": {"rx": 10, "reasons": {"drop_malformed_igmp": 4},
                          "ports": [{"port": "swp1", "rx": 7}]}
        });
        let mdb = json!([
            {"vlan": 1, "group": "239.1.1.1", "port": "swp1", "source": null},
            {"vlan": 1, "group": "239.1.1.1", "port": "swp1", "source": "10.0.0.9"},
            {"vlan": 1, "group": "239.2.2.2", "port": "swp1", "source": null}
        ]);
        let streams = json!({"streams": [
            {"vlan": 1, "source": "10.0.0.9", "group": "239.1.1.1", "packets": 5, "bytes": 500,
             "kernel_packets": 4, "idle_ms": null, "forwarding": "mc_registered"}
        ]});
        let text = render(
            &stats,
            &mdb,
            &json!([{"vlan": 1, "port": "swp2"}]),
            &streams,
        );
        for line in [
            "# TYPE xsnoop_received_total counter",
            "xsnoop_received_total{kind=\"reports_v2\"} 3",
            "xsnoop_ignored_total{kind=\"report for a link-local group\"} 2",
            "xsnoop_querier_total{kind=\"lost\"} 1",
            "xsnoop_dataplane_rx_total 10",
            "xsnoop_dataplane_reasons_total{kind=\"drop_malformed_igmp\"} 4",
            "xsnoop_dataplane_ports_rx_total{port=\"swp1\"} 7",
            "# TYPE xsnoop_port_groups gauge",
            "xsnoop_port_groups{vlan=\"1\",port=\"swp1\"} 2",
            "xsnoop_mrouter_ports{vlan=\"1\"} 1",
            "xsnoop_port_received_total{port=\"swp1\",kind=\"reports_v2\"} 3",
            "xsnoop_vlan_received_total{vlan=\"10\",kind=\"leaves\"} 1",
            "xsnoop_stream_packets_total{vlan=\"1\",source=\"10.0.0.9\",group=\"239.1.1.1\"} 5",
            "xsnoop_stream_bytes_total{vlan=\"1\",source=\"10.0.0.9\",group=\"239.1.1.1\"} 500",
            "xsnoop_stream_kernel_packets_total{vlan=\"1\",source=\"10.0.0.9\",group=\"239.1.1.1\"} 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line is `name{labels} value` with a legal name.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{l}"
            );
            assert!(l.rsplit(' ').next().unwrap().parse::<u64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn a_request_written_in_pieces_is_read_whole() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            // The way `write!` sends it: the method, then the rest, a moment apart.
            s.write_all(b"GET ").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.write_all(b"/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !client.is_finished() && Instant::now() < deadline {
            server.serve(|| "xsnoop_up 1\n".to_owned());
            std::thread::sleep(Duration::from_millis(1));
        }
        let reply = client.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("xsnoop_up 1\n"), "{reply}");
    }
}
