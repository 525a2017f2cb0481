//! Handover mode: the adopted socket goes to an unmodified server process
//! (stock nginx with 1 and 4 workers, lighttpd) started with the handover
//! library preloaded. The server reads the request from the client's own
//! socket, answers into it and logs the client's real address; the agent
//! acknowledges only what the server accepted and reports the end (CLOSE)
//! from the kernel's socket-destroy notification.

mod common;

use common::agent_proc::AgentProc;
use common::bed::{Bed, CLIENT_IP};
use common::handoff::handoff;
use common::preloaded::{handover_config, library, Kind, Preloaded};
use common::serve::*;
use common::thop::{Rx, SwitchThop};
use handoff_proto::NackReason;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::http::sample as metric;
use testkit::temp_dir::TempDir;

/// One handoff of a curl GET for `path`; asserts the ACK and the body.
fn serve_one(
    bed: &Bed,
    l: &std::net::TcpListener,
    thop: &mut SwitchThop,
    id: u64,
    path: &str,
    want: &[u8],
) {
    let client = curl(bed, path, &[]);
    let (rx, _, _) = handoff(bed, l, thop, id);
    assert!(
        matches!(rx, Rx::Ack { conn_id, flags: 0, .. } if conn_id == id),
        "{rx:?}"
    );
    let got = finish(client);
    assert!(
        got == want,
        "conn {id}: {} bytes, want {}",
        got.len(),
        want.len()
    );
}

fn wait_metric(agent: &AgentProc, bed: &Bed, sample: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = agent.metrics(bed);
        if metric(&m, sample) == want || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nginx_one_worker_takes_the_socket_itself() {
    let bed = Bed::new();
    let dir = TempDir::new("ho-sock");
    let sock = dir.0.join("handover.sock");
    let agent = AgentProc::start(&bed, &handover_config(&sock, &library(), ""));
    let big = body(1_500_000);
    let nginx = Preloaded::start(
        &bed,
        Kind::Nginx(1),
        &sock,
        &[("index.html", b"hello from nginx\n"), ("big.bin", &big)],
    );
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);

    serve_one(&bed, &l, &mut thop, 201, "/big.bin", &big);
    let close = thop.wait_close(201);
    assert_eq!(
        close.reason,
        handoff_proto::CloseReason::ServerClose,
        "{close:?}"
    );

    let client = python_get(&bed, "/index.html", None);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 202);
    assert!(matches!(rx, Rx::Ack { conn_id: 202, .. }), "{rx:?}");
    assert_eq!(finish(client), b"hello from nginx\n");
    thop.wait_close(202);

    // nginx saw the client itself, not a relay on 127.0.0.1.
    let log = nginx.access_log();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(
        log.lines().all(|l| l.starts_with(&format!("{CLIENT_IP} "))),
        "{log}"
    );

    let m = wait_metric(&agent, &bed, "baton_agent_active_connections", 0.0);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"handover\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "baton_agent_active_connections"), 0.0, "{m}");
    assert_eq!(metric(&m, "baton_agent_handover_listeners"), 1.0, "{m}");
    assert_eq!(metric(&m, "baton_agent_handover_pending"), 0.0, "{m}");
}

#[test]
fn nginx_four_workers_and_a_reload_lose_nothing() {
    let bed = Bed::new();
    let dir = TempDir::new("ho-sock");
    let sock = dir.0.join("handover.sock");
    let agent = AgentProc::start(&bed, &handover_config(&sock, &library(), ""));
    let nginx = Preloaded::start(
        &bed,
        Kind::Nginx(4),
        &sock,
        &[("a.html", b"four workers\n")],
    );
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    for id in 1..=12 {
        serve_one(&bed, &l, &mut thop, id, "/a.html", b"four workers\n");
        if id == 6 {
            // New workers, same (converted) listener: the agent notices nothing.
            nginx.reload();
        }
    }
    let log = nginx.access_log();
    assert_eq!(log.lines().count(), 12, "{log}");
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"handover\"}"),
        12.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "baton_agent_refused_total{reason=\"backlog_full\"}"),
        0.0,
        "{m}"
    );
}

