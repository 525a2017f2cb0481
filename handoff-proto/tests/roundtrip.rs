//! Round-trip property tests (spec §6, §5): every option combination, IPv4 and
//! IPv6, requests up to 70 KB split across frames and delivered out of order
//! with duplicates; control frames; and arbitrary bytes never panic.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use handoff_proto::*;
use proptest::prelude::*;

fn arb_endpoints() -> impl Strategy<Value = Endpoints> {
    let v4 = (
        any::<[u8; 4]>(),
        1..=u16::MAX,
        any::<[u8; 4]>(),
        1..=u16::MAX,
    )
        .prop_map(|(c, cp, v, vp)| {
            Endpoints::new(
                SocketAddr::new(Ipv4Addr::from(c).into(), cp),
                SocketAddr::new(Ipv4Addr::from(v).into(), vp),
            )
            .unwrap()
        });
    let v6 = (
        any::<[u8; 16]>(),
        1..=u16::MAX,
        any::<[u8; 16]>(),
        1..=u16::MAX,
    )
        .prop_map(|(c, cp, v, vp)| {
            Endpoints::new(
                SocketAddr::new(Ipv6Addr::from(c).into(), cp),
                SocketAddr::new(Ipv6Addr::from(v).into(), vp),
            )
            .unwrap()
        });
    // Unspecified and multicast endpoints are refused by validation (spec §6.2).
    prop_oneof![v4, v6].prop_filter("unicast endpoints", |e| {
        [e.client().ip(), e.vip().ip()]
            .iter()
            .all(|ip| !ip.is_unspecified() && !ip.is_multicast())
    })
}

prop_compose! {
    fn arb_state()(
        endpoints in arb_endpoints(),
        client_isn in any::<u32>(),
        server_isn in any::<u32>(),
        server_next in any::<u32>(),
        client_window in any::<u32>(),
        server_window in any::<u32>(),
        mss in MIN_MSS..=u16::MAX,
        window_scale in proptest::option::of((0..=MAX_WSCALE, 0..=MAX_WSCALE)
            .prop_map(|(client, server)| WindowScale { client, server })),
        sack_permitted in any::<bool>(),
        timestamps in proptest::option::of((any::<u32>(), any::<u32>())
            .prop_map(|(recent, next_val)| Timestamps { recent, next_val })),
    ) -> TcpState {
        TcpState {
            endpoints, client_isn, client_next: 0, server_isn, server_next, client_window,
            server_window, mss, window_scale, sack_permitted, timestamps,
        }
    }
}

fn arb_frame_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(MAX_FRAME_LEN_V4),
        Just(MAX_FRAME_LEN_V6),
        Just(MIN_FRAME_LEN),
        MIN_FRAME_LEN..=9000usize
    ]
}

