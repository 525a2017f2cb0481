//! The control-plane thread: answers every worker's dispatch requests, keeps
//! the backend registry current from worker events and health checks, and
//! applies reloads and admin commands, all from one loop that owns the state
//! (no locks around routing or policies).
//!
//! Workers are never blocked by it: they `try_send` on bounded queues and go
//! on; the loop answers with `try_send` too, and a decision for a worker whose
//! queue is momentarily full is kept and retried rather than waited on.
//!
//! A reload swaps routing, pools, policies and backends between two requests:
//! a request is decided wholly by the old or wholly by the new profile, no
//! connection is touched, and counters (in [`Metrics`]) and backend state (in
//! the [`Registry`]) carry over.
//!
//! Requests for stateless pools are decided on the workers (see
//! [`crate::local`]): the loop publishes a routing [`Snapshot`] after every
//! change a stateless pick depends on and takes the workers'
//! `WorkerEvent::Decided` reports as if it had decided itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver, Sender};
use dataplane::dispatch::{
    BackendId, ControlQueues, Decision, DispatchRequest, HandoffOutcome, LocalDecider, Verdict,
    WorkerCommand, WorkerEvent,
};
use serde_json::json;

use crate::config::{Policy as PolicyConfig, Profile};
use crate::health::{CheckResult, Checker};
use crate::local::{LocalMode, PoolSnap, Snapshot, WorkerDecider};
use crate::metrics::Metrics;
use crate::policy::{self, DispatchPolicy, MemberView, PickCtx};
use crate::registry::{HealthChange, Registry};
use crate::request::Request;
use crate::routing::Router;

/// Monotonic nanoseconds on the workers' clock (for decision time).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the admin endpoint and signal handlers ask of the loop.
pub enum AdminRequest {
    /// Swap in a validated profile; replies with the new generation and the
    /// sections that only take effect after a restart.
    Reload {
        profile: Box<Profile>,
        reply: Sender<Result<ReloadOutcome, String>>,
    },
    /// Drain (`true`) or restore a backend by name.
    Drain {
        backend: String,
        drain: bool,
        reply: Sender<Result<(), String>>,
    },
    /// A JSON view of backends and pools.
    Backends { reply: Sender<serde_json::Value> },
    /// Withdraw (`true`) or announce again the VIPs of this switch
    /// (`cluster.announce`); it keeps serving what reaches it.
    SwitchDrain {
        drain: bool,
        reply: Sender<Result<(), String>>,
    },
}

/// Result of a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub generation: u64,
    /// Sections that changed but are fixed at start-up (I/O, workers, services…).
    pub restart_required: Vec<&'static str>,
}

struct PoolRt {
    name: String,
    members: Vec<BackendId>,
    names: Vec<String>,
    policy_cfg: PolicyConfig,
    policy: Box<dyn DispatchPolicy>,
    unavailable_status: u16,
    /// `baton_dispatch_decisions_total{pool, backend}` per member, looked up
    /// once so a decision does not hash label strings.
    decided: Vec<prometheus::IntCounter>,
    /// `baton_dispatch_rejections_total{pool, reason="no_backend"}`.
    rejected: prometheus::IntCounter,
}

/// The loop's state.
pub struct ControlPlane {
    profile: Arc<Profile>,
    router: Arc<Router>,
    /// `baton_dispatch_rule_matches_total` per service, per rule, the
    /// default pool last.
    rule_hits: Vec<Vec<prometheus::IntCounter>>,
    pools: Vec<PoolRt>,
    registry: Registry,
    checkers: HashMap<BackendId, Checker>,
    check_epoch: u64,
    check_tx: Sender<CheckResult>,
    check_rx: Receiver<CheckResult>,
    generation: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    clock: Clock,
    deferred: Vec<Decision>,
    access_seq: u64,
    members_buf: Vec<MemberView>,
    /// `tuning.local_decisions`: publish snapshots and hand out deciders.
    local: bool,
    /// Generation of the current routing snapshot (read by every decider).
    routing_gen: Arc<AtomicU64>,
    /// The current snapshot (None until first built or after a change).
    snapshot: Option<Arc<Snapshot>>,
    /// Replaced snapshots a worker may still hold; freed here once none does.
    retired: Vec<Arc<Snapshot>>,
    /// (usable, weight) per backend when the snapshot was built.
    snapshot_fp: Vec<(bool, u32)>,
    /// A reload since the snapshot was built.
    routing_changed: bool,
    /// Workers whose command queue was full when the snapshot went out.
    unsent: Vec<usize>,
    /// Header buffers from sampled local decisions, to hand back.
    recycle: Vec<(u16, Vec<u8>)>,
    /// Workers that have not been sent the current agent list (flow
    /// recovery); all of them at start and after a reload.
    agents_unsent: Vec<usize>,
    /// Announces the VIPs to the routers (`cluster.announce`).
    announcer: Option<Arc<crate::announce::Announcer>>,
    /// The operator withdrew this switch (`POST /drain`).
    switch_drained: bool,
    /// `baton_dispatch_decision_place_total{place}`: worker, control.
    place_worker: prometheus::IntCounter,
    place_control: prometheus::IntCounter,
}

