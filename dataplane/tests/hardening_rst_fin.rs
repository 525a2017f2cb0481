//! Blind RST and FIN: the switch acts on a client RST or FIN only when it
//! lies in the client's sequence space (RFC 5961), and only when its TCP
//! checksum is right; a half-closed client that keeps acknowledging a long
//! response is not cut by `fin_timeout`.

mod support;

use dataplane::state::State;
use dataplane::wire::{flags, TcpOpts};
use support::{client_ip, drops, test_config, Bed};

/// A connection handed off to backend 1 after a 27-byte request: the
/// client's next sequence number is 28 (relative).
const TO_FORWARDING: &str = "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < . 1:1(0) ack 1 win 65535
0.020 < P. 1:28(27) ack 1 win 65535 \"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\"
0.020 > . 1:1(0) ack 28 win 4069
0.020 > dispatch \"GET /\"
0.020 decide 1
0.020 > create 1 len 27
0.021 < ack 1
0.021 state FORWARDING
";

fn forwarding_bed() -> Bed {
    let mut bed = Bed::new(test_config());
    bed.run_script(TO_FORWARDING);
    bed
}

/// A client segment at relative sequence number `rel`.
fn seg(bed: &Bed, fl: u8, rel: u32, payload: &[u8]) -> Vec<u8> {
    let ack = bed.iss.unwrap().wrapping_add(1);
    bed.client_frame(
        fl,
        bed.client_isn.wrapping_add(rel),
        ack,
        65535,
        TcpOpts::default(),
        payload,
    )
}

fn state(bed: &Bed) -> Option<State> {
    bed.engine.state_of(client_ip(), bed.client_port, 0)
}

fn forwarded(bed: &Bed) -> u64 {
    bed.counters.snapshot().get("forwarded")
}

#[test]
fn out_of_window_rst_in_forwarding_keeps_the_entry_and_exact_rst_frees_it() {
    let mut bed = forwarding_bed();
    let before = forwarded(&bed);
    let f = seg(&bed, flags::RST | flags::ACK, 28 + 0x4000_0000, b"");
    bed.inject(&f);
    assert_eq!(state(&bed), Some(State::Forwarding), "blind RST freed it");
    assert_eq!(drops(&bed.counters, "out_of_window"), 1);
    assert_eq!(
        forwarded(&bed),
        before,
        "an out-of-window RST is not relayed"
    );
    let f = seg(&bed, flags::RST | flags::ACK, 28, b"");
    bed.inject(&f);
    assert_eq!(state(&bed), None, "the exact RST ends the connection");
    assert_eq!(forwarded(&bed), before + 1, "and reaches the backend");
}

#[test]
fn in_window_rst_in_forwarding_is_relayed_but_keeps_the_entry() {
    let mut bed = forwarding_bed();
    let before = forwarded(&bed);
    let f = seg(&bed, flags::RST | flags::ACK, 28 + 1000, b"");
    bed.inject(&f);
    assert_eq!(
        forwarded(&bed),
        before + 1,
        "the backend's kernel judges it (RFC 5961 challenge ACK)"
    );
    assert_eq!(state(&bed), Some(State::Forwarding));
}

#[test]
fn data_advances_the_expected_sequence_number_in_forwarding() {
    let mut bed = forwarding_bed();
    // Through the fast path (no flags but ACK|PSH).
    let f = seg(&bed, flags::ACK | flags::PSH, 28, &[b'x'; 100]);
    bed.inject(&f);
    let f = seg(&bed, flags::RST | flags::ACK, 28, b"");
    bed.inject(&f);
    assert_eq!(
        state(&bed),
        Some(State::Forwarding),
        "a RST behind the data is not exact"
    );
    let f = seg(&bed, flags::RST | flags::ACK, 128, b"");
    bed.inject(&f);
    assert_eq!(state(&bed), None);
}

#[test]
fn rst_with_a_bad_checksum_is_ignored() {
    let mut bed = forwarding_bed();
    let mut f = seg(&bed, flags::RST | flags::ACK, 28, b"");
    // TCP checksum: Ethernet 14 + IPv4 20 + 16.
    f[50] ^= 0x55;
    bed.inject(&f);
    assert_eq!(state(&bed), Some(State::Forwarding));
    assert_eq!(drops(&bed.counters, "bad_checksum"), 1);
}

#[test]
fn fin_out_of_window_is_ignored() {
    let mut bed = forwarding_bed();
    let before = forwarded(&bed);
    let f = seg(&bed, flags::FIN | flags::ACK, 28 + 0x4000_0000, b"");
    bed.inject(&f);
    assert_eq!(state(&bed), Some(State::Forwarding));
    assert_eq!(drops(&bed.counters, "out_of_window"), 1);
    assert_eq!(forwarded(&bed), before);
    // Long after fin_timeout the entry is still there (idle_timeout is 300 s).
    bed.run_script("30.000 state FORWARDING\n");
}

#[test]
fn half_closed_client_is_kept_while_it_acknowledges() {
    let mut bed = forwarding_bed();
    let f = seg(&bed, flags::FIN | flags::ACK, 28, b"");
    bed.inject(&f);
    assert_eq!(state(&bed), Some(State::ForwardingFin));
    // fin_timeout is 10 s; the client keeps acknowledging a long response
    // for 30 s.
    for k in 1..=15u64 {
        bed.advance_to(bed.now + 2_000_000_000);
        let ack = bed.iss.unwrap().wrapping_add(1 + 100_000 * k as u32);
        let f = bed.client_frame(
            flags::ACK,
            bed.client_isn.wrapping_add(29),
            ack,
            65535,
            TcpOpts::default(),
            b"",
        );
        bed.inject(&f);
        assert_eq!(
            state(&bed),
            Some(State::ForwardingFin),
            "cut at {} s",
            2 * k
        );
    }
    // Then it goes quiet: fin_timeout after its last packet, it is gone.
    bed.advance_to(bed.now + 9_000_000_000);
    assert_eq!(state(&bed), Some(State::ForwardingFin));
    bed.advance_to(bed.now + 2_000_000_000);
    assert_eq!(state(&bed), None);
}

#[test]
fn waitheader_in_window_rst_gets_a_challenge_ack_and_exact_rst_frees() {
    let mut bed = Bed::new(test_config());
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < P. 1:11(10) ack 1 win 65535 \"GET / HTTP\"
0.010 > . 1:1(0) ack 11 win 4086
# In the window but not at rcv_nxt: challenge ACK (RFC 5961 §3.2).
0.020 < R. 500:500(0) ack 1 win 0
0.020 > . 1:1(0) ack 11
0.020 state WAITHEADER
# Out of the window: dropped.
0.030 < R. 900000:900000(0) ack 1 win 0
0.030 > none
0.030 state WAITHEADER
0.040 < R. 11:11(0) ack 1 win 0
0.040 state CLOSED
",
    );
}

#[test]
fn pending_handoff_ignores_blind_rst() {
    let mut bed = Bed::new(test_config());
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.020 < P. 1:28(27) ack 1 win 65535 \"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\"
0.020 > . 1:1(0) ack 28 win 4069
0.020 > dispatch \"GET /\"
0.020 state DISPATCH
0.030 < R. 900000:900000(0) ack 1 win 0
0.030 > none
0.030 state DISPATCH
0.040 < R. 300:300(0) ack 1 win 0
0.040 > . 1:1(0) ack 28
0.040 state DISPATCH
0.050 < R. 28:28(0) ack 1 win 0
0.050 state CLOSED
",
    );
}
