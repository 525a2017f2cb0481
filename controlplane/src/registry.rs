//! The backend registry: every backend the switch knows, its health, its
//! load, and whether it is drained.
//!
//! Ids are stable across reloads for a backend that keeps its name, so
//! counters, active-connection counts and health survive a reload. A backend
//! removed by a reload stays in the registry as `retired` until its
//! connections have closed; it is never chosen again.
//!
//! Health is the conjunction of three things:
//! - active checks: `fall` consecutive failures take a backend down, `rise`
//!   consecutive successes bring it up;
//! - passive signals: `handoff_failures` consecutive THOP NACKs or timeouts
//!   take it down and hold it down for `hold_down`; an agent whose LOAD
//!   reports stop for `load_report_timeout` is taken down;
//! - draining (admin or profile): healthy, but no new requests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use dataplane::dispatch::{BackendId, BackendTarget, HandoffOutcome, LoadReport};

use crate::config::{Check, Health, Profile};

/// Why a backend is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Active checks failed `fall` times; the last failure's text.
    Checks(String),
    /// Consecutive handoff failures.
    HandoffFailures(u32),
    /// The agent's LOAD reports stopped.
    LoadReportsStopped,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Checks(s) => write!(f, "health check failed: {s}"),
            DownReason::HandoffFailures(n) => write!(f, "{n} consecutive handoff failures"),
            DownReason::LoadReportsStopped => f.write_str("LOAD reports stopped"),
        }
    }
}

/// One backend's state.
#[derive(Debug, Clone)]
pub struct BackendState {
    pub id: BackendId,
    pub name: String,
    pub target: BackendTarget,
    /// Where active checks go.
    pub management: IpAddr,
    pub weight: u32,
    pub health_cfg: Health,
    /// Still in the profile (false: removed by a reload, kept until idle).
    pub configured: bool,
    /// Drained by the profile or the admin endpoint.
    pub draining: bool,
    /// `None`: up.
    pub down: Option<DownReason>,
    pub check_successes: u32,
    pub check_failures: u32,
    /// Last active check result text.
    pub last_check: Option<String>,
    pub handoff_failure_streak: u32,
    /// Passive failure: not usable before this instant.
    pub hold_until: Option<Instant>,
    /// Connections handed to it and not yet closed.
    pub active: u32,
    /// Last LOAD report and when it came.
    pub report: Option<(LoadReport, Instant)>,
    /// Connections handed to it since that report.
    pub since_report: u32,
}

impl BackendState {
    /// Chosen for new requests: configured, up, not drained, not held down, weight > 0.
    pub fn usable(&self, now: Instant) -> bool {
        self.configured
            && self.down.is_none()
            && !self.draining
            && self.weight > 0
            && self.hold_until.is_none_or_passed(now)
    }

    /// Health as one word for `/backends` and metrics.
    pub fn status(&self, now: Instant) -> &'static str {
        if !self.configured {
            "retired"
        } else if self.down.is_some() {
            "down"
        } else if self.draining {
            "draining"
        } else if !self.hold_until.is_none_or_passed(now) {
            "held"
        } else {
            "up"
        }
    }
}

trait PassedExt {
    fn is_none_or_passed(&self, now: Instant) -> bool;
}

impl PassedExt for Option<Instant> {
    fn is_none_or_passed(&self, now: Instant) -> bool {
        self.is_none_or(|t| now >= t)
    }
}

/// A transition worth logging and counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    Up { name: String },
    Down { name: String, reason: String },
}

/// All backends.
#[derive(Debug, Default)]
pub struct Registry {
    backends: Vec<BackendState>,
    by_name: HashMap<String, BackendId>,
}

impl Registry {
    /// A registry for a profile (every backend starts up: a dead one is found
    /// by its first failed checks or handoffs, and requests meanwhile are
    /// re-dispatched, never lost).
    pub fn new(p: &Profile) -> Self {
        let mut r = Registry::default();
        r.apply(p);
        r
    }

