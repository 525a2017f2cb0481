//! Semantic checks of a parsed profile: references resolve, names are unique,
//! numbers are in range, regexes compile. Each problem names the field path
//! (the loader adds the line), and all problems are reported at once.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use dataplane::config::usable_unicast;

use super::types::*;
use super::units::Addresses;
use crate::policy::ParamChecks;

/// One semantic problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `pools[0].backends[2]`.
    pub path: String,
    pub message: String,
}

struct Checker {
    out: Vec<Problem>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn regex(&mut self, path: String, re: &str) {
        if let Err(e) = regex::Regex::new(re) {
            self.err(path, format!("invalid regular expression: {e}"));
        }
    }
}

/// Checks everything the types alone cannot.
pub fn validate(p: &Profile) -> Vec<Problem> {
    let mut c = Checker { out: Vec::new() };
    if p.name.trim().is_empty() {
        c.err("name", "must not be empty");
    }
    check_io(&mut c, p);
    check_workers(&mut c, &p.workers);
    check_addresses(&mut c, "switch.data_ip", &p.switch.data_ip);
    let backends = check_backends(&mut c, p);
    let pools = check_pools(&mut c, p, &backends);
    check_services(&mut c, p, &pools);
    check_health(&mut c, "health", &p.health);
    check_limits(&mut c, p);
    check_thop(&mut c, &p.thop);
    check_recovery(&mut c, &p.recovery);
    check_cluster(&mut c, &p.cluster, p.thop.allow_sample_keys);
    check_backend_keys(&mut c, p);
    check_admin(&mut c, &p.admin);
    if p.logging.access_log.sample_every == 0 {
        c.err("logging.access_log.sample_every", "must be at least 1");
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&p.logging.level) {
        c.err("logging.level", format!("invalid filter: {e}"));
    }
    c.out
}

fn check_io(c: &mut Checker, p: &Profile) {
    match &p.io {
        IoSection::AfPacket(a) => {
            if a.interface.is_empty() || a.interface.len() > 15 {
                c.err(
                    "io.af_packet.interface",
                    "must be an interface name of 1 to 15 characters",
                );
            }
            if !a.block_size.is_power_of_two() || a.block_size < 4096 {
                c.err(
                    "io.af_packet.block_size",
                    "must be a power of two of at least 4096",
                );
            }
            if a.frame_size < 128 || a.frame_size > a.block_size || a.frame_size % 16 != 0 {
                c.err(
                    "io.af_packet.frame_size",
                    "must be a multiple of 16, at least 128 and at most block_size",
                );
            }
            if a.block_count == 0 {
                c.err("io.af_packet.block_count", "must be at least 1");
            }
            if a.tx_frames == 0 || a.pool_size == 0 {
                c.err("io.af_packet", "tx_frames and pool_size must be at least 1");
            }
            if a.block_timeout.0 < std::time::Duration::from_millis(1) {
                c.err("io.af_packet.block_timeout", "must be at least 1ms");
            }
        }
        IoSection::AfXdp(x) => {
            if x.interface.is_empty() || x.interface.len() > 15 {
                c.err(
                    "io.af_xdp.interface",
                    "must be an interface name of 1 to 15 characters",
                );
            }
            if let Some(q) = x.queues {
                if q != u32::from(p.workers.count) {
                    c.err(
                        "io.af_xdp.queues",
                        format!(
                            "is {q} but workers.count is {} (one queue per worker: set both, \
                             and the interface's queue count with `ethtool -L`)",
                            p.workers.count
                        ),
                    );
                }
            }
            if x.frame_size != 2048 && x.frame_size != 4096 {
                c.err("io.af_xdp.frame_size", "must be 2048 or 4096");
            }
            if !x.ring_size.is_power_of_two() || x.ring_size < 64 {
                c.err(
                    "io.af_xdp.ring_size",
                    "must be a power of two of at least 64",
                );
            }
            if u64::from(x.frame_count) < 2 * u64::from(x.ring_size) {
                c.err(
                    "io.af_xdp.frame_count",
                    format!(
                        "must be at least twice ring_size ({}): the fill ring keeps up to \
                         ring_size frames and the workers need as many for their own",
                        x.ring_size
                    ),
                );
            }
            if p.switch.data_mac.is_some() {
                c.err(
                    "switch.data_mac",
                    "cannot be set with io.af_xdp: the XDP fast path sends from the \
                     interface's own MAC; change the interface's address instead \
                     (`ip link set dev <interface> address <mac>`)",
                );
            }
            if x.flow_capacity == 0 {
                c.err(
                    "io.af_xdp.flow_capacity",
                    "must be at least 1 (to keep every packet in user space, set fast_path: off)",
                );
            }
        }
        IoSection::Dpdk(d) => {
            if d.eal_args.is_empty() {
                c.err(
                    "io.dpdk.eal_args",
                    "must not be empty (at least the core list, e.g. `-l 0-1`)",
                );
            }
            for (name, v) in [("rx_ring", d.rx_ring), ("tx_ring", d.tx_ring)] {
                if !v.is_power_of_two() || v < 64 {
                    c.err(
                        format!("io.dpdk.{name}"),
                        "must be a power of two of at least 64",
                    );
                }
            }
            if d.mempool_size < 1024 {
                c.err("io.dpdk.mempool_size", "must be at least 1024 mbufs");
            }
            if d.mempool_cache > 512 {
                c.err(
                    "io.dpdk.mempool_cache",
                    "must be at most 512 (RTE_MEMPOOL_CACHE_MAX_SIZE)",
                );
            }
        }
        IoSection::Memory(m) => {
            if m.capacity == 0 {
                c.err("io.memory.capacity", "must be at least 1");
            }
        }
    }
}

