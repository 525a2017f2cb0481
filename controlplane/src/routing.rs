//! Routing rules compiled from the profile: request → pool.
//!
//! Rules of a service are tried in order; the first whose conditions all hold
//! chooses the pool, else the service's default pool. Conditions of one kind
//! listed several times are alternatives (`extension: [png, jpg]`); different
//! kinds are all required.

use std::net::{IpAddr, SocketAddr};

use regex::Regex;

use crate::config::{Match, Profile};
use crate::request::Request;

/// Index of a pool in the profile's `pools` list.
pub type PoolIndex = u16;

/// Which rule chose the pool (for access logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub pool: PoolIndex,
    /// Index of the rule in its service, `None` for the default pool.
    pub rule: Option<usize>,
    /// Index of the service.
    pub service: usize,
}

#[derive(Debug)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: the suffix `.example.com`.
    Suffix(String),
}

#[derive(Debug)]
enum ValueCond {
    Present,
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct CompiledRule {
    name: String,
    pool: PoolIndex,
    hosts: Vec<HostPattern>,
    prefixes: Vec<String>,
    exact: Vec<String>,
    regex: Option<Regex>,
    extensions: Vec<String>,
    methods: Vec<String>,
    headers: Vec<(String, ValueCond)>,
    cookies: Vec<(String, Option<String>)>,
    snis: Vec<HostPattern>,
    alpn: Vec<String>,
}

#[derive(Debug)]
struct ServiceRoutes {
    name: String,
    /// Every VIP of the service (one per family).
    vips: Vec<IpAddr>,
    port: u16,
    rules: Vec<CompiledRule>,
    default_pool: PoolIndex,
}

/// Every service's compiled rules.
#[derive(Debug)]
pub struct Router {
    services: Vec<ServiceRoutes>,
}

/// A rule that did not compile (validation catches these first).
#[derive(Debug, thiserror::Error)]
#[error("`{path}`: {message}")]
pub struct RouteError {
    pub path: String,
    pub message: String,
}

impl Router {
    /// Compiles the rules of every service of a validated profile.
    pub fn new(p: &Profile) -> Result<Self, RouteError> {
        let pool_index = |name: &str, path: String| -> Result<PoolIndex, RouteError> {
            p.pools
                .iter()
                .position(|q| q.name == name)
                .map(|i| i as PoolIndex)
                .ok_or(RouteError {
                    path,
                    message: format!("no pool named `{name}`"),
                })
        };
        let mut services = Vec::new();
        for (i, s) in p.services.iter().enumerate() {
            let mut rules = Vec::new();
            for (j, r) in s.rules.iter().enumerate() {
                let at = format!("services[{i}].rules[{j}]");
                let pool = pool_index(&r.pool, format!("{at}.pool"))?;
                let name = r.name.clone().unwrap_or_else(|| format!("rule{j}"));
                rules.push(compile_rule(name, pool, &r.matches, &at)?);
            }
            services.push(ServiceRoutes {
                name: s.name.clone(),
                vips: s.vip.as_slice().to_vec(),
                port: s.port,
                rules,
                default_pool: pool_index(&s.default_pool, format!("services[{i}].default_pool"))?,
            });
        }
        Ok(Self { services })
    }

    /// The pool for `req` arriving at `vip`; `None` when `vip` is no service.
    /// A service with a VIP of each family routes requests arriving at
    /// either the same way. Only the address and port count (not an IPv6
    /// socket address's flow label or scope), and an IPv4-mapped address
    /// is its IPv4 one.
    pub fn route(&self, vip: SocketAddr, req: &Request<'_>) -> Option<Route> {
        let si = self.service_at(vip)?;
        let svc = &self.services[si];
        for (ri, rule) in svc.rules.iter().enumerate() {
            if rule.matches(req) {
                return Some(Route {
                    pool: rule.pool,
                    rule: Some(ri),
                    service: si,
                });
            }
        }
        Some(Route {
            pool: svc.default_pool,
            rule: None,
            service: si,
        })
    }

    /// Index of the service listening on `vip` (either of its VIPs).
    pub fn service_at(&self, vip: SocketAddr) -> Option<usize> {
        let ip = vip.ip().to_canonical();
        self.services
            .iter()
            .position(|s| s.port == vip.port() && s.vips.contains(&ip))
    }

    /// Name of a rule (or `default`) for logs.
    pub fn rule_name(&self, route: &Route) -> &str {
        match route.rule {
            Some(r) => &self.services[route.service].rules[r].name,
            None => "default",
        }
    }

