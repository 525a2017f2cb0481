//! The live status page (`GET /status`) and its data (`GET /status.json`).
//!
//! Operators of HAProxy open its stats page before anything else; this is
//! Baton's: per worker packets, drops by reason and connections by state;
//! per backend health, weight, drain state, active connections, handoffs and
//! NACKs; decisions by rule; handoff latency percentiles. The page is one
//! self-contained HTML document (no external assets: the admin address is
//! on a management network that may have no way out) that polls
//! `status.json` every second and computes rates from successive answers.
//!
//! Every number in `status.json` is read from the same registry `/metrics`
//! renders, in the same scrape step (worker counters copied first), so the
//! page and Prometheus never disagree about what happened; only the
//! control plane's own words about a backend (why it is down, its pools)
//! come from the control loop. Latency percentiles are interpolated within
//! histogram buckets the way Prometheus's `histogram_quantile` does.
//!
//! Drain and undrain buttons POST to the existing admin calls with the
//! bearer token the operator types into the page (kept in the tab's
//! session storage only); the endpoint's token and same-origin checks apply
//! unchanged.

use std::collections::BTreeMap;

use prometheus::proto::{MetricFamily, MetricType};
use serde_json::{json, Map, Value};

/// The page, served as is.
pub const PAGE: &str = include_str!("status.html");

/// What the page may load and do: only its own inline script and style,
/// requests to this endpoint, no framing (a framed drain button could be
/// clicked by another site's page).
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Percentiles reported for each latency histogram.
const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")];

/// One sample of a counter or gauge: its labels and value.
struct Sample<'a> {
    labels: Labels<'a>,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// A metric's labels, as (name, value).
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// Counters and gauges by family name; histograms as cumulative buckets.
struct Families<'a> {
    scalars: BTreeMap<&'a str, Vec<Sample<'a>>>,
    histograms: BTreeMap<&'a str, Vec<(Labels<'a>, Histo)>>,
}

/// A histogram's cumulative buckets (upper bound, count) and its count.
#[derive(Clone, Default)]
struct Histo {
    buckets: Vec<(f64, f64)>,
    count: f64,
    sum: f64,
}

impl Histo {
    fn add(&mut self, other: &Histo) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.iter().map(|&(le, _)| (le, 0.0)).collect();
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// `histogram_quantile(q, …)`: linear interpolation within the bucket
    /// holding the rank; the highest finite bound when it falls beyond.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(le, cum) in &self.buckets {
            if cum >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = cum - lower.1;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * frac);
            }
            lower = (le, cum);
        }
        Some(lower.0)
    }

    fn summary(&self) -> Value {
        let mut m = Map::new();
        m.insert("count".into(), json!(self.count));
        m.insert(
            "mean_ms".into(),
            json!((self.count > 0.0).then(|| self.sum / self.count * 1e3)),
        );
        for (q, name) in QUANTILES {
            m.insert(
                format!("{name}_ms"),
                json!(self.quantile(q).map(|s| s * 1e3)),
            );
        }
        Value::Object(m)
    }
}

