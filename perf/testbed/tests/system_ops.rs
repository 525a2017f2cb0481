//! Operations: a reload under load fails no request, every connection
//! entry is freed again, whether it ended with FIN or RST (over AF_XDP, its
//! flow in the kernel's fast path too), a switch that stops or dies
//! leaves nothing attached to its interface, and the shipped Grafana
//! dashboard and alert rules run on a real Prometheus scraping the bed
//! (over AF_PACKET: the queries read the metrics, whatever moves the
//! packets).

use std::io::Write;
use std::time::Duration;
use testbed::addr;
use testbed::baton::{BatonIo, PROFILE_BACKENDS};
use testbed::client;
use testbed::content::OBJ_1K;
use testbed::scenario::Running;
use testbed::wrk::WrkRun;

testbed::both_backends!(
    reload_under_load_fails_nothing,
    fin_and_rst_free_every_entry,
    a_stopped_or_killed_switch_leaves_nothing_attached,
);

/// The dashboard's and the alerts' queries against a real Prometheus that
/// scrapes the switch and the three agents every second while traffic
/// flows: every expression evaluates without error, the key series carry
/// data, the alert rules Prometheus loaded are healthy, and the alerts that
/// watch for a broken system stay quiet on a working one.
#[test]
fn prometheus_runs_the_dashboard_and_the_alerts() {
    use testbed::prometheus::{self, Prometheus};
    let sys = Running::up(BatonIo::AfPacket).expect("system up");
    let prom = Prometheus::start(&sys.bed).expect("prometheus");
    prom.wait_scraped(2, Duration::from_secs(30))
        .expect("targets scraped");
    // New connections on both pools (each request is dispatched and handed
    // off on its own), from both clients.
    let loads: Vec<_> = [(0, "/static/1k.bin"), (1, "/api/items")]
        .into_iter()
        .map(|(c, path)| {
            let mut w = WrkRun::new(
                format!("http://{}{path}", addr::vip_service()),
                4,
                Duration::from_secs(6),
            );
            w.close = true;
            let ns = sys.client(c).to_string();
            std::thread::spawn(move || w.run_in(&ns))
        })
        .collect();
    for l in loads {
        let r = l.join().unwrap().expect("wrk");
        assert!(r.requests > 0 && r.failures() == 0, "{r:?}");
    }
    prom.wait_scraped(8, Duration::from_secs(30))
        .expect("targets scraped");
    prom.settle(2);

    // Every query runs. The window takes in the traffic of the last seconds.
    let window = "30s";
    let mut errors = Vec::new();
    let mut empty = Vec::new();
    let dash = prometheus::dashboard_queries(window).expect("dashboard");
    let alerts = prometheus::alert_queries().expect("alert rules");
    for (what, q) in dash.iter().chain(alerts.iter()) {
        match prom.query(q) {
            Ok(s) if s.is_empty() => empty.push(what.clone()),
            Ok(_) => {}
            Err(e) => errors.push(format!("{what}: {e}")),
        }
    }
    assert!(
        errors.is_empty(),
        "queries Prometheus refused:\n{}",
        errors.join("\n")
    );
    eprintln!("queries without data on this bed: {empty:?}");
    // The panels an operator opens first show data (the others may rightly
    // be empty on a healthy bed: drops, NACKs, SYN cookies, XDP).
    for panel in [
        "Switches up",
        "New connections/s",
        "Handoffs/s by backend",
        "Decisions by rule",
        "Requests by pool and backend",
        "Connections by state",
        "Handoff latency",
        "Handoff latency p99 by backend",
        "Where requests are decided",
        "Backend health",
        "Active connections by backend",
        "Packets/s by worker",
        "Table occupancy by worker",
        "Agents up",
        "Adoptions/s",
        "Adopt latency",
        "Active connections per agent",
        "LOAD reports sent",
        "variable \"instance\"",
        "variable \"agent\"",
    ] {
        assert!(
            dash.iter().any(|(t, _)| t == panel),
            "no panel {panel} in the dashboard"
        );
        assert!(
            !empty.contains(&panel.to_string()),
            "panel {panel} is empty"
        );
    }
    // Handoffs per second by backend: every backend took some.
    let q =
        format!(r#"sum by (backend) (rate(baton_handoffs_total{{outcome="acked"}}[{window}]))"#);
    let by_backend = prom.query(&q).expect("handoffs by backend");
    for b in PROFILE_BACKENDS {
        let v = by_backend
            .iter()
            .find(|s| s.label("backend") == b)
            .map_or(0.0, |s| s.value);
        assert!(v > 0.0, "{b}: {v} handoffs/s ({by_backend:?})");
    }
    // Latency quantiles are real numbers (the histogram has observations).
    let p99 = prom
        .query(&format!(
            "histogram_quantile(0.99, sum by (le) (rate(baton_handoff_latency_seconds_bucket[{window}])))"
        ))
        .expect("p99");
    assert!(
        p99.len() == 1 && p99[0].value.is_finite() && p99[0].value > 0.0,
        "handoff p99 {p99:?}"
    );
    // Every agent adopted connections.
    let adopted = prom
        .query(&format!(
            "sum by (instance) (rate(baton_agent_adopted_total[{window}])) > 0"
        ))
        .expect("adoptions");
    assert_eq!(adopted.len(), sys.bed.backends.len(), "{adopted:?}");

    // The rules Prometheus loaded from the shipped file evaluate cleanly,
    // and the alerts for a broken system find nothing on this one.
    let rules = prom.rules().expect("rules");
    assert_eq!(rules.len(), alerts.len(), "{rules:?}");
    for (name, health, err) in &rules {
        assert_eq!(health, "ok", "{name}: {err}");
    }
    for quiet in [
        "BatonSwitchDown",
        "BatonDataPortDown",
        "BatonBackendDown",
        "BatonServing503",
        "BatonConnectionTableFull",
        "BatonAgentDown",
        "BatonAgentSilent",
        "BatonThopFramesRefused",
    ] {
        assert!(
            empty.contains(&quiet.to_string()),
            "{quiet} finds something on a healthy bed: {:?}",
            alerts
                .iter()
                .find(|(n, _)| n == quiet)
                .map(|(_, q)| prom.query(q))
        );
    }
}

fn reload_under_load_fails_nothing(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let gen0 = sys.stack.metric("baton_config_generation", &[]).unwrap();
    let url = format!("http://{}{}", addr::vip_service(), OBJ_1K.path);
    let loads: Vec<_> = [(0, false), (1, true)]
        .into_iter()
        .map(|(c, close)| {
            let mut w = WrkRun::new(&url, 8, Duration::from_secs(5));
            w.close = close;
            let ns = sys.client(c).to_string();
            std::thread::spawn(move || w.run_in(&ns))
        })
        .collect();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        sys.stack.reload();
    }
    for l in loads {
        let r = l.join().unwrap().expect("wrk");
        assert!(r.requests > 0);
        assert_eq!(r.failures(), 0, "failed requests during reloads: {r:?}");
    }
    let gen1 = sys.stack.metric("baton_config_generation", &[]).unwrap();
    assert!(gen1 >= gen0 + 3.0, "config generation {gen0} → {gen1}");
    let ok = sys.stack.metric("baton_config_reloads_total", &[]).unwrap();
    assert!(ok >= 3.0, "reloads counted: {ok}");
}

