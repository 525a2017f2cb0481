//! The status page in a real browser: headless Chromium on the bed's hub
//! (the management side, where operators sit) loads `/status` from the
//! switch's admin endpoint after real traffic went through the switch. The
//! page renders and updates itself (a screenshot is kept; `BATON_BLESS=1`
//! writes it to `docs/images/status-page.png` for docs/operations.md), the
//! numbers it shows are those of `/metrics`, and its drain and undrain
//! buttons work with the admin token and do nothing without it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use testbed::baton::{self, BatonIo};
use testbed::chromium::Browser;
use testbed::scenario::Running;
use testbed::{addr, client};

testbed::both_backends!(the_status_page_shows_metrics_and_drains_with_the_token);

/// Every number cell of the page: `data-k` → `data-v`.
const CELLS: &str = "Object.fromEntries([...document.querySelectorAll('[data-k]')]\
    .map(e => [e.dataset.k, e.dataset.v]))";

fn cells(b: &mut Browser) -> BTreeMap<String, String> {
    serde_json::from_value(b.eval(CELLS).expect("read the page")).expect("cells")
}

fn metric(m: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    client::metric_sum(m, name, labels).unwrap_or(0.0)
}

/// Waits until the page has rendered `n` more answers than now.
fn wait_updates(b: &mut Browser, n: u64) {
    let now = b
        .eval("Number(document.body.dataset.updates || 0)")
        .unwrap()
        .as_u64()
        .unwrap_or(0);
    b.wait_for(
        &format!("Number(document.body.dataset.updates || 0) >= {}", now + n),
        Duration::from_secs(15),
    )
    .expect("the page updates itself");
}