    /// Applies a (reloaded) profile: new backends are added, known ones keep
    /// their id, health and counts, removed ones are retired.
    pub fn apply(&mut self, p: &Profile) {
        for b in &mut self.backends {
            b.configured = false;
        }
        for cfg in &p.backends {
            let thop = cfg
                .thop
                .unwrap_or_else(|| SocketAddr::from((cfg.address, p.thop.port)));
            let target = BackendTarget {
                id: 0,
                ip: cfg.address,
                mac: cfg.mac.map(|m| m.0),
                thop,
            };
            let health_cfg = cfg.health.clone().unwrap_or_else(|| p.health.clone());
            let management = cfg.management.unwrap_or(cfg.address);
            match self.by_name.get(&cfg.name) {
                Some(&id) => {
                    let b = &mut self.backends[id as usize];
                    b.target = BackendTarget { id, ..target };
                    b.management = management;
                    b.weight = cfg.weight;
                    if b.health_cfg != health_cfg {
                        b.check_successes = 0;
                        b.check_failures = 0;
                    }
                    b.health_cfg = health_cfg;
                    b.configured = true;
                    // The profile's `drain` is applied when it changes, so an
                    // admin drain survives a reload of an unchanged profile.
                    b.draining = cfg.drain || b.draining;
                }
                None => {
                    let id = self.backends.len() as BackendId;
                    self.backends.push(BackendState {
                        id,
                        name: cfg.name.clone(),
                        target: BackendTarget { id, ..target },
                        management,
                        weight: cfg.weight,
                        health_cfg,
                        configured: true,
                        draining: cfg.drain,
                        down: None,
                        check_successes: 0,
                        check_failures: 0,
                        last_check: None,
                        handoff_failure_streak: 0,
                        hold_until: None,
                        active: 0,
                        report: None,
                        since_report: 0,
                    });
                    self.by_name.insert(cfg.name.clone(), id);
                }
            }
        }
    }

    /// Sets the profile's drain flags exactly (used when the profile's `drain` changed).
    pub fn set_drain_from(&mut self, p: &Profile) {
        for cfg in &p.backends {
            if let Some(&id) = self.by_name.get(&cfg.name) {
                self.backends[id as usize].draining = cfg.drain;
            }
        }
    }

    pub fn get(&self, id: BackendId) -> Option<&BackendState> {
        self.backends.get(id as usize)
    }

    pub fn id_of(&self, name: &str) -> Option<BackendId> {
        self.by_name.get(name).copied()
    }

    pub fn all(&self) -> &[BackendState] {
        &self.backends
    }

    /// A request was handed to `id`.
    pub fn on_dispatch(&mut self, id: BackendId) {
        if let Some(b) = self.backends.get_mut(id as usize) {
            b.active = b.active.saturating_add(1);
            b.since_report = b.since_report.saturating_add(1);
        }
    }

    /// A handoff ended; returns a health change if it caused one.
    pub fn on_handoff(
        &mut self,
        id: BackendId,
        outcome: HandoffOutcome,
        now: Instant,
    ) -> Option<HealthChange> {
        let b = self.backends.get_mut(id as usize)?;
        match outcome {
            HandoffOutcome::Acked => {
                b.handoff_failure_streak = 0;
                None
            }
            HandoffOutcome::Aborted => {
                b.active = b.active.saturating_sub(1);
                None
            }
            // A 4-tuple the agent could not take says nothing of the
            // backend's health: another connection would be adopted.
            HandoffOutcome::Nacked(code)
                if code == handoff_proto::NackReason::AddressInUse.to_u16() =>
            {
                b.active = b.active.saturating_sub(1);
                None
            }
            HandoffOutcome::Nacked(_) | HandoffOutcome::TimedOut => {
                b.active = b.active.saturating_sub(1);
                b.handoff_failure_streak += 1;
                let limit = b.health_cfg.passive.handoff_failures;
                if limit > 0 && b.handoff_failure_streak >= limit && b.down.is_none() {
                    b.down = Some(DownReason::HandoffFailures(b.handoff_failure_streak));
                    b.hold_until = Some(now + b.health_cfg.passive.hold_down.0);
                    b.check_successes = 0;
                    return Some(HealthChange::Down {
                        name: b.name.clone(),
                        reason: b.down.as_ref()?.to_string(),
                    });
                }
                None
            }
        }
    }

    /// A FORWARDING connection to `id` ended.
    pub fn on_closed(&mut self, id: BackendId) {
        if let Some(b) = self.backends.get_mut(id as usize) {
            b.active = b.active.saturating_sub(1);
        }
    }

    /// A LOAD report from the agent with node id `sender` (authenticated);
    /// false when no backend's THOP address has that node id. The UDP source
    /// is not used: anyone can send from any port.
    pub fn on_load(&mut self, sender: u32, report: LoadReport, now: Instant) -> bool {
        let id = self
            .backends
            .iter()
            .find(|b| b.configured && handoff_proto::node_id(b.target.thop.ip()) == sender)
            .map(|b| b.id);
        let Some(id) = id else { return false };
        let b = &mut self.backends[id as usize];
        b.report = Some((report, now));
        b.since_report = 0;
        if b.down == Some(DownReason::LoadReportsStopped) {
            b.down = None;
        }
        true
    }

