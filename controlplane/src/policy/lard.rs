//! LARD and LARD/R: locality-aware request distribution (Pai, Aron, Banga,
//! Svendsen, Druschel, Zwaenepoel, Nahum; ASPLOS 1998, section 2).
//!
//! LARD keeps a URL on one server so its working set stays in that server's
//! cache, and moves it only when the imbalance is worth a cache miss:
//!
//! ```text
//! if server[target] = null:  n, server[target] ← least loaded node
//! else: n ← server[target]
//!       if (n.load > T_high and ∃ node with load < T_low) or n.load ≥ 2·T_high:
//!           n, server[target] ← least loaded node
//! send target to n
//! ```
//!
//! LARD/R replicates a hot URL on a *set* of servers: requests go to the least
//! loaded member of the set; the set grows by the least loaded node under the
//! same condition, and shrinks by its most loaded member once it has not
//! changed for K seconds.
//!
//! Load is the number of active connections the switch handed to a server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{least_loaded, DispatchPolicy, MemberView, ParamChecks, PickCtx, PolicyParams};
use crate::config::units::DurationStr;
use crate::request::Request;
use dataplane::dispatch::BackendId;

/// LARD parameters (loads are active connections per server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LardParams {
    /// T_low: a server below this load is considered lightly loaded.
    #[serde(default = "d_t_low")]
    pub t_low: u32,
    /// T_high: a URL moves off a server above this load if another is under T_low (or any above 2·T_high).
    #[serde(default = "d_t_high")]
    pub t_high: u32,
    /// Number of URL targets remembered; the least recently used is forgotten.
    #[serde(default = "d_url_table")]
    pub max_targets: u32,
    /// Bytes the URL table may hold (each URL counts its length plus 128);
    /// the least recently used URLs are forgotten to stay under it, so a
    /// client sending many distinct long URLs cannot grow it to max_targets × header size.
    #[serde(default = "d_url_table_bytes")]
    pub max_bytes: u64,
}

impl Default for LardParams {
    fn default() -> Self {
        Self {
            t_low: d_t_low(),
            t_high: d_t_high(),
            max_targets: d_url_table(),
            max_bytes: d_url_table_bytes(),
        }
    }
}

/// LARD/R parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LardRParams {
    /// T_low (see LARD).
    #[serde(default = "d_t_low")]
    pub t_low: u32,
    /// T_high (see LARD).
    #[serde(default = "d_t_high")]
    pub t_high: u32,
    /// A server set that has not grown for this long loses its most loaded member.
    #[serde(default = "d_lardr_k")]
    pub shrink_after: DurationStr,
    /// Number of URL targets remembered.
    #[serde(default = "d_url_table")]
    pub max_targets: u32,
    /// Bytes the URL table may hold (see LARD).
    #[serde(default = "d_url_table_bytes")]
    pub max_bytes: u64,
}

impl Default for LardRParams {
    fn default() -> Self {
        Self {
            t_low: d_t_low(),
            t_high: d_t_high(),
            shrink_after: d_lardr_k(),
            max_targets: d_url_table(),
            max_bytes: d_url_table_bytes(),
        }
    }
}

fn d_t_low() -> u32 {
    25
}
fn d_t_high() -> u32 {
    65
}
fn d_url_table() -> u32 {
    100_000
}
fn d_url_table_bytes() -> u64 {
    32 << 20
}
fn d_lardr_k() -> DurationStr {
    DurationStr::secs(20)
}

/// The smallest `max_bytes` a LARD table may have: a few hundred long URLs.
pub const MIN_LARD_BYTES: u64 = 64 * 1024;

fn check_table(
    out: &mut ParamChecks,
    key: &str,
    (t_low, t_high, max_targets, max_bytes): (u32, u32, u32, u64),
) {
    if t_low == 0 || t_low >= t_high {
        out.err(
            key,
            "t_low",
            format!("must satisfy 0 < t_low < t_high (got {t_low} and {t_high})"),
        );
    }
    if max_targets == 0 {
        out.err(key, "max_targets", "must be at least 1");
    }
    if max_bytes < MIN_LARD_BYTES {
        out.err(
            key,
            "max_bytes",
            format!("must be at least {MIN_LARD_BYTES} (got {max_bytes})"),
        );
    }
}

impl PolicyParams for LardParams {
    fn key(&self) -> &'static str {
        "lard"
    }
    fn build(&self, _names: &[String]) -> Box<dyn DispatchPolicy> {
        Box::new(Lard::new(self))
    }
    fn check(&self, _n_backends: usize, out: &mut ParamChecks) {
        let t = (self.t_low, self.t_high, self.max_targets, self.max_bytes);
        check_table(out, self.key(), t);
    }
}