    /// Name of a service.
    pub fn service_name(&self, service: usize) -> &str {
        &self.services[service].name
    }
}

fn compile_rule(
    name: String,
    pool: PoolIndex,
    m: &Match,
    at: &str,
) -> Result<CompiledRule, RouteError> {
    let re = |path: String, s: &str| {
        Regex::new(s).map_err(|e| RouteError {
            path,
            message: e.to_string(),
        })
    };
    let patterns = |names: &[String]| -> Vec<HostPattern> {
        names
            .iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) => HostPattern::Suffix(suffix.to_string()),
                    None => HostPattern::Exact(h.trim_end_matches('.').to_string()),
                }
            })
            .collect()
    };
    let hosts = patterns(&m.host);
    let mut headers = Vec::new();
    for (k, h) in m.header.iter().enumerate() {
        let cond = match (&h.value, &h.regex) {
            (Some(v), _) => ValueCond::Exact(v.clone()),
            (None, Some(r)) => ValueCond::Regex(re(format!("{at}.match.header[{k}].regex"), r)?),
            (None, None) => ValueCond::Present,
        };
        headers.push((h.name.clone(), cond));
    }
    Ok(CompiledRule {
        name,
        pool,
        hosts,
        prefixes: m.path_prefix.clone(),
        exact: m.path_exact.clone(),
        regex: m
            .path_regex
            .as_deref()
            .map(|r| re(format!("{at}.match.path_regex"), r))
            .transpose()?,
        extensions: m.extension.iter().map(|e| e.to_ascii_lowercase()).collect(),
        methods: m.method.clone(),
        headers,
        cookies: m
            .cookie
            .iter()
            .map(|c| (c.name.clone(), c.value.clone()))
            .collect(),
        snis: patterns(&m.sni),
        alpn: m.alpn.clone(),
    })
}

impl HostPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(e) => name == e,
            HostPattern::Suffix(s) => name.ends_with(s.as_str()),
        }
    }
}

impl CompiledRule {
    fn matches(&self, req: &Request<'_>) -> bool {
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h.matches(&req.host)) {
            return false;
        }
        if !self.snis.is_empty() {
            let Some(sni) = req.sni() else {
                return false;
            };
            if !self.snis.iter().any(|h| h.matches(sni)) {
                return false;
            }
        }
        if !self.alpn.is_empty() && !req.alpn().iter().any(|a| self.alpn.contains(a)) {
            return false;
        }
        if !self.prefixes.is_empty()
            && !self
                .prefixes
                .iter()
                .any(|p| req.path.starts_with(p.as_str()))
        {
            return false;
        }
        if !self.exact.is_empty() && !self.exact.iter().any(|p| req.path == p) {
            return false;
        }
        if let Some(re) = &self.regex {
            if !re.is_match(req.path) {
                return false;
            }
        }
        if !self.extensions.is_empty() {
            let Some(ext) = req.extension() else {
                return false;
            };
            if !self.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return false;
        }
        for (name, cond) in &self.headers {
            let Some(v) = req.header(name) else {
                return false;
            };
            let ok = match cond {
                ValueCond::Present => true,
                ValueCond::Exact(x) => v == x,
                ValueCond::Regex(r) => r.is_match(v),
            };
            if !ok {
                return false;
            }
        }
        for (name, want) in &self.cookies {
            match (req.cookie(name), want) {
                (None, _) => return false,
                (Some(v), Some(w)) if v != w => return false,
                _ => {}
            }
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::load_str;
    use std::collections::HashMap;
    use std::path::Path;

    pub(crate) fn profile(extra_rules: &str) -> Profile {
        profile_with(extra_rules, "")
    }

    /// The test profile; `more_services` (YAML list items) follow `web`.
    fn profile_with(extra_rules: &str, more_services: &str) -> Profile {
        let text = format!(
            r#"
name: t
io: {{ memory: {{}} }}
switch: {{ data_ip: 198.18.0.2 }}
thop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: "{key}" }}] }}
backends:
  - {{ name: s1, address: 198.18.0.11 }}
  - {{ name: a1, address: 198.18.0.13 }}
pools:
  - {{ name: static, backends: [s1] }}
  - {{ name: app, backends: [a1] }}
  - {{ name: admin, backends: [a1] }}
