//! Per-agent THOP keys on the switch: frames to an agent are tagged with its
//! own key, and a key bound to one agent is refused from another.

mod support;

use dataplane::config::WorkerConfig;
use dataplane::dispatch::{Decision, Verdict, WorkerEvent};
use dataplane::io::PacketBuf;
use dataplane::wire;
use handoff_proto::{Body, FrameView, Header, Key, Load};
use support::*;

const KEY1: [u8; 32] = *b"agent-1 key; bound to backend 1.";
const KEY2: [u8; 32] = *b"agent-2 key; bound to backend 2.";

fn config() -> WorkerConfig {
    let mut cfg = test_config();
    cfg.thop.keys.push((11, KEY1));
    cfg.thop.keys.push((12, KEY2));
    cfg.thop.peers = vec![
        (handoff_proto::node_id(backend_ip(1)), 11),
        (handoff_proto::node_id(backend_ip(2)), 12),
    ];
    cfg
}

/// A LOAD claiming to come from agent `claimed`, tagged with `key`.
fn load_from(bed: &Bed, claimed: u32, key: &Key) -> Vec<u8> {
    let body = Body::Load(Load {
        active_conns: 0,
        adopted_per_sec: 0,
        capacity_hint: 1,
        interval_ms: 1000,
    });
    let hdr = Header {
        flags: 0,
        sender: handoff_proto::node_id(backend_ip(claimed)),
        receiver: handoff_proto::node_id(switch_ip()),
        boot: 0,
        conn_id: 0,
        msg_seq: 1 << 41,
        timestamp_ms: bed.shared.epoch_unix_ms + bed.now / 1_000_000,
    };
    let flen = handoff_proto::frame_len(&body);
    let mut f = vec![0u8; wire::udp_payload_offset() + flen];
    handoff_proto::seal(&hdr, &body, key, &mut f[wire::udp_payload_offset()..]);
    wire::emit_udp(
        &mut f,
        backend_mac(2),
        SWITCH_MAC,
        backend_ip(2),
        switch_ip(),
        9199,
        9199,
        flen,
    )
    .unwrap();
    f
}

#[test]
fn a_key_bound_to_another_agent_cannot_speak_for_this_one() {
    let mut bed = Bed::new(config());
    // Agent 2 reports LOAD in agent 1's name with its own key.
    let forged = load_from(&bed, 1, &Key::new(12, KEY2));
    bed.inject(&forged);
    assert!(
        !bed.sink
            .events
            .iter()
            .any(|e| matches!(e, WorkerEvent::Load { .. })),
        "{:?}",
        bed.sink.events
    );
    let drops = bed.counters.snapshot().drops;
    let n = drops
        .iter()
        .find(|(r, _)| *r == "thop_key_not_for_sender")
        .map_or(0, |x| x.1);
    assert_eq!(n, 1, "{drops:?}");
    // Agent 1 with its key is heard, and credited by its node id.
    let genuine = load_from(&bed, 1, &Key::new(11, KEY1));
    bed.inject(&genuine);
    let want = handoff_proto::node_id(backend_ip(1));
    assert!(bed
        .sink
        .events
        .iter()
        .any(|e| matches!(e, WorkerEvent::Load { sender, .. } if *sender == want)));
}

#[test]
fn creates_are_tagged_with_the_agents_own_key() {
    let mut bed = Bed::new(config());
    bed.run_script(
        r#"
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < . 1:1(0) ack 1 win 65535
0.020 < P. 1:28(27) ack 1 win 65535 "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
0.020 > . 1:1(0) ack 28 win 4069
0.020 > dispatch "GET /"
"#,
    );
    let r = bed.sink.requests.pop().expect("dispatch request");
    let d = Decision {
        token: r.token,
        verdict: Verdict::Backend(target(2)),
        pool: 0,
        header: r.header,
    };
    bed.engine.handle_decision(bed.now, d, &mut bed.sink);
    let pkt = bed.next_out().expect("CREATE");
    let data = pkt.data();
    let (view, _) = FrameView::parse(&data[wire::udp_payload_offset()..]).unwrap();
    assert_eq!(view.key_id(), 12);
    assert!(Key::new(12, KEY2).verify(view.as_bytes()));
}