fn check_workers(c: &mut Checker, w: &Workers) {
    if w.count == 0 || w.count > 256 {
        c.err("workers.count", "must be between 1 and 256");
    }
    if !w.cores.is_empty() && w.cores.len() != usize::from(w.count) {
        c.err(
            "workers.cores",
            format!(
                "lists {} cores for {} workers (one core per worker, or none)",
                w.cores.len(),
                w.count
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, core) in w.cores.iter().enumerate() {
        if !seen.insert(core) {
            c.err(
                format!("workers.cores[{i}]"),
                format!("core {core} is listed twice"),
            );
        }
    }
}

fn check_backends(c: &mut Checker, p: &Profile) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut thops = HashSet::new();
    if p.backends.is_empty() {
        c.err("backends", "at least one backend is needed");
    }
    for (i, b) in p.backends.iter().enumerate() {
        let at = format!("backends[{i}]");
        if b.name.is_empty()
            || !b
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            c.err(
                format!("{at}.name"),
                "must be non-empty letters, digits, `-`, `_` or `.`",
            );
        }
        if !names.insert(b.name.clone()) {
            c.err(
                format!("{at}.name"),
                format!("backend `{}` is defined twice", b.name),
            );
        }
        let thop = b
            .thop
            .unwrap_or_else(|| SocketAddr::from((b.address, p.thop.port)));
        if !thops.insert(thop) {
            c.err(format!("{at}.thop"), format!("THOP address {thop} is used by another backend (LOAD reports would be ambiguous)"));
        }
        if !addrs.insert(b.address) {
            c.err(
                format!("{at}.address"),
                format!("address {} is used by another backend", b.address),
            );
        }
        if let Some(why) = not_unicast(b.address) {
            c.err(format!("{at}.address"), why);
        }
        if p.switch.data_ip.contains(b.address) {
            c.err(format!("{at}.address"), "is the switch's own data address");
        }
        if let Some(t) = b.thop {
            if let Some(why) = not_unicast(t.ip()) {
                c.err(format!("{at}.thop"), why);
            }
        }
        // THOP goes out from the switch's data address of the agent's family.
        if !p.switch.data_ip.is_empty() && !p.switch.data_ip.has_family_of(thop.ip()) {
            let no_source = format!(
                "the switch has no {} data address to send THOP from; add one to switch.data_ip",
                family(thop.ip())
            );
            if b.thop.is_some() {
                c.err(format!("{at}.thop"), no_source);
            } else {
                c.err(
                    format!("{at}.address"),
                    format!(
                        "the agent's THOP address defaults to {thop}, but {no_source} \
                         (or give the backend a `thop` address of the other family)"
                    ),
                );
            }
        }
        if let Some(h) = &b.health {
            check_health(c, &format!("{at}.health"), h);
        }
    }
    names
}

