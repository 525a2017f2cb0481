//! The control-plane thread driven through the dataplane's real dispatch
//! queues, with real HTTP servers on loopback as health-check targets:
//! routing by rules, policies, active and passive health, drain, reload under
//! load without a lost request, and a worker whose decision queue is full.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use controlplane::config::{load_str, Profile};
use controlplane::control::{AdminRequest, ControlPlane};
use controlplane::metrics::Metrics;
use crossbeam_channel::Sender;
use dataplane::dispatch::{
    channels, ConnToken, Decision, DispatchRequest, HandoffOutcome, Verdict, WorkerEvent,
    WorkerQueues,
};

const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";

/// An HTTP server on loopback answering every request with the current `status`.
struct Server {
    port: u16,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (status.clone(), stop.clone());
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let mut b = [0u8; 512];
                        let _ = s.read(&mut b);
                        let _ = write!(
                            s,
                            "HTTP/1.1 {} X\r\nContent-Length: 0\r\n\r\n",
                            st.load(Ordering::Relaxed)
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { port, status, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The profile; `checks`: active HTTP checks against the loopback servers
/// (only the health test wants them: elsewhere a check slowed down by a
/// loaded machine must not change which backend is chosen).
fn profile_text(
    ports: [u16; 3],
    static_weights: (u32, u32),
    extra_rule: &str,
    checks: bool,
) -> String {
    let h = |port: u16| {
        let check = if checks {
            format!("{{ http: {{ port: {port}, path: /healthz }} }}")
        } else {
            "{ none: {} }".to_string()
        };
        format!(
            "{{ check: {check}, interval: 100ms, timeout: 100ms, rise: 2, fall: 2, passive: {{ handoff_failures: 2, hold_down: 1h }} }}"
        )
    };
    format!(
        r#"
name: loop
io: {{ memory: {{}} }}
switch: {{ data_ip: 198.18.0.2 }}
thop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: "{KEY}" }}] }}
logging: {{ access_log: {{ enabled: true, sample_every: 10 }} }}
backends:
  - {{ name: static-1, address: 198.18.0.11, management: 127.0.0.1, weight: {w1}, health: {h1} }}
  - {{ name: static-2, address: 198.18.0.12, management: 127.0.0.1, weight: {w2}, health: {h2} }}
  - {{ name: app-1, address: 198.18.0.13, management: 127.0.0.1, health: {h3} }}
pools:
  - {{ name: static, backends: [static-1, static-2], policy: {{ weighted_round_robin: {{}} }} }}
  - {{ name: app, backends: [app-1], policy: {{ least_connections: {{}} }} }}
services:
  - name: web
    vip: 198.18.0.10
    port: 80
    rules:
{extra_rule}      - {{ name: static, match: {{ extension: [png, css] }}, pool: static }}
      - {{ name: api, match: {{ path_prefix: [/api/] }}, pool: app }}
    default_pool: static
"#,
        w1 = static_weights.0,
        w2 = static_weights.1,
        h1 = h(ports[0]),
        h2 = h(ports[1]),
        h3 = h(ports[2]),
    )
}

fn parse(text: &str) -> Profile {
    load_str(text, Path::new("loop.yaml"), &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}"))
        .profile
}

/// The control loop on its own thread, with the worker ends of the queues.
struct Harness {
    workers: Vec<WorkerQueues>,
    admin: Sender<AdminRequest>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
    next_slot: u32,
    _servers: Vec<Server>,
}

impl Harness {
    fn start(servers: Vec<Server>, n_workers: usize, capacity: usize) -> Harness {
        Self::start_with(servers, n_workers, capacity, false)
    }

