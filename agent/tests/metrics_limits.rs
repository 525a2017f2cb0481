//! The agent's metrics endpoint under abuse, over real loopback TCP: an
//! endless header is cut without the process growing, stalled headers are
//! closed at the header timeout, and `/metrics` keeps answering.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::config::MetricsConfig;
use agent::metrics::Metrics;
use testkit::http::get;
use testkit::process::rss_kib;

fn config(header_timeout_ms: u64) -> MetricsConfig {
    MetricsConfig {
        header_timeout_ms,
        ..MetricsConfig::default()
    }
}

#[test]
fn an_endless_header_is_cut_and_metrics_keep_answering() {
    let m = Arc::new(Metrics::new());
    let srv = m
        .serve("127.0.0.1:0".parse().unwrap(), &config(5000))
        .unwrap();
    let addr = srv.addr();
    assert_eq!(get(addr, "/metrics").0, 200);
    let before = rss_kib();

    let (cut, sent, _s) = testkit::http::endless_header(addr);
    let grown = rss_kib().saturating_sub(before);
    assert!(
        cut,
        "the agent read {} MiB of one header line without closing the connection (RSS +{grown} KiB)",
        sent >> 20
    );
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB for one header");
    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("baton_agent_metrics_refused_total{reason=\"header_too_large\"} 1"),
        "{text}"
    );
}

#[test]
fn stalled_headers_are_closed_at_the_header_timeout() {
    let m = Arc::new(Metrics::new());
    let srv = m
        .serve("127.0.0.1:0".parse().unwrap(), &config(500))
        .unwrap();
    let addr = srv.addr();
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        slow.push(s);
    }
    for (i, s) in slow.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t0 = Instant::now();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("stalled connection {i} still open: {e}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(4));
    }
    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("baton_agent_metrics_refused_total{reason=\"header_timeout\"} 8"),
        "{text}"
    );
}
