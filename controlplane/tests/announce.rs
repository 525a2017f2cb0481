//! The VIP announcement of a cluster member (`cluster.announce`), against a
//! scripted stand-in for BIRD's control socket: the switch enables the
//! protocol once it runs with a usable backend, `POST /drain` disables it
//! and `POST /undrain` enables it again, and a graceful stop disables it
//! first and keeps serving for `withdraw_grace`. The real BIRD and routers
//! are in the test bed's cluster tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controlplane::config::load_file_with;
use controlplane::run::Switch;
use testkit::temp_dir::TempDir;

const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";
const TOKEN: &str = "announce-test-token-0123456789abcdef0123";

/// A BIRD control socket that records every command and answers it.
fn fake_bird(path: &std::path::Path) -> Arc<Mutex<Vec<String>>> {
    let l = UnixListener::bind(path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            if (&s).write_all(b"0001 BIRD 2.0.12 ready.\n").is_err() {
                continue;
            }
            let mut cmd = String::new();
            if r.read_line(&mut cmd).is_err() {
                continue;
            }
            let cmd = cmd.trim().to_string();
            let reply = if cmd.starts_with("enable") {
                "0011 vip: enabled\n"
            } else {
                "0009 vip: disabled\n"
            };
            let _ = (&s).write_all(reply.as_bytes());
            s2.lock().unwrap().push(cmd);
        }
    });
    seen
}

fn last(seen: &Mutex<Vec<String>>) -> Option<String> {
    seen.lock().unwrap().last().cloned()
}

fn wait_for(seen: &Mutex<Vec<String>>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while last(seen).as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "waited for `{want}`; commands: {:?}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a switch in `dir` whose profile adds `extra` (YAML) to a minimal
/// one with an admin token; returns it and the `Authorization` value.
fn start(dir: &TempDir, extra: &str) -> (Switch, String) {
    use std::os::unix::fs::PermissionsExt;
    let token = dir.0.join("admin.token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.0.join("p.yaml");
    std::fs::write(
        &path,
        format!(
            r#"name: announce-test
io: {{ memory: {{}} }}
workers: {{ count: 1 }}
switch: {{ data_ip: 198.18.0.2 }}
thop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: "{KEY}" }}] }}
admin: {{ listen: "127.0.0.1:0", token_file: "{}" }}
health: {{ check: {{ none: {{}} }} }}
tuning: {{ table_capacity: 1024 }}
limits: {{ pending_per_worker: 256 }}
backends:
  - {{ name: static-1, address: 198.18.0.11 }}
pools:
  - {{ name: static, backends: [static-1] }}
services:
  - {{ name: web, vip: 198.18.0.10, default_pool: static }}
{extra}"#,
            token.display()
        ),
    )
    .unwrap();
    let l = load_file_with(&path, &HashMap::new()).unwrap();
    let sw = Switch::start(l.profile, &path, HashMap::new()).unwrap();
    (sw, format!("Bearer {TOKEN}"))
}

#[test]
fn the_vips_are_announced_while_healthy_and_withdrawn_on_drain_and_stop() {
    let dir = TempDir::new("cp-announce");
    let sock = dir.0.join("bird.ctl");
    let seen = fake_bird(&sock);
    let (sw, bearer) = start(
        &dir,
        &format!(
            "cluster:\n  announce:\n    bird: {{ socket: \"{}\", protocol: vip }}\n    withdraw_grace: 300ms\n",
            sock.display()
        ),
    );
    let addr = sw.admin_addr().unwrap();
    wait_for(&seen, "enable vip");
    let auth = [("Authorization", bearer.as_str())];
    let (status, body) = testkit::http::request(addr, "POST", "/drain", &auth);
    assert_eq!(status, 200, "{body}");
    wait_for(&seen, "disable vip");
    let (status, body) = testkit::http::request(addr, "GET", "/metrics", &auth);
    assert_eq!(status, 200);
    assert!(
        body.contains("baton_vip_announced{protocol=\"vip\"} 0"),
        "{body}"
    );
    let (status, _) = testkit::http::request(addr, "POST", "/undrain", &auth);
    assert_eq!(status, 200);
    wait_for(&seen, "enable vip");
    let t0 = Instant::now();
    sw.shutdown();
    assert_eq!(last(&seen).as_deref(), Some("disable vip"));
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "served on for withdraw_grace after the withdrawal"
    );
}

#[test]
fn drain_without_an_announcement_is_refused() {
    let dir = TempDir::new("cp-announce-none");
    let (sw, bearer) = start(&dir, "");
    let (status, body) = testkit::http::request(
        sw.admin_addr().unwrap(),
        "POST",
        "/drain",
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cluster.announce"), "{body}");
    sw.shutdown();
}
