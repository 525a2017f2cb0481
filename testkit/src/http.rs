//! A blocking HTTP/1.1 client for the admin and metrics endpoints under test
//! (one request per connection), and reading samples out of a Prometheus
//! text exposition: the control plane's and the agent's endpoint tests and
//! the end-to-end test all query `/metrics` and friends this way.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One request with extra header lines (`Connection: close`); returns the
/// status and the body. Status 0: the connection was closed without an
/// answer. Panics when the connection cannot be made.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends an HTTP server at `addr` a header line that never ends (64 KiB
/// chunks, up to 32 MiB or 5 s) — the slow-memory attack every management
/// server must cut. Returns whether the server closed the connection, how
/// many bytes were sent, and the stream (to read what it answered).
pub fn endless_header(addr: SocketAddr) -> (bool, usize, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let (mut sent, t0) = (0usize, Instant::now());
    let cut = loop {
        if sent >= 32 << 20 || t0.elapsed() > Duration::from_secs(5) {
            break false;
        }
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => break true,
        }
    };
    (cut, sent, s)
}

/// `GET path`: (status, body).
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, &[])
}

/// The value of one sample (`name{labels}` exactly, as printed) in a
/// metrics text; 0 when absent.
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every sample whose line starts with `prefix` (a metric over
/// all its label sets, or a subset: `name{label="x"`).
pub fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_samples_exactly_and_sums_by_prefix() {
        let t = "# HELP x\na_total 1\na_total_more 5\nb{k=\"1\"} 2\nb{k=\"2\"} 3\n";
        assert_eq!(super::sample(t, "a_total"), 1.0);
        assert_eq!(super::sample(t, "b{k=\"2\"}"), 3.0);
        assert_eq!(super::sample(t, "missing"), 0.0);
        assert_eq!(super::sum(t, "b{"), 5.0);
    }
}
