//! The serial latency probe: what one new connection costs, with nothing
//! else in flight.
//!
//! wrk's percentiles under 32 concurrent connections on a two-core machine
//! are mostly queueing: each request waits behind the others for a core. A
//! handoff adds hops to a new connection (the switch's handshake, the
//! dispatch to an agent, the adoption), and that price is only visible on an
//! idle bed. So the probe opens N connections one after the other from the
//! client host, each: connect, `GET <object>` with `Connection: close`, read
//! to EOF, and times each with [`Instant`] around the whole exchange. It
//! runs in a thread of the harness switched into the client's namespace, so
//! nothing is spawned per request, and never while wrk runs.

use crate::error::Result;
use crate::netns;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connections made and dropped before timing, so first-packet effects (ARP,
/// the first dispatch to a backend) are not in the figures.
pub const WARMUP: usize = 10;

/// Per-connection timeout (connect, and each read or write).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The raw outcome of a probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Latency of each successful connection, µs, in order.
    pub latencies_us: Vec<f64>,
    /// Connections that failed (error, timeout, not a 200, short body).
    pub failures: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
}

/// The request bytes of one probe connection.
pub fn request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: baton-probe\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Whether a response read to EOF is a whole 200 with a body of at least
/// `min_body` bytes (the head's size is not known, so `total` must exceed it).
pub fn response_ok(head: &[u8], total: usize, min_body: usize) -> bool {
    (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")) && total > min_body
}

/// One connection: connect, send, read to EOF.
fn once(addr: SocketAddr, req: &[u8], buf: &mut [u8], min_body: usize) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(req)?;
    let mut head = [0u8; 12];
    let mut head_len = 0;
    let mut total = 0;
    loop {
        let n = s.read(buf)?;
        if n == 0 {
            break;
        }
        if head_len < head.len() {
            let k = (head.len() - head_len).min(n);
            head[head_len..head_len + k].copy_from_slice(&buf[..k]);
            head_len += k;
        }
        total += n;
    }
    if response_ok(&head[..head_len], total, min_body) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "response `{}`, {total} bytes",
                String::from_utf8_lossy(&head[..head_len])
            ),
        ))
    }
}

/// `n` serial connections to `addr` for `path` (body of `min_body` bytes),
/// after [`WARMUP`] untimed ones. Call it inside the client's namespace.
pub fn serial(addr: SocketAddr, path: &str, min_body: usize, n: usize) -> Sample {
    let req = request(addr, path);
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Sample {
        latencies_us: Vec::with_capacity(n),
        ..Sample::default()
    };
    for _ in 0..WARMUP.min(n) {
        let _ = once(addr, &req, &mut buf, min_body);
    }
    for _ in 0..n {
        let t = Instant::now();
        let r = once(addr, &req, &mut buf, min_body);
        let us = t.elapsed().as_secs_f64() * 1e6;
        match r {
            Ok(()) => out.latencies_us.push(us),
            Err(e) => {
                out.failures += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out
}

/// [`serial`] from inside namespace `ns`.
pub fn serial_in(
    ns: &str,
    addr: SocketAddr,
    path: &'static str,
    min_body: usize,
    n: usize,
) -> Result<Sample> {
    netns::in_ns(ns, move || serial(addr, path, min_body, n))
}

/// Nearest-rank percentile `q` (0–100) of ascending `sorted` (0 if empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p99 and mean of a sample's latencies (µs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

/// Summarises latencies (any order).
pub fn stats(latencies_us: &[f64]) -> Stats {
    let mut v = latencies_us.to_vec();
    v.sort_by(f64::total_cmp);
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    };
    Stats {
        p50_us: percentile(&v, 50.0),
        p99_us: percentile(&v, 99.0),
        mean_us: mean,
    }
}

/// One probe result: a system and an object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    pub system: String,
    /// Baton's polling mode; absent for the peers.
    pub polling: Option<String>,
    pub size_bytes: usize,
    pub size: String,
    /// Where the connections went (`ip:port`).
    pub target: String,
    /// Connections timed.
    pub connections: usize,
    pub failures: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    /// p50 and p99 minus direct's for the same object.
    pub added_p50_us: Option<f64>,
    pub added_p99_us: Option<f64>,
    /// Why there are no figures, or the first failed connection.
    pub error: Option<String>,
    /// Baton only, from the switch's and agents' histograms over the probe:
    /// where the time inside Baton went.
    #[serde(default)]
    pub inside: Option<Inside>,
}

/// Means (and the adoption p50) of Baton's own latency histograms over one
/// probe, in µs: header complete → decision, header complete → THOP ACK,
/// complete CREATE → the server has the connection.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Inside {
    pub decision_mean_us: Option<f64>,
    pub handoff_mean_us: Option<f64>,
    pub handoff_p50_us: Option<f64>,
    pub adopt_mean_us: Option<f64>,
    pub adopt_p50_us: Option<f64>,
}

