//! THOP security with the real `baton-agent`: a CREATE captured before a
//! restart is not adopted again, frames from nodes that are not the agent's
//! switches (or signed with another switch's key) are refused, and a flood of
//! forged datagrams neither delays a genuine handoff nor floods the log.

mod common;

use common::agent_proc::{config, AgentProc};
use common::bed::{Bed, SWITCH_IP};
use common::serve::*;
use common::thop::{now_ms, Rx, SwitchThop, KEY_ID};
use common::upstream::{read_request, respond, Upstream};
use handoff_proto::{
    node_id, seal, Abort, AbortReason, Body, CreateSplitter, Header, Key, MAX_FRAME_LEN_V4,
};
use std::time::{Duration, Instant};
use testkit::http::sample as metric;

/// The CREATE fragments for a connection, as datagrams (so they can be
/// replayed byte for byte).
fn create_datagrams(
    thop: &SwitchThop,
    conn_id: u64,
    st: &handoff_proto::TcpState,
    req: &[u8],
) -> Vec<Vec<u8>> {
    let split = CreateSplitter::new(*st, req, MAX_FRAME_LEN_V4).unwrap();
    (0..split.fragment_count())
        .map(|i| {
            let h = Header {
                flags: 0,
                sender: thop.node,
                receiver: thop.agent_node,
                boot: 0,
                conn_id,
                msg_seq: thop.seq.next(),
                timestamp_ms: now_ms(),
            };
            let mut buf = vec![0u8; split.frame_len(i)];
            split.write(i, &h, &thop.key, &mut buf);
            buf
        })
        .collect()
}

/// Hands one POST off to the agent and serves it; returns the CREATE's
/// datagrams, as an attacker on the data network would have captured them.
fn one_handoff(bed: &Bed, up: &Upstream, agent: &AgentProc, thop: &mut SwitchThop) -> Vec<Vec<u8>> {
    let l = switch_listener(bed, None);
    let client = curl(bed, "/order", &["--data", "item=1&qty=1"]);
    let (st, req) = accept_and_freeze(bed, &l, 12);
    let frames = create_datagrams(thop, 41, &st, &req);
    for f in &frames {
        thop.sock.send_to(f, thop.agent).unwrap();
    }
    assert!(
        matches!(thop.wait_ack(41), Rx::Ack { .. }),
        "{}",
        agent.log()
    );
    bed.forward_flow(st.client());
    let mut s = up.accept();
    assert_eq!(read_request(&mut s), req);
    respond(&mut s, b"ordered once");
    drop(s);
    assert_eq!(finish(client), b"ordered once");
    frames
}

/// Replays `frames` to the restarted agent: nothing answers, the server
/// does not see the request again, and the agent counts every frame under
/// `reason`.
fn replay_refused(
    bed: &Bed,
    up: &Upstream,
    agent: &AgentProc,
    thop: &mut SwitchThop,
    frames: &[Vec<u8>],
    reason: &str,
) {
    for f in frames {
        thop.sock.send_to(f, thop.agent).unwrap();
    }
    let answers = thop.collect(Duration::from_millis(1500), |r| {
        matches!(
            r,
            Rx::Ack { conn_id: 41, .. } | Rx::Nack { conn_id: 41, .. }
        )
    });
    assert!(answers.is_empty(), "replay answered: {answers:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        up.conns.try_recv().is_err(),
        "the server received the request a second time\n{}",
        agent.log()
    );
    let m = agent.metrics(bed);
    assert_eq!(
        metric(
            &m,
            &format!("baton_agent_thop_dropped_total{{reason=\"{reason}\"}}")
        ),
        frames.len() as f64,
        "{m}"
    );
}

/// One handoff, the agent restarted (killed), `pause`, then the captured
/// CREATE replayed: refused and counted under `reason`.
fn replay_after_restart(pause: Duration, reason: &str) {
    let bed = Bed::new();
    let up = Upstream::start(&bed);
    let agent = AgentProc::start(&bed, &config(""));
    let mut thop = SwitchThop::new(&bed);
    let frames = one_handoff(&bed, &up, &agent, &mut thop);
    drop(agent);
    std::thread::sleep(pause);
    let agent = AgentProc::start(&bed, &config(""));
    replay_refused(&bed, &up, &agent, &mut thop, &frames, reason);
    // The switch's next frames are still taken.
    assert!(!one_handoff(&bed, &up, &agent, &mut thop).is_empty());
}

#[test]
fn create_replayed_after_an_agent_restart_is_refused() {
    // Replayed once the start slack has passed: refused by its timestamp.
    replay_after_restart(Duration::from_millis(1500), "before_receiver_start");
}

#[test]
fn create_replayed_at_once_to_a_killed_and_restarted_agent_is_refused() {
    // Replayed the moment the agent is back, within the slack its timestamp
    // check allows for clock differences: the window the killed process
    // kept in its replay state refuses it.
    replay_after_restart(Duration::ZERO, "duplicate_seq");
}

