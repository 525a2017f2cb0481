//! A real Prometheus on the bed, scraping what an operator's would.
//!
//! The shipped alerting rules (`ops/prometheus/baton-alerts.yml`) and the
//! Grafana dashboard (`ops/grafana/baton.json`) are PromQL over the
//! switch's and the agents' metrics. promtool checks their syntax and the
//! rules' logic on made-up series, but only a Prometheus scraping a switch
//! that carries traffic shows that each query runs on the real exposition
//! and returns the series it is meant to (a label that is never exported, a
//! histogram queried under the wrong name: both parse, and stay empty).
//!
//! So this starts the `prometheus` binary (Debian package `prometheus`) in
//! the hub namespace, where the management bridge is: it listens on
//! 198.19.0.1:9090, scrapes every second the switches' admin `/metrics`
//! (job `baton`, the hub is on their `admin.allow`) and every backend's
//! agent metrics (job `baton-agent`), evaluates the shipped rules, and
//! keeps its storage in the bed's directory. It is a process of the bed
//! like nginx: stopped when dropped, killed with the hub namespace, its
//! data removed with the bed's directory, and its retention capped at an
//! hour.

use crate::error::{BedError, Result};
use crate::process::Proc;
use crate::topology::Bed;
use crate::{addr, client, netns};
use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prometheus's port on the hub's management address.
pub const PORT: u16 = 9090;

/// The scrape (and rule evaluation) interval.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// Scrape job of the switches (the alert rules name it).
pub const SWITCH_JOB: &str = "baton";
/// Scrape job of the agents (the alert rules name it).
pub const AGENT_JOB: &str = "baton-agent";

/// The shipped alerting rules, relative to the workspace root.
pub const ALERT_RULES: &str = "ops/prometheus/baton-alerts.yml";
/// The shipped Grafana dashboard, relative to the workspace root.
pub const DASHBOARD: &str = "ops/grafana/baton.json";

/// Where Prometheus listens: the hub's management address.
pub fn listen() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(addr::HUB_MGMT, PORT))
}

/// One series of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels (`__name__` included when the answer keeps it).
    pub labels: BTreeMap<String, String>,
    /// Its value (NaN and infinities as Prometheus gives them).
    pub value: f64,
}

impl Sample {
    /// The value of label `name` ("" when absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A Prometheus running in the bed's hub namespace.
#[derive(Debug)]
pub struct Prometheus {
    proc: Proc,
    hub: String,
    /// Targets it scrapes: (job, address).
    pub targets: Vec<(&'static str, SocketAddr)>,
}

impl Prometheus {
    /// Starts Prometheus for the bed: every switch's admin endpoint and
    /// every backend's agent metrics, and the shipped alert rules; returns
    /// once it has scraped each target (at most 30 s).
    pub fn start(bed: &Bed) -> Result<Prometheus> {
        let mut targets = Vec::new();
        for i in 0..bed.switches.len() {
            targets.push((SWITCH_JOB, addr::switch_metrics_of(i)));
        }
        for i in 0..bed.backends.len() {
            let a = SocketAddr::V4(SocketAddrV4::new(
                addr::backend_mgmt(i),
                addr::AGENT_METRICS_PORT,
            ));
            targets.push((AGENT_JOB, a));
        }
        Self::start_with(bed, targets)
    }

    /// Starts Prometheus scraping `targets` (job, address).
    pub fn start_with(bed: &Bed, targets: Vec<(&'static str, SocketAddr)>) -> Result<Prometheus> {
        let bin = binary()?;
        let dir = bed.path("prometheus");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| BedError::file(&data, e))?;
        let rules_src = crate::baton::workspace_root().join(ALERT_RULES);
        let rules = dir.join("baton-alerts.yml");
        std::fs::copy(&rules_src, &rules).map_err(|e| BedError::file(&rules_src, e))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text(&targets, &rules))
            .map_err(|e| BedError::file(&config, e))?;
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=1h".into(),
            format!("--web.listen-address={}", listen()),
            "--query.timeout=10s".into(),
            "--log.level=warn".into(),
        ];
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(
            "prometheus",
            bed.hub(),
            &bin.display().to_string(),
            &argv,
            &dir.join("prometheus.log"),
        )?;
        proc.wait_tcp(listen(), Duration::from_secs(30))?;
        let p = Prometheus {
            proc,
            hub: bed.hub().to_string(),
            targets,
        };
        p.wait_until("Prometheus to be ready", Duration::from_secs(30), || {
            Ok(p.get("/-/ready").is_ok_and(|r| r.status == 200))
        })?;
        // Prometheus applies its targets some seconds after it is ready:
        // what happens before the first scrape is not in its counters'
        // rates. Wait until every target has been scraped once (up or not).
        let n = p.targets.len();
        p.wait_until(
            "Prometheus's first scrape of every target",
            Duration::from_secs(30),
            || Ok(p.query("up")?.len() == n),
        )
        .map_err(|e| BedError::Timeout(format!("{e}\nPrometheus log:\n{}", p.log())))?;
        Ok(p)
    }

