//! The shipped alerting rules (`ops/prometheus/baton-alerts.yml`) and
//! Grafana dashboard (`ops/grafana/baton.json`).
//!
//! An alert on a metric that does not exist never fires, and a dashboard
//! panel on one stays empty: both fail silently in production. So the rules
//! go through `promtool check rules` and their unit tests through
//! `promtool test rules` (each alert fires when it should and stays quiet
//! when it should not), and every metric name, label name and reason value
//! the rules and the dashboard use is looked up in what the switch
//! registers (`Metrics::catalog`, the dataplane's reason lists) and what the
//! agent registers (`agent/src/metrics.rs`). That the queries run and return
//! data against a live switch is `perf/testbed/tests/system_ops.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `promtool ARGS` in `ops/prometheus`; fails with promtool's output.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo().join("ops/prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot be run ({e}): it comes with the Debian package prometheus, \
                 which scripts/install-deps.sh installs"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn promtool_checks_the_rules() {
    let out = promtool(&["check", "rules", "baton-alerts.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let out = promtool(&["test", "rules", "baton-alerts.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert has a `for:`, a severity and the annotations the operator
/// reads; each one has a unit test that expects it to fire.
#[test]
fn every_alert_is_complete_and_tested() {
    let rules: serde_json::Value =
        serde_saphyr::from_str(&read("ops/prometheus/baton-alerts.yml")).expect("rules YAML");
    let tests = read("ops/prometheus/baton-alerts.test.yml");
    let mut names = BTreeSet::new();
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().expect("alerting rules only");
            assert!(names.insert(name), "{name} defined twice");
            assert!(r["for"].as_str().is_some(), "{name}: no for:");
            let sev = r["labels"]["severity"].as_str();
            assert!(
                matches!(sev, Some("critical" | "warning")),
                "{name}: severity {sev:?}"
            );
            for a in ["summary", "description"] {
                assert!(
                    r["annotations"][a].as_str().is_some_and(|s| s.len() > 20),
                    "{name}: annotation {a}"
                );
            }
            // A positive test: the alert named, then expected alerts.
            let fires = Regex::new(&format!(
                r"alertname: {name}\n\s*exp_alerts:\n\s*- exp_labels"
            ))
            .unwrap();
            assert!(fires.is_match(&tests), "{name}: no test where it fires");
        }
    }
    assert!(names.len() >= 8, "{names:?}");
}

/// A metric family's label names.
type Families = BTreeMap<String, BTreeSet<String>>;

/// What the switch registers (every family of its registry, histograms
/// with their `_bucket`, `_sum` and `_count` series).
fn switch_families() -> Families {
    let mut f = Families::new();
    for m in controlplane::metrics::Metrics::new("ops").catalog() {
        let labels: BTreeSet<String> = m.labels.iter().cloned().collect();
        if m.kind == "histogram" {
            let mut b = labels.clone();
            b.insert("le".into());
            f.insert(format!("{}_bucket", m.name), b);
            f.insert(format!("{}_sum", m.name), labels.clone());
            f.insert(format!("{}_count", m.name), labels.clone());
        }
        f.insert(m.name, labels);
    }
    // The build info's labels are constant ones the catalog leaves out.
    f.insert(
        "baton_build_info".into(),
        ["version", "profile", "dpdk"].map(String::from).into(),
    );
    f
}

