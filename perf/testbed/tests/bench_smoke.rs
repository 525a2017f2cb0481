//! `make bench` in miniature: every peer and Baton measured for a second,
//! with the cost ledger and a short latency probe, results and chart
//! written. Figures are printed, never asserted; their presence is.

use std::time::Duration;
use testbed::baton::{BatonIo, Polling};
use testbed::bench::{self, Settings, System};
use testbed::peers::ProxyKind;
use testbed::report;

#[test]
fn quick_bench_measures_every_system_and_writes_results() {
    let mut s = Settings::quick(false);
    s.duration = Duration::from_secs(1);
    s.workloads.truncate(2);
    s.probe_n = 20;
    s.systems = vec![
        System::Direct,
        System::Proxy(ProxyKind::Nginx),
        System::Proxy(ProxyKind::Haproxy),
        System::Baton(BatonIo::AfPacket, Polling::Adaptive),
    ];
    let measured = bench::run(&s, |r| eprintln!("{r:?}")).expect("bench");
    let rows = measured.rows;
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
        if r.system == "haproxy" || r.system == "nginx-proxy" {
            assert!(l.proxy_us.unwrap_or(0.0) > 0.0, "{r:?}");
        }
    }
    // Direct, both proxies and Baton, 1 KiB and 100 KiB each.
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
        md.contains("Cost ledger") && md.contains("Serial latency probe"),
        "{md}"
    );
    assert!(res.probe.iter().any(|p| p.added_p50_us.is_some()));
    let _ = std::fs::remove_dir_all(&dir);
}
