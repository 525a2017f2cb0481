//! Decisions on the worker thread: routing snapshots and the workers'
//! [`LocalDecider`].
//!
//! The hop to the control thread costs ~10 µs on an idle switch, nearly all
//! of it the control thread's wake-up; the decision itself costs well under
//! that. Policies whose pick is a pure function of the request and an
//! immutable pool view (consistent hashing, sticky cookies) or that can run
//! per worker without losing their meaning (smooth weighted round-robin: each
//! worker interleaves by weight, so together they do too) are decided on
//! the worker from a [`Snapshot`]; the others (LARD, CAP, least connections)
//! need the control plane's live counts and stay on the queue, as does every
//! re-dispatch after a NACK or timeout (its `exclude` list is the control
//! plane's business) and any request while the worker has no current
//! snapshot.
//!
//! The snapshot is published by the control thread whenever what a
//! stateless pick reads changes (reload, health, drain, weight), as one
//! `Arc` per change, sent down each worker's command queue. That queue, not
//! a shared swappable pointer, because it is already there, already rings
//! the worker's doorbell, needs no lock nor an extra dependency, and is read
//! between packets, so a worker switches snapshot at a well-defined point.
//! A command queue can be full or slow, so freshness does not rest on it:
//! each snapshot carries a generation and the control plane publishes the
//! current one in an atomic before sending; a worker whose snapshot is
//! older sends its requests to the queue until the new one arrives. A
//! drained or failed backend is therefore never chosen locally after the
//! control plane has seen the change. Replaced snapshots are freed by the
//! control thread, never by a worker (it keeps a reference until the
//! workers have let go).
//!
//! Everything the control plane counted per decision still happens there:
//! the worker reports each local decision as a `WorkerEvent::Decided`
//! (dispatch counters, the backend's active count, the access log).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dataplane::dispatch::{
    BackendTarget, LocalDecider, LocalDecision, LocalRequest, RoutingUpdate, Verdict,
};

pub use crate::policy::LocalMode;
use crate::policy::{DispatchPolicy, MemberView, PickCtx, WeightedRoundRobin};
use crate::request::{Request, MAX_HEADERS};
use crate::routing::Router;

/// One pool as a worker sees it.
pub(crate) struct PoolSnap {
    pub mode: LocalMode,
    /// A copy of the pool's policy prepared for `members` (None: `Control`).
    pub policy: Option<Box<dyn DispatchPolicy>>,
    /// Members as the control plane's decide builds them, with nothing excluded.
    pub members: Vec<MemberView>,
    /// Hand-off target per member.
    pub targets: Vec<BackendTarget>,
    pub unavailable_status: u16,
}

/// The immutable routing state workers decide from.
pub struct Snapshot {
    pub generation: u64,
    pub(crate) router: Arc<Router>,
    pub(crate) pools: Vec<PoolSnap>,
    /// Access log: one request in N is sent along for logging (None: off).
    pub(crate) sample_every: Option<u32>,
    /// Policies that decide locally do not look at the time; they get this.
    pub(crate) built: Instant,
}

impl Snapshot {
    /// As the `RoutingUpdate` a worker's command carries.
    pub fn update(self: &Arc<Self>) -> RoutingUpdate {
        self.clone()
    }
}

/// A worker's decider (one per worker, owned by its thread).
pub struct WorkerDecider {
    /// The generation the control plane published last.
    latest: Arc<AtomicU64>,
    snap: Option<Arc<Snapshot>>,
    /// Per pool: this worker's weighted round-robin.
    wrr: Vec<WeightedRoundRobin>,
    /// Local decisions, for access-log sampling.
    seq: u64,
}

impl WorkerDecider {
    pub(crate) fn new(latest: Arc<AtomicU64>) -> Self {
        Self {
            latest,
            snap: None,
            wrr: Vec::new(),
            seq: 0,
        }
    }