    /// The result of one active check.
    pub fn on_check(
        &mut self,
        id: BackendId,
        result: Result<(), String>,
        now: Instant,
    ) -> Option<HealthChange> {
        let b = self.backends.get_mut(id as usize)?;
        let (rise, fall) = (b.health_cfg.rise, b.health_cfg.fall);
        match result {
            Ok(()) => {
                b.last_check = Some("ok".into());
                b.check_failures = 0;
                b.check_successes = b.check_successes.saturating_add(1);
                let held = !b.hold_until.is_none_or_passed(now);
                if b.down.is_some() && !held && b.check_successes >= rise {
                    b.down = None;
                    b.hold_until = None;
                    b.handoff_failure_streak = 0;
                    return Some(HealthChange::Up {
                        name: b.name.clone(),
                    });
                }
                None
            }
            Err(e) => {
                b.check_successes = 0;
                b.check_failures = b.check_failures.saturating_add(1);
                b.last_check = Some(e.clone());
                if b.down.is_none() && b.check_failures >= fall {
                    b.down = Some(DownReason::Checks(e.clone()));
                    return Some(HealthChange::Down {
                        name: b.name.clone(),
                        reason: format!("health check failed: {e}"),
                    });
                }
                None
            }
        }
    }

    /// Time-driven transitions: hold-down expiry without active checks, LOAD
    /// report silence. Returns the changes.
    pub fn tick(&mut self, now: Instant) -> Vec<HealthChange> {
        let mut out = Vec::new();
        for b in &mut self.backends {
            if !b.configured {
                continue;
            }
            let no_checks = matches!(b.health_cfg.check, Check::None(_));
            if no_checks
                && matches!(b.down, Some(DownReason::HandoffFailures(_)))
                && b.hold_until.is_none_or_passed(now)
            {
                b.down = None;
                b.hold_until = None;
                b.handoff_failure_streak = 0;
                out.push(HealthChange::Up {
                    name: b.name.clone(),
                });
            }
            if let (Some(limit), Some((_, at))) =
                (b.health_cfg.passive.load_report_timeout, b.report)
            {
                if b.down.is_none() && now.saturating_duration_since(at) > limit.0 {
                    b.down = Some(DownReason::LoadReportsStopped);
                    out.push(HealthChange::Down {
                        name: b.name.clone(),
                        reason: DownReason::LoadReportsStopped.to_string(),
                    });
                }
            }
        }
        out
    }

    /// Drains (`true`) or restores (`false`) a backend by name.
    pub fn set_draining(&mut self, name: &str, drain: bool) -> Option<()> {
        let id = self.id_of(name)?;
        self.backends[id as usize].draining = drain;
        Some(())
    }

