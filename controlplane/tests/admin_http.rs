//! The management endpoint over real HTTP: `/metrics` scraped and checked by
//! `promtool check metrics`, `/healthz`, `/backends`, drain, `/reload` with a
//! good and a bad profile (with the admin token); and the `baton` binary's
//! SIGHUP reload and SIGTERM graceful stop. Abuse of the endpoint is in
//! `admin_limits.rs`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use controlplane::config::load_file_with;
use controlplane::run::Switch;
use testkit::temp_dir::TempDir;

const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";
/// The admin token every request sends (writes need it).
const TOKEN: &str = "admin-http-test-token-0123456789abcdef";

/// A temporary directory, removed on drop.
fn profile(listen: &str, weight: u32) -> String {
    format!(
        r#"name: admin-test
io: {{ memory: {{}} }}
workers: {{ count: 2 }}
switch: {{ data_ip: 198.18.0.2 }}
thop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: "{KEY}" }}] }}
admin: {{ listen: "{listen}" }}
health: {{ check: {{ none: {{}} }} }}
tuning: {{ table_capacity: 1024, polling: {{ mode: adaptive, max_sleep: 1ms }} }}
limits: {{ pending_per_worker: 256 }}
backends:
  - {{ name: static-1, address: 198.18.0.11, weight: {weight} }}
  - {{ name: app-1, address: 198.18.0.13 }}
pools:
  - {{ name: static, backends: [static-1] }}
  - {{ name: app, backends: [app-1], policy: {{ maglev: {{ key: host }} }} }}
services:
  - {{ name: web, vip: 198.18.0.10, default_pool: static }}
"#
    )
}

/// One HTTP/1.1 exchange with the admin token; returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let bearer = format!("Bearer {TOKEN}");
    testkit::http::request(addr, method, path, &[("Authorization", &bearer)])
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool prints lint findings (naming conventions) without failing; we want none.
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lint.trim().is_empty(), "promtool lint findings:\n{lint}");
}

#[test]
fn metrics_are_scraped_over_http_and_pass_promtool() {
    let dir = TempDir::new("cp-admin-metrics");
    let path = dir.0.join("p.yaml");
    std::fs::write(&path, profile("127.0.0.1:0", 1)).unwrap();
    let l = load_file_with(&path, &HashMap::new()).unwrap();
    let sw = Switch::start(l.profile, &path, HashMap::new()).unwrap();
    let addr = sw.admin_addr().unwrap();

    let (status, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200);
    for name in [
        "baton_build_info",
        "baton_config_generation 1",
        "baton_backend_up{backend=\"static-1\"} 1",
        "baton_worker_received_packets_total{worker=\"0\"}",
        "baton_worker_received_packets_total{worker=\"1\"}",
        "baton_worker_dropped_packets_total{reason=\"malformed\",worker=\"0\"}",
        "baton_worker_connections{state=\"FORWARDING\",worker=\"1\"}",
        "baton_worker_handoffs_total{outcome=\"acked\",worker=\"0\"}",
        "baton_worker_syn_cookies_total{result=\"validated\",worker=\"0\"}",
        "baton_worker_thop_retransmits_total{worker=\"0\"}",
        "baton_worker_new_connections_total{worker=\"0\"}",
        "baton_dispatch_decision_seconds_bucket",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    promtool_check(&body);

    let (status, body) = http(addr, "GET", "/healthz");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "ok");
    let (status, body) = http(addr, "GET", "/backends");
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["backends"][0]["name"], "static-1");
    assert_eq!(v["pools"][1]["policy"], "maglev");
    assert_eq!(http(addr, "GET", "/nope").0, 404);
    assert_eq!(http(addr, "GET", "/reload").0, 405);
    sw.shutdown();
}

/// The raw answer (status line, headers and body) to a GET.
fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_status_page_is_self_contained_and_its_data_is_the_metrics() {
    let dir = TempDir::new("cp-admin-status");
    let path = dir.0.join("p.yaml");
    std::fs::write(&path, profile("127.0.0.1:0", 3)).unwrap();
    let l = load_file_with(&path, &HashMap::new()).unwrap();
    let sw = Switch::start(l.profile, &path, HashMap::new()).unwrap();
    let addr = sw.admin_addr().unwrap();

    let page = raw_get(addr, "/status");
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(body.contains("<title>Baton status</title>"));
    // Nothing loaded from elsewhere: no external script, style, image or font.
    for external in ["src=", "<link", "@import", "url(", "http://", "https://"] {
        assert!(!body.contains(external), "the page refers to {external}");
    }

    let (status, body) = http(addr, "GET", "/status.json");
    assert_eq!(status, 200);
    let v = json(&body);
    let (_, m) = http(addr, "GET", "/metrics");
    let sample = |line: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line} not in /metrics"))
    };
    assert_eq!(v["switch"]["profile"], "admin-test");
    assert_eq!(v["switch"]["status"], "serving");
    assert_eq!(v["switch"]["control_plane_answered"], true);
    let b = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "static-1")
        .unwrap();
    assert_eq!(
        b["weight"].as_f64(),
        Some(sample("baton_backend_weight{backend=\"static-1\"}"))
    );
    assert_eq!(b["weight"], 3);
    assert_eq!(b["up"], 1);
    assert_eq!(b["draining"], 0);
    assert_eq!(b["status"], "up");
    assert_eq!(b["pools"], serde_json::json!(["static"]));
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for w in workers {
        let id = w["worker"].as_u64().unwrap();
        assert_eq!(
            w["received_packets"].as_f64(),
            Some(sample(&format!(
                "baton_worker_received_packets_total{{worker=\"{id}\"}}"
            )))
        );
        assert_eq!(w["connections"]["FORWARDING"], 0);
        assert!(w["drops"].as_object().unwrap().contains_key("malformed"));
    }
    // No handoff yet: percentiles are null, not zero.
    assert_eq!(v["handoff_latency"]["count"], 0.0);
    assert!(v["handoff_latency"]["p99_ms"].is_null());
    sw.shutdown();
}

