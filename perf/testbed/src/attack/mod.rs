//! Attacks on the namespace test bed, each run while legitimate traffic
//! flows from the other client, so every result says both what the attacker
//! achieved and what the legitimate clients saw.
//!
//! An appliance in front of a web site is attacked all day and restarted now
//! and then: nothing may hang or cut a legitimate connection, and no single
//! client may exhaust a resource. Each module here drives one attack with
//! real packets or real sockets and turns what must hold into named
//! [`Check`]s of an [`Outcome`]. The system tests (`tests/system_adversarial.rs`)
//! run short versions and assert every check; `baton-harden` (`make harden`)
//! runs the full counts and tabulates the same checks (`docs/security.md`).
//!
//! The attacker is client 0 (`c1`), the legitimate traffic comes from client 1
//! (`c2`), and the management-network attacks come from the hub (the only
//! other host on the management bridge).

pub mod admin;
pub mod blind_reset;
pub mod dupack;
pub mod legit;
pub mod packet;
pub mod restart;
pub mod slowloris;
pub mod suite;
pub mod synflood;
pub mod thop;

use crate::client;
use serde::Serialize;
use std::time::Duration;

pub use legit::{Legit, LegitReport, LegitSpec};

/// The attacker's client index (`c1`).
pub const ATTACKER: usize = 0;
/// The legitimate client's index (`c2`).
pub const LEGIT: usize = 1;
/// Required legitimate success rate under every attack.
pub const LEGIT_MIN_SUCCESS: f64 = 0.999;

/// How big an attack is: the system tests' short version or `make harden`'s
/// full one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Size {
    /// A few seconds, small counts (every `make test`).
    Short,
    /// The counts of the threat model (`make harden`).
    Full,
}

/// One property that must hold after an attack.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What must hold, in words.
    pub what: String,
    /// Whether it held.
    pub pass: bool,
    /// The figures behind the verdict.
    pub detail: String,
}

/// The result of one attack run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The attack's name (`syn_flood`, …).
    pub attack: String,
    /// The switch's packet I/O backend.
    pub io: String,
    /// Attack packets, connections or requests sent.
    pub sent: u64,
    /// What the legitimate client saw meanwhile.
    pub legit: LegitReport,
    /// Other figures worth printing (name, value).
    pub figures: Vec<(String, String)>,
    /// The properties checked.
    pub checks: Vec<Check>,
    /// Wall time of the attack phase.
    pub seconds: f64,
}

impl Outcome {
    /// An outcome with nothing measured yet.
    pub fn new(attack: &str, io: crate::baton::BatonIo) -> Outcome {
        Outcome {
            attack: attack.to_string(),
            io: io.as_str().to_string(),
            sent: 0,
            legit: LegitReport::default(),
            figures: Vec::new(),
            checks: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Records a check.
    pub fn check(&mut self, what: impl Into<String>, pass: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            pass,
            detail: detail.into(),
        });
    }

    /// Records a figure.
    pub fn figure(&mut self, name: impl Into<String>, value: impl ToString) {
        self.figures.push((name.into(), value.to_string()));
    }

    /// Records the legitimate traffic's report and the success-rate check.
    pub fn legit(&mut self, r: LegitReport) {
        let rate = r.success_rate();
        self.check(
            format!("legitimate success >= {:.1}%", LEGIT_MIN_SUCCESS * 100.0),
            r.total() > 0 && rate >= LEGIT_MIN_SUCCESS,
            format!(
                "{:.3}% of {} ({} failed, {} hung, {} connect failures){}",
                rate * 100.0,
                r.total(),
                r.failed,
                r.hung,
                r.connect_failed,
                if r.errors.is_empty() {
                    String::new()
                } else {
                    format!("; first errors: {:?}", r.errors)
                }
            ),
        );
        self.legit = r;
    }

    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// Every check and figure, one per line.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} ({}): {} sent in {:.1} s\n",
            self.attack, self.io, self.sent, self.seconds
        );
        for c in &self.checks {
            let v = if c.pass { "ok  " } else { "FAIL" };
            s.push_str(&format!("  [{v}] {}: {}\n", c.what, c.detail));
        }
        for (k, v) in &self.figures {
            s.push_str(&format!("  {k} = {v}\n"));
        }
        s
    }

    /// Panics with the summary unless every check held (the system tests).
    pub fn assert_passed(&self) {
        eprintln!("{}", self.summary());
        assert!(
            self.passed(),
            "attack {} not withstood:\n{}",
            self.attack,
            self.summary()
        );
    }
}

