//! The admin endpoint under abuse, over real loopback TCP against a switch
//! started in this process (memory I/O): an endless header, a thousand
//! stalled headers, cross-site and token-less writes, and a token file that
//! others can read. Each test also checks that `/metrics` keeps answering
//! and that the refusal is counted.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use controlplane::config::load_file_with;
use controlplane::run::Switch;
use testkit::http::{get, request};
use testkit::process::rss_kib;
use testkit::temp_dir::TempDir;

const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";
const TOKEN: &str = "admin-test-token-0123456789abcdef0123456789";

/// A temporary directory, removed on drop.
/// A profile whose `admin` section is `admin`.
fn profile(admin: &str) -> String {
    format!(
        r#"name: admin-limits
io: {{ memory: {{}} }}
workers: {{ count: 1 }}
switch: {{ data_ip: 198.18.0.2 }}
thop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: "{KEY}" }}] }}
admin: {admin}
health: {{ check: {{ none: {{}} }} }}
tuning: {{ table_capacity: 1024, polling: {{ mode: adaptive, max_sleep: 1ms }} }}
limits: {{ pending_per_worker: 256 }}
backends:
  - {{ name: static-1, address: 198.18.0.11 }}
pools:
  - {{ name: static, backends: [static-1] }}
services:
  - {{ name: web, vip: 198.18.0.10, default_pool: static }}
"#
    )
}

