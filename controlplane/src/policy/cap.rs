//! CAP, the client-aware policy (Casalicchio and Colajanni, "A client-aware
//! dispatching algorithm for Web clusters providing multiple services",
//! WWW10, 2001).
//!
//! The switch cannot know a request's cost, but it can guess its *kind* from
//! the URL: static content, CPU-bound (dynamic pages), disk-bound (database
//! queries, large files). CAP keeps one round-robin cursor per class, so every
//! server receives an even share of each kind of work and no server ends up
//! with all the expensive requests, as a single round-robin can when classes
//! arrive in a pattern.

use regex::RegexSet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DispatchPolicy, MemberView, ParamChecks, PickCtx, PolicyParams};
use crate::request::Request;

/// CAP parameters: URL patterns per class. A path matching a static pattern
/// is static even if a CPU- or disk-bound pattern matches it too; one that
/// matches no pattern is static.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapParams {
    /// Regexes (on the path) for static content; checked first, so they
    /// carve exceptions out of the other classes (`\.png$` under `^/cgi-bin/`).
    #[serde(default)]
    pub static_patterns: Vec<String>,
    /// Regexes for CPU-bound (dynamic) requests.
    #[serde(default)]
    pub cpu_bound: Vec<String>,
    /// Regexes for disk-bound (database, large files) requests.
    #[serde(default)]
    pub disk_bound: Vec<String>,
}

impl PolicyParams for CapParams {
    fn key(&self) -> &'static str {
        "cap"
    }
    fn build(&self, _names: &[String]) -> Box<dyn DispatchPolicy> {
        Box::new(Cap::new(self))
    }
    fn check(&self, _n_backends: usize, out: &mut ParamChecks) {
        for (field, list) in [
            ("static_patterns", &self.static_patterns),
            ("cpu_bound", &self.cpu_bound),
            ("disk_bound", &self.disk_bound),
        ] {
            for (k, re) in list.iter().enumerate() {
                out.regex(self.key(), &format!("{field}[{k}]"), re);
            }
        }
    }
}

/// A request class of CAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Static = 0,
    CpuBound = 1,
    DiskBound = 2,
}

impl Class {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Static => "static",
            Class::CpuBound => "cpu_bound",
            Class::DiskBound => "disk_bound",
        }
    }
}

/// The client-aware policy.
#[derive(Debug)]
pub struct Cap {
    cpu: RegexSet,
    disk: RegexSet,
    static_: RegexSet,
    cursor: [usize; 3],
}

impl Cap {
    /// Patterns were checked by validation; one that does not compile matches nothing.
    pub fn new(p: &CapParams) -> Self {
        let set = |v: &[String]| RegexSet::new(v).unwrap_or_else(|_| RegexSet::empty());
        Self {
            cpu: set(&p.cpu_bound),
            disk: set(&p.disk_bound),
            static_: set(&p.static_patterns),
            cursor: [0; 3],
        }
    }

    /// The class of a path: static patterns first (an exception carved out
    /// of the other classes), then CPU-bound, then disk-bound; a path
    /// matching none is static.
    pub fn classify(&self, path: &str) -> Class {
        if self.static_.is_match(path) {
            Class::Static
        } else if self.cpu.is_match(path) {
            Class::CpuBound
        } else if self.disk.is_match(path) {
            Class::DiskBound
        } else {
            Class::Static
        }
    }
}

impl DispatchPolicy for Cap {
    fn pick(&mut self, members: &[MemberView], req: &Request<'_>, _ctx: &PickCtx) -> Option<usize> {
        // A ClientHello has no path: its server name is what is classed.
        let url = if req.tls.is_some() {
            req.target.as_ref()
        } else {
            req.path
        };
        let class = self.classify(url) as usize;
        let n = members.len();
        for k in 0..n {
            let i = (self.cursor[class] + k) % n;
            if members[i].usable {
                self.cursor[class] = i + 1;
                return Some(i);
            }
        }
        None
    }

    fn kind(&self) -> &'static str {
        "cap"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::WeightedRoundRobin;
    use super::*;

    fn cap() -> Cap {
        Cap::new(&CapParams {
            static_patterns: vec![r"\.(png|css|html)$".into()],
            cpu_bound: vec![r"^/cgi/".into(), r"\.php$".into()],
            disk_bound: vec![r"^/db/".into()],
        })
    }

    #[test]
    fn classifies_by_configured_patterns() {
        let c = cap();
        assert_eq!(c.classify("/cgi/render"), Class::CpuBound);
        assert_eq!(c.classify("/x/index.php"), Class::CpuBound);
        assert_eq!(c.classify("/db/query"), Class::DiskBound);
        assert_eq!(c.classify("/img/a.png"), Class::Static);
        assert_eq!(c.classify("/unknown"), Class::Static);
        // A static pattern wins over the dynamic classes.
        assert_eq!(c.classify("/cgi/logo.png"), Class::Static);
        assert_eq!(c.classify("/db/report.html"), Class::Static);
    }

    /// The defining property: each server gets an even share of every class,
    /// even when classes arrive in a pattern that makes plain round-robin
    /// send every CPU-bound request to the same server.
    #[test]
    fn every_server_gets_an_even_share_of_each_class() {
        let m = members(2);
        let paths = ["/img/a.png", "/cgi/heavy"];
        let mut per_class_cap = [[0u32; 2]; 2];
        let mut per_class_rr = [[0u32; 2]; 2];
        let mut c = cap();
        let mut rr = WeightedRoundRobin::new(2);
        for i in 0..100 {
            let raw = get(paths[i % 2]);
            let req = Request::parse(&raw).unwrap();
            per_class_cap[i % 2][c.pick(&m, &req, &ctx()).unwrap()] += 1;
            per_class_rr[i % 2][rr.pick(&m, &req, &ctx()).unwrap()] += 1;
        }
        assert_eq!(per_class_cap, [[25, 25], [25, 25]]);
        // Plain round-robin: all static to one server, all CPU-bound to the other.
        assert_eq!(per_class_rr, [[50, 0], [0, 50]]);
    }

    #[test]
    fn skips_unusable_servers_within_a_class() {
        let mut m = members(3);
        m[1].usable = false;
        let mut c = cap();
        let raw = get("/db/q");
        let req = Request::parse(&raw).unwrap();
        let picks: Vec<_> = (0..4).map(|_| c.pick(&m, &req, &ctx()).unwrap()).collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
    }
}
