//! End to end: the `baton` binary over AF_PACKET and over DPDK (the
//! `net_af_packet` PMD on a veth, `--no-huge`) in network namespaces, a real
//! Linux TCP client, and fake agents that authenticate THOP_CREATE with the
//! profile's key, record which request reached which backend, and answer
//! THOP_ACK. Shows that `baton run` dispatches by the configured rules and
//! policies, reloads on SIGHUP under traffic without losing a request, and
//! serves `/metrics` (with real traffic counted) that `promtool` accepts.
//!
//! Topology (all names carry this process's id; removed on drop, even on
//! failure): a hub namespace with a bridge; the switch (data veth without an
//! address, admin on its loopback), a client 198.18.0.101, backends
//! 198.18.0.11–13.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use handoff_proto::Key;
use testkit::fake_agent::FakeAgent;
use testkit::http::sum as metric;
use testkit::netns::{spawn_in as in_ns, unique, Netns};
use testkit::process::Proc;

const KEY: [u8; 32] = *b"baton-testbed-key-not-for-prod!!";
const BACKENDS: [(&str, [u8; 4]); 3] = [
    ("static-1", [198, 18, 0, 11]),
    ("static-2", [198, 18, 0, 12]),
    ("app-1", [198, 18, 0, 13]),
];

/// Namespaces of one test (the hub first), removed on drop.
struct Bed {
    prefix: String,
    namespaces: Vec<Netns>,
}

impl Bed {
    fn new() -> Bed {
        testkit::require_root();
        let prefix = unique("cpe");
        let hub = Netns::named(&format!("{prefix}-hub"));
        hub.bridge("br0");
        let mut bed = Bed {
            prefix,
            namespaces: vec![hub],
        };
        // The switch: data veth with no address.
        bed.host("sw", "sw-data", None);
        bed.host("c1", "eth0", Some("198.18.0.101/24"));
        for (i, (_, ip)) in BACKENDS.iter().enumerate() {
            let addr = format!("{}/24", Ipv4Addr::from(*ip));
            bed.host(&format!("b{}", i + 1), "eth0", Some(&addr));
        }
        bed
    }

    /// A namespace with a veth (named `ifname`) to the hub's bridge.
    fn host(&mut self, role: &str, ifname: &str, addr: Option<&str>) {
        let ns = Netns::named(&self.name(role));
        let hub = &self.namespaces[0];
        let port = format!("p{}", self.namespaces.len());
        ns.veth(ifname, hub, &port);
        hub.ip(&["link", "set", &port, "master", "br0"]);
        if let Some(a) = addr {
            ns.addr(ifname, a);
        }
        self.namespaces.push(ns);
    }

    fn name(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Hosts before the hub.
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
    }
}

/// What the fake agents saw: (backend, request path), in arrival order.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A fake agent on backend `ip` in namespace `ns`, recording what it adopts.
fn recording_agent(
    ns: String,
    name: &'static str,
    ip: [u8; 4],
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    in_ns(&ns, move || {
        let me = Ipv4Addr::from(ip);
        let sock = UdpSocket::bind((me, 9199)).unwrap();
        FakeAgent::new(sock, me.into(), Key::new(1, KEY)).serve(&stop, |a| {
            seen.lock().unwrap().push((name.to_string(), a.path()));
        });
    })
}

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// Which packet I/O the switch runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Io {
    AfPacket,
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    Dpdk,
}

/// The test-bed profile for `io`, with test overrides, written next to copies of its includes.
fn write_profile(dir: &std::path::Path, io: Io) -> PathBuf {
    for f in ["base.yaml", "testbed.yaml", "testbed-dpdk.yaml"] {
        std::fs::copy(configs_dir().join(f), dir.join(f)).unwrap();
    }
    let base = match io {
        Io::AfPacket => "testbed.yaml",
        Io::Dpdk => "testbed-dpdk.yaml",
    };
    let p = dir.join("e2e.yaml");
    std::fs::write(
        &p,
        format!(
            "<<: !include {base}\nname: e2e\nworkers: {{ count: 2 }}\nhealth: {{ check: {{ none: {{}} }} }}\nadmin: {{ listen: 127.0.0.1:9100 }}\nlogging: {{ format: json, level: info, access_log: {{ enabled: true, sample_every: 1 }} }}\n"
        ),
    )
    .unwrap();
    p
}

