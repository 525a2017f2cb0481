//! THOP + relay cases (fragmented CREATE, FIN, RST, duplicates, forgeries, ABORT), with the real `baton-agent` binary
//! in a backend namespace, a scriptable upstream on its 127.0.0.1:8080 (to see
//! exactly what the relay delivers), and unmodified Linux TCP clients.

mod common;

use common::agent_proc::{config, AgentProc};
use common::bed::Bed;
use common::handoff::{handoff, handoff_frames};
use common::serve::*;
use common::thop::{Rx, SwitchThop};
use common::upstream::{read_request, respond, Upstream};
use handoff_proto::{flags, Abort, AbortReason, Body, CloseReason, Endpoints, Key, NackReason};
use std::io::Read;
use std::time::Duration;
use testkit::http::sample as metric;
use testkit::temp_dir::TempDir;

struct World {
    bed: Bed,
    agent: AgentProc,
    thop: SwitchThop,
    up: Upstream,
    l: std::net::TcpListener,
    tmp: TempDir,
}

fn world() -> World {
    let bed = Bed::new();
    let up = Upstream::start(&bed);
    let agent = AgentProc::start(&bed, &config(""));
    let thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    World {
        bed,
        agent,
        thop,
        up,
        l,
        tmp: TempDir::new("case"),
    }
}

#[test]
fn request_larger_than_one_frame() {
    let mut w = world();
    let go = w.tmp.0.join("go");
    let client = raw_client(&w.bed, "fin", &go, 3000, 20_000);
    // 300-byte frames: the 23 kB request travels in about 100 CREATE fragments.
    let (rx, _, req) = handoff_frames(&w.bed, &w.l, &mut w.thop, 7, 300);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}\n{}", w.agent.log());
    assert!(req.len() > 23_000);
    let mut s = w.up.accept();
    let got = read_request(&mut s);
    assert_eq!(got, req, "upstream receives the request bytes exactly");
    assert!(got.ends_with(&raw_body(20_000)));
    std::fs::write(&go, b"").unwrap();
    respond(&mut s, b"big request ok");
    drop(s);
    assert_eq!(finish(client), b"big request ok");
    let m = w.agent.metrics(&w.bed);
    assert!(
        metric(&m, "baton_agent_thop_rx_total{opcode=\"CREATE\"}") >= 50.0,
        "{m}"
    );
}

#[test]
fn client_data_after_the_handoff_reaches_the_server() {
    let mut w = world();
    let go = w.tmp.0.join("go");
    let client = raw_client(&w.bed, "late", &go, 10, 50_000);
    let (rx, _, req) = handoff(&w.bed, &w.l, &mut w.thop, 8);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    assert!(
        req.ends_with(b"\r\n\r\n"),
        "only the head went with the CREATE"
    );
    std::fs::write(&go, b"").unwrap();
    let mut s = w.up.accept();
    let got = read_request(&mut s);
    assert_eq!(&got[..req.len()], &req[..]);
    assert_eq!(
        &got[req.len()..],
        &raw_body(50_000)[..],
        "body sent after the handoff arrives intact"
    );
    respond(&mut s, b"late body ok");
    drop(s);
    assert_eq!(finish(client), b"late body ok");
    let close = w.thop.wait_close(8);
    assert_eq!(close.bytes_from_client, 50_000, "{close:?}");
}

#[test]
fn client_fin_is_propagated_as_half_close() {
    let mut w = world();
    let go = w.tmp.0.join("go");
    let client = raw_client(&w.bed, "fin", &go, 10, 100);
    let (rx, _, _) = handoff(&w.bed, &w.l, &mut w.thop, 9);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    let mut s = w.up.accept();
    read_request(&mut s);
    std::fs::write(&go, b"").unwrap();
    let mut b = [0u8; 16];
    assert_eq!(
        s.read(&mut b).unwrap(),
        0,
        "the client's FIN reaches the server as EOF"
    );
    respond(&mut s, b"after fin");
    drop(s);
    assert_eq!(
        finish(client),
        b"after fin",
        "the response still flows after the client's FIN"
    );
    let close = w.thop.wait_close(9);
    assert_eq!(close.reason, CloseReason::ClientFin);
}