    /// `http://198.19.0.1:9090`.
    pub fn url(&self) -> String {
        format!("http://{}", listen())
    }

    /// How to reach it from the host (the hub namespace holds the address).
    pub fn hint(&self, promql: &str) -> String {
        format!(
            "ip netns exec {} curl -s '{}/api/v1/query?query={}'",
            self.hub,
            self.url(),
            encode(promql)
        )
    }

    /// The log so far (for failure messages).
    pub fn log(&self) -> String {
        self.proc.log_tail(8000)
    }

    /// One GET on Prometheus's HTTP server, from the hub.
    fn get(&self, path: &str) -> Result<client::Response> {
        let p = path.to_string();
        netns::in_ns(&self.hub, move || {
            client::get(listen(), &p, &[], Duration::from_secs(15))
        })?
        .map_err(|e| BedError::io(format!("GET {path} on Prometheus"), e))
    }

    /// An API call's `data`, or the error Prometheus gave.
    fn api(&self, path: &str) -> Result<serde_json::Value> {
        let r = self.get(path)?;
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| BedError::Parse {
                what: "a Prometheus API answer",
                detail: format!("{e}: HTTP {} {}", r.status, r.text()),
            })?;
        if v["status"] != "success" {
            return Err(BedError::Setup(format!(
                "Prometheus refused {path}: {} {}",
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or("?")
            )));
        }
        Ok(v["data"].clone())
    }

    /// Evaluates `promql` now (`/api/v1/query`); any error Prometheus
    /// reports (syntax, evaluation) is an error here.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .map_err(|e| BedError::Setup(format!("{promql}: {e}")))?;
        let value = |v: &serde_json::Value| -> f64 {
            v.get(1)
                .and_then(|s| s.as_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN)
        };
        Ok(match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| Sample {
                            labels: s["metric"]
                                .as_object()
                                .map(|m| {
                                    m.iter()
                                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").into()))
                                        .collect()
                                })
                                .unwrap_or_default(),
                            value: value(&s["value"]),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Some("scalar") => vec![Sample {
                labels: BTreeMap::new(),
                value: value(&data["result"]),
            }],
            other => {
                return Err(BedError::Parse {
                    what: "a Prometheus query answer",
                    detail: format!("{promql}: result type {other:?}"),
                })
            }
        })
    }

    /// The state of every loaded rule: (name, health, last error).
    pub fn rules(&self) -> Result<Vec<(String, String, String)>> {
        let data = self.api("/api/v1/rules")?;
        let mut out = Vec::new();
        for g in data["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                out.push((
                    r["name"].as_str().unwrap_or("?").to_string(),
                    r["health"].as_str().unwrap_or("?").to_string(),
                    r["lastError"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        Ok(out)
    }

    /// Waits until every target has been scraped successfully at least
    /// `scrapes` times (at most `timeout`).
    pub fn wait_scraped(&self, scrapes: usize, timeout: Duration) -> Result<()> {
        let want = self.targets.len();
        let mut last = String::new();
        let r = self.wait_until("every target scraped", timeout, || {
            let s = self.query("sum_over_time(up[5m])")?;
            last = s
                .iter()
                .map(|x| format!("{} {}", x.label("instance"), x.value))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(s.len() == want && s.iter().all(|x| x.value >= scrapes as f64))
        });
        r.map_err(|e| {
            BedError::Timeout(format!(
                "{e}: {scrapes} successful scrapes of {want} targets; seen {last}\nPrometheus log:\n{}",
                self.log()
            ))
        })
    }

    /// Waits for `n` more scrape intervals (the samples of what just
    /// happened are then stored).
    pub fn settle(&self, n: u32) {
        std::thread::sleep(SCRAPE_INTERVAL * n + Duration::from_millis(300));
    }

    fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond().unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BedError::Timeout(what.to_string()));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The `prometheus` binary on `PATH`.
fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            BedError::Setup(
                "`prometheus` is missing (Debian package prometheus): run scripts/install-deps.sh"
                    .into(),
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The configuration: one-second scrapes and rule evaluations, the two
/// jobs, the rules file.
fn config_text(targets: &[(&'static str, SocketAddr)], rules: &Path) -> String {
    let mut jobs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (job, a) in targets {
        jobs.entry(job).or_default().push(format!("\"{a}\""));
    }
    let mut y = format!(
        "# Generated by the Baton test bed.\n\
         global:\n  scrape_interval: {i}ms\n  scrape_timeout: {t}ms\n  evaluation_interval: {i}ms\n\
         rule_files:\n  - \"{rules}\"\n\
         scrape_configs:\n",
        i = SCRAPE_INTERVAL.as_millis(),
        t = SCRAPE_INTERVAL.as_millis() * 9 / 10,
        rules = rules.display(),
    );
    for (job, addrs) in jobs {
        y.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            addrs.join(", ")
        ));
    }
    y
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved
/// characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Every PromQL expression of the shipped dashboard, with its Grafana
/// variables given values Prometheus takes as they are: `$__rate_interval`
/// becomes `window`, the instance selectors (`$instance`, `$agent`) match
/// everything. Returns (panel title, expression).
pub fn dashboard_queries(window: &str) -> Result<Vec<(String, String)>> {
    let path = crate::baton::workspace_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path).map_err(|e| BedError::file(&path, e))?;
    let d: serde_json::Value = serde_json::from_str(&text).map_err(|e| BedError::Parse {
        what: "the Grafana dashboard",
        detail: e.to_string(),
    })?;
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((title.clone(), grafana_vars(e, window)));
            }
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        // `label_values(metric, label)` is Grafana's: the series behind it.
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split(',').next())
                .unwrap_or(q);
            out.push((format!("variable {}", v["name"]), inner.to_string()));
        }
    }
    Ok(out)
}

