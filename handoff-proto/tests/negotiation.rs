//! Version negotiation and forward compatibility (spec §8): newer versions,
//! unknown opcodes and flags, trailing fields, unknown reason codes.

mod common;

use common::*;
use handoff_proto::*;

fn ack_frame() -> Vec<u8> {
    seal_vec(&header(3, 50), &Body::Ack(Ack { echo_seq: 9 }), &key())
}

#[test]
fn newer_version_is_answered_with_authenticated_version_nack() {
    let mut f = ack_frame();
    f[VERSION_OFFSET] = 2;
    key().sign_in_place(&mut f);
    let (view, _) = FrameView::parse(&f).unwrap();
    keyring().verify(&view).unwrap();
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::UnsupportedVersion(2)
    );
    // The answer: NACK UNSUPPORTED_VERSION listing our versions, to the sender.
    let (h, nack) = view.version_nack(77, NOW_MS + 3);
    assert_eq!(
        (h.sender, h.receiver, h.conn_id, h.msg_seq),
        (AGENT, SWITCH, 3, 77)
    );
    let reply = seal_vec(&h, &Body::Nack(nack), &key());
    let (frame, _) = open(&keyring(), SWITCH, &reply).unwrap();
    let Body::Nack(n) = frame.body else {
        panic!("not a NACK")
    };
    assert_eq!(n.reason, NackReason::UnsupportedVersion);
    assert_eq!(n.echo_seq, 50);
    assert_eq!(n.versions, SUPPORTED_VERSIONS);
}

#[test]
fn newer_version_with_bad_tag_is_just_dropped() {
    let mut f = ack_frame();
    f[VERSION_OFFSET] = 2; // not re-tagged
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::BadTag
    );
}

#[test]
fn version_zero_and_bad_magic_are_rejected_before_auth() {
    let mut f = ack_frame();
    f[VERSION_OFFSET] = 0;
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::BadVersion(0)
    );
    let mut f = ack_frame();
    f[0] = b'X';
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::BadMagic(0x5848)
    );
}

#[test]
fn unknown_opcode_is_rejected() {
    for op in [0u8, 10, 0x80, 0xff] {
        let mut f = ack_frame();
        f[OPCODE_OFFSET] = op;
        key().sign_in_place(&mut f);
        let err = open(&keyring(), AGENT, &f).unwrap_err();
        assert_eq!(err, DecodeError::UnknownOpcode(op));
        assert_eq!(err.label(), "unknown_opcode");
    }
}

#[test]
fn unknown_advisory_flags_are_ignored_and_critical_ones_rejected() {
    let mut h = header(3, 50);
    h.flags = 0x00f0;
    let f = seal_vec(&h, &Body::Ack(Ack { echo_seq: 9 }), &key());
    assert_eq!(open(&keyring(), AGENT, &f).unwrap().0.header.flags, 0x00f0);
    h.flags = 0x0100 | flags::DUPLICATE;
    let f = seal_vec(&h, &Body::Ack(Ack { echo_seq: 9 }), &key());
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::UnknownCriticalFlags(0x0100)
    );
}

/// Appends `extra` to the body of a sealed frame and re-tags it.
fn with_trailing(frame: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f.extend_from_slice(extra);
    let body_len = (f.len() - HEADER_LEN) as u16;
    f[6..8].copy_from_slice(&body_len.to_be_bytes());
    key().sign_in_place(&mut f);
    f
}

#[test]
fn trailing_fields_of_fixed_bodies_are_ignored() {
    let bodies = [
        Body::Ack(Ack { echo_seq: 1 }),
        Body::Nack(Nack {
            echo_seq: 1,
            reason: NackReason::Overloaded,
            versions: &[1],
        }),
        Body::Close(Close {
            reason: CloseReason::IdleTimeout,
            bytes_from_client: 1,
            bytes_to_client: 2,
        }),
        Body::Abort(Abort {
            reason: AbortReason::Expired,
        }),
        Body::Load(Load {
            active_conns: 1,
            adopted_per_sec: 2,
            capacity_hint: 3,
            interval_ms: 4,
        }),
    ];
    for body in bodies {
        let f = with_trailing(&seal_vec(&header(1, 1), &body, &key()), b"future fields");
        let (frame, _) = open(&keyring(), AGENT, &f).unwrap();
        assert_eq!(frame.body, body);
    }
}

#[test]
fn longer_state_block_is_accepted_and_extension_ignored() {
    // Build a CREATE whose state block carries 8 more bytes (a future field).
    let state = tcp_state::v4(REQUEST.len() as u32);
    let f = seal_vec(
        &header(1, 1),
        &Body::Create(CreateFragment {
            total_len: REQUEST.len() as u32,
            offset: 0,
            state: Some(state),
            data: REQUEST,
        }),
        &key(),
    );
    let state_end = HEADER_LEN + CREATE_FIXED_LEN + STATE_LEN_V4;
    let mut g = f[..state_end].to_vec();
    g.extend_from_slice(&[0xee; 8]);
    g.extend_from_slice(&f[state_end..]);
    let state_len = (STATE_LEN_V4 + 8) as u16;
    g[HEADER_LEN + 8..HEADER_LEN + 10].copy_from_slice(&state_len.to_be_bytes());
    let body_len = (g.len() - HEADER_LEN) as u16;
    g[6..8].copy_from_slice(&body_len.to_be_bytes());
    key().sign_in_place(&mut g);
    let (frame, _) = open(&keyring(), AGENT, &g).unwrap();
    let Body::Create(frag) = frame.body else {
        panic!()
    };
    assert_eq!(frag.state, Some(state));
    assert_eq!(frag.data, REQUEST);
}