/// An ABORT for `conn_id`, claiming to come from `sender`, signed with `key`.
fn abort_frame(thop: &SwitchThop, sender: u32, conn_id: u64, key: &Key) -> Vec<u8> {
    let body = Body::Abort(Abort {
        reason: AbortReason::ClientReset,
    });
    let h = Header {
        flags: 0,
        sender,
        receiver: thop.agent_node,
        boot: 0,
        conn_id,
        msg_seq: thop.seq.next(),
        timestamp_ms: now_ms(),
    };
    let mut buf = vec![0u8; handoff_proto::frame_len(&body)];
    let n = seal(&h, &body, key, &mut buf);
    buf.truncate(n);
    buf
}

#[test]
fn frames_from_a_node_that_is_not_a_switch_are_refused() {
    let bed = Bed::new();
    let _up = Upstream::start(&bed);
    let agent = AgentProc::start(&bed, &config(""));
    let mut thop = SwitchThop::new(&bed);
    // Another backend holding the key speaks under its own node id: the key
    // is bound to the configured switches, so the frame is refused after the
    // tag check (before any replay state is touched).
    let other_agent = node_id("198.18.0.12".parse().unwrap());
    let f = abort_frame(&thop, other_agent, 51, &thop.key.clone());
    thop.sock.send_to(&f, thop.agent).unwrap();
    // No answer of any kind (an ACK would be addressed to the other node).
    let answers = thop.collect(Duration::from_millis(700), |r| !matches!(r, Rx::Load(_)));
    assert!(answers.is_empty(), "answered: {answers:?}");
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(
            &m,
            "baton_agent_thop_dropped_total{reason=\"key_not_for_sender\"}"
        ),
        1.0,
        "{m}"
    );
}

#[test]
fn abort_signed_with_another_switchs_key_is_refused() {
    // Two switches, one key each; the second switch's key is used to speak
    // for the first and cut its connection.
    let other_key = "a4d7c2e19f3b6058172cde94b0fa8e6d3c5f0b21e7d4986a1f3c5e7092b4d6f8";
    let yaml = config("").replace(
        &format!("  switches: [{SWITCH_IP}]\n"),
        &format!("  switches: [{SWITCH_IP}, 198.18.0.3]\n"),
    );
    let yaml = yaml.replace(
        "services:\n",
        &format!(
            "      switches: [{SWITCH_IP}]\n    - id: 8\n      key: \"{other_key}\"\n      switches: [198.18.0.3]\nservices:\n"
        ),
    );
    let bed = Bed::new();
    let up = Upstream::start(&bed);
    let agent = AgentProc::start(&bed, &yaml);
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    let client = curl(&bed, "/kept", &[]);
    let (st, req) = accept_and_freeze(&bed, &l, 0);
    thop.create(61, &st, &req);
    assert!(
        matches!(thop.wait_ack(61), Rx::Ack { .. }),
        "{}",
        agent.log()
    );
    bed.forward_flow(st.client());
    let mut s = up.accept();
    read_request(&mut s);

    let forged = abort_frame(&thop, thop.node, 61, &Key::from_hex(8, other_key).unwrap());
    thop.sock.send_to(&forged, thop.agent).unwrap();
    let answers = thop.collect(Duration::from_millis(700), |r| {
        matches!(r, Rx::Ack { conn_id: 61, .. })
    });
    assert!(answers.is_empty(), "forged ABORT answered: {answers:?}");
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(
            &m,
            "baton_agent_thop_dropped_total{reason=\"key_not_for_sender\"}"
        ),
        1.0,
        "{m}"
    );
    // The connection lives on.
    respond(&mut s, b"still mine");
    drop(s);
    assert_eq!(finish(client), b"still mine");
}

#[test]
fn bad_tag_flood_neither_delays_a_handoff_nor_floods_the_log() {
    const FLOOD: usize = 100_000;
    let bed = Bed::new();
    let up = Upstream::start(&bed);
    let agent = AgentProc::start(&bed, &config(""));
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    // Forged ABORTs from the switch's own address (allowed), wrong tag.
    let forged = abort_frame(&thop, thop.node, 99, &Key::new(KEY_ID, [0x5c; 32]));
    let target = thop.agent;
    let flooder = testkit::netns::spawn_in(&bed.switch, move || {
        let sock = std::net::UdpSocket::bind((SWITCH_IP, 0)).unwrap();
        let mut sent = 0;
        while sent < FLOOD {
            if sock.send_to(&forged, target).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(50));
    let client = curl(&bed, "/during-flood", &[]);
    let (st, req) = accept_and_freeze(&bed, &l, 0);
    let t = Instant::now();
    thop.create(71, &st, &req);
    let rx = thop.wait_ack(71);
    let took = t.elapsed();
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}");
    assert!(
        took < Duration::from_secs(3),
        "handoff took {took:?} under the flood"
    );
    bed.forward_flow(st.client());
    let mut s = up.accept();
    read_request(&mut s);
    respond(&mut s, b"served");
    drop(s);
    assert_eq!(finish(client), b"served");
    assert_eq!(flooder.join().unwrap(), FLOOD);
    std::thread::sleep(Duration::from_millis(500));
    let m = agent.metrics(&bed);
    assert!(
        metric(&m, "baton_agent_thop_dropped_total{reason=\"bad_tag\"}") > 0.0,
        "{m}"
    );
    let log = agent.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("THOP frame") || l.contains("THOP replay"))
        .count();
    assert!(
        lines <= 40,
        "{lines} log lines about rejected frames for {FLOOD} forged datagrams"
    );
}
