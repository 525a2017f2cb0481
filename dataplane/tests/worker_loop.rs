//! The worker loop over the in-memory backend: ARP and ICMP for the switch,
//! the dispatch queues, backend MAC resolution by ARP, THOP replies relayed
//! between workers, and a threaded run that stops.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::counters::DropReason;
use dataplane::dispatch::{
    channels, ConnToken, Decision, HandoffOutcome, Verdict, WorkerCommand, WorkerEvent,
};
use dataplane::io::memory::{MemBuf, MemoryIo};
use dataplane::io::PacketBuf;
use dataplane::io::PollMode;
use dataplane::peer::{PeerMsg, PeerReply};
use dataplane::wire::{self, checksum, flags, Frame, TcpOpts, Verify};
use dataplane::Worker;
use handoff_proto::{Body, Key, Keyring};
use support::*;

fn tx(w: &mut Worker<MemoryIo>) -> Vec<MemBuf> {
    w.io_mut().take_tx()
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    wire::emit_arp(
        &mut f,
        true,
        CLIENT_MAC,
        [198, 18, 0, 101].into(),
        [0; 6],
        target.into(),
    )
    .unwrap();
    f
}

fn icmp_echo() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 4];
    f[0..6].copy_from_slice(&SWITCH_MAC);
    f[6..12].copy_from_slice(&CLIENT_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 32, 0, 1, 0, 0, 63, 1, 0, 0, 198, 18, 0, 101, 198, 18, 0, 10,
    ]);
    let c = !checksum::data(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut f[34..46];
    icmp.copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g']);
    let c = !checksum::data(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn answers_arp_and_ping_for_its_addresses_only() {
    let (mut wq, _ctrl) = channels(1, 16);
    let mut cfg = test_config();
    cfg.gratuitous_arp = true;
    let mut w = Worker::new(0, &cfg, MemoryIo::new(256), wq.remove(0)).unwrap();
    w.poll_once(1);
    let garp = tx(&mut w);
    assert_eq!(
        garp.len(),
        2,
        "gratuitous ARP for the data address and the VIP"
    );
    for g in &garp {
        let Ok(Frame::Arp(a)) = wire::parse(g.data(), Verify::Full) else {
            panic!()
        };
        assert!(a.request && a.sender_ip == a.target_ip && a.sender_mac == SWITCH_MAC);
    }
    w.io_mut().inject(&arp_request([198, 18, 0, 10]));
    w.io_mut().inject(&arp_request([198, 18, 0, 2]));
    w.io_mut().inject(&arp_request([198, 18, 0, 50]));
    w.poll_once(2);
    let out = tx(&mut w);
    assert_eq!(out.len(), 2, "no answer for an address that is not ours");
    for (o, ip) in out.iter().zip([[198, 18, 0, 10], [198, 18, 0, 2]]) {
        let Ok(Frame::Arp(a)) = wire::parse(o.data(), Verify::Full) else {
            panic!()
        };
        assert!(!a.request);
        assert_eq!(
            (a.sender_mac, a.sender_ip.octets(), a.target_mac),
            (SWITCH_MAC, ip, CLIENT_MAC)
        );
        assert_eq!(&o.data()[0..6], &CLIENT_MAC);
    }
    w.io_mut().inject(&icmp_echo());
    w.poll_once(3);
    let out = tx(&mut w);
    assert_eq!(out.len(), 1);
    let r = out[0].data();
    assert_eq!((&r[0..6], &r[6..12]), (&CLIENT_MAC[..], &SWITCH_MAC[..]));
    assert_eq!(&r[26..30], &[198, 18, 0, 10], "source is the VIP");
    assert_eq!(&r[30..34], &[198, 18, 0, 101]);
    assert_eq!(r[34], 0, "echo reply");
    assert_eq!(
        checksum::data(&r[14..34]),
        0xffff,
        "IPv4 checksum (incremental) is valid"
    );
    assert_eq!(
        checksum::data(&r[34..46]),
        0xffff,
        "ICMP checksum (incremental) is valid"
    );
    let c = w.counters().snapshot();
    assert_eq!(c.get("icmp_echo_replies"), 1);
    assert_eq!(c.get("arp_replies_sent"), 2);
}

#[test]
fn two_workers_resolve_backend_mac_and_relay_thop_replies() {
    let (mut wq, ctrl) = channels(2, 64);
    let mut cfg = test_config();
    cfg.static_macs.clear();
    let q1 = wq.pop().unwrap();
    let q0 = wq.pop().unwrap();
    let shared = q0.shared.clone();
    let mut w0 = Worker::new(0, &cfg, MemoryIo::new(512), q0).unwrap();
    let mut w1 = Worker::new(1, &cfg, MemoryIo::new(512), q1).unwrap();
    let mut now = 1_000_000_000u64;
    let port = 45000;
    let isn = 7_000_000u32;
    w0.io_mut().inject(&tcp_frame(
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
    ));
    w0.poll_once(now);
    let synack = tx(&mut w0);
    let Ok(Frame::Tcp(sa)) = wire::parse(synack[0].data(), Verify::Full) else {
        panic!()
    };
    let iss = sa.seq;
    let req = b"GET /r HTTP/1.1\r\nHost: h\r\n\r\n";
    w0.io_mut().inject(&tcp_frame(
        port,
        flags::ACK,
        isn + 1,
        iss + 1,
        65535,
        TcpOpts::default(),
        b"",
    ));
    w0.io_mut().inject(&tcp_frame(
        port,
        flags::ACK | flags::PSH,
        isn + 1,
        iss + 1,
        65535,
        TcpOpts::default(),
        req,
    ));
    now += 1_000_000;
    w0.poll_once(now);
    assert_eq!(tx(&mut w0).len(), 1, "the ACK of the request");
    let r = ctrl.requests.try_recv().expect("a dispatch request");
    assert_eq!(r.header, req);
    assert_eq!(r.token.worker, 0);
    let t = target(1);
    ctrl.decide(Decision {
        token: r.token,
        verdict: Verdict::Backend(t),
        pool: 0,
        header: r.header,
    })
    .unwrap();
    now += 1_000_000;
    w0.poll_once(now);
    let arp = tx(&mut w0);
    assert_eq!(arp.len(), 1, "ARP request for the backend");
    let Ok(Frame::Arp(a)) = wire::parse(arp[0].data(), Verify::Full) else {
        panic!()
    };
    assert!(a.request && a.target_ip.octets() == [198, 18, 0, 11]);
    // The reply reaches worker 1; the cache is shared, worker 0 retries.
    let mut rep = vec![0u8; 60];
    wire::emit_arp(
        &mut rep,
        false,
        backend_mac(1),
        [198, 18, 0, 11].into(),
        SWITCH_MAC,
        [198, 18, 0, 2].into(),
    )
    .unwrap();
    w1.io_mut().inject(&rep);
    w1.poll_once(now);
    now += 150_000_000;
    w0.poll_once(now);
    let create = tx(&mut w0);
    assert_eq!(create.len(), 1, "CREATE once the MAC is known");
    let d = create[0].data();
    assert_eq!(&d[0..6], &backend_mac(1));
    let Ok(Frame::Udp(u)) = wire::parse(d, Verify::Full) else {
        panic!()
    };
    let keys = Keyring::new(Key::new(1, KEY));
    let (f, _) = handoff_proto::open(
        &keys,
        handoff_proto::node_id(backend_ip(1)),
        &d[u.payload.0..u.payload.0 + u.payload.1],
    )
    .unwrap();
    let Body::Create(c) = f.body else { panic!() };
    assert_eq!(c.data, req);
    // The agent's ACK lands on worker 1, which relays it to worker 0.
    let ack = thop_frame(
        1,
        f.header.conn_id,
        99,
        shared.epoch_unix_ms + now / 1_000_000,
        Body::Ack(handoff_proto::Ack {
            echo_seq: f.header.msg_seq,
        }),
    );
    w1.io_mut().inject(&ack);
    w1.poll_once(now);
    assert_eq!(w1.counters().snapshot().get("thop_peer_relayed"), 1);
    w0.poll_once(now);
    let ev: Vec<WorkerEvent> = ctrl.events.try_iter().collect();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            WorkerEvent::Handoff {
                backend: 1,
                outcome: HandoffOutcome::Acked,
                ..
            }
        )),
        "{ev:?}"
    );
    w0.io_mut().inject(&tcp_frame(
        port,
        flags::ACK | flags::PSH,
        isn + 1 + req.len() as u32,
        iss + 1,
        65535,
        TcpOpts::default(),
        b"more",
    ));
    w0.poll_once(now);
    let fwd = tx(&mut w0);
    assert_eq!(fwd.len(), 1);
    assert_eq!(&fwd[0].data()[0..6], &backend_mac(1));
    assert_eq!(&fwd[0].data()[6..12], &SWITCH_MAC);
    assert_eq!(w0.counters().snapshot().get("forwarded"), 1);
}

