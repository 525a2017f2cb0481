//! `make demo`: the whole system on one machine, shown with real traffic.
//!
//! Brings the bed up (two clients, the switch, three backends: two stock
//! nginx to which `baton-agent` hands each connection's socket, one running
//! the agent's listener example),
//! starts Baton, sends curl requests of several URL classes, HTTPS requests
//! routed by server name and ALPN, and two bounded wrk runs, and reports what happened: requests sent / ok / failed, where
//! each rule's requests went, handoff latency from the switch's histogram,
//! and the bytes the switch transmitted against the bytes the clients
//! received (responses bypass the switch). A Prometheus on the bed scrapes
//! the switch and the agents meanwhile (the shipped alert rules loaded), and
//! the demo shows its address and one answer from it: handoffs per second
//! by backend. Prometheus is a view, not the demo's subject: when it does
//! not start, the demo says so and runs on, succeeding or failing on its
//! traffic alone.

use crate::baton::{self, BatonIo, Stack, SwitchOptions};
use crate::error::Result;
use crate::netns::IfCounters;
use crate::prometheus::Prometheus;
use crate::tls::{self, HttpVersion, HttpsGet};
use crate::topology::{Bed, BedSpec};
use crate::wrk::WrkRun;
use crate::{addr, curl, nginx, promtext};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A class of URLs and the routing rule of configs/testbed.yaml it exercises.
#[derive(Debug, Clone, Copy)]
pub struct UrlClass {
    /// The rule (or `default`).
    pub rule: &'static str,
    /// Paths of the class.
    pub paths: &'static [&'static str],
}

/// The URL classes the demo sends.
pub const CLASSES: [UrlClass; 4] = [
    UrlClass {
        rule: "static-by-prefix",
        paths: &[
            "/static/1k.bin",
            "/static/100k.bin",
            "/static/img/7.svg",
            "/static/1m.bin",
        ],
    },
    UrlClass {
        rule: "static-by-extension",
        paths: &["/index.html", "/page/index.html"],
    },
    UrlClass {
        rule: "api",
        paths: &["/api/items", "/api/users/42"],
    },
    UrlClass {
        rule: "default",
        paths: &["/", "/healthz"],
    },
];

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Packet I/O of the switch.
    pub io: BatonIo,
    /// Rounds of curl requests per class and client.
    pub rounds: usize,
    /// Duration of each wrk run.
    pub wrk_duration: Duration,
    /// Keep the bed up after the traffic until Ctrl-C.
    pub hold: bool,
}

/// p50 and p99 in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// The summary written to `target/demo/summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub io: String,
    pub requests_sent: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Responses per backend (from `X-Backend`, curl requests).
    pub per_backend: BTreeMap<String, u64>,
    /// Responses per routing rule and backend (curl requests).
    pub per_rule: BTreeMap<String, BTreeMap<String, u64>>,
    /// The switch's own count of decisions by pool and backend (all traffic,
    /// wrk included), from `baton_dispatch_decisions_total`.
    pub decisions_by_pool: BTreeMap<String, BTreeMap<String, u64>>,
    /// Handoff latency (header complete → THOP ACK) from the switch's histogram.
    pub handoff_latency_us: Percentiles,
    /// Bytes the switch transmitted on its data port during the traffic.
    pub switch_tx_bytes: u64,
    /// Bytes the switch received on its data port.
    pub switch_rx_bytes: u64,
    /// Bytes the clients received.
    pub client_rx_bytes: u64,
    /// The wrk runs.
    pub wrk: Vec<WrkSummary>,
    /// Where the metrics were while it ran.
    pub metrics_url: String,
    /// How to reach it from the host.
    pub metrics_hint: String,
    /// The bed's Prometheus while it ran ("" when it did not start).
    pub prometheus_url: String,
    /// Why there was no Prometheus answer ("" when there was one).
    pub prometheus_note: String,
    /// The PromQL behind [`Summary::handoffs_per_second`].
    pub handoffs_query: String,
    /// Prometheus's answer to it: handoffs per second by backend over the
    /// last minute, after the traffic.
    pub handoffs_per_second: BTreeMap<String, f64>,
}

