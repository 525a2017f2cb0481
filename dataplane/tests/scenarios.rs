//! Scenario tests: packetdrill-style scripts of packets and virtual time
//! (see `support/mod.rs` for the syntax), one engine each. Every script
//! runs twice, over IPv4 and over IPv6 (`<name>::ipv4`, `<name>::ipv6`):
//! the state machine must not care which family a connection has.

mod support;

use dataplane::config::{SynCookieMode, WorkerConfig};
use support::{test_config, Bed};

fn run(script: &str, cfg: WorkerConfig) -> Bed {
    let mut bed = Bed::new(cfg);
    bed.run_script(script);
    bed
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        script!($name, $file, |_c: &mut WorkerConfig| {});
    };
    ($name:ident, $file:literal, $tweak:expr) => {
        mod $name {
            use super::*;

            fn go() {
                let mut cfg = test_config();
                let tweak: fn(&mut WorkerConfig) = $tweak;
                tweak(&mut cfg);
                run(include_str!(concat!("scripts/", $file)), cfg);
            }

            #[test]
            fn ipv4() {
                go();
            }

            #[test]
            fn ipv6() {
                support::use_ipv6();
                go();
            }
        }
    };
}

script!(full_flow, "full_flow.pkt");
script!(handshake_options, "handshake_options.pkt");
script!(synack_backoff, "synack_backoff.pkt");
script!(request_segments_out_of_order, "request_segments.pkt");
script!(duplicate_request_then_503, "duplicate_then_complete.pkt");
script!(malformed_400_and_clean_close, "malformed_400.pkt");
script!(response_retransmitted_then_reset, "response_retransmit.pkt");
script!(oversized_header_431, "oversized_431.pkt");
script!(slow_header_408, "slow_header_408.pkt");
script!(handoff_nack_redispatch, "nack_redispatch.pkt");
script!(handoff_early_acks_relayed, "handoff_early_ack.pkt");
script!(handoff_timeout_redispatch, "handoff_timeout.pkt");
script!(abort_retransmitted_until_given_up, "abort_retransmit.pkt");
script!(
    abort_retransmitted_until_acknowledged,
    "abort_acknowledged.pkt"
);
script!(handoff_exhausted_503, "handoff_exhausted_503.pkt");
script!(decision_timeout_503, "decision_timeout.pkt");
script!(
    forwarding_rst_and_thop_close,
    "forwarding_rst_and_close.pkt"
);
script!(forwarding_idle_timeout, "idle_timeout.pkt");
script!(
    client_reset_and_fin_in_waitheader,
    "client_reset_and_fin_in_waitheader.pkt"
);
script!(syncookies_valid, "syncookies.pkt", |c| c.syncookie_mode =
    SynCookieMode::Always);
script!(syncookies_forged_and_expired, "syncookie_forged.pkt", |c| {
    c.syncookie_mode = SynCookieMode::Always
});
script!(
    syncookie_valid_within_lifetime,
    "syncookie_valid_late.pkt",
    |c| c.syncookie_mode = SynCookieMode::Always
);
script!(table_full_refuses, "table_full.pkt", |c| {
    c.table_capacity = 2;
    c.syncookie_mode = SynCookieMode::Off;
});
script!(
    table_full_falls_back_to_cookies,
    "table_full_cookies.pkt",
    |c| c.table_capacity = 2
);
script!(drain_refuses_new_connections, "drain.pkt");

/// A request cut into 2..=20 segments, sent in a seeded shuffled order with
/// duplicates: the dispatched head and the CREATE carry exactly the request.
#[test]
fn request_in_2_to_20_segments_any_order() {
    use dataplane::wire::{flags, TcpOpts};
    let req = b"POST /upload/item?id=42 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: scenario\r\nContent-Length: 11\r\n\r\nhello world";
    let head_len = req.len() - 11;
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for k in 2..=20usize {
        let mut bed = Bed::new(test_config());
        bed.run_script(
            "0.000 < S 0:0(0) win 65535 <mss 1460>\n0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>\n0.001 < . 1:1(0) ack 1 win 65535\n",
        );
        let iss = bed.iss.unwrap();
        let cuts: Vec<usize> = (0..=k).map(|i| i * req.len() / k).collect();
        let mut order: Vec<usize> = (0..k).collect();
        for i in (1..k).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        // Every third segment is sent twice.
        let mut sends: Vec<usize> = vec![];
        for (n, &i) in order.iter().enumerate() {
            sends.push(i);
            if n % 3 == 2 {
                sends.push(i);
            }
        }
        for i in sends {
            let (a, b) = (cuts[i], cuts[i + 1]);
            let f = bed.client_frame(
                flags::ACK | flags::PSH,
                bed.client_isn + 1 + a as u32,
                iss + 1,
                65535,
                TcpOpts::default(),
                &req[a..b],
            );
            bed.inject(&f);
        }
        assert_eq!(bed.sink.requests.len(), 1, "k={k}: one dispatch request");
        assert_eq!(bed.sink.requests[0].header, &req[..head_len], "k={k}");
        // Every segment was ACKed (duplicates and out-of-order ones too).
        bed.sink.out.clear();
        bed.run_script("0.010 decide 1\n0.010 > create 1\n");
        let (_, cid, seq, got) = bed.creates.last().cloned().unwrap();
        // The CREATE carries everything in order when the head completed; the
        // rest was held and is relayed once the backend socket exists.
        assert!(got.len() >= head_len && req.starts_with(&got), "k={k}");
        let ack = bed.agent_frame(
            1,
            cid,
            handoff_proto::Body::Ack(handoff_proto::Ack { echo_seq: seq }),
        );
        bed.inject(&ack);
        let st = bed
            .engine
            .state_of(support::client_ip(), bed.client_port, 0);
        assert_eq!(st, Some(dataplane::state::State::Forwarding), "k={k}");
        let mut covered = vec![false; req.len()];
        covered[..got.len()].iter_mut().for_each(|c| *c = true);
        for f in std::mem::take(&mut bed.sink.out) {
            use dataplane::io::PacketBuf;
            let Ok(dataplane::wire::Frame::Tcp(s)) =
                dataplane::wire::parse(f.data(), dataplane::wire::Verify::Full)
            else {
                panic!()
            };
            let off = s.seq.wrapping_sub(bed.client_isn + 1) as usize;
            assert_eq!(
                s.payload(f.data()),
                &req[off..off + s.len()],
                "k={k}: relayed bytes unchanged"
            );
            covered[off..off + s.len()]
                .iter_mut()
                .for_each(|c| *c = true);
        }
        assert!(
            covered.iter().all(|c| *c),
            "k={k}: every byte reaches the backend"
        );
    }
}

/// A full dispatch queue never blocks the worker: the client gets 503.
#[test]
fn dispatch_queue_full_answers_503() {
    let mut bed = Bed::new(test_config());
    bed.sink.dispatch_full = true;
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.001 < P. 1:28(27) ack 1 win 65535 \"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\"
0.001 > . 1:1(0) ack 28 win 4069
0.001 > FP. 1:1(*) ack 28 \"HTTP/1.1 503\"
0.001 counter drop.queue_full 1
",
    );
}
script!(zero_window_honoured_by_the_response, "zero_window.pkt");
script!(sack_blocks_report_out_of_order_data, "sack.pkt");
