//! A `protocol: tls` service: WAITHEADER waits for a whole ClientHello
//! (across segments, records, out of order), hands exactly the client's
//! bytes to the dispatcher, and refuses bad hellos with a TLS alert or a
//! bare close — never an HTTP response.

mod support;

use std::time::Duration;

use dataplane::dispatch::{Decision, Verdict};
use dataplane::io::PacketBuf;
use dataplane::state::State;
use dataplane::tls::{build_client_hello, TLS13};
use dataplane::wire::{self, flags, Frame, TcpOpts, TcpOut, Verify};
use support::{aborts, client_ip, target, test_config, vip, Bed, CLIENT_MAC, SWITCH_MAC};

const PORT: u16 = 443;
/// The TLS service's index in the test configuration.
const SVC: u16 = 1;
const ISN: u32 = 7000;

fn frame(port: u16, fl: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let t = TcpOut {
        src_mac: CLIENT_MAC,
        dst_mac: SWITCH_MAC,
        src: client_ip(),
        dst: vip(),
        src_port: port,
        dst_port: PORT,
        seq,
        ack,
        flags: fl,
        window: 65535,
        opts: TcpOpts {
            mss: (fl & flags::SYN != 0).then_some(1460),
            ..TcpOpts::default()
        },
        payload,
    };
    let mut b = vec![0u8; wire::tcp_frame_len(&t)];
    wire::emit_tcp(&mut b, &t).unwrap();
    b
}

/// What the switch sent the client: (flags, seq, payload) of each segment.
fn sent(bed: &mut Bed) -> Vec<(u8, u32, Vec<u8>)> {
    std::mem::take(&mut bed.sink.out)
        .iter()
        .filter_map(|b| match wire::parse(b.data(), Verify::Full) {
            Ok(Frame::Tcp(s)) if s.dst == client_ip() => {
                Some((s.flags, s.seq, s.payload(b.data()).to_vec()))
            }
            _ => None,
        })
        .collect()
}

/// SYN and ACK; returns the switch's ISN.
fn connect(bed: &mut Bed, port: u16) -> u32 {
    bed.inject(&frame(port, flags::SYN, ISN, 0, b""));
    let iss = sent(bed)
        .iter()
        .find(|(f, ..)| f & flags::SYN != 0)
        .map(|(_, s, _)| *s)
        .expect("SYN/ACK");
    bed.inject(&frame(port, flags::ACK, ISN + 1, iss + 1, b""));
    assert_eq!(
        bed.engine.state_of(client_ip(), port, SVC),
        Some(State::WaitHeader)
    );
    iss
}

/// Sends `data` at client offset `off` (0 = first byte after the SYN).
fn send(bed: &mut Bed, port: u16, iss: u32, off: usize, data: &[u8]) {
    let seq = ISN + 1 + off as u32;
    bed.inject(&frame(port, flags::ACK | flags::PSH, seq, iss + 1, data));
}

fn abort(bed: &Bed, reason: &str) -> u64 {
    aborts(&bed.counters, reason)
}

fn scalar(bed: &Bed, name: &str) -> u64 {
    bed.counters.snapshot().get(name)
}

fn hello() -> Vec<u8> {
    build_client_hello(
        Some("www.baton.test"),
        &["h2", "http/1.1"],
        &[TLS13, 0x0303],
        &[],
        1 << 14,
    )
}

/// The dispatch request's bytes for the connection (panics when none).
fn dispatched(bed: &mut Bed) -> Vec<u8> {
    let r = bed.sink.requests.pop().expect("a dispatch request");
    assert_eq!(r.vip, std::net::SocketAddr::new(vip(), PORT));
    r.header
}

#[test]
fn a_whole_hello_is_dispatched_and_handed_off_byte_for_byte() {
    let mut bed = Bed::new(test_config());
    let port = 41000;
    let iss = connect(&mut bed, port);
    let h = hello();
    send(&mut bed, port, iss, 0, &h);
    let r = bed.sink.requests.pop().expect("a dispatch request");
    assert_eq!(r.header, h, "the ClientHello as the client sent it");
    assert_eq!(scalar(&bed, "tls_hellos_h2"), 1);
    assert_eq!(scalar(&bed, "tls_hellos_tls13"), 1);
    let d = Decision {
        token: r.token,
        verdict: Verdict::Backend(target(1)),
        pool: 0,
        header: r.header,
    };
    bed.engine.handle_decision(bed.now, d, &mut bed.sink);
    // The CREATE carries the hello unchanged (the backend's TLS server
    // reads it as the first bytes of the connection).
    let creates: Vec<_> = std::mem::take(&mut bed.sink.out);
    assert!(!creates.is_empty(), "a CREATE was sent");
    assert_eq!(
        bed.engine.state_of(client_ip(), port, SVC),
        Some(State::Handoff)
    );
}

