//! The switch's THOP receive path under attack: a frame replayed to another
//! worker (the NIC hashes a changed UDP source port elsewhere) or stamped
//! before the switch started is refused, a CLOSE from an agent the
//! connection was not handed to does not end it, and a key bound to one
//! agent cannot speak for another.

mod support;

use std::sync::Arc;

use dataplane::dispatch::WorkerEvent;
use dataplane::io::memory::MemBuf;
use dataplane::wire;
use dataplane::{Counters, Engine};
use handoff_proto::{Body, Close, CloseReason, Load};
use support::*;

fn load() -> Body<'static> {
    Body::Load(Load {
        active_conns: 1,
        adopted_per_sec: 1,
        capacity_hint: 100,
        interval_ms: 1000,
    })
}

fn loads(events: &[WorkerEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, WorkerEvent::Load { .. }))
        .count()
}

/// The same THOP payload in a datagram from another UDP source port.
fn from_port(frame: &[u8], port: u16) -> Vec<u8> {
    let off = wire::udp_payload_offset();
    let payload = &frame[off..];
    let mut f = vec![0u8; frame.len()];
    f[off..].copy_from_slice(payload);
    wire::emit_udp(
        &mut f,
        backend_mac(1),
        SWITCH_MAC,
        backend_ip(1),
        switch_ip(),
        port,
        9199,
        payload.len(),
    )
    .unwrap();
    f
}

#[test]
fn frame_replayed_to_another_worker_or_port_is_refused() {
    let mut bed = Bed::new(test_config());
    // A second worker of the same switch.
    let counters1 = Arc::new(Counters::default());
    let mut worker1: Engine<MemBuf> =
        Engine::new(1, &bed.cfg, counters1.clone(), bed.shared.clone()).unwrap();
    worker1.start(bed.now, &mut bed.sink);
    let f = bed.agent_frame(1, 0, load());
    bed.inject(&f);
    assert_eq!(loads(&bed.sink.events), 1);
    // Captured and sent again from another port: the NIC gives it to worker 1.
    let replay = from_port(&f, 40_001);
    worker1.handle_packet(bed.now, MemBuf::from_frame(&replay), &mut bed.sink);
    assert_eq!(
        loads(&bed.sink.events),
        1,
        "worker 1 accepted a frame worker 0 had accepted"
    );
    assert_eq!(drops(&counters1, "thop_replay"), 1);
    // And to worker 0 again from a third port.
    let replay = from_port(&f, 40_002);
    bed.inject(&replay);
    assert_eq!(loads(&bed.sink.events), 1);
    assert_eq!(drops(&bed.counters, "thop_replay"), 1);
}

#[test]
fn frame_stamped_before_the_switch_started_is_refused() {
    let mut bed = Bed::new(test_config());
    let ts = bed.shared.epoch_unix_ms - 10_000;
    let f = thop_frame(1, 0, 1 << 41, ts, load());
    bed.inject(&f);
    assert_eq!(loads(&bed.sink.events), 0, "a 10 s old LOAD was accepted");
    assert_eq!(drops(&bed.counters, "thop_replay"), 1);
    // Fresh frames from the same agent are fine.
    let f = bed.agent_frame(1, 0, load());
    bed.inject(&f);
    assert_eq!(loads(&bed.sink.events), 1);
}

const TO_FORWARDING: &str = r#"
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < . 1:1(0) ack 1 win 65535
0.020 < P. 1:28(27) ack 1 win 65535 "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
0.020 > . 1:1(0) ack 28 win 4069
0.020 > dispatch "GET /"
0.020 decide 1
0.020 > create 1 len 27
0.021 < ack 1
0.021 state FORWARDING
"#;

fn close() -> Body<'static> {
    Body::Close(Close {
        reason: CloseReason::ServerClose,
        bytes_from_client: 0,
        bytes_to_client: 0,
    })
}

#[test]
fn close_from_an_agent_the_connection_was_not_handed_to_is_refused() {
    let mut bed = Bed::new(test_config());
    bed.run_script(TO_FORWARDING);
    let cid = bed.creates.last().unwrap().1;
    // Agent 2 holds the key too and tries to end agent 1's connection.
    let f = bed.agent_frame(2, cid, close());
    bed.inject(&f);
    while bed.next_out().is_some() {}
    let state = bed
        .engine
        .state_of(client_ip(), bed.client_port, 0)
        .map_or("CLOSED", |s| s.name());
    assert_eq!(state, "FORWARDING", "another agent's CLOSE ended it");
    assert_eq!(drops(&bed.counters, "thop_not_owner"), 1);
    // The owner's CLOSE does (the entry then waits for the client's FIN).
    let f = bed.agent_frame(1, cid, close());
    bed.inject(&f);
    while bed.next_out().is_some() {}
    assert_eq!(
        bed.engine.state_of(client_ip(), bed.client_port, 0),
        Some(dataplane::state::State::ForwardingClosed)
    );
    assert_eq!(drops(&bed.counters, "thop_not_owner"), 1);
}
