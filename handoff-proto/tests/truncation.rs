//! Every prefix of every valid frame, and every shortened body (re-tagged so
//! it passes authentication), is refused with a typed error or decodes to
//! something else: never a panic, never the original frame.

mod common;

use common::*;
use handoff_proto::*;

fn frames() -> Vec<Vec<u8>> {
    let req = vec![b'r'; 3000];
    let mut out = Vec::new();
    for state in [tcp_state::v4(3000), tcp_state::v6(3000)] {
        let split = CreateSplitter::new(state, &req, MAX_FRAME_LEN_V4).unwrap();
        for i in 0..split.fragment_count() {
            let mut b = vec![0u8; split.frame_len(i)];
            split.write(i, &header(1, i as u64), &key(), &mut b);
            out.push(b);
        }
    }
    let bodies = [
        Body::Ack(Ack { echo_seq: 1 }),
        Body::Nack(Nack {
            echo_seq: 1,
            reason: NackReason::UnsupportedVersion,
            versions: &[1, 2, 3],
        }),
        Body::Close(Close {
            reason: CloseReason::ServerReset,
            bytes_from_client: 1,
            bytes_to_client: 2,
        }),
        Body::Abort(Abort {
            reason: AbortReason::HandoffTimeout,
        }),
        Body::Load(Load::default()),
    ];
    for body in bodies {
        out.push(seal_vec(&header(1, 1), &body, &key()));
    }
    out
}

#[test]
fn every_prefix_is_refused() {
    for f in frames() {
        for len in 0..f.len() {
            let err = open(&keyring(), AGENT, &f[..len]).expect_err("a prefix must not open");
            assert!(
                matches!(err, DecodeError::Truncated(_)),
                "prefix {len}: {err}"
            );
        }
    }
}

#[test]
fn every_shortened_body_is_refused_or_differs() {
    for f in frames() {
        let (orig, _) = open(&keyring(), AGENT, &f).unwrap();
        for cut in 1..=f.len() - HEADER_LEN {
            let mut g = f[..f.len() - cut].to_vec();
            let body_len = (g.len() - HEADER_LEN) as u16;
            g[6..8].copy_from_slice(&body_len.to_be_bytes());
            key().sign_in_place(&mut g);
            match open(&keyring(), AGENT, &g) {
                Err(DecodeError::Truncated(_) | DecodeError::Invalid(_)) => {}
                Err(e) => panic!("cut {cut}: unexpected {e}"),
                // A CREATE with less data is still well-formed; it must differ.
                Ok((frame, _)) => assert_ne!(frame.body, orig.body, "cut {cut}"),
            }
        }
    }
}
