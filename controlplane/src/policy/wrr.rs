//! Smooth weighted round-robin (as in nginx): every pick adds each member's
//! weight to its credit, takes the member with the most credit and charges it
//! the total. Over any window of `sum(weights)` picks each member is chosen
//! exactly `weight` times, and heavy members are interleaved, not bunched.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DispatchPolicy, LocalMode, MemberView, PickCtx, PolicyParams};
use crate::request::Request;

/// Weighted round-robin parameters (none yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WrrParams {}

impl PolicyParams for WrrParams {
    fn key(&self) -> &'static str {
        "weighted_round_robin"
    }
    fn build(&self, names: &[String]) -> Box<dyn DispatchPolicy> {
        Box::new(WeightedRoundRobin::new(names.len()))
    }
    fn local_mode(&self) -> LocalMode {
        LocalMode::SharedThenWrr
    }
}

/// Smooth weighted round-robin.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    credit: Vec<i64>,
}

impl WeightedRoundRobin {
    pub fn new(n: usize) -> Self {
        Self { credit: vec![0; n] }
    }

    /// Credits for `n` members (reset when the count changes), so a pick
    /// over `n` members never allocates.
    pub fn resize(&mut self, n: usize) {
        if self.credit.len() != n {
            self.credit = vec![0; n];
        }
    }
}

impl DispatchPolicy for WeightedRoundRobin {
    fn pick(
        &mut self,
        members: &[MemberView],
        _req: &Request<'_>,
        _ctx: &PickCtx,
    ) -> Option<usize> {
        if self.credit.len() != members.len() {
            self.credit = vec![0; members.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, m) in members.iter().enumerate() {
            if !m.usable || m.weight == 0 {
                continue;
            }
            let w = i64::from(m.weight);
            self.credit[i] += w;
            total += w;
            if best.is_none_or(|b| self.credit[i] > self.credit[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.credit[b] -= total;
        Some(b)
    }

    fn kind(&self) -> &'static str {
        "weighted_round_robin"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn each_window_of_total_weight_gives_each_member_its_weight_interleaved() {
        let mut m = members(3);
        m[0].weight = 5;
        m[1].weight = 1;
        m[2].weight = 1;
        let mut p = WeightedRoundRobin::new(3);
        let raw = get("/");
        let req = Request::parse(&raw).unwrap();
        let picks: Vec<usize> = (0..70).map(|_| p.pick(&m, &req, &ctx()).unwrap()).collect();
        for window in picks.chunks(7) {
            let count = |i| window.iter().filter(|&&x| x == i).count();
            assert_eq!((count(0), count(1), count(2)), (5, 1, 1), "{window:?}");
        }
        // Smooth: inside a window the heavy member is interleaved with the
        // others (nginx's a a b a c a a), never five in a row.
        for window in picks.chunks(7) {
            assert!(
                window.windows(3).all(|w| !w.iter().all(|&x| x == 0)),
                "{window:?}"
            );
        }
    }

    #[test]
    fn skips_unusable_and_zero_weight_members() {
        let mut m = members(3);
        m[1].usable = false;
        m[2].weight = 0;
        let mut p = WeightedRoundRobin::new(3);
        let raw = get("/");
        let req = Request::parse(&raw).unwrap();
        for _ in 0..10 {
            assert_eq!(p.pick(&m, &req, &ctx()), Some(0));
        }
        m[0].usable = false;
        assert_eq!(p.pick(&m, &req, &ctx()), None);
    }
}