    /// Age of the last LOAD report.
    pub fn report_age(b: &BackendState, now: Instant) -> Option<Duration> {
        b.report.map(|(_, at)| now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::profile;

    #[test]
    fn rise_and_fall_count_consecutive_results() {
        let p = profile("");
        let mut r = Registry::new(&p);
        let now = Instant::now();
        let id = r.id_of("s1").unwrap();
        let fall = p.health.fall;
        for _ in 0..fall - 1 {
            assert_eq!(r.on_check(id, Err("refused".into()), now), None);
        }
        assert!(r.get(id).unwrap().usable(now));
        assert!(matches!(
            r.on_check(id, Err("refused".into()), now),
            Some(HealthChange::Down { .. })
        ));
        assert!(!r.get(id).unwrap().usable(now));
        for _ in 0..p.health.rise - 1 {
            assert_eq!(r.on_check(id, Ok(()), now), None);
        }
        // A failure in between restarts the count.
        r.on_check(id, Err("x".into()), now);
        for _ in 0..p.health.rise - 1 {
            assert_eq!(r.on_check(id, Ok(()), now), None);
        }
        assert!(matches!(
            r.on_check(id, Ok(()), now),
            Some(HealthChange::Up { .. })
        ));
        assert!(r.get(id).unwrap().usable(now));
    }

    #[test]
    fn a_4_tuple_the_agent_could_not_take_does_not_count_against_health() {
        let p = profile("");
        let mut r = Registry::new(&p);
        let now = Instant::now();
        let id = r.id_of("a1").unwrap();
        let in_use = HandoffOutcome::Nacked(handoff_proto::NackReason::AddressInUse.to_u16());
        for _ in 0..p.health.passive.handoff_failures * 3 {
            r.on_dispatch(id);
            assert_eq!(r.on_handoff(id, in_use, now), None);
        }
        let b = r.get(id).unwrap();
        assert!(b.usable(now));
        assert_eq!(b.active, 0);
    }

    #[test]
    fn consecutive_handoff_failures_take_a_backend_down_and_hold_it() {
        let p = profile("");
        let mut r = Registry::new(&p);
        let now = Instant::now();
        let id = r.id_of("a1").unwrap();
        let n = p.health.passive.handoff_failures;
        for _ in 0..n - 1 {
            r.on_dispatch(id);
            assert_eq!(r.on_handoff(id, HandoffOutcome::Nacked(1), now), None);
        }
        r.on_dispatch(id);
        r.on_handoff(id, HandoffOutcome::Acked, now);
        // The ACK reset the streak.
        for _ in 0..n - 1 {
            r.on_dispatch(id);
            assert_eq!(r.on_handoff(id, HandoffOutcome::TimedOut, now), None);
        }
        r.on_dispatch(id);
        assert!(r.on_handoff(id, HandoffOutcome::TimedOut, now).is_some());
        let b = r.get(id).unwrap();
        assert!(!b.usable(now));
        assert_eq!(b.active, 1, "the acked connection is still active");
        // Checks succeed, but the hold-down keeps it out until it expires.
        for _ in 0..5 {
            assert_eq!(r.on_check(id, Ok(()), now), None);
        }
        let later = now + p.health.passive.hold_down.0 + Duration::from_millis(1);
        assert!(matches!(
            r.on_check(id, Ok(()), later),
            Some(HealthChange::Up { .. })
        ));
    }

    #[test]
    fn load_reports_are_matched_by_sender_node_and_reset_since_report() {
        let p = profile("");
        let mut r = Registry::new(&p);
        let now = Instant::now();
        let id = r.id_of("s1").unwrap();
        r.on_dispatch(id);
        r.on_dispatch(id);
        let rep = LoadReport {
            active: 7,
            adopted_per_sec: 1,
            capacity_hint: 100,
        };
        let node = |a: &str| handoff_proto::node_id(a.parse().unwrap());
        assert!(r.on_load(node("198.18.0.11"), rep, now));
        assert!(!r.on_load(node("198.18.0.99"), rep, now));
        let b = r.get(id).unwrap();
        assert_eq!(
            (b.active, b.since_report, b.report.unwrap().0.active),
            (2, 0, 7)
        );
    }

    #[test]
    fn reload_keeps_ids_and_state_and_retires_removed_backends() {
        let p = profile("");
        let mut r = Registry::new(&p);
        let now = Instant::now();
        let s1 = r.id_of("s1").unwrap();
        r.on_dispatch(s1);
        r.set_draining("a1", true);
        let mut q = p.clone();
        q.backends.retain(|b| b.name != "s1");
        q.backends.push(crate::config::Backend {
            name: "n1".into(),
            address: "198.18.0.20".parse().unwrap(),
            ..p.backends[0].clone()
        });
        r.apply(&q);
        let b = r.get(s1).unwrap();
        assert_eq!((b.configured, b.active), (false, 1));
        assert!(!b.usable(now));
        assert!(
            r.get(r.id_of("a1").unwrap()).unwrap().draining,
            "admin drain survives a reload"
        );
        assert_eq!(r.id_of("n1"), Some(2));
        r.apply(&p);
        assert_eq!(r.id_of("s1"), Some(s1));
        assert!(r.get(s1).unwrap().usable(now));
    }

    #[test]
    fn silent_agents_are_taken_down_and_come_back_with_their_next_report() {
        let mut p = profile("");
        p.health.passive.load_report_timeout = Some(crate::config::DurationStr::secs(3));
        let mut r = Registry::new(&p);
        let t0 = Instant::now();
        let rep = LoadReport {
            active: 1,
            adopted_per_sec: 0,
            capacity_hint: 0,
        };
        // No report yet: never taken down for silence.
        assert!(r.tick(t0 + Duration::from_secs(60)).is_empty());
        let a1 = handoff_proto::node_id("198.18.0.13".parse().unwrap());
        assert!(r.on_load(a1, rep, t0));
        assert!(r.tick(t0 + Duration::from_secs(2)).is_empty());
        let changes = r.tick(t0 + Duration::from_secs(4));
        assert_eq!(changes.len(), 1, "{changes:?}");
        let id = r.id_of("a1").unwrap();
        assert!(!r.get(id).unwrap().usable(t0 + Duration::from_secs(4)));
        r.on_load(a1, rep, t0 + Duration::from_secs(5));
        assert!(r.get(id).unwrap().usable(t0 + Duration::from_secs(5)));
    }
}