#[test]
fn client_rst_resets_the_server_side() {
    let mut w = world();
    let go = w.tmp.0.join("go");
    let client = raw_client(&w.bed, "rst", &go, 10, 100);
    let (rx, _, _) = handoff(&w.bed, &w.l, &mut w.thop, 10);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    let mut s = w.up.accept();
    read_request(&mut s);
    std::fs::write(&go, b"").unwrap();
    finish(client);
    let mut b = [0u8; 16];
    let err = s.read(&mut b).expect_err("server must see a reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let close = w.thop.wait_close(10);
    assert_eq!(close.reason, CloseReason::ClientReset);
}

#[test]
fn duplicate_create_is_acked_again_without_a_second_socket() {
    let mut w = world();
    let client = curl(&w.bed, "/dup", &[]);
    let (rx, st, req) = handoff(&w.bed, &w.l, &mut w.thop, 11);
    assert!(matches!(rx, Rx::Ack { flags: 0, .. }), "{rx:?}");
    let mut s = w.up.accept();
    // The switch did not see the ACK and retransmits.
    w.thop.create(11, &st, &req);
    let rx = w.thop.wait_ack(11);
    assert!(
        matches!(rx, Rx::Ack { flags, .. } if flags & flags::DUPLICATE != 0),
        "{rx:?}"
    );
    assert!(
        w.up.conns.recv_timeout(Duration::from_millis(300)).is_err(),
        "no second upstream connection"
    );
    assert_eq!(read_request(&mut s), req);
    respond(&mut s, b"once");
    drop(s);
    assert_eq!(finish(client), b"once");
    // And after the close, a late duplicate is still only acknowledged.
    w.thop.wait_close(11);
    w.thop.create(11, &st, &req);
    let rx = w.thop.wait_ack(11);
    assert!(
        matches!(rx, Rx::Ack { flags, .. } if flags & flags::DUPLICATE != 0),
        "{rx:?}"
    );
    let m = w.agent.metrics(&w.bed);
    assert_eq!(
        metric(&m, "baton_agent_duplicate_creates_total"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"relay\"}"),
        1.0,
        "{m}"
    );
}

/// A CREATE whose 4-tuple an older socket still holds (its client reused the
/// port, so the old connection is over for it): the old socket is ended and
/// the new connection adopted, not refused.
#[test]
fn a_stale_socket_of_the_4_tuple_is_retired_and_the_create_adopted() {
    let mut w = world();
    let client = curl(&w.bed, "/stale", &[]);
    let (rx, st, req) = handoff(&w.bed, &w.l, &mut w.thop, 21);
    assert!(matches!(rx, Rx::Ack { flags: 0, .. }), "{rx:?}");
    let _first = w.up.accept();
    // The same 4-tuple under a new connection id: a repair-mode connect
    // meets the live socket of connection 21.
    w.thop.create(22, &st, &req);
    let rx = w.thop.wait_ack(22);
    assert!(matches!(rx, Rx::Ack { flags: 0, .. }), "{rx:?}");
    let _second = w.up.accept();
    let m = w.agent.metrics(&w.bed);
    assert_eq!(
        metric(&m, "baton_agent_stale_sockets_retired_total"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"relay\"}"),
        2.0,
        "{m}"
    );
    drop(client);
}

#[test]
fn forged_create_is_rejected_and_counted() {
    let mut w = world();
    let client = curl(&w.bed, "/forged", &[]);
    let (st, req) = accept_and_freeze(&w.bed, &w.l, 0);
    // Wrong key (same id): dropped without an answer.
    let forged = Key::new(common::thop::KEY_ID, [0x42; 32]);
    w.thop
        .create_with(12, &st, &req, handoff_proto::MAX_FRAME_LEN_V4, &forged);
    // From an address that is not a configured switch (the client host).
    let key = w.thop.key.clone();
    let bed = &w.bed;
    let rogue = bed.in_ns(&bed.client, || {
        std::net::UdpSocket::bind("198.18.0.101:0").unwrap()
    });
    let split = handoff_proto::CreateSplitter::new(st, &req, 1472).unwrap();
    let mut buf = [0u8; 1472];
    let h = handoff_proto::Header {
        flags: 0,
        sender: w.thop.node,
        receiver: w.thop.agent_node,
        boot: 0,
        conn_id: 13,
        msg_seq: w.thop.seq.next(),
        timestamp_ms: common::thop::now_ms(),
    };
    let n = split.write(0, &h, &key, &mut buf);
    rogue.send_to(&buf[..n], w.thop.agent).unwrap();
    let answers = w
        .thop
        .collect(Duration::from_millis(500), |r| !matches!(r, Rx::Load(_)));
    assert!(
        answers.is_empty(),
        "forged frames get no answer: {answers:?}"
    );
    assert!(w.up.conns.try_recv().is_err(), "nothing adopted");
    let m = w.agent.metrics(&w.bed);
    assert_eq!(
        metric(&m, "baton_agent_thop_dropped_total{reason=\"bad_tag\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "baton_agent_thop_dropped_total{reason=\"source_not_allowed\"}"
        ),
        1.0,
        "{m}"
    );
    // The switch still owns the connection: a genuine CREATE serves it.
    w.thop.create(14, &st, &req);
    assert!(matches!(w.thop.wait_ack(14), Rx::Ack { .. }));
    w.bed.forward_flow(st.client());
    let mut s = w.up.accept();
    read_request(&mut s);
    respond(&mut s, b"genuine");
    drop(s);
    assert_eq!(finish(client), b"genuine");
}

#[test]
fn abort_drops_the_connection_and_resets_the_server() {
    let mut w = world();
    let client = curl(&w.bed, "/abort", &["--max-time", "3"]);
    let (rx, _, _) = handoff(&w.bed, &w.l, &mut w.thop, 15);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    let mut s = w.up.accept();
    read_request(&mut s);
    let seq = w.thop.send(
        15,
        &Body::Abort(Abort {
            reason: AbortReason::Expired,
        }),
    );
    let rx = w.thop.wait_for(
        "ACK of ABORT",
        Duration::from_secs(5),
        |r| matches!(r, Rx::Ack { echo_seq, .. } if *echo_seq == seq),
    );
    assert!(matches!(rx, Rx::Ack { conn_id: 15, .. }));
    let mut b = [0u8; 4];
    assert_eq!(
        s.read(&mut b).expect_err("upstream reset").kind(),
        std::io::ErrorKind::ConnectionReset
    );
    let out = client.wait_with_output().unwrap();
    assert!(!out.status.success(), "the aborted client gets no response");
    let m = w.agent.metrics(&w.bed);
    assert_eq!(metric(&m, "baton_agent_aborts_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "baton_agent_active_connections"), 0.0, "{m}");
}

#[test]
fn unknown_service_is_nacked() {
    let mut w = world();
    let client = curl(&w.bed, "/nosvc", &["--max-time", "3"]);
    let (mut st, req) = accept_and_freeze(&w.bed, &w.l, 0);
    st.endpoints = Endpoints::new(st.client(), "198.18.0.10:81".parse().unwrap()).unwrap();
    w.thop.create(16, &st, &req);
    let rx = w.thop.wait_ack(16);
    assert!(
        matches!(
            rx,
            Rx::Nack {
                reason: NackReason::NoSuchService,
                ..
            }
        ),
        "{rx:?}"
    );
    drop(client);
    let m = w.agent.metrics(&w.bed);
    assert_eq!(
        metric(&m, "baton_agent_refused_total{reason=\"no_such_service\"}"),
        1.0,
        "{m}"
    );
}

#[test]
fn upstream_down_is_nacked_silently_then_redispatch_works() {
    let bed = Bed::new();
    let agent = AgentProc::start(&bed, &config(""));
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    let client = curl(&bed, "/redispatch", &[]);
    let (st, req) = accept_and_freeze(&bed, &l, 0);
    thop.create(17, &st, &req);
    let rx = thop.wait_ack(17);
    assert!(
        matches!(
            rx,
            Rx::Nack {
                reason: NackReason::Internal,
                ..
            }
        ),
        "{rx:?}\n{}",
        agent.log()
    );
    // The refused adoption sent nothing to the client: the switch may hand
    // the same connection to another backend (here: the same, now healthy).
    let up = Upstream::start(&bed);
    thop.create(18, &st, &req);
    assert!(matches!(thop.wait_ack(18), Rx::Ack { .. }));
    bed.forward_flow(st.client());
    let mut s = up.accept();
    assert_eq!(read_request(&mut s), req);
    respond(&mut s, b"second try");
    drop(s);
    assert_eq!(finish(client), b"second try");
}

#[test]
fn sigterm_lets_adopted_connections_finish() {
    let mut w = world();
    let client = curl(&w.bed, "/slow", &[]);
    let (rx, _, _) = handoff(&w.bed, &w.l, &mut w.thop, 19);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    let mut s = w.up.accept();
    read_request(&mut s);
    w.agent.terminate();
    // Draining: a new CREATE is refused, the open connection keeps going.
    let client2 = curl(&w.bed, "/late", &["--max-time", "3"]);
    let (st2, req2) = accept_and_freeze(&w.bed, &w.l, 0);
    w.thop.create(20, &st2, &req2);
    let rx = w.thop.wait_ack(20);
    assert!(
        matches!(
            rx,
            Rx::Nack {
                reason: NackReason::ShuttingDown,
                ..
            }
        ),
        "{rx:?}"
    );
    assert!(w.agent.is_running(), "agent waits for the open connection");
    respond(&mut s, b"finished during drain");
    drop(s);
    assert_eq!(finish(client), b"finished during drain");
    w.thop.wait_close(19);
    assert_eq!(
        w.agent.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        w.agent.log()
    );
    drop(client2);
}

#[test]
fn malformed_datagrams_are_counted_and_harmless() {
    let mut w = world();
    // Deterministic junk from the switch's own address: random bytes,
    // truncated headers, a valid header with a body cut short.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..200 {
        let len = (rnd() % 1000) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        if i % 3 == 0 && d.len() >= 2 {
            d[0] = 0x54; // "TH": get past the magic check
            d[1] = 0x48;
        }
        w.thop.sock.send_to(&d, w.thop.agent).unwrap();
    }
    // A genuine frame of a future version: authenticated, so it is answered
    // with NACK UNSUPPORTED_VERSION listing ours.
    let body = Body::Abort(Abort {
        reason: AbortReason::Expired,
    });
    let h = handoff_proto::Header {
        flags: 0,
        sender: w.thop.node,
        receiver: w.thop.agent_node,
        boot: 0,
        conn_id: 77,
        msg_seq: w.thop.seq.next(),
        timestamp_ms: common::thop::now_ms(),
    };
    let mut buf = vec![0u8; handoff_proto::frame_len(&body)];
    let n = handoff_proto::seal(&h, &body, &w.thop.key, &mut buf);
    buf[handoff_proto::VERSION_OFFSET] = 9;
    w.thop.key.sign_in_place(&mut buf[..n]);
    w.thop.sock.send_to(&buf[..n], w.thop.agent).unwrap();
    let rx = w
        .thop
        .wait_for("version NACK", Duration::from_secs(5), |r| {
            matches!(r, Rx::Nack { conn_id: 77, .. })
        });
    assert!(
        matches!(
            rx,
            Rx::Nack {
                reason: NackReason::UnsupportedVersion,
                ..
            }
        ),
        "{rx:?}"
    );
    // Still serving.
    let client = curl(&w.bed, "/after-junk", &[]);
    let (rx, _, _) = handoff(&w.bed, &w.l, &mut w.thop, 78);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}\n{}", w.agent.log());
    let mut s = w.up.accept();
    read_request(&mut s);
    respond(&mut s, b"still fine");
    drop(s);
    assert_eq!(finish(client), b"still fine");
    let m = w.agent.metrics(&w.bed);
    let dropped: f64 = m
        .lines()
        .filter(|l| l.starts_with("baton_agent_thop_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(dropped >= 200.0, "every junk datagram counted: {m}");
    assert!(
        metric(&m, "baton_agent_thop_dropped_total{reason=\"bad_magic\"}") > 0.0,
        "{m}"
    );
}
