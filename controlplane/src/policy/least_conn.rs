//! Least connections: the usable member with the fewest active connections
//! relative to its weight. The count is the switch's own (handed off, not yet
//! closed); when the agent's LOAD report is fresh, the estimate is the agent's
//! count plus what the switch sent since the report, because an agent also
//! sees connections that did not come through this switch (keep-alive reuse,
//! other switches). Ties rotate so equal members share the load.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{least_loaded, DispatchPolicy, MemberView, ParamChecks, PickCtx, PolicyParams};
use crate::config::units::DurationStr;
use crate::request::Request;

/// Least-connections parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeastConnParams {
    /// Use agents' LOAD reports (active connections) when fresh.
    #[serde(default = "d_true")]
    pub use_load_reports: bool,
    /// A LOAD report older than this is ignored (the switch's own count is used).
    #[serde(default = "d_load_age")]
    pub load_report_max_age: DurationStr,
}

impl Default for LeastConnParams {
    fn default() -> Self {
        Self {
            use_load_reports: true,
            load_report_max_age: d_load_age(),
        }
    }
}

fn d_true() -> bool {
    true
}
fn d_load_age() -> DurationStr {
    DurationStr::secs(3)
}

impl PolicyParams for LeastConnParams {
    fn key(&self) -> &'static str {
        "least_connections"
    }
    fn build(&self, _names: &[String]) -> Box<dyn DispatchPolicy> {
        Box::new(LeastConnections::new(self))
    }
    fn check(&self, _n_backends: usize, out: &mut ParamChecks) {
        if self.load_report_max_age.0.is_zero() {
            out.err(self.key(), "load_report_max_age", "must be positive");
        }
    }
}

/// Least connections.
#[derive(Debug)]
pub struct LeastConnections {
    max_age: Option<Duration>,
    next: usize,
}

impl LeastConnections {
    pub fn new(p: &LeastConnParams) -> Self {
        Self {
            max_age: p.use_load_reports.then_some(p.load_report_max_age.0),
            next: 0,
        }
    }
}

impl DispatchPolicy for LeastConnections {
    fn pick(
        &mut self,
        members: &[MemberView],
        _req: &Request<'_>,
        _ctx: &PickCtx,
    ) -> Option<usize> {
        if members.is_empty() {
            return None;
        }
        let max_age = self.max_age;
        let i = least_loaded(members, self.next % members.len(), |m| m.load(max_age))?;
        self.next = i + 1;
        Some(i)
    }

    fn kind(&self) -> &'static str {
        "least_connections"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::config::DurationStr;

    fn pick(p: &mut LeastConnections, m: &[MemberView]) -> Option<usize> {
        let raw = get("/");
        let req = Request::parse(&raw).unwrap();
        p.pick(m, &req, &ctx())
    }

    #[test]
    fn picks_the_fewest_connections_per_weight() {
        let mut p = LeastConnections::new(&LeastConnParams {
            use_load_reports: false,
            load_report_max_age: DurationStr::secs(3),
        });
        let mut m = members(3);
        m[0].active = 10;
        m[1].active = 4;
        m[2].active = 7;
        assert_eq!(pick(&mut p, &m), Some(1));
        m[2].weight = 2; // 7/2 < 4/1
        assert_eq!(pick(&mut p, &m), Some(2));
        m[2].usable = false;
        assert_eq!(pick(&mut p, &m), Some(1));
    }

    #[test]
    fn a_fresh_load_report_overrides_the_switch_count_and_a_stale_one_does_not() {
        let mut p = LeastConnections::new(&LeastConnParams::default());
        let mut m = members(2);
        // The switch sent few connections to 0, but its agent reports it busy
        // (connections from elsewhere), plus 2 sent since the report.
        m[0].active = 1;
        m[0].report = Some((50, Duration::from_millis(200)));
        m[0].since_report = 2;
        m[1].active = 5;
        m[1].report = Some((5, Duration::from_millis(200)));
        assert_eq!(pick(&mut p, &m), Some(1));
        // The same report, too old: back to the switch's own counts.
        m[0].report = Some((50, Duration::from_secs(10)));
        m[1].report = Some((5, Duration::from_secs(10)));
        assert_eq!(pick(&mut p, &m), Some(0));
    }

    #[test]
    fn ties_rotate() {
        let mut p = LeastConnections::new(&LeastConnParams::default());
        let m = members(3);
        let picks: Vec<_> = (0..6).map(|_| pick(&mut p, &m).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }
}
