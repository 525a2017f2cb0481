//! Prometheus metrics of the switch (`prometheus` crate, text format).
//!
//! Two sources: the control plane's own (decisions, handoff outcomes and
//! latency, backend health, reloads), updated as events happen; and the
//! workers' counters, which workers keep as plain atomics and the exporter
//! copies at scrape time (as deltas into Prometheus counters, so the packet
//! path never touches the `prometheus` crate). Names follow Prometheus
//! conventions: `baton_` prefix, `_total` for counters, seconds and bytes.
//! The full list is in `docs/metrics.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dataplane::counters::{Counters, Snapshot};
use dataplane::io::{FastPathStats, PortMonitor, PortStats};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, 10 µs to 2.5 s.
const LATENCY_BUCKETS: &[f64] = &[
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Worker scalars with a better name or a label; the others become
/// `baton_worker_<name>_total`.
fn special_scalar(name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    // (metric, label name, label value)
    Some(match name {
        "rx_packets" => ("baton_worker_received_packets_total", "", ""),
        "tx_packets" => ("baton_worker_sent_packets_total", "", ""),
        "rx_bytes" => ("baton_worker_received_bytes_total", "", ""),
        "tx_bytes" => ("baton_worker_sent_bytes_total", "", ""),
        "handoff_acked" => ("baton_worker_handoffs_total", "outcome", "acked"),
        "handoff_nacked" => ("baton_worker_handoffs_total", "outcome", "nacked"),
        "handoff_timed_out" => ("baton_worker_handoffs_total", "outcome", "timed_out"),
        "handoff_aborted" => ("baton_worker_handoffs_total", "outcome", "aborted"),
        "syncookies_sent" => ("baton_worker_syn_cookies_total", "result", "sent"),
        "syncookies_validated" => ("baton_worker_syn_cookies_total", "result", "validated"),
        "syncookies_failed" => ("baton_worker_syn_cookies_total", "result", "failed"),
        "responses_4xx" => ("baton_worker_local_responses_total", "class", "4xx"),
        "responses_5xx" => ("baton_worker_local_responses_total", "class", "5xx"),
        "tls_hellos_h2" => ("baton_worker_tls_hellos_total", "alpn", "h2"),
        "tls_hellos_http11" => ("baton_worker_tls_hellos_total", "alpn", "http/1.1"),
        "tls_hellos_other_alpn" => ("baton_worker_tls_hellos_total", "alpn", "other"),
        "tls_hellos_no_alpn" => ("baton_worker_tls_hellos_total", "alpn", "none"),
        _ => return None,
    })
}

fn help_for(metric: &str) -> String {
    match metric {
        "baton_worker_received_packets_total" => {
            "Frames received on the data port, per worker.".into()
        }
        "baton_worker_sent_packets_total" => "Frames sent on the data port, per worker.".into(),
        "baton_worker_received_bytes_total" => {
            "Bytes received on the data port, per worker.".into()
        }
        "baton_worker_sent_bytes_total" => "Bytes sent on the data port, per worker.".into(),
        "baton_worker_handoffs_total" => {
            "Handoffs by outcome (THOP ACK, NACK, timeout, client gone), per worker.".into()
        }
        "baton_worker_syn_cookies_total" => {
            "SYN cookies sent, validated and rejected, per worker.".into()
        }
        "baton_worker_local_responses_total" => {
            "Error responses the switch answered itself, per worker.".into()
        }
        "baton_worker_new_connections_total" => {
            "Handshakes completed (connections entering WAITHEADER), per worker.".into()
        }
        "baton_worker_thop_retransmits_total" => "THOP_CREATE retransmissions, per worker.".into(),
        "baton_worker_thop_abort_retransmits_total" => {
            "THOP_ABORTs sent again because the agent had not acknowledged them, per worker.".into()
        }
        "baton_worker_thop_aborts_unacknowledged_total" => {
            "THOP_ABORTs given up without an acknowledgement (that agent may still hold the socket), per worker.".into()
        }
        "baton_worker_idle_sleeps_total" => {
            "Times the worker blocked in adaptive polling (nothing to do), per worker.".into()
        }
        "baton_worker_local_decisions_total" => {
            "Requests the worker decided itself from the routing snapshot (no queue hop), per worker.".into()
        }
        "baton_worker_illegal_transitions_total" => {
            "State changes the dataplane's transition table does not list, refused (the connection stays as it was; any is a bug), per worker.".into()
        }
        "baton_worker_offload_inserted_total" => {
            "Flows handed to the in-kernel fast path on entering FORWARDING, per worker.".into()
        }
        "baton_worker_offload_removed_total" => {
            "Flows taken back from the in-kernel fast path when their entry ended, per worker.".into()
        }
        "baton_worker_offload_full_total" => {
            "Flows kept in user space because the fast path's flow table was full, per worker.".into()
        }
        "baton_worker_offload_errors_total" => {
            "Fast-path flow-table updates the kernel refused for another reason, per worker.".into()
        }
        "baton_worker_offload_taken_over_total" => {
            "Flows left in the fast path when their entry ended because a newer connection on the same 4-tuple, answered by another worker, owns the key, per worker.".into()
        }
        "baton_xdp_packets_total" => {
            "Frames the XDP program handled, by action: `forwarded` (relayed in the kernel), `to_worker` (handed to a worker's AF_XDP socket), `passed` (left to the kernel stack), `dropped` (unparseable, or a failed transmit or redirect).".into()
        }
        "baton_xdp_forwarded_bytes_total" => {
            "Bytes of the frames the XDP program relayed in the kernel.".into()
        }
        "baton_xdp_flows" => "Connections in the XDP fast path's flow table.".into(),
        "baton_xdp_flows_retired_total" => {
            "Flows the XDP program stopped relaying because a SYN reused their 4-tuple (the worker that answers the SYN takes the new connection).".into()
        }
        "baton_xdp_attached" => {
            "1 while the XDP program is attached, labelled with its mode (`native` or `generic`).".into()
        }
        "baton_worker_tls_hellos_total" => {
            "Complete ClientHellos on TLS services, by the ALPN protocol the client prefers (`h2`, `http/1.1`, `other`, `none` offered), per worker.".into()
        }
        "baton_worker_tls_hellos_tls13_total" => {
            "ClientHellos on TLS services that offer TLS 1.3, per worker.".into()
        }
        "baton_worker_tls_alerts_total" => {
            "Fatal TLS alerts the switch sent on TLS services (a refused ClientHello, no backend), per worker.".into()
        }
        "baton_worker_recovery_hellos_sent_total" => {
            "THOP HELLOs sent to agents (worker 0): how agents learn of this switch process.".into()
        }
        "baton_worker_recovery_lookups_sent_total" => {
            "THOP LOOKUPs sent (one per agent per unknown flow asked about), per worker.".into()
        }
        "baton_worker_recovery_records_total" => {
            "Flow records from agents' FLOWS stored for recovery, per worker that received them.".into()
        }
        "baton_worker_recovery_records_refused_total" => {
            "Flow records refused because the recovery directory was full, per worker.".into()
        }
        "baton_worker_recovered_resync_total" => {
            "FORWARDING entries installed from a record an agent sent after this process's HELLO, per worker.".into()
        }
        "baton_worker_recovered_lookup_total" => {
            "FORWARDING entries installed after this worker's LOOKUP was answered, per worker.".into()
        }
        "baton_worker_agent_restarts_total" => {
            "Agent restarts (a new THOP boot) this worker noticed first.".into()
        }
        "baton_worker_nd_solicits_sent_total" => {
            "IPv6 neighbour solicitations sent (backends' and agents' MACs), per worker.".into()
        }
        "baton_worker_nd_adverts_sent_total" => {
            "IPv6 neighbour advertisements sent (answers for the VIPs and data addresses, and at start), per worker.".into()
        }
        "baton_worker_mld_reports_sent_total" => {
            "MLDv2 reports of the solicited-node groups of the switch's IPv6 addresses (at start and on queries), per worker.".into()
        }
        "baton_worker_icmp6_too_big_total" => {
            "ICMPv6 Packet Too Big messages about a connection: relayed to its backend, or lowering the segment size of the switch's own response, per worker.".into()
        }
        "baton_worker_doorbell_wakeups_total" => {
            "Sleeps ended by the worker's doorbell (a decision, command or relayed THOP reply queued for it), per worker.".into()
        }
        other => format!(
            "Dataplane counter `{}`, per worker.",
            other
                .trim_start_matches("baton_worker_")
                .trim_end_matches("_total")
        ),
    }
}

/// The switch's metrics.
pub struct Metrics {
    registry: Registry,
    pub config_generation: IntGauge,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub decisions: IntCounterVec,
    pub rule_matches: IntCounterVec,
    pub rejections: IntCounterVec,
    pub decision_place: IntCounterVec,
    pub decision_seconds: Histogram,
    pub handoff_seconds: HistogramVec,
    pub handoffs: IntCounterVec,
    pub backend_up: IntGaugeVec,
    pub backend_draining: IntGaugeVec,
    pub backend_active: IntGaugeVec,
    pub backend_reported: IntGaugeVec,
    pub backend_weight: IntGaugeVec,
    pub health_checks: IntCounterVec,
    pub health_transitions: IntCounterVec,
    pub load_reports: IntCounterVec,
    pub agent_restarts: IntCounterVec,
    pub vip_announced: IntGaugeVec,
    pub announce_errors: IntCounterVec,
    pub deferred_decisions: IntCounterVec,
    pub admin_refused: IntCounterVec,
    worker_scalars: HashMap<String, IntCounterVec>,
    worker_drops: IntCounterVec,
    worker_aborts: IntCounterVec,
    worker_closes: IntCounterVec,
    worker_states: IntGaugeVec,
    worker_capacity: IntGaugeVec,
    workers: Mutex<WorkerSources>,
    port_up: IntGaugeVec,
    port_counters: IntCounterVec,
    xdp_packets: IntCounterVec,
    xdp_forwarded_bytes: IntCounterVec,
    xdp_flows: IntGaugeVec,
    xdp_flows_retired: IntCounterVec,
    xdp_attached: IntGaugeVec,
    port: Mutex<Option<PortSource>>,
    catalog: Vec<MetricDoc>,
}

/// The data port and what was last exported of its counters.
struct PortSource {
    monitor: Arc<dyn PortMonitor>,
    stats: PortStats,
    fast_path: FastPathStats,
}

#[derive(Default)]
struct WorkerSources {
    counters: Vec<Arc<Counters>>,
    /// Last value exported per (worker, family, label) to turn totals into increments.
    last: HashMap<(usize, &'static str, &'static str), u64>,
}

/// One metric family as documented in `docs/metrics.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDoc {
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub labels: Vec<String>,
    pub help: String,
}

