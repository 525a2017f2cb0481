//! Dual-stack profiles: `switch.data_ip` and `services[].vip` as one
//! address or one per family, backends of either family; what they compile
//! to, how requests to either VIP are routed, and the mistakes
//! `check-config` names with their field path and line.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use controlplane::compile::worker_config;
use controlplane::config::{load_str, Addresses, ConfigError, Profile, SwitchSection};
use controlplane::control::ControlPlane;
use controlplane::metrics::Metrics;
use controlplane::registry::Registry;
use controlplane::request::Request;
use controlplane::routing::Router;
use dataplane::config::Protocol;
use dataplane::dispatch::{ConnToken, DispatchRequest, LocalDecider, LocalRequest, Verdict};

const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";

/// A dual-stack profile in block style (one field a line); `edit` replaces
/// text in it to make the variants the tests need.
fn text() -> String {
    format!(
        r#"name: ds
io:
  memory: {{}}
switch:
  data_ip: [198.18.0.2, "2001:2::2"]
thop:
  allow_sample_keys: true
  keys:
    - {{ id: 1, secret_hex: "{KEY}" }}
health:
  check: {{ none: {{}} }}
backends:
  - name: v4
    address: 198.18.0.11
    mac: "02:00:00:00:00:11"
  - name: v6
    address: "2001:2::12"
    mac: "02:00:00:00:00:12"
  - name: v4-thop6
    address: 198.18.0.13
    thop: "[2001:2::13]:9199"
pools:
  - name: all
    backends: [v4, v6]
  - name: api
    backends: [v4-thop6]
services:
  - name: web
    vip: [198.18.0.10, "2001:2::10"]
    rules:
      - name: api
        match: {{ path_prefix: [/api/] }}
        pool: api
    default_pool: all
  - name: web-tls
    vip: [198.18.0.10, "2001:2::10"]
    port: 443
    protocol: tls
    default_pool: all
  - name: other
    vip: 198.18.0.20
    default_pool: all
"#
    )
}

fn edit(pairs: &[(&str, &str)]) -> String {
    let mut t = text();
    for (from, to) in pairs {
        assert!(t.contains(from), "`{from}` is not in the test profile");
        t = t.replacen(from, to, 1);
    }
    t
}

/// The same profile with IPv4 addresses only (as before dual stack).
fn ipv4_only() -> String {
    edit(&[
        ("[198.18.0.2, \"2001:2::2\"]", "198.18.0.2"),
        (
            "    address: \"2001:2::12\"\n",
            "    address: 198.18.0.12\n",
        ),
        ("    thop: \"[2001:2::13]:9199\"\n", ""),
        (
            "vip: [198.18.0.10, \"2001:2::10\"]\n    rules",
            "vip: 198.18.0.10\n    rules",
        ),
        (
            "vip: [198.18.0.10, \"2001:2::10\"]\n    port",
            "vip: 198.18.0.10\n    port",
        ),
    ])
}

fn load(t: &str) -> Result<Profile, Vec<ConfigError>> {
    load_str(t, Path::new("ds.yaml"), &HashMap::new())
        .map(|l| l.profile)
        .map_err(|e| e.0)
}

fn ok(t: &str) -> Profile {
    load(t).unwrap_or_else(|e| panic!("{}", controlplane::config::ConfigErrors(e)))
}

/// 1-based line of the first line of `t` containing `needle`.
fn line_of(t: &str, needle: &str) -> u64 {
    t.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in the profile")) as u64
        + 1
}

