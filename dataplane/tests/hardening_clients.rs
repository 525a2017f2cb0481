//! Per-client bounds: one source address cannot take every table entry or
//! every session of a worker; holds shrink under pressure; idle FORWARDING
//! entries make room when the table is full.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use dataplane::config::SynCookieMode;
use dataplane::io::PacketBuf;
use dataplane::state::State;
use dataplane::wire::{self, flags, Frame, TcpOpts, TcpOut, Verify};
use support::{drops, test_config, vip, Bed, CLIENT_MAC, SWITCH_MAC};

fn frame_from(src: IpAddr, port: u16, fl: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let t = TcpOut {
        src_mac: CLIENT_MAC,
        dst_mac: SWITCH_MAC,
        src,
        dst: vip(),
        src_port: port,
        dst_port: 80,
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

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 1, n))
}

/// Sends a SYN; returns the SYN/ACK's sequence number when one came back.
fn syn(bed: &mut Bed, src: IpAddr, port: u16) -> Option<u32> {
    bed.sink.out.clear();
    let f = frame_from(src, port, flags::SYN, 5000, 0, b"");
    bed.inject(&f);
    let out = std::mem::take(&mut bed.sink.out);
    out.iter()
        .find_map(|b| match wire::parse(b.data(), Verify::Header) {
            Ok(Frame::Tcp(s)) if s.has(flags::SYN) && s.has(flags::ACK) && s.dst == src => {
                Some(s.seq)
            }
            _ => None,
        })
}

/// SYN, ACK: the connection is in WAITHEADER. Returns what the switch sent
/// in answer to the ACK (a RST when refused).
fn handshake(bed: &mut Bed, src: IpAddr, port: u16) -> Vec<u8> {
    let iss = syn(bed, src, port).expect("SYN/ACK");
    let f = frame_from(src, port, flags::ACK, 5001, iss.wrapping_add(1), b"");
    bed.inject(&f);
    let out = std::mem::take(&mut bed.sink.out);
    out.iter()
        .filter_map(|b| match wire::parse(b.data(), Verify::Header) {
            Ok(Frame::Tcp(s)) if s.dst == src => Some(s.flags),
            _ => None,
        })
        .collect()
}

#[test]
fn one_address_is_refused_its_n_plus_first_connection_while_another_connects() {
    let mut cfg = test_config();
    cfg.client_max_connections = 3;
    let mut bed = Bed::new(cfg);
    for p in 0..3 {
        assert!(syn(&mut bed, ip(1), 50000 + p).is_some(), "conn {p}");
    }
    assert_eq!(syn(&mut bed, ip(1), 50003), None, "4th from one address");
    assert_eq!(drops(&bed.counters, "client_limit"), 1);
    assert!(syn(&mut bed, ip(2), 50003).is_some(), "another address");
    // Once one of the first three ends, the address may connect again.
    let f = frame_from(ip(1), 50000, flags::RST, 5001, 0, b"");
    bed.inject(&f);
    assert_eq!(bed.engine.state_of(ip(1), 50000, 0), None);
    assert!(syn(&mut bed, ip(1), 50004).is_some());
}

#[test]
fn one_address_cannot_take_every_session() {
    let mut cfg = test_config();
    cfg.client_max_pending = 2;
    let mut bed = Bed::new(cfg);
    for p in 0..2 {
        let got = handshake(&mut bed, ip(1), 50000 + p);
        assert!(got.iter().all(|f| f & flags::RST == 0), "conn {p}");
        assert_eq!(
            bed.engine.state_of(ip(1), 50000 + p, 0),
            Some(State::WaitHeader)
        );
    }
    let got = handshake(&mut bed, ip(1), 50002);
    assert!(
        got.iter().any(|f| f & flags::RST != 0),
        "3rd session of one address is reset: {got:?}"
    );
    assert_eq!(bed.engine.state_of(ip(1), 50002, 0), None);
    assert_eq!(drops(&bed.counters, "client_limit"), 1);
    handshake(&mut bed, ip(2), 50002);
    assert_eq!(
        bed.engine.state_of(ip(2), 50002, 0),
        Some(State::WaitHeader)
    );
}

#[test]
fn an_idle_forwarding_entry_is_evicted_when_the_table_is_full() {
    let mut cfg = test_config();
    cfg.table_capacity = 4;
    cfg.syncookie_mode = SynCookieMode::Off;
    cfg.evict_idle_after = Duration::from_secs(5);
    let mut bed = Bed::new(cfg);
    for n in 0..4u8 {
        assert!(bed
            .engine
            .insert_forwarding(ip(10 + n), 40000, 0, 1, [2, 0, 0, 0, 0, 11]));
    }
    bed.advance_to(bed.now + 3_000_000_000);
    // Entries 1..3 stay active; entry 0 goes quiet.
    for n in 1..4u8 {
        let f = frame_from(ip(10 + n), 40000, flags::ACK, 7, 7, b"");
        bed.inject(&f);
    }
    bed.advance_to(bed.now + 3_000_000_000);
    bed.sink.out.clear();
    assert!(syn(&mut bed, ip(99), 40000).is_some(), "table full of idle");
    assert_eq!(bed.engine.state_of(ip(10), 40000, 0), None, "oldest idle");
    for n in 1..4u8 {
        assert_eq!(
            bed.engine.state_of(ip(10 + n), 40000, 0),
            Some(State::Forwarding)
        );
    }
    assert_eq!(
        bed.counters
            .snapshot()
            .closes
            .iter()
            .find(|(n, _)| *n == "evicted")
            .map(|x| x.1),
        Some(1)
    );
    // None of the others is idle long enough: the next SYN is refused.
    assert_eq!(syn(&mut bed, ip(98), 40000), None);
    assert_eq!(drops(&bed.counters, "table_full"), 1);
}

#[test]
fn header_timeout_shrinks_under_pressure() {
    let mut cfg = test_config();
    cfg.pending_capacity = 4;
    cfg.pressure_threshold = 0.75;
    cfg.pressure_header_timeout = Duration::from_secs(1);
    let mut bed = Bed::new(cfg);
    for n in 0..2u8 {
        handshake(&mut bed, ip(20 + n), 40000);
    }
    // The third session puts the pool at 75 %: it gets the short timeout.
    handshake(&mut bed, ip(22), 40000);
    bed.advance_to(bed.now + 1_500_000_000);
    assert_eq!(
        bed.engine.state_of(ip(22), 40000, 0),
        Some(State::Closing),
        "408 after the short header timeout"
    );
    assert_eq!(
        bed.engine.state_of(ip(20), 40000, 0),
        Some(State::WaitHeader),
        "connections made before the pressure keep theirs"
    );
}