/// A registry that also records what it registered, for the documentation.
struct Reg {
    r: Registry,
    catalog: std::cell::RefCell<Vec<MetricDoc>>,
}

impl Reg {
    fn add(&self, c: Box<dyn prometheus::core::Collector>, kind: &'static str) {
        for d in c.desc() {
            self.catalog.borrow_mut().push(MetricDoc {
                name: d.fq_name.clone(),
                kind,
                labels: d.variable_labels.clone(),
                help: d.help.clone(),
            });
        }
        self.r.register(c).expect("unique metric");
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.add(Box::new(c.clone()), "counter");
        c
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.add(Box::new(g.clone()), "gauge");
        g
    }
}

impl Metrics {
    /// All metrics, registered; worker counters are attached with [`Metrics::set_workers`].
    pub fn new(profile_name: &str) -> Self {
        let r = Reg {
            r: Registry::new(),
            catalog: Default::default(),
        };
        let info = GaugeVec::new(
            Opts::new(
                "baton_build_info",
                "Build and profile of this switch (value 1).",
            ),
            &["version", "profile", "dpdk"],
        )
        .expect("valid metric");
        r.add(Box::new(info.clone()), "gauge");
        info.with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            profile_name,
            if cfg!(feature = "dpdk") { "yes" } else { "no" },
        ])
        .set(1.0);
        let config_generation = IntGauge::new(
            "baton_config_generation",
            "Generation of the running profile (1 at start, +1 per successful reload).",
        )
        .expect("valid metric");
        r.add(Box::new(config_generation.clone()), "gauge");
        let last_reload_success = Gauge::new(
            "baton_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful profile load or reload.",
        )
        .expect("valid metric");
        r.add(Box::new(last_reload_success.clone()), "gauge");
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "baton_dispatch_decision_seconds",
                "Time from a complete request header to the control plane's decision.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        r.add(Box::new(decision_seconds.clone()), "histogram");
        let handoff_seconds = HistogramVec::new(
            HistogramOpts::new(
                "baton_handoff_latency_seconds",
                "Time from a complete request header to the agent's THOP ACK.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["backend"],
        )
        .expect("valid metric");
        r.add(Box::new(handoff_seconds.clone()), "histogram");

        let mut worker_scalars = HashMap::new();
        for (name, _) in Counters::default().snapshot().scalars {
            let (metric, label) = match special_scalar(name) {
                Some((m, l, _)) => (m.to_string(), l),
                None => (format!("baton_worker_{name}_total"), ""),
            };
            if worker_scalars.contains_key(&metric) {
                continue;
            }
            let labels: Vec<&str> = if label.is_empty() {
                vec!["worker"]
            } else {
                vec!["worker", label]
            };
            let c = r.counter(&metric, &help_for(&metric), &labels);
            worker_scalars.insert(metric, c);
        }

        Metrics {
            config_generation,
            reloads: r.counter("baton_config_reloads_total", "Profile reloads by result.", &["result"]),
            last_reload_success,
            decisions: r.counter("baton_dispatch_decisions_total", "Requests dispatched, by pool and backend.", &["pool", "backend"]),
            rule_matches: r.counter("baton_dispatch_rule_matches_total",
                "Requests by the routing rule that chose their pool (`default`: none matched), by service; on TLS services the `sni` rules show which server names clients ask for.",
                &["service", "rule"],
            ),
            rejections: r.counter("baton_dispatch_rejections_total",
                "Requests the control plane answered with an error status, by pool and reason.",
                &["pool", "reason"],
            ),
            decision_place: r.counter("baton_dispatch_decision_place_total",
                "Dispatch decisions by where they were taken: `worker` (from the routing snapshot, no queue hop) or `control` (the control-plane thread).",
                &["place"],
            ),
            decision_seconds,
            handoff_seconds,
            handoffs: r.counter("baton_handoffs_total", "Handoff outcomes reported by workers, by backend.", &["backend", "outcome"]),
            backend_up: r.gauge("baton_backend_up", "1 when the backend is healthy (checks and passive signals), else 0.", &["backend"]),
            backend_draining: r.gauge("baton_backend_draining", "1 when the backend is drained (no new requests).", &["backend"]),
            backend_active: r.gauge("baton_backend_active_connections", "Connections handed to the backend and not yet closed.", &["backend"]),
            backend_reported: r.gauge("baton_backend_reported_connections", "Active connections in the agent's last LOAD report.", &["backend"]),
            backend_weight: r.gauge("baton_backend_weight", "Configured weight of the backend.", &["backend"]),
            health_checks: r.counter("baton_health_checks_total", "Active health checks by result.", &["backend", "result"]),
            health_transitions: r.counter("baton_backend_transitions_total", "Backend health changes, by new state.", &["backend", "to"]),
            load_reports: r.counter("baton_load_reports_total", "THOP LOAD reports received, by whether they matched a backend.", &["result"]),
            agent_restarts: r.counter("baton_backend_agent_restarts_total", "Agents seen to restart (a new boot in their THOP frames); connections they relayed themselves ended with them.", &["backend"]),
            vip_announced: r.gauge("baton_vip_announced", "1 while the BGP daemon confirmed the VIPs' announcement (cluster.announce), by its protocol.", &["protocol"]),
            announce_errors: r.counter("baton_announce_errors_total", "Commands to the BGP daemon that failed (it was away or refused), by protocol.", &["protocol"]),
            deferred_decisions: r.counter("baton_dispatch_deferred_total",
                "Decisions held back because a worker's decision queue was full.",
                &["worker"],
            ),
            admin_refused: r.counter("baton_admin_refused_total",
                "Admin/metrics endpoint connections and requests refused, by reason (not_allowed, too_many_connections, evicted_waiting, header_too_large, header_timeout, malformed, body_too_large, request_timeout, connection_age, writes_disabled, unauthorized, cross_site).",
                &["reason"],
            ),
            worker_drops: r.counter("baton_worker_dropped_packets_total", "Frames dropped by the dataplane, by reason, per worker.", &["worker", "reason"]),
            worker_aborts: r.counter("baton_worker_aborted_connections_total",
                "Connections the switch ended itself, by reason, per worker.",
                &["worker", "reason"],
            ),
            worker_closes: r.counter("baton_worker_closed_connections_total", "FORWARDING connections ended, by reason, per worker.", &["worker", "reason"]),
            worker_states: r.gauge("baton_worker_connections", "Connections by state, per worker.", &["worker", "state"]),
            worker_capacity: r.gauge("baton_worker_capacity",
                "The worker's fixed sizes: `table`, connection-table entries (`tuning.table_capacity`; a connection in any state takes one), and `pending`, connections holding a request buffer at once (`limits.pending_per_worker`).",
                &["worker", "resource"],
            ),
            worker_scalars,
            workers: Mutex::new(WorkerSources::default()),
            port_up: r.gauge("baton_port_up", "1 when the data port's link is up.", &["port"]),
            port_counters: r.counter("baton_port_events_total",
                "Data port counters kept by the driver or kernel (packets, bytes, missed, errors, no-buffer).",
                &["port", "counter"],
            ),
            // The fast path's series appear only for a port that has one
            // (no labels: created at the first scrape that sees it).
            xdp_packets: r.counter(
                "baton_xdp_packets_total",
                &help_for("baton_xdp_packets_total"),
                &["action"],
            ),
            xdp_forwarded_bytes: r.counter(
                "baton_xdp_forwarded_bytes_total",
                &help_for("baton_xdp_forwarded_bytes_total"),
                &[],
            ),
            xdp_flows: r.gauge("baton_xdp_flows", &help_for("baton_xdp_flows"), &[]),
            xdp_flows_retired: r.counter(
                "baton_xdp_flows_retired_total",
                &help_for("baton_xdp_flows_retired_total"),
                &[],
            ),
            xdp_attached: r.gauge(
                "baton_xdp_attached",
                &help_for("baton_xdp_attached"),
                &["mode"],
            ),
            port: Mutex::new(None),
            catalog: r.catalog.into_inner(),
            registry: r.r,
        }
    }

    /// Every metric family, sorted by name (for `docs/metrics.md`).
    pub fn catalog(&self) -> Vec<MetricDoc> {
        let mut c = self.catalog.clone();
        c.sort_by(|a, b| a.name.cmp(&b.name));
        c
    }

    /// The catalog as a markdown table.
    pub fn catalog_markdown(&self) -> String {
        let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
        // Dataplane counters without a description here are exported under
        // their own names; they are listed by pattern, not in this table, so a
        // new dataplane counter does not make the documentation stale.
        for m in self.catalog().into_iter().filter(|m| {
            !(m.name.starts_with("baton_worker_") && m.help.starts_with("Dataplane counter `"))
        }) {
            let labels = if m.labels.is_empty() {
                "—".to_string()
            } else {
                m.labels
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                m.name,
                m.kind,
                labels,
                m.help.replace('|', "\\|")
            ));
        }
        out
    }

    /// The workers whose counters are exported.
    pub fn set_workers(&self, counters: Vec<Arc<Counters>>) {
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        w.counters = counters;
    }

    /// The data port whose link and counters are exported.
    pub fn set_port(&self, m: Arc<dyn PortMonitor>) {
        *self.port.lock().unwrap_or_else(|e| e.into_inner()) = Some(PortSource {
            monitor: m,
            stats: PortStats::default(),
            fast_path: FastPathStats::default(),
        });
    }

    fn refresh_port(&self) {
        let mut guard = self.port.lock().unwrap_or_else(|e| e.into_inner());
        let Some(PortSource {
            monitor: m,
            stats: last,
            fast_path,
        }) = guard.as_mut()
        else {
            return;
        };
        let name = m.name();
        self.port_up
            .with_label_values(&[name.as_str()])
            .set(i64::from(m.link().up));
        let s = m.stats();
        for (counter, now, before) in [
            ("rx_packets", s.rx_packets, last.rx_packets),
            ("tx_packets", s.tx_packets, last.tx_packets),
            ("rx_bytes", s.rx_bytes, last.rx_bytes),
            ("tx_bytes", s.tx_bytes, last.tx_bytes),
            ("rx_missed", s.rx_missed, last.rx_missed),
            ("rx_errors", s.rx_errors, last.rx_errors),
            ("tx_errors", s.tx_errors, last.tx_errors),
            ("rx_nombuf", s.rx_nombuf, last.rx_nombuf),
        ] {
            self.port_counters
                .with_label_values(&[name.as_str(), counter])
                .inc_by(now.saturating_sub(before));
        }
        *last = s;
        if let Some(f) = m.fast_path() {
            self.refresh_fast_path(&f, fast_path);
            *fast_path = f;
        }
    }

    /// Exports the in-kernel fast path's counters (increments since `last`).
    fn refresh_fast_path(&self, f: &FastPathStats, last: &FastPathStats) {
        for (action, now, before) in [
            ("forwarded", f.forwarded_packets, last.forwarded_packets),
            ("to_worker", f.to_worker, last.to_worker),
            ("passed", f.passed, last.passed),
            ("dropped", f.dropped, last.dropped),
        ] {
            self.xdp_packets
                .with_label_values(&[action])
                .inc_by(now.saturating_sub(before));
        }
        self.xdp_forwarded_bytes
            .with_label_values(&[] as &[&str])
            .inc_by(f.forwarded_bytes.saturating_sub(last.forwarded_bytes));
        self.xdp_flows
            .with_label_values(&[] as &[&str])
            .set(i64::try_from(f.flows).unwrap_or(i64::MAX));
        self.xdp_flows_retired
            .with_label_values(&[] as &[&str])
            .inc_by(f.retired.saturating_sub(last.retired));
        if f.mode != last.mode {
            self.xdp_attached.reset();
        }
        self.xdp_attached.with_label_values(&[f.mode]).set(1);
    }

    /// Copies worker counters into the registry (called at each scrape).
    pub fn refresh_workers(&self) {
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let snaps: Vec<Snapshot> = w.counters.iter().map(|c| c.snapshot()).collect();
        for (i, s) in snaps.iter().enumerate() {
            let worker = i.to_string();
            for (name, v) in &s.scalars {
                let (metric, lv) = match special_scalar(name) {
                    Some((m, _, lv)) => (m.to_string(), lv),
                    None => (format!("baton_worker_{name}_total"), ""),
                };
                let delta = bump_last(&mut w.last, (i, name, ""), *v);
                if let Some(c) = self.worker_scalars.get(&metric) {
                    if lv.is_empty() {
                        c.with_label_values(&[worker.as_str()]).inc_by(delta);
                    } else {
                        c.with_label_values(&[worker.as_str(), lv]).inc_by(delta);
                    }
                }
            }
            for (fam, list, vec) in [
                ("drops", &s.drops, &self.worker_drops),
                ("aborts", &s.aborts, &self.worker_aborts),
                ("closes", &s.closes, &self.worker_closes),
            ] {
                for (reason, v) in list {
                    let delta = bump_last(&mut w.last, (i, fam, reason), *v);
                    vec.with_label_values(&[worker.as_str(), reason])
                        .inc_by(delta);
                }
            }
            for (state, v) in &s.states {
                self.worker_states
                    .with_label_values(&[worker.as_str(), state])
                    .set(*v as i64);
            }
            for (resource, v) in &s.capacity {
                self.worker_capacity
                    .with_label_values(&[worker.as_str(), resource])
                    .set(i64::try_from(*v).unwrap_or(i64::MAX));
            }
        }
    }

    /// Every metric family, worker and port counters copied in first: what
    /// [`Metrics::render`] encodes (the status page reads the same).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.refresh_workers();
        self.refresh_port();
        self.registry.gather()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Unix time now, in seconds.
    pub fn unix_now() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

