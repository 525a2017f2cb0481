//! Recovering FORWARDING flows from the agents (`docs/thop.md` §9.4), on one
//! engine with a virtual clock: a record from a resync installs the flow at
//! its first segment; an unknown flow is looked up, held and installed when
//! an agent answers, or dropped after the last try; lookups are bounded; an
//! agent's restart is noticed; worker 0 says HELLO.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use dataplane::config::{AgentPeer, WorkerConfig};
use dataplane::dispatch::WorkerEvent;
use dataplane::io::PacketBuf;
use dataplane::state::State;
use dataplane::wire::{self, flags, Frame, TcpOpts, Verify};
use handoff_proto::{
    Body, Close, CloseReason, FlowRecord, Flows, Key, Keyring, Load, Opcode, Records,
};
use support::*;

const CONN: u64 = 0x8123_4567_0000_0042;

fn agents(n: u32) -> Arc<Vec<AgentPeer>> {
    Arc::new(
        (1..=n)
            .map(|b| AgentPeer {
                backend: b,
                ip: backend_ip(b),
                mac: Some(backend_mac(b)),
                thop: SocketAddr::new(backend_ip(b), 9199),
            })
            .collect(),
    )
}

fn bed_with(cfg: WorkerConfig, n: u32) -> Bed {
    let mut bed = Bed::new(cfg);
    bed.engine.set_agents(agents(n));
    // Worker 0 says HELLO to the new agent set at once.
    bed.advance_to(bed.now + 1_000_000);
    bed.sink.out.clear();
    bed
}

fn record(bed: &Bed, conn_id: u64) -> FlowRecord {
    FlowRecord {
        conn_id,
        origin_boot: 0,
        client: SocketAddr::new(client_ip(), bed.client_port),
        vip: SocketAddr::new(vip(), 80),
    }
}

fn flows(bed: &mut Bed, b: u32, recs: &[FlowRecord], fl: u16) {
    let f = bed.agent_frame(
        b,
        0,
        Body::Flows(Flows {
            flags: fl,
            records: Records::List(recs),
        }),
    );
    bed.inject(&f);
}

/// A data segment of the client's connection, well into its life.
fn client_data(bed: &Bed, seq: u32) -> Vec<u8> {
    bed.client_frame(
        flags::ACK | flags::PSH,
        seq,
        777,
        502,
        TcpOpts::default(),
        b"GET /next HTTP/1.1\r\n\r\n",
    )
}

/// The THOP frames emitted, as (backend, opcode, frame).
fn thop_out(bed: &mut Bed) -> Vec<(u32, Opcode, handoff_proto::Header, Vec<u8>)> {
    let keys = Keyring::new(Key::new(1, KEY));
    let mut out = Vec::new();
    let mut rest = Vec::new();
    while let Some(f) = bed.next_out() {
        let d = f.data().to_vec();
        let Ok(Frame::Udp(u)) = wire::parse(&d, Verify::Full) else {
            rest.push(f);
            continue;
        };
        let b = (1..=3)
            .find(|b| backend_ip(*b) == u.dst)
            .expect("to a backend");
        let payload = &d[u.payload.0..u.payload.0 + u.payload.1];
        let (frame, _) =
            handoff_proto::open(&keys, handoff_proto::node_id(u.dst), payload).expect("THOP");
        out.push((b, frame.body.opcode(), frame.header, payload.to_vec()));
    }
    bed.sink.out = rest;
    out
}

/// Frames relayed to backend `b` (MACs rewritten).
fn forwarded_to(bed: &mut Bed, b: u32) -> usize {
    let n = bed
        .sink
        .out
        .iter()
        .filter(|f| f.data()[0..6] == backend_mac(b))
        .filter(|f| matches!(wire::parse(f.data(), Verify::Header), Ok(Frame::Tcp(_))))
        .count();
    bed.sink.out.clear();
    n
}

fn scalar(bed: &Bed, name: &str) -> u64 {
    bed.counters.snapshot().get(name)
}

