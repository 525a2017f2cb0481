//! `make bench` in miniature: every peer and Baton measured for a second,
//! results and chart written. Figures are printed, never asserted.

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
    s.systems = vec![
        System::Direct,
        System::Proxy(ProxyKind::Nginx),
        System::Proxy(ProxyKind::Haproxy),
        System::Baton(BatonIo::AfPacket, Polling::Adaptive),
    ];
    let rows = bench::run(&s, |r| eprintln!("{r:?}")).expect("bench");
    for r in &rows {
        assert!(
            r.error.is_none(),
            "{} not measured: {:?}",
            r.system,
            r.error
        );
        assert!(r.requests > 0 && r.rps > 0.0, "{r:?}");
        assert_eq!(r.failures, 0, "{r:?}");
    }
    let dir = std::env::temp_dir().join(format!("baton-bench-smoke-{}", std::process::id()));
    let res = report::results(&s, rows, vec![], 0);
    let written =
        report::write_all(&res, &dir, &dir.join("performance.md"), "smoke").expect("write");
    assert_eq!(written.len(), 5);
    let md = std::fs::read_to_string(dir.join("performance.md")).unwrap();
    assert!(
        md.contains("| haproxy |") && md.contains("| baton-afpacket |"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