#[test]
fn unknown_reason_codes_are_preserved() {
    let f = seal_vec(
        &reply_header(1, 1),
        &Body::Nack(Nack {
            echo_seq: 1,
            reason: NackReason::from_u16(0x7777),
            versions: &[],
        }),
        &key(),
    );
    let Body::Nack(n) = open(&keyring(), SWITCH, &f).unwrap().0.body else {
        panic!()
    };
    assert_eq!(n.reason, NackReason::Other(0x7777));
    assert_eq!(n.reason.to_u16(), 0x7777);
    assert_eq!(n.reason.label(), "other");
    for r in NackReason::NAMED {
        assert_eq!(NackReason::from_u16(r.to_u16()), *r);
    }
    for r in CloseReason::NAMED {
        assert_eq!(CloseReason::from_u16(r.to_u16()), *r);
    }
    for r in AbortReason::NAMED {
        assert_eq!(AbortReason::from_u16(r.to_u16()), *r);
    }
}

#[test]
fn unknown_tcp_option_bit_is_rejected() {
    let state = tcp_state::v4(REQUEST.len() as u32);
    let mut f = seal_vec(
        &header(1, 1),
        &Body::Create(CreateFragment {
            total_len: REQUEST.len() as u32,
            offset: 0,
            state: Some(state),
            data: REQUEST,
        }),
        &key(),
    );
    f[HEADER_LEN + CREATE_FIXED_LEN + 1] |= 0x08;
    key().sign_in_place(&mut f);
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::Invalid("state: unknown TCP option bit")
    );
}

#[test]
fn create_semantic_checks() {
    let state = tcp_state::v4(REQUEST.len() as u32);
    let frag = CreateFragment {
        total_len: REQUEST.len() as u32,
        offset: 0,
        state: Some(state),
        data: REQUEST,
    };
    // conn_id 0 is reserved for LOAD.
    let f = seal_vec(&header(0, 1), &Body::Create(frag), &key());
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::Invalid("create: conn_id 0")
    );
    // client_next must match the request length.
    let mut bad = state;
    bad.client_next += 1;
    let f = seal_vec(
        &header(1, 1),
        &Body::Create(CreateFragment {
            state: Some(bad),
            ..frag
        }),
        &key(),
    );
    assert!(matches!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::Invalid(_)
    ));
    // The first fragment must carry the state, later ones must not.
    let f = seal_vec(
        &header(1, 1),
        &Body::Create(CreateFragment {
            state: None,
            ..frag
        }),
        &key(),
    );
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::Invalid("create: first fragment without state")
    );
    let f = seal_vec(
        &header(1, 1),
        &Body::Create(CreateFragment {
            total_len: 100,
            offset: 10,
            state: Some(state),
            data: b"x",
        }),
        &key(),
    );
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::Invalid("create: state block in a later fragment")
    );
    // Data must stay within total_len.
    let f = seal_vec(
        &header(1, 1),
        &Body::Create(CreateFragment {
            total_len: 10,
            offset: 5,
            state: None,
            data: b"123456",
        }),
        &key(),
    );
    assert_eq!(
        open(&keyring(), AGENT, &f).unwrap_err(),
        DecodeError::Invalid("create: data beyond total_len")
    );
}

#[test]
fn labels_are_complete_and_frames_display() {
    let errors = [
        DecodeError::Truncated("x"),
        DecodeError::BadMagic(0),
        DecodeError::BadVersion(0),
        DecodeError::UnsupportedVersion(2),
        DecodeError::UnknownKey(9),
        DecodeError::BadTag,
        DecodeError::KeyNotForSender {
            key_id: 1,
            sender: 2,
        },
        DecodeError::WrongReceiver {
            expected: 1,
            got: 2,
        },
        DecodeError::UnknownOpcode(9),
        DecodeError::UnknownCriticalFlags(0x100),
        DecodeError::Invalid("x"),
    ];
    for e in errors {
        assert!(DecodeError::LABELS.contains(&e.label()), "{e:?}");
        assert!(!e.to_string().is_empty() && !e.reason().is_empty());
    }
    assert_eq!(DecodeError::LABELS.len(), errors.len());
    let replay = [
        ReplayError::TooOld { behind_ms: 1 },
        ReplayError::TooNew { ahead_ms: 1 },
        ReplayError::Duplicate(1),
        ReplayError::BehindWindow(1),
        ReplayError::TooManyPeers,
        ReplayError::BeforeStart { early_ms: 1 },
    ];
    for e in replay {
        assert!(ReplayError::LABELS.contains(&e.label()), "{e:?}");
    }
    assert_eq!(ReplayError::LABELS.len(), replay.len());
    let reasm = [
        ReassemblyError::TooLarge {
            total_len: 1,
            limit: 0,
        },
        ReassemblyError::TooManyPending,
        ReassemblyError::NoMemory,
        ReassemblyError::TooFragmented,
    ];
    for e in reasm {
        assert!(ReassemblyError::LABELS.contains(&e.label()), "{e:?}");
    }
    assert_eq!(ReassemblyError::LABELS.len(), reasm.len());

    let split = CreateSplitter::new(
        tcp_state::v4(REQUEST.len() as u32),
        REQUEST,
        MAX_FRAME_LEN_V4,
    )
    .unwrap();
    let mut buf = vec![0u8; split.frame_len(0)];
    split.write(0, &header(0x2a, 5), &key(), &mut buf);
    let (frame, _) = open(&keyring(), AGENT, &buf).unwrap();
    assert_eq!(
        frame.to_string(),
        "CREATE v1 conn=0x2a seq=5 from=0xc6120002 to=0xc612000b bytes 0+51/51 198.18.0.101:40000 -> 198.18.0.10:80"
    );
}