#[test]
fn one_byte_segments_out_of_order_and_many_records_make_one_hello() {
    let mut bed = Bed::new(test_config());
    let port = 41001;
    let iss = connect(&mut bed, port);
    // Records of 5 bytes each, sent one byte per segment, in reverse.
    let h = build_client_hello(Some("static.baton.test"), &["http/1.1"], &[], &[], 5);
    for off in (1..h.len()).rev() {
        send(&mut bed, port, iss, off, &h[off..off + 1]);
        assert!(bed.sink.requests.is_empty(), "complete too early at {off}");
    }
    assert_eq!(
        bed.engine.state_of(client_ip(), port, SVC),
        Some(State::WaitHeader)
    );
    send(&mut bed, port, iss, 0, &h[..1]);
    assert_eq!(dispatched(&mut bed), h);
    assert_eq!(scalar(&bed, "tls_hellos_http11"), 1);
}

#[test]
fn plaintext_http_on_the_tls_port_is_closed_without_an_http_answer() {
    let mut bed = Bed::new(test_config());
    let port = 41002;
    let iss = connect(&mut bed, port);
    send(&mut bed, port, iss, 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = sent(&mut bed);
    let fin = out
        .iter()
        .find(|(f, ..)| f & flags::FIN != 0)
        .expect("a FIN");
    assert!(fin.2.is_empty(), "nothing but the FIN: {:?}", fin.2);
    assert!(out.iter().all(|(_, _, p)| !p.starts_with(b"HTTP/")));
    assert_eq!(abort(&bed, "tls_not_tls"), 1);
    assert_eq!(
        bed.engine.state_of(client_ip(), port, SVC),
        Some(State::Closing)
    );
}

#[test]
fn bad_hellos_get_their_alerts() {
    let cases: Vec<(Vec<u8>, &str, Option<u8>)> = vec![
        // An SSL 2.0 hello: closed, no alert it could read.
        (
            vec![0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0x15],
            "tls_sslv2",
            None,
        ),
        // A record over 2^14 bytes.
        (vec![22, 3, 1, 0x40, 0x01, 1], "tls_too_large", Some(22)),
        // A handshake message that is not a ClientHello.
        (vec![22, 3, 1, 0, 4, 2, 0, 0, 0], "tls_malformed", Some(10)),
        // A ClientHello larger than client_hello_max.
        (
            vec![22, 3, 1, 0, 4, 1, 0x01, 0, 0],
            "tls_too_large",
            Some(47),
        ),
        // A hello whose body does not parse.
        (
            {
                let mut h = hello();
                h[5 + 4 + 2 + 32] = 40; // session id longer than 32
                h
            },
            "tls_malformed",
            Some(50),
        ),
    ];
    for (k, (bytes, reason, alert)) in cases.into_iter().enumerate() {
        let cfg = test_config();
        let mut bed = Bed::new(cfg);
        let port = 42000 + k as u16;
        let iss = connect(&mut bed, port);
        send(&mut bed, port, iss, 0, &bytes);
        let out = sent(&mut bed);
        let fin = out
            .iter()
            .find(|(f, ..)| f & flags::FIN != 0)
            .unwrap_or_else(|| panic!("case {k}: no FIN in {out:?}"));
        match alert {
            Some(a) => assert_eq!(fin.2, [21, 3, 3, 0, 2, 2, a], "case {k} ({reason})"),
            None => assert!(fin.2.is_empty(), "case {k}: {:?}", fin.2),
        }
        assert_eq!(abort(&bed, reason), 1, "case {k}");
        assert_eq!(scalar(&bed, "tls_alerts"), alert.is_some() as u64);
        assert!(bed.sink.requests.is_empty(), "case {k}: not dispatched");
    }
}

#[test]
fn a_hello_that_never_completes_is_closed_on_the_header_timer() {
    let mut bed = Bed::new(test_config());
    let port = 41003;
    let iss = connect(&mut bed, port);
    let h = hello();
    send(&mut bed, port, iss, 0, &h[..20]);
    let t = bed.now + (bed.cfg.header_timeout + Duration::from_millis(50)).as_nanos() as u64;
    bed.advance_to(t);
    let out = sent(&mut bed);
    let fin = out
        .iter()
        .find(|(f, ..)| f & flags::FIN != 0)
        .expect("closed");
    assert!(fin.2.is_empty(), "no 408 on a TLS port: {:?}", fin.2);
    assert_eq!(abort(&bed, "tls_hello_timeout"), 1);
    assert_eq!(abort(&bed, "header_timeout_408"), 0);
}

#[test]
fn no_backend_is_an_internal_error_alert() {
    let mut bed = Bed::new(test_config());
    let port = 41004;
    let iss = connect(&mut bed, port);
    send(&mut bed, port, iss, 0, &hello());
    let r = bed.sink.requests.pop().expect("dispatched");
    let d = Decision {
        token: r.token,
        verdict: Verdict::Reject(503),
        pool: 0,
        header: r.header,
    };
    bed.engine.handle_decision(bed.now, d, &mut bed.sink);
    let out = sent(&mut bed);
    let fin = out
        .iter()
        .find(|(f, ..)| f & flags::FIN != 0)
        .expect("closed");
    assert_eq!(fin.2, [21, 3, 3, 0, 2, 2, 80]);
    assert_eq!(scalar(&bed, "responses_5xx"), 0, "not an HTTP response");
}
