//! Duplicate-ACK flood on pending handoffs. While a handoff is pending (the
//! switch sent THOP_CREATE and waits for the agent), the switch holds the
//! client's further segments to replay them after the ACK. A client that
//! floods its own pending connections with duplicate ACKs must not make the
//! switch hold a buffer per ACK: the buffer pool must never run dry and no
//! worker may stop receiving.
//!
//! Handoffs are kept pending by dropping THOP at the static backends' agents
//! (their health checks still pass, and [`profile_yaml`] turns the passive
//! handoff-failure check off, so every static request waits through its
//! retransmissions and re-dispatches). The legitimate client uses the app
//! pool, whose agent is untouched. The ACKs are exact duplicates of the last
//! ACK each connection's own kernel sent (captured on the attacker's
//! interface), so they are in window.

use super::packet::{flags, parse_ipv4, parse_tcp, Capture, Direction, Pacer, RawSender, TcpSeg};
use super::{per_worker, Legit, LegitSpec, Outcome, Size, ATTACKER, LEGIT};
use crate::error::Result;
use crate::scenario::Running;
use crate::topology::DATA_IF;
use crate::{addr, client, netns};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// Parameters of the flood.
#[derive(Debug, Clone, Copy)]
pub struct DupAckFlood {
    /// Connections with a pending handoff per round.
    pub conns: usize,
    /// Rounds (fresh connections each).
    pub rounds: usize,
    /// Duplicate ACKs per connection and round.
    pub acks_per_conn: usize,
    /// ACKs per second.
    pub rate: u64,
}

impl DupAckFlood {
    /// The size's parameters.
    pub fn new(size: Size) -> DupAckFlood {
        match size {
            Size::Short => DupAckFlood {
                conns: 64,
                rounds: 3,
                acks_per_conn: 150,
                rate: 10_000,
            },
            Size::Full => DupAckFlood {
                conns: 512,
                rounds: 10,
                acks_per_conn: 60,
                rate: 30_000,
            },
        }
    }
}

/// Profile overrides: no passive health (handoffs stay pending on every
/// request rather than the backend being held down after three).
pub fn profile_yaml() -> String {
    "health:\n  <<: !include base.yaml#health\n  passive:\n    handoff_failures: 0\n    hold_down: 5s\n"
        .to_string()
}

/// What the attacker knows of one of its connections: its last ACK.
#[derive(Debug, Clone)]
struct LastAck {
    seq_end: u32,
    ack: u32,
    window: u16,
    options: Vec<u8>,
}

/// One round in the attacker's namespace: open, request, capture, flood.
fn round(p: DupAckFlood) -> std::io::Result<(u64, usize, Vec<TcpStream>)> {
    let cap = Capture::open(DATA_IF, Duration::from_millis(50))?;
    let mut conns = Vec::with_capacity(p.conns);
    for _ in 0..p.conns {
        if let Ok(mut s) = client::connect(addr::vip_service(), Duration::from_secs(5)) {
            let req = client::get_request(&addr::VIP.to_string(), "/static/1k.bin", true, &[]);
            if s.write_all(&req).is_ok() {
                conns.push(s);
            }
        }
    }
    let ports: Vec<u16> = conns
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
        .collect();
    let mut last: BTreeMap<u16, LastAck> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline && last.len() < ports.len() {
        let Some((Direction::Out, pkt)) = cap.next() else {
            continue;
        };
        let Some(ip) = parse_ipv4(&pkt) else { continue };
        if ip.proto != 6 || ip.dst != addr::VIP {
            continue;
        }
        let Some(t) = parse_tcp(ip.payload) else {
            continue;
        };
        if t.dport != addr::VIP_PORT || t.flags & flags::ACK == 0 || !ports.contains(&t.sport) {
            continue;
        }
        let end = t.seq.wrapping_add(t.payload.len() as u32);
        let e = last.entry(t.sport).or_insert(LastAck {
            seq_end: end,
            ack: t.ack,
            window: t.window,
            options: t.options.to_vec(),
        });
        if end.wrapping_sub(e.seq_end) as i32 >= 0 && !t.payload.is_empty() {
            *e = LastAck {
                seq_end: end,
                ack: t.ack,
                window: t.window,
                options: t.options.to_vec(),
            };
        }
    }
    let src_ip = crate::addr::client_data(ATTACKER);
    let vip = SocketAddrV4::new(addr::VIP, addr::VIP_PORT);
    let segs: Vec<Vec<u8>> = last
        .iter()
        .map(|(port, l)| {
            let mut s = TcpSeg::new(
                SocketAddrV4::new(src_ip, *port),
                vip,
                l.seq_end,
                l.ack,
                flags::ACK,
            );
            s.window = l.window;
            s.options = l.options.clone();
            s.build()
        })
        .collect();
    let mut tx = RawSender::open()?;
    let mut pace = Pacer::new(p.rate);
    let mut sent = 0;
    for _ in 0..p.acks_per_conn {
        for s in &segs {
            pace.tick();
            if tx.send(s) {
                sent += 1;
            }
        }
    }
    Ok((sent, segs.len(), conns))
}