/// The members of a pool as a policy sees them now (shared by the control
/// plane's decide and the routing snapshot, so both see the same view).
fn member_views(
    registry: &Registry,
    members: &[BackendId],
    exclude: &[BackendId],
    now: Instant,
    out: &mut Vec<MemberView>,
) {
    out.clear();
    for &id in members {
        let Some(b) = registry.get(id) else {
            continue;
        };
        let ok = b.usable(now);
        let excluded = exclude.contains(&id);
        out.push(MemberView {
            id,
            weight: b.weight,
            active: b.active,
            report: b
                .report
                .map(|(r, at)| (r.active, now.saturating_duration_since(at))),
            since_report: b.since_report,
            usable: ok && !excluded,
            excluded: ok && excluded,
        });
    }
}

impl ControlPlane {
    /// State for a validated profile (generation 1). Health checkers start now.
    pub fn new(profile: Profile, metrics: Arc<Metrics>, clock: Clock) -> Result<Self, String> {
        let router = Arc::new(Router::new(&profile).map_err(|e| e.to_string())?);
        let registry = Registry::new(&profile);
        let (check_tx, check_rx) = crossbeam_channel::bounded(1024);
        let place_worker = metrics.decision_place.with_label_values(&["worker"]);
        let place_control = metrics.decision_place.with_label_values(&["control"]);
        let mut cp = ControlPlane {
            pools: Vec::new(),
            rule_hits: rule_counters(&metrics, &profile),
            router,
            registry,
            checkers: HashMap::new(),
            check_epoch: 0,
            check_tx,
            check_rx,
            generation: Arc::new(AtomicU64::new(1)),
            metrics,
            clock,
            deferred: Vec::new(),
            access_seq: 0,
            members_buf: Vec::new(),
            local: profile.tuning.local_decisions,
            routing_gen: Arc::new(AtomicU64::new(0)),
            snapshot: None,
            retired: Vec::new(),
            snapshot_fp: Vec::new(),
            routing_changed: false,
            unsent: Vec::new(),
            recycle: Vec::new(),
            agents_unsent: vec![usize::MAX],
            announcer: None,
            switch_drained: false,
            place_worker,
            place_control,
            profile: Arc::new(profile),
        };
        cp.pools = cp.build_pools(Vec::new());
        cp.sync_checkers();
        cp.metrics.config_generation.set(1);
        cp.metrics.last_reload_success.set(Metrics::unix_now());
        cp.export_backends(Instant::now());
        Ok(cp)
    }

    /// Announce the VIPs through `a` while this switch is healthy (some
    /// backend usable) and not drained.
    pub fn set_announcer(&mut self, a: Arc<crate::announce::Announcer>) {
        self.announcer = Some(a);
    }

    /// States to the announcer whether the VIPs should be announced now.
    fn announce(&self, now: Instant) {
        if let Some(a) = &self.announcer {
            let healthy = self.registry.all().iter().any(|b| b.usable(now));
            a.want(healthy && !self.switch_drained);
        }
    }

    /// The generation counter (shared with the admin endpoint).
    pub fn generation(&self) -> Arc<AtomicU64> {
        self.generation.clone()
    }

    /// The running profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The metrics this loop counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The registry (for tests and views).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One decider per worker, in worker order; empty when
    /// `tuning.local_decisions` is off (every request then takes the queue).
    pub fn local_deciders(&self, workers: usize) -> Vec<Box<dyn LocalDecider>> {
        if !self.local {
            return Vec::new();
        }
        (0..workers)
            .map(|_| Box::new(self.decider()) as Box<dyn LocalDecider>)
            .collect()
    }

    /// A decider that follows this control plane's snapshots (tests,
    /// benches; `install_snapshot` it with [`ControlPlane::routing_snapshot`]).
    pub fn decider(&self) -> WorkerDecider {
        WorkerDecider::new(self.routing_gen.clone())
    }

