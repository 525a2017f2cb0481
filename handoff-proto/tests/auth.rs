//! Authentication (spec §7): every single-bit flip of a valid frame and every
//! wrong key is rejected; rotation through a keyring works.

mod common;

use common::*;
use handoff_proto::*;

fn sample_frames() -> Vec<Vec<u8>> {
    let k = key();
    let split = CreateSplitter::new(
        tcp_state::v4(REQUEST.len() as u32),
        REQUEST,
        MAX_FRAME_LEN_V4,
    )
    .unwrap();
    let mut create = vec![0u8; split.frame_len(0)];
    split.write(0, &header(42, 1), &k, &mut create);
    vec![
        create,
        seal_vec(&reply_header(42, 2), &Body::Ack(Ack { echo_seq: 1 }), &k),
        seal_vec(
            &reply_header(42, 3),
            &Body::Nack(Nack {
                echo_seq: 1,
                reason: NackReason::BacklogFull,
                versions: &[],
            }),
            &k,
        ),
        seal_vec(
            &reply_header(42, 4),
            &Body::Close(Close {
                reason: CloseReason::ClientFin,
                bytes_from_client: 10,
                bytes_to_client: 20,
            }),
            &k,
        ),
        seal_vec(
            &header(42, 5),
            &Body::Abort(Abort {
                reason: AbortReason::ClientReset,
            }),
            &k,
        ),
        seal_vec(
            &reply_header(0, 6),
            &Body::Load(Load {
                active_conns: 1,
                adopted_per_sec: 2,
                capacity_hint: 3,
                interval_ms: 1000,
            }),
            &k,
        ),
    ]
}

fn receiver_of(frame: &[u8]) -> u32 {
    FrameView::parse(frame).unwrap().0.receiver()
}

