//! Dispatch policies: given a pool's members and their state, pick one.
//!
//! A policy sees the pool as a slice of [`MemberView`]s in the pool's order
//! and returns an index into it. It must only return a member whose `usable`
//! is true (healthy, not drained, not excluded for this request); `None`
//! means no member can take the request and the switch answers 503.
//! Policies keep their own state (round-robin cursors, LARD's URL table) and
//! are rebuilt on reload only when the pool or its policy changed.
//!
//! Policies whose pick is a pure function of the request and the pool
//! (consistent hashing, sticky cookies) also answer [`DispatchPolicy::pick_shared`]
//! from `&self`: the control plane prepares a copy for a routing snapshot
//! ([`DispatchPolicy::prepare`]) and workers decide with it, without a queue
//! hop (see [`crate::local`]).

mod cap;
mod lard;
mod least_conn;
mod maglev;
mod sticky;
mod wrr;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use cap::Cap;
pub use lard::{Lard, LardR};
pub use least_conn::LeastConnections;
pub use maglev::{key_hash, Maglev};
pub use sticky::Sticky;
pub use wrr::WeightedRoundRobin;

use crate::config::Policy as PolicyConfig;
use crate::request::Request;
use dataplane::dispatch::BackendId;

/// One pool member as a policy sees it at the time of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub id: BackendId,
    /// Configured weight (0: never chosen).
    pub weight: u32,
    /// Connections the switch handed to this backend and that are not closed yet.
    pub active: u32,
    /// Last LOAD report from the agent: active connections and the report's age.
    pub report: Option<(u32, Duration)>,
    /// Connections handed to it since that report (the report cannot know them yet).
    pub since_report: u32,
    /// Healthy, not drained, not excluded for this request, weight > 0.
    pub usable: bool,
    /// Would be usable, but this request already failed on it (THOP NACK or
    /// timeout). Consistent hashing keeps such members in its table so a retry
    /// does not reshuffle other keys.
    pub excluded: bool,
}

impl MemberView {
    /// Load estimate: a fresh agent report plus what we sent since, else our own count.
    pub fn load(&self, max_report_age: Option<Duration>) -> u32 {
        match (self.report, max_report_age) {
            (Some((active, age)), Some(max)) if age <= max => {
                active.saturating_add(self.since_report)
            }
            _ => self.active,
        }
    }
}

/// What a policy may look at besides the members.
#[derive(Debug, Clone, Copy)]
pub struct PickCtx {
    pub now: Instant,
    pub client: IpAddr,
}

/// A pool's dispatch policy.
pub trait DispatchPolicy: Send + Sync {
    /// The member to send `req` to, or `None` when no member is usable.
    fn pick(&mut self, members: &[MemberView], req: &Request<'_>, ctx: &PickCtx) -> Option<usize>;
    /// The same pick from immutable state only, for a policy [`prepare`]d
    /// for exactly these members: `Some(pick)` equals what [`pick`] returns;
    /// `None` when this request needs mutable state (a cursor, load
    /// counts) or the policy was prepared for other members. Never
    /// allocates (it runs on workers).
    ///
    /// [`prepare`]: DispatchPolicy::prepare
    /// [`pick`]: DispatchPolicy::pick
    fn pick_shared(
        &self,
        _members: &[MemberView],
        _req: &Request<'_>,
        _ctx: &PickCtx,
    ) -> Option<Option<usize>> {
        None
    }
    /// Builds what [`DispatchPolicy::pick_shared`] reads (e.g. the Maglev
    /// table) for `members`.
    fn prepare(&mut self, _members: &[MemberView]) {}
    /// Name for logs and metrics.
    fn kind(&self) -> &'static str;
}

/// Builds the policy of a pool whose members are `names` (in pool order).
pub fn build(cfg: &PolicyConfig, names: &[String]) -> Box<dyn DispatchPolicy> {
    match cfg {
        PolicyConfig::WeightedRoundRobin(_) => Box::new(WeightedRoundRobin::new(names.len())),
        PolicyConfig::LeastConnections(p) => Box::new(LeastConnections::new(p)),
        PolicyConfig::Lard(p) => Box::new(Lard::new(p)),
        PolicyConfig::LardR(p) => Box::new(LardR::new(p)),
        PolicyConfig::Cap(p) => Box::new(Cap::new(p)),
        PolicyConfig::Maglev(p) => Box::new(Maglev::new(p, names)),
        PolicyConfig::Sticky(p) => Box::new(Sticky::new(p, names)),
    }
}

/// Index of the usable member with the least load relative to weight, ties
/// broken by the lowest index after `start` (so equal members rotate).
pub(crate) fn least_loaded(
    members: &[MemberView],
    start: usize,
    load: impl Fn(&MemberView) -> u32,
) -> Option<usize> {
    let n = members.len();
    let mut best: Option<(usize, u64, u64)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let m = &members[i];
        if !m.usable {
            continue;
        }
        let (l, w) = (u64::from(load(m)), u64::from(m.weight.max(1)));
        // Compare l/w < bl/bw without division.
        match best {
            Some((_, bl, bw)) if l * bw >= bl * w => {}
            _ => best = Some((i, l, w)),
        }
    }
    best.map(|(i, _, _)| i)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// `n` usable members of weight 1 and no load.
    pub fn members(n: usize) -> Vec<MemberView> {
        (0..n)
            .map(|i| MemberView {
                id: i as u32,
                weight: 1,
                active: 0,
                report: None,
                since_report: 0,
                usable: true,
                excluded: false,
            })
            .collect()
    }

    pub fn ctx() -> PickCtx {
        PickCtx {
            now: Instant::now(),
            client: "198.18.0.101".parse().unwrap(),
        }
    }

    pub fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: example\r\n\r\n").into_bytes()
    }
}