fn check_pools(c: &mut Checker, p: &Profile, backends: &HashSet<String>) -> HashSet<String> {
    let mut names = HashSet::new();
    if p.pools.is_empty() {
        c.err("pools", "at least one pool is needed");
    }
    for (i, pool) in p.pools.iter().enumerate() {
        let at = format!("pools[{i}]");
        if !names.insert(pool.name.clone()) {
            c.err(
                format!("{at}.name"),
                format!("pool `{}` is defined twice", pool.name),
            );
        }
        if pool.backends.is_empty() {
            c.err(
                format!("{at}.backends"),
                "a pool needs at least one backend",
            );
        }
        let mut seen = HashSet::new();
        for (j, b) in pool.backends.iter().enumerate() {
            if !backends.contains(b) {
                c.err(
                    format!("{at}.backends[{j}]"),
                    format!("no backend named `{b}`"),
                );
            }
            if !seen.insert(b) {
                c.err(
                    format!("{at}.backends[{j}]"),
                    format!("backend `{b}` is listed twice"),
                );
            }
        }
        let weights: Vec<u32> = pool
            .backends
            .iter()
            .filter_map(|n| p.backends.iter().find(|b| &b.name == n).map(|b| b.weight))
            .collect();
        if !weights.is_empty() && weights.iter().all(|w| *w == 0) {
            c.err(
                format!("{at}.backends"),
                "every backend of this pool has weight 0: it could never serve",
            );
        }
        if !(500..=599).contains(&pool.unavailable_status) {
            c.err(format!("{at}.unavailable_status"), "must be a 5xx status");
        }
        check_policy(
            c,
            &format!("{at}.policy"),
            &pool.policy,
            pool.backends.len(),
        );
    }
    names
}

fn check_policy(c: &mut Checker, at: &str, policy: &Policy, n_backends: usize) {
    let mut checks = ParamChecks::default();
    policy.params().check(n_backends, &mut checks);
    for (path, message) in checks.into_problems() {
        c.err(format!("{at}.{path}"), message);
    }
}

fn check_services(c: &mut Checker, p: &Profile, pools: &HashSet<String>) {
    if p.services.is_empty() {
        c.err("services", "at least one service is needed");
    }
    let mut names = HashSet::new();
    let mut eps: HashMap<(IpAddr, u16), usize> = HashMap::new();
    for (i, s) in p.services.iter().enumerate() {
        let at = format!("services[{i}]");
        if !names.insert(s.name.clone()) {
            c.err(
                format!("{at}.name"),
                format!("service `{}` is defined twice", s.name),
            );
        }
        check_addresses(c, &format!("{at}.vip"), &s.vip);
        for (j, vip) in s.vip.iter().enumerate() {
            let vat = s.vip.path(&format!("{at}.vip"), j);
            if let Some(other) = eps.insert((vip, s.port), i) {
                c.err(
                    format!("{at}.port"),
                    format!(
                        "{} is used by another service (`{}`)",
                        SocketAddr::new(vip, s.port),
                        p.services[other].name
                    ),
                );
            }
            if p.switch.data_ip.contains(vip) {
                c.err(vat.clone(), "must differ from switch.data_ip");
            }
            if let Some(b) = p.backends.iter().find(|b| b.address == vip) {
                c.err(
                    vat,
                    format!(
                        "is the address of backend `{}`; a VIP is an address of its own, \
                         which the backends hold on their loopback",
                        b.name
                    ),
                );
            }
        }
        if s.port == 0 {
            c.err(format!("{at}.port"), "must not be 0");
        }
        if !pools.contains(&s.default_pool) {
            c.err(
                format!("{at}.default_pool"),
                format!("no pool named `{}`", s.default_pool),
            );
        }
        for (j, r) in s.rules.iter().enumerate() {
            let rat = format!("{at}.rules[{j}]");
            if !pools.contains(&r.pool) {
                c.err(format!("{rat}.pool"), format!("no pool named `{}`", r.pool));
            }
            check_match(c, &format!("{rat}.match"), &r.matches);
            check_protocol_match(c, &format!("{rat}.match"), s.protocol, &r.matches);
        }
    }
}