#[test]
fn a_resync_record_installs_the_flow_at_its_first_segment_and_close_ends_it() {
    let mut bed = bed_with(test_config(), 2);
    let r = record(&bed, CONN);
    flows(&mut bed, 2, &[r], Flows::LAST);
    assert_eq!(scalar(&bed, "recovery_records"), 1);
    let seg = client_data(&bed, 5000);
    bed.inject(&seg);
    assert_eq!(
        forwarded_to(&mut bed, 2),
        1,
        "relayed to the agent's backend"
    );
    assert_eq!(scalar(&bed, "recovered_resync"), 1);
    assert_eq!(
        bed.engine.state_of(client_ip(), bed.client_port, 0),
        Some(State::Forwarding)
    );
    // The next segment takes the ordinary path.
    let seg = client_data(&bed, 5022);
    bed.inject(&seg);
    assert_eq!(forwarded_to(&mut bed, 2), 1);
    // A CLOSE from another agent may not end it; from the holder it does,
    // under the id the old process chose.
    let close = Body::Close(Close {
        reason: CloseReason::ClientFin,
        bytes_from_client: 1,
        bytes_to_client: 1,
    });
    let f = bed.agent_frame(1, CONN, close);
    bed.inject(&f);
    assert_eq!(
        bed.engine.state_of(client_ip(), bed.client_port, 0),
        Some(State::Forwarding),
        "the id names no connection of that agent's"
    );
    let f = bed.agent_frame(2, CONN, close);
    bed.inject(&f);
    let acks = thop_out(&mut bed);
    assert!(acks
        .iter()
        .all(|(b, op, h, _)| *op == Opcode::Ack && h.conn_id == CONN && *b != 0));
    assert_eq!(acks.len(), 2, "every CLOSE is acknowledged");
    // Ended: what is left relays the client's FIN to the backend's TIME_WAIT.
    assert_eq!(
        bed.engine.state_of(client_ip(), bed.client_port, 0),
        Some(State::ForwardingClosed)
    );
}

#[test]
fn an_unknown_flow_is_looked_up_held_and_installed_when_an_agent_answers() {
    let mut bed = bed_with(test_config(), 3);
    let seg = client_data(&bed, 9000);
    bed.inject(&seg);
    let asked = thop_out(&mut bed);
    assert_eq!(asked.len(), 3, "one LOOKUP to each agent: {asked:?}");
    for (_, op, h, frame) in &asked {
        assert_eq!(*op, Opcode::Lookup);
        assert_eq!(h.boot, bed.cfg.boot, "the switch's boot in every frame");
        let keys = Keyring::new(Key::new(1, KEY));
        let (f, _) = handoff_proto::open(&keys, h.receiver, frame).unwrap();
        let Body::Lookup(l) = f.body else { panic!() };
        assert_eq!(l.records.iter().collect::<Vec<_>>(), vec![record(&bed, 0)]);
    }
    assert_eq!(bed.engine.recovery_pending(), 1);
    // A second segment while the lookup runs replaces the held one.
    let seg = client_data(&bed, 9022);
    bed.inject(&seg);
    assert_eq!(drops(&bed.counters, "recovering"), 1);
    assert!(thop_out(&mut bed).is_empty(), "one lookup per flow");
    let r = record(&bed, CONN);
    flows(&mut bed, 3, &[r], Flows::ANSWER);
    bed.advance_to(bed.now + 1_000_000);
    assert_eq!(forwarded_to(&mut bed, 3), 1, "the held segment goes out");
    assert_eq!(scalar(&bed, "recovered_lookup"), 1);
    assert_eq!(bed.engine.recovery_pending(), 0);
}

#[test]
fn a_flow_no_agent_claims_is_dropped_after_the_last_lookup() {
    let mut bed = bed_with(test_config(), 2);
    let seg = client_data(&bed, 9000);
    bed.inject(&seg);
    bed.advance_to(bed.now + 1_000_000_000);
    let lookups = thop_out(&mut bed)
        .into_iter()
        .filter(|(_, op, _, _)| *op == Opcode::Lookup)
        .count();
    assert_eq!(lookups, 2 * 3, "lookup_tries LOOKUPs to each agent");
    assert_eq!(drops(&bed.counters, "unresolved"), 1);
    assert_eq!(bed.engine.recovery_pending(), 0);
    assert_eq!(bed.engine.connections(), 0);
    assert_eq!(forwarded_to(&mut bed, 1) + forwarded_to(&mut bed, 2), 0);
}

