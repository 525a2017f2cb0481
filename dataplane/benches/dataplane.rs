//! Dataplane benchmarks on the in-memory backend, one core. They print
//! figures; nothing here is asserted (timing belongs in benchmarks).
//!
//! ```text
//! cargo bench -p dataplane --bench dataplane            # full run
//! cargo bench -p dataplane --bench dataplane -- --quick # small, for callgrind
//! ```
//!
//! * forwarding: packets/s through FORWARDING with 1,000,000 live entries,
//!   flows drawn at random over all entries (cold) and over 4,096 (hot);
//! * new connections/s: SYN → SYN/ACK → ACK+request → dispatch → decision →
//!   THOP_CREATE → THOP_ACK → FORWARDING → THOP_CLOSE, the harness building
//!   every client and agent frame (so the figure is a lower bound);
//! * bytes per FORWARDING entry.
//!
//! Times are the thread's CPU time (the machine may be shared), in rounds;
//! the best round is the figure, the median is printed beside it.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use dataplane::config::{SynCookieMode, WorkerConfig};
use dataplane::counters::Counters;
use dataplane::dispatch::{BackendTarget, Decision, Verdict};
use dataplane::engine::Engine;
use dataplane::io::memory::{MemBuf, MemoryIo};
use dataplane::io::{PacketBuf, PacketIo};
use dataplane::shared::Shared;
use dataplane::wire::{self, flags, Frame, TcpOpts, TcpOut, Verify};
use handoff_proto::{Body, Header, Key};
use testkit::sink::RecordingSink;
use testkit::worker::{test_config, CLIENT_MAC, KEY, SWITCH_MAC};

const VIP6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10));

fn ip(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, a, b))
}

/// The engine tests' configuration, sized for the run; no SYN cookies, and
/// the default request buffers.
fn config(capacity: usize) -> WorkerConfig {
    let defaults = WorkerConfig::default();
    let mut services = test_config().services;
    // Service 2: the IPv6 VIP of the IPv6 forwarding rows.
    services.push(dataplane::config::Service {
        vip: VIP6,
        port: 80,
        protocol: dataplane::config::Protocol::Http,
    });
    WorkerConfig {
        services,
        table_capacity: capacity,
        pending_capacity: 1024,
        syncookie_mode: SynCookieMode::Off,
        syncookie_threshold: usize::MAX,
        header_max: defaults.header_max,
        request_buffer: defaults.request_buffer,
        secret: [1; 16],
        ..test_config()
    }
}

fn engine(capacity: usize) -> (Engine<MemBuf>, Arc<Shared>) {
    let shared = Arc::new(Shared::new(1, 64));
    let e = Engine::new(
        0,
        &config(capacity),
        Arc::new(Counters::default()),
        shared.clone(),
    )
    .unwrap();
    (e, shared)
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: IpAddr,
    port: u16,
    fl: u8,
    seq: u32,
    ack: u32,
    opts: TcpOpts,
    payload: &[u8],
) -> Vec<u8> {
    let t = TcpOut {
        src_mac: CLIENT_MAC,
        dst_mac: SWITCH_MAC,
        src,
        dst: if src.is_ipv6() { VIP6 } else { ip(0, 10) },
        src_port: port,
        dst_port: 80,
        seq,
        ack,
        flags: fl,
        window: 502,
        opts,
        payload,
    };
    let mut b = vec![0u8; wire::tcp_frame_len(&t)];
    wire::emit_tcp(&mut b, &t).unwrap();
    b
}

/// CPU time of this thread in seconds. The figures are per core, and on a
/// shared machine wall time also counts the time other processes ran.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// xorshift64 for flow selection.
fn rng(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Client address `c` of the 16 used (65,536 ports each), of the family
/// the run measures.
fn client(c: u64, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001,
            2,
            1,
            0,
            0,
            0,
            0,
            c as u16 + 1,
        ))
    } else {
        ip(1, c as u8 + 1)
    }
}

/// One burst through FORWARDING: each frame is pointed at a random live flow
/// (a new source port; the TCP checksum is not checked on this path), then
/// handed to the engine, which rewrites the MACs and transmits it.
#[inline(never)]
fn forward_burst(
    e: &mut Engine<MemBuf>,
    bufs: &mut Vec<MemBuf>,
    sink: &mut RecordingSink,
    x: &mut u64,
    span: u64,
    now: u64,
) {
    for b in bufs.iter_mut() {
        let f = rng(x) % span;
        // The TCP source port: after a 20-byte IPv4 or 40-byte IPv6 header.
        let at = if b.data()[12] == 0x86 { 54 } else { 34 };
        b.data_mut()[at..at + 2].copy_from_slice(&(f as u16).to_be_bytes());
    }
    e.handle_burst(now, bufs, sink);
}