fn fin_and_rst_free_every_entry(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    sys.in_client(0, || {
        let vip = addr::vip_service();
        let req = client::get_request("198.18.0.10", OBJ_1K.path, false, &[]);
        for i in 0..30 {
            let mut s = client::connect(vip, Duration::from_secs(5)).expect("connect");
            match i % 3 {
                // FIN after a complete exchange.
                0 => {
                    s.write_all(&req).unwrap();
                    client::read_response(&mut s, &mut Vec::new()).expect("response");
                }
                // RST in WAITHEADER: half a request, then an abortive close.
                1 => {
                    s.write_all(&req[..10]).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    rst_close(s);
                }
                // RST in FORWARDING: after the response header arrived.
                _ => {
                    s.write_all(&req).unwrap();
                    client::read_response(&mut s, &mut Vec::new()).expect("response");
                    rst_close(s);
                }
            }
        }
    })
    .unwrap();
    sys.wait_until(
        "the connection table to empty",
        Duration::from_secs(40),
        || Ok(sys.table_size()? == 0.0),
    )
    .unwrap_or_else(|e| panic!("{e}: {} entries left", sys.table_size().unwrap_or(-1.0)));
    // Over AF_XDP the in-kernel fast path lets go of every flow too: the
    // switch's count and the kernel's map (with the fast path off, nothing
    // was ever in it).
    if let Some(f) = sys.fast_path_flows().expect("the fast path's flows") {
        assert_eq!(
            (f.metric, f.map),
            (0.0, 0),
            "flows left in the XDP fast path after the table emptied: {f:?}"
        );
        let inserted = sys
            .stack
            .metric("baton_worker_offload_inserted_total", &[])
            .unwrap();
        let removed = sys
            .stack
            .metric("baton_worker_offload_removed_total", &[])
            .unwrap();
        if io == (BatonIo::AfXdp { fast_path: true }) {
            // Twenty of the thirty connections reached FORWARDING.
            assert!(inserted > 0.0, "no flow was offloaded");
        } else {
            assert_eq!(inserted, 0.0, "flows offloaded with the fast path off");
        }
        assert_eq!(inserted, removed, "offloaded flows not taken back");
    }
}

/// Closes with SO_LINGER {on, 0}: the kernel sends RST instead of FIN.
fn rst_close(s: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    drop(s);
}

/// The data interface carries no XDP program once the switch has stopped
/// (SIGTERM) or died (SIGKILL: the kernel detaches a program attached
/// through a BPF link when its last holder goes), and a switch started
/// after a crash attaches and serves at once. Over AF_PACKET and DPDK the
/// interface never carries one.
fn a_stopped_or_killed_switch_leaves_nothing_attached(io: BatonIo) {
    use testbed::topology::DATA_IF;
    let mut sys = Running::up(io).expect("system up");
    let ns = sys.bed.switch().unwrap().ns.clone();
    let attached = || testbed::xdp::attached(&ns, DATA_IF).expect("bpftool");
    assert_eq!(
        attached().is_some(),
        matches!(io, BatonIo::AfXdp { .. }),
        "an XDP program on {DATA_IF} exactly when the switch runs over AF_XDP"
    );
    // A graceful stop, then a crash, each followed by a new switch.
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        assert_eq!(sys.get(OBJ_1K.path).expect("served").status, 200);
        let mut old = sys.stack.switch.take().expect("the switch runs");
        if sig == libc::SIGTERM {
            old.stop(Duration::from_secs(15));
        } else {
            old.kill_now();
        }
        sys.wait_until(
            "the XDP program to be detached",
            Duration::from_secs(5),
            || Ok(attached().is_none()),
        )
        .unwrap_or_else(|e| panic!("after signal {sig}: {e}: {:?}", attached()));
        testbed::attack::restart::start_switch(&mut sys, io).expect("a new switch starts");
    }
    assert_eq!(sys.get(OBJ_1K.path).expect("served").status, 200);
}
