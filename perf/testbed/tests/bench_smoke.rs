//! `make bench` in miniature: every peer and Baton measured for a second,
//! over plain HTTP and HTTPS, direct and Baton also over IPv6, with the
//! cost ledger and a short latency probe, results and chart written. Figures are printed, never asserted;
//! their presence is.

use std::time::Duration;
use testbed::baton::{BatonIo, Polling};
use testbed::bench::{self, Settings, System};
use testbed::peers::ProxyKind;
use testbed::report;

#[test]
fn quick_bench_measures_every_system_and_writes_results() {
    let mut s = Settings::quick(false);
    s.duration = Duration::from_secs(1);
    // Two plain-HTTP workloads and the HTTPS pair.
    assert_eq!(s.workloads.iter().filter(|w| w.tls).count(), 2);
    s.probe_n = 20;
    s.systems = vec![
        System::Direct,
        System::Proxy(ProxyKind::Nginx),
        System::Proxy(ProxyKind::Haproxy),
        System::Proxy(ProxyKind::HaproxyTcp),
        System::Proxy(ProxyKind::HaproxyTls),
        System::Baton(BatonIo::AfPacket, Polling::Adaptive),
        System::DirectIpv6,
        System::BatonIpv6(BatonIo::AfPacket, Polling::Adaptive),
    ];
    let measured = bench::run(&s, |r| eprintln!("{r:?}")).expect("bench");
    let rows = measured.rows;
    // Direct and Baton: both protocols; the plain-HTTP proxies: HTTP; the
    // HTTPS HAProxy setups: HTTPS.
    let count = |sys: &str, https: bool| {
        rows.iter()
            .filter(|r| r.system == sys && r.is_https() == https)
            .count()
    };
    for (sys, http, https) in [
        ("direct", 2, 2),
        ("nginx-proxy", 2, 0),
        ("haproxy", 2, 0),
        ("haproxy-tcp", 0, 2),
        ("haproxy-tls", 0, 2),
        ("baton-afpacket", 2, 2),
        // Of the IPv6 pair, the quick run has 1 KiB on new connections.
        ("direct-ipv6", 1, 0),
        ("baton-afpacket-ipv6", 1, 0),
    ] {
        assert_eq!(
            (count(sys, false), count(sys, true)),
            (http, https),
            "{sys}"
        );
    }
    for r in &rows {
        assert!(
            r.error.is_none(),
            "{} not measured: {:?}",
            r.system,
            r.error
        );
        assert!(r.requests > 0 && r.rps > 0.0, "{r:?}");
        assert_eq!(r.failures, 0, "{r:?}");
        let l = r.ledger.as_ref().expect("a ledger on every measured row");
        assert!(l.machine_us > 0.0 && l.client_us > 0.0, "{r:?}");
        assert!(l.web_us > 0.0, "{r:?}");
        if r.system.starts_with("baton") {
            assert!(l.switch_workers_us.unwrap_or(0.0) > 0.0, "{r:?}");
            assert!(l.agent_us.is_some() && l.proxy_us.is_none(), "{r:?}");
        }
        if r.system.starts_with("haproxy") || r.system == "nginx-proxy" {
            assert!(l.proxy_us.unwrap_or(0.0) > 0.0, "{r:?}");
        }
    }
    // Direct, both plain-HTTP proxies and Baton, 1 KiB and 100 KiB each
    // (the probe speaks plain HTTP over IPv4: none for the HTTPS HAProxy
    // setups and the IPv6 systems).
    assert_eq!(measured.probe.len(), 8, "{:?}", measured.probe);
    for p in &measured.probe {
        assert!(p.measured() && p.failures == 0, "{p:?}");
        assert!(p.p50_us > 0.0 && p.p99_us >= p.p50_us, "{p:?}");
    }
    let dir = std::env::temp_dir().join(format!("baton-bench-smoke-{}", std::process::id()));
    let res = report::results(&s, rows, measured.probe, vec![], 0, None);
    let written =
        report::write_all(&res, &dir, &dir.join("performance.md"), "smoke").expect("write");
    assert_eq!(written.len(), 5);
    let md = std::fs::read_to_string(dir.join("performance.md")).unwrap();
    assert!(
        md.contains("| haproxy |") && md.contains("| baton-afpacket |"),
        "{md}"
    );
    assert!(
        md.contains("\nHTTPS (")
            && md.contains("| haproxy-tcp |")
            && md.contains("| haproxy-tls |"),
        "{md}"
    );
    assert!(md.contains("| 1 MiB | keep-alive, HTTPS |"), "{md}");
    // The HTTPS ratios are reported (met or not).
    for name in [
        "HTTPS 1 MiB keep-alive: req/s vs HAProxy mode tcp (SNI)",
        "HTTPS 1 KiB new conn: req/s vs HAProxy terminating TLS",
        "HTTPS 1 MiB keep-alive: req/s vs direct",
    ] {
        assert!(
            res.targets.iter().any(|t| t.name == name),
            "{name}: {:?}",
            res.targets
        );
    }
    assert!(
        md.contains("Cost ledger") && md.contains("Serial latency probe"),
        "{md}"
    );
    // Baton over IPv6 against the same cell over IPv4.
    let pairs = bench::ipv6_vs_ipv4(&res.rows);
    assert!(
        pairs
            .iter()
            .any(|p| p.system == "baton-afpacket" && p.connection == "new conn"),
        "{pairs:?}"
    );
    assert!(
        md.contains("IPv6 against IPv4") && md.contains("| baton-afpacket-ipv6 |"),
        "{md}"
    );
    assert!(res.probe.iter().any(|p| p.added_p50_us.is_some()));
    let _ = std::fs::remove_dir_all(&dir);
}