fn bench_forwarding(entries: usize, packets: u64, v6: bool) {
    let t0 = Instant::now();
    let (mut e, _shared) = engine(entries + 1024);
    let per_ip = (entries as u64).div_ceil(16).min(65536);
    let (family, svc) = if v6 { ("IPv6", 2) } else { ("IPv4", 0) };
    for c in 0..16u64 {
        for p in 0..per_ip {
            e.insert_forwarding(client(c, v6), p as u16, svc, 1, [2, 0, 0, 0, 0, 11]);
        }
    }
    println!(
        "forwarding {family}: {} live FORWARDING entries ({:.1} bytes each incl. buckets), filled in {:.2} s",
        e.connections(),
        e.bytes_per_entry(),
        t0.elapsed().as_secs_f64()
    );
    let mut sink = RecordingSink::new(64);
    for (label, span) in [
        ("cold, flows random over all entries", entries as u64),
        ("hot, 4,096 flows", 4096u64),
    ] {
        // 16 template frames (one per client address, 64-byte payload).
        let mut bufs: Vec<MemBuf> = (0..32u64)
            .map(|k| {
                MemBuf::from_frame(&tcp(
                    client(k % 16, v6),
                    0,
                    flags::ACK | flags::PSH,
                    1,
                    1,
                    TcpOpts::default(),
                    &[0u8; 64],
                ))
            })
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let now = 2_000_000_000u64;
        // Rounds of 1M packets; the best round is the figure (a shared,
        // noisy machine only ever makes a round slower), the median is shown.
        let rounds = (packets / 1_000_000).max(1);
        let mut per_round = Vec::with_capacity(rounds as usize);
        let mut done = 0u64;
        for _ in 0..rounds {
            let start = cpu_now();
            let mut n = 0u64;
            while n < 1_000_000 {
                forward_burst(
                    &mut e,
                    &mut bufs,
                    &mut sink,
                    &mut x,
                    span.min(per_ip).max(1),
                    now,
                );
                n += 32;
                std::mem::swap(&mut bufs, &mut sink.out);
                assert_eq!(bufs.len(), 32, "every packet forwarded");
            }
            done += n;
            per_round.push((cpu_now() - start) / n as f64);
        }
        per_round.sort_by(|a, b| a.total_cmp(b));
        let best = per_round[0];
        let median = per_round[per_round.len() / 2];
        println!(
            "forwarding {family} ({label}): {:.1} Mpps per core best round ({:.1} ns/packet), median {:.1} Mpps; {} packets in {} rounds",
            1e-6 / best,
            best * 1e9,
            1e-6 / median,
            done,
            rounds
        );
        black_box(&bufs);
    }
    let s = e.counters().snapshot();
    println!(
        "forwarding {family}: forwarded={} drops={:?}",
        s.get("forwarded"),
        s.drops.iter().filter(|d| d.1 > 0).collect::<Vec<_>>()
    );
    assert_eq!(s.drops.iter().map(|d| d.1).sum::<u64>(), 0);
}

