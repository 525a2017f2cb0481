//! The decision hop on an idle switch: a worker enqueues a `DispatchRequest`
//! and later dequeues its `Decision`, with the real control-plane loop
//! (`ControlPlane::run`, parked in `select!` between requests) on its own
//! thread and a worker-like thread that idles in adaptive polling between
//! requests (the real `Poller` and doorbell; no packets).
//!
//! Each mode runs the same rounds: an idle gap of 1 ms spent in the poller,
//! one request, then polling (and sleeping) until the decision is there.
//! The hop is split where the control thread decided (its clock is read
//! inside `decide`): "control" = request enqueued → decided (control-thread
//! wake-up, receive, parse and pick), "worker" = decided → dequeued
//! (decision enqueued, doorbell, worker wake-up).
//!
//! Modes: the waits the backends had before the doorbell (DPDK: 500 µs
//! sleep slices; AF_PACKET: blocked until a frame or the worker's timer, at
//! most `max_wait`; no frames come here) and the doorbell, each with the
//! default adaptive settings (a decision that comes while the worker still
//! spins needs no wake-up) and with `spin_polls: 0` (the worker always
//! asleep when the decision comes); and busy polling (no worker wake-up at
//! all: the floor the control thread alone sets). A last line measures one blocking crossbeam receive woken by
//! a send (the cost of any cross-thread wake-up on this machine).
//!
//! The last table puts the hop beside what replaced it for stateless
//! pools: the worker's own `LocalDecider` (`controlplane::local`) deciding
//! from the routing snapshot after the same idle gap, no hop at all.
//!
//! `cargo bench -p controlplane --bench decision_hop` (`-- --quick`: fewer
//! rounds).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::config::{load_str, Profile};
use controlplane::control::{Clock, ControlPlane};
use controlplane::metrics::Metrics;
use dataplane::dispatch::{channels, ConnToken, DispatchRequest, LocalDecider, LocalRequest};
use dataplane::doorbell::Doorbell;
use dataplane::io::memory::MemBuf;
use dataplane::io::poll::{Idle, Poller};
use dataplane::io::{IoStats, PacketIo, PollMode};

const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";
const HEADER: &[u8] = b"GET /static/img42.png HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n\r\n";
const GAP: Duration = Duration::from_millis(1);
const WRR: &str = "{ weighted_round_robin: {} }";
/// A stateless policy (a pure function of the request and the pool).
const MAGLEV: &str = "{ maglev: {} }";

fn profile(policy: &str) -> Profile {
    let backends: String = (0..8)
        .map(|i| format!("  - {{ name: b{i}, address: 198.18.0.{} }}\n", 20 + i))
        .collect();
    let names: Vec<String> = (0..8).map(|i| format!("b{i}")).collect();
    let text = format!(
        "name: bench\nio: {{ memory: {{}} }}\nswitch: {{ data_ip: 198.18.0.2 }}\nthop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: \"{KEY}\" }}] }}\n\
         health: {{ check: {{ none: {{}} }} }}\nlogging: {{ access_log: {{ enabled: false }} }}\nbackends:\n{backends}\
         pools:\n  - {{ name: p, backends: [{}], policy: {policy} }}\n\
         services:\n  - name: web\n    vip: 198.18.0.10\n    rules:\n      - {{ match: {{ path_prefix: [/static/], extension: [png] }}, pool: p }}\n    default_pool: p\n",
        names.join(", ")
    );
    load_str(&text, Path::new("bench.yaml"), &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}"))
        .profile
}

/// How the worker-like thread blocks when idle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// ppoll(2) on the doorbell (what every backend does now).
    Doorbell,
    /// The DPDK backend before the doorbell: sleep slices of ≤ 500 µs.
    Slices,
    /// The AF_PACKET backend before the doorbell on an idle port: nothing
    /// ends the block but a frame (none here) or the timeout.
    Timer,
}

/// A queue with no frames that blocks as `Wait` says.
struct IdleIo(Wait);