#[test]
fn lighttpd_takes_the_socket_too() {
    let bed = Bed::new();
    let dir = TempDir::new("ho-sock");
    let sock = dir.0.join("handover.sock");
    let agent = AgentProc::start(&bed, &handover_config(&sock, &library(), ""));
    let big = body(300_000);
    let server = Preloaded::start(&bed, Kind::Lighttpd, &sock, &[("x.bin", &big)]);
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    for id in 1..=3 {
        serve_one(&bed, &l, &mut thop, id, "/x.bin", &big);
        thop.wait_close(id);
    }
    let log = server.access_log_lines(3);
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(
        log.lines().all(|l| l.starts_with(&format!("{CLIENT_IP} "))),
        "{log}"
    );
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"handover\"}"),
        3.0,
        "{m}"
    );
}

/// A server that is absent, or present but not accepting, gets NACKs (the
/// switch re-dispatches); an agent restart finds the running server again.
#[test]
fn no_server_or_a_stuck_one_is_refused_and_a_restarted_agent_finds_the_server() {
    let bed = Bed::new();
    let dir = TempDir::new("ho-sock");
    let sock = dir.0.join("handover.sock");
    let cfg = handover_config(&sock, &library(), "");
    let agent = AgentProc::start(&bed, &cfg);
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);

    // Nobody announced a listener: refused at once.
    let mut client = curl(&bed, "/a.html", &[]);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 1);
    assert!(
        matches!(
            rx,
            Rx::Nack {
                conn_id: 1,
                reason: NackReason::BacklogFull,
                ..
            }
        ),
        "{rx:?}"
    );
    let _ = client.kill();
    let _ = client.wait();

    let nginx = Preloaded::start(&bed, Kind::Nginx(1), &sock, &[("a.html", b"ok\n")]);
    serve_one(&bed, &l, &mut thop, 2, "/a.html", b"ok\n");

    // Stopped server: offered, never accepted → silenced and refused.
    nginx.freeze(true);
    let mut client = curl(&bed, "/a.html", &[]);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 3);
    assert!(
        matches!(
            rx,
            Rx::Nack {
                conn_id: 3,
                reason: NackReason::BacklogFull,
                ..
            }
        ),
        "{rx:?}"
    );
    let _ = client.kill();
    let _ = client.wait();
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(
            &m,
            "baton_agent_handover_refused_total{reason=\"not_accepted\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "baton_agent_handover_pending"), 0.0, "{m}");
    nginx.freeze(false);
    // The late accept got an inert socket: the server logs no request for it
    // (its read fails), and the next connection is served normally.
    serve_one(&bed, &l, &mut thop, 4, "/a.html", b"ok\n");
    assert_eq!(
        nginx.access_log().lines().count(),
        2,
        "{}",
        nginx.access_log()
    );

    // A new agent process finds the running server's listener.
    drop(agent);
    let agent = AgentProc::start(&bed, &cfg);
    let m = wait_metric(&agent, &bed, "baton_agent_handover_listeners", 1.0);
    assert_eq!(
        metric(&m, "baton_agent_handover_listeners"),
        1.0,
        "{m}\n{}",
        agent.log()
    );
    serve_one(&bed, &l, &mut thop, 1005, "/a.html", b"ok\n");
}

#[test]
fn a_missing_or_foreign_library_is_a_start_up_error() {
    let dir = TempDir::new("ho-cfg");
    for lib in [
        "/nonexistent/libbaton_handover.so",
        "/lib/x86_64-linux-gnu/libc.so.6",
    ] {
        let cfg = dir.0.join("agent.yaml");
        std::fs::write(
            &cfg,
            handover_config(&dir.0.join("h.sock"), std::path::Path::new(lib), ""),
        )
        .unwrap();
        let out = Command::new(common::agent_proc::bin())
            .args(["run", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("handover.library"), "{err}");
        assert!(err.contains("LD_PRELOAD"), "{err}");
    }
}
