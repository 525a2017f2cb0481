//! Dispatch policies: given a pool's members and their state, pick one.
//!
//! A policy lives in one file, `policy/<name>.rs`: its profile parameters
//! (with their defaults and doc comments, which become the JSON Schema and
//! `docs/configuration.md`), the checks `check-config` runs on them
//! ([`PolicyParams::check`]), whether a worker may decide with it locally
//! ([`PolicyParams::local_mode`]), and the policy itself. The `policies!`
//! list in this file is its one registration line: it generates the
//! profile's [`Policy`] enum (one YAML key per policy) and the dispatch from a
//! profile entry to the policy's [`PolicyParams`].
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

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cap::{Cap, CapParams};
pub use lard::{Lard, LardParams, LardR, LardRParams, MIN_LARD_BYTES};
pub use least_conn::{LeastConnParams, LeastConnections};
pub use maglev::{key_hash, HashKey, Maglev, MaglevParams};
pub use sticky::{Sticky, StickyParams};
pub use wrr::{WeightedRoundRobin, WrrParams};

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

/// How a worker may decide for a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalMode {
    /// Needs the control plane's mutable state: always the queue.
    Control,
    /// [`DispatchPolicy::pick_shared`]; the queue when it declines.
    Shared,
    /// `pick_shared`, else the worker's own weighted round-robin (a WRR
    /// pool, or a sticky pool whose fallback is WRR).
    SharedThenWrr,
}

/// What a policy's profile parameters provide.
pub trait PolicyParams {
    /// The policy's key in a profile (`lard_r`): the start of its error paths.
    fn key(&self) -> &'static str;
    /// A fresh policy for a pool whose members are `names` (in pool order).
    fn build(&self, names: &[String]) -> Box<dyn DispatchPolicy>;
    /// What the types alone cannot check, for a pool of `n_backends`.
    fn check(&self, _n_backends: usize, _out: &mut ParamChecks) {}
    /// Whether workers may decide with this policy (default: never).
    fn local_mode(&self) -> LocalMode {
        LocalMode::Control
    }
}

/// Problems found in a policy's parameters, each at a path relative to the
/// pool's `policy` (`lard.t_low`).
#[derive(Debug, Default)]
pub struct ParamChecks {
    prefix: String,
    problems: Vec<(String, String)>,
}

impl ParamChecks {
    /// Records a problem with `field` of the policy keyed `key` ("" for the key itself).
    pub fn err(&mut self, key: &str, field: &str, message: impl Into<String>) {
        let mut path = format!("{}{key}", self.prefix);
        if !field.is_empty() {
            path.push('.');
            path.push_str(field);
        }
        self.problems.push((path, message.into()));
    }

    /// Records a problem when `re` is not a valid regular expression.
    pub fn regex(&mut self, key: &str, field: &str, re: &str) {
        if let Err(e) = regex::Regex::new(re) {
            self.err(key, field, format!("invalid regular expression: {e}"));
        }
    }

    /// Checks a policy nested under `key.field` (a sticky pool's fallback).
    pub fn nested(&mut self, key: &str, field: &str, inner: &Policy, n_backends: usize) {
        let saved = std::mem::take(&mut self.prefix);
        self.prefix = format!("{saved}{key}.{field}.");
        inner.params().check(n_backends, self);
        self.prefix = saved;
    }

    /// The problems as (relative path, message).
    pub fn into_problems(self) -> Vec<(String, String)> {
        self.problems
    }
}

/// Generates the profile's [`Policy`] enum from the list of policies.
macro_rules! policies {
    ($( $(#[$doc:meta])* $variant:ident($params:path), )*) => {
        /// Dispatch policy of a pool: exactly one key.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        pub enum Policy {
            $( $(#[$doc])* $variant($params), )*
        }

        impl Policy {
            /// The parameters, as the policy's own type sees them.
            pub fn params(&self) -> &dyn PolicyParams {
                match self {
                    $( Policy::$variant(p) => p, )*
                }
            }
        }
    };
}

policies! {
    /// Weighted round-robin (smooth, as nginx: no bursts to the heavy server).
    WeightedRoundRobin(wrr::WrrParams),
    /// Fewest active connections relative to weight; the switch's counts, corrected by agents' LOAD reports.
    LeastConnections(least_conn::LeastConnParams),
    /// Locality-aware request distribution (Pai et al., ASPLOS 1998).
    Lard(lard::LardParams),
    /// LARD with replication: a URL maps to a server set (Pai et al., ASPLOS 1998).
    LardR(lard::LardRParams),
    /// Client-aware policy (Casalicchio and Colajanni): URL classes, round-robin per class.
    Cap(cap::CapParams),
    /// Consistent hashing on a request key with a Maglev lookup table.
    Maglev(maglev::MaglevParams),
    /// Sticky sessions by cookie, another policy for the first request.
    Sticky(sticky::StickyParams),
}

impl Default for Policy {
    fn default() -> Self {
        Policy::WeightedRoundRobin(wrr::WrrParams::default())
    }
}

impl Policy {
    /// How workers may decide for a pool with this policy.
    pub fn local_mode(&self) -> LocalMode {
        self.params().local_mode()
    }
}

/// Builds the policy of a pool whose members are `names` (in pool order).
pub fn build(cfg: &Policy, names: &[String]) -> Box<dyn DispatchPolicy> {
    cfg.params().build(names)
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