impl PolicyParams for LardRParams {
    fn key(&self) -> &'static str {
        "lard_r"
    }
    fn build(&self, _names: &[String]) -> Box<dyn DispatchPolicy> {
        Box::new(LardR::new(self))
    }
    fn check(&self, _n_backends: usize, out: &mut ParamChecks) {
        let t = (self.t_low, self.t_high, self.max_targets, self.max_bytes);
        check_table(out, self.key(), t);
        if self.shrink_after.0.is_zero() {
            out.err(self.key(), "shrink_after", "must be positive");
        }
    }
}

/// What one remembered URL costs besides its bytes: the hash-map and
/// B-tree slots, the shared string's header and the value (a server id, or
/// LARD/R's small set).
const ENTRY_BYTES: usize = 128;

/// URL → value, bounded in entries and in bytes, least recently used
/// forgotten first. A URL is stored once (shared by the map and the
/// recency order); it is as long as the client made it, up to the largest
/// request header, so the entry count alone would let a client that sends
/// many distinct long URLs hold count × header size.
#[derive(Debug)]
struct LruMap<V> {
    map: HashMap<Arc<str>, (V, u64)>,
    order: BTreeMap<u64, Arc<str>>,
    clock: u64,
    cap: usize,
    max_bytes: usize,
    /// Σ (URL length + [`ENTRY_BYTES`]) over the entries.
    bytes: usize,
}

impl<V> LruMap<V> {
    fn new(cap: usize, max_bytes: u64) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            cap: cap.max(1),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            bytes: 0,
        }
    }

    fn cost(k: &str) -> usize {
        k.len() + ENTRY_BYTES
    }

    fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        self.clock += 1;
        let clock = self.clock;
        let (v, stamp) = self.map.get_mut(k)?;
        if let Some(key) = self.order.remove(stamp) {
            self.order.insert(clock, key);
        }
        *stamp = clock;
        Some(v)
    }

    fn insert(&mut self, k: &str, v: V) {
        self.clock += 1;
        if let Some((old, stamp)) = self.map.get_mut(k) {
            *old = v;
            let key = self.order.remove(stamp);
            *stamp = self.clock;
            if let Some(key) = key {
                self.order.insert(self.clock, key);
            }
            return;
        }
        let key: Arc<str> = Arc::from(k);
        self.bytes += Self::cost(k);
        self.map.insert(Arc::clone(&key), (v, self.clock));
        self.order.insert(self.clock, key);
        // A URL costing more than the whole bound goes too: it is not kept.
        while self.map.len() > self.cap || self.bytes > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.bytes -= Self::cost(&oldest);
            self.map.remove(&oldest);
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

fn index_of(members: &[MemberView], id: BackendId) -> Option<usize> {
    members.iter().position(|m| m.id == id)
}

/// The LARD condition for moving load off a server with load `l`.
fn overloaded(l: u32, members: &[MemberView], t_low: u32, t_high: u32) -> bool {
    (l > t_high && members.iter().any(|m| m.usable && m.active < t_low))
        || l >= t_high.saturating_mul(2)
}

/// Basic LARD.
#[derive(Debug)]
pub struct Lard {
    t_low: u32,
    t_high: u32,
    server: LruMap<BackendId>,
    next: usize,
}

impl Lard {
    pub fn new(p: &LardParams) -> Self {
        Self {
            t_low: p.t_low,
            t_high: p.t_high,
            server: LruMap::new(p.max_targets as usize, p.max_bytes),
            next: 0,
        }
    }

    /// URLs currently assigned.
    pub fn targets(&self) -> usize {
        self.server.len()
    }

    /// Bytes the URL table accounts for (bounded by `max_bytes`).
    pub fn table_bytes(&self) -> usize {
        self.server.bytes()
    }

    fn least(&mut self, members: &[MemberView]) -> Option<usize> {
        let i = least_loaded(members, self.next % members.len().max(1), |m| m.active)?;
        self.next = i + 1;
        Some(i)
    }
}

impl DispatchPolicy for Lard {
    fn pick(&mut self, members: &[MemberView], req: &Request<'_>, _ctx: &PickCtx) -> Option<usize> {
        let target = req.target.as_ref();
        let current = self
            .server
            .get_mut(target)
            .map(|id| *id)
            .and_then(|id| index_of(members, id));
        let n = match current {
            Some(n)
                if members[n].usable
                    && !overloaded(members[n].active, members, self.t_low, self.t_high) =>
            {
                n
            }
            _ => self.least(members)?,
        };
        if current != Some(n) {
            self.server.insert(target, members[n].id);
        }
        Some(n)
    }

    fn kind(&self) -> &'static str {
        "lard"
    }
}

#[derive(Debug, Clone)]
struct ServerSet {
    ids: Vec<BackendId>,
    last_mod: Instant,
}