#[test]
fn run_loop_stops_on_flag_and_on_command() {
    let (mut wq, ctrl) = channels(2, 16);
    let cfg = test_config();
    let stop = Arc::new(AtomicBool::new(false));
    let q1 = wq.pop().unwrap();
    let q0 = wq.pop().unwrap();
    let s = stop.clone();
    let c = cfg.clone();
    let h0 = std::thread::spawn(move || {
        let mut w = Worker::new(0, &c, MemoryIo::new(64), q0).unwrap();
        w.run(&s);
    });
    let h1 = std::thread::spawn(move || {
        let mut w = Worker::new(1, &cfg, MemoryIo::new(64), q1).unwrap();
        w.run(&AtomicBool::new(false));
    });
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    ctrl.commands[1]
        .send(dataplane::dispatch::WorkerCommand::Stop { now: true })
        .unwrap();
    h0.join().unwrap();
    h1.join().unwrap();
}

/// Spins (sleeping 1 ms) until `cond` or 30 s; returns whether it held.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// A worker asleep in adaptive polling (nothing to do, no timer, `max_wait`
/// 10 s) is woken at once by each producer of its work: a decision from the
/// control plane, a THOP reply relayed by another worker, a command. Each
/// is handled long before the 10 s sleep would have ended, and each wake-up
/// is counted as the doorbell's.
#[test]
fn a_sleeping_worker_is_woken_by_decisions_replies_and_commands() {
    let (mut wq, ctrl) = channels(2, 16);
    let mut cfg = test_config();
    cfg.poll = PollMode::Adaptive {
        spin_polls: 10,
        max_wait: Duration::from_secs(10),
    };
    let shared = wq[0].shared.clone();
    let bell = ctrl.doorbells[0].clone();
    let q0 = wq.swap_remove(0);
    let mut w = Worker::new(0, &cfg, MemoryIo::new(64), q0).unwrap();
    let counters = w.counters();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || w.run(&s));
    let token = ConnToken {
        worker: 0,
        slot: 7,
        generation: 99,
    };
    let fast = Duration::from_secs(5);

    // A decision (for no connection: counted as stale once handled).
    assert!(eventually(|| bell.is_asleep()), "the idle worker sleeps");
    let t = Instant::now();
    ctrl.decide(Decision {
        token,
        verdict: Verdict::Reject(503),
        pool: 0,
        header: Vec::new(),
    })
    .unwrap();
    assert!(eventually(
        || counters.dropped(DropReason::StaleDecision) == 1
    ));
    assert!(t.elapsed() < fast, "woken by the doorbell, not the timer");

    // A THOP reply relayed by another worker.
    assert!(eventually(|| bell.is_asleep()), "asleep again");
    let t = Instant::now();
    assert!(shared.peers.push(
        0,
        PeerMsg {
            token,
            reply: PeerReply::Close,
            sender: 1,
            echo_seq: 0,
        }
    ));
    assert!(eventually(|| counters.dropped(DropReason::ThopStale) == 1));
    assert!(t.elapsed() < fast, "woken by the doorbell, not the timer");

    // A command: Stop ends the loop.
    assert!(eventually(|| bell.is_asleep()), "asleep again");
    let t = Instant::now();
    ctrl.broadcast(WorkerCommand::Stop { now: true });
    h.join().unwrap();
    assert!(t.elapsed() < fast, "woken by the doorbell, not the timer");

    let snap = counters.snapshot();
    assert_eq!(snap.get("doorbell_wakeups"), 3, "{snap:?}");
    assert!(snap.get("idle_sleeps") >= 3);
    drop(stop);
}