/// The one error of `t`: its path, line and message.
fn one_error(t: &str) -> ConfigError {
    let errs = load(t).expect_err("the profile must be refused");
    assert_eq!(
        errs.len(),
        1,
        "{}",
        controlplane::config::ConfigErrors(errs)
    );
    errs.into_iter().next().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn one_address_or_a_list_quoted_or_not() {
    let p = ok(&text());
    assert_eq!(
        p.switch.data_ip.as_slice(),
        &[ip("198.18.0.2"), ip("2001:2::2")]
    );
    assert_eq!(
        p.services[0].vip.as_slice(),
        &[ip("198.18.0.10"), ip("2001:2::10")]
    );
    assert_eq!(p.backends[1].address, ip("2001:2::12"));
    assert_eq!(
        p.services[2].vip,
        Addresses::one(Ipv4Addr::new(198, 18, 0, 20))
    );
    assert!(!p.services[2].vip.is_list());

    // Unquoted IPv6 addresses, in flow and block lists and as a scalar.
    for (data_ip, want) in [
        (
            "[198.18.0.2, 2001:2::2]",
            vec![ip("198.18.0.2"), ip("2001:2::2")],
        ),
        (
            "\n  - 198.18.0.2\n  - 2001:2::2",
            vec![ip("198.18.0.2"), ip("2001:2::2")],
        ),
        (
            "\n  - \"2001:2::2\"\n  - 198.18.0.2",
            vec![ip("2001:2::2"), ip("198.18.0.2")],
        ),
        ("2001:2::2", vec![ip("2001:2::2")]),
        ("\"2001:2::2\"", vec![ip("2001:2::2")]),
        ("'2001:2::2'", vec![ip("2001:2::2")]),
        ("::2", vec![ip("::2")]),
        ("198.18.0.2", vec![ip("198.18.0.2")]),
        ("[198.18.0.2]", vec![ip("198.18.0.2")]),
    ] {
        let s: SwitchSection = serde_saphyr::from_str(&format!("data_ip: {data_ip}\n"))
            .unwrap_or_else(|e| panic!("{data_ip}: {e}"));
        assert_eq!(s.data_ip.as_slice(), want.as_slice(), "{data_ip}");
        assert_eq!(
            s.data_ip.is_list(),
            want.len() > 1 || data_ip.starts_with('[')
        );
    }
    let t = edit(&[
        (
            "vip: [198.18.0.10, \"2001:2::10\"]\n    rules",
            "vip: [2001:2::10, 198.18.0.10]\n    rules",
        ),
        ("address: \"2001:2::12\"", "address: 2001:2::12"),
    ]);
    let p = ok(&t);
    assert_eq!(
        p.services[0].vip.as_slice(),
        &[ip("2001:2::10"), ip("198.18.0.10")]
    );
    assert_eq!(p.backends[1].address, ip("2001:2::12"));
}

#[test]
fn a_single_ipv4_address_is_written_back_as_before_and_lists_stay_lists() {
    let single = ipv4_only();
    let p = ok(&single);
    // A single address is written exactly as the plain address was.
    let v4 = Ipv4Addr::new(198, 18, 0, 2);
    assert_eq!(
        serde_saphyr::to_string(&Addresses::one(v4)).unwrap(),
        serde_saphyr::to_string(&v4).unwrap()
    );
    let y = serde_saphyr::to_string(&p).unwrap();
    let plain = serde_saphyr::to_string(&v4).unwrap();
    assert!(y.contains(&format!("data_ip: {plain}")), "{y}");
    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j["switch"]["data_ip"], "198.18.0.2");
    assert_eq!(j["services"][2]["vip"], "198.18.0.20");
    assert_eq!(j["services"][0]["vip"], "198.18.0.10");
    assert_eq!(j["backends"][1]["address"], "198.18.0.12");
    let j = serde_json::to_value(ok(&text())).unwrap();
    assert_eq!(j["switch"]["data_ip"][1], "2001:2::2");
    assert_eq!(j["services"][0]["vip"][1], "2001:2::10");
    assert_eq!(j["backends"][1]["address"], "2001:2::12");
    assert_eq!(j["backends"][2]["thop"], "[2001:2::13]:9199");

    // What check-config prints reads back as the same profile.
    for t in [text(), single] {
        let p = ok(&t);
        let again = ok(&serde_saphyr::to_string(&p).unwrap());
        assert_eq!(again, p);
        assert_eq!(again.switch.data_ip.is_list(), p.switch.data_ip.is_list());
    }
    // The form does not make two profiles differ (a reload compares them).
    assert_eq!(
        Addresses::one(Ipv4Addr::new(198, 18, 0, 2)),
        Addresses::list(vec![ip("198.18.0.2")])
    );
}

