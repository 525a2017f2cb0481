//! The body of the worker fuzz target (`fuzz/fuzz_targets/dataplane_worker.rs`),
//! kept in the crate so the normal test suite also runs it on random inputs.
//!
//! The input is read as a program of operations against one engine on a
//! virtual clock: raw frames, well-formed client segments with fuzzed flags,
//! sequence numbers, options and payloads (answering the switch's own SYN/ACK
//! so deep states are reached), time jumps, control-plane decisions, THOP
//! replies (valid and corrupted), ARP and neighbour discovery. The switch
//! is dual-stack: client slots 2 and 3 connect over IPv6, and backend 13's
//! agent speaks THOP over IPv6. After every operation the engine's
//! bounds are checked: table within capacity, sessions within the pool,
//! buffers all returned or accounted for. Any panic is a bug.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use handoff_proto::{Body, Header, Key};

use crate::config::{Protocol, Service, SynCookieMode, ThopConfig, WorkerConfig};
use crate::counters::Counters;
use crate::dispatch::{BackendTarget, Decision, DispatchRequest, Verdict, WorkerEvent};
use crate::engine::{Engine, Sink};
use crate::io::memory::{MemBuf, MemoryIo};
use crate::io::{PacketBuf, PacketIo};
use crate::peer::PeerMsg;
use crate::shared::Shared;
use crate::wire::{self, flags, Frame, TcpOpts, TcpOut, Verify};

const POOL: usize = 512;
const SWITCH_MAC: [u8; 6] = [2, 0xba, 0x70, 0, 0, 2];
const KEY: [u8; 32] = [7; 32];

struct FuzzSink {
    io: MemoryIo,
    out: Vec<MemBuf>,
    requests: Vec<DispatchRequest>,
    dispatch_full: bool,
}