fn start(dir: &TempDir, admin: &str) -> Switch {
    let path = dir.0.join("p.yaml");
    std::fs::write(&path, profile(admin)).unwrap();
    let l = load_file_with(&path, &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    Switch::start(l.profile, &path, HashMap::new()).unwrap()
}

/// The value of one series in `/metrics` (0 when absent).
fn series(addr: SocketAddr, name_and_labels: &str) -> f64 {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn draining(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/backends");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["backends"][0]["status"].as_str().unwrap().to_string()
}

fn token_file(dir: &TempDir, mode: u32, token: &str) -> PathBuf {
    let p = dir.0.join("admin.token");
    std::fs::write(&p, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn with_token(path: &Path) -> String {
    format!(
        "{{ listen: \"127.0.0.1:0\", token_file: \"{}\" }}",
        path.display()
    )
}

#[test]
fn an_endless_header_is_cut_and_metrics_keep_answering() {
    let dir = TempDir::new("cp-admin-limits-endless");
    let sw = start(&dir, "{ listen: \"127.0.0.1:0\" }");
    let addr = sw.admin_addr().unwrap();
    assert_eq!(get(addr, "/metrics").0, 200);
    let before = rss_kib();

    let (cut, sent, mut s) = testkit::http::endless_header(addr);
    let grown = rss_kib().saturating_sub(before);
    assert!(
        cut,
        "the server read {} MiB of one header line without closing the connection (RSS +{grown} KiB)",
        sent >> 20
    );
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB for one header");
    // The answer, if the client could read it, was 431.
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut head = [0u8; 64];
    if let Ok(n) = s.read(&mut head) {
        let text = String::from_utf8_lossy(&head[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 431"), "{text}");
    }
    assert_eq!(get(addr, "/metrics").0, 200);
    assert_eq!(
        series(
            addr,
            "baton_admin_refused_total{reason=\"header_too_large\"}"
        ),
        1.0
    );
    sw.shutdown();
}

/// Raises this process's open-file limit to its hard limit.
fn more_files() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

#[test]
fn stalled_headers_are_closed_at_the_header_timeout_and_metrics_still_answer() {
    more_files();
    let dir = TempDir::new("cp-admin-limits-slow");
    let sw = start(
        &dir,
        "{ listen: \"127.0.0.1:0\", header_timeout: 1s, max_connections: 32 }",
    );
    let addr = sw.admin_addr().unwrap();
    assert_eq!(get(addr, "/metrics").0, 200);
    let threads_before = threads();

    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        // Best effort: a connection closed at once by the server may refuse the write.
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        slow.push(s);
    }
    let t0 = Instant::now();
    let threads_during = threads();
    assert!(
        threads_during <= threads_before + 8,
        "{threads_during} threads with 1000 stalled connections (before: {threads_before})"
    );

    // A legitimate scrape is answered at once: it closes the oldest stalled
    // connection to make room.
    let answered = loop {
        let (status, _) = get(addr, "/healthz");
        if status == 200 {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "/healthz never answered while 1000 headers stalled"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(answered < Duration::from_secs(1), "{answered:?}");

    // Every stalled connection is closed by the server (EOF or reset) by then.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(t0.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, s) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("stalled connection {i} still open after the header timeout: {e}"),
        }
    }
    let timed_out = series(addr, "baton_admin_refused_total{reason=\"header_timeout\"}");
    let refused = series(
        addr,
        "baton_admin_refused_total{reason=\"too_many_connections\"}",
    );
    // Beyond the connection limit, each new connection closes the oldest
    // stalled one; the last ones time out.
    let evicted = series(
        addr,
        "baton_admin_refused_total{reason=\"evicted_waiting\"}",
    );
    assert!(timed_out >= 1.0, "no header timeout counted");
    assert!(evicted >= 1.0, "no stalled connection evicted");
    assert_eq!(
        timed_out + refused + evicted,
        1000.0,
        "every stalled connection counted once"
    );
    sw.shutdown();
}

#[test]
fn writes_without_a_token_file_are_refused_and_say_how_to_enable_them() {
    let dir = TempDir::new("cp-admin-limits-notoken");
    let sw = start(&dir, "{ listen: \"127.0.0.1:0\" }");
    let addr = sw.admin_addr().unwrap();
    let (status, body) = request(addr, "POST", "/backends/static-1/drain", &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin.token_file"), "{body}");
    assert_eq!(draining(addr), "up");
    assert_eq!(request(addr, "POST", "/reload", &[]).0, 403);
    assert_eq!(get(addr, "/metrics").0, 200);
    assert!(
        series(
            addr,
            "baton_admin_refused_total{reason=\"writes_disabled\"}"
        ) >= 2.0
    );
    sw.shutdown();
}

#[test]
fn writes_need_the_token_and_cross_site_requests_are_refused() {
    let dir = TempDir::new("cp-admin-limits-token");
    let tf = token_file(&dir, 0o600, TOKEN);
    let sw = start(&dir, &with_token(&tf));
    let addr = sw.admin_addr().unwrap();
    let bearer = format!("Bearer {TOKEN}");

    // No token, a wrong token: 401, nothing changes.
    let (status, body) = request(addr, "POST", "/backends/static-1/drain", &[]);
    assert_eq!(status, 401, "{body}");
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    let (status, _) = request(
        addr,
        "POST",
        "/backends/static-1/drain",
        &[("Authorization", &wrong)],
    );
    assert_eq!(status, 401);
    assert_eq!(draining(addr), "up");

    // A browser's cross-site POST (even if it had the token) is refused.
    let (status, body) = request(
        addr,
        "POST",
        "/backends/static-1/drain",
        &[
            ("Origin", "http://evil.example"),
            ("Authorization", &bearer),
        ],
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = request(
        addr,
        "POST",
        "/backends/static-1/drain",
        &[("Sec-Fetch-Site", "cross-site"), ("Authorization", &bearer)],
    );
    assert_eq!(status, 403);
    assert_eq!(draining(addr), "up");

    // With the token: drained, undrained, reloaded.
    let (status, body) = request(
        addr,
        "POST",
        "/backends/static-1/drain",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(draining(addr), "draining");
    let own = format!("http://{addr}");
    let (status, _) = request(
        addr,
        "POST",
        "/backends/static-1/undrain",
        &[("Authorization", &bearer), ("Origin", &own)],
    );
    assert_eq!(status, 200, "the admin's own origin is allowed");
    assert_eq!(draining(addr), "up");
    let (status, body) = request(addr, "POST", "/reload", &[("Authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");

    // Reads need no token.
    assert_eq!(get(addr, "/backends").0, 200);
    assert_eq!(
        series(addr, "baton_admin_refused_total{reason=\"unauthorized\"}"),
        2.0
    );
    assert_eq!(
        series(addr, "baton_admin_refused_total{reason=\"cross_site\"}"),
        2.0
    );
    sw.shutdown();
}

#[test]
fn a_token_file_others_can_read_or_a_short_token_is_refused_at_load() {
    let dir = TempDir::new("cp-admin-limits-mode");
    let path = dir.0.join("p.yaml");
    let tf = token_file(&dir, 0o644, TOKEN);
    std::fs::write(&path, profile(&with_token(&tf))).unwrap();
    let Err(err) = load_file_with(&path, &HashMap::new()) else {
        panic!("a 0644 token file is refused");
    };
    let err = err.to_string();
    assert!(err.contains("admin.token_file"), "{err}");
    assert!(err.contains("0600"), "{err}");

    let tf = token_file(&dir, 0o600, "short");
    std::fs::write(&path, profile(&with_token(&tf))).unwrap();
    let Err(err) = load_file_with(&path, &HashMap::new()) else {
        panic!("a short token is refused");
    };
    let err = err.to_string();
    assert!(err.contains("admin.token_file"), "{err}");
    assert!(err.contains("at least"), "{err}");

    // `baton check-config` says the same.
    let tf = token_file(&dir, 0o640, TOKEN);
    std::fs::write(&path, profile(&with_token(&tf))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["check-config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin.token_file"), "{err}");
}

#[test]
fn addresses_outside_the_allow_list_are_closed_before_a_byte_is_read() {
    let dir = TempDir::new("cp-admin-limits-allow");
    let sw = start(&dir, "{ listen: \"127.0.0.1:0\", allow: [198.51.100.1] }");
    let addr = sw.admin_addr().unwrap();
    let (status, _) = get(addr, "/metrics");
    assert_eq!(status, 0, "refused without an answer");
    // Only the switch itself can tell: read the counter through the library.
    let text = sw.metrics.render();
    assert!(
        text.contains("baton_admin_refused_total{reason=\"not_allowed\"} 1"),
        "{text}"
    );
    sw.shutdown();
}