#[test]
fn reload_and_drain_through_the_admin_endpoint() {
    let dir = TempDir::new("cp-admin-reload");
    let path = dir.0.join("p.yaml");
    let token = dir.0.join("admin.token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(
        &token,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let profile = |listen: &str, weight: u32| {
        profile(listen, weight).replace(
            &format!("admin: {{ listen: \"{listen}\" }}"),
            &format!(
                "admin: {{ listen: \"{listen}\", token_file: \"{}\" }}",
                token.display()
            ),
        )
    };
    assert!(profile("127.0.0.1:0", 1).contains("token_file"));
    std::fs::write(&path, profile("127.0.0.1:0", 1)).unwrap();
    let l = load_file_with(&path, &HashMap::new()).unwrap();
    let sw = Switch::start(l.profile, &path, HashMap::new()).unwrap();
    let addr = sw.admin_addr().unwrap();

    std::fs::write(&path, profile("127.0.0.1:0", 5)).unwrap();
    let (status, body) = http(addr, "POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["generation"], 2);
    // The admin address itself changed (port 0 → 0 is equal): nothing needs a restart.
    assert_eq!(json(&body)["restart_required"], serde_json::json!([]));
    let (_, m) = http(addr, "GET", "/metrics");
    assert!(
        m.contains("baton_backend_weight{backend=\"static-1\"} 5"),
        "{m}"
    );
    assert!(m.contains("baton_config_generation 2"));

    // A broken profile is refused with its errors; the running one stays.
    std::fs::write(
        &path,
        profile("127.0.0.1:0", 5).replace("default_pool: static", "default_pool: nowhere"),
    )
    .unwrap();
    let (status, body) = http(addr, "POST", "/reload");
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("services[0].default_pool"),
        "{body}"
    );
    let (_, m) = http(addr, "GET", "/metrics");
    assert!(m.contains("baton_config_generation 2"));
    assert!(
        m.contains("baton_config_reloads_total{result=\"failure\"} 1"),
        "{m}"
    );

    let (status, _) = http(addr, "POST", "/backends/static-1/drain");
    assert_eq!(status, 200);
    let (_, b) = http(addr, "GET", "/backends");
    assert_eq!(json(&b)["backends"][0]["status"], "draining");
    assert_eq!(http(addr, "POST", "/backends/ghost/drain").0, 404);
    assert_eq!(http(addr, "POST", "/backends/static-1/undrain").0, 200);
    let (_, b) = http(addr, "GET", "/backends");
    assert_eq!(json(&b)["backends"][0]["status"], "up");
    sw.shutdown();
}

/// A free loopback port (bound and released; good enough for one test).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Baton(Child);

impl Drop for Baton {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_healthz(addr: SocketAddr, child: &mut Child) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("baton exited early: {st}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            let (s, b) = http(addr, "GET", "/healthz");
            if s == 200 {
                return json(&b);
            }
        }
        assert!(Instant::now() < deadline, "baton never answered on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn the_binary_reloads_on_sighup_and_stops_gracefully_on_sigterm() {
    let dir = TempDir::new("cp-admin-binary");
    let path = dir.0.join("p.yaml");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    std::fs::write(&path, profile(&listen, 1)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = Baton(child);
    let addr: SocketAddr = listen.parse().unwrap();
    assert_eq!(wait_healthz(addr, &mut b.0)["generation"], 1);

    std::fs::write(&path, profile(&listen, 4)).unwrap();
    signal(&b.0, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while wait_healthz(addr, &mut b.0)["generation"] != 2 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, m) = http(addr, "GET", "/metrics");
    assert!(m.contains("baton_backend_weight{backend=\"static-1\"} 4"));

    signal(&b.0, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = b.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop baton");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut log = String::new();
    b.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("stopping gracefully"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn run_refuses_a_bad_profile_with_its_errors() {
    let dir = TempDir::new("cp-admin-bad");
    let path = dir.0.join("p.yaml");
    std::fs::write(
        &path,
        profile("127.0.0.1:0", 1).replace("weight: 1", "wieght: 1"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.yaml:11:"), "{err}");
    assert!(err.contains("`backends[0].wieght`"), "{err}");
    let _ = Path::new("");
}