/// LARD with replication.
#[derive(Debug)]
pub struct LardR {
    t_low: u32,
    t_high: u32,
    k: Duration,
    sets: LruMap<ServerSet>,
    next: usize,
}

impl LardR {
    pub fn new(p: &LardRParams) -> Self {
        Self {
            t_low: p.t_low,
            t_high: p.t_high,
            k: p.shrink_after.0,
            sets: LruMap::new(p.max_targets as usize, p.max_bytes),
            next: 0,
        }
    }

    /// URLs currently remembered.
    pub fn targets(&self) -> usize {
        self.sets.len()
    }

    /// Bytes the URL table accounts for (bounded by `max_bytes`).
    pub fn table_bytes(&self) -> usize {
        self.sets.bytes()
    }

    /// The server set of `target`, for tests and `/backends`.
    pub fn set_of(&mut self, target: &str) -> Vec<BackendId> {
        self.sets
            .get_mut(target)
            .map(|s| s.ids.clone())
            .unwrap_or_default()
    }
}

impl DispatchPolicy for LardR {
    fn pick(&mut self, members: &[MemberView], req: &Request<'_>, ctx: &PickCtx) -> Option<usize> {
        let (t_low, t_high, k) = (self.t_low, self.t_high, self.k);
        let start = self.next % members.len().max(1);
        let overall = least_loaded(members, start, |m| m.active);
        let mut set = self
            .sets
            .get_mut(&req.target)
            .cloned()
            .unwrap_or(ServerSet {
                ids: Vec::new(),
                last_mod: ctx.now,
            });
        let before = set.ids.len();
        set.ids
            .retain(|id| index_of(members, *id).is_some_and(|i| members[i].usable));
        let mut changed = set.ids.len() != before;

        let n = if set.ids.is_empty() {
            let n = overall?;
            set.ids.push(members[n].id);
            changed = true;
            n
        } else {
            let idx: Vec<usize> = set
                .ids
                .iter()
                .filter_map(|id| index_of(members, *id))
                .collect();
            let mut n = *idx
                .iter()
                .min_by_key(|&&i| members[i].active)
                .expect("set is not empty");
            let m = *idx
                .iter()
                .max_by_key(|&&i| members[i].active)
                .expect("set is not empty");
            if overloaded(members[n].active, members, t_low, t_high) {
                if let Some(p) = overall {
                    if !set.ids.contains(&members[p].id) {
                        set.ids.push(members[p].id);
                        changed = true;
                    }
                    n = p;
                }
            }
            if !changed
                && set.ids.len() > 1
                && ctx.now.saturating_duration_since(set.last_mod) > k
                && m != n
            {
                set.ids.retain(|id| *id != members[m].id);
                changed = true;
            }
            n
        };
        if changed {
            set.last_mod = ctx.now;
        }
        self.next = n + 1;
        self.sets.insert(&req.target, set);
        Some(n)
    }

    fn kind(&self) -> &'static str {
        "lard_r"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::config::DurationStr;

    fn lard() -> Lard {
        Lard::new(&LardParams {
            t_low: 25,
            t_high: 65,
            max_targets: 1000,
            ..LardParams::default()
        })
    }

    fn pick(p: &mut dyn DispatchPolicy, m: &[MemberView], path: &str, c: &PickCtx) -> usize {
        let raw = get(path);
        let req = Request::parse(&raw).unwrap();
        p.pick(m, &req, c).unwrap()
    }

    #[test]
    fn lard_keeps_a_url_on_its_server_until_t_high_is_passed_while_another_is_under_t_low() {
        let mut p = lard();
        let mut m = members(3);
        let c = ctx();
        m[0].active = 10;
        m[1].active = 5;
        m[2].active = 20;
        // First request of /a: the least loaded node.
        assert_eq!(pick(&mut p, &m, "/a", &c), 1);
        // Its load grows up to and past T_high, but nobody is under T_low: stays.
        for load in [30, 65, 66, 100, 129] {
            m[1].active = load;
            m[0].active = 30;
            m[2].active = 40;
            assert_eq!(pick(&mut p, &m, "/a", &c), 1, "load {load}");
        }
        // Past T_high and node 0 drops under T_low: /a moves to the least loaded.
        m[1].active = 70;
        m[0].active = 24;
        assert_eq!(pick(&mut p, &m, "/a", &c), 0);
        // And stays there (new home) even when node 1 is idle again.
        m[1].active = 0;
        m[0].active = 60;
        assert_eq!(pick(&mut p, &m, "/a", &c), 0);
        // At 2·T_high it moves even with no node under T_low.
        m[0].active = 130;
        m[1].active = 50;
        m[2].active = 40;
        assert_eq!(pick(&mut p, &m, "/a", &c), 2);
    }