    fn start_with(
        servers: Vec<Server>,
        n_workers: usize,
        capacity: usize,
        checks: bool,
    ) -> Harness {
        let ports = [servers[0].port, servers[1].port, servers[2].port];
        let profile = parse(&profile_text(ports, (1, 1), "", checks));
        let metrics = Arc::new(Metrics::new("loop"));
        let (workers, cq) = channels(n_workers, capacity);
        let shared = workers[0].shared.clone();
        let cp =
            ControlPlane::new(profile, metrics.clone(), Arc::new(move || shared.now_ns())).unwrap();
        let (admin, admin_rx) = crossbeam_channel::bounded(16);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || cp.run(cq, admin_rx, s));
        Harness {
            workers,
            admin,
            stop,
            thread: Some(thread),
            metrics,
            next_slot: 0,
            _servers: servers,
        }
    }

    fn ports(&self) -> [u16; 3] {
        [
            self._servers[0].port,
            self._servers[1].port,
            self._servers[2].port,
        ]
    }

    fn send(&mut self, worker: usize, raw: &str, exclude: Vec<u32>) -> ConnToken {
        self.next_slot += 1;
        let token = ConnToken {
            worker: worker as u16,
            slot: self.next_slot,
            generation: 1,
        };
        let q = &self.workers[worker];
        let req = DispatchRequest {
            token,
            client: "198.18.0.101:40000".parse().unwrap(),
            vip: "198.18.0.10:80".parse().unwrap(),
            header: raw.as_bytes().to_vec(),
            exclude,
            header_complete_ns: q.shared.now_ns(),
        };
        // A worker would answer 503 on a full queue; the test waits for room.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut req = req;
        while let Err(e) = q.requests.try_send(req) {
            assert!(Instant::now() < deadline, "request queue stayed full");
            req = e.into_inner();
            std::thread::sleep(Duration::from_millis(1));
        }
        token
    }

    fn recv(&self, worker: usize) -> Decision {
        self.workers[worker]
            .decisions
            .recv_timeout(Duration::from_secs(10))
            .expect("a decision within 10 s")
    }

    /// Sends one GET and returns the backend's name, or the status of a rejection.
    fn route(&mut self, path: &str) -> Result<String, u16> {
        self.route_excluding(path, vec![])
    }

    fn route_excluding(&mut self, path: &str, exclude: Vec<u32>) -> Result<String, u16> {
        let t = self.send(
            0,
            &format!("GET {path} HTTP/1.1\r\nHost: example\r\n\r\n"),
            exclude,
        );
        let d = self.recv(0);
        assert_eq!(d.token, t);
        match d.verdict {
            Verdict::Backend(b) => Ok(name_of(b.ip)),
            Verdict::Reject(s) => Err(s),
        }
    }

    fn backends(&self) -> serde_json::Value {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.admin
            .send(AdminRequest::Backends { reply: tx })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    fn status_of(&self, name: &str) -> String {
        let v = self.backends();
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (bounded) until `name` has `status`.
    fn wait_status(&self, name: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.status_of(name) != status {
            assert!(
                Instant::now() < deadline,
                "{name} never became {status}: {}",
                self.backends()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn reload(&self, text: &str) -> u64 {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.admin
            .send(AdminRequest::Reload {
                profile: Box::new(parse(text)),
                reply: tx,
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap()
            .generation
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn name_of(ip: std::net::IpAddr) -> String {
    match ip.to_string().as_str() {
        "198.18.0.11" => "static-1",
        "198.18.0.12" => "static-2",
        "198.18.0.13" => "app-1",
        other => panic!("unexpected backend {other}"),
    }
    .to_string()
}

fn servers() -> Vec<Server> {
    vec![Server::start(), Server::start(), Server::start()]
}

#[test]
fn requests_follow_the_rules_and_the_pool_policies() {
    let mut h = Harness::start(servers(), 1, 64);
    let static_picks: Vec<String> = (0..4)
        .map(|i| h.route(&format!("/img/{i}.png")).unwrap())
        .collect();
    assert_eq!(
        static_picks,
        ["static-1", "static-2", "static-1", "static-2"]
    );
    assert_eq!(h.route("/api/users").unwrap(), "app-1");
    // No rule matches: the default pool (static), continuing its rotation.
    assert_eq!(h.route("/index.html").unwrap(), "static-1");
    // Garbage and an unknown VIP are rejected, not panicked on.
    h.send(0, "\x01\x02 nonsense\r\n\r\n", vec![]);
    assert_eq!(h.recv(0).verdict, Verdict::Reject(400));
    let q = &h.workers[0];
    q.requests
        .try_send(DispatchRequest {
            token: ConnToken {
                worker: 0,
                slot: 999,
                generation: 1,
            },
            client: "198.18.0.101:1".parse().unwrap(),
            vip: "198.18.0.99:80".parse().unwrap(),
            header: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            exclude: vec![],
            header_complete_ns: 0,
        })
        .unwrap();
    assert_eq!(h.recv(0).verdict, Verdict::Reject(503));
    // The header buffer comes back with the decision, for reuse.
    h.send(0, "GET /a.css HTTP/1.1\r\nHost: x\r\n\r\n", vec![]);
    assert_eq!(h.recv(0).header, b"GET /a.css HTTP/1.1\r\nHost: x\r\n\r\n");
}

#[test]
fn a_retry_excludes_backends_that_already_failed() {
    let mut h = Harness::start(servers(), 1, 64);
    for _ in 0..4 {
        assert_eq!(h.route_excluding("/a.png", vec![0]).unwrap(), "static-2");
    }
    assert_eq!(h.route_excluding("/a.png", vec![0, 1]), Err(503));
}

#[test]
fn failing_health_checks_take_a_backend_out_and_passing_ones_bring_it_back() {
    let mut h = Harness::start_with(servers(), 1, 64, true);
    h._servers[0].status.store(500, Ordering::Relaxed);
    h.wait_status("static-1", "down");
    for _ in 0..6 {
        assert_eq!(h.route("/x.png").unwrap(), "static-2");
    }
    h._servers[0].status.store(200, Ordering::Relaxed);
    h.wait_status("static-1", "up");
    let picks: Vec<String> = (0..4).map(|_| h.route("/x.png").unwrap()).collect();
    assert!(picks.contains(&"static-1".to_string()), "{picks:?}");
    let checks = h.metrics.render();
    assert!(
        checks.contains("baton_health_checks_total{backend=\"static-1\",result=\"failure\"}"),
        "{checks}"
    );
    assert!(checks.contains("baton_backend_transitions_total{backend=\"static-1\",to=\"down\"}"));
}

#[test]
fn handoff_failures_take_a_backend_down_and_its_pool_answers_503() {
    let mut h = Harness::start(servers(), 1, 64);
    assert_eq!(h.route("/api/a").unwrap(), "app-1");
    for _ in 0..2 {
        h.workers[0]
            .events
            .try_send(WorkerEvent::Handoff {
                backend: 2,
                outcome: HandoffOutcome::Nacked(3),
                latency_ns: 1000,
            })
            .unwrap();
    }
    h.wait_status("app-1", "down");
    assert_eq!(h.route("/api/a"), Err(503));
    // Static is unaffected.
    assert!(h.route("/a.png").is_ok());
    let m = h.metrics.render();
    assert!(
        m.contains("baton_handoffs_total{backend=\"app-1\",outcome=\"nacked\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("baton_dispatch_rejections_total{pool=\"app\",reason=\"no_backend\"} 1"),
        "{m}"
    );
}

#[test]
fn acked_handoffs_feed_the_latency_histogram_and_closes_the_connection_count() {
    let mut h = Harness::start(servers(), 1, 64);
    for _ in 0..3 {
        h.route("/api/a").unwrap();
    }
    let ev = |e| h.workers[0].events.try_send(e).unwrap();
    ev(WorkerEvent::Handoff {
        backend: 2,
        outcome: HandoffOutcome::Acked,
        latency_ns: 250_000,
    });
    ev(WorkerEvent::Closed { backend: 2 });
    ev(WorkerEvent::Load {
        from: "198.18.0.13:9199".parse::<SocketAddr>().unwrap(),
        sender: handoff_proto::node_id("198.18.0.13".parse().unwrap()),
        report: dataplane::dispatch::LoadReport {
            active: 9,
            adopted_per_sec: 3,
            capacity_hint: 100,
        },
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = h.backends();
        let app = v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "app-1")
            .unwrap()
            .clone();
        if app["active_connections"] == 2 && app["reported_connections"] == 9 {
            break;
        }
        assert!(Instant::now() < deadline, "{app}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = h.metrics.render();
    assert!(
        m.contains("baton_handoff_latency_seconds_count{backend=\"app-1\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("baton_handoff_latency_seconds_bucket{backend=\"app-1\",le=\"0.00025\"} 1"),
        "{m}"
    );
}

#[test]
fn a_drained_backend_gets_no_new_requests_until_restored() {
    let mut h = Harness::start(servers(), 1, 64);
    let (tx, rx) = crossbeam_channel::bounded(1);
    h.admin
        .send(AdminRequest::Drain {
            backend: "static-1".into(),
            drain: true,
            reply: tx,
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    for _ in 0..6 {
        assert_eq!(h.route("/a.png").unwrap(), "static-2");
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    h.admin
        .send(AdminRequest::Drain {
            backend: "nope".into(),
            drain: true,
            reply: tx,
        })
        .unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap().is_err());
    let (tx, rx) = crossbeam_channel::bounded(1);
    h.admin
        .send(AdminRequest::Drain {
            backend: "static-1".into(),
            drain: false,
            reply: tx,
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    let picks: Vec<String> = (0..2).map(|_| h.route("/a.png").unwrap()).collect();
    assert!(picks.contains(&"static-1".to_string()));
}

#[test]
fn reloads_under_load_lose_no_request_and_keep_counters() {
    let h = Harness::start(servers(), 2, 4096);
    let ports = h.ports();
    let a = profile_text(ports, (1, 1), "", false);
    // B: weights change, and a new first rule sends /api/ to static.
    let b = profile_text(
        ports,
        (3, 1),
        "      - { name: moved, match: { path_prefix: [/api/] }, pool: static }\n",
        false,
    );
    const N: usize = 3000;
    let requests = h.workers[1].requests.clone();
    let shared = h.workers[1].shared.clone();
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            let req = DispatchRequest {
                token: ConnToken {
                    worker: 1,
                    slot: i as u32,
                    generation: 7,
                },
                client: "198.18.0.102:5000".parse().unwrap(),
                vip: "198.18.0.10:80".parse().unwrap(),
                header: format!("GET /api/{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
                exclude: vec![],
                header_complete_ns: shared.now_ns(),
            };
            // Like a worker: never block; retry later when the queue is full.
            let mut req = req;
            loop {
                match requests.try_send(req) {
                    Ok(()) => break,
                    Err(e) => {
                        req = e.into_inner();
                        std::thread::yield_now();
                    }
                }
            }
        }
    });
    let mut generation = 1;
    for i in 0..20 {
        generation = h.reload(if i % 2 == 0 { &b } else { &a });
    }
    sender.join().unwrap();
    let mut seen = vec![false; N];
    for _ in 0..N {
        let d = h.recv(1);
        assert!(
            matches!(d.verdict, Verdict::Backend(_)),
            "request {} got {:?}",
            d.token.slot,
            d.verdict
        );
        assert!(
            !std::mem::replace(&mut seen[d.token.slot as usize], true),
            "duplicate decision"
        );
    }
    assert_eq!(generation, 21);
    let m = h.metrics.render();
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("baton_dispatch_decisions_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total as usize, N, "decision counters survive reloads");
    assert!(m.contains("baton_config_generation 21"));
    assert!(m.contains("baton_config_reloads_total{result=\"success\"} 20"));
}

#[test]
fn a_worker_with_a_full_decision_queue_does_not_stall_the_others() {
    let mut h = Harness::start(servers(), 2, 4);
    // Worker 0 stops reading: more requests than its decision queue holds.
    for _ in 0..8 {
        h.send(0, "GET /a.png HTTP/1.1\r\nHost: x\r\n\r\n", vec![]);
    }
    // Worker 1 is still served at once.
    for _ in 0..20 {
        h.send(1, "GET /a.png HTTP/1.1\r\nHost: x\r\n\r\n", vec![]);
        assert!(matches!(h.recv(1).verdict, Verdict::Backend(_)));
    }
    // Worker 0 gets every decision once it reads again.
    for _ in 0..8 {
        assert!(matches!(h.recv(0).verdict, Verdict::Backend(_)));
    }
}
