//! Packets held while a handoff is pending: only segments that carry new
//! data or a FIN are held, and a worker holds at most `held_capacity`
//! buffers, so clients cannot pin the packet pool.

mod support;

use dataplane::io::memory::MemoryIo;
use dataplane::io::PacketIo;
use dataplane::wire::{flags, TcpOpts};
use support::{drops, test_config, Bed};

fn open_to_dispatch(bed: &mut Bed, port: u16) {
    bed.run_script(&format!(
        "port {port}
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.000 < P. 1:28(27) ack 1 win 65535 \"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\"
0.000 > . 1:1(0) ack 28 win 4069
0.000 > dispatch \"GET /\"
0.000 state DISPATCH
"
    ));
}

/// Feeds `frame` to the engine in a buffer from the test I/O's pool, as a
/// real port would.
fn inject_pooled(bed: &mut Bed, frame: &[u8]) -> bool {
    if !bed.sink.io.inject(frame) {
        return false;
    }
    let mut got = Vec::new();
    bed.sink.io.rx_burst(&mut got, 1);
    for b in got {
        bed.engine.handle_packet(bed.now, b, &mut bed.sink);
    }
    true
}

#[test]
fn duplicate_acks_on_a_pending_handoff_hold_no_buffer() {
    let mut bed = Bed::new(test_config());
    open_to_dispatch(&mut bed, 40000);
    let free = bed.sink.io.pool_free();
    let ack = bed.iss.unwrap().wrapping_add(1);
    for _ in 0..1000 {
        let f = bed.client_frame(
            flags::ACK,
            bed.client_isn.wrapping_add(28),
            ack,
            65535,
            TcpOpts::default(),
            b"",
        );
        assert!(inject_pooled(&mut bed, &f));
    }
    // A retransmission of the request already acknowledged is not new either.
    let f = bed.client_frame(
        flags::ACK | flags::PSH,
        bed.client_isn.wrapping_add(1),
        ack,
        65535,
        TcpOpts::default(),
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert!(inject_pooled(&mut bed, &f));
    bed.sink.out.clear();
    assert_eq!(bed.counters.snapshot().get("held_packets"), 0);
    assert_eq!(bed.sink.io.pool_free(), free, "buffers pinned by holds");
    // New data is still held and reaches the backend after the handoff.
    let f = bed.client_frame(
        flags::ACK | flags::PSH,
        bed.client_isn.wrapping_add(28),
        ack,
        65535,
        TcpOpts::default(),
        b"more",
    );
    assert!(inject_pooled(&mut bed, &f));
    // The same segment again is a duplicate of what is held.
    assert!(inject_pooled(&mut bed, &f));
    assert_eq!(bed.counters.snapshot().get("held_packets"), 1);
    bed.run_script("0.001 decide 1\n0.001 > create 1 len 27\n0.002 < ack 1\n0.002 > fwd 1 P. 28:32(4) ack 1\n0.002 state FORWARDING\n");
}

#[test]
fn holds_are_capped_per_worker_and_the_pool_keeps_buffers() {
    let mut cfg = test_config();
    cfg.handoff_hold = 8;
    cfg.held_capacity = 16;
    let mut bed = Bed::new(cfg);
    bed.sink.io = MemoryIo::new(64);
    for c in 0..8u16 {
        open_to_dispatch(&mut bed, 41000 + c);
        let ack = bed.iss.unwrap().wrapping_add(1);
        for k in 0..8u32 {
            let f = bed.client_frame(
                flags::ACK | flags::PSH,
                bed.client_isn.wrapping_add(28 + 10 * k),
                ack,
                65535,
                TcpOpts::default(),
                b"0123456789",
            );
            inject_pooled(&mut bed, &f);
        }
        bed.sink.out.clear();
    }
    assert_eq!(bed.counters.snapshot().get("held_packets"), 16);
    assert_eq!(drops(&bed.counters, "hold_worker_full"), 48);
    assert!(bed.sink.io.pool_free() >= 64 - 16, "pool pinned");
    // A new client is still answered.
    bed.run_script(
        "port 42000
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
",
    );
}
