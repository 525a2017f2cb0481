//! URL rules and policies send each request to the right pool; each backend
//! names itself in `X-Backend` and the switch counts its decisions.

use std::collections::BTreeMap;
use testbed::baton::BatonIo;
use testbed::scenario::{Running, APP_BACKEND, STATIC_POOL};

testbed::both_backends!(rules_and_policies_pick_the_pool);

fn rules_and_policies_pick_the_pool(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    // Prefix rule and extension rule → static pool, round-robin over b1, b2.
    let mut per_backend: BTreeMap<String, u32> = BTreeMap::new();
    for path in [
        "/static/1k.bin",
        "/index.html",
        "/page/index.html",
        "/static/img/3.svg",
    ] {
        for _ in 0..5 {
            let r = sys.get(path).expect("GET");
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            let who = r.backend().unwrap_or("none").to_string();
            assert!(
                STATIC_POOL.contains(&who.as_str()),
                "{path} went to {who}, not the static pool"
            );
            *per_backend.entry(who).or_default() += 1;
        }
    }
    // Weighted round-robin with equal weights: both get a fair share.
    for b in STATIC_POOL {
        let n = per_backend.get(b).copied().unwrap_or(0);
        assert!(
            (7..=13).contains(&n),
            "WRR share of {b}: {n} of 20 ({per_backend:?})"
        );
    }
    // The /api/ rule → the app pool: served by b3 (the listener example),
    // and counted as such by the switch.
    let before = sys
        .stack
        .metric("baton_dispatch_decisions_total", &[("pool", "app")])
        .unwrap();
    for _ in 0..5 {
        let r = sys.get("/api/items").expect("GET /api/");
        assert_eq!(r.status, 200, "{}", r.text());
        let who = r.backend().unwrap_or("");
        assert!(
            !STATIC_POOL.contains(&who),
            "/api/ served by the static pool ({who})"
        );
        if !who.is_empty() {
            assert_eq!(who, APP_BACKEND);
        }
    }
    let after = sys
        .stack
        .metric(
            "baton_dispatch_decisions_total",
            &[("pool", "app"), ("backend", "app-1")],
        )
        .unwrap();
    assert!(
        after - before >= 5.0,
        "app-pool decisions: before {before}, after {after}"
    );
}