/// "IPv4" or "IPv6".
fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Why `ip` cannot be a data address or a VIP (None: it can).
fn not_unicast(ip: IpAddr) -> Option<String> {
    if usable_unicast(ip) {
        return None;
    }
    let what = match ip {
        IpAddr::V6(v) => {
            if let Some(v4) = v.to_ipv4_mapped() {
                return Some(format!(
                    "{ip} is an IPv4-mapped IPv6 address: give it as IPv4 ({v4})"
                ));
            }
            if v.is_unspecified() {
                "the unspecified address"
            } else if v.is_multicast() {
                "a multicast address"
            } else if v.is_loopback() {
                "the loopback address"
            } else {
                "a link-local address (the switch derives its own from its MAC)"
            }
        }
        IpAddr::V4(v) => {
            if v.is_unspecified() {
                "the unspecified address"
            } else if v.is_multicast() {
                "a multicast address"
            } else if v.is_loopback() {
                "a loopback address"
            } else {
                "the broadcast address"
            }
        }
    };
    Some(format!(
        "{ip} is {what}, not a unicast address the switch can answer for"
    ))
}

/// A one-or-list address field (`switch.data_ip`, `services[].vip`): at
/// least one address, each usable unicast, at most one per family.
fn check_addresses(c: &mut Checker, at: &str, a: &Addresses) {
    if a.is_empty() {
        c.err(
            at,
            "must give an address, or a list of one IPv4 and one IPv6 address",
        );
        return;
    }
    let mut first: [Option<IpAddr>; 2] = [None, None];
    for (i, ip) in a.iter().enumerate() {
        let path = a.path(at, i);
        if let Some(why) = not_unicast(ip) {
            c.err(path.clone(), why);
        }
        match &mut first[usize::from(ip.is_ipv6())] {
            Some(earlier) => c.err(
                path,
                format!(
                    "a second {} address ({earlier} and {ip}): give at most one address per family",
                    family(ip)
                ),
            ),
            slot => *slot = Some(ip),
        }
    }
}

fn check_match(c: &mut Checker, at: &str, m: &Match) {
    for (k, p) in m.path_prefix.iter().chain(&m.path_exact).enumerate() {
        if !p.starts_with('/') {
            let field = if k < m.path_prefix.len() {
                format!("path_prefix[{k}]")
            } else {
                format!("path_exact[{}]", k - m.path_prefix.len())
            };
            c.err(format!("{at}.{field}"), "a path starts with `/`");
        }
    }
    if let Some(re) = &m.path_regex {
        c.regex(format!("{at}.path_regex"), re);
    }
    for (k, e) in m.extension.iter().enumerate() {
        if e.is_empty() || e.contains(['.', '/']) {
            c.err(
                format!("{at}.extension[{k}]"),
                "an extension without the dot, e.g. `png`",
            );
        }
    }
    for (k, meth) in m.method.iter().enumerate() {
        if meth.is_empty() || !meth.bytes().all(|b| b.is_ascii_uppercase()) {
            c.err(
                format!("{at}.method[{k}]"),
                "a method in capitals, e.g. `GET`",
            );
        }
    }
    for (k, h) in m.header.iter().enumerate() {
        if h.name.is_empty()
            || !h
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            c.err(format!("{at}.header[{k}].name"), "must be a header name");
        }
        if h.value.is_some() && h.regex.is_some() {
            c.err(
                format!("{at}.header[{k}]"),
                "give `value` or `regex`, not both",
            );
        }
        if let Some(re) = &h.regex {
            c.regex(format!("{at}.header[{k}].regex"), re);
        }
    }
    for (k, ck) in m.cookie.iter().enumerate() {
        if ck.name.is_empty() || ck.name.contains([';', '=', ' ']) {
            c.err(format!("{at}.cookie[{k}].name"), "must be a cookie name");
        }
    }
}

