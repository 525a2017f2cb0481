//! The comparison harness of issue 8: one bed, one run, every system under
//! the same workloads, measured the same way.
//!
//! For each system and workload: wrk (1 thread, fixed connections and
//! duration) from a client host gives requests/s and latency percentiles;
//! `/proc/stat` gives the machine's CPU seconds, `/proc/<pid>/stat` of every
//! process in the switch's or proxy's namespace gives that host's; the
//! switch's/proxy's data-interface counters give the bytes that crossed it.

use crate::baton::{self, BatonIo, Polling};
use crate::content::{self, Object};
use crate::cpu::{self, ProcGroupCpu};
use crate::error::{BedError, Result};
use crate::netns::{self, IfCounters};
use crate::peers::{self, ProxyKind};
use crate::process::Proc;
use crate::topology::{Bed, BedSpec, DATA_IF};
use crate::wrk::{self, WrkReport, WrkRun};
use crate::{addr, nginx};
use serde::Serialize;
use std::time::Duration;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Clients talk to the backends' nginx directly, the load split evenly over
    /// the same backends the proxies and Baton use: the one-way upper bound.
    Direct,
    /// A two-way L7 proxy in the proxy host.
    Proxy(ProxyKind),
    /// Baton with a packet I/O backend and polling mode.
    Baton(BatonIo, Polling),
}

impl System {
    /// Name used in results.
    pub fn name(&self) -> String {
        match self {
            System::Direct => "direct".into(),
            System::Proxy(k) => k.as_str().into(),
            System::Baton(io, _) => format!("baton-{}", io.as_str()),
        }
    }

    /// The polling mode of a Baton system.
    pub fn polling(&self) -> Option<Polling> {
        match self {
            System::Baton(_, p) => Some(*p),
            _ => None,
        }
    }

    /// Every system of the full matrix: Baton in `adaptive` (CPU per request)
    /// and `busy` (peak rate) over both I/O backends, then the peers.
    pub fn all(dpdk: bool) -> Vec<System> {
        let mut v = vec![
            System::Direct,
            System::Proxy(ProxyKind::Nginx),
            System::Proxy(ProxyKind::Haproxy),
        ];
        v.push(System::Baton(BatonIo::AfPacket, Polling::Adaptive));
        v.push(System::Baton(BatonIo::AfPacket, Polling::Busy));
        if dpdk {
            v.push(System::Baton(BatonIo::Dpdk, Polling::Adaptive));
            v.push(System::Baton(BatonIo::Dpdk, Polling::Busy));
        }
        v
    }
}

/// One workload: an object size and a connection discipline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// The object fetched.
    pub object: Object,
    /// New connection per request (`Connection: close`) instead of keep-alive.
    pub close: bool,
}

impl Workload {
    /// `1 KiB`, `100 KiB`, `1 MiB`…
    pub fn size_label(&self) -> String {
        size_label(self.object.size)
    }

    /// `keep-alive` or `new conn`.
    pub fn conn_label(&self) -> &'static str {
        if self.close {
            "new conn"
        } else {
            "keep-alive"
        }
    }

    /// The full matrix: 1 KiB, 100 KiB, 1 MiB × keep-alive, new connection.
    pub fn matrix() -> Vec<Workload> {
        let mut v = Vec::new();
        for object in [content::OBJ_1K, content::OBJ_100K, content::OBJ_1M] {
            for close in [false, true] {
                v.push(Workload { object, close });
            }
        }
        v
    }
}

/// Human size label.
pub fn size_label(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// How the run is bounded.
#[derive(Debug, Clone)]
pub struct Settings {
    /// wrk duration per cell.
    pub duration: Duration,
    /// wrk connections.
    pub connections: u32,
    /// Unmeasured run before each cell (0 to skip).
    pub warmup: Duration,
    /// The workloads.
    pub workloads: Vec<Workload>,
    /// The systems.
    pub systems: Vec<System>,
    /// Quick smoke mode (recorded in the results).
    pub quick: bool,
}

impl Settings {
    /// The full run: every system, every workload, 6 s at 32 connections.
    pub fn full(dpdk: bool) -> Self {
        Settings {
            duration: Duration::from_secs(6),
            connections: 32,
            warmup: Duration::from_secs(1),
            workloads: Workload::matrix(),
            systems: System::all(dpdk),
            quick: false,
        }
    }

    /// A smoke run: every system, two small workloads, 2 s each.
    pub fn quick(dpdk: bool) -> Self {
        Settings {
            duration: Duration::from_secs(2),
            connections: 16,
            warmup: Duration::ZERO,
            workloads: vec![
                Workload {
                    object: content::OBJ_1K,
                    close: false,
                },
                Workload {
                    object: content::OBJ_1K,
                    close: true,
                },
            ],
            systems: System::all(dpdk),
            quick: true,
        }
    }
}

/// One measured cell.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Row {
    pub system: String,
    /// Baton's polling mode (`busy` / `adaptive`); absent for the peers.
    pub polling: Option<String>,
    pub size_bytes: usize,
    pub size: String,
    /// `keep-alive` or `new conn`.
    pub connection: String,
    pub requests: u64,
    pub failures: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Busy CPU seconds of the whole machine per 1000 requests.
    pub cpu_machine_s_per_1k: f64,
    /// CPU seconds of the switch's or proxy's processes per 1000 requests.
    pub cpu_switch_s_per_1k: Option<f64>,
    /// Bytes on the switch's or proxy's data interface (in + out) per byte of
    /// response body delivered.
    pub bytes_through_per_response_byte: Option<f64>,
    /// Why the cell has no figures (system could not start, wrk failed).
    pub error: Option<String>,
}