    /// The current routing snapshot, built first when something it depends
    /// on changed since (the generation then goes up: workers holding an
    /// older one send their requests to the queue until they get this one).
    pub fn routing_snapshot(&mut self) -> Arc<Snapshot> {
        let now = Instant::now();
        if let Some(s) = &self.snapshot {
            if !self.routing_changed && !self.usable_changed(now) {
                return s.clone();
            }
        }
        self.routing_changed = false;
        self.snapshot_fp.clear();
        for b in self.registry.all() {
            self.snapshot_fp.push((b.usable(now), b.weight));
        }
        let mut members = Vec::new();
        let pools = self
            .pools
            .iter()
            .map(|p| {
                member_views(&self.registry, &p.members, &[], now, &mut members);
                let mode = p.policy_cfg.local_mode();
                let policy = (mode != LocalMode::Control).then(|| {
                    let mut pol = policy::build(&p.policy_cfg, &p.names);
                    pol.prepare(&members);
                    pol
                });
                PoolSnap {
                    mode,
                    policy,
                    targets: members
                        .iter()
                        .map(|m| {
                            self.registry
                                .get(m.id)
                                .map(|b| b.target.clone())
                                .expect("members come from the registry")
                        })
                        .collect(),
                    members: std::mem::take(&mut members),
                    unavailable_status: p.unavailable_status,
                }
            })
            .collect();
        let generation = self.routing_gen.load(Ordering::Relaxed) + 1;
        let cfg = &self.profile.logging.access_log;
        let snap = Arc::new(Snapshot {
            generation,
            router: self.router.clone(),
            pools,
            sample_every: cfg.enabled.then_some(cfg.sample_every.max(1)),
            built: now,
        });
        // Workers with the old generation stop deciding from now on.
        self.routing_gen.store(generation, Ordering::Release);
        if let Some(old) = self.snapshot.replace(snap.clone()) {
            self.retired.push(old);
        }
        self.retired.retain(|s| Arc::strong_count(s) > 1);
        snap
    }

    /// Whether a backend's usability or weight changed since the snapshot.
    fn usable_changed(&self, now: Instant) -> bool {
        let all = self.registry.all();
        all.len() != self.snapshot_fp.len()
            || all
                .iter()
                .zip(&self.snapshot_fp)
                .any(|(b, &(u, w))| b.usable(now) != u || b.weight != w)
    }

    /// The agents of every backend, as workers need them for flow recovery.
    fn agent_peers(&self) -> Arc<Vec<dataplane::config::AgentPeer>> {
        Arc::new(
            self.registry
                .all()
                .iter()
                .map(|b| dataplane::config::AgentPeer {
                    backend: b.target.id,
                    ip: b.target.ip,
                    mac: b.target.mac,
                    thop: b.target.thop,
                })
                .collect(),
        )
    }

    /// Sends the agent list to the workers that lack the current one.
    fn publish_agents(&mut self, q: &ControlQueues) {
        if self.agents_unsent.is_empty() {
            return;
        }
        if self.agents_unsent == [usize::MAX] {
            self.agents_unsent = (0..q.commands.len()).collect();
        }
        let agents = self.agent_peers();
        self.agents_unsent.retain(|&w| {
            match q.commands[w].try_send(WorkerCommand::Agents(agents.clone())) {
                Ok(()) => {
                    q.doorbells[w].ring();
                    false
                }
                Err(e) => e.is_full(),
            }
        });
    }

    /// Sends a changed snapshot to every worker (and what is left to send).
    fn publish(&mut self, q: &ControlQueues) {
        self.publish_agents(q);
        if !self.local {
            return;
        }
        let before = self.snapshot.as_ref().map(|s| s.generation);
        let snap = self.routing_snapshot();
        if before != Some(snap.generation) {
            self.unsent = (0..q.commands.len()).collect();
        }
        let update = snap.update();
        self.unsent.retain(|&w| {
            match q.commands[w].try_send(WorkerCommand::Routing(update.clone())) {
                Ok(()) => {
                    q.doorbells[w].ring();
                    false
                }
                // Full: again after the next loop turn; gone: never.
                Err(e) => e.is_full(),
            }
        });
        for (w, h) in self.recycle.drain(..) {
            // No ring: a buffer is nothing to wake a worker for.
            if let Some(c) = q.commands.get(usize::from(w)) {
                let _ = c.try_send(WorkerCommand::Recycle(h));
            }
        }
    }

    /// Counts a request routed by `rule` of `service` (`None`: the default pool).
    fn count_rule(&self, service: usize, rule: Option<usize>) {
        if let Some(rules) = self.rule_hits.get(service) {
            let i = rule.unwrap_or(rules.len().saturating_sub(1));
            if let Some(c) = rules.get(i) {
                c.inc();
            }
        }
    }