/// Resident set size of a process in KiB (`VmRSS`), None when it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sums the samples of `name` whose label `label` satisfies `keep`.
pub fn metric_sum_where(text: &str, name: &str, label: &str, keep: impl Fn(&str) -> bool) -> f64 {
    let key = format!("{label}=\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lbl) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            let v = lbl.split(',').find_map(|p| p.strip_prefix(key.as_str()))?;
            keep(v.trim_end_matches('}').trim_end_matches('"'))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Every value of a per-worker series, by the `worker` label.
pub fn per_worker(text: &str, name: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let Some((n, lbl)) = series.split_once('{') else {
            continue;
        };
        if n != name {
            continue;
        }
        let Some(w) = lbl
            .trim_end_matches('}')
            .split(',')
            .find_map(|p| p.strip_prefix("worker=\""))
        else {
            continue;
        };
        let w = w.trim_end_matches('"').to_string();
        let v: f64 = value.parse().unwrap_or(0.0);
        match out.iter_mut().find(|(k, _)| *k == w) {
            Some(e) => e.1 += v,
            None => out.push((w, v)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A metric of an agent's `/metrics` (backend `i`), summed over `labels`;
/// None when the agent does not answer.
pub fn agent_metric(hub: &str, i: usize, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = agent_metrics(hub, i)?;
    Some(client::metric_sum(&text, name, labels).unwrap_or(0.0))
}

/// An agent's `/metrics` text, scraped from the hub.
pub fn agent_metrics(hub: &str, i: usize) -> Option<String> {
    let addr = std::net::SocketAddr::from((
        crate::addr::backend_mgmt(i),
        crate::addr::AGENT_METRICS_PORT,
    ));
    crate::netns::in_ns(hub, move || {
        client::get(addr, "/metrics", &[], Duration::from_secs(5)).ok()
    })
    .ok()
    .flatten()
    .map(|r| r.text())
}

/// Raises this process's open-file limit (soft and hard) to at least `n`:
/// root may raise the hard limit, and the attacks hold thousands of sockets.
pub fn ensure_nofile(n: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < n {
            r.rlim_cur = n;
            r.rlim_max = r.rlim_max.max(n);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A deterministic xorshift generator: attacks are reproducible by seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_by_label_predicate() {
        let t = "# x\nbaton_worker_dropped_packets_total{reason=\"thop_invalid\",worker=\"0\"} 5\nbaton_worker_dropped_packets_total{reason=\"thop_stale\",worker=\"1\"} 2\nbaton_worker_dropped_packets_total{reason=\"no_flow\",worker=\"1\"} 9\n";
        let n = metric_sum_where(t, "baton_worker_dropped_packets_total", "reason", |r| {
            r.starts_with("thop")
        });
        assert_eq!(n, 7.0);
        let w = per_worker(t, "baton_worker_dropped_packets_total");
        assert_eq!(w, vec![("0".to_string(), 5.0), ("1".to_string(), 11.0)]);
    }

    #[test]
    fn outcome_fails_on_any_check() {
        let mut o = Outcome::new("x", crate::baton::BatonIo::AfPacket);
        o.check("a", true, "");
        assert!(o.passed());
        o.check("b", false, "why");
        assert!(!o.passed());
        assert!(o.summary().contains("[FAIL] b: why"));
    }
}
