//! `POST /capture`: a bounded packet capture of the data port, answered as
//! a pcapng file.
//!
//! The body is JSON: `{"filter": "client 198.18.0.100 and port 80",
//! "packets": 1000, "bytes": 10000000, "seconds": 5, "snaplen": 65535}`
//! (every field optional; the filter language is in
//! [`dataplane::capture::filter`]). The workers copy matching frames
//! while the call runs; the answer comes when a bound is reached, with the
//! totals in `X-Baton-Capture-*` headers. It is a write (token needed):
//! frames carry clients' requests, cookies included.
//!
//! Bounds keep it from stalling or flooding anything: at most
//! [`MAX_SECONDS`] (the admin endpoint's request time), [`MAX_BYTES`] of
//! frames, one capture at a time (409 otherwise); a capture that finds
//! nothing ends at its time bound with a file of no packets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::arp::Lookup;
use dataplane::capture::{pcapng, Bounds, Filter, Session};
use dataplane::shared::Shared;
use mgmt_http::Response;
use serde::Deserialize;
use serde_json::json;

/// Longest capture (the endpoint answers within its request timeout).
pub const MAX_SECONDS: f64 = 10.0;
/// Most frame bytes one capture keeps.
pub const MAX_BYTES: u64 = 256 << 20;
/// Most frames one capture keeps.
pub const MAX_PACKETS: u64 = 1_000_000;

/// What the data port is called in the file.
pub struct CaptureSource {
    pub shared: Arc<Shared>,
    pub port_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    filter: String,
    #[serde(default = "default_packets")]
    packets: u64,
    #[serde(default = "default_bytes")]
    bytes: u64,
    #[serde(default = "default_seconds")]
    seconds: f64,
    #[serde(default = "default_snaplen")]
    snaplen: u32,
}

fn default_packets() -> u64 {
    1000
}
fn default_bytes() -> u64 {
    64 << 20
}
fn default_seconds() -> f64 {
    5.0
}
fn default_snaplen() -> u32 {
    65535
}

fn bad(msg: String) -> Response {
    super::json_response(400, json!({ "error": msg }))
}

/// Runs one capture as `body` asks.
pub fn capture(src: &CaptureSource, body: &[u8]) -> Response {
    let p: Params = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_str("{}").expect("defaults")
    } else {
        match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return bad(format!("capture request: {e}")),
        }
    };
    if !(p.seconds > 0.0 && p.seconds <= MAX_SECONDS) {
        return bad(format!(
            "capture seconds: {} is not in (0, {MAX_SECONDS}]",
            p.seconds
        ));
    }
    if p.packets == 0 || p.packets > MAX_PACKETS {
        return bad(format!(
            "capture packets: {} is not in 1..={MAX_PACKETS}",
            p.packets
        ));
    }
    if p.bytes == 0 || p.bytes > MAX_BYTES {
        return bad(format!(
            "capture bytes: {} is not in 1..={MAX_BYTES}",
            p.bytes
        ));
    }
    if !(64..=65535).contains(&p.snaplen) {
        return bad(format!(
            "capture snaplen: {} is not in 64..=65535",
            p.snaplen
        ));
    }
    let mut filter = match Filter::parse(&p.filter) {
        Ok(f) => f,
        Err(e) => return bad(e.to_string()),
    };
    let shared = &src.shared;
    // Segments relayed to a backend carry the client's and the VIP's
    // addresses: only its MAC names it.
    filter.resolve_backends(|ip| match shared.arp.lookup(ip, 0, u64::MAX, u64::MAX) {
        Lookup::Fresh(m) | Lookup::Stale(m) => Some(m),
        Lookup::Missing => None,
    });
    let wait = Duration::from_secs_f64(p.seconds);
    let now = shared.now_ns();
    let session = Arc::new(Session::new(
        filter.clone(),
        Bounds {
            packets: p.packets,
            bytes: p.bytes,
            until_ns: now + wait.as_nanos() as u64,
            snaplen: p.snaplen,
        },
        shared.epoch_unix_ms * 1_000_000,
    ));
    if let Err(e) = shared.capture.start(session.clone()) {
        return super::json_response(409, json!({ "error": e.to_string() }));
    }
    tracing::info!(
        filter = filter.text(),
        packets = p.packets,
        seconds = p.seconds,
        "packet capture started"
    );
    let mut file = pcapng::header(&src.port_name, p.snaplen);
    let end = Instant::now() + wait;
    let mut written = 0u64;
    loop {
        while let Some(r) = session.pop() {
            pcapng::packet(&mut file, &r);
            written += 1;
        }
        if session.done() || Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    shared.capture.stop();
    // Frames a worker queued between the last look and the stop.
    while let Some(r) = session.pop() {
        pcapng::packet(&mut file, &r);
        written += 1;
    }
    let (packets, bytes, lost) = session.totals();
    tracing::info!(
        filter = filter.text(),
        written,
        bytes,
        lost,
        "packet capture ended"
    );
    Response::new(200, "application/x-pcapng", file)
        .with_header(
            "Content-Disposition",
            "attachment; filename=\"baton.pcapng\"",
        )
        .with_header("X-Baton-Capture-Packets", written.to_string())
        .with_header("X-Baton-Capture-Matched", packets.to_string())
        .with_header("X-Baton-Capture-Lost", lost.to_string())
        .with_header("X-Baton-Capture-Filter", filter.text().to_string())
}