fn grafana_vars(e: &str, window: &str) -> String {
    e.replace("$__rate_interval", window)
        .replace("$instance", ".+")
        .replace("$agent", ".+")
}

/// Every alerting rule of the shipped rules file: (alert name, expression).
pub fn alert_queries() -> Result<Vec<(String, String)>> {
    let path = crate::baton::workspace_root().join(ALERT_RULES);
    let text = std::fs::read_to_string(&path).map_err(|e| BedError::file(&path, e))?;
    Ok(alert_exprs(&text))
}

/// The `alert:` names and `expr:` texts of a rules file. A small reader for
/// this one file's layout (`expr: <one line>` or `expr: |` and an indented
/// block), so the bed needs no YAML parser.
fn alert_exprs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name = String::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim_start();
        if let Some(n) = t.strip_prefix("- alert:") {
            name = n.trim().to_string();
        } else if let Some(e) = t.strip_prefix("expr:") {
            let e = e.trim();
            if e == "|" || e == ">" || e == "|-" || e == ">-" {
                let indent = l.len() - t.len();
                let mut block = Vec::new();
                while let Some(next) = lines.peek() {
                    let nt = next.trim_start();
                    if !nt.is_empty() && next.len() - nt.len() <= indent {
                        break;
                    }
                    block.push(nt.to_string());
                    lines.next();
                }
                out.push((name.clone(), block.join("\n").trim().to_string()));
            } else {
                out.push((name.clone(), e.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode(r#"sum by (backend) (rate(x{a="b"}[1m]))"#),
            "sum%20by%20%28backend%29%20%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn the_shipped_files_give_their_queries() {
        let alerts = alert_queries().unwrap();
        assert!(alerts.len() >= 8, "{alerts:?}");
        assert!(alerts.iter().all(|(n, e)| !n.is_empty() && !e.is_empty()));
        // A block expression keeps all its lines.
        let nacks = alerts
            .iter()
            .find(|(n, _)| n == "BatonHandoffNacksHigh")
            .unwrap();
        assert!(
            nacks.1.contains("> 0.05") && nacks.1.contains("> 0.1"),
            "{nacks:?}"
        );
        let dash = dashboard_queries("30s").unwrap();
        assert!(dash.len() > 20);
        assert!(dash.iter().all(|(_, e)| !e.contains('$')), "{dash:?}");
    }

    #[test]
    fn config_names_the_jobs_and_rules() {
        let t = config_text(
            &[
                (SWITCH_JOB, "198.19.0.2:9100".parse().unwrap()),
                (AGENT_JOB, "198.19.0.11:9101".parse().unwrap()),
                (AGENT_JOB, "198.19.0.12:9101".parse().unwrap()),
            ],
            Path::new("/x/rules.yml"),
        );
        assert!(t.contains("scrape_interval: 1000ms"), "{t}");
        assert!(t.contains("job_name: baton\n"), "{t}");
        assert!(
            t.contains("targets: [\"198.19.0.11:9101\", \"198.19.0.12:9101\"]"),
            "{t}"
        );
        assert!(t.contains("- \"/x/rules.yml\""), "{t}");
    }
}
