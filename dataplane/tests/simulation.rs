//! Seeded simulation: a retransmitting client, the control plane and an agent
//! around one worker whose packet I/O drops, duplicates and reorders frames
//! (`FaultyIo`). Asserts the success (every seed hands the exact request off)
//! and the expected failure (a dead link hands nothing off and leaks nothing).

mod support;

use dataplane::dispatch::{channels, Decision, Verdict};
use dataplane::io::faulty::{FaultConfig, FaultDirection, FaultyIo};
use dataplane::io::memory::MemoryIo;
use dataplane::io::PacketBuf;
use dataplane::state::State;
use dataplane::wire::{self, flags, Frame, TcpOpts, Verify};
use dataplane::Worker;
use handoff_proto::{Body, Key, Keyring};
use support::*;

const REQ: &[u8] = b"GET /catalog/item/1234 HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\nX-Trace: simulation\r\n\r\n";

/// What happened in one run.
struct Outcome {
    handed_off: Option<Vec<u8>>,
    state: Option<State>,
    pool_free: usize,
    faults: dataplane::io::faulty::FaultStats,
}

fn simulate(fault: FaultConfig, port: u16) -> Outcome {
    let (mut wq, ctrl) = channels(1, 64);
    let q = wq.remove(0);
    let shared = q.shared.clone();
    let cfg = test_config();
    let io = FaultyIo::new(MemoryIo::new(1024), fault);
    let mut w = Worker::new(0, &cfg, io, q).unwrap();
    let keys = Keyring::new(Key::new(1, KEY));
    let isn = 4_242_000u32;
    let pieces: Vec<&[u8]> = REQ.chunks(REQ.len() / 5 + 1).collect();
    let (mut iss, mut acked) = (None::<u32>, 0u32);
    let mut agent_got: Option<Vec<u8>> = None;
    let mut agent_seq = 1u64 << 42;
    let mut now = 1_000_000_000u64;
    let step = 10_000_000u64; // 10 ms of virtual time per turn
    for turn in 0..3000u64 {
        // The client (go-back-N every 200 ms, SYN every second until answered).
        match iss {
            None if turn % 100 == 0 => {
                let f = tcp_frame(
                    port,
                    flags::SYN,
                    isn,
                    0,
                    65535,
                    TcpOpts {
                        mss: Some(1460),
                        ..Default::default()
                    },
                    b"",
                );
                w.io_mut().inner_mut().inject(&f);
            }
            Some(iss) if turn % 20 == 0 && (acked as usize) < REQ.len() => {
                let mut off = 0usize;
                for p in &pieces {
                    if off + p.len() > acked as usize {
                        let f = tcp_frame(
                            port,
                            flags::ACK | flags::PSH,
                            isn + 1 + off as u32,
                            iss + 1,
                            65535,
                            TcpOpts::default(),
                            p,
                        );
                        w.io_mut().inner_mut().inject(&f);
                    }
                    off += p.len();
                }
            }
            _ => {}
        }
        w.poll_once(now);
        // The control plane: backend 1 for every request.
        while let Ok(r) = ctrl.requests.try_recv() {
            let d = Decision {
                token: r.token,
                verdict: Verdict::Backend(target(1)),
                pool: 0,
                header: r.header,
            };
            ctrl.decide(d).unwrap();
        }
        // What the switch sent: to the client, or THOP to the agent.
        for f in w.io_mut().inner_mut().take_tx() {
            match wire::parse(f.data(), Verify::Full) {
                Ok(Frame::Tcp(s)) if s.dst == client_ip() => {
                    if s.has(flags::SYN | flags::ACK) {
                        iss = Some(s.seq);
                    }
                    if s.has(flags::ACK) {
                        acked = acked.max(s.ack.wrapping_sub(isn + 1));
                    }
                }
                Ok(Frame::Tcp(s)) => assert_eq!(s.dst, vip(), "relayed to the backend"),
                Ok(Frame::Udp(u)) => {
                    let d = f.data();
                    let (fr, _) = handoff_proto::open(
                        &keys,
                        handoff_proto::node_id(backend_ip(1)),
                        &d[u.payload.0..u.payload.0 + u.payload.1],
                    )
                    .expect("authentic THOP");
                    if let Body::Create(c) = fr.body {
                        // Single-fragment CREATEs here; the agent adopts and ACKs
                        // (again for every retransmission).
                        assert_eq!(c.offset, 0);
                        agent_got = Some(c.data.to_vec());
                        agent_seq += 1;
                        let ack = thop_frame(
                            1,
                            fr.header.conn_id,
                            agent_seq,
                            shared.epoch_unix_ms + now / 1_000_000,
                            Body::Ack(handoff_proto::Ack {
                                echo_seq: fr.header.msg_seq,
                            }),
                        );
                        w.io_mut().inner_mut().inject(&ack);
                    }
                }
                _ => {}
            }
        }
        if w.engine().state_of(client_ip(), port, 0) == Some(State::Forwarding) {
            break;
        }
        now += step;
    }
    let state = w.engine().state_of(client_ip(), port, 0);
    let faults = w.io_mut().fault_stats();
    Outcome {
        handed_off: agent_got,
        state,
        pool_free: w.io_mut().inner_mut().pool_free(),
        faults,
    }
}

#[test]
fn lossy_reordering_duplicating_link_still_hands_off_the_exact_request() {
    let mut total = dataplane::io::faulty::FaultStats::default();
    for seed in 0..24u64 {
        let fault = FaultConfig {
            seed,
            drop: 0.2,
            duplicate: 0.15,
            reorder: 0.25,
            direction: FaultDirection::Both,
        };
        let o = simulate(fault, 30_000 + seed as u16);
        assert_eq!(o.state, Some(State::Forwarding), "seed {seed}");
        assert_eq!(
            o.handed_off.as_deref(),
            Some(REQ),
            "seed {seed}: the agent got exactly the request"
        );
        total.dropped += o.faults.dropped;
        total.duplicated += o.faults.duplicated;
        total.reordered += o.faults.reordered;
    }
    // The faults really happened.
    assert!(
        total.dropped > 20 && total.duplicated > 10 && total.reordered > 20,
        "{total:?}"
    );
}

#[test]
fn dead_link_hands_nothing_off_and_leaks_no_buffer() {
    let fault = FaultConfig {
        seed: 1,
        drop: 1.0,
        direction: FaultDirection::Rx,
        ..Default::default()
    };
    let o = simulate(fault, 31_000);
    assert_eq!(o.state, None);
    assert_eq!(o.handed_off, None);
    assert_eq!(o.pool_free, 1024, "every buffer back in the pool");
}