/// Runs the flood against a system started with [`profile_yaml`].
pub fn run(sys: &Running, p: DupAckFlood) -> Result<Outcome> {
    let mut o = Outcome::new("dup_ack_flood", super::synflood::sys_io(sys));
    for b in &sys.bed.backends[..2] {
        netns::run(
            Some(&b.ns),
            "iptables",
            &[
                "-A",
                "INPUT",
                "-p",
                "udp",
                "--dport",
                &addr::THOP_PORT.to_string(),
                "-j",
                "DROP",
            ],
        )?;
    }
    let m0 = sys.stack.metrics()?;
    let legit = Legit::start(sys.client(LEGIT), LegitSpec::api());
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let mut stalled: Vec<String> = Vec::new();
    let mut pool_min = f64::INFINITY;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut captured = 0usize;
    for r in 0..p.rounds {
        let ns = sys.client(ATTACKER).to_string();
        let h = std::thread::spawn(move || netns::in_ns(&ns, move || round(p)));
        // Sample the workers while the round runs: each must keep receiving.
        let mut prev: Option<(Instant, Vec<(String, f64)>)> = None;
        while !h.is_finished() {
            let m = sys.stack.metrics().unwrap_or_default();
            if let Some(v) = client::metric_sum(&m, "baton_mempool_available", &[]) {
                pool_min = pool_min.min(v);
            }
            let rx = per_worker(&m, "baton_worker_received_packets_total");
            match &prev {
                Some((t, old)) if t.elapsed() >= Duration::from_millis(500) => {
                    for (w, v) in &rx {
                        let was = old.iter().find(|(k, _)| k == w).map(|x| x.1).unwrap_or(0.0);
                        if *v <= was {
                            stalled.push(format!(
                                "round {r}: worker {w} received nothing for {:?}",
                                t.elapsed()
                            ));
                        }
                    }
                    prev = Some((Instant::now(), rx));
                }
                None => prev = Some((Instant::now(), rx)),
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (sent, known, conns) = match h.join() {
            Ok(Ok(Ok(x))) => x,
            Ok(Ok(Err(e))) => return Err(crate::error::BedError::io("dup-ACK round", e)),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(crate::error::BedError::Setup(
                    "dup-ACK round panicked".into(),
                ))
            }
        };
        o.sent += sent;
        captured += known;
        // What the attacker's own requests got (503 once every attempt failed).
        let got = netns::in_ns(sys.client(ATTACKER), move || {
            conns
                .into_iter()
                .map(|mut s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    match client::read_response(&mut s, &mut Vec::new()) {
                        Ok(r) => r.status.to_string(),
                        Err(e) => format!("{:?}", e.kind()),
                    }
                })
                .collect::<Vec<_>>()
        })?;
        for g in got {
            *statuses.entry(g).or_default() += 1;
        }
    }
    o.seconds = t0.elapsed().as_secs_f64();
    let want = (p.rounds * p.conns * p.acks_per_conn) as u64;
    o.check(
        "every pending connection flooded",
        captured == p.rounds * p.conns && o.sent == want,
        format!(
            "last ACK known for {captured} of {} connections; {} of {want} duplicate ACKs sent",
            p.rounds * p.conns,
            o.sent
        ),
    );
    // After the flood every worker still receives (the legitimate traffic).
    let before = per_worker(&sys.stack.metrics()?, "baton_worker_received_packets_total");
    std::thread::sleep(Duration::from_secs(1));
    let after = per_worker(&sys.stack.metrics()?, "baton_worker_received_packets_total");
    o.legit(legit.stop());
    for (w, v) in &after {
        let was = before
            .iter()
            .find(|(k, _)| k == w)
            .map(|x| x.1)
            .unwrap_or(0.0);
        if *v <= was {
            stalled.push(format!(
                "after the flood: worker {w} received nothing for 1 s"
            ));
        }
    }
    o.check(
        "no worker stops receiving",
        stalled.is_empty() && !after.is_empty(),
        if stalled.is_empty() {
            format!("{} workers kept receiving", after.len())
        } else {
            stalled.join("; ")
        },
    );
    let m1 = sys.stack.metrics()?;
    let d = |r: &str| {
        client::metric_sum(&m1, "baton_worker_dropped_packets_total", &[("reason", r)])
            .unwrap_or(0.0)
            - client::metric_sum(&m0, "baton_worker_dropped_packets_total", &[("reason", r)])
                .unwrap_or(0.0)
    };
    o.check(
        "buffer pool never exhausted (no no_buffer drops)",
        d("no_buffer") == 0.0 && pool_min != 0.0,
        format!(
            "no_buffer drops {}; lowest baton_mempool_available {}",
            d("no_buffer"),
            if pool_min.is_finite() {
                pool_min.to_string()
            } else {
                "n/a (AF_PACKET)".into()
            }
        ),
    );
    o.figure("dropped_hold_full", d("hold_full"));
    o.figure("dropped_out_of_window", d("out_of_window"));
    o.figure("attacker_responses", format!("{statuses:?}"));
    let held = client::metric_sum(&m1, "baton_worker_held_packets_total", &[]).unwrap_or(0.0)
        - client::metric_sum(&m0, "baton_worker_held_packets_total", &[]).unwrap_or(0.0);
    o.figure("held_packets", held);
    Ok(o)
}