/// A condition the service's protocol cannot carry is a mistake, not a
/// rule that never matches: an HTTP service has no SNI, a ClientHello has
/// no path, method, header or cookie.
fn check_protocol_match(c: &mut Checker, at: &str, proto: ServiceProtocol, m: &Match) {
    let http_only = [
        ("host", !m.host.is_empty()),
        ("path_prefix", !m.path_prefix.is_empty()),
        ("path_exact", !m.path_exact.is_empty()),
        ("path_regex", m.path_regex.is_some()),
        ("extension", !m.extension.is_empty()),
        ("method", !m.method.is_empty()),
        ("header", !m.header.is_empty()),
        ("cookie", !m.cookie.is_empty()),
    ];
    match proto {
        ServiceProtocol::Tls => {
            for (field, _) in http_only.iter().filter(|(_, set)| *set) {
                let hint = if *field == "host" {
                    "; the ClientHello's server name is matched by `sni`"
                } else {
                    ""
                };
                c.err(
                    format!("{at}.{field}"),
                    format!("a `protocol: tls` service sees only the ClientHello: match `sni` or `alpn`{hint}"),
                );
            }
        }
        ServiceProtocol::Http => {
            for (field, set) in [("sni", !m.sni.is_empty()), ("alpn", !m.alpn.is_empty())] {
                if set {
                    c.err(
                        format!("{at}.{field}"),
                        "only a `protocol: tls` service has a ClientHello to match",
                    );
                }
            }
        }
    }
    for (k, n) in m.sni.iter().enumerate() {
        let name = n.strip_prefix("*.").unwrap_or(n);
        if name.is_empty()
            || name.starts_with('.')
            || name.ends_with('.')
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            c.err(
                format!("{at}.sni[{k}]"),
                "a host name (`www.example.com`) or `*.` and a suffix (`*.example.com`)",
            );
        }
    }
    for (k, a) in m.alpn.iter().enumerate() {
        if a.is_empty() || a.len() > 255 {
            c.err(
                format!("{at}.alpn[{k}]"),
                "an ALPN protocol id of 1 to 255 bytes, e.g. `h2` or `http/1.1`",
            );
        }
    }
}

fn check_health(c: &mut Checker, at: &str, h: &Health) {
    if h.interval.0.is_zero() {
        c.err(format!("{at}.interval"), "must be positive");
    }
    if h.timeout.0.is_zero() || h.timeout.0 > h.interval.0 {
        c.err(
            format!("{at}.timeout"),
            "must be positive and at most the interval",
        );
    }
    if h.rise == 0 {
        c.err(format!("{at}.rise"), "must be at least 1");
    }
    if h.fall == 0 {
        c.err(format!("{at}.fall"), "must be at least 1");
    }
    match &h.check {
        Check::Http(hc) => {
            if !hc.path.starts_with('/') {
                c.err(format!("{at}.check.http.path"), "a path starts with `/`");
            }
            for (k, s) in hc.expect_status.iter().enumerate() {
                if !(100..=599).contains(s) {
                    c.err(
                        format!("{at}.check.http.expect_status[{k}]"),
                        "must be an HTTP status",
                    );
                }
            }
            if hc.port == 0 {
                c.err(format!("{at}.check.http.port"), "must not be 0");
            }
        }
        Check::Tcp(t) => {
            if t.port == 0 {
                c.err(format!("{at}.check.tcp.port"), "must not be 0");
            }
        }
        Check::None(_) => {}
    }
}