impl Inside {
    /// From scrapes of the switch and every agent taken before and after.
    pub fn between(before: &str, after: &str) -> Inside {
        use crate::histo::HistDelta;
        let us = |v: Option<f64>| v.map(|s| s * 1e6);
        let decision = HistDelta::between(before, after, "baton_dispatch_decision_seconds");
        let handoff = HistDelta::between(before, after, "baton_handoff_latency_seconds");
        let adopt = HistDelta::between(before, after, "baton_agent_adopt_seconds");
        Inside {
            decision_mean_us: us(decision.mean()),
            handoff_mean_us: us(handoff.mean()),
            handoff_p50_us: us(handoff.quantile(0.5)),
            adopt_mean_us: us(adopt.mean()),
            adopt_p50_us: us(adopt.quantile(0.5)),
        }
    }
}

impl ProbeRow {
    /// Fills the figures from a sample.
    pub fn with_sample(mut self, s: &Sample) -> ProbeRow {
        let st = stats(&s.latencies_us);
        self.connections = s.latencies_us.len() + s.failures as usize;
        self.failures = s.failures;
        self.p50_us = st.p50_us;
        self.p99_us = st.p99_us;
        self.mean_us = st.mean_us;
        if s.latencies_us.is_empty() {
            self.error = Some(
                s.first_error
                    .clone()
                    .unwrap_or_else(|| "no connection timed".into()),
            );
        } else if let Some(e) = &s.first_error {
            self.error = Some(format!("{} failed, first: {e}", s.failures));
        }
        self
    }

    /// Whether the row has figures.
    pub fn measured(&self) -> bool {
        self.connections > self.failures as usize
    }
}

/// Sets each row's "added over direct" from the direct row of its object.
pub fn fill_added(rows: &mut [ProbeRow]) {
    let direct: Vec<(usize, f64, f64)> = rows
        .iter()
        .filter(|r| r.system == "direct" && r.measured())
        .map(|r| (r.size_bytes, r.p50_us, r.p99_us))
        .collect();
    for r in rows.iter_mut() {
        if let Some(&(_, p50, p99)) = direct.iter().find(|d| d.0 == r.size_bytes) {
            if r.measured() {
                r.added_p50_us = Some(r.p50_us - p50);
                r.added_p99_us = Some(r.p99_us - p99);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let s = stats(&[30.0, 10.0, 20.0]);
        assert_eq!((s.p50_us, s.p99_us, s.mean_us), (20.0, 30.0, 20.0));
    }

    #[test]
    fn checks_status_and_length() {
        assert!(response_ok(b"HTTP/1.1 200", 1300, 1024));
        assert!(!response_ok(b"HTTP/1.1 200", 1024, 1024));
        assert!(!response_ok(b"HTTP/1.1 502", 5000, 1024));
        assert!(!response_ok(b"", 0, 0));
        let r = String::from_utf8(request("198.18.0.10:80".parse().unwrap(), "/x")).unwrap();
        assert!(r.starts_with("GET /x HTTP/1.1\r\n") && r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn added_is_against_direct_of_the_same_object() {
        let row = |system: &str, size: usize, p50: f64, p99: f64| {
            ProbeRow {
                system: system.into(),
                size_bytes: size,
                ..ProbeRow::default()
            }
            .with_sample(&Sample {
                latencies_us: vec![p50; 98].into_iter().chain([p99, p99]).collect(),
                ..Sample::default()
            })
        };
        let mut rows = vec![
            row("direct", 1024, 100.0, 300.0),
            row("direct", 102400, 400.0, 900.0),
            row("baton-dpdk", 1024, 160.0, 700.0),
            row("baton-dpdk", 102400, 450.0, 1000.0),
        ];
        rows.push(
            ProbeRow {
                system: "baton-afpacket".into(),
                size_bytes: 1024,
                ..ProbeRow::default()
            }
            .with_sample(&Sample {
                failures: 3,
                first_error: Some("refused".into()),
                ..Sample::default()
            }),
        );
        fill_added(&mut rows);
        assert_eq!(rows[0].added_p50_us, Some(0.0));
        assert_eq!(rows[2].added_p50_us, Some(60.0));
        assert_eq!(rows[2].added_p99_us, Some(400.0));
        assert_eq!(rows[3].added_p50_us, Some(50.0));
        assert_eq!(rows[4].added_p50_us, None);
        assert_eq!(rows[4].error.as_deref(), Some("refused"));
        assert_eq!(rows[4].connections, 3);
    }
}
