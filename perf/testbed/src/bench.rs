//! The comparison harness: one bed, one run, every system under the same
//! workloads, measured the same way.
//!
//! For each system, first the serial latency probe ([`crate::probe`]) on the
//! otherwise idle bed, then for each workload: wrk (1 thread, fixed
//! connections and duration) from a client host gives requests/s and latency
//! percentiles; `/proc/stat` gives the machine's CPU seconds, and the cost
//! ledger ([`crate::ledger`]) splits them over the client, the switch's
//! threads, the proxy, the agents, the web servers and the kernel's softirq
//! time; the switch's/proxy's data-interface counters give the bytes that
//! crossed it.
//!
//! IPv6 cells: `direct-ipv6` (the backends' nginx on their IPv6 data
//! addresses) and `baton-afpacket-ipv6` (the same Baton through the VIP's
//! IPv6 address, 2001:2::10) measure the two workloads that show what the
//! family changes, 1 KiB on a new connection (the handshake and handoff)
//! and 1 MiB keep-alive (the bulk transfer), beside the IPv4 rows of the
//! same run ([`ipv6_vs_ipv4`]).
//!
//! HTTPS cells (workloads with `tls`) fetch `https://static.baton.test/…`
//! with wrk, which speaks TLS itself and is sent to the system's address
//! whatever the name ([`WrkRun::connect`]): direct to the backends' nginx
//! :443, Baton's VIP :443 (the backends' nginx terminates TLS on the
//! handed-off socket), HAProxy in `mode tcp` routing by SNI, and HAProxy
//! terminating TLS. The plain-HTTP L7 proxies have no HTTPS cells, the
//! HTTPS-only HAProxy setups no HTTP ones and no latency probe (which speaks
//! plain HTTP).

use crate::baton::{self, BatonIo, Polling};
use crate::content::{self, Object};
use crate::cpu::{self, MachineTicks};
use crate::error::{BedError, Result};
use crate::ledger::{Component, Hosts, Ledger, ProcSnapshot, Shape, Usage};
use crate::netns::{self, IfCounters};
use crate::peers::{self, ProxyKind};
use crate::probe::{self, ProbeRow};
use crate::process::Proc;
use crate::topology::{Bed, BedSpec, DATA_IF};
use crate::wrk::{self, WrkReport, WrkRun};
use crate::{addr, nginx, tls};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Clients talk to the backends' nginx directly, the load split evenly over
    /// the same backends the proxies and Baton use: the one-way upper bound.
    Direct,
    /// A proxy in the proxy host: a two-way L7 proxy, or for HTTPS
    /// HAProxy routing TLS by SNI (`mode tcp`) or terminating it.
    Proxy(ProxyKind),
    /// Baton with a packet I/O backend and polling mode; the agents hand
    /// each adopted socket to nginx itself (handover).
    Baton(BatonIo, Polling),
    /// Baton over AF_PACKET, adaptive polling, with the agents relaying to
    /// nginx over loopback (the mode before handover existed): measured in
    /// the same run so the two agent modes compare side by side.
    BatonRelay,
    /// [`System::Direct`] over IPv6 (the backends' 2001:2::11, ::12).
    DirectIpv6,
    /// [`System::Baton`] through the VIP's IPv6 address (2001:2::10).
    BatonIpv6(BatonIo, Polling),
}

/// The suffix of the IPv6 systems' names (`direct-ipv6`,
/// `baton-afpacket-ipv6`): the rows of latest.json keep their fields, and
/// an IPv6 row is told by its system.
pub const IPV6_SUFFIX: &str = "-ipv6";

impl System {
    /// Name used in results.
    pub fn name(&self) -> String {
        match self {
            System::Direct => "direct".into(),
            System::Proxy(k) => k.as_str().into(),
            System::Baton(io, _) => format!("baton-{}", io.as_str()),
            System::BatonRelay => "baton-afpacket-relay".into(),
            System::DirectIpv6 => format!("direct{IPV6_SUFFIX}"),
            System::BatonIpv6(io, _) => format!("baton-{}{IPV6_SUFFIX}", io.as_str()),
        }
    }

