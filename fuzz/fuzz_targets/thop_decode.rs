//! Fuzzes every THOP receive path with untrusted bytes: structural parse,
//! authentication, body decoding for every opcode (with and without a valid
//! tag). Must never panic; whatever decodes must re-encode to an equal value.
#![no_main]

use handoff_proto::*;
use libfuzzer_sys::fuzz_target;

const AGENT: u32 = 0xc612_000b;

fn key() -> Key {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    Key::new(1, b)
}

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::new(key());
    // As received: most inputs fail the tag.
    let _ = open(&keys, AGENT, data);
    // As if the tag were valid: re-tag a copy so the decoder behind
    // authentication is reached too.
    if data.len() >= HEADER_LEN {
        let mut f = data.to_vec();
        f[0] = 0x54;
        f[1] = 0x48;
        // Mostly version 1, so the body decoders are reached; sometimes any.
        if f[2] & 0x80 == 0 {
            f[2] = 1;
        }
        key().sign_in_place(&mut f);
        if let Ok((view, _)) = FrameView::parse(&f) {
            let _ = keys.verify(&view);
            if let Ok(frame) = view.decode() {
                let mut out = vec![0u8; frame_len(&frame.body)];
                seal(&frame.header, &frame.body, &key(), &mut out);
                let (again, _) =
                    open(&keys, frame.header.receiver, &out).expect("re-encoded frame opens");
                assert_eq!(again.body, frame.body);
                assert_eq!(again.header, frame.header);
            }
        }
    }
    // Every body decoder on the raw bytes.
    for op in Opcode::ALL {
        if let Ok(body) = Body::decode(op, data) {
            assert_eq!(body.opcode(), op);
            let mut out = vec![0u8; frame_len(&body)];
            let h = Header {
                conn_id: 1,
                receiver: AGENT,
                boot: 0,
                ..Header::default()
            };
            seal(&h, &body, &key(), &mut out);
            assert_eq!(
                open(&keys, AGENT, &out)
                    .expect("re-encoded body opens")
                    .0
                    .body,
                body
            );
        }
    }
});
