//! Shared fixtures: the key, node ids, clock and (from testkit) TCP states the spec's
//! examples (docs/thop.md, Appendix A) are built from.
#![allow(dead_code)]

use handoff_proto::*;
/// The worked example's TCP state (`tcp_state::v4`) and an IPv6 one.
pub use testkit::tcp_state;

/// Key id 1, bytes 0x00, 0x01, …, 0x1f (spec Appendix A).
pub fn key() -> Key {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    Key::new(1, b)
}

pub fn keyring() -> Keyring {
    Keyring::new(key())
}

/// 198.18.0.2, the switch's data address.
pub const SWITCH: u32 = 0xc612_0002;
/// 198.18.0.11, the first backend.
pub const AGENT: u32 = 0xc612_000b;
/// 2027-01-15T08:00:00Z in ms.
pub const NOW_MS: u64 = 1_800_000_000_000;

pub const REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n";

pub fn header(conn_id: u64, msg_seq: u64) -> Header {
    Header {
        flags: 0,
        sender: SWITCH,
        receiver: AGENT,
        boot: 0,
        conn_id,
        msg_seq,
        timestamp_ms: NOW_MS,
    }
}

pub fn reply_header(conn_id: u64, msg_seq: u64) -> Header {
    Header {
        flags: 0,
        sender: AGENT,
        receiver: SWITCH,
        boot: 0,
        conn_id,
        msg_seq,
        timestamp_ms: NOW_MS + 1,
    }
}

pub fn seal_vec(header: &Header, body: &Body<'_>, key: &Key) -> Vec<u8> {
    let mut out = vec![0u8; frame_len(body)];
    let n = seal(header, body, key, &mut out);
    assert_eq!(n, out.len(), "seal wrote frame_len() bytes");
    out
}