    /// Whether its clients connect over IPv6.
    pub fn ipv6(&self) -> bool {
        matches!(self, System::DirectIpv6 | System::BatonIpv6(..))
    }

    /// The polling mode of a Baton system.
    pub fn polling(&self) -> Option<Polling> {
        match self {
            System::Baton(_, p) | System::BatonIpv6(_, p) => Some(*p),
            System::BatonRelay => Some(Polling::Adaptive),
            _ => None,
        }
    }

    /// Whether the system has cells of workload `w`: the plain-HTTP
    /// proxies serve no HTTPS, the HTTPS HAProxy setups no plain HTTP.
    pub fn serves(&self, w: &Workload) -> bool {
        match self {
            System::Proxy(k) => k.tls() == w.tls,
            System::DirectIpv6 | System::BatonIpv6(..) => Workload::ipv6_pair().contains(w),
            _ => true,
        }
    }

    /// Whether it serves plain HTTP (the latency probe's protocol) over
    /// IPv4 (the probe's family).
    pub fn serves_http(&self) -> bool {
        !matches!(self, System::Proxy(k) if k.tls()) && !self.ipv6()
    }

    /// Every system of the full matrix: the peers, then Baton in `adaptive`
    /// (CPU per request) and `busy` (peak rate) over every I/O backend of
    /// the build (DPDK when `dpdk`; AF_XDP with its fast path when built
    /// with the `af_xdp` feature); direct and Baton over AF_PACKET
    /// (`adaptive`) also over IPv6.
    pub fn all(dpdk: bool) -> Vec<System> {
        let mut v = vec![
            System::Direct,
            System::DirectIpv6,
            System::Proxy(ProxyKind::Nginx),
            System::Proxy(ProxyKind::Haproxy),
            System::Proxy(ProxyKind::HaproxyTcp),
            System::Proxy(ProxyKind::HaproxyTls),
        ];
        v.push(System::Baton(BatonIo::AfPacket, Polling::Adaptive));
        v.push(System::BatonIpv6(BatonIo::AfPacket, Polling::Adaptive));
        v.push(System::BatonRelay);
        v.push(System::Baton(BatonIo::AfPacket, Polling::Busy));
        if dpdk {
            v.push(System::Baton(BatonIo::Dpdk, Polling::Adaptive));
            v.push(System::Baton(BatonIo::Dpdk, Polling::Busy));
        }
        #[cfg(feature = "af_xdp")]
        {
            let io = BatonIo::AfXdp { fast_path: true };
            v.push(System::Baton(io, Polling::Adaptive));
            v.push(System::Baton(io, Polling::Busy));
        }
        v
    }
}

