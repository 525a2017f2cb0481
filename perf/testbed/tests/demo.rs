//! `make demo` end to end: the driver runs, every request succeeds, and the
//! switch transmits far less than the clients receive.

use std::time::Duration;
use testbed::baton::BatonIo;
use testbed::demo::{self, DemoOptions};

fn demo(io: BatonIo) {
    let s = demo::run(&DemoOptions {
        io,
        rounds: 2,
        wrk_duration: Duration::from_secs(2),
        hold: false,
    })
    .expect("demo");
    println!("{}", demo::render(&s));
    assert!(s.requests_ok > 0);
    assert_eq!(s.requests_failed, 0);
    assert!(s.per_rule.contains_key("api") && s.per_rule.contains_key("static-by-prefix"));
    // HTTPS by server name and ALPN: app.baton.test and HTTP/1.1-only
    // clients of www.baton.test go to tls-app (b2), h2 clients to tls-www (b1).
    for (rule, backend) in [
        ("https tls-app", "b2"),
        ("https tls-www-h2", "b1"),
        ("https tls-www-http1", "b2"),
    ] {
        let m = &s.per_rule[rule];
        assert_eq!(m.keys().collect::<Vec<_>>(), [backend], "{rule}: {m:?}");
    }
    assert!(
        s.switch_tx_bytes * 10 < s.client_rx_bytes,
        "switch tx {} vs client rx {}",
        s.switch_tx_bytes,
        s.client_rx_bytes
    );
    assert!(
        s.handoff_latency_us.p50.is_some(),
        "handoff latency histogram empty"
    );
    let j = serde_json::to_value(&s).unwrap();
    for f in [
        "requests_ok",
        "requests_failed",
        "per_backend",
        "switch_tx_bytes",
        "client_rx_bytes",
        "handoff_latency_us",
    ] {
        assert!(j.get(f).is_some(), "summary lacks {f}");
    }
}

testbed::both_backends!(demo);