fn bench_new_connections(conns: u64) {
    let (mut e, shared) = engine(1 << 16);
    let mut sink = RecordingSink::new(4096);
    let req = b"GET /index.html HTTP/1.1\r\nHost: bench\r\nUser-Agent: b\r\n\r\n";
    let key = Key::new(1, KEY);
    let target = BackendTarget {
        id: 1,
        ip: ip(0, 11),
        mac: Some([2, 0, 0, 0, 0, 11]),
        thop: SocketAddr::new(ip(0, 11), 9199),
    };
    let mut now = 3_000_000_000u64;
    let mut agent_seq = 1u64 << 41;
    let syn_opts = TcpOpts {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: Some((1, 0)),
        ..Default::default()
    };
    let mut thop = vec![0u8; 256];
    let seal = |thop: &mut [u8], cid: u64, body: Body<'_>, seq: &mut u64, now: u64| -> usize {
        *seq += 1;
        let hdr = Header {
            flags: 0,
            sender: handoff_proto::node_id(ip(0, 11)),
            receiver: handoff_proto::node_id(ip(0, 2)),
            boot: 0,
            conn_id: cid,
            msg_seq: *seq,
            timestamp_ms: shared.epoch_unix_ms + now / 1_000_000,
        };
        let flen = handoff_proto::frame_len(&body);
        let total = wire::udp_payload_offset() + flen;
        handoff_proto::seal(
            &hdr,
            &body,
            &key,
            &mut thop[wire::udp_payload_offset()..total],
        );
        wire::emit_udp(
            &mut thop[..total],
            [2, 0, 0, 0, 0, 11],
            SWITCH_MAC,
            ip(0, 11),
            ip(0, 2),
            9199,
            9199,
            flen,
        );
        total
    };
    let close = Body::Close(handoff_proto::Close {
        reason: handoff_proto::CloseReason::ServerClose,
        bytes_from_client: 0,
        bytes_to_client: 0,
    });
    let ts = TcpOpts {
        timestamp: Some((2, 0)),
        ..Default::default()
    };
    // The harness alone (the same frames built, no engine), to subtract.
    let harness = {
        let t0 = cpu_now();
        let mut io = MemoryIo::new(64);
        for n in 0..20_000u64 {
            let port = (n % 60000) as u16 + 1024;
            let isn = (n as u32).wrapping_mul(2_654_435_761);
            black_box(pooled(
                &mut io,
                &tcp(client(0, false), port, flags::SYN, isn, 0, syn_opts, b""),
            ));
            black_box(pooled(
                &mut io,
                &tcp(
                    client(0, false),
                    port,
                    flags::ACK | flags::PSH,
                    isn + 1,
                    n as u32,
                    ts,
                    req,
                ),
            ));
            let l = seal(
                &mut thop,
                n,
                Body::Ack(handoff_proto::Ack { echo_seq: n }),
                &mut agent_seq,
                now,
            );
            black_box(pooled(&mut io, &thop[..l]));
            let l = seal(&mut thop, n, close, &mut agent_seq, now);
            black_box(pooled(&mut io, &thop[..l]));
        }
        (cpu_now() - t0) / 20_000.0
    };
    let start = cpu_now();
    let mut round = cpu_now();
    let mut per_round = Vec::new();
    for n in 0..conns {
        sink.events.clear();
        if n % 10_000 == 0 && n > 0 {
            per_round.push((cpu_now() - round) / 10_000.0);
            round = cpu_now();
        }
        let port = (n % 60000) as u16 + 1024;
        let src = client(n / 60000 % 16, false);
        let isn = (n as u32).wrapping_mul(2_654_435_761);
        let syn = pooled(
            &mut sink.io,
            &tcp(src, port, flags::SYN, isn, 0, syn_opts, b""),
        );
        e.handle_packet(now, syn, &mut sink);
        let iss = match sink
            .out
            .pop()
            .map(|b| wire::parse(b.data(), Verify::Header))
        {
            Some(Ok(Frame::Tcp(s))) => s.seq,
            other => panic!("no SYN/ACK: {other:?}"),
        };
        let data = pooled(
            &mut sink.io,
            &tcp(
                src,
                port,
                flags::ACK | flags::PSH,
                isn + 1,
                iss + 1,
                ts,
                req,
            ),
        );
        e.handle_packet(now, data, &mut sink);
        sink.out.clear();
        let r = sink.requests.pop().expect("dispatch request");
        let d = Decision {
            token: r.token,
            verdict: Verdict::Backend(target.clone()),
            pool: 0,
            header: r.header,
        };
        e.handle_decision(now, d, &mut sink);
        let (cid, seq) = {
            let f = sink.out.pop().expect("CREATE");
            let Ok(Frame::Udp(u)) = wire::parse(f.data(), Verify::Header) else {
                panic!()
            };
            let (v, _) =
                handoff_proto::FrameView::parse(&f.data()[u.payload.0..u.payload.0 + u.payload.1])
                    .unwrap();
            (v.conn_id(), v.msg_seq())
        };
        let l = seal(
            &mut thop,
            cid,
            Body::Ack(handoff_proto::Ack { echo_seq: seq }),
            &mut agent_seq,
            now,
        );
        let ack = pooled(&mut sink.io, &thop[..l]);
        e.handle_packet(now, ack, &mut sink);
        let l = seal(&mut thop, cid, close, &mut agent_seq, now);
        let cl = pooled(&mut sink.io, &thop[..l]);
        e.handle_packet(now, cl, &mut sink);
        sink.out.clear();
        if n % 1024 == 0 {
            now += 1_000_000;
        }
    }
    let secs = cpu_now() - start;
    let s = e.counters().snapshot();
    per_round.sort_by(|a, b| a.total_cmp(b));
    let best = per_round.first().copied().unwrap_or(secs / conns as f64);
    println!(
        "new connections: {:.0} per second per core best round of 10,000 ({:.2} us each, harness included); overall {:.0}/s; acked={} live={}",
        1.0 / best,
        best * 1e6,
        conns as f64 / secs,
        s.get("handoff_acked"),
        e.connections()
    );
    println!(
        "new connections: switch alone {:.0} per second per core ({:.2} us each; the harness takes {:.2} us to build the client and agent frames)",
        1.0 / (best - harness).max(1e-9),
        (best - harness) * 1e6,
        harness * 1e6
    );
}

/// A pooled buffer holding `f` (no allocation per frame).
fn pooled(io: &mut MemoryIo, f: &[u8]) -> MemBuf {
    let mut b = io.alloc().expect("pool");
    b.set_len(f.len());
    b.data_mut().copy_from_slice(f);
    b
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--conns-only") {
        bench_new_connections(20_000);
        return;
    }
    if std::env::args().any(|a| a == "--forward-only") {
        bench_forwarding(100_000, 1_000_000, false);
        bench_forwarding(100_000, 1_000_000, true);
        return;
    }
    let entry = std::mem::size_of::<dataplane::table::Entry>();
    println!("entry: {entry} bytes per table entry (one cache line)");
    if quick {
        bench_forwarding(100_000, 1_000_000, false);
        bench_forwarding(100_000, 1_000_000, true);
        bench_new_connections(20_000);
    } else {
        bench_forwarding(1_000_000, 50_000_000, false);
        bench_forwarding(1_000_000, 50_000_000, true);
        bench_new_connections(300_000);
    }
}