    #[test]
    fn lard_partitions_urls_and_moves_off_unusable_servers() {
        let mut p = lard();
        let mut m = members(3);
        let c = ctx();
        let homes: Vec<usize> = (0..30)
            .map(|i| pick(&mut p, &m, &format!("/u{i}"), &c))
            .collect();
        // Same URL, same server, whatever else happens at light load.
        for i in 0..30 {
            m[i % 3].active += 1;
            assert_eq!(pick(&mut p, &m, &format!("/u{i}"), &c), homes[i]);
        }
        // Spread over all nodes.
        for n in 0..3 {
            assert!(homes.contains(&n));
        }
        let victim = homes[0];
        m[victim].usable = false;
        assert_ne!(pick(&mut p, &m, "/u0", &c), victim);
        assert_eq!(p.targets(), 30);
    }

    #[test]
    fn lard_table_is_bounded() {
        let mut p = Lard::new(&LardParams {
            t_low: 25,
            t_high: 65,
            max_targets: 10,
            ..LardParams::default()
        });
        let m = members(2);
        let c = ctx();
        for i in 0..100 {
            pick(&mut p, &m, &format!("/x{i}"), &c);
        }
        assert_eq!(p.targets(), 10);
    }

    #[test]
    fn lard_r_grows_the_set_of_a_hot_url_and_shrinks_it_after_k() {
        let mut p = LardR::new(&LardRParams {
            t_low: 25,
            t_high: 65,
            shrink_after: DurationStr::secs(20),
            max_targets: 100,
            ..LardRParams::default()
        });
        let mut m = members(3);
        let t0 = Instant::now();
        let at = |s: u64| PickCtx {
            now: t0 + Duration::from_secs(s),
            client: ctx().client,
        };
        m[0].active = 0;
        m[1].active = 10;
        m[2].active = 10;
        assert_eq!(pick(&mut p, &m, "/hot", &at(0)), 0);
        assert_eq!(p.set_of("/hot"), vec![0]);
        // Node 0 passes T_high while node 1 is under T_low: node 1 joins the set.
        m[0].active = 70;
        m[1].active = 5;
        assert_eq!(pick(&mut p, &m, "/hot", &at(1)), 1);
        assert_eq!(p.set_of("/hot"), vec![0, 1]);
        // Within the set, the least loaded member serves.
        m[0].active = 30;
        m[1].active = 40;
        assert_eq!(pick(&mut p, &m, "/hot", &at(2)), 0);
        // Unchanged for more than K: the most loaded member leaves the set.
        assert_eq!(pick(&mut p, &m, "/hot", &at(30)), 0);
        assert_eq!(p.set_of("/hot"), vec![0]);
    }

    /// A client sending many distinct long URLs (each as long as a request
    /// header allows) must not make the table hold count × length bytes.
    #[test]
    fn lard_table_is_bounded_in_bytes_by_distinct_long_urls() {
        let max_bytes = 4 << 20;
        let mut p = Lard::new(&LardParams {
            max_targets: 100_000,
            max_bytes,
            ..LardParams::default()
        });
        let mut r = LardR::new(&LardRParams {
            max_targets: 100_000,
            max_bytes,
            ..LardRParams::default()
        });
        let m = members(2);
        let c = ctx();
        let filler = "x".repeat(8 * 1024);
        let mut peak = (0, 0);
        for i in 0..100_000 {
            let url = format!("/{i}/{filler}");
            pick(&mut p, &m, &url, &c);
            pick(&mut r, &m, &url, &c);
            peak = (peak.0.max(p.table_bytes()), peak.1.max(r.table_bytes()));
        }
        assert!(
            peak.0 <= max_bytes as usize && peak.1 <= max_bytes as usize,
            "LARD table peaked at {} bytes, LARD/R at {}, bound {max_bytes}",
            peak.0,
            peak.1
        );
        // Still useful: the most recent URLs are remembered, and stay put.
        assert!(p.targets() >= 400, "{} URLs remembered", p.targets());
        let last = format!("/99999/{filler}");
        let home = pick(&mut p, &m, &last, &c);
        assert_eq!(pick(&mut p, &m, &last, &c), home);
        assert_eq!(r.set_of(&last).len(), 1);
    }

    #[test]
    fn byte_accounting_is_exact_through_reinsertion_and_eviction() {
        let mut t: LruMap<u32> = LruMap::new(3, u64::MAX);
        t.insert("/a", 1);
        t.insert("/bb", 2);
        t.insert("/a", 3); // replaced: counted once
        assert_eq!(t.bytes(), 2 + 3 + 2 * ENTRY_BYTES);
        t.insert("/ccc", 4);
        t.insert("/dddd", 5); // evicts /bb, the least recently used
        assert_eq!(t.len(), 3);
        assert_eq!(t.get_mut("/bb"), None);
        assert_eq!(t.bytes(), 2 + 4 + 5 + 3 * ENTRY_BYTES);
    }
}