/// One wrk run of the demo.
#[derive(Debug, Clone, Serialize)]
pub struct WrkSummary {
    pub url: String,
    pub connection: String,
    pub requests: u64,
    pub failed: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

fn sum_rx(bed: &Bed) -> u64 {
    bed.clients
        .iter()
        .filter_map(|c| c.data_counters().ok())
        .map(|c| c.rx_bytes)
        .sum()
}

/// Runs the demo; prints progress to stderr and returns the summary.
pub fn run(opts: &DemoOptions) -> Result<Summary> {
    let bed = Bed::up(&BedSpec::default())?;
    eprintln!(
        "demo: test bed {} up: 2 clients, switch, 3 backends",
        bed.id()
    );
    let _nginx = nginx::start_all(&bed)?;
    let mut sw = SwitchOptions::testbed(opts.io);
    sw.workers = Some(1);
    let stack = Stack::start(&bed, &sw)?;
    baton::wait_serving(
        &bed,
        &addr::vip_service(),
        "/static/1k.bin",
        Duration::from_secs(20),
    )?;
    let mut s = Summary {
        io: opts.io.as_str().into(),
        metrics_url: format!("http://{}/metrics", addr::switch_metrics()),
        metrics_hint: format!(
            "ip netns exec {} curl -s http://{}/metrics",
            bed.hub(),
            addr::switch_metrics()
        ),
        ..Summary::default()
    };
    eprintln!(
        "demo: baton is up; metrics at {}  (from the host: {})",
        s.metrics_url, s.metrics_hint
    );
    let prom = match Prometheus::start(&bed) {
        Ok(p) => {
            s.prometheus_url = p.url();
            eprintln!(
                "demo: Prometheus scrapes the switch and the agents at {}",
                p.url()
            );
            Some(p)
        }
        Err(e) => {
            s.prometheus_note = format!("Prometheus did not start: {e}");
            eprintln!("demo: {}; going on without it", s.prometheus_note);
            None
        }
    };

    let swh = bed.switch()?;
    let sw0: IfCounters = swh.data_counters()?;
    let rx0 = sum_rx(&bed);

    for class in CLASSES {
        let urls: Vec<String> = (0..opts.rounds)
            .flat_map(|_| {
                class
                    .paths
                    .iter()
                    .map(|p| format!("http://{}{p}", addr::vip_service()))
            })
            .collect();
        for c in &bed.clients {
            for t in curl::fetch_all(&c.ns, &urls)? {
                s.requests_sent += 1;
                if t.ok() {
                    s.requests_ok += 1;
                    let who = if t.backend.is_empty() {
                        "(no X-Backend)".to_string()
                    } else {
                        t.backend.clone()
                    };
                    *s.per_backend.entry(who.clone()).or_default() += 1;
                    *s.per_rule
                        .entry(class.rule.into())
                        .or_default()
                        .entry(who)
                        .or_default() += 1;
                } else {
                    s.requests_failed += 1;
                }
            }
        }
        eprintln!("demo: curl {:<20} done", class.rule);
    }
    // HTTPS on the VIP's :443: the switch routes each ClientHello by its
    // server name and ALPN; the backend's nginx terminates TLS.
    let https = [
        (
            "https tls-static",
            HttpsGet::new(tls::STATIC, "/static/1k.bin"),
        ),
        ("https tls-app", HttpsGet::new(tls::APP, "/index.html")),
        (
            "https tls-www-h2",
            HttpsGet::new(tls::WWW, "/static/100k.bin").http(HttpVersion::H2),
        ),
        (
            "https tls-www-http1",
            HttpsGet::new(tls::WWW, "/static/100k.bin").http(HttpVersion::Http11),
        ),
        ("https default", HttpsGet::no_sni("/")),
    ];
    for (rule, req) in &https {
        for c in &bed.clients {
            for _ in 0..opts.rounds {
                let t = tls::curl(&bed, &c.ns, req)?;
                s.requests_sent += 1;
                if t.ok() {
                    s.requests_ok += 1;
                    let who = if t.backend.is_empty() {
                        "(no X-Backend)".to_string()
                    } else {
                        t.backend.clone()
                    };
                    *s.per_backend.entry(who.clone()).or_default() += 1;
                    *s.per_rule
                        .entry((*rule).into())
                        .or_default()
                        .entry(who)
                        .or_default() += 1;
                } else {
                    s.requests_failed += 1;
                }
            }
        }
    }
    eprintln!("demo: curl https (SNI and ALPN rules) done");
    for (client, path, close) in [(0, "/static/100k.bin", false), (1, "/api/items", true)] {
        let url = format!("http://{}{path}", addr::vip_service());
        let mut w = WrkRun::new(&url, 16, opts.wrk_duration);
        w.close = close;
        let r = w.run_in(&bed.clients[client].ns)?;
        s.requests_sent += r.requests;
        s.requests_ok += r.requests.saturating_sub(r.failures());
        s.requests_failed += r.failures();
        eprintln!(
            "demo: wrk {url} ({}): {:.0} req/s, {} failed",
            if close {
                "new connection each"
            } else {
                "keep-alive"
            },
            r.rps,
            r.failures()
        );
        s.wrk.push(WrkSummary {
            url,
            connection: if close {
                "new conn".into()
            } else {
                "keep-alive".into()
            },
            requests: r.requests,
            failed: r.failures(),
            rps: r.rps,
            p50_us: r.p50_us,
            p99_us: r.p99_us,
        });
    }
    let d = swh.data_counters()?.since(&sw0);
    s.switch_tx_bytes = d.tx_bytes;
    s.switch_rx_bytes = d.rx_bytes;
    s.client_rx_bytes = sum_rx(&bed).saturating_sub(rx0);
    if let Ok(text) = stack.metrics() {
        for (labels, v) in promtext::series(&text, "baton_dispatch_decisions_total") {
            let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if let (Some(pool), Some(backend)) = (get("pool"), get("backend")) {
                *s.decisions_by_pool
                    .entry(pool)
                    .or_default()
                    .entry(backend)
                    .or_default() += v as u64;
            }
        }
        let b = promtext::buckets(&text, HANDOFF_HISTOGRAM, &[]);
        s.handoff_latency_us = Percentiles {
            p50: promtext::quantile(&b, 0.5).map(|v| v * 1e6),
            p99: promtext::quantile(&b, 0.99).map(|v| v * 1e6),
        };
    }
    if let Some(p) = &prom {
        handoffs_from_prometheus(p, &mut s);
    }
    if opts.hold {
        eprintln!("demo: holding the bed up; Ctrl-C removes it");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(s)
}

/// The switch's handoff latency histogram (docs/metrics.md).
pub const HANDOFF_HISTOGRAM: &str = "baton_handoff_latency_seconds";

/// The demo's question to Prometheus (the dashboard's "Handoffs/s by
/// backend", over the last minute).
pub const HANDOFFS_QUERY: &str =
    r#"sum by (backend) (rate(baton_handoffs_total{outcome="acked"}[1m]))"#;

/// Asks Prometheus for handoffs per second by backend (after two more
/// scrapes, so the end of the traffic is in) and prints the answer, with
/// how to ask it from the host; a failure is a note, not an error.
fn handoffs_from_prometheus(p: &Prometheus, s: &mut Summary) {
    p.settle(2);
    s.handoffs_query = HANDOFFS_QUERY.into();
    match p.query(HANDOFFS_QUERY) {
        Ok(samples) => {
            for x in samples {
                s.handoffs_per_second
                    .insert(x.label("backend").to_string(), x.value);
            }
            eprintln!("demo: Prometheus at {}: {HANDOFFS_QUERY}", p.url());
            for (b, v) in &s.handoffs_per_second {
                eprintln!("demo:   {b:<12} {v:.2} handoffs/s");
            }
            eprintln!("demo: (from the host: {})", p.hint(HANDOFFS_QUERY));
        }
        Err(e) => {
            s.prometheus_note = format!("Prometheus did not answer: {e}");
            eprintln!("demo: {}", s.prometheus_note);
        }
    }
}

fn fmt_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The human summary.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    o.push_str(&format!("\nBaton demo ({})\n", s.io));
    o.push_str(&format!(
        "  requests   sent {}   ok {}   failed {}\n",
        s.requests_sent, s.requests_ok, s.requests_failed
    ));
    o.push_str(
        "  routing (curl, one connection per request; each backend names itself in X-Backend)\n",
    );
    for (rule, m) in &s.per_rule {
        let parts: Vec<String> = m.iter().map(|(b, n)| format!("{b}: {n}")).collect();
        o.push_str(&format!("    {rule:<20} {}\n", parts.join("  ")));
    }
    if !s.decisions_by_pool.is_empty() {
        o.push_str("  switch decisions by pool (one per connection, wrk included; baton_dispatch_decisions_total)\n");
        for (pool, m) in &s.decisions_by_pool {
            let parts: Vec<String> = m.iter().map(|(b, n)| format!("{b}: {n}")).collect();
            o.push_str(&format!("    {pool:<20} {}\n", parts.join("  ")));
        }
    }
    for w in &s.wrk {
        o.push_str(&format!(
            "  wrk {} ({}): {} requests, {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, failed {}\n",
            w.url, w.connection, w.requests, w.rps, w.p50_us, w.p99_us, w.failed
        ));
    }
    let lat = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.0} µs"));
    o.push_str(&format!(
        "  handoff latency (request complete → THOP ACK)   p50 {}   p99 {}\n",
        lat(s.handoff_latency_us.p50),
        lat(s.handoff_latency_us.p99)
    ));
    let pct = if s.client_rx_bytes > 0 {
        s.switch_tx_bytes as f64 / s.client_rx_bytes as f64 * 100.0
    } else {
        0.0
    };
    o.push_str(&format!(
        "  bytes      switch transmitted {}   clients received {}   ({pct:.2}%: responses bypass the switch)\n",
        fmt_bytes(s.switch_tx_bytes),
        fmt_bytes(s.client_rx_bytes)
    ));
    o.push_str(&format!(
        "  metrics    {} (while it ran; {})\n",
        s.metrics_url, s.metrics_hint
    ));
    if !s.handoffs_per_second.is_empty() {
        let parts: Vec<String> = s
            .handoffs_per_second
            .iter()
            .map(|(b, v)| format!("{b}: {v:.2}"))
            .collect();
        o.push_str(&format!(
            "  prometheus {} (while it ran): handoffs/s by backend over the last minute  {}\n",
            s.prometheus_url,
            parts.join("  ")
        ));
    }
    if !s.prometheus_note.is_empty() {
        o.push_str(&format!("  prometheus {}\n", s.prometheus_note));
    }
    o
}