impl PacketIo for IdleIo {
    type Buf = MemBuf;
    fn rx_burst(&mut self, _: &mut Vec<MemBuf>, _: usize) -> usize {
        0
    }
    fn alloc(&mut self) -> Option<MemBuf> {
        None
    }
    fn tx_burst(&mut self, _: &mut Vec<MemBuf>) -> usize {
        0
    }
    fn wait(&mut self, timeout: Duration, bell: &Doorbell) {
        match self.0 {
            Wait::Doorbell => {
                bell.poll(None, timeout);
            }
            Wait::Slices => std::thread::sleep(timeout.min(Duration::from_micros(500))),
            Wait::Timer => std::thread::sleep(timeout),
        }
    }
    fn stats(&self) -> IoStats {
        IoStats::default()
    }
}

struct Mode {
    name: &'static str,
    wait: Wait,
    poll: PollMode,
    rounds: usize,
}

#[derive(Default)]
struct Samples {
    total: Vec<u64>,
    control: Vec<u64>,
    worker: Vec<u64>,
    rung: u64,
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

fn run_mode(m: &Mode, warmup: usize) -> Samples {
    run_mode_with(m, warmup, WRR)
}

fn run_mode_with(m: &Mode, warmup: usize, policy: &str) -> Samples {
    let (mut wqs, cq) = channels(1, 256);
    let wq = wqs.pop().expect("one worker");
    let shared = wq.shared.clone();
    let decided = Arc::new(AtomicU64::new(0));
    let clock: Clock = {
        let (s, d) = (shared.clone(), decided.clone());
        // `decide` reads the clock once, right after the pick: that instant
        // splits the hop into its control and worker parts.
        Arc::new(move || {
            let t = s.now_ns();
            d.store(t, Ordering::Release);
            t
        })
    };
    let mut cp = ControlPlane::new(profile(policy), Arc::new(Metrics::new("bench")), clock)
        .expect("profile");
    // Every request to the queue here: this measures the hop.
    let _ = cp.routing_snapshot();
    let (_admin_tx, admin_rx) = crossbeam_channel::bounded(1);
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let control = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || cp.run(cq, admin_rx, st))
        .expect("control thread");

    let bell = wq.doorbell.clone();
    let mut poller = Poller::new(m.poll);
    let mut io = IdleIo(m.wait);
    let mut header = HEADER.to_vec();
    let mut s = Samples::default();
    for round in 0..warmup + m.rounds {
        // Idle between requests, in the poller, as a worker with no traffic.
        let until = shared.now_ns() + GAP.as_nanos() as u64;
        loop {
            let now = shared.now_ns();
            if now >= until {
                break;
            }
            let left = Some(Duration::from_nanos(until - now));
            poller.idle(&mut io, &bell, false, left, || wq.pending());
        }
        let t0 = shared.now_ns();
        let req = DispatchRequest {
            token: ConnToken {
                worker: 0,
                slot: round as u32,
                generation: 1,
            },
            client: "198.18.0.101:40000".parse().unwrap(),
            vip: "198.18.0.10:80".parse().unwrap(),
            header: std::mem::take(&mut header),
            exclude: Vec::new(),
            header_complete_ns: t0,
        };
        wq.requests.try_send(req).expect("request queue");
        // The turn that sent the request did work: the spin phase restarts.
        poller.idle(&mut io, &bell, true, None, || false);
        let mut rung = 0;
        let d = loop {
            if let Ok(d) = wq.decisions.try_recv() {
                break d;
            }
            match poller.idle(&mut io, &bell, false, None, || wq.pending()) {
                Idle::Rung => rung += 1,
                Idle::Spun | Idle::Slept => {}
            }
        };
        let t2 = shared.now_ns();
        let t1 = decided.load(Ordering::Acquire);
        header = d.header;
        if round >= warmup {
            s.total.push(t2 - t0);
            s.control.push(t1.saturating_sub(t0));
            s.worker.push(t2.saturating_sub(t1));
            s.rung += rung;
        }
    }
    stop.store(true, Ordering::Relaxed);
    control.join().expect("control loop");
    s
}

