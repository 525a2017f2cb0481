//! The agent's Prometheus metrics, and the HTTP server exposing them on the
//! management address (`/metrics`; `/healthz` for probes). The server is
//! [`mgmt_http`]'s: it bounds header size, header time and connections, so a
//! client of the metrics port cannot exhaust the agent that carries the
//! backend's traffic.
//!
//! Every refusal and every dropped frame is counted by a stable reason label,
//! so an operator can tell a key mismatch from a full backlog at a glance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mgmt_http::{Allow, Handler, Limits, Method, Refusal, Request, Response, Server};

use crate::config::MetricsConfig;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// All metrics of one agent.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Connections adopted, by mode (`relay`, `listener`).
    pub adopted: IntCounterVec,
    /// CREATEs refused with a NACK, by NACK reason.
    pub refused: IntCounterVec,
    /// Received frames dropped without an answer, by reason (source not
    /// allowed, bad tag, replay, malformed …).
    pub thop_dropped: IntCounterVec,
    /// Authenticated frames received, by opcode.
    pub thop_rx: IntCounterVec,
    /// Frames sent, by opcode.
    pub thop_tx: IntCounterVec,
    /// Duplicate CREATEs answered with ACK again.
    pub duplicate_creates: IntCounter,
    /// ABORTs honoured.
    pub aborts: IntCounter,
    /// Adopted connections currently open.
    pub active: IntGauge,
    /// CREATEs being reassembled.
    pub reassembly_pending: IntGauge,
    /// Connections ended, by CLOSE reason.
    pub closed: IntCounterVec,
    /// Bytes relayed, by direction (`from_client`, `to_client`).
    pub relayed_bytes: IntCounterVec,
    /// CLOSE frames retransmitted (no ACK from the switch in time).
    pub close_retransmits: IntCounter,
    /// Time from a complete CREATE to an adopted socket (relay: upstream connected).
    pub adopt_seconds: Histogram,
    /// Sockets of earlier connections ended because they still held the
    /// 4-tuple of a CREATE.
    pub stale_retired: IntCounter,
    /// Handover mode: CREATEs refused, by reason (`no_server`, `queue_full`,
    /// `not_accepted`: offered, never accepted in time, silenced).
    pub handover_refused: IntCounterVec,
    /// Handover mode: datagrams on the handover socket ignored, by reason.
    pub handover_dropped: IntCounterVec,
    /// Handover mode: server listeners known.
    pub handover_listeners: IntGauge,
    /// Handover mode: connections offered to a server and not yet accepted.
    pub handover_pending: IntGauge,
    /// Metrics endpoint: connections and requests refused, by reason.
    pub metrics_refused: IntCounterVec,
    /// A switch's frames carried another boot than the one remembered: it
    /// restarted (`docs/thop.md` §9.4).
    pub switch_restarts: IntCounter,
    /// Resynchronisations started: a switch boot not seen before (its
    /// restart, or its first frame since this agent started).
    pub resyncs: IntCounter,
    /// Flow records sent in resynchronisations.
    pub resync_flows: IntCounter,
    /// LOOKUP records, by result (`found`: a live connection, answered;
    /// `unknown`).
    pub lookups: IntCounterVec,
    /// Switches other than the origin that will get a connection's CLOSE
    /// (they looked it up), summed over the open connections.
    pub holders: IntGauge,
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("static metric definition is valid");
    reg.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counter(reg: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition is valid");
    reg.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn gauge(reg: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition is valid");
    reg.register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Metrics {
        let reg = Registry::new();
        let build = IntGauge::with_opts(
            Opts::new("baton_agent_build_info", "Build information (always 1).")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("static metric definition is valid");
        build.set(1);
        reg.register(Box::new(build))
            .expect("metric names are unique");
        let adopt_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "baton_agent_adopt_seconds",
                "Time from a complete CREATE to an adopted connection ready for the application.",
            )
            // Fine below 100 µs: adoption itself takes ~15 µs, and the
            // test bed's target for the whole path is 30 µs.
            .buckets(vec![
                0.000005, 0.00001, 0.000015, 0.00002, 0.00003, 0.00005, 0.000075, 0.0001, 0.00025,
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
            ]),
        )
        .expect("static metric definition is valid");
        reg.register(Box::new(adopt_seconds.clone()))
            .expect("metric names are unique");
        Metrics {
            adopted: counter_vec(
                &reg,
                "baton_agent_adopted_total",
                "Connections adopted, by mode.",
                &["mode"],
            ),
            refused: counter_vec(
                &reg,
                "baton_agent_refused_total",
                "CREATEs refused with NACK, by reason.",
                &["reason"],
            ),
            thop_dropped: counter_vec(
                &reg,
                "baton_agent_thop_dropped_total",
                "Received THOP datagrams dropped without an answer, by reason.",
                &["reason"],
            ),
            thop_rx: counter_vec(
                &reg,
                "baton_agent_thop_rx_total",
                "Authenticated THOP frames received, by opcode.",
                &["opcode"],
            ),
            thop_tx: counter_vec(
                &reg,
                "baton_agent_thop_tx_total",
                "THOP frames sent, by opcode.",
                &["opcode"],
            ),
            duplicate_creates: counter(
                &reg,
                "baton_agent_duplicate_creates_total",
                "Duplicate CREATEs acknowledged again.",
            ),
            aborts: counter(
                &reg,
                "baton_agent_aborts_total",
                "ABORTs from the switch honoured.",
            ),
            active: gauge(
                &reg,
                "baton_agent_active_connections",
                "Adopted connections currently open.",
            ),
            reassembly_pending: gauge(
                &reg,
                "baton_agent_reassembly_pending",
                "CREATEs being reassembled.",
            ),
            closed: counter_vec(
                &reg,
                "baton_agent_closed_total",
                "Adopted connections ended, by reason.",
                &["reason"],
            ),
            relayed_bytes: counter_vec(
                &reg,
                "baton_agent_relayed_bytes_total",
                "Bytes relayed between clients and the local server, by direction.",
                &["direction"],
            ),
            close_retransmits: counter(
                &reg,
                "baton_agent_close_retransmits_total",
                "CLOSE frames retransmitted.",
            ),
            stale_retired: counter(
                &reg,
                "baton_agent_stale_sockets_retired_total",
                "Sockets of earlier connections ended (SOCK_DESTROY) because they still held the 4-tuple of a CREATE.",
            ),
            handover_refused: counter_vec(
                &reg,
                "baton_agent_handover_refused_total",
                "Handover CREATEs refused, by reason.",
                &["reason"],
            ),
            handover_dropped: counter_vec(
                &reg,
                "baton_agent_handover_dropped_total",
                "Datagrams on the handover socket ignored, and lost socket-destroy notifications, by reason.",
                &["reason"],
            ),
            handover_listeners: gauge(
                &reg,
                "baton_agent_handover_listeners",
                "Server listeners announced on the handover socket.",
            ),
            handover_pending: gauge(
                &reg,
                "baton_agent_handover_pending",
                "Connections offered to a server and not yet accepted.",
            ),
            metrics_refused: counter_vec(
                &reg,
                "baton_agent_metrics_refused_total",
                "Metrics endpoint connections and requests refused, by reason.",
                &["reason"],
            ),
            switch_restarts: counter(
                &reg,
                "baton_agent_switch_restarts_total",
                "Switch restarts seen (a boot other than the one remembered).",
            ),
            resyncs: counter(
                &reg,
                "baton_agent_resyncs_total",
                "Resynchronisations of a switch started (a boot of it not seen before).",
            ),
            resync_flows: counter(
                &reg,
                "baton_agent_resync_flows_total",
                "Flow records sent in resynchronisations.",
            ),
            lookups: {
                let c = counter_vec(
                    &reg,
                    "baton_agent_lookups_total",
                    "LOOKUP records, by result.",
                    &["result"],
                );
                for result in ["found", "unknown"] {
                    c.with_label_values(&[result]);
                }
                c
            },
            holders: gauge(
                &reg,
                "baton_agent_holders",
                "Switches besides the origin that get an open connection's CLOSE, summed over connections.",
            ),
            adopt_seconds,
            registry: reg,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// Serves `/metrics` and `/healthz` as `cfg` says, from a background thread.
    pub fn serve(
        self: &Arc<Self>,
        addr: SocketAddr,
        cfg: &MetricsConfig,
    ) -> std::io::Result<MetricsServer> {
        for r in Refusal::ALL {
            self.metrics_refused.with_label_values(&[r.label()]);
        }
        let allow = if cfg.allow.is_empty() {
            Allow::Any
        } else {
            Allow::Only(cfg.allow.clone())
        };
        let limits = Limits {
            header_timeout: Duration::from_millis(cfg.header_timeout_ms),
            max_connections: cfg.max_connections as usize,
            max_body_bytes: 4096,
            request_timeout: Duration::from_secs(5),
            handler_threads: 1,
            ..Limits::default()
        };
        let server = Server::start(
            "metrics",
            addr,
            allow,
            limits,
            Arc::new(Endpoint(self.clone())),
        )
        .map_err(|e| std::io::Error::other(format!("metrics on {addr}: {e}")))?;
        Ok(MetricsServer { server })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

struct Endpoint(Arc<Metrics>);

impl Handler for Endpoint {
    fn handle(&self, req: Request) -> Response {
        if req.method != Method::GET && req.method != Method::HEAD {
            return Response::new(405, "text/plain", "method not allowed\n");
        }
        match req.path.as_str() {
            "/metrics" => Response::new(200, "text/plain; version=0.0.4", self.0.render()),
            "/healthz" => Response::new(200, "text/plain", "ok\n"),
            _ => Response::new(404, "text/plain", "not found\n"),
        }
    }

    fn refused(&self, why: Refusal) {
        self.0
            .metrics_refused
            .with_label_values(&[why.label()])
            .inc();
    }
}

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    server: Server,
}

impl MetricsServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_exposition() {
        let m = Metrics::new();
        m.refused.with_label_values(&["backlog_full"]).inc();
        m.adopted.with_label_values(&["relay"]).inc_by(3);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("baton_agent_refused_total{reason=\"backlog_full\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("baton_agent_adopted_total{mode=\"relay\"} 3"),
            "{text}"
        );
        assert!(text.contains("baton_agent_build_info{version="), "{text}");
    }
}