#[test]
fn valid_frames_verify() {
    let keys = keyring();
    for f in sample_frames() {
        let (frame, rest) = open(&keys, receiver_of(&f), &f).expect("valid frame opens");
        assert!(rest.is_empty());
        assert_eq!(frame.key_id, 1);
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let keys = keyring();
    for f in sample_frames() {
        let local = receiver_of(&f);
        for bit in 0..f.len() * 8 {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            let err = open(&keys, local, &g).expect_err("a flipped bit must not verify");
            // Flips in magic/version/body_len fail parsing, flips in key_id name
            // an unknown key; everything else must fail the tag check.
            match bit / 8 {
                0 | 1 => assert!(matches!(err, DecodeError::BadMagic(_)), "bit {bit}: {err}"),
                2 => assert!(
                    matches!(err, DecodeError::BadVersion(_) | DecodeError::BadTag),
                    "bit {bit}: {err}"
                ),
                6 | 7 => assert!(
                    matches!(err, DecodeError::Truncated(_) | DecodeError::BadTag),
                    "bit {bit}: {err}"
                ),
                8..=11 => {
                    let shift = (11 - bit / 8) * 8 + bit % 8;
                    assert_eq!(err, DecodeError::UnknownKey(1 ^ (1 << shift)), "bit {bit}")
                }
                _ => assert_eq!(err, DecodeError::BadTag, "bit {bit}"),
            }
            assert!(
                err.is_auth_failure()
                    || matches!(
                        err,
                        DecodeError::BadMagic(_)
                            | DecodeError::BadVersion(_)
                            | DecodeError::Truncated(_)
                    )
            );
        }
    }
}

#[test]
fn wrong_keys_are_rejected() {
    let f = &sample_frames()[0];
    // Same id, each key byte wrong in turn (and every bit of the first byte).
    let good = key();
    let mut base = [0u8; 32];
    for (i, x) in base.iter_mut().enumerate() {
        *x = i as u8;
    }
    for byte in 0..32 {
        for bit in 0..8 {
            let mut b = base;
            b[byte] ^= 1 << bit;
            let keys = Keyring::new(Key::new(1, b));
            assert_eq!(
                open(&keys, AGENT, f).unwrap_err(),
                DecodeError::BadTag,
                "key byte {byte} bit {bit}"
            );
        }
    }
    // A keyring without the frame's key id.
    let keys = Keyring::new(Key::new(2, base));
    assert_eq!(
        open(&keys, AGENT, f).unwrap_err(),
        DecodeError::UnknownKey(1)
    );
    // The right key verifies.
    assert!(open(&Keyring::new(good), AGENT, f).is_ok());
}

#[test]
fn frame_for_another_node_is_rejected_after_auth() {
    let f = &sample_frames()[0];
    assert_eq!(
        open(&keyring(), SWITCH, f).unwrap_err(),
        DecodeError::WrongReceiver {
            expected: SWITCH,
            got: AGENT
        }
    );
}

#[test]
fn keyring_rotation() {
    let old = key();
    let new = Key::from_passphrase(2, b"correct horse battery staple").unwrap();
    // Step 1: receivers learn the new key, senders still use the old one.
    let mut agent = Keyring::new(old.clone());
    agent.insert(new.clone());
    let mut switch = Keyring::new(old.clone());
    switch.insert(new.clone());
    let body = Body::Abort(Abort {
        reason: AbortReason::Shutdown,
    });
    let f1 = seal_vec(&header(1, 1), &body, switch.current());
    assert_eq!(open(&agent, AGENT, &f1).unwrap().0.key_id, 1);
    // Step 2: senders switch to the new key.
    assert!(switch.set_current(2));
    let f2 = seal_vec(&header(1, 2), &body, switch.current());
    assert_eq!(open(&agent, AGENT, &f2).unwrap().0.key_id, 2);
    // Step 3: the old key is removed; old-key frames are now refused.
    assert!(!agent.remove(1), "the current key cannot be removed");
    assert!(agent.set_current(2));
    assert!(agent.remove(1));
    assert_eq!(
        open(&agent, AGENT, &f1).unwrap_err(),
        DecodeError::UnknownKey(1)
    );
    assert!(open(&agent, AGENT, &f2).is_ok());
    // The current key cannot be removed.
    assert!(!switch.remove(2));
    assert!(!switch.set_current(9));
}

#[test]
fn key_parsing() {
    let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    assert_eq!(Key::from_hex(1, hex).unwrap(), key());
    assert_eq!(Key::from_hex(1, &hex.to_uppercase()).unwrap(), key());
    assert_eq!(Key::from_hex(1, &hex[2..]), Err(KeyError::BadHexLength(62)));
    assert_eq!(
        Key::from_hex(1, &hex.replace('a', "g")),
        Err(KeyError::NotHex)
    );
    assert_eq!(
        Key::from_passphrase(1, b"short"),
        Err(KeyError::PassphraseTooShort(5))
    );
    assert!(
        !format!("{:?}", key()).contains("1f"),
        "Debug must not print key bytes"
    );
}

#[test]
fn a_key_bound_to_other_nodes_cannot_speak_for_this_sender() {
    // Key 1 is shared by the switch and agent AGENT, key 2 by the switch and
    // another agent. The other agent signs a LOAD claiming to be AGENT.
    const OTHER: u32 = 0xc612_000c;
    let k1 = Key::new(1, [0x31; 32]);
    let k2 = Key::new(2, [0x32; 32]);
    let mut ring = Keyring::new(k1.clone());
    ring.insert(k2.clone());
    ring.bind(1, [AGENT]);
    ring.bind(2, [OTHER]);
    let load = Body::Load(Load {
        active_conns: 0,
        adopted_per_sec: 0,
        capacity_hint: 1,
        interval_ms: 1000,
    });
    let forged = seal_vec(&reply_header(0, 1), &load, &k2);
    assert_eq!(
        open(&ring, SWITCH, &forged).unwrap_err(),
        DecodeError::KeyNotForSender {
            key_id: 2,
            sender: AGENT
        }
    );
    assert_eq!(
        open(&ring, SWITCH, &forged).unwrap_err().label(),
        "key_not_for_sender"
    );
    let genuine = seal_vec(&reply_header(0, 2), &load, &k1);
    assert!(open(&ring, SWITCH, &genuine).is_ok());
    // Frames to each node go out with its own key; unbound nodes get the current one.
    assert_eq!(ring.for_peer(AGENT).id(), 1);
    assert_eq!(ring.for_peer(OTHER).id(), 2);
    assert_eq!(ring.for_peer(0x0a00_0001).id(), 1);
}