/// One blocking `recv` woken by a `send` from another thread, 1 ms apart:
/// the floor under any cross-thread hop here.
fn wake_baseline(rounds: usize) -> Vec<u64> {
    let (tx, rx) = crossbeam_channel::bounded::<Instant>(1);
    let (back_tx, back_rx) = crossbeam_channel::bounded::<u64>(1);
    let h = std::thread::spawn(move || {
        while let Ok(t) = rx.recv() {
            let _ = back_tx.send(t.elapsed().as_nanos() as u64);
        }
    });
    let mut v = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        std::thread::sleep(GAP);
        tx.send(Instant::now()).unwrap();
        v.push(back_rx.recv().unwrap());
    }
    drop(tx);
    h.join().unwrap();
    v
}

/// `ControlPlane::decide` on this thread (no hop): what deciding on the
/// worker itself would cost. With `idle`, each decision follows 1 ms in the
/// adaptive poller (caches as cold as the worker's after an idle gap);
/// without, decisions run back to back.
fn decide_alone(policy: &str, rounds: usize, idle: bool) -> Vec<u64> {
    let mut cp = ControlPlane::new(
        profile(policy),
        Arc::new(Metrics::new("bench")),
        Arc::new(|| 0),
    )
    .unwrap();
    let mut header = HEADER.to_vec();
    let mut v = Vec::with_capacity(rounds);
    let bell = Doorbell::new();
    let mut poller = Poller::new(PollMode::ADAPTIVE);
    let mut io = IdleIo(Wait::Doorbell);
    for i in 0..rounds {
        if idle {
            let until = Instant::now() + GAP;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                poller.idle(&mut io, &bell, false, Some(left), || false);
            }
        }
        let t = Instant::now();
        let d = cp.decide(DispatchRequest {
            token: ConnToken {
                worker: 0,
                slot: i as u32,
                generation: 1,
            },
            client: "198.18.0.101:40000".parse().unwrap(),
            vip: "198.18.0.10:80".parse().unwrap(),
            header: std::mem::take(&mut header),
            exclude: Vec::new(),
            header_complete_ns: 0,
        });
        v.push(t.elapsed().as_nanos() as u64);
        header = d.header;
    }
    v
}