fn check_limits(c: &mut Checker, p: &Profile) {
    let l = &p.limits;
    if !(512..=1 << 19).contains(&l.max_client_hello_bytes) {
        c.err(
            "limits.max_client_hello_bytes",
            "must be between 512 and 524288",
        );
    }
    if !(512..=1 << 20).contains(&l.max_header_bytes) {
        c.err("limits.max_header_bytes", "must be between 512 and 1048576");
    }
    if l.pending_per_worker == 0 || l.pending_per_worker > t_cap(p) {
        c.err(
            "limits.pending_per_worker",
            "must be between 1 and tuning.table_capacity",
        );
    }
    if !(536..=9000).contains(&p.tcp.mss) {
        c.err("tcp.mss", "must be between 536 and 9000");
    }
    if p.tcp.window_scale > 14 {
        c.err("tcp.window_scale", "must be at most 14 (RFC 7323)");
    }
    if l.dispatch_queue == 0 {
        c.err("limits.dispatch_queue", "must be at least 1");
    }
    let t = &p.tuning;
    if t.burst_size == 0 || t.burst_size > 1024 {
        c.err("tuning.burst_size", "must be between 1 and 1024");
    }
    if t.table_capacity < 16 || t.table_capacity as u64 > dataplane::connid::MAX_TABLE_SLOTS as u64
    {
        c.err(
            "tuning.table_capacity",
            "must be between 16 and 8388608 (2^23) per worker",
        );
    }
    if !(0.0..=1.0).contains(&t.syn_cookies.threshold) {
        c.err("tuning.syn_cookies.threshold", "must be between 0 and 1");
    }
    check_holds(c, p);
    if !(t.pressure.threshold > 0.0 && t.pressure.threshold <= 1.0) {
        c.err("tuning.pressure.threshold", "must be above 0 and at most 1");
    }
    if t.pressure.header_timeout.0.is_zero() {
        c.err("tuning.pressure.header_timeout", "must be positive");
    } else if t.pressure.header_timeout.0 > p.timeouts.header.0 {
        c.err(
            "tuning.pressure.header_timeout",
            "must not exceed timeouts.header (pressure shortens holds)",
        );
    }
    if t.pressure.fin_timeout.0.is_zero() {
        c.err("tuning.pressure.fin_timeout", "must be positive");
    } else if t.pressure.fin_timeout.0 > p.timeouts.fin.0 {
        c.err(
            "tuning.pressure.fin_timeout",
            "must not exceed timeouts.fin (pressure shortens holds)",
        );
    }
    if t.pressure.response_retries > RETRIES_MAX {
        c.err(
            "tuning.pressure.response_retries",
            format!("must be at most {RETRIES_MAX}"),
        );
    }
    let limit = t.per_client.max_pending;
    if limit != 0 && t.per_client.max_connections != 0 && limit > t.per_client.max_connections {
        c.err(
            "tuning.per_client.max_pending",
            "must not exceed tuning.per_client.max_connections (each pending connection is one)",
        );
    }
    let to = &p.timeouts;
    for (name, d) in [
        ("header", to.header),
        ("decision", to.decision),
        ("syn_ack_rto", to.syn_ack_rto),
        ("handoff_rto", to.handoff_rto),
        ("fin", to.fin),
        ("idle", to.idle),
    ] {
        if d.0.is_zero() {
            c.err(format!("timeouts.{name}"), "must be positive");
        }
    }
    if to.max_redispatch == 0 {
        c.err("timeouts.max_redispatch", "must be at least 1");
    }
    for (name, v) in [
        ("syn_ack_retries", to.syn_ack_retries),
        ("handoff_retries", to.handoff_retries),
    ] {
        if v > RETRIES_MAX {
            c.err(
                format!("timeouts.{name}"),
                format!("must be at most {RETRIES_MAX}"),
            );
        }
    }
}

/// Most retransmissions of one segment or frame (the backoff stops doubling
/// after ten; beyond a hundred a peer is gone).
const RETRIES_MAX: u32 = 100;

/// Held client packets are packet buffers: whatever clients can make a
/// worker hold must leave at least half of the pool for receiving and for
/// the frames the switch sends (AF_PACKET: each worker's pool; AF_XDP: each
/// worker's UMEM; DPDK: one mempool for every worker).
/// A worker's own buffers (`field`, `size` of them) must keep half free of
/// what clients can make it hold.
fn per_worker_pool(c: &mut Checker, per_worker: u64, field: &str, size: u32) {
    if per_worker * 2 > u64::from(size) {
        c.err(
            "limits.held_packets_per_worker",
            format!(
                "a worker may hold {per_worker} packets (min of limits.held_packets_per_worker \
                 and limits.held_packets x limits.pending_per_worker), more than half of \
                 {field} ({size})"
            ),
        );
    }
}

fn check_holds(c: &mut Checker, p: &Profile) {
    let l = &p.limits;
    let per_worker = u64::from(l.held_packets_per_worker)
        .min(u64::from(l.held_packets) * u64::from(l.pending_per_worker));
    match &p.io {
        IoSection::AfPacket(a) => {
            per_worker_pool(c, per_worker, "io.af_packet.pool_size", a.pool_size)
        }
        IoSection::AfXdp(x) => {
            per_worker_pool(c, per_worker, "io.af_xdp.frame_count", x.frame_count)
        }
        IoSection::Dpdk(d) => {
            let all = per_worker * u64::from(p.workers.count);
            if all * 2 > u64::from(d.mempool_size) {
                c.err(
                    "limits.held_packets_per_worker",
                    format!(
                        "{} workers may hold {all} mbufs (workers.count x the min of \
                         limits.held_packets_per_worker and limits.held_packets x \
                         limits.pending_per_worker), more than half of io.dpdk.mempool_size ({})",
                        p.workers.count, d.mempool_size
                    ),
                );
            }
        }
        IoSection::Memory(_) => {}
    }
}