    fn build_pools(&self, mut old: Vec<PoolRt>) -> Vec<PoolRt> {
        self.profile
            .pools
            .iter()
            .map(|p| {
                let members: Vec<BackendId> = p
                    .backends
                    .iter()
                    .filter_map(|n| self.registry.id_of(n))
                    .collect();
                // Keep the policy's state (LARD tables, cursors) when nothing about the pool changed.
                if let Some(i) = old.iter().position(|o| {
                    o.name == p.name && o.policy_cfg == p.policy && o.members == members
                }) {
                    let mut kept = old.swap_remove(i);
                    kept.unavailable_status = p.unavailable_status;
                    return kept;
                }
                let decided = p
                    .backends
                    .iter()
                    .map(|b| {
                        self.metrics
                            .decisions
                            .with_label_values(&[p.name.as_str(), b.as_str()])
                    })
                    .collect();
                PoolRt {
                    name: p.name.clone(),
                    names: p.backends.clone(),
                    policy: policy::build(&p.policy, &p.backends),
                    policy_cfg: p.policy.clone(),
                    members,
                    unavailable_status: p.unavailable_status,
                    decided,
                    rejected: self
                        .metrics
                        .rejections
                        .with_label_values(&[p.name.as_str(), "no_backend"]),
                }
            })
            .collect()
    }

    /// Starts, replaces or stops checker threads to match the registry.
    fn sync_checkers(&mut self) {
        let wanted: Vec<(BackendId, String, crate::config::Health, std::net::IpAddr)> = self
            .registry
            .all()
            .iter()
            .filter(|b| b.configured)
            .map(|b| (b.id, b.name.clone(), b.health_cfg.clone(), b.management))
            .collect();
        self.checkers
            .retain(|id, _| wanted.iter().any(|w| w.0 == *id));
        for (id, name, health, addr) in wanted {
            let same = self
                .checkers
                .get(&id)
                .is_some_and(|c| c.config == (health.clone(), addr));
            if !same {
                self.check_epoch += 1;
                let c = Checker::start(
                    id,
                    &name,
                    health,
                    addr,
                    self.check_epoch,
                    self.check_tx.clone(),
                );
                self.checkers.insert(id, c);
            }
        }
    }

    /// Decides one request (the heart of the loop; also called directly by tests).
    pub fn decide(&mut self, req: DispatchRequest) -> Decision {
        let now = Instant::now();
        let DispatchRequest {
            token,
            client,
            vip,
            header,
            exclude,
            header_complete_ns,
        } = req;
        let log_this = self.sample_access();
        let (verdict, pool, log) = self.decide_inner(&header, client, vip, &exclude, now, log_this);
        let waited = (self.clock)().saturating_sub(header_complete_ns);
        self.metrics.decision_seconds.observe(waited as f64 / 1e9);
        self.place_control.inc();
        if let Some(line) = log {
            self.access_log(client, &line, &verdict, waited);
        }
        Decision {
            token,
            verdict,
            pool,
            header,
        }
    }

