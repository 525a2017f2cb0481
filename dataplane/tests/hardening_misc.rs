//! Small correctness findings: retry counters saturate, ARP cannot silently
//! retarget a backend, and every header end httparse accepts is found.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use dataplane::arp::Lookup;
use dataplane::dispatch::{Decision, Verdict};
use dataplane::io::PacketBuf;
use dataplane::state::State;
use dataplane::wire::{self, Frame, Verify};
use support::{backend_ip, client_ip, switch_ip, target, test_config, Bed, SWITCH_MAC};

#[test]
fn synack_retries_above_255_end_instead_of_wrapping() {
    let mut cfg = test_config();
    cfg.synack_retries = 300;
    cfg.synack_rto = Duration::from_millis(1);
    let mut bed = Bed::new(cfg);
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
",
    );
    // The backoff stops doubling at 1,024 x rto (about 1 s here): 255
    // retransmissions take under 300 s.
    for _ in 0..400 {
        bed.advance_to(bed.now + 1_000_000_000);
        bed.sink.out.clear();
    }
    assert_eq!(
        bed.engine.state_of(client_ip(), bed.client_port, 0),
        None,
        "SYN_RCVD entry never given up"
    );
    assert_eq!(
        bed.counters
            .snapshot()
            .aborts
            .iter()
            .find(|(n, _)| *n == "synack_timeout")
            .map(|x| x.1),
        Some(1)
    );
}

fn arp_frame(request: bool, sha: [u8; 6], spa: IpAddr, tha: [u8; 6], tpa: IpAddr) -> Vec<u8> {
    let (IpAddr::V4(spa), IpAddr::V4(tpa)) = (spa, tpa) else {
        unreachable!()
    };
    let mut b = vec![0u8; 60];
    wire::emit_arp(&mut b, request, sha, spa, tha, tpa).unwrap();
    b
}

fn mac_of(bed: &Bed, ip: IpAddr) -> Lookup {
    bed.shared
        .arp
        .lookup(ip, bed.now / 1_000_000, 30_000, 120_000)
}

#[test]
fn spoofed_arp_does_not_change_a_backend_mac() {
    let mut bed = Bed::new(test_config());
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < P. 1:28(27) ack 1 win 65535 \"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\"
0.010 > . 1:1(0) ack 28 win 4069
0.010 > dispatch \"GET /\"
",
    );
    // Backend 4 has no static MAC: the switch asks for it.
    let r = bed.sink.requests.pop().unwrap();
    let d = Decision {
        token: r.token,
        verdict: Verdict::Backend(target(4)),
        pool: 0,
        header: r.header,
    };
    bed.engine.handle_decision(bed.now, d, &mut bed.sink);
    let asked = bed.sink.out.drain(..).any(|b| {
        matches!(wire::parse(b.data(), Verify::Header),
            Ok(Frame::Arp(a)) if a.request && IpAddr::V4(a.target_ip) == backend_ip(4))
    });
    assert!(asked, "ARP request for backend 4");
    let real = [2, 0, 0, 0, 0, 14];
    let f = arp_frame(false, real, backend_ip(4), SWITCH_MAC, switch_ip());
    bed.inject(&f);
    assert_eq!(mac_of(&bed, backend_ip(4)), Lookup::Fresh(real));
    bed.sink.out.clear();
    // An attacker announces itself as backend 4: a gratuitous request, an
    // unsolicited reply, and a request for someone else.
    let evil = [2, 0xee, 0, 0, 0, 1];
    let other = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 77));
    for f in [
        arp_frame(true, evil, backend_ip(4), [0; 6], backend_ip(4)),
        arp_frame(false, evil, backend_ip(4), SWITCH_MAC, switch_ip()),
        arp_frame(true, evil, backend_ip(4), [0; 6], other),
    ] {
        bed.inject(&f);
    }
    assert_eq!(
        mac_of(&bed, backend_ip(4)),
        Lookup::Fresh(real),
        "backend MAC retargeted by unsolicited ARP"
    );
    assert_eq!(
        bed.counters
            .snapshot()
            .drops
            .iter()
            .find(|(n, _)| *n == "arp_unsolicited")
            .map(|x| x.1),
        Some(3)
    );
    assert_eq!(
        bed.engine.state_of(client_ip(), bed.client_port, 0),
        Some(State::Handoff)
    );
}

fn header_dispatches_at_once(req: &[u8]) {
    let mut bed = Bed::new(test_config());
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.001 < . 1:1(0) ack 1 win 65535
",
    );
    let iss = bed.iss.unwrap();
    let f = bed.client_frame(
        wire::flags::ACK | wire::flags::PSH,
        bed.client_isn + 1,
        iss + 1,
        65535,
        wire::TcpOpts::default(),
        req,
    );
    bed.inject(&f);
    assert_eq!(
        bed.sink.requests.len(),
        1,
        "{:?} not dispatched",
        String::from_utf8_lossy(req)
    );
    assert_eq!(bed.sink.requests[0].header, req);
}

#[test]
fn header_ending_lf_cr_lf_dispatches_immediately() {
    header_dispatches_at_once(b"GET / HTTP/1.1\nHost: h\n\r\n");
}

#[test]
fn header_ending_lf_lf_dispatches_immediately() {
    header_dispatches_at_once(b"GET / HTTP/1.1\nHost: h\n\n");
    header_dispatches_at_once(b"GET / HTTP/1.1\r\nHost: h\r\n\n");
}