fn check_cluster(c: &mut Checker, cl: &Cluster, allow_sample_keys: bool) {
    if let Some(f) = &cl.secret_file {
        match handoff_proto::read_key_file(std::path::Path::new(f)) {
            Err(e) => c.err("cluster.secret_file", e),
            Ok(b) => {
                if let Some(w) = handoff_proto::key_weakness(&b).filter(|_| !allow_sample_keys) {
                    c.err(
                        "cluster.secret_file",
                        format!(
                            "the secret {w}: generate one with `head -c32 /dev/urandom | xxd -p -c64` \
                             (test beds may set thop.allow_sample_keys: true)"
                        ),
                    );
                }
            }
        }
    }
    if let Some(a) = &cl.announce {
        if a.bird.socket.is_empty() {
            c.err(
                "cluster.announce.bird.socket",
                "must name BIRD's control socket",
            );
        }
        // It goes into a control-socket command: a BIRD symbol only.
        let p = &a.bird.protocol;
        let symbol = p
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && p.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !symbol {
            c.err(
                "cluster.announce.bird.protocol",
                "must be a BIRD protocol name (letters, digits, `_`; not starting with a digit)",
            );
        }
    }
}

fn check_recovery(c: &mut Checker, r: &Recovery) {
    for (name, d) in [
        ("hello_interval", r.hello_interval),
        ("lookup_timeout", r.lookup_timeout),
    ] {
        if d.0.is_zero() {
            c.err(format!("recovery.{name}"), "must be positive");
        }
    }
    for (name, v) in [
        ("lookup_tries", r.lookup_tries),
        ("lookups_per_second", r.lookups_per_second),
        ("max_pending_lookups", r.max_pending_lookups),
    ] {
        if v == 0 {
            c.err(
                format!("recovery.{name}"),
                "must be at least 1 (turn recovery off with `enabled: false`)",
            );
        }
    }
    if r.lookup_tries > RETRIES_MAX {
        c.err(
            "recovery.lookup_tries",
            format!("must be at most {RETRIES_MAX}"),
        );
    }
}

fn check_thop(c: &mut Checker, t: &Thop) {
    if t.port == 0 {
        c.err("thop.port", "must not be 0");
    }
    if t.keys.is_empty() {
        c.err(
            "thop.keys",
            "at least one key is needed (agents reject unauthenticated frames)",
        );
    }
    let mut ids = HashSet::new();
    for (i, k) in t.keys.iter().enumerate() {
        let at = format!("thop.keys[{i}]");
        if !ids.insert(k.id) {
            c.err(format!("{at}.id"), format!("key id {} is used twice", k.id));
        }
        let (field, bytes) = match (&k.secret_hex, &k.secret_file) {
            (Some(h), None) => {
                let field = format!("{at}.secret_hex");
                let mut b = [0u8; 32];
                if h.len() != 64 || hex::decode_to_slice(h, &mut b).is_err() {
                    c.err(field, "must be 64 hex digits (32 bytes)");
                    continue;
                }
                (field, b)
            }
            (None, Some(f)) => {
                let field = format!("{at}.secret_file");
                match handoff_proto::read_key_file(std::path::Path::new(f)) {
                    Ok(b) => (field, b),
                    Err(e) => {
                        c.err(field, e);
                        continue;
                    }
                }
            }
            _ => {
                c.err(at, "give exactly one of `secret_hex` and `secret_file`");
                continue;
            }
        };
        if let Some(w) = handoff_proto::key_weakness(&bytes) {
            if !t.allow_sample_keys {
                c.err(
                    field,
                    format!(
                        "the key {w}: generate one with `head -c32 /dev/urandom | xxd -p -c64` \
                         (test beds may set thop.allow_sample_keys: true)"
                    ),
                );
            }
        }
    }
    if let Some(a) = t.active_key {
        if !ids.contains(&a) {
            c.err("thop.active_key", format!("no key with id {a}"));
        }
    }
}

/// Each backend's own key must be one of `thop.keys`.
fn check_backend_keys(c: &mut Checker, p: &Profile) {
    for (i, b) in p.backends.iter().enumerate() {
        if let Some(id) = b.thop_key {
            if !p.thop.keys.iter().any(|k| k.id == id) {
                c.err(
                    format!("backends[{i}].thop_key"),
                    format!("no key with id {id} in thop.keys"),
                );
            }
        }
    }
}