services:
  - name: web
    vip: 198.18.0.10
    rules: {extra_rules}
    default_pool: app
{more_services}"#,
            key = "00".repeat(32),
            extra_rules = if extra_rules.is_empty() {
                "[]".to_string()
            } else {
                format!("\n{extra_rules}")
            }
        );
        load_str(&text, Path::new("t.yaml"), &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"))
            .profile
    }

    fn route(r: &Router, raw: &str) -> (u16, Option<usize>) {
        let req = Request::parse(raw.as_bytes()).unwrap();
        let hit = r.route("198.18.0.10:80".parse().unwrap(), &req).unwrap();
        (hit.pool, hit.rule)
    }

    #[test]
    fn first_matching_rule_wins_then_default() {
        let p = profile(
            r#"      - { match: { path_prefix: [/static/], extension: [png] }, pool: static }
      - { match: { extension: [css, PNG] }, pool: static }
      - { match: { host: ["*.admin.example"], method: [POST] }, pool: admin }
      - { match: { path_regex: "^/api/v[0-9]+/" }, pool: app }
      - { match: { path_exact: [/login] , header: [{ name: X-Tier, value: gold }] }, pool: admin }
      - { match: { cookie: [{ name: role, value: ops }] }, pool: admin }
"#,
        );
        let r = Router::new(&p).unwrap();
        assert_eq!(
            route(&r, "GET /static/a.png HTTP/1.1\r\nHost: x\r\n\r\n"),
            (0, Some(0))
        );
        assert_eq!(
            route(&r, "GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"),
            (1, None)
        );
        assert_eq!(
            route(&r, "GET /x/site.CSS?v=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            (0, Some(1))
        );
        assert_eq!(
            route(&r, "POST /q HTTP/1.1\r\nHost: eu.admin.example:80\r\n\r\n"),
            (2, Some(2))
        );
        assert_eq!(
            route(&r, "GET /q HTTP/1.1\r\nHost: eu.admin.example\r\n\r\n"),
            (1, None)
        );
        assert_eq!(
            route(&r, "GET /api/v2/users HTTP/1.1\r\nHost: x\r\n\r\n"),
            (1, Some(3))
        );
        assert_eq!(
            route(&r, "GET /login HTTP/1.1\r\nHost: x\r\nX-Tier: gold\r\n\r\n"),
            (2, Some(4))
        );
        assert_eq!(
            route(
                &r,
                "GET /login HTTP/1.1\r\nHost: x\r\nX-Tier: silver\r\n\r\n"
            ),
            (1, None)
        );
        assert_eq!(
            route(
                &r,
                "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=b; role=ops\r\n\r\n"
            ),
            (2, Some(5))
        );
        assert_eq!(
            route(&r, "GET / HTTP/1.1\r\nHost: x\r\nCookie: role=dev\r\n\r\n"),
            (1, None)
        );
    }

    #[test]
    fn tls_rules_match_sni_and_alpn_and_no_sni_takes_the_default() {
        use dataplane::tls::build_client_hello;
        let p = profile_with(
            "",
            r#"  - name: web-tls
    vip: 198.18.0.10
    port: 443
    protocol: tls
    rules:
      - { match: { sni: [app.example] }, pool: app }
      - { match: { sni: ["*.cdn.example"] }, pool: static }
      - { match: { alpn: [h2] }, pool: admin }
    default_pool: static
"#,
        );
        let r = Router::new(&p).unwrap();
        let at = "198.18.0.10:443".parse().unwrap();
        let route = |sni: Option<&str>, alpn: &[&str]| {
            let raw = build_client_hello(sni, alpn, &[], &[], 1 << 14);
            let req = Request::parse(&raw).unwrap();
            let hit = r.route(at, &req).unwrap();
            (hit.pool, hit.rule)
        };
        assert_eq!(route(Some("APP.example."), &["http/1.1"]), (1, Some(0)));
        assert_eq!(route(Some("img.cdn.example"), &["h2"]), (0, Some(1)));
        assert_eq!(route(Some("cdn.example"), &["h2"]), (2, Some(2)));
        assert_eq!(
            route(Some("www.example"), &["http/1.1", "h2"]),
            (2, Some(2))
        );
        assert_eq!(route(Some("www.example"), &["http/1.1"]), (0, None));
        assert_eq!(route(None, &[]), (0, None), "no SNI: the default pool");
        // The SNI is the "URL" and the host policies see.
        let raw = build_client_hello(Some("App.Example"), &[], &[], &[], 1 << 14);
        let req = Request::parse(&raw).unwrap();
        assert_eq!(
            (req.host.as_ref(), req.target.as_ref()),
            ("app.example", "app.example")
        );
    }

    #[test]
    fn unknown_vip_has_no_route() {
        let r = Router::new(&profile("")).unwrap();
        let req = Request::parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(r.route("198.18.0.99:80".parse().unwrap(), &req).is_none());
    }
}
