//! Sticky sessions by cookie.
//!
//! Responses never pass the switch, so it cannot set a cookie itself; the
//! application does (e.g. nginx `add_header Set-Cookie "BATON_BACKEND=app-1"`).
//! A request whose cookie names a usable pool member goes there. A cookie
//! with any other value (an opaque session id such as `JSESSIONID`) is hashed
//! onto the pool with Maglev, so a session stays on one server without the
//! application's help, and only sessions of a removed server move. Requests
//! without the cookie go to the fallback policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::maglev::HashKey;
use super::wrr::WrrParams;
use super::{
    maglev::Maglev, DispatchPolicy, LocalMode, MemberView, ParamChecks, PickCtx, Policy,
    PolicyParams,
};
use crate::request::Request;

/// Sticky-session parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StickyParams {
    /// Cookie whose value names the backend (the application sets it, e.g. `BATON=app-1`).
    #[serde(default = "d_cookie")]
    pub cookie: String,
    /// Policy for requests without a valid cookie (any but `sticky`).
    #[serde(default = "d_fallback")]
    pub fallback: Box<Policy>,
}

impl Default for StickyParams {
    fn default() -> Self {
        Self {
            cookie: d_cookie(),
            fallback: d_fallback(),
        }
    }
}

fn d_cookie() -> String {
    "BATON_BACKEND".to_string()
}
fn d_fallback() -> Box<Policy> {
    Box::new(Policy::WeightedRoundRobin(WrrParams {}))
}

impl PolicyParams for StickyParams {
    fn key(&self) -> &'static str {
        "sticky"
    }
    fn build(&self, names: &[String]) -> Box<dyn DispatchPolicy> {
        Box::new(Sticky::new(self, names))
    }
    fn check(&self, n_backends: usize, out: &mut ParamChecks) {
        if self.cookie.is_empty() || self.cookie.contains([';', '=', ' ']) {
            out.err(self.key(), "cookie", "must be a cookie name");
        }
        if matches!(*self.fallback, Policy::Sticky(_)) {
            out.err(self.key(), "fallback.sticky", "sticky cannot be nested");
        } else {
            out.nested(self.key(), "fallback", &self.fallback, n_backends);
        }
    }
    fn local_mode(&self) -> LocalMode {
        match self.fallback.local_mode() {
            LocalMode::SharedThenWrr => LocalMode::SharedThenWrr,
            // A cookie is decided locally; without one, the fallback's
            // `pick_shared` says (a stateful fallback declines).
            LocalMode::Shared | LocalMode::Control => LocalMode::Shared,
        }
    }
}

/// Sticky sessions.
pub struct Sticky {
    cookie: String,
    names: Vec<String>,
    hash: Maglev,
    fallback: Box<dyn DispatchPolicy>,
}

impl Sticky {
    pub fn new(p: &StickyParams, names: &[String]) -> Self {
        Self {
            cookie: p.cookie.clone(),
            names: names.to_vec(),
            hash: Maglev::with_size(HashKey::Url, 65537, names),
            fallback: p.fallback.params().build(names),
        }
    }
}

impl DispatchPolicy for Sticky {
    fn pick(&mut self, members: &[MemberView], req: &Request<'_>, ctx: &PickCtx) -> Option<usize> {
        if let Some(v) = req.cookie(&self.cookie).filter(|v| !v.is_empty()) {
            if let Some(i) = self.names.iter().position(|n| n == v) {
                if members.get(i).is_some_and(|m| m.usable) {
                    return Some(i);
                }
            }
            return self.hash.pick_hash(members, super::key_hash(v.as_bytes()));
        }
        self.fallback.pick(members, req, ctx)
    }

    fn pick_shared(
        &self,
        members: &[MemberView],
        req: &Request<'_>,
        ctx: &PickCtx,
    ) -> Option<Option<usize>> {
        if let Some(v) = req.cookie(&self.cookie).filter(|v| !v.is_empty()) {
            if let Some(i) = self.names.iter().position(|n| n == v) {
                if members.get(i).is_some_and(|m| m.usable) {
                    return Some(Some(i));
                }
            }
            return self
                .hash
                .pick_hash_built(members, super::key_hash(v.as_bytes()));
        }
        self.fallback.pick_shared(members, req, ctx)
    }

    fn prepare(&mut self, members: &[MemberView]) {
        if members.len() == self.names.len() {
            self.hash.ensure(members);
        }
        self.fallback.prepare(members);
    }

    fn kind(&self) -> &'static str {
        "sticky"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn sticky(n: usize) -> Sticky {
        let names: Vec<String> = (0..n).map(|i| format!("app-{i}")).collect();
        Sticky::new(&StickyParams::default(), &names)
    }

    fn with_cookie(path: &str, cookie: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nCookie: theme=dark; {cookie}\r\n\r\n")
            .into_bytes()
    }

    #[test]
    fn a_cookie_naming_a_backend_pins_every_request_to_it() {
        let mut p = sticky(3);
        let m = members(3);
        for path in ["/a", "/b", "/c", "/d"] {
            let raw = with_cookie(path, "BATON_BACKEND=app-2");
            assert_eq!(p.pick(&m, &Request::parse(&raw).unwrap(), &ctx()), Some(2));
        }
    }

    #[test]
    fn an_opaque_session_cookie_stays_on_one_backend_and_moves_only_when_it_fails() {
        let mut p = sticky(3);
        let mut m = members(3);
        let mut homes = Vec::new();
        for s in 0..50 {
            let raw = with_cookie("/x", &format!("BATON_BACKEND=sess{s}"));
            let req = Request::parse(&raw).unwrap();
            let home = p.pick(&m, &req, &ctx()).unwrap();
            for _ in 0..5 {
                assert_eq!(p.pick(&m, &req, &ctx()), Some(home));
            }
            homes.push(home);
        }
        m[0].usable = false;
        for (s, home) in homes.iter().enumerate() {
            let raw = with_cookie("/x", &format!("BATON_BACKEND=sess{s}"));
            let got = p.pick(&m, &Request::parse(&raw).unwrap(), &ctx()).unwrap();
            if *home != 0 {
                assert_eq!(got, *home, "session {s} moved although its backend is up");
            } else {
                assert_ne!(got, 0);
            }
        }
    }

    #[test]
    fn no_cookie_uses_the_fallback_and_a_dead_named_backend_is_avoided() {
        let mut p = sticky(2);
        let mut m = members(2);
        let raw = get("/");
        let req = Request::parse(&raw).unwrap();
        let picks: Vec<_> = (0..4).map(|_| p.pick(&m, &req, &ctx()).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        m[1].usable = false;
        let raw = with_cookie("/", "BATON_BACKEND=app-1");
        assert_eq!(p.pick(&m, &Request::parse(&raw).unwrap(), &ctx()), Some(0));
    }
}