fn http_in_ns(ns: &str, path: &'static str) -> String {
    in_ns(ns, move || {
        let mut s =
            TcpStream::connect_timeout(&"127.0.0.1:9100".parse().unwrap(), Duration::from_secs(2))
                .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .join()
    .unwrap()
    .unwrap_or_default()
}

/// A request from the client namespace; returns once it is written.
fn request(client_ns: &str, path: String) {
    in_ns(client_ns, move || {
        let vip: SocketAddr = "198.18.0.10:80".parse().unwrap();
        let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(5))
            .expect("handshake with the switch");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: e2e\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        // Keep the socket briefly so the request is acknowledged, then close.
        std::thread::sleep(Duration::from_millis(20));
    })
    .join()
    .unwrap();
}

/// Waits (bounded) until the agents have seen `n` requests.
fn wait_seen(seen: &Seen, n: usize, baton: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < n {
        baton.ensure_running().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Instant::now() < deadline,
            "only {:?} of {n} requests reached an agent; baton log:\n{}",
            seen.lock().unwrap(),
            baton.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_baton(bed: &Bed, profile: &std::path::Path, dir: &std::path::Path) -> Proc {
    let mut b = Proc::spawn_env(
        "baton",
        &bed.name("sw"),
        env!("CARGO_BIN_EXE_baton"),
        &["run", "--config", profile.to_str().unwrap()],
        &[("BATON_DATA_IFACE", "sw-data")],
        &dir.join("baton.log"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_in_ns(&bed.name("sw"), "/healthz").contains("\"ok\"") {
        b.ensure_running().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Instant::now() < deadline,
            "baton did not come up: {}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    b
}

#[test]
fn baton_run_over_af_packet_dispatches_by_rules_and_reloads_without_loss() {
    end_to_end(Io::AfPacket);
}

#[cfg(feature = "dpdk")]
#[test]
fn baton_run_over_dpdk_dispatches_by_rules_and_reloads_without_loss() {
    end_to_end(Io::Dpdk);
}

fn end_to_end(io: Io) {
    let bed = Bed::new();
    let dir = std::env::temp_dir().join(format!("{}-files", bed.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let agents: Vec<JoinHandle<()>> = BACKENDS
        .iter()
        .enumerate()
        .map(|(i, (name, ip))| {
            recording_agent(
                bed.name(&format!("b{}", i + 1)),
                name,
                *ip,
                seen.clone(),
                stop.clone(),
            )
        })
        .collect();
    let profile = write_profile(&dir, io);
    let mut baton = start_baton(&bed, &profile, &dir);
    let client = bed.name("c1");

    // Rules: static prefix and extensions → static pool (round-robin), /api/ → app, others → static.
    let paths = [
        "/static/a.css",
        "/img/logo.png",
        "/api/orders",
        "/index.html",
        "/static/b.js",
        "/api/cart",
        "/about",
        "/x/y.png",
    ];
    for (i, p) in paths.iter().enumerate() {
        request(&client, p.to_string());
        wait_seen(&seen, i + 1, &mut baton);
    }
    let got: HashMap<String, String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(b, p)| (p.clone(), b.clone()))
        .collect();
    for p in ["/api/orders", "/api/cart"] {
        assert_eq!(got[p], "app-1", "{got:?}");
    }
    let statics: Vec<&String> = paths
        .iter()
        .filter(|p| !p.starts_with("/api/"))
        .map(|p| &got[*p])
        .collect();
    assert!(statics.iter().all(|b| b.starts_with("static-")), "{got:?}");
    let s1 = statics.iter().filter(|b| b.as_str() == "static-1").count();
    let s2 = statics.len() - s1;
    // Weighted round-robin is decided on each worker with its own sequence
    // (2 workers here): each alternates, so the totals differ by at most
    // one per worker.
    assert!(
        s1.abs_diff(s2) <= 2 && s1 > 0 && s2 > 0,
        "weighted round-robin with equal weights alternates on each worker: {got:?}"
    );

    // Reload under traffic: flip the /api/ rule to the static pool and back with SIGHUP while requests flow.
    let text_a = std::fs::read_to_string(&profile).unwrap();
    let text_b = text_a.clone()
        + "services:\n  - name: web\n    vip: 198.18.0.10\n    port: 80\n    rules:\n      - { match: { path_prefix: [/api/] }, pool: static }\n    default_pool: app\n";
    let before = seen.lock().unwrap().len();
    let total = 40;
    for i in 0..total {
        if i % 8 == 4 {
            std::fs::write(&profile, if (i / 8) % 2 == 0 { &text_b } else { &text_a }).unwrap();
            baton.signal(libc::SIGHUP);
        }
        request(&client, format!("/api/r{i}"));
    }
    wait_seen(&seen, before + total, &mut baton);
    let after: Vec<(String, String)> = seen.lock().unwrap()[before..].to_vec();
    let mut paths_seen: Vec<&String> = after.iter().map(|(_, p)| p).collect();
    paths_seen.sort();
    paths_seen.dedup();
    assert_eq!(
        paths_seen.len(),
        total,
        "every request reached exactly one agent"
    );

    // After a reload has been applied, routing follows the new rules.
    let generation = |bed: &Bed| -> u64 {
        let h = http_in_ns(&bed.name("sw"), "/healthz");
        let body = h.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("{}");
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["generation"].as_u64())
            .unwrap_or(0)
    };
    let g0 = generation(&bed);
    std::fs::write(&profile, &text_b).unwrap();
    baton.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while generation(&bed) <= g0 {
        assert!(Instant::now() < deadline, "SIGHUP reload not applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    request(&client, "/api/after-reload".into());
    wait_seen(&seen, before + total + 1, &mut baton);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, "/api/after-reload");
    assert!(
        last.0.starts_with("static-"),
        "the reloaded rule sends /api/ to the static pool: {last:?}"
    );
    let total = total + 1;

    let m = http_in_ns(&bed.name("sw"), "/metrics");
    let body = m.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert!(metric(body, "baton_config_generation") >= 2.0, "{body}");
    assert_eq!(
        metric(body, "baton_dispatch_rejections_total"),
        0.0,
        "no request was refused during reloads"
    );
    assert_eq!(
        metric(body, "baton_dispatch_decisions_total"),
        (paths.len() + total) as f64
    );
    assert!(metric(body, "baton_worker_new_connections_total") >= (paths.len() + total) as f64);
    assert!(
        metric(body, "baton_worker_handoffs_total{outcome=\"acked\"")
            >= (paths.len() + total) as f64,
        "{body}"
    );
    assert!(metric(body, "baton_handoff_latency_seconds_count") >= 1.0);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with(body);
    assert!(promtool.0, "promtool: {}", promtool.1);
    promtool.1.clear();

    // Access log: one JSON line per dispatch, with the fields operators need.
    let log = baton.log();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"target\":\"baton::access\""))
        .collect();
    assert_eq!(access.len(), paths.len() + total, "{log}");
    let first: serde_json::Value = serde_json::from_str(access[0]).unwrap();
    for f in [
        "client",
        "method",
        "host",
        "path",
        "pool",
        "backend",
        "decision_us",
    ] {
        assert!(first.get(f).is_some(), "access log lacks {f}: {first}");
    }
    assert_eq!(first["path"], "/static/a.css");
    assert_eq!(first["host"], "shop.example");

    stop.store(true, Ordering::Relaxed);
    for a in agents {
        let _ = a.join();
    }
    drop(baton);
    let _ = std::fs::remove_dir_all(&dir);
    // DPDK's run-time folder for this file prefix.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/baton-{}", bed.prefix));
}

trait OutputWith {
    fn output_with(&mut self, input: &str) -> (bool, String);
}

impl OutputWith for Command {
    fn output_with(&mut self, input: &str) -> (bool, String) {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success() && text.trim().is_empty(), text)
    }
}