/// One workload: an object size, a connection discipline and a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// The object fetched.
    pub object: Object,
    /// New connection per request (`Connection: close`) instead of keep-alive.
    pub close: bool,
    /// HTTPS (`https://static.baton.test/…`; on a new connection wrk
    /// resumes the session of its previous one) instead of plain HTTP.
    pub tls: bool,
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

    /// `http` or `https`.
    pub fn protocol(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// A plain-HTTP workload.
    pub fn http(object: Object, close: bool) -> Workload {
        Workload {
            object,
            close,
            tls: false,
        }
    }

    /// An HTTPS workload.
    pub fn https(object: Object, close: bool) -> Workload {
        Workload {
            object,
            close,
            tls: true,
        }
    }

    /// The HTTPS workloads: 1 KiB on a new connection per request (the
    /// handshake's cost) and 1 MiB keep-alive (the bulk transfer's).
    pub fn https_pair() -> [Workload; 2] {
        [
            Workload::https(content::OBJ_1K, true),
            Workload::https(content::OBJ_1M, false),
        ]
    }

    /// The IPv6 workloads (plain HTTP): 1 KiB on a new connection per
    /// request and 1 MiB keep-alive.
    pub fn ipv6_pair() -> [Workload; 2] {
        [
            Workload::http(content::OBJ_1K, true),
            Workload::http(content::OBJ_1M, false),
        ]
    }

    /// The full matrix: 1 KiB, 100 KiB, 1 MiB × keep-alive, new connection
    /// over plain HTTP, then [`Workload::https_pair`].
    pub fn matrix() -> Vec<Workload> {
        let mut v = Vec::new();
        for object in [content::OBJ_1K, content::OBJ_100K, content::OBJ_1M] {
            for close in [false, true] {
                v.push(Workload::http(object, close));
            }
        }
        v.extend(Workload::https_pair());
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

/// Default connections per system and object of the latency probe.
pub const PROBE_N: usize = 300;

/// The objects of the latency probe.
pub const PROBE_OBJECTS: [Object; 2] = [content::OBJ_1K, content::OBJ_100K];

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
    /// Serial connections per system and object of the latency probe (0:
    /// no probe).
    pub probe_n: usize,
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
            probe_n: PROBE_N,
        }
    }

    /// A smoke run: every system, two small plain-HTTP workloads and the
    /// HTTPS pair, 2 s each (so of the IPv6 pair only 1 KiB on new
    /// connections).
    pub fn quick(dpdk: bool) -> Self {
        let [https_new, https_keep] = Workload::https_pair();
        Settings {
            duration: Duration::from_secs(2),
            connections: 16,
            warmup: Duration::ZERO,
            workloads: vec![
                Workload::http(content::OBJ_1K, false),
                Workload::http(content::OBJ_1K, true),
                https_new,
                https_keep,
            ],
            systems: System::all(dpdk),
            quick: true,
            probe_n: PROBE_N,
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
    /// `http` or `https` (absent, so plain HTTP, in results written before
    /// HTTPS was measured).
    #[serde(default)]
    pub protocol: String,
    pub requests: u64,
    pub failures: u64,
    /// What the failures were, as wrk counts them (`connect 0 read 12 …`);
    /// empty when none.
    #[serde(default)]
    pub failure_kinds: String,
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
    /// CPU µs per request by component (absent when not measured, and in
    /// results written before the ledger existed).
    #[serde(default)]
    pub ledger: Option<Ledger>,
}

impl Row {
    /// An HTTPS cell.
    pub fn is_https(&self) -> bool {
        self.protocol == "https"
    }

    /// The connection label with the protocol when that is HTTPS
    /// (`new conn, HTTPS`), for tables and output that mix both.
    pub fn conn_label(&self) -> String {
        if self.is_https() {
            format!("{}, HTTPS", self.connection)
        } else {
            self.connection.clone()
        }
    }
}

/// A system brought up for measuring.
struct Running {
    _procs: Vec<Proc>,
    /// Base URLs clients use for plain HTTP; with several (direct), the
    /// connections are split evenly over them and the reports merged.
    bases: Vec<String>,
    /// Where HTTPS connections go (the URL is always
    /// `https://static.baton.test/…`); split like `bases`.
    tls_targets: Vec<SocketAddr>,
    /// Namespace of the switch or proxy (bytes), if any.
    middle: Option<String>,
    /// Where the latency probe connects: one backend's nginx for direct,
    /// the proxy or the VIP otherwise.
    probe_target: SocketAddr,
}

fn start(bed: &Bed, sys: System) -> Result<Running> {
    let upstreams: Vec<_> = bed.backends.iter().filter_map(|b| b.data_ip).collect();
    match sys {
        System::DirectIpv6 => {
            let ups6: Vec<_> = bed.backends.iter().filter_map(|b| b.data_ip6).collect();
            let first = *ups6
                .first()
                .ok_or_else(|| BedError::Setup("no backend with an IPv6 address".into()))?;
            Ok(Running {
                _procs: Vec::new(),
                bases: ups6
                    .iter()
                    .map(|ip| format!("http://[{ip}]:{}", addr::WEB_PORT))
                    .collect(),
                tls_targets: Vec::new(),
                middle: None,
                probe_target: SocketAddr::from((first, addr::WEB_PORT)),
            })
        }
        System::BatonIpv6(io, polling) => {
            let mut opts = baton::SwitchOptions::bench();
            opts.io = io;
            opts.polling = polling;
            let procs = baton::start_stack(bed, &opts)?;
            baton::wait_serving(
                bed,
                &addr::vip6_service(),
                content::OBJ_1K.path,
                Duration::from_secs(20),
            )?;
            Ok(Running {
                _procs: procs,
                bases: vec![format!("http://{}", addr::vip6_service())],
                tls_targets: Vec::new(),
                middle: Some(bed.switch()?.ns.clone()),
                probe_target: addr::vip6_service(),
            })
        }
        System::Direct => Ok(Running {
            _procs: Vec::new(),
            bases: upstreams
                .iter()
                .map(|ip| format!("http://{}:{}", ip, addr::WEB_PORT))
                .collect(),
            tls_targets: upstreams
                .iter()
                .map(|ip| SocketAddr::from((*ip, addr::BACKEND_TLS_PORT)))
                .collect(),
            middle: None,
            probe_target: SocketAddr::from((
                *upstreams
                    .first()
                    .ok_or_else(|| BedError::Setup("no backend".into()))?,
                addr::WEB_PORT,
            )),
        }),
        System::Proxy(kind) => {
            let p = peers::start(bed, kind, &upstreams)?;
            Ok(Running {
                _procs: vec![p],
                bases: vec![format!("http://{}", peers::proxy_service())],
                tls_targets: vec![peers::proxy_tls_service()],
                middle: Some(bed.proxy()?.ns.clone()),
                probe_target: peers::proxy_service(),
            })
        }
        System::Baton(..) | System::BatonRelay => {
            let mut opts = baton::SwitchOptions::bench();
            match sys {
                System::Baton(io, polling) => {
                    opts.io = io;
                    opts.polling = polling;
                }
                _ => opts.agents = vec![baton::AgentRole::Relay, baton::AgentRole::Relay],
            }
            let procs = baton::start_stack(bed, &opts)?;
            Ok(Running {
                _procs: procs,
                bases: vec![format!("http://{}", addr::vip_service())],
                tls_targets: vec![addr::vip_tls_service()],
                middle: Some(bed.switch()?.ns.clone()),
                probe_target: addr::vip_service(),
            })
        }
    }
}

/// What the ledger needs to know about the bed, found once per run.
struct LedgerCtx {
    hosts: Hosts,
    softirq_in_processes: Option<bool>,
}

impl System {
    fn shape(&self) -> Shape {
        Shape {
            switch: matches!(
                self,
                System::Baton(..) | System::BatonRelay | System::BatonIpv6(..)
            ),
            proxy: matches!(self, System::Proxy(_)),
        }
    }
}

fn measure(
    bed: &Bed,
    run: &Running,
    sys: System,
    w: Workload,
    s: &Settings,
    lc: &LedgerCtx,
) -> Row {
    let mut row = Row {
        system: sys.name(),
        polling: sys.polling().map(|p| p.as_str().to_string()),
        size_bytes: w.object.size,
        size: w.size_label(),
        connection: w.conn_label().into(),
        protocol: w.protocol().into(),
        ..Row::default()
    };
    let client = &bed.clients[0].ns;
    // (URL, where to connect) per wrk process.
    let targets: Vec<(String, Option<SocketAddr>)> = if w.tls {
        run.tls_targets
            .iter()
            .map(|t| (https_url(w.object), Some(*t)))
            .collect()
    } else {
        run.bases
            .iter()
            .map(|b| (format!("{b}{}", w.object.path), None))
            .collect()
    };
    let n = targets.len().max(1) as u32;
    let runs = |d| -> Vec<WrkRun> {
        targets
            .iter()
            .map(|(url, to)| {
                let mut r = WrkRun::new(url.clone(), (s.connections / n).max(1), d);
                r.close = w.close;
                r.connect = *to;
                r
            })
            .collect()
    };
    if !s.warmup.is_zero() {
        let _ = wrk::run_parallel_in(client, &runs(s.warmup));
    }
    let mid = run.middle.as_deref();
    // The slower looks (spawning `ip`, scanning /proc) go outside the
    // window, the machine's and the children's figures right at its edges.
    let iface_before = mid
        .and_then(|ns| netns::if_counters(ns, DATA_IF).ok())
        .unwrap_or_default();
    let procs_before = ProcSnapshot::take(&lc.hosts);
    let machine_before = MachineTicks::read();
    let children_before = cpu::children_seconds();
    let rep: WrkReport = match wrk::run_parallel_in(client, &runs(s.duration)) {
        Ok(r) => r,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    let children = cpu::children_seconds() - children_before;
    let machine = MachineTicks::read().since(&machine_before);
    let procs = ProcSnapshot::take(&lc.hosts).since(&procs_before);
    let iface_after: IfCounters = mid
        .and_then(|ns| netns::if_counters(ns, DATA_IF).ok())
        .unwrap_or_default();
    let usage = Usage::from_ticks(procs, machine, children, 1.0 / cpu::ticks_per_sec());
    let per_1k = |secs: f64| {
        if rep.requests == 0 {
            0.0
        } else {
            secs * 1000.0 / rep.requests as f64
        }
    };
    row.requests = rep.requests;
    row.failures = rep.failures();
    if row.failures > 0 {
        row.failure_kinds = format!(
            "connect {} read {} write {} timeout {} non-2xx {}",
            rep.err_connect, rep.err_read, rep.err_write, rep.err_timeout, rep.non_2xx
        );
    }
    row.rps = rep.rps;
    row.p50_us = rep.p50_us;
    row.p99_us = rep.p99_us;
    row.cpu_machine_s_per_1k = per_1k(usage.machine_s);
    if mid.is_some() {
        // Every process in the switch's or proxy's namespace.
        let middle_s = match sys {
            System::Proxy(_) => usage.get(Component::Proxy),
            _ => {
                usage.get(Component::SwitchWorkers)
                    + usage.get(Component::SwitchControl)
                    + usage.get(Component::SwitchOther)
            }
        };
        row.cpu_switch_s_per_1k = Some(per_1k(middle_s));
        let d = iface_after.since(&iface_before);
        let body = rep.requests as f64 * w.object.size as f64;
        if body > 0.0 {
            row.bytes_through_per_response_byte = Some((d.rx_bytes + d.tx_bytes) as f64 / body);
        }
    }
    row.ledger = Some(Ledger::new(
        &usage,
        rep.requests,
        sys.shape(),
        lc.softirq_in_processes,
    ));
    row
}

/// The URL of `obj` in the HTTPS cells: the static name, so the switch and
/// HAProxy in `mode tcp` route by an SNI their rules know.
pub fn https_url(obj: Object) -> String {
    format!("https://{}{}", tls::STATIC, obj.path)
}

/// The switch's and every agent's metrics, concatenated (empty for the peers).
fn baton_scrape(bed: &Bed, sys: System) -> String {
    if !sys.shape().switch {
        return String::new();
    }
    let mut text = baton::admin_get(bed.hub(), "/metrics").unwrap_or_default();
    for i in 0..bed.backends.len() {
        let a = std::net::SocketAddr::from((addr::backend_mgmt(i), addr::AGENT_METRICS_PORT));
        let r = crate::netns::in_ns(bed.hub(), move || {
            crate::client::get(a, "/metrics", &[], Duration::from_secs(2))
        });
        if let Ok(Ok(r)) = r {
            text.push_str(&r.text());
        }
    }
    text
}

/// The latency probe of one running system, one row per object.
fn probe_system(bed: &Bed, run: &Running, sys: System, s: &Settings) -> Vec<ProbeRow> {
    PROBE_OBJECTS
        .iter()
        .map(|obj| {
            let before = baton_scrape(bed, sys);
            let row = ProbeRow {
                system: sys.name(),
                polling: sys.polling().map(|p| p.as_str().to_string()),
                size_bytes: obj.size,
                size: size_label(obj.size),
                target: run.probe_target.to_string(),
                ..ProbeRow::default()
            };
            match probe::serial_in(
                &bed.clients[0].ns,
                run.probe_target,
                obj.path,
                obj.size,
                s.probe_n,
            ) {
                Ok(sample) => {
                    let mut row = row.with_sample(&sample);
                    if sys.shape().switch {
                        row.inside = Some(probe::Inside::between(&before, &baton_scrape(bed, sys)));
                    }
                    row
                }
                Err(e) => ProbeRow {
                    error: Some(e.to_string()),
                    ..row
                },
            }
        })
        .collect()
}

/// One IPv6 cell beside its IPv4 twin (same Baton backend, polling mode,
/// object and connection discipline; for direct, direct).
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyPair {
    /// The IPv4 system's name (`baton-afpacket`, `direct`).
    pub system: String,
    pub polling: Option<String>,
    pub size: String,
    pub connection: String,
    /// Requests/s over IPv4 and over IPv6.
    pub rps4: f64,
    pub rps6: f64,
    /// p50 latency (µs) over IPv4 and over IPv6.
    pub p50_us4: f64,
    pub p50_us6: f64,
}

impl FamilyPair {
    /// IPv6 requests/s as a share of IPv4's.
    pub fn ratio(&self) -> f64 {
        if self.rps4 > 0.0 {
            self.rps6 / self.rps4
        } else {
            0.0
        }
    }
}

/// Every measured IPv6 row with its measured IPv4 twin.
pub fn ipv6_vs_ipv4(rows: &[Row]) -> Vec<FamilyPair> {
    let ok = |r: &&Row| r.error.is_none() && r.requests > 0;
    rows.iter()
        .filter(ok)
        .filter_map(|r6| {
            let system = r6.system.strip_suffix(IPV6_SUFFIX)?;
            let r4 = rows.iter().filter(ok).find(|r| {
                r.system == system
                    && r.polling == r6.polling
                    && r.size_bytes == r6.size_bytes
                    && r.connection == r6.connection
                    && r.protocol == r6.protocol
            })?;
            Some(FamilyPair {
                system: system.to_string(),
                polling: r6.polling.clone(),
                size: r6.size.clone(),
                connection: r6.connection.clone(),
                rps4: r4.rps,
                rps6: r6.rps,
                p50_us4: r4.p50_us,
                p50_us6: r6.p50_us,
            })
        })
        .collect()
}

/// Something the run has just measured, for progress output.
#[derive(Debug)]
pub enum Landed<'a> {
    /// A wrk cell.
    Row(&'a Row),
    /// A latency probe of one system and object.
    Probe(&'a ProbeRow),
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measured {
    /// The wrk cells.
    pub rows: Vec<Row>,
    /// The latency probe, per system and object ("added" not yet filled).
    pub probe: Vec<ProbeRow>,
}

/// Runs the whole matrix on a fresh bed; `progress` sees each row and probe
/// result as it lands.
pub fn run(s: &Settings, mut progress: impl FnMut(Landed)) -> Result<Measured> {
    let bed = Bed::up(&BedSpec {
        clients: 1,
        backends: 2,
        switches: 1,
        routed: false,
        proxy: true,
    })?;
    let _nginx = nginx::start_all(&bed)?;
    let lc = LedgerCtx {
        hosts: Hosts::of_bed(&bed),
        softirq_in_processes: cpu::softirq_charged_to_tasks(),
    };
    let mut rows = Vec::new();
    let mut probes = Vec::new();
    for &sys in &s.systems {
        let running = match start(&bed, sys) {
            Ok(r) => r,
            Err(e) => {
                for &w in s.workloads.iter().filter(|w| sys.serves(w)) {
                    let row = Row {
                        system: sys.name(),
                        polling: sys.polling().map(|p| p.as_str().to_string()),
                        size_bytes: w.object.size,
                        size: w.size_label(),
                        connection: w.conn_label().into(),
                        protocol: w.protocol().into(),
                        error: Some(format!("could not start: {e}")),
                        ..Row::default()
                    };
                    progress(Landed::Row(&row));
                    rows.push(row);
                }
                continue;
            }
        };
        // The probe before the wrk cells: the bed is idle and nothing else
        // of this system is in flight.
        if s.probe_n > 0 && sys.serves_http() {
            for p in probe_system(&bed, &running, sys, s) {
                progress(Landed::Probe(&p));
                probes.push(p);
            }
        }
        for &w in s.workloads.iter().filter(|w| sys.serves(w)) {
            let row = measure(&bed, &running, sys, w, s, &lc);
            progress(Landed::Row(&row));
            rows.push(row);
        }
    }
    if rows.iter().all(|r| r.error.is_some()) {
        return Err(BedError::Setup("no system could be measured".into()));
    }
    Ok(Measured {
        rows,
        probe: probes,
    })
}