fn arb_request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2_000),
        proptest::collection::vec(any::<u8>(), 60_000..70_000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn create_split_seal_open_reassemble(
        mut state in arb_state(),
        request in arb_request(),
        max_frame_len in arb_frame_len(),
        order_seed in any::<u64>(),
        dup_every in 1usize..5,
    ) {
        state.client_next = state.client_isn.wrapping_add(1).wrapping_add(request.len() as u32);
        let k = key();
        let keys = keyring();
        let split = CreateSplitter::new(state, &request, max_frame_len).unwrap();
        let n = split.fragment_count();
        // Every frame fits, and the fragments tile the request exactly.
        let mut frames = Vec::new();
        let mut next_offset = 0usize;
        for i in 0..n {
            let frag = split.fragment(i);
            prop_assert_eq!(frag.offset as usize, next_offset);
            next_offset += frag.data.len();
            prop_assert!(i == n - 1 || !frag.data.is_empty());
            let mut buf = vec![0u8; split.frame_len(i)];
            prop_assert!(buf.len() <= max_frame_len);
            let len = split.write(i, &header(99, i as u64 + 1), &k, &mut buf);
            prop_assert_eq!(len, buf.len());
            frames.push(buf);
        }
        prop_assert_eq!(next_offset, request.len());
        // Deliver in a seeded shuffled order with duplicates.
        let mut order: Vec<usize> = (0..n).chain((0..n).filter(|i| i % dup_every == 0)).collect();
        let mut s = order_seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut reasm = Reassembler::new(ReassemblyConfig::default());
        let mut done = None;
        let mut seen = std::collections::HashSet::new();
        for &i in &order {
            let (frame, rest) = open(&keys, AGENT, &frames[i]).unwrap();
            prop_assert!(rest.is_empty());
            let Body::Create(frag) = frame.body else { panic!("not a CREATE") };
            prop_assert_eq!(frag, split.fragment(i));
            seen.insert(i);
            if done.is_some() {
                // The agent's adopted-connection table answers late
                // duplicates with ACK(DUPLICATE); they never reach reassembly.
                continue;
            }
            let out = reasm.push(frame.header.sender, frame.header.conn_id, &frag, 0).unwrap();
            match out {
                Some(a) => {
                    prop_assert_eq!(seen.len(), n, "completed before every fragment arrived");
                    prop_assert_eq!(reasm.pending(), 0);
                    prop_assert_eq!(reasm.memory(), 0);
                    done = Some(a);
                }
                None => prop_assert!(seen.len() < n, "every fragment arrived but not complete"),
            }
        }
        let a = done.expect("reassembly completed");
        prop_assert_eq!(a.state, state);
        prop_assert_eq!(a.request, request);
        prop_assert_eq!(a.conn_id, 99);
        prop_assert_eq!(a.sender, SWITCH);
    }

    #[test]
    fn control_frames_round_trip(
        echo_seq in any::<u64>(),
        code in any::<u16>(),
        versions in proptest::collection::vec(any::<u8>(), 0..8),
        bytes in any::<(u64, u64)>(),
        load in any::<(u32, u32, u32, u32)>(),
        advisory in 0u16..=0xff,
        conn_id in any::<u64>(),
        which in 0usize..5,
    ) {
        let body = match which {
            0 => Body::Ack(Ack { echo_seq }),
            1 => Body::Nack(Nack { echo_seq, reason: NackReason::from_u16(code), versions: &versions }),
            2 => Body::Close(Close { reason: CloseReason::from_u16(code), bytes_from_client: bytes.0, bytes_to_client: bytes.1 }),
            3 => Body::Abort(Abort { reason: AbortReason::from_u16(code) }),
            _ => Body::Load(Load { active_conns: load.0, adopted_per_sec: load.1, capacity_hint: load.2, interval_ms: load.3 }),
        };
        let mut h = reply_header(conn_id, echo_seq ^ 1);
        h.flags = advisory;
        let f = seal_vec(&h, &body, &key());
        let (frame, _) = open(&keyring(), SWITCH, &f).unwrap();
        prop_assert_eq!(frame.header, h);
        prop_assert_eq!(frame.body, body);
        prop_assert_eq!(frame.version, VERSION);
    }

    /// Arbitrary bytes: parse, decode and every body decoder return a value
    /// or an error, never panic; what decodes re-encodes to something that
    /// decodes to the same value.
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = open(&keyring(), AGENT, &buf);
        if let Ok((view, _)) = FrameView::parse(&buf) {
            let _ = view.decode();
        }
        for op in Opcode::ALL {
            if let Ok(body) = Body::decode(op, &buf) {
                let f = seal_vec(&header(1, 1), &body, &key());
                let (again, _) = open(&keyring(), AGENT, &f).unwrap();
                prop_assert_eq!(again.body, body);
            }
        }
    }

    /// Frames with a valid magic and lengths but random contents.
    #[test]
    fn random_headers_never_panic(mut buf in proptest::collection::vec(any::<u8>(), 64..300), op in 0u8..9) {
        buf[0] = 0x54; buf[1] = 0x48; buf[2] = 1; buf[3] = op;
        let body_len = (buf.len() - HEADER_LEN) as u16;
        buf[6..8].copy_from_slice(&body_len.to_be_bytes());
        key().sign_in_place(&mut buf);
        match open(&keyring(), FrameView::parse(&buf).unwrap().0.receiver(), &buf) {
            Ok(_) | Err(DecodeError::Invalid(_) | DecodeError::Truncated(_)
                | DecodeError::UnknownOpcode(_) | DecodeError::UnknownCriticalFlags(_)) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

#[test]
fn sixty_four_kib_fits_1500_mtu_ipv4_and_ipv6() {
    let request = vec![b'x'; 64 * 1024];
    for (state, max) in [
        (tcp_state::v4(65536), MAX_FRAME_LEN_V4),
        (tcp_state::v6(65536), MAX_FRAME_LEN_V6),
    ] {
        let split = CreateSplitter::new(state, &request, max).unwrap();
        // Spec §6.3: 1 + ceil((65536 - 1344) / 1396) = 47 frames over IPv4.
        // IPv6: first fragment 1452 - 64 - 12 - 76 = 1300 bytes, then 1376 each.
        let expect = if max == MAX_FRAME_LEN_V4 {
            47
        } else {
            1 + (65536usize - 1300).div_ceil(1376)
        };
        assert_eq!(split.fragment_count(), expect);
        for i in 0..split.fragment_count() {
            assert!(split.frame_len(i) <= max);
        }
        let last = split.fragment(split.fragment_count() - 1);
        assert_eq!(last.offset as usize + last.data.len(), request.len());
    }
}

#[test]
fn splitter_rejects_bad_input() {
    assert_eq!(
        CreateSplitter::new(tcp_state::v4(3), b"abc", 100).unwrap_err(),
        SplitError::BadFrameLen(100)
    );
    assert!(matches!(
        CreateSplitter::new(tcp_state::v4(4), b"abc", 1472).unwrap_err(),
        SplitError::InvalidState(_)
    ));
    let mut s = tcp_state::v4(3);
    s.mss = 10;
    assert!(matches!(
        CreateSplitter::new(s, b"abc", 1472).unwrap_err(),
        SplitError::InvalidState(_)
    ));
    let mut s = tcp_state::v4(3);
    s.window_scale = Some(WindowScale {
        client: 15,
        server: 0,
    });
    assert!(matches!(
        CreateSplitter::new(s, b"abc", 1472).unwrap_err(),
        SplitError::InvalidState(_)
    ));
    let mut s = tcp_state::v4(3);
    s.endpoints = Endpoints::new(
        "224.0.0.1:1".parse().unwrap(),
        "198.18.0.10:80".parse().unwrap(),
    )
    .unwrap();
    assert_eq!(
        CreateSplitter::new(s, b"abc", 1472).unwrap_err(),
        SplitError::InvalidState("state: unspecified or multicast address")
    );
}

/// Every combination of the three TCP options, over both families, exactly.
#[test]
fn every_option_combination_round_trips() {
    for family in [4, 6] {
        for bits in 0u8..8 {
            let mut s = if family == 4 {
                tcp_state::v4(REQUEST.len() as u32)
            } else {
                tcp_state::v6(REQUEST.len() as u32)
            };
            s.client_next = s.client_isn.wrapping_add(1 + REQUEST.len() as u32);
            s.window_scale = (bits & 1 != 0).then_some(WindowScale {
                client: 14,
                server: 0,
            });
            s.sack_permitted = bits & 2 != 0;
            s.timestamps = (bits & 4 != 0).then_some(Timestamps {
                recent: u32::MAX,
                next_val: 0,
            });
            let split = CreateSplitter::new(s, REQUEST, MAX_FRAME_LEN_V6).unwrap();
            let mut buf = vec![0u8; split.frame_len(0)];
            split.write(0, &header(1, 1), &key(), &mut buf);
            // The options byte on the wire is exactly the negotiated set.
            assert_eq!(
                buf[HEADER_LEN + CREATE_FIXED_LEN + 1],
                bits,
                "family {family} options {bits:03b}"
            );
            let (frame, _) = open(&keyring(), AGENT, &buf).unwrap();
            let Body::Create(frag) = frame.body else {
                panic!("not a CREATE")
            };
            assert_eq!(frag.state, Some(s));
        }
    }
}

#[test]
fn frame_length_bounds() {
    let s = tcp_state::v4(3);
    assert!(CreateSplitter::new(s, b"abc", MIN_FRAME_LEN).is_ok());
    assert!(CreateSplitter::new(s, b"abc", MAX_UDP_FRAME_LEN).is_ok());
    assert_eq!(
        CreateSplitter::new(s, b"abc", MIN_FRAME_LEN - 1).unwrap_err(),
        SplitError::BadFrameLen(MIN_FRAME_LEN - 1)
    );
    assert_eq!(
        CreateSplitter::new(s, b"abc", MAX_UDP_FRAME_LEN + 1).unwrap_err(),
        SplitError::BadFrameLen(MAX_UDP_FRAME_LEN + 1)
    );
}