#[test]
fn compiles_to_a_primary_address_an_ipv6_one_and_a_service_per_vip() {
    let p = ok(&text());
    let c = worker_config(&p, [2, 0, 0, 0, 0, 2]).unwrap();
    assert_eq!(c.ip, ip("198.18.0.2"));
    assert_eq!(c.ip6, Some("2001:2::2".parse::<Ipv6Addr>().unwrap()));
    let services: Vec<(IpAddr, u16, Protocol)> = c
        .services
        .iter()
        .map(|s| (s.vip, s.port, s.protocol))
        .collect();
    assert_eq!(
        services,
        vec![
            (ip("198.18.0.10"), 80, Protocol::Http),
            (ip("2001:2::10"), 80, Protocol::Http),
            (ip("198.18.0.10"), 443, Protocol::Tls),
            (ip("2001:2::10"), 443, Protocol::Tls),
            (ip("198.18.0.20"), 80, Protocol::Http),
        ]
    );
    assert_eq!(
        c.static_macs,
        vec![
            (ip("198.18.0.11"), [2, 0, 0, 0, 0, 0x11]),
            (ip("2001:2::12"), [2, 0, 0, 0, 0, 0x12]),
        ]
    );

    // An IPv6 primary: no second IPv6 address.
    let t = edit(&[("[198.18.0.2, \"2001:2::2\"]", "[\"2001:2::2\", 198.18.0.2]")]);
    let c = worker_config(&ok(&t), [2, 0, 0, 0, 0, 2]).unwrap();
    assert_eq!((c.ip, c.ip6), (ip("2001:2::2"), None));

    // IPv4 alone, as before.
    let c = worker_config(&ok(&ipv4_only()), [2, 0, 0, 0, 0, 2]).unwrap();
    assert_eq!((c.ip, c.ip6), (ip("198.18.0.2"), None));
    assert_eq!(c.services.len(), 3);
}

#[test]
fn backends_of_either_family_get_their_thop_and_management_defaults() {
    let p = ok(&text());
    let r = Registry::new(&p);
    let by_name = |n: &str| r.get(r.id_of(n).unwrap()).unwrap();
    let v6 = by_name("v6");
    assert_eq!(v6.target.ip, ip("2001:2::12"));
    assert_eq!(v6.target.thop.to_string(), "[2001:2::12]:9199");
    assert_eq!(v6.management, ip("2001:2::12"));
    let v4 = by_name("v4-thop6");
    assert_eq!(v4.target.ip, ip("198.18.0.13"));
    assert_eq!(v4.target.thop.to_string(), "[2001:2::13]:9199");
    assert_eq!(by_name("v4").target.thop.to_string(), "198.18.0.11:9199");
}