    fn decide_inner(
        &mut self,
        header: &[u8],
        client: SocketAddr,
        vip: SocketAddr,
        exclude: &[BackendId],
        now: Instant,
        log_this: bool,
    ) -> (Verdict, u16, Option<AccessLine>) {
        let req = match Request::parse(header) {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .rejections
                    .with_label_values(&["", e.as_str()])
                    .inc();
                return (Verdict::Reject(400), u16::MAX, None);
            }
        };
        let Some(route) = self.router.route(vip, &req) else {
            self.metrics
                .rejections
                .with_label_values(&["", "no_service"])
                .inc();
            return (Verdict::Reject(503), u16::MAX, None);
        };
        if exclude.is_empty() {
            // First dispatch only: a re-dispatch after a NACK is the same request.
            self.count_rule(route.service, route.rule);
        }
        let pool = &mut self.pools[route.pool as usize];
        member_views(
            &self.registry,
            &pool.members,
            exclude,
            now,
            &mut self.members_buf,
        );
        let ctx = PickCtx {
            now,
            client: client.ip(),
        };
        let picked = pool
            .policy
            .pick(&self.members_buf, &req, &ctx)
            .filter(|&i| self.members_buf.get(i).is_some_and(|m| m.usable));
        // Built only for sampled requests: the decision path stays allocation-light.
        let mut line = log_this.then(|| AccessLine {
            method: req.method.to_string(),
            host: req.host.to_string(),
            path: req.target.to_string(),
            tls: TlsLine::of(&req),
            pool: pool.name.clone(),
            rule: self.router.rule_name(&route).to_string(),
            backend: String::new(),
        });
        match picked {
            Some(i) => {
                let id = self.members_buf[i].id;
                let Some(b) = self.registry.get(id) else {
                    return (Verdict::Reject(pool.unavailable_status), route.pool, line);
                };
                let target = b.target.clone();
                if let Some(l) = line.as_mut() {
                    l.backend = b.name.clone();
                }
                if let Some(c) = pool.decided.get(i) {
                    c.inc();
                }
                self.registry.on_dispatch(id);
                (Verdict::Backend(target), route.pool, line)
            }
            None => {
                pool.rejected.inc();
                (Verdict::Reject(pool.unavailable_status), route.pool, line)
            }
        }
    }

    /// Whether this request gets an access-log line (one in `sample_every`).
    fn sample_access(&mut self) -> bool {
        let cfg = &self.profile.logging.access_log;
        if !cfg.enabled {
            return false;
        }
        self.access_seq += 1;
        (self.access_seq - 1).is_multiple_of(u64::from(cfg.sample_every.max(1)))
    }

    fn access_log(&self, client: SocketAddr, l: &AccessLine, verdict: &Verdict, waited_ns: u64) {
        let status = match verdict {
            Verdict::Backend(_) => 0,
            Verdict::Reject(s) => *s,
        };
        self.access_log_status(client, l, status, waited_ns);
    }

    fn access_log_status(&self, client: SocketAddr, l: &AccessLine, status: u16, waited_ns: u64) {
        crate::logging::access(&crate::logging::Access {
            client,
            method: &l.method,
            host: &l.host,
            path: &l.path,
            tls: l.tls.as_ref().map(|t| crate::logging::TlsAccess {
                sni: &t.sni,
                alpn: &t.alpn,
                version: t.version,
            }),
            rule: &l.rule,
            pool: &l.pool,
            backend: &l.backend,
            status,
            decision_us: waited_ns / 1000,
        });
    }

    /// Applies one worker event.
    pub fn on_event(&mut self, ev: WorkerEvent) {
        let now = Instant::now();
        match ev {
            WorkerEvent::Handoff {
                backend,
                outcome,
                latency_ns,
            } => {
                let name = self
                    .registry
                    .get(backend)
                    .map(|b| b.name.clone())
                    .unwrap_or_else(|| format!("#{backend}"));
                let label = match outcome {
                    HandoffOutcome::Acked => "acked",
                    HandoffOutcome::Nacked(_) => "nacked",
                    HandoffOutcome::TimedOut => "timed_out",
                    HandoffOutcome::Aborted => "aborted",
                };
                self.metrics
                    .handoffs
                    .with_label_values(&[name.as_str(), label])
                    .inc();
                if outcome == HandoffOutcome::Acked {
                    self.metrics
                        .handoff_seconds
                        .with_label_values(&[name.as_str()])
                        .observe(latency_ns as f64 / 1e9);
                }
                if let HandoffOutcome::Nacked(code) = outcome {
                    tracing::debug!(backend = %name, code, "handoff refused (THOP NACK)");
                }
                if let Some(change) = self.registry.on_handoff(backend, outcome, now) {
                    self.note_change(change);
                }
            }
            WorkerEvent::Closed { backend } => self.registry.on_closed(backend),
            WorkerEvent::Decided {
                worker,
                pool,
                member,
                service,
                rule,
                backend,
                client,
                vip,
                header,
            } => {
                self.count_rule(
                    usize::from(service),
                    (rule != u16::MAX).then_some(usize::from(rule)),
                );
                self.on_local_decision(worker, pool, member, backend, (client, vip), header)
            }
            WorkerEvent::AgentRestarted { node, old, new } => {
                let name = self
                    .registry
                    .all()
                    .iter()
                    .find(|b| handoff_proto::node_id(b.target.thop.ip()) == node)
                    .map_or_else(|| format!("node {node:#010x}"), |b| b.name.clone());
                tracing::warn!(backend = %name, old_boot = format_args!("{old:#010x}"),
                    new_boot = format_args!("{new:#010x}"),
                    "agent restarted: its connections are gone, freeing their entries");
                self.metrics
                    .agent_restarts
                    .with_label_values(&[name.as_str()])
                    .inc();
            }
            WorkerEvent::Load { sender, report, .. } => {
                let matched = self.registry.on_load(sender, report, now);
                self.metrics
                    .load_reports
                    .with_label_values(&[if matched { "matched" } else { "unknown" }])
                    .inc();
            }
        }
    }

    /// Books a decision a worker took itself as [`ControlPlane::decide`]
    /// would have (except the decision-time histogram: no hop to time).
    fn on_local_decision(
        &mut self,
        worker: u16,
        pool: u16,
        member: u16,
        backend: Option<BackendId>,
        (client, vip): (SocketAddr, SocketAddr),
        header: Vec<u8>,
    ) {
        self.place_worker.inc();
        let p = self.pools.get(usize::from(pool));
        match backend {
            Some(id) => {
                if let Some(p) = p {
                    // The member index is the snapshot's; a reload since may
                    // have moved it.
                    let i = Some(usize::from(member))
                        .filter(|&i| p.members.get(i) == Some(&id))
                        .or_else(|| p.members.iter().position(|&m| m == id));
                    if let Some(c) = i.and_then(|i| p.decided.get(i)) {
                        c.inc();
                    }
                }
                self.registry.on_dispatch(id);
            }
            None => {
                if let Some(p) = p {
                    p.rejected.inc();
                }
            }
        }
        if header.is_empty() {
            return;
        }
        if let Ok(req) = Request::parse(&header) {
            let rule = self
                .router
                .route(vip, &req)
                .map(|r| self.router.rule_name(&r).to_string())
                .unwrap_or_default();
            if let Some(p) = self.pools.get(usize::from(pool)) {
                let line = AccessLine {
                    method: req.method.to_string(),
                    host: req.host.to_string(),
                    path: req.target.to_string(),
                    tls: TlsLine::of(&req),
                    pool: p.name.clone(),
                    rule,
                    backend: backend
                        .and_then(|id| self.registry.get(id))
                        .map(|b| b.name.clone())
                        .unwrap_or_default(),
                };
                let status = if backend.is_some() {
                    0
                } else {
                    p.unavailable_status
                };
                self.access_log_status(client, &line, status, 0);
            }
        }
        self.recycle.push((worker, header));
    }

    fn on_check(&mut self, r: CheckResult) {
        // Only the current checker of a configured backend counts.
        if self
            .checkers
            .get(&r.backend)
            .is_none_or(|c| c.epoch != r.epoch)
        {
            return;
        }
        let name = self
            .registry
            .get(r.backend)
            .map(|b| b.name.clone())
            .unwrap_or_default();
        self.metrics
            .health_checks
            .with_label_values(&[
                name.as_str(),
                if r.result.is_ok() {
                    "success"
                } else {
                    "failure"
                },
            ])
            .inc();
        if let Some(change) = self.registry.on_check(r.backend, r.result, Instant::now()) {
            self.note_change(change);
        }
    }

    fn note_change(&self, change: HealthChange) {
        match change {
            HealthChange::Up { name } => {
                tracing::info!(backend = %name, "backend up");
                self.metrics
                    .health_transitions
                    .with_label_values(&[name.as_str(), "up"])
                    .inc();
            }
            HealthChange::Down { name, reason } => {
                tracing::warn!(backend = %name, %reason, "backend down");
                self.metrics
                    .health_transitions
                    .with_label_values(&[name.as_str(), "down"])
                    .inc();
            }
        }
    }

    /// Swaps in a new profile (already validated).
    pub fn reload(&mut self, profile: Profile) -> Result<ReloadOutcome, String> {
        let router = Arc::new(Router::new(&profile).map_err(|e| e.to_string())?);
        let restart_required = restart_sections(&self.profile, &profile);
        let drain_changed = self
            .profile
            .backends
            .iter()
            .map(|b| (&b.name, b.drain))
            .collect::<Vec<_>>()
            != profile
                .backends
                .iter()
                .map(|b| (&b.name, b.drain))
                .collect::<Vec<_>>();
        if self.profile.logging.level != profile.logging.level
            && !crate::logging::set_level(&profile.logging.level)
        {
            tracing::warn!("logging.level changed but RUST_LOG rules the filter; unchanged");
        }
        self.registry.apply(&profile);
        if drain_changed {
            self.registry.set_drain_from(&profile);
        }
        self.router = router;
        self.rule_hits = rule_counters(&self.metrics, &profile);
        self.profile = Arc::new(profile);
        let old = std::mem::take(&mut self.pools);
        self.pools = self.build_pools(old);
        self.sync_checkers();
        // Routing and pools changed: the next publish builds a new snapshot.
        self.routing_changed = true;
        self.agents_unsent = vec![usize::MAX];
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.metrics.config_generation.set(generation as i64);
        self.metrics.reloads.with_label_values(&["success"]).inc();
        self.metrics.last_reload_success.set(Metrics::unix_now());
        self.export_backends(Instant::now());
        for s in &restart_required {
            tracing::warn!(
                section = s,
                "changed section takes effect only after a restart"
            );
        }
        tracing::info!(generation, profile = %self.profile.name, "profile reloaded");
        Ok(ReloadOutcome {
            generation,
            restart_required,
        })
    }

    /// Counts a reload that failed before reaching the loop (bad file).
    pub fn count_failed_reload(metrics: &Metrics) {
        metrics.reloads.with_label_values(&["failure"]).inc();
    }

    fn export_backends(&self, now: Instant) {
        for b in self.registry.all() {
            let n = b.name.as_str();
            self.metrics
                .backend_up
                .with_label_values(&[n])
                .set(i64::from(
                    b.configured && b.down.is_none() && b.hold_until.is_none_or(|t| now >= t),
                ));
            self.metrics
                .backend_draining
                .with_label_values(&[n])
                .set(i64::from(b.draining));
            self.metrics
                .backend_active
                .with_label_values(&[n])
                .set(i64::from(b.active));
            self.metrics
                .backend_weight
                .with_label_values(&[n])
                .set(i64::from(if b.configured { b.weight } else { 0 }));
            self.metrics
                .backend_reported
                .with_label_values(&[n])
                .set(b.report.map_or(0, |(r, _)| i64::from(r.active)));
        }
    }

    /// The `/backends` view.
    pub fn view(&self) -> serde_json::Value {
        let now = Instant::now();
        let backends: Vec<serde_json::Value> = self
            .registry
            .all()
            .iter()
            .map(|b| {
                json!({
                    "name": b.name,
                    "status": b.status(now),
                    "address": b.target.ip.to_string(),
                    "thop": b.target.thop.to_string(),
                    "weight": b.weight,
                    "draining": b.draining,
                    "down_reason": b.down.as_ref().map(|d| d.to_string()),
                    "last_check": b.last_check,
                    "active_connections": b.active,
                    "reported_connections": b.report.map(|(r, _)| r.active),
                    "report_age_ms": Registry::report_age(b, now).map(|d| d.as_millis() as u64),
                    "pools": self.pools.iter().filter(|p| p.members.contains(&b.id)).map(|p| p.name.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let pools: Vec<serde_json::Value> = self
            .pools
            .iter()
            .map(|p| json!({ "name": p.name, "policy": p.policy.kind(), "backends": p.names }))
            .collect();
        json!({
            "profile": self.profile.name,
            "generation": self.generation.load(Ordering::SeqCst),
            "backends": backends,
            "pools": pools,
        })
    }

    fn on_admin(&mut self, a: AdminRequest) {
        match a {
            AdminRequest::Reload { profile, reply } => {
                let r = self.reload(*profile);
                if r.is_err() {
                    Self::count_failed_reload(&self.metrics);
                }
                let _ = reply.send(r);
            }
            AdminRequest::Drain {
                backend,
                drain,
                reply,
            } => {
                let r = self
                    .registry
                    .set_draining(&backend, drain)
                    .ok_or_else(|| format!("no backend named `{backend}`"));
                if r.is_ok() {
                    tracing::info!(%backend, drain, "backend drain changed by admin");
                    self.export_backends(Instant::now());
                }
                let _ = reply.send(r);
            }
            AdminRequest::SwitchDrain { drain, reply } => {
                let r = match &self.announcer {
                    None => Err(
                        "this switch announces nothing (no cluster.announce in the profile)"
                            .to_string(),
                    ),
                    Some(_) => {
                        self.switch_drained = drain;
                        tracing::info!(
                            drain,
                            "switch drain changed by admin: VIPs {}",
                            if drain {
                                "withdrawn"
                            } else {
                                "announced while healthy"
                            }
                        );
                        self.announce(Instant::now());
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            AdminRequest::Backends { reply } => {
                let _ = reply.send(self.view());
            }
        }
    }

    /// Runs the loop until `stop` is set (and then a last pass).
    pub fn run(mut self, q: ControlQueues, admin: Receiver<AdminRequest>, stop: Arc<AtomicBool>) {
        let mut requests = q.requests.clone();
        let mut events = q.events.clone();
        let mut admin_rx = admin;
        let check_rx = self.check_rx.clone();
        let tick = Duration::from_millis(100);
        let mut next_tick = Instant::now() + tick;
        self.publish(&q);
        while !stop.load(Ordering::Relaxed) {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            select! {
                recv(requests) -> r => match r {
                    Ok(req) => {
                        self.answer(&q, req);
                        // Take what else is queued before looking elsewhere.
                        for _ in 0..256 {
                            let Ok(req) = requests.try_recv() else { break };
                            self.answer(&q, req);
                        }
                    }
                    Err(_) => requests = never(),
                },
                recv(events) -> e => match e {
                    Ok(ev) => self.on_event(ev),
                    Err(_) => events = never(),
                },
                recv(check_rx) -> c => if let Ok(c) = c { self.on_check(c) },
                recv(admin_rx) -> a => match a {
                    Ok(a) => self.on_admin(a),
                    Err(_) => admin_rx = never(),
                },
                default(timeout) => {}
            }
            if !self.deferred.is_empty() {
                self.retry_deferred(&q);
            }
            // Health, drain, weights or the profile may have changed.
            self.publish(&q);
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + tick;
                for change in self.registry.tick(now) {
                    self.note_change(change);
                }
                self.export_backends(now);
                self.announce(now);
            }
        }
        // Last pass: answer what is queued so no worker waits for a decision timeout.
        while let Ok(req) = q.requests.try_recv() {
            self.answer(&q, req);
        }
        self.retry_deferred(&q);
    }

    fn answer(&mut self, q: &ControlQueues, req: DispatchRequest) {
        let d = self.decide(req);
        if let Err(d) = q.decide(d) {
            let worker = d.token.worker as usize;
            if worker < q.decisions.len() && q.decisions[worker].is_full() {
                self.metrics
                    .deferred_decisions
                    .with_label_values(&[&worker.to_string()])
                    .inc();
                self.deferred.push(d);
            }
        }
    }

    fn retry_deferred(&mut self, q: &ControlQueues) {
        let pending = std::mem::take(&mut self.deferred);
        for d in pending {
            if let Err(d) = q.decide(d) {
                let worker = d.token.worker as usize;
                // A full queue: try again later; a gone worker: drop it.
                if worker < q.decisions.len() && q.decisions[worker].is_full() {
                    self.deferred.push(d);
                }
            }
        }
    }
}

struct AccessLine {
    method: String,
    host: String,
    path: String,
    /// What the ClientHello said, on a TLS service.
    tls: Option<TlsLine>,
    pool: String,
    rule: String,
    backend: String,
}

/// A ClientHello's part of an access-log line.
struct TlsLine {
    sni: String,
    /// Offered protocols, comma-separated, in the client's order.
    alpn: String,
    version: &'static str,
}

impl TlsLine {
    fn of(req: &Request<'_>) -> Option<TlsLine> {
        req.tls.as_ref().map(|t| TlsLine {
            sni: t.sni.clone().unwrap_or_default(),
            alpn: t.alpn.join(","),
            version: t.version_str(),
        })
    }
}

/// The rule counters of every service, in rule order, `default` last
/// (names as the access log shows them).
fn rule_counters(metrics: &Metrics, p: &Profile) -> Vec<Vec<prometheus::IntCounter>> {
    p.services
        .iter()
        .map(|s| {
            s.rules
                .iter()
                .enumerate()
                .map(|(j, r)| r.name.clone().unwrap_or_else(|| format!("rule{j}")))
                .chain(std::iter::once("default".to_string()))
                .map(|rule| {
                    metrics
                        .rule_matches
                        .with_label_values(&[s.name.as_str(), rule.as_str()])
                })
                .collect()
        })
        .collect()
}

/// Sections fixed at start-up that differ between two profiles.
pub fn restart_sections(old: &Profile, new: &Profile) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.io != new.io {
        out.push("io");
    }
    if old.workers != new.workers {
        out.push("workers");
    }
    if old.switch != new.switch {
        out.push("switch");
    }
    let eps = |p: &Profile| {
        p.services
            .iter()
            .map(|s| (s.vip.clone(), s.port))
            .collect::<Vec<_>>()
    };
    if eps(old) != eps(new) {
        out.push("services (VIP or port)");
    }
    if old.limits != new.limits {
        out.push("limits");
    }
    if old.tcp != new.tcp {
        out.push("tcp");
    }
    if old.timeouts != new.timeouts {
        out.push("timeouts");
    }
    if old.tuning != new.tuning {
        out.push("tuning");
    }
    if old.thop != new.thop || crate::compile::thop_peers(old) != crate::compile::thop_peers(new) {
        out.push("thop");
    }
    if old.recovery != new.recovery {
        out.push("recovery");
    }
    if old.cluster != new.cluster {
        out.push("cluster");
    }
    if old.admin != new.admin {
        out.push("admin");
    }
    if old.logging.format != new.logging.format {
        out.push("logging.format");
    }
    out
}