impl Sink<MemBuf> for FuzzSink {
    fn alloc(&mut self) -> Option<MemBuf> {
        self.io.alloc()
    }
    fn send(&mut self, pkt: MemBuf) {
        self.out.push(pkt);
    }
    fn dispatch(&mut self, req: DispatchRequest) -> Result<(), DispatchRequest> {
        if self.dispatch_full || self.requests.len() >= 64 {
            return Err(req);
        }
        self.requests.push(req);
        Ok(())
    }
    fn event(&mut self, _ev: WorkerEvent) -> bool {
        true
    }
    fn relay(&mut self, _worker: u16, _msg: PeerMsg) -> bool {
        true
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

/// 2001:2::`last` (the IPv4 address's last octet as the same digits).
fn ip6(last: u8) -> Ipv6Addr {
    let digits = u16::from_str_radix(&last.to_string(), 16).unwrap_or(0);
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, digits)
}

/// The address of client slot `k` (slots 2 and 3 are IPv6) or the VIP it
/// connects to.
fn client_side(k: usize, last: u8) -> IpAddr {
    if k >= 2 {
        IpAddr::V6(ip6(last))
    } else {
        ip(last)
    }
}

/// Backend `b`'s address: backend 13 is IPv6.
fn backend(b: u8) -> IpAddr {
    if b == 13 {
        IpAddr::V6(ip6(b))
    } else {
        ip(b)
    }
}

/// The switch's address towards `peer`.
fn switch_for(peer: IpAddr) -> IpAddr {
    if peer.is_ipv6() {
        IpAddr::V6(ip6(2))
    } else {
        ip(2)
    }
}

/// The configuration the fuzz target runs with: tiny, so limits are hit.
pub fn config() -> WorkerConfig {
    let mut services = Vec::new();
    for vip in [ip(10), IpAddr::V6(ip6(10))] {
        services.push(Service {
            vip,
            port: 80,
            protocol: Protocol::Http,
        });
        services.push(Service {
            vip,
            port: 443,
            protocol: Protocol::Tls,
        });
    }
    WorkerConfig {
        services,
        mac: SWITCH_MAC,
        ip: ip(2),
        ip6: Some(ip6(2)),
        thop: ThopConfig {
            port: 9199,
            key_id: 1,
            keys: vec![(1, KEY)],
            peers: Vec::new(),
        },
        header_max: 256,
        client_hello_max: 400,
        request_buffer: 512,
        table_capacity: 16,
        pending_capacity: 4,
        syncookie_threshold: 4,
        syncookie_mode: SynCookieMode::OnOverload,
        static_macs: vec![(ip(11), [2, 0, 0, 0, 0, 11])],
        secret: [3; 16],
        ..WorkerConfig::default()
    }
}

/// Runs one fuzz input; panics only on a bug. Returns the counters (for
/// corpus statistics).
pub fn run(data: &[u8]) -> crate::counters::Snapshot {
    let cfg = config();
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared::new(1, 16));
    let Ok(mut engine) = Engine::<MemBuf>::new(0, &cfg, counters.clone(), shared.clone()) else {
        return crate::counters::Snapshot::default();
    };
    let mut sink = FuzzSink {
        io: MemoryIo::new(POOL),
        out: Vec::new(),
        requests: Vec::new(),
        dispatch_full: false,
    };
    let mut now: u64 = 1_000_000_000;
    let mut iss = [0u32; 4];
    let mut syn_sent = [false; 4];
    let mut sent = [0usize; 4];
    // Odd connection slots talk to the TLS service: whole ClientHellos,
    // one cut into 7-byte records, one whose second record lies about its type.
    let mut bad = crate::tls::build_client_hello(Some("b.test"), &[], &[], &[], 20);
    bad[25] = 23;
    let hellos = [
        crate::tls::build_client_hello(
            Some("f.test"),
            &["h2", "http/1.1"],
            &[0x0304],
            &[],
            1 << 14,
        ),
        crate::tls::build_client_hello(None, &["http/1.1"], &[], &[], 7),
        bad,
    ];
    let mut creates: Vec<(u64, u64)> = Vec::new();
    let mut agent_seq = 1u64 << 40;
    let mut inp = Input(data);
    engine.start(now, &mut sink);
    while let Some(op) = inp.u8() {
        match op % 9 {
            0 => {
                let n = inp.u8().unwrap_or(0) as usize * 2;
                let f = inp.bytes(n).to_vec();
                if let Some(mut b) = sink.io.alloc() {
                    if b.set_len(f.len()) {
                        b.data_mut().copy_from_slice(&f);
                        engine.handle_packet(now, b, &mut sink);
                    }
                }
            }
            1 | 2 => {
                let (Some(p), Some(fl), Some(off), Some(ack)) =
                    (inp.u8(), inp.u8(), inp.u8(), inp.u8())
                else {
                    break;
                };
                let k = (p % 4) as usize;
                let port = 40000 + k as u16;
                let optbits = inp.u8().unwrap_or(0);
                let len = inp.u8().unwrap_or(0) as usize;
                let isn = 5_000_000u32.wrapping_mul(port as u32);
                // Op 2 is the next step of a well-behaved client (SYN, then
                // in-order request bytes from a template, valid or not); op 1 is
                // a segment with fuzzed flags, offsets and bytes near the window.
                let (flags_v, seq, payload) = if op % 9 == 2 {
                    if !syn_sent[k] {
                        syn_sent[k] = true;
                        (flags::SYN, isn, Vec::new())
                    } else {
                        const T: [&[u8]; 3] = [
                            b"GET /a HTTP/1.1\r\nHost: f\r\n\r\nGET /b HTTP/1.1\r\nHost: f\r\n\r\n",
                            b"POST /u HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody",
                            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                        ];
                        let t: &[u8] = if k % 2 == 1 {
                            &hellos[(fl % 3) as usize]
                        } else {
                            T[(fl % 3) as usize]
                        };
                        let from = sent[k].min(t.len());
                        let to = (from + 1 + len % 96).min(t.len());
                        let seq = isn.wrapping_add(1).wrapping_add(sent[k] as u32);
                        sent[k] += to - from;
                        (
                            flags::ACK | flags::PSH | (fl & flags::FIN),
                            seq,
                            t[from..to].to_vec(),
                        )
                    }
                } else {
                    let seq = isn
                        .wrapping_add(off as u32)
                        .wrapping_sub(16)
                        .wrapping_add(sent[k] as u32);
                    (fl & 0x3f, seq, inp.bytes(len).to_vec())
                };
                let opts = TcpOpts {
                    mss: (optbits & 1 != 0).then_some(536 + (fl as u16) * 4),
                    window_scale: (optbits & 2 != 0).then_some(optbits >> 4),
                    sack_permitted: optbits & 4 != 0,
                    timestamp: (optbits & 8 != 0).then_some((off as u32, ack as u32)),
                    ..Default::default()
                };
                let t = TcpOut {
                    src_mac: [2, 0, 0, 0, 0, 0x65],
                    dst_mac: SWITCH_MAC,
                    src: client_side(k, 101),
                    dst: client_side(k, 10),
                    src_port: port,
                    dst_port: if op % 9 == 1 && fl & 0x80 != 0 {
                        81
                    } else if k % 2 == 1 {
                        443
                    } else {
                        80
                    },
                    seq,
                    ack: iss[k].wrapping_add(if op % 9 == 2 { 0 } else { ack as u32 % 4 }),
                    flags: flags_v,
                    window: 0xffff - (optbits as u16 & 0x80) * 511,
                    opts,
                    payload: &payload,
                };
                if let Some(mut b) = sink.io.alloc() {
                    let n = wire::tcp_frame_len(&t);
                    if b.set_len(n) && wire::emit_tcp(b.data_mut(), &t).is_some() {
                        engine.handle_packet(now, b, &mut sink);
                    }
                }
            }
            3 => {
                now += inp.u16().unwrap_or(0) as u64 * 1_000_000 * (1 + (op as u64 >> 5));
                engine.handle_timeout(now, &mut sink);
            }
            4 => {
                let Some(r) = sink.requests.pop() else {
                    continue;
                };
                let v = inp.u8().unwrap_or(0);
                let verdict = if v & 1 == 0 {
                    let b = (v >> 1) % 3 + 11;
                    let mac = (v & 2 != 0).then_some([2, 0, 0, 0, 0, b]);
                    Verdict::Backend(BackendTarget {
                        id: b as u32,
                        ip: backend(b),
                        mac,
                        thop: SocketAddr::new(backend(b), 9199),
                    })
                } else {
                    Verdict::Reject(400 + (v as u16 % 200))
                };
                let mut token = r.token;
                if v & 0x80 != 0 {
                    token.generation = token.generation.wrapping_add(1);
                }
                engine.handle_decision(
                    now,
                    Decision {
                        token,
                        verdict,
                        pool: 0,
                        header: r.header,
                    },
                    &mut sink,
                );
            }
            5 | 6 => {
                let Some(&(cid, seq)) = creates.last() else {
                    continue;
                };
                let k = inp.u8().unwrap_or(0);
                let body = match k % 3 {
                    0 => Body::Ack(handoff_proto::Ack { echo_seq: seq }),
                    1 => Body::Nack(handoff_proto::Nack {
                        echo_seq: seq,
                        reason: handoff_proto::NackReason::from_u16(k as u16),
                        versions: &[],
                    }),
                    _ => Body::Close(handoff_proto::Close {
                        reason: handoff_proto::CloseReason::ServerClose,
                        bytes_from_client: 0,
                        bytes_to_client: 0,
                    }),
                };
                agent_seq += 1;
                let b = 11 + (k >> 6) % 3;
                let hdr = Header {
                    flags: 0,
                    sender: handoff_proto::node_id(backend(b)),
                    receiver: handoff_proto::node_id(switch_for(backend(b))),
                    boot: 0,
                    conn_id: if k & 0x20 != 0 { cid ^ 1 } else { cid },
                    msg_seq: agent_seq,
                    timestamp_ms: shared.epoch_unix_ms + now / 1_000_000,
                };
                let flen = handoff_proto::frame_len(&body);
                if let Some(mut buf) = sink.io.alloc() {
                    let at = wire::udp_payload_offset_to(backend(b));
                    let total = at + flen;
                    if buf.set_len(total) {
                        handoff_proto::seal(
                            &hdr,
                            &body,
                            &Key::new(1, KEY),
                            &mut buf.data_mut()[at..],
                        );
                        if op % 9 == 6 {
                            // Corrupt one byte somewhere after the Ethernet header.
                            let at = 14 + (inp.u16().unwrap_or(0) as usize % (total - 14));
                            buf.data_mut()[at] ^= inp.u8().unwrap_or(1) | 1;
                        }
                        wire::emit_udp(
                            buf.data_mut(),
                            [2, 0, 0, 0, 0, b],
                            SWITCH_MAC,
                            backend(b),
                            switch_for(backend(b)),
                            9199,
                            9199,
                            flen,
                        );
                        engine.handle_packet(now, buf, &mut sink);
                    }
                }
            }
            7 if op & 0x80 != 0 => {
                // Neighbour discovery: a solicitation for the IPv6 VIP, the
                // switch's address or another, or an advertisement of
                // backend 13 (solicited or not, its MAC or another).
                let t = inp.u8().unwrap_or(0);
                let peer = [2, 0, 0, 0, 0, 13 + t % 2];
                let msg = if t & 1 == 0 {
                    let target = [ip6(10), ip6(2), ip6(99)][(t as usize >> 1) % 3];
                    crate::wire::nd::Out::Solicit { target }
                } else {
                    let to = (t & 2 != 0).then_some((ip6(2), SWITCH_MAC));
                    crate::wire::nd::Out::Advert {
                        target: ip6(13),
                        to,
                    }
                };
                if let Some(mut b) = sink.io.alloc() {
                    if b.set_len(crate::wire::nd::FRAME_LEN)
                        && crate::wire::nd::emit(b.data_mut(), peer, ip6(13 + t % 2), msg).is_some()
                    {
                        if t & 0x40 != 0 {
                            // A hop limit other than 255.
                            b.data_mut()[wire::ETH_LEN + 7] = t;
                        }
                        engine.handle_packet(now, b, &mut sink);
                    }
                }
            }
            7 => {
                let t = inp.u8().unwrap_or(0);
                if let Some(mut b) = sink.io.alloc() {
                    if b.set_len(60) {
                        let tpa = if t & 1 == 0 {
                            Ipv4Addr::new(198, 18, 0, 10)
                        } else {
                            Ipv4Addr::new(198, 18, 0, 11 + t % 3)
                        };
                        wire::emit_arp(
                            b.data_mut(),
                            t & 2 != 0,
                            [2, 0, 0, 0, 0, 11 + t % 3],
                            Ipv4Addr::new(198, 18, 0, 11 + t % 3),
                            SWITCH_MAC,
                            tpa,
                        );
                        engine.handle_packet(now, b, &mut sink);
                    }
                }
            }
            _ => {
                let t = inp.u8().unwrap_or(0);
                match t % 4 {
                    0 => engine.drain(),
                    1 => sink.dispatch_full = !sink.dispatch_full,
                    _ => {}
                }
            }
        }
        // Learn our ISNs and the CREATEs from what the switch sent, then let it go.
        for f in sink.out.drain(..) {
            match wire::parse(f.data(), Verify::Header) {
                Ok(Frame::Tcp(s)) if s.has(flags::SYN | flags::ACK) => {
                    iss[(s.dst_port.wrapping_sub(40000) % 4) as usize] = s.seq.wrapping_add(1);
                }
                Ok(Frame::Udp(u)) => {
                    let p = &f.data()[u.payload.0..u.payload.0 + u.payload.1];
                    if let Ok((v, _)) = handoff_proto::FrameView::parse(p) {
                        let h = v.header();
                        creates.push((h.conn_id, h.msg_seq));
                        if creates.len() > 8 {
                            creates.remove(0);
                        }
                    }
                }
                _ => {}
            }
        }
        // Bounds that must hold after every step.
        assert!(engine.connections() <= cfg.table_capacity);
        let held = POOL - sink.io.pool_free();
        assert!(
            held <= cfg.pending_capacity * cfg.handoff_hold,
            "{held} buffers not returned"
        );
    }
    counters.snapshot()
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke_random_programs() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut total = crate::counters::Snapshot::default();
        for _ in 0..400 {
            let len = (x % 600) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            total.add(&super::run(&data));
        }
        // Random programs get past the handshake and into dispatch.
        assert!(total.get("new_connections") > 0, "{total:?}");
        assert!(total.get("requests_dispatched") > 0, "{:?}", total.scalars);
        println!("{:?}", total.scalars);
    }
}