/// Setting the stop flag and ringing ends a sleeping worker at once.
#[test]
fn a_sleeping_worker_sees_the_stop_flag_when_rung() {
    let (mut wq, ctrl) = channels(1, 16);
    let mut cfg = test_config();
    cfg.poll = PollMode::Adaptive {
        spin_polls: 10,
        max_wait: Duration::from_secs(10),
    };
    let bell = ctrl.doorbells[0].clone();
    let mut w = Worker::new(0, &cfg, MemoryIo::new(64), wq.pop().unwrap()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || w.run(&s));
    assert!(eventually(|| bell.is_asleep()));
    let t = Instant::now();
    stop.store(true, Ordering::Relaxed);
    ctrl.commander().wake_all();
    h.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "not the 10 s timer");
}

/// A worker told to stop at once counts what it abandons before handoff
/// (here one connection in WAITHEADER, one in DISPATCH) as aborted `stopped`.
#[test]
fn stopping_at_once_counts_the_connections_not_handed_off() {
    use dataplane::counters::AbortReason;
    let (mut wq, ctrl) = channels(1, 16);
    let cfg = test_config();
    let mut w = Worker::new(0, &cfg, MemoryIo::new(256), wq.pop().unwrap()).unwrap();
    let now = 1_000_000_000u64;
    for (port, req) in [
        (46000u16, &b""[..]),
        (46001, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    ] {
        let isn = 9_000_000u32;
        let syn_opts = TcpOpts {
            mss: Some(1460),
            ..Default::default()
        };
        w.io_mut()
            .inject(&tcp_frame(port, flags::SYN, isn, 0, 65535, syn_opts, b""));
        w.poll_once(now);
        let synack = tx(&mut w);
        let Ok(Frame::Tcp(sa)) = wire::parse(synack[0].data(), Verify::Full) else {
            panic!("no SYN/ACK")
        };
        let ack = |data: &[u8]| {
            tcp_frame(
                port,
                flags::ACK,
                isn + 1,
                sa.seq + 1,
                65535,
                TcpOpts::default(),
                data,
            )
        };
        w.io_mut().inject(&ack(b""));
        if !req.is_empty() {
            w.io_mut().inject(&ack(req));
        }
        w.poll_once(now + 1_000_000);
        tx(&mut w);
    }
    assert!(
        ctrl.requests.try_recv().is_ok(),
        "the second is in DISPATCH"
    );
    ctrl.commands[0]
        .send(WorkerCommand::Stop { now: true })
        .unwrap();
    w.run(&AtomicBool::new(false));
    assert_eq!(w.counters().aborted(AbortReason::Stopped), 2);
}