fn check_admin(c: &mut Checker, a: &Admin) {
    if a.allow.is_empty() {
        c.err(
            "admin.allow",
            "must list at least one address (leave it out for loopback only)",
        );
    }
    if a.header_timeout.0.is_zero() || a.header_timeout.0 > std::time::Duration::from_secs(300) {
        c.err("admin.header_timeout", "must be between 1ms and 300s");
    }
    if !(1..=MAX_ADMIN_CONNECTIONS).contains(&a.max_connections) {
        c.err(
            "admin.max_connections",
            format!("must be between 1 and {MAX_ADMIN_CONNECTIONS}"),
        );
    }
    if let Some(f) = &a.token_file {
        if let Err(e) = crate::admin::token::read_token_file(std::path::Path::new(f)) {
            c.err("admin.token_file", e);
        }
    }
}

/// Upper bound of `admin.max_connections`: each costs a descriptor in the
/// switch's process, whose descriptors the data path needs too.
const MAX_ADMIN_CONNECTIONS: u32 = 4096;

fn t_cap(p: &Profile) -> u32 {
    p.tuning.table_capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    fn afxdp_profile() -> Profile {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/testbed-afxdp.yaml");
        crate::config::load_file_with(&path, &Default::default())
            .unwrap()
            .profile
    }

    fn af_xdp(p: &mut Profile) -> &mut AfXdpIo {
        match &mut p.io {
            IoSection::AfXdp(x) => x,
            other => panic!("{other:?}"),
        }
    }

    fn paths(p: &Profile) -> Vec<String> {
        validate(p).into_iter().map(|x| x.path).collect()
    }

    #[test]
    fn af_xdp_test_bed_profile_is_valid() {
        assert_eq!(validate(&afxdp_profile()), vec![]);
    }

    #[test]
    fn af_xdp_numbers_out_of_range_name_their_field() {
        let mut p = afxdp_profile();
        let x = af_xdp(&mut p);
        x.frame_size = 3000;
        x.ring_size = 1000;
        x.flow_capacity = 0;
        x.queues = Some(4);
        let got = paths(&p);
        for want in [
            "io.af_xdp.frame_size",
            "io.af_xdp.ring_size",
            "io.af_xdp.flow_capacity",
            "io.af_xdp.queues",
        ] {
            assert!(got.iter().any(|g| g == want), "{want} not in {got:?}");
        }

        let mut p = afxdp_profile();
        let x = af_xdp(&mut p);
        x.queues = Some(2);
        x.frame_size = 2048;
        assert_eq!(validate(&p), vec![], "queues equal to workers.count");

        let mut p = afxdp_profile();
        let x = af_xdp(&mut p);
        x.ring_size = 4096;
        x.frame_count = 2048;
        assert!(paths(&p).contains(&"io.af_xdp.frame_count".to_string()));

        let mut p = afxdp_profile();
        p.switch.data_mac = Some(crate::config::MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(paths(&p), vec!["switch.data_mac".to_string()]);

        let mut p = afxdp_profile();
        af_xdp(&mut p).frame_count = 512;
        let got = validate(&p);
        assert!(
            got.iter()
                .any(|g| g.path == "limits.held_packets_per_worker"
                    && g.message.contains("io.af_xdp.frame_count")),
            "{got:?}"
        );
    }

    #[test]
    fn conditions_the_protocol_cannot_carry_name_their_field() {
        let mut p = afxdp_profile();
        let tls = p
            .services
            .iter()
            .position(|s| s.protocol == ServiceProtocol::Tls)
            .expect("the test bed serves TLS");
        p.services[tls].rules[0].matches.path_prefix = vec!["/x/".into()];
        p.services[tls].rules[1].matches.sni = vec!["bad name".into()];
        p.services[0].rules[0].matches.alpn = vec!["h2".into()];
        p.limits.max_client_hello_bytes = 100;
        let got = paths(&p);
        for want in [
            format!("services[{tls}].rules[0].match.path_prefix"),
            format!("services[{tls}].rules[1].match.sni[0]"),
            "services[0].rules[0].match.alpn".to_string(),
            "limits.max_client_hello_bytes".to_string(),
        ] {
            assert!(got.contains(&want), "{want} not in {got:?}");
        }
    }
}