    /// Installs a snapshot directly (tests, benches).
    pub fn install_snapshot(&mut self, s: Arc<Snapshot>) {
        // Size the round-robin credits now, so picks never allocate.
        self.wrr.truncate(s.pools.len());
        while self.wrr.len() < s.pools.len() {
            self.wrr.push(WeightedRoundRobin::new(0));
        }
        for (w, p) in self.wrr.iter_mut().zip(&s.pools) {
            w.resize(p.members.len());
        }
        self.snap = Some(s);
    }
}

impl LocalDecider for WorkerDecider {
    fn install(&mut self, update: RoutingUpdate) {
        if let Ok(s) = update.downcast::<Snapshot>() {
            self.install_snapshot(s);
        }
    }

    fn decide(&mut self, r: &LocalRequest<'_>) -> Option<LocalDecision> {
        let snap = self.snap.as_ref()?;
        if snap.generation != self.latest.load(Ordering::Acquire) {
            return None;
        }
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        // Unparsable or unrouted requests go to the control plane, which
        // answers and counts them as always.
        let req = Request::parse_in(r.header, &mut storage).ok()?;
        let route = snap.router.route(r.vip, &req)?;
        let pool = snap.pools.get(usize::from(route.pool))?;
        let ctx = PickCtx {
            now: snap.built,
            client: r.client.ip(),
        };
        let policy = pool.policy.as_deref()?;
        let picked = match pool.mode {
            LocalMode::Control => return None,
            LocalMode::Shared => policy.pick_shared(&pool.members, &req, &ctx)?,
            LocalMode::SharedThenWrr => match policy.pick_shared(&pool.members, &req, &ctx) {
                Some(p) => p,
                None => self
                    .wrr
                    .get_mut(usize::from(route.pool))?
                    .pick(&pool.members, &req, &ctx),
            },
        }
        .filter(|&i| pool.members.get(i).is_some_and(|m| m.usable));
        let log = snap.sample_every.is_some_and(|n| {
            self.seq += 1;
            (self.seq - 1).is_multiple_of(u64::from(n.max(1)))
        });
        Some(match picked {
            Some(i) => LocalDecision {
                verdict: Verdict::Backend(pool.targets.get(i)?.clone()),
                pool: route.pool,
                member: i as u16,
                service: route.service as u16,
                rule: route.rule.map_or(u16::MAX, |r| r as u16),
                log,
            },
            None => LocalDecision {
                verdict: Verdict::Reject(pool.unavailable_status),
                pool: route.pool,
                member: u16::MAX,
                service: route.service as u16,
                rule: route.rule.map_or(u16::MAX, |r| r as u16),
                log,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::path::Path;

    use dataplane::dispatch::{ConnToken, DispatchRequest, HandoffOutcome, WorkerEvent};
    use proptest::prelude::*;

    use super::*;
    use crate::config::{load_str, Profile};
    use crate::control::ControlPlane;
    use crate::metrics::Metrics;

    const VIP: &str = "198.18.0.10:80";

    /// Four backends; pool `p` with `policy`, pool `lc` (least connections)
    /// for `/lc/`, pool `w` (weighted round-robin, weights 3:1) for `/w/`.
    fn profile(policy: &str) -> Profile {
        let backends: String = (0..4)
            .map(|i| format!("  - {{ name: b{i}, address: 198.18.0.{} }}\n", 20 + i))
            .collect();
        let text = format!(
            "name: t\nio: {{ memory: {{}} }}\nswitch: {{ data_ip: 198.18.0.2 }}\nthop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: \"{}\" }}] }}\n\
             health: {{ check: {{ none: {{}} }} }}\nbackends:\n{backends}\
             pools:\n  - {{ name: p, backends: [b0, b1, b2, b3], policy: {policy} }}\n\
             \x20 - {{ name: lc, backends: [b0, b1], policy: {{ least_connections: {{}} }} }}\n\
             \x20 - {{ name: w, backends: [b2, b3], policy: {{ weighted_round_robin: {{}} }} }}\n\
             services:\n  - name: web\n    vip: 198.18.0.10\n    rules:\n\
             \x20     - {{ match: {{ path_prefix: [/lc/] }}, pool: lc }}\n\
             \x20     - {{ match: {{ path_prefix: [/w/] }}, pool: w }}\n    default_pool: p\n",
            "00".repeat(32)
        );
        load_str(&text, Path::new("t.yaml"), &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"))
            .profile
    }

    fn control(p: Profile) -> ControlPlane {
        ControlPlane::new(p, Arc::new(Metrics::new("t")), Arc::new(|| 0)).unwrap()
    }

    fn header(path: &str, host: &str, cookie: Option<&str>) -> Vec<u8> {
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: x=1; {c}\r\n"));
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}\r\n").into_bytes()
    }

    fn by_control(cp: &mut ControlPlane, client: SocketAddr, h: &[u8]) -> (Verdict, u16) {
        let d = cp.decide(DispatchRequest {
            token: ConnToken {
                worker: 0,
                slot: 0,
                generation: 0,
            },
            client,
            vip: VIP.parse().unwrap(),
            header: h.to_vec(),
            exclude: Vec::new(),
            header_complete_ns: 0,
        });
        (d.verdict, d.pool)
    }

    fn local(w: &mut WorkerDecider, client: SocketAddr, h: &[u8]) -> Option<LocalDecision> {
        w.decide(&LocalRequest {
            client,
            vip: VIP.parse().unwrap(),
            header: h,
        })
    }

    /// A worker's decision equals the control plane's for the same request
    /// and state, for every stateless policy (round-robin: the same sequence
    /// from the same starting credit).
    fn same_decisions(policy: &str, reqs: &[(String, String, Option<String>, u8)]) {
        let mut cp = control(profile(policy));
        let mut w = cp.decider();
        w.install_snapshot(cp.routing_snapshot());
        for (path, host, cookie, c) in reqs {
            let client = SocketAddr::from(([198, 18, 1, *c], 40000));
            let h = header(path, host, cookie.as_deref());
            let want = by_control(&mut cp, client, &h);
            let got = local(&mut w, client, &h).expect("stateless: decided locally");
            assert_eq!(
                (got.verdict, got.pool),
                want,
                "{policy} {path} {host} {cookie:?}"
            );
        }
    }

    fn requests() -> impl Strategy<Value = Vec<(String, String, Option<String>, u8)>> {
        proptest::collection::vec(
            (
                "/(w/)?[a-z0-9]{0,12}(\\.png)?(\\?q=[0-9]{1,3})?",
                "[a-z]{1,8}\\.example",
                proptest::option::of("BATON_BACKEND=(b[0-4]|[a-z0-9]{1,10})"),
                0u8..255,
            ),
            1..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn worker_decides_as_the_control_plane(reqs in requests()) {
            for policy in [
                "{ maglev: { table_size: 1021 } }",
                "{ maglev: { key: host, table_size: 1021 } }",
                "{ maglev: { key: client_ip, table_size: 1021 } }",
                "{ sticky: {} }",
                "{ sticky: { fallback: { maglev: { table_size: 1021 } } } }",
                "{ weighted_round_robin: {} }",
            ] {
                same_decisions(policy, &reqs);
            }
        }
    }

    #[test]
    fn stateful_pools_and_unroutable_requests_go_to_the_queue() {
        let client: SocketAddr = "198.18.1.1:40000".parse().unwrap();
        for policy in [
            "{ least_connections: {} }",
            "{ lard: {} }",
            "{ cap: {} }",
            "{ sticky: { fallback: { least_connections: {} } } }",
        ] {
            let mut cp = control(profile(policy));
            let mut w = cp.decider();
            w.install_snapshot(cp.routing_snapshot());
            assert_eq!(
                local(&mut w, client, &header("/a", "h", None)),
                None,
                "{policy}"
            );
            // The `lc` pool is least connections whatever `p` is.
            assert_eq!(local(&mut w, client, &header("/lc/a", "h", None)), None);
        }
        let mut cp = control(profile(
            "{ sticky: { fallback: { least_connections: {} } } }",
        ));
        let mut w = cp.decider();
        // No snapshot yet: the queue.
        assert_eq!(local(&mut w, client, &header("/a", "h", None)), None);
        w.install_snapshot(cp.routing_snapshot());
        // A sticky cookie needs no state even with a stateful fallback.
        let d = local(&mut w, client, &header("/a", "h", Some("BATON_BACKEND=b2"))).unwrap();
        assert!(matches!(d.verdict, Verdict::Backend(t) if t.id == 2));
        // Unparsable or for no service: the control plane answers those.
        assert_eq!(local(&mut w, client, b"NONSENSE\r\n\r\n"), None);
        let other: SocketAddr = "198.18.0.99:80".parse().unwrap();
        let h = header("/a", "h", Some("BATON_BACKEND=b2"));
        assert_eq!(
            w.decide(&LocalRequest {
                client,
                vip: other,
                header: &h
            }),
            None
        );
    }

    #[test]
    fn a_drained_or_failed_backend_is_never_chosen_once_the_control_plane_knows() {
        let p = profile("{ maglev: { table_size: 1021 } }");
        let mut cp = control(p.clone());
        let mut w = cp.decider();
        let first = cp.routing_snapshot();
        w.install_snapshot(first.clone());
        let client: SocketAddr = "198.18.1.1:40000".parse().unwrap();
        let pick = |w: &mut WorkerDecider, k: usize| {
            local(w, client, &header(&format!("/obj{k}"), "h", None)).map(|d| match d.verdict {
                Verdict::Backend(t) => t.id,
                Verdict::Reject(s) => panic!("rejected {s}"),
            })
        };
        assert!((0..200).any(|k| pick(&mut w, k) == Some(1)));
        // A reload drains b1: a new snapshot; the old one is refused at once.
        let mut q = p.clone();
        q.backends[1].drain = true;
        cp.reload(q).unwrap();
        let second = cp.routing_snapshot();
        assert!(second.generation > first.generation);
        assert_eq!(pick(&mut w, 0), None, "stale snapshot: the queue");
        w.install_snapshot(second);
        for k in 0..200 {
            assert_ne!(pick(&mut w, k), Some(1), "drained b1 chosen for /obj{k}");
        }
        // Passive health: consecutive THOP failures take b2 down.
        for _ in 0..p.health.passive.handoff_failures {
            cp.on_event(WorkerEvent::Handoff {
                backend: 2,
                outcome: HandoffOutcome::TimedOut,
                latency_ns: 0,
            });
        }
        let third = cp.routing_snapshot();
        assert_eq!(pick(&mut w, 0), None, "stale snapshot: the queue");
        w.install(third.update());
        for k in 0..200 {
            let got = pick(&mut w, k).unwrap();
            assert!(got != 1 && got != 2, "/obj{k} went to b{got}");
        }
        // Nothing changed: the same snapshot.
        assert_eq!(cp.routing_snapshot().generation, third.generation);
    }

    #[test]
    fn local_decisions_are_booked_by_the_control_plane() {
        let mut cp = control(profile("{ maglev: { table_size: 1021 } }"));
        let mut w = cp.decider();
        w.install_snapshot(cp.routing_snapshot());
        let client: SocketAddr = "198.18.1.1:40000".parse().unwrap();
        let d = local(&mut w, client, &header("/x", "h", None)).unwrap();
        let Verdict::Backend(t) = d.verdict else {
            panic!("rejected")
        };
        assert!(d.log, "access log on, sample_every 1");
        cp.on_event(WorkerEvent::Decided {
            worker: 0,
            pool: d.pool,
            member: d.member,
            service: d.service,
            rule: d.rule,
            backend: Some(t.id),
            client,
            vip: VIP.parse().unwrap(),
            header: header("/x", "h", None),
        });
        assert_eq!(cp.registry().get(t.id).unwrap().active, 1);
        let text = cp_metrics(&cp);
        assert!(
            text.contains("baton_dispatch_rule_matches_total{rule=\"default\",service=\"web\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("baton_dispatch_decision_place_total{place=\"worker\"} 1"),
            "{text}"
        );
        let name = format!("b{}", t.id);
        assert!(
            text.contains(&format!(
                "baton_dispatch_decisions_total{{backend=\"{name}\",pool=\"p\"}} 1"
            )),
            "{text}"
        );
    }

    fn cp_metrics(cp: &ControlPlane) -> String {
        cp.metrics().render()
    }
}