/// A system brought up for measuring.
struct Running {
    _procs: Vec<Proc>,
    /// Base URLs clients use; with several (direct), the connections are
    /// split evenly over them and the reports merged.
    bases: Vec<String>,
    /// Namespace of the switch or proxy (CPU and bytes), if any.
    middle: Option<String>,
}

fn start(bed: &Bed, sys: System) -> Result<Running> {
    let upstreams: Vec<_> = bed.backends.iter().filter_map(|b| b.data_ip).collect();
    match sys {
        System::Direct => Ok(Running {
            _procs: Vec::new(),
            bases: upstreams
                .iter()
                .map(|ip| format!("http://{}:{}", ip, addr::WEB_PORT))
                .collect(),
            middle: None,
        }),
        System::Proxy(kind) => {
            let p = peers::start(bed, kind, &upstreams)?;
            Ok(Running {
                _procs: vec![p],
                bases: vec![format!("http://{}", peers::proxy_service())],
                middle: Some(bed.proxy()?.ns.clone()),
            })
        }
        System::Baton(io, polling) => {
            let opts = baton::SwitchOptions {
                io,
                polling,
                ..baton::SwitchOptions::bench()
            };
            let procs = baton::start_stack(bed, &opts)?;
            Ok(Running {
                _procs: procs,
                bases: vec![format!("http://{}", addr::vip_service())],
                middle: Some(bed.switch()?.ns.clone()),
            })
        }
    }
}

struct Snap {
    machine: f64,
    group: ProcGroupCpu,
    iface: IfCounters,
}

impl Snap {
    fn take(middle: Option<&str>) -> Snap {
        let pids = middle.map(netns::pids).unwrap_or_default();
        Snap {
            machine: cpu::machine_busy_seconds(),
            group: ProcGroupCpu::sample(&pids),
            iface: middle
                .and_then(|ns| netns::if_counters(ns, DATA_IF).ok())
                .unwrap_or_default(),
        }
    }
}

fn measure(bed: &Bed, run: &Running, sys: System, w: Workload, s: &Settings) -> Row {
    let mut row = Row {
        system: sys.name(),
        polling: sys.polling().map(|p| p.as_str().to_string()),
        size_bytes: w.object.size,
        size: w.size_label(),
        connection: w.conn_label().into(),
        ..Row::default()
    };
    let client = &bed.clients[0].ns;
    let n = run.bases.len().max(1) as u32;
    let runs = |d| -> Vec<WrkRun> {
        run.bases
            .iter()
            .map(|b| {
                let mut r = WrkRun::new(
                    format!("{b}{}", w.object.path),
                    (s.connections / n).max(1),
                    d,
                );
                r.close = w.close;
                r
            })
            .collect()
    };
    if !s.warmup.is_zero() {
        let _ = wrk::run_parallel_in(client, &runs(s.warmup));
    }
    let mid = run.middle.as_deref();
    let before = Snap::take(mid);
    let rep: WrkReport = match wrk::run_parallel_in(client, &runs(s.duration)) {
        Ok(r) => r,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    let after = Snap::take(mid);
    let per_1k = |secs: f64| {
        if rep.requests == 0 {
            0.0
        } else {
            secs * 1000.0 / rep.requests as f64
        }
    };
    row.requests = rep.requests;
    row.failures = rep.failures();
    row.rps = rep.rps;
    row.p50_us = rep.p50_us;
    row.p99_us = rep.p99_us;
    row.cpu_machine_s_per_1k = per_1k(after.machine - before.machine);
    if let Some(ns) = mid {
        let pids = netns::pids(ns);
        row.cpu_switch_s_per_1k = Some(per_1k(before.group.used_since(&pids)));
        let d = after.iface.since(&before.iface);
        let body = rep.requests as f64 * w.object.size as f64;
        if body > 0.0 {
            row.bytes_through_per_response_byte = Some((d.rx_bytes + d.tx_bytes) as f64 / body);
        }
    }
    row
}

/// Runs the whole matrix on a fresh bed; `progress` sees each row as it lands.
pub fn run(s: &Settings, mut progress: impl FnMut(&Row)) -> Result<Vec<Row>> {
    let bed = Bed::up(&BedSpec {
        clients: 1,
        backends: 2,
        switch: true,
        proxy: true,
    })?;
    let _nginx = nginx::start_all(&bed)?;
    let mut rows = Vec::new();
    for &sys in &s.systems {
        let running = match start(&bed, sys) {
            Ok(r) => r,
            Err(e) => {
                for &w in &s.workloads {
                    let row = Row {
                        system: sys.name(),
                        polling: sys.polling().map(|p| p.as_str().to_string()),
                        size_bytes: w.object.size,
                        size: w.size_label(),
                        connection: w.conn_label().into(),
                        error: Some(format!("could not start: {e}")),
                        ..Row::default()
                    };
                    progress(&row);
                    rows.push(row);
                }
                continue;
            }
        };
        for &w in &s.workloads {
            let row = measure(&bed, &running, sys, w, s);
            progress(&row);
            rows.push(row);
        }
    }
    if rows.iter().all(|r| r.error.is_some()) {
        return Err(BedError::Setup("no system could be measured".into()));
    }
    Ok(rows)
}