fn header(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[test]
fn requests_to_either_vip_take_the_same_rules() {
    let p = ok(&text());
    let router = Router::new(&p).unwrap();
    let api = Request::parse(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let page = Request::parse(b"GET /a.html HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    for vip in [
        "198.18.0.10:80",
        "[2001:2::10]:80",
        "[::ffff:198.18.0.10]:80",
    ] {
        let at: SocketAddr = vip.parse().unwrap();
        let hit = router.route(at, &api).unwrap();
        assert_eq!((hit.service, hit.pool, hit.rule), (0, 1, Some(0)), "{vip}");
        let hit = router.route(at, &page).unwrap();
        assert_eq!((hit.service, hit.pool, hit.rule), (0, 0, None), "{vip}");
    }
    // A flow label or scope on the IPv6 socket address changes nothing.
    let labelled = SocketAddr::V6(std::net::SocketAddrV6::new(
        "2001:2::10".parse().unwrap(),
        80,
        7,
        0,
    ));
    assert_eq!(router.route(labelled, &api).unwrap().service, 0);
    assert_eq!(
        router.service_at("[2001:2::10]:443".parse().unwrap()),
        Some(1)
    );
    for none in ["[2001:2::10]:8080", "[2001:2::20]:80", "[2001:2::2]:80"] {
        assert!(
            router.route(none.parse().unwrap(), &api).is_none(),
            "{none}"
        );
    }

    // The control plane and a worker's local decision: one service, one
    // set of metrics, whichever VIP the request came to.
    let metrics = Arc::new(Metrics::new("ds"));
    let mut cp = ControlPlane::new(p, metrics.clone(), Arc::new(|| 0)).unwrap();
    let client: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
    for vip in ["198.18.0.10:80", "[2001:2::10]:80"] {
        let d = cp.decide(DispatchRequest {
            token: ConnToken {
                worker: 0,
                slot: 0,
                generation: 0,
            },
            client,
            vip: vip.parse().unwrap(),
            header: header("/api/x"),
            exclude: Vec::new(),
            header_complete_ns: 0,
        });
        assert_eq!(d.pool, 1, "{vip}");
        match d.verdict {
            Verdict::Backend(t) => assert_eq!(t.ip, ip("198.18.0.13"), "{vip}"),
            other => panic!("{vip}: {other:?}"),
        }
    }
    let text = metrics.render();
    assert!(
        text.contains("baton_dispatch_rule_matches_total{rule=\"api\",service=\"web\"} 2"),
        "{text}"
    );
    let mut w = cp.decider();
    w.install_snapshot(cp.routing_snapshot());
    for vip in ["198.18.0.10:80", "[2001:2::10]:80"] {
        let h = header("/a.html");
        let d = w
            .decide(&LocalRequest {
                client,
                vip: vip.parse().unwrap(),
                header: &h,
            })
            .expect("round-robin is decided on the worker");
        assert_eq!((d.pool, d.service, d.rule), (0, 0, u16::MAX), "{vip}");
    }
}

#[test]
fn the_example_profile_is_dual_stack() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/dual-stack.yaml");
    let p = controlplane::config::load_file_with(&path, &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}"))
        .profile;
    let c = worker_config(&p, [2, 0, 0, 0, 0, 2]).unwrap();
    assert_eq!(
        (c.ip, c.ip6),
        (ip("198.18.0.2"), Some("2001:2::2".parse().unwrap()))
    );
    assert_eq!(c.services.len(), 4);
    let r = Registry::new(&p);
    let thops: Vec<String> = r.all().iter().map(|b| b.target.thop.to_string()).collect();
    assert_eq!(
        thops,
        [
            "[2001:2::11]:9199",
            "[2001:2::12]:9199",
            "[2001:2::13]:9199"
        ]
    );
}

// ---------------------------------------------------------------- mistakes

/// `(path, line, message)` of the one error of `t`; the line is the first
/// one holding `at_line`.
fn refused(t: &str, path: &str, at_line: &str, message: &str) {
    let e = one_error(t);
    assert_eq!(e.path, path, "{e}");
    assert_eq!(e.line, Some(line_of(t, at_line)), "{e}");
    assert!(e.message.contains(message), "{e}");
    assert!(e.to_string().contains(&format!("`{path}`: ")), "{e}");
}

#[test]
fn two_addresses_of_one_family_are_refused() {
    let t = edit(&[(
        "[198.18.0.2, \"2001:2::2\"]",
        "\n    - 198.18.0.2\n    - \"2001:2::2\"\n    - 198.18.0.3",
    )]);
    refused(
        &t,
        "switch.data_ip[2]",
        "- 198.18.0.3",
        "a second IPv4 address (198.18.0.2 and 198.18.0.3): give at most one address per family",
    );
    let t = edit(&[(
        "vip: [198.18.0.10, \"2001:2::10\"]\n    rules",
        "vip:\n      - \"2001:2::10\"\n      - \"2001:2::11\"\n    rules",
    )]);
    refused(
        &t,
        "services[0].vip[1]",
        "- \"2001:2::11\"",
        "a second IPv6 address (2001:2::10 and 2001:2::11)",
    );
}

#[test]
fn an_empty_list_is_refused() {
    let t = edit(&[("data_ip: [198.18.0.2, \"2001:2::2\"]", "data_ip: []")]);
    refused(&t, "switch.data_ip", "data_ip: []", "must give an address");
    let t = edit(&[("vip: 198.18.0.20", "vip: []")]);
    refused(&t, "services[2].vip", "vip: []", "must give an address");
}

#[test]
fn addresses_that_are_not_usable_unicast_are_refused() {
    let t = edit(&[("vip: 198.18.0.20", "vip: \"::ffff:198.18.0.20\"")]);
    refused(
        &t,
        "services[2].vip",
        "vip: \"::ffff:198.18.0.20\"",
        "::ffff:198.18.0.20 is an IPv4-mapped IPv6 address: give it as IPv4 (198.18.0.20)",
    );
    for (bad, what) in [
        ("\"fe80::2\"", "link-local"),
        ("\"::\"", "unspecified"),
        ("\"ff02::1\"", "multicast"),
        ("\"::1\"", "loopback"),
    ] {
        let t = edit(&[(
            "data_ip: [198.18.0.2, \"2001:2::2\"]",
            &format!("data_ip:\n    - 198.18.0.2\n    - {bad}"),
        )]);
        let errs = load(&t).expect_err(bad);
        let e = errs
            .iter()
            .find(|e| e.path == "switch.data_ip[1]")
            .unwrap_or_else(|| panic!("{bad}: {errs:?}"));
        assert!(e.message.contains(what), "{e}");
        assert_eq!(e.line, Some(line_of(&t, &format!("- {bad}"))), "{e}");
    }
    for (bad, what) in [
        ("127.0.0.1", "loopback"),
        ("255.255.255.255", "broadcast"),
        ("224.0.0.1", "multicast"),
    ] {
        let t = edit(&[("vip: 198.18.0.20", &format!("vip: {bad}"))]);
        refused(&t, "services[2].vip", &format!("vip: {bad}"), what);
    }
    let t = edit(&[("address: 198.18.0.11", "address: \"::ffff:198.18.0.11\"")]);
    refused(
        &t,
        "backends[0].address",
        "::ffff:198.18.0.11",
        "give it as IPv4 (198.18.0.11)",
    );
    // Not an address at all: the parser's error, at the list item.
    let t = edit(&[(
        "[198.18.0.2, \"2001:2::2\"]",
        "\n    - 198.18.0.2\n    - 2001:2::zz",
    )]);
    let e = one_error(&t);
    assert_eq!(
        (e.path.as_str(), e.line),
        ("switch.data_ip[1]", Some(line_of(&t, "2001:2::zz"))),
        "{e}"
    );
}

#[test]
fn thop_of_a_family_the_switch_has_no_address_of_is_refused() {
    let no_source =
        "the switch has no IPv6 data address to send THOP from; add one to switch.data_ip";
    // An explicit IPv6 THOP address: the error is on it.
    let t = edit(&[
        ("[198.18.0.2, \"2001:2::2\"]", "198.18.0.2"),
        (
            "    address: \"2001:2::12\"\n",
            "    address: 198.18.0.12\n",
        ),
    ]);
    refused(
        &t,
        "backends[2].thop",
        "thop: \"[2001:2::13]:9199\"",
        no_source,
    );
    // The default from an IPv6 address: the error is on the address.
    let t = edit(&[
        ("[198.18.0.2, \"2001:2::2\"]", "198.18.0.2"),
        ("    thop: \"[2001:2::13]:9199\"\n", ""),
    ]);
    refused(
        &t,
        "backends[1].address",
        "address: \"2001:2::12\"",
        no_source,
    );
    let e = one_error(&t);
    assert!(e.message.contains("defaults to [2001:2::12]:9199"), "{e}");
    // And the other way round.
    let t = edit(&[("[198.18.0.2, \"2001:2::2\"]", "\"2001:2::2\"")]);
    let errs = load(&t).expect_err("no IPv4 data address");
    let got: Vec<(&str, Option<u64>)> = errs.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        got,
        vec![(
            "backends[0].address",
            Some(line_of(&t, "address: 198.18.0.11"))
        )],
        "{errs:?}"
    );
    assert!(errs[0].message.contains(
        "the switch has no IPv4 data address to send THOP from; add one to switch.data_ip"
    ));
}