/// What the agent registers, read from its source (the agent is not a
/// dependency of this crate): each `"baton_agent_…"` name, with the label
/// list that follows it when it has one.
fn agent_families() -> Families {
    let src = read("agent/src/metrics.rs");
    let mut f = Families::new();
    let named = Regex::new(r#""(baton_agent_[a-z0-9_]+)""#).unwrap();
    for c in named.captures_iter(&src) {
        f.entry(c[1].to_string()).or_default();
    }
    let labelled =
        Regex::new(r#""(baton_agent_[a-z0-9_]+)",\s*"(?:[^"\\]|\\.)*",\s*&\[([^\]]*)\]"#).unwrap();
    for c in labelled.captures_iter(&src) {
        let labels = c[2]
            .split(',')
            .map(|l| l.trim().trim_matches('"').to_string())
            .filter(|l| !l.is_empty());
        f.entry(c[1].to_string()).or_default().extend(labels);
    }
    let adopt: BTreeSet<String> = ["le".to_string()].into();
    f.insert("baton_agent_adopt_seconds_bucket".into(), adopt);
    f.insert("baton_agent_adopt_seconds_sum".into(), BTreeSet::new());
    f.insert("baton_agent_adopt_seconds_count".into(), BTreeSet::new());
    f.insert("baton_agent_build_info".into(), ["version".into()].into());
    assert!(
        f.contains_key("baton_agent_thop_tx_total")
            && f["baton_agent_thop_tx_total"].contains("opcode"),
        "agent/src/metrics.rs no longer reads as expected: {f:?}"
    );
    f
}

/// The dataplane's reason values, by the family whose `reason` they are.
fn reasons() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    use dataplane::counters::{AbortReason, CloseReason, DropReason};
    BTreeMap::from([
        (
            "baton_worker_dropped_packets_total",
            DropReason::ALL.iter().map(|r| r.as_str()).collect(),
        ),
        (
            "baton_worker_aborted_connections_total",
            AbortReason::ALL.iter().map(|r| r.as_str()).collect(),
        ),
        (
            "baton_worker_closed_connections_total",
            CloseReason::ALL.iter().map(|r| r.as_str()).collect(),
        ),
    ])
}

/// Every metric, label and reason an expression uses exists; returns the
/// problems found.
fn check_expr(where_: &str, expr: &str, known: &Families) -> Vec<String> {
    let mut bad = Vec::new();
    // Prometheus adds these to every scraped series.
    let target = ["job", "instance"];
    let name = Regex::new(r"\b(baton_[a-z0-9_]+)\b(\s*\{([^}]*)\})?").unwrap();
    let matcher = Regex::new(r#"(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)""#).unwrap();
    let reasons = reasons();
    for c in name.captures_iter(expr) {
        let metric = &c[1];
        let Some(labels) = known.get(metric) else {
            bad.push(format!("{where_}: no metric {metric}"));
            continue;
        };
        let Some(sel) = c.get(3) else { continue };
        for m in matcher.captures_iter(sel.as_str()) {
            let label = &m[1];
            if !labels.contains(label) && !target.contains(&label) {
                bad.push(format!("{where_}: {metric} has no label {label}"));
            }
            if label == "reason" {
                if let Some(valid) = reasons.get(metric) {
                    for v in m[3].split('|').filter(|v| !v.is_empty()) {
                        if !valid.contains(v) {
                            bad.push(format!("{where_}: {metric} has no reason {v:?}"));
                        }
                    }
                }
            }
        }
    }
    bad
}

fn known() -> Families {
    let mut k = switch_families();
    k.extend(agent_families());
    k
}

#[test]
fn alerts_use_only_metrics_that_exist() {
    let known = known();
    let rules: serde_json::Value =
        serde_saphyr::from_str(&read("ops/prometheus/baton-alerts.yml")).expect("rules YAML");
    let mut bad = Vec::new();
    let mut n = 0;
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().unwrap_or("?");
            bad.extend(check_expr(name, r["expr"].as_str().unwrap(), &known));
            n += 1;
        }
    }
    assert!(n > 0);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The dashboard: importable (datasource as the `DS_PROMETHEUS` input,
/// schema 39, distinct panel ids, panels within the 24-column grid) and
/// built on metrics that exist.
#[test]
fn the_dashboard_is_importable_and_uses_real_metrics() {
    let d: serde_json::Value =
        serde_json::from_str(&read("ops/grafana/baton.json")).expect("dashboard JSON");
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let known = known();
    let mut ids = BTreeSet::new();
    let mut bad = Vec::new();
    let mut rows = Vec::new();
    let mut exprs = 0;
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id reused"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: beyond the grid");
        if p["type"] == "row" {
            rows.push(title.to_string());
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let e = t["expr"].as_str().expect("expr");
            bad.extend(check_expr(title, e, &known));
            exprs += 1;
        }
    }
    for v in d["templating"]["list"].as_array().expect("variables") {
        assert_eq!(v["datasource"]["uid"], "${DS_PROMETHEUS}");
        let q = v["query"]["query"].as_str().expect("variable query");
        bad.extend(check_expr("variable", q, &known));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(exprs > 20, "{exprs} queries");
    for r in ["Traffic", "Latency", "Backends", "Workers", "Agents"] {
        assert!(rows.iter().any(|x| x == r), "no row {r}: {rows:?}");
    }
}

#[test]
fn the_expression_check_finds_mistakes() {
    let known = known();
    let expr = r#"rate(baton_worker_dropped_packets_total{reason=~"table_ful|no_flow", pool="x"}[1m]) + baton_nonesuch"#;
    let bad = check_expr("t", expr, &known);
    assert_eq!(bad.len(), 3, "{bad:?}");
}