#[test]
fn lookups_are_bounded_per_second() {
    let mut cfg = test_config();
    cfg.recovery.lookups_per_sec = 2;
    let mut bed = bed_with(cfg, 1);
    for port in 41000..41005 {
        bed.client_port = port;
        let seg = client_data(&bed, 9000);
        bed.inject(&seg);
    }
    assert_eq!(bed.engine.recovery_pending(), 2);
    assert_eq!(drops(&bed.counters, "lookup_limited"), 3);
    assert_eq!(thop_out(&mut bed).len(), 2);
}

#[test]
fn without_recovery_an_unknown_flow_is_dropped_as_before() {
    let mut cfg = test_config();
    cfg.recovery.enabled = false;
    let mut bed = bed_with(cfg, 2);
    let seg = client_data(&bed, 9000);
    bed.inject(&seg);
    assert_eq!(drops(&bed.counters, "no_flow"), 1);
    assert!(bed.sink.out.is_empty());
}

#[test]
fn an_agent_restart_is_noticed_once_and_its_flows_stay() {
    let mut bed = bed_with(test_config(), 2);
    let load = Body::Load(Load {
        active_conns: 1,
        adopted_per_sec: 0,
        capacity_hint: 100,
        interval_ms: 1000,
    });
    let f = bed.agent_frame_boot(1, 0x1111, 0, load);
    bed.inject(&f);
    let r = record(&bed, CONN);
    flows(&mut bed, 1, &[r], Flows::LAST);
    let seg = client_data(&bed, 5000);
    bed.inject(&seg);
    assert_eq!(forwarded_to(&mut bed, 1), 1);
    // The same boot again changes nothing.
    let f = bed.agent_frame_boot(1, 0x1111, 0, load);
    bed.inject(&f);
    bed.advance_to(bed.now + 1_000_000);
    assert_eq!(bed.engine.connections(), 1);
    // A new boot: reported once. The entry stays: a connection the agent
    // handed over to the server process outlives the agent.
    for _ in 0..2 {
        let f = bed.agent_frame_boot(1, 0x2222, 0, load);
        bed.inject(&f);
    }
    bed.advance_to(bed.now + 1_000_000);
    assert_eq!(bed.engine.connections(), 1);
    assert_eq!(scalar(&bed, "agent_restarts"), 1);
    assert!(bed.sink.events.iter().any(|e| matches!(
        e,
        WorkerEvent::AgentRestarted {
            old: 0x1111,
            new: 0x2222,
            ..
        }
    )));
}

#[test]
fn worker_zero_says_hello_at_start_and_every_interval() {
    let mut bed = Bed::new(test_config());
    bed.engine.set_agents(agents(2));
    bed.advance_to(bed.now + 1_000_000);
    let hellos = thop_out(&mut bed);
    assert_eq!(hellos.len(), 2);
    for (_, op, h, _) in &hellos {
        assert_eq!(*op, Opcode::Hello);
        assert_eq!(h.boot, bed.cfg.boot);
        assert_ne!(h.boot, 0);
    }
    bed.advance_to(bed.now + 500_000_000);
    assert!(thop_out(&mut bed).is_empty());
    bed.advance_to(bed.now + 600_000_000);
    assert_eq!(thop_out(&mut bed).len(), 2, "again after hello_interval");
}

#[test]
fn a_flow_this_process_handed_off_is_not_installed_twice() {
    let mut bed = bed_with(test_config(), 1);
    // The agent says this switch process handed it off: another worker of
    // ours holds it, so this one must not make a second entry.
    let mut r = record(&bed, CONN);
    r.origin_boot = bed.cfg.boot;
    flows(&mut bed, 1, &[r], Flows::ANSWER);
    let seg = client_data(&bed, 5000);
    bed.inject(&seg);
    assert_eq!(drops(&bed.counters, "other_worker"), 1);
    assert_eq!(bed.engine.connections(), 0);
    assert_eq!(forwarded_to(&mut bed, 1), 0);
}