#[test]
fn a_vip_that_is_the_switch_or_a_backend_is_refused() {
    let t = edit(&[(
        "vip: [198.18.0.10, \"2001:2::10\"]\n    rules",
        "vip: [198.18.0.10, \"2001:2::2\"]\n    rules",
    )]);
    refused(
        &t,
        "services[0].vip[1]",
        "vip: [198.18.0.10, \"2001:2::2\"]",
        "must differ from switch.data_ip",
    );
    let t = edit(&[("vip: 198.18.0.20", "vip: \"2001:2::12\"")]);
    refused(
        &t,
        "services[2].vip",
        "vip: \"2001:2::12\"",
        "is the address of backend `v6`",
    );
    // A backend that is the switch.
    let t = edit(&[("address: \"2001:2::12\"", "address: \"2001:2::2\"")]);
    refused(
        &t,
        "backends[1].address",
        "address: \"2001:2::2\"",
        "is the switch's own data address",
    );
}

#[test]
fn one_vip_and_port_in_two_services_is_refused_in_either_family() {
    // `other` takes web's IPv6 VIP on port 80.
    let t = edit(&[("vip: 198.18.0.20", "vip: \"2001:2::10\"")]);
    let e = one_error(&t);
    assert_eq!(e.path, "services[2].port", "{e}");
    assert_eq!(e.line, Some(line_of(&t, "  - name: other")), "{e}");
    assert_eq!(
        e.message,
        "[2001:2::10]:80 is used by another service (`web`)"
    );
    // Another family's address on the same port is fine...
    let t = edit(&[("vip: 198.18.0.20", "vip: [198.18.0.20, \"2001:2::20\"]")]);
    ok(&t);
    // ...and IPv4 as before.
    let t = edit(&[("vip: 198.18.0.20", "vip: 198.18.0.10")]);
    let e = one_error(&t);
    assert_eq!(
        e.message,
        "198.18.0.10:80 is used by another service (`web`)"
    );
}