/// The worker's `LocalDecider` after the idle gap (what a first dispatch
/// to a stateless pool costs now): parse, route, pick from the snapshot.
fn local_decision(policy: &str, rounds: usize) -> Vec<u64> {
    let mut cp = ControlPlane::new(
        profile(policy),
        Arc::new(Metrics::new("bench")),
        Arc::new(|| 0),
    )
    .unwrap();
    let mut d = cp.decider();
    d.install_snapshot(cp.routing_snapshot());
    let bell = Doorbell::new();
    let mut poller = Poller::new(PollMode::Adaptive {
        spin_polls: 0,
        max_wait: Duration::from_millis(10),
    });
    let mut io = IdleIo(Wait::Doorbell);
    let mut v = Vec::with_capacity(rounds);
    let (client, vip) = (
        "198.18.0.101:40000".parse().unwrap(),
        "198.18.0.10:80".parse().unwrap(),
    );
    for _ in 0..rounds {
        let until = Instant::now() + GAP;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            poller.idle(&mut io, &bell, false, Some(left), || false);
        }
        let t = Instant::now();
        let got = d.decide(&LocalRequest {
            client,
            vip,
            header: HEADER,
        });
        v.push(t.elapsed().as_nanos() as u64);
        assert!(got.is_some(), "a stateless pool is decided locally");
    }
    v
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 300 } else { 2000 };
    let adaptive = PollMode::ADAPTIVE;
    let PollMode::Adaptive { max_wait, .. } = adaptive else {
        unreachable!()
    };
    let spin0 = PollMode::Adaptive {
        spin_polls: 0,
        max_wait,
    };
    let mode = |name, wait, poll, rounds| Mode {
        name,
        wait,
        poll,
        rounds,
    };
    // Default adaptive settings: a decision that comes within the spin
    // phase is seen without any wake-up; "spin 0" sleeps at once, so every
    // hop needs the worker woken (what the doorbell changes).
    let modes = [
        mode("before: dpdk slices", Wait::Slices, adaptive, n),
        mode("before: af_packet", Wait::Timer, adaptive, n / 10),
        mode("after: doorbell", Wait::Doorbell, adaptive, n),
        mode("before: dpdk slices, spin 0", Wait::Slices, spin0, n),
        mode("before: af_packet, spin 0", Wait::Timer, spin0, n / 10),
        mode("after: doorbell, spin 0", Wait::Doorbell, spin0, n),
        mode("busy worker (floor)", Wait::Doorbell, PollMode::Busy, n),
    ];
    let cpus = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "decision hop (request enqueued -> decision dequeued), weighted_round_robin, 1 worker, {GAP:?} idle between requests; {cpus} CPUs, loadavg {}",
        loadavg()
    );
    println!(
        "{:<30} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "mode", "n", "p50 us", "p99 us", "ctl p50", "ctl p99", "wkr p50", "wkr p99", "rung %"
    );
    for m in &modes {
        let mut s = run_mode(m, m.rounds / 10);
        // Before the doorbell, a ring was not heard: no share to report.
        let rung = match m.wait {
            Wait::Doorbell => format!("{:.0}", 100.0 * s.rung as f64 / m.rounds as f64),
            _ => "-".into(),
        };
        println!(
            "{:<30} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7}",
            m.name,
            m.rounds,
            pct(&mut s.total, 0.5),
            pct(&mut s.total, 0.99),
            pct(&mut s.control, 0.5),
            pct(&mut s.control, 0.99),
            pct(&mut s.worker, 0.5),
            pct(&mut s.worker, 0.99),
            rung
        );
    }
    let mut w = wake_baseline(n);
    println!(
        "{:<30} {:>6} {:>9.1} {:>9.1}   (one blocking crossbeam recv woken by a send)",
        "thread wake-up baseline",
        n,
        pct(&mut w, 0.5),
        pct(&mut w, 0.99)
    );
    for (name, policy, idle, rounds, what) in [
        ("decide alone, wrr", WRR, false, n * 10, "back to back"),
        (
            "decide alone, maglev",
            MAGLEV,
            false,
            n * 10,
            "back to back",
        ),
        (
            "decide on the worker, maglev",
            MAGLEV,
            true,
            n,
            "after 1 ms idle",
        ),
    ] {
        let mut d = decide_alone(policy, rounds, idle);
        println!(
            "{:<30} {:>6} {:>9.1} {:>9.1}   (ControlPlane::decide on the calling thread, no hop, {what})",
            name,
            rounds,
            pct(&mut d, 0.5),
            pct(&mut d, 0.99)
        );
    }
    println!(
        "queue hop vs local decision (worker asleep 1 ms before each request, doorbell, spin 0):"
    );
    println!("{:<30} {:>6} {:>9} {:>9}", "path", "n", "p50 us", "p99 us");
    let hop0 = mode("queue hop", Wait::Doorbell, spin0, n);
    for (name, policy) in [("maglev", MAGLEV), ("wrr", WRR)] {
        let mut hop = run_mode_with(&hop0, n / 10, policy).total;
        let mut loc = local_decision(policy, n);
        println!(
            "{:<30} {:>6} {:>9.1} {:>9.1}",
            format!("queue hop, {name}"),
            n,
            pct(&mut hop, 0.5),
            pct(&mut hop, 0.99)
        );
        println!(
            "{:<30} {:>6} {:>9.1} {:>9.1}",
            format!("local decision, {name}"),
            n,
            pct(&mut loc, 0.5),
            pct(&mut loc, 0.99)
        );
    }
    println!("loadavg after: {}", loadavg());
}