/// Clicks the button of `backend` (drain or undrain) and waits for the
/// page's message.
fn click(b: &mut Browser, backend: &str) -> String {
    b.eval(&format!(
        "document.querySelector('#msg').textContent = ''; \
         document.querySelector('button[data-backend=\"{backend}\"]').click(); true"
    ))
    .expect("click");
    b.wait_for(
        "document.querySelector('#msg').textContent",
        Duration::from_secs(15),
    )
    .expect("a message after the click")
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn set_token(b: &mut Browser, token: &str) {
    b.eval(&format!(
        "(() => {{ const t = document.querySelector('#token'); t.value = {token:?}; \
         t.dispatchEvent(new Event('change')); return true; }})()"
    ))
    .expect("type the token");
}

fn backend_status(sys: &Running, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&baton::admin_get(sys.bed.hub(), "/backends").unwrap()).unwrap();
    v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .map(|b| b["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn the_status_page_shows_metrics_and_drains_with_the_token(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    for i in 0..40 {
        let path = if i % 4 == 0 {
            "/api/items"
        } else {
            "/static/1k.bin"
        };
        assert_eq!(sys.get(path).expect("GET").status, 200, "{path}");
    }

    let mut b = Browser::launch(
        sys.bed.hub(),
        &sys.bed.path("chromium-status"),
        &sys.bed.path("chromium-status.log"),
    )
    .expect("chromium");
    b.navigate(&format!("http://{}/status", addr::switch_metrics()))
        .unwrap();
    b.wait_for(
        "document.querySelectorAll('#backends button').length",
        Duration::from_secs(20),
    )
    .expect("the page lists the backends");
    // Two answers after the traffic ended: rates are computed, totals still.
    wait_updates(&mut b, 2);

    // The screenshot operators see in the docs.
    let shot = sys.bed.path("status-page.png");
    b.screenshot(&shot).expect("screenshot");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );
    if std::env::var_os("BATON_BLESS").is_some() && io == BatonIo::AfPacket {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&shot, docs.join("status-page.png")).unwrap();
    }

    // The page's numbers are those of /metrics. Request and handoff
    // counters are still (no traffic since); packet counters move with the
    // agents' LOAD reports, so the page may only be a little behind.
    let page = cells(&mut b);
    let m = sys.stack.metrics().unwrap();
    let num = |k: &str| -> f64 {
        page.get(k)
            .unwrap_or_else(|| panic!("{k} not on the page: {page:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{k} = {:?} is not a number", page[k]))
    };
    let mut compared = 0;
    for backend in ["static-1", "static-2", "app-1"] {
        let bl = [("backend", backend)];
        for (k, name, extra) in [
            ("requests", "baton_dispatch_decisions_total", None),
            ("acked", "baton_handoffs_total", Some(("outcome", "acked"))),
            ("nacks", "baton_handoffs_total", Some(("outcome", "nacked"))),
            ("weight", "baton_backend_weight", None),
            (
                "active_connections",
                "baton_backend_active_connections",
                None,
            ),
        ] {
            let mut labels = bl.to_vec();
            labels.extend(extra);
            let want = metric(&m, name, &labels);
            assert_eq!(
                num(&format!("{backend}.{k}")),
                want,
                "{backend}.{k}: the page and {name} disagree"
            );
            compared += 1;
        }
        assert_eq!(page[&format!("{backend}.state")], "up", "{backend}");
    }
    assert!(num("static-1.requests") + num("static-2.requests") >= 30.0);
    for w in 0..2 {
        let wl = [("worker", w.to_string())];
        let wl: Vec<(&str, &str)> = wl.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if !page.contains_key(&format!("worker{w}.new_connections")) {
            continue;
        }
        assert_eq!(
            num(&format!("worker{w}.new_connections")),
            metric(&m, "baton_worker_new_connections_total", &wl),
            "worker {w} new connections"
        );
        let rx_page = num(&format!("worker{w}.received_packets"));
        let rx = metric(&m, "baton_worker_received_packets_total", &wl);
        assert!(
            rx_page <= rx && rx - rx_page < 2_000.0,
            "worker {w}: page {rx_page} packets, /metrics {rx}"
        );
        compared += 2;
    }
    let api = metric(
        &m,
        "baton_dispatch_rule_matches_total",
        &[("service", "web"), ("rule", "api")],
    );
    assert_eq!(num("rule.web.api"), api, "decisions by rule");
    assert!(api >= 10.0, "api rule matched {api} times");
    assert!(num("total.handoff_p50") > 0.0, "handoff p50 shown");
    eprintln!("status page: {compared} numbers equal to /metrics");

    // Drain and undrain from the page. Without a token: the page says what
    // is missing and nothing changes.
    let msg = click(&mut b, "static-1");
    assert!(msg.contains("admin token"), "{msg}");
    assert_eq!(backend_status(&sys, "static-1"), "up");
    // A wrong token: refused by the endpoint, shown, nothing changes.
    set_token(&mut b, "not-the-token-of-this-bed-0123456789abcdef");
    let msg = click(&mut b, "static-1");
    assert!(msg.contains("HTTP 401"), "{msg}");
    assert_eq!(backend_status(&sys, "static-1"), "up");
    // The bed's token: drained, on the switch and on the page.
    let token = std::fs::read_to_string(baton::admin_token_path(&sys.bed)).unwrap();
    set_token(&mut b, token.trim());
    let msg = click(&mut b, "static-1");
    assert!(msg.contains("drained"), "{msg}");
    assert_eq!(backend_status(&sys, "static-1"), "draining");
    b.wait_for(
        "document.querySelector('[data-k=\"static-1.state\"]').dataset.v === 'drained'",
        Duration::from_secs(10),
    )
    .expect("the page shows the drain");
    for _ in 0..6 {
        let r = sys.get("/static/1k.bin").expect("GET");
        assert_eq!(r.backend(), Some("b2"), "a drained backend got a request");
    }
    let msg = click(&mut b, "static-1");
    assert!(msg.contains("undrained"), "{msg}");
    assert_eq!(backend_status(&sys, "static-1"), "up");
}
