//! Listener mode: the `HandoffListener` API in-process, and the
//! `handoff_server` example (tokio) as a real process in the backend namespace.

mod common;

use agent::config::Config;
use agent::metrics::Metrics;
use common::bed::{Bed, BACKEND_IP, SWITCH_IP, VIP};
use common::handoff::handoff;
use common::serve::*;
use common::thop::{key_hex, Rx, SwitchThop, KEY_ID};
use handoff_proto::{CloseReason, NackReason};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use testkit::temp_dir::TempDir;

fn listener_config(backlog: u32, metrics: &str) -> String {
    let key = key_hex();
    format!(
        "thop:\n  listen: {BACKEND_IP}:9199\n  switches: [{SWITCH_IP}]\n  keys:\n    - {{id: {KEY_ID}, key: \"{key}\"}}\n\
         services:\n  - vip: {VIP}:80\n    mode: listener\nlimits:\n  backlog: {backlog}\nload:\n  period_ms: 0\nmetrics:\n  listen: {metrics}\n"
    )
}

#[test]
fn handoff_listener_yields_std_streams_and_reports_close() {
    let bed = Bed::new();
    let cfg = Config::parse(&listener_config(1, "null")).unwrap();
    let (listener, handle, join) = bed.in_ns(&bed.backend, move || {
        let a = agent::Agent::new(cfg, Arc::new(Metrics::new())).unwrap();
        let l = a.listener(format!("{VIP}:80").parse().unwrap()).unwrap();
        let h = a.handle();
        (l, h, a.spawn().unwrap())
    });
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);

    let client = curl(&bed, "/via-listener", &[]);
    let (rx, _, req) = handoff(&bed, &l, &mut thop, 31);
    assert!(matches!(rx, Rx::Ack { conn_id: 31, .. }), "{rx:?}");
    let mut conn = listener
        .accept_timeout(Some(Duration::from_secs(5)))
        .unwrap()
        .expect("adopted connection");
    assert_eq!(conn.local, format!("{VIP}:80").parse().unwrap());
    assert_eq!(conn.peer.ip().to_string(), "198.18.0.101");
    let mut got = vec![0u8; req.len()];
    conn.stream.read_exact(&mut got).unwrap();
    assert_eq!(got, req, "the request is readable from the adopted stream");

    // Backlog of 1 is full while this connection is queued: the next CREATE
    // is refused so the switch can choose another backend.
    let client2 = curl(&bed, "/second", &["--max-time", "3"]);
    let (rx2, _, _) = handoff(&bed, &l, &mut thop, 32);
    assert!(
        matches!(rx2, Rx::Ack { .. }),
        "queue is empty again: {rx2:?}"
    );
    let (st3, req3) = {
        let client3 = curl(&bed, "/third", &["--max-time", "3"]);
        let r = accept_and_freeze(&bed, &l, 0);
        drop(client3);
        r
    };
    thop.create(33, &st3, &req3);
    let rx3 = thop.wait_ack(33);
    assert!(
        matches!(
            rx3,
            Rx::Nack {
                reason: NackReason::BacklogFull,
                ..
            }
        ),
        "{rx3:?}"
    );

    write!(
        conn.stream,
        "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nlistener"
    )
    .unwrap();
    drop(conn);
    assert_eq!(finish(client), b"listener");
    let close = thop.wait_close(31);
    assert_eq!(close.reason, CloseReason::ServerClose);

    // Stopping closes the listener; the queued connection's ticket reports it.
    handle.stop();
    let second = listener.accept_timeout(Some(Duration::from_secs(1)));
    drop(second);
    drop(client2);
    join.join().unwrap().unwrap();
    assert!(
        listener.accept().is_err(),
        "accept fails once the agent stopped"
    );
}

fn example_bin() -> std::path::PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/examples/handoff_server
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = dir.join("handoff_server");
    if !bin.exists() {
        // `make test` builds examples first; a bare `cargo nextest` may not have.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir
            .parent()
            .unwrap()
            .file_name()
            .is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "agent", "--example", "handoff_server"]);
        if release {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().unwrap().success(),
            "building the example failed"
        );
    }
    bin
}

#[test]
fn example_server_serves_files_and_names_itself() {
    let bed = Bed::new();
    let tmp = TempDir::new("example");
    let root = tmp.0.join("www");
    std::fs::create_dir_all(&root).unwrap();
    let page = body(300_000);
    std::fs::write(
        root.join("index.html"),
        b"hello from the listener example\n",
    )
    .unwrap();
    std::fs::write(root.join("page.bin"), &page).unwrap();
    let cfg = tmp.0.join("agent.yaml");
    std::fs::write(&cfg, listener_config(64, "127.0.0.1:9101")).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &bed.backend])
        .arg(example_bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--name",
            "backend-7",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("example: {line}");
            if line.contains("handoff_server ready") {
                let _ = tx.send(());
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(20))
        .expect("example did not start");
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);

    let client = curl(&bed, "/", &["-D", "-"]);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 41);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    let out = String::from_utf8(finish(client)).unwrap();
    assert!(out.contains("X-Served-By: backend-7"), "{out}");
    assert!(out.ends_with("hello from the listener example\n"), "{out}");
    thop.wait_close(41);

    let client = python_get(&bed, "/page.bin", None);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 42);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    assert!(finish(client) == page, "300 kB file intact");
    thop.wait_close(42);

    // SIGTERM: graceful stop, exit 0.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        assert!(std::time::Instant::now() < deadline, "example did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn abort_silences_a_socket_the_application_holds() {
    use handoff_proto::{Abort, AbortReason, Body};
    let bed = Bed::new();
    let cfg = Config::parse(&listener_config(8, "null")).unwrap();
    let (listener, _handle, _join) = bed.in_ns(&bed.backend, move || {
        let a = agent::Agent::new(cfg, Arc::new(Metrics::new())).unwrap();
        let l = a.listener(format!("{VIP}:80").parse().unwrap()).unwrap();
        let h = a.handle();
        (l, h, a.spawn().unwrap())
    });
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    let client = curl(&bed, "/aborted", &["--max-time", "3"]);
    let (rx, _, req) = handoff(&bed, &l, &mut thop, 51);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    let mut conn = listener
        .accept_timeout(Some(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    let mut got = vec![0u8; req.len()];
    conn.stream.read_exact(&mut got).unwrap();
    // The switch gave up on this handoff (its ACK was lost) and re-dispatched.
    let seq = thop.send(
        51,
        &Body::Abort(Abort {
            reason: AbortReason::HandoffTimeout,
        }),
    );
    thop.wait_for(
        "ACK of ABORT",
        Duration::from_secs(5),
        |r| matches!(r, Rx::Ack { echo_seq, .. } if *echo_seq == seq),
    );
    let res = conn
        .stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno");
    assert!(
        res.is_err(),
        "the silenced socket refuses the application's writes"
    );
    drop(conn);
    let out = client.wait_with_output().unwrap();
    assert!(!out.status.success(), "nothing reached the client");
    assert!(out.stdout.is_empty());
}