/// Stores `v` as the last value of `key`; returns the increase since the last call.
fn bump_last(
    last: &mut HashMap<(usize, &'static str, &'static str), u64>,
    key: (usize, &'static str, &'static str),
    v: u64,
) -> u64 {
    let prev = last.insert(key, v).unwrap_or(0);
    v.saturating_sub(prev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::io::LinkStatus;

    /// A port whose fast-path counters the test sets.
    struct FakePort(Mutex<Option<FastPathStats>>);

    impl PortMonitor for FakePort {
        fn name(&self) -> String {
            "af_xdp:fake0".into()
        }
        fn mac(&self) -> [u8; 6] {
            [2, 0, 0, 0, 0, 1]
        }
        fn link(&self) -> LinkStatus {
            LinkStatus {
                up: true,
                ..LinkStatus::default()
            }
        }
        fn stats(&self) -> PortStats {
            PortStats::default()
        }
        fn xstats(&self) -> Vec<(String, u64)> {
            Vec::new()
        }
        fn steering(&self) -> &'static str {
            "single"
        }
        fn fast_path(&self) -> Option<FastPathStats> {
            *self.0.lock().unwrap()
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn fast_path_counters_are_exported_only_for_a_port_that_has_one() {
        let m = Metrics::new("t");
        let port = Arc::new(FakePort(Mutex::new(None)));
        m.set_port(port.clone());
        let text = m.render();
        assert!(text.contains("baton_port_up"), "{text}");
        assert!(!text.contains("baton_xdp_"), "{text}");

        *port.0.lock().unwrap() = Some(FastPathStats {
            forwarded_packets: 10,
            forwarded_bytes: 1500,
            to_worker: 7,
            passed: 1,
            dropped: 2,
            retired: 4,
            flows: 3,
            mode: "native",
        });
        let text = m.render();
        for (series, want) in [
            ("baton_xdp_packets_total{action=\"forwarded\"}", 10.0),
            ("baton_xdp_packets_total{action=\"to_worker\"}", 7.0),
            ("baton_xdp_packets_total{action=\"passed\"}", 1.0),
            ("baton_xdp_packets_total{action=\"dropped\"}", 2.0),
            ("baton_xdp_forwarded_bytes_total", 1500.0),
            ("baton_xdp_flows", 3.0),
            ("baton_xdp_flows_retired_total", 4.0),
            ("baton_xdp_attached{mode=\"native\"}", 1.0),
        ] {
            assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
        }

        // Counters move by the increase; the gauge follows the table.
        *port.0.lock().unwrap() = Some(FastPathStats {
            forwarded_packets: 25,
            forwarded_bytes: 4000,
            to_worker: 7,
            passed: 1,
            dropped: 2,
            retired: 4,
            flows: 0,
            mode: "native",
        });
        let text = m.render();
        assert_eq!(
            value(&text, "baton_xdp_packets_total{action=\"forwarded\"}"),
            Some(25.0)
        );
        assert_eq!(
            value(&text, "baton_xdp_forwarded_bytes_total"),
            Some(4000.0)
        );
        assert_eq!(value(&text, "baton_xdp_flows"), Some(0.0));
    }

    #[test]
    fn fast_path_metrics_are_documented() {
        let m = Metrics::new("t");
        let doc = m.catalog_markdown();
        for name in [
            "baton_xdp_packets_total",
            "baton_xdp_forwarded_bytes_total",
            "baton_xdp_flows",
            "baton_xdp_attached",
        ] {
            assert!(doc.contains(&format!("| `{name}` |")), "{name} missing");
        }
    }
}