impl<'a> Families<'a> {
    fn new(families: &'a [MetricFamily]) -> Families<'a> {
        let mut scalars: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
        let mut histograms: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for f in families {
            for m in f.get_metric() {
                let labels: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                match f.get_field_type() {
                    MetricType::COUNTER => scalars.entry(f.name()).or_default().push(Sample {
                        labels,
                        value: m.get_counter().get_value(),
                    }),
                    MetricType::GAUGE => scalars.entry(f.name()).or_default().push(Sample {
                        labels,
                        value: m.get_gauge().get_value(),
                    }),
                    MetricType::HISTOGRAM => {
                        let h = m.get_histogram();
                        let mut buckets: Vec<(f64, f64)> = h
                            .get_bucket()
                            .iter()
                            .map(|b| (b.upper_bound(), b.cumulative_count() as f64))
                            .collect();
                        if buckets.last().is_none_or(|b| b.0.is_finite()) {
                            buckets.push((f64::INFINITY, h.get_sample_count() as f64));
                        }
                        histograms.entry(f.name()).or_default().push((
                            labels,
                            Histo {
                                buckets,
                                count: h.get_sample_count() as f64,
                                sum: h.get_sample_sum(),
                            },
                        ));
                    }
                    _ => {}
                }
            }
        }
        Families {
            scalars,
            histograms,
        }
    }

    fn samples(&self, name: &str) -> &[Sample<'a>] {
        self.scalars.get(name).map_or(&[], |v| v.as_slice())
    }

    /// `name`'s samples keyed by `key` (e.g. worker), then by `sub` (e.g.
    /// reason), summed over any other label.
    fn by2(&self, name: &str, key: &str, sub: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
        let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for s in self.samples(name) {
            if let (Some(k), Some(v)) = (s.label(key), s.label(sub)) {
                *out.entry(k.to_string())
                    .or_default()
                    .entry(v.to_string())
                    .or_default() += s.value;
            }
        }
        out
    }

    /// `name`'s samples keyed by `key`, summed over any other label.
    fn by(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.samples(name) {
            if let Some(k) = s.label(key) {
                *out.entry(k.to_string()).or_default() += s.value;
            }
        }
        out
    }

    fn total(&self, name: &str) -> f64 {
        self.samples(name).iter().map(|s| s.value).sum()
    }

    /// A histogram summed over every label, and per value of `key`.
    fn histogram(&self, name: &str, key: Option<&str>) -> (Histo, BTreeMap<String, Histo>) {
        let mut all = Histo::default();
        let mut by = BTreeMap::<String, Histo>::new();
        for (labels, h) in self.histograms.get(name).into_iter().flatten() {
            all.add(h);
            if let Some(k) = key.and_then(|k| labels.iter().find(|(n, _)| *n == k)) {
                by.entry(k.1.to_string()).or_default().add(h);
            }
        }
        (all, by)
    }
}

/// Per worker counters copied into the page, by their short name.
const WORKER_COUNTERS: [(&str, &str); 6] = [
    ("received_packets", "baton_worker_received_packets_total"),
    ("sent_packets", "baton_worker_sent_packets_total"),
    ("received_bytes", "baton_worker_received_bytes_total"),
    ("sent_bytes", "baton_worker_sent_bytes_total"),
    ("new_connections", "baton_worker_new_connections_total"),
    ("thop_retransmits", "baton_worker_thop_retransmits_total"),
];

/// Per backend gauges copied into the page, by their short name.
const BACKEND_GAUGES: [(&str, &str); 5] = [
    ("up", "baton_backend_up"),
    ("draining", "baton_backend_draining"),
    ("weight", "baton_backend_weight"),
    ("active_connections", "baton_backend_active_connections"),
    ("reported_connections", "baton_backend_reported_connections"),
];

fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn nums(m: BTreeMap<String, f64>) -> Value {
    Value::Object(m.into_iter().map(|(k, v)| (k, num(v))).collect())
}

/// The page's data. `switch` describes the process (profile, generation,
/// version, state); `view` is the control loop's answer to `/backends`
/// (status words, pools), `None` when it did not answer in time.
pub fn status_json(families: &[MetricFamily], switch: Value, view: Option<&Value>) -> Value {
    let f = Families::new(families);

    let mut workers: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    fn worker<'m>(
        all: &'m mut BTreeMap<u64, Map<String, Value>>,
        w: &str,
    ) -> Option<&'m mut Map<String, Value>> {
        let id = w.parse::<u64>().ok()?;
        Some(all.entry(id).or_insert_with(|| {
            let mut m = Map::new();
            m.insert("worker".into(), json!(id));
            m
        }))
    }
    for (short, name) in WORKER_COUNTERS {
        for (w, v) in f.by(name, "worker") {
            if let Some(m) = worker(&mut workers, &w) {
                m.insert(short.into(), num(v));
            }
        }
    }
    for (short, name, sub) in [
        ("drops", "baton_worker_dropped_packets_total", "reason"),
        ("connections", "baton_worker_connections", "state"),
        ("handoffs", "baton_worker_handoffs_total", "outcome"),
    ] {
        for (w, by) in f.by2(name, "worker", sub) {
            if let Some(m) = worker(&mut workers, &w) {
                m.insert(short.into(), nums(by));
            }
        }
    }

    let mut backends: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (short, name) in BACKEND_GAUGES {
        for (b, v) in f.by(name, "backend") {
            backends.entry(b).or_default().insert(short.into(), num(v));
        }
    }
    for (b, by) in f.by2("baton_handoffs_total", "backend", "outcome") {
        let e = backends.entry(b).or_default();
        e.insert(
            "nacks".into(),
            num(by.get("nacked").copied().unwrap_or(0.0)),
        );
        e.insert("handoffs".into(), nums(by));
    }
    for (b, v) in f.by("baton_dispatch_decisions_total", "backend") {
        backends
            .entry(b)
            .or_default()
            .insert("requests".into(), num(v));
    }
    let (handoff_all, handoff_by) = f.histogram("baton_handoff_latency_seconds", Some("backend"));
    for (b, h) in &handoff_by {
        backends
            .entry(b.clone())
            .or_default()
            .insert("handoff_latency".into(), h.summary());
    }
    // The control loop's own words: status, why down, pools, address.
    if let Some(list) = view
        .and_then(|v| v.get("backends"))
        .and_then(Value::as_array)
    {
        for b in list {
            let Some(name) = b.get("name").and_then(Value::as_str) else {
                continue;
            };
            let e = backends.entry(name.to_string()).or_default();
            for k in ["status", "down_reason", "address", "pools", "report_age_ms"] {
                if let Some(v) = b.get(k) {
                    e.insert(k.into(), v.clone());
                }
            }
        }
    }
    let backends: Vec<Value> = backends
        .into_iter()
        .map(|(name, mut m)| {
            m.insert("name".into(), json!(name));
            Value::Object(m)
        })
        .collect();

    let rules: Vec<Value> = f
        .samples("baton_dispatch_rule_matches_total")
        .iter()
        .map(|s| {
            json!({
                "service": s.label("service").unwrap_or(""),
                "rule": s.label("rule").unwrap_or(""),
                "requests": num(s.value),
            })
        })
        .collect();
    let (decision, _) = f.histogram("baton_dispatch_decision_seconds", None);

    json!({
        "switch": switch,
        "totals": {
            "received_packets": num(f.total("baton_worker_received_packets_total")),
            "sent_packets": num(f.total("baton_worker_sent_packets_total")),
            "new_connections": num(f.total("baton_worker_new_connections_total")),
            "dropped_packets": num(f.total("baton_worker_dropped_packets_total")),
            "requests": num(f.total("baton_dispatch_decisions_total")),
            "rejections": num(f.total("baton_dispatch_rejections_total")),
        },
        "workers": workers.into_values().map(Value::Object).collect::<Vec<_>>(),
        "backends": backends,
        "rules": rules,
        "decisions_by_place": nums(f.by("baton_dispatch_decision_place_total", "place")),
        "handoff_latency": handoff_all.summary(),
        "decision_latency": decision.summary(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histo(bounds: &[(f64, f64)]) -> Histo {
        Histo {
            buckets: bounds.to_vec(),
            count: bounds.last().map_or(0.0, |b| b.1),
            sum: 0.0,
        }
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        // 10 observations: 4 ≤ 1 ms, 4 in (1, 2] ms, 2 in (2, 4] ms.
        let h = histo(&[
            (0.001, 4.0),
            (0.002, 8.0),
            (0.004, 10.0),
            (f64::INFINITY, 10.0),
        ]);
        assert_eq!(h.quantile(0.5), Some(0.00125));
        assert!((h.quantile(0.9).unwrap() - 0.003).abs() < 1e-12);
        assert_eq!(
            histo(&[(0.001, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5),
            None
        );
        // Beyond the last finite bound: that bound.
        let beyond = histo(&[(0.001, 1.0), (f64::INFINITY, 10.0)]);
        assert_eq!(beyond.quantile(0.99), Some(0.001));
    }
}
