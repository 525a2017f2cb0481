//! Shared fixtures: the key, node ids, clock and TCP states the spec's
//! examples (docs/thop.md, Appendix A) are built from.
#![allow(dead_code)]

use handoff_proto::*;

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
        conn_id,
        msg_seq,
        timestamp_ms: NOW_MS + 1,
    }
}

/// The worked example's connection: 198.18.0.101:40000 → 198.18.0.10:80, all options.
pub fn state_v4(request_len: u32) -> TcpState {
    TcpState {
        endpoints: Endpoints::new(
            "198.18.0.101:40000".parse().unwrap(),
            "198.18.0.10:80".parse().unwrap(),
        )
        .unwrap(),
        client_isn: 0x1000_0000,
        client_next: 0x1000_0001u32.wrapping_add(request_len),
        server_isn: 0xa000_0000,
        server_next: 0xa000_0001,
        client_window: 64_240 << 7,
        server_window: 65_535,
        mss: 1460,
        window_scale: Some(WindowScale {
            client: 7,
            server: 7,
        }),
        sack_permitted: true,
        timestamps: Some(Timestamps {
            recent: 0x0012_3456,
            next_val: 0x0765_4321,
        }),
    }
}

/// An IPv6 connection without any option negotiated.
pub fn state_v6(request_len: u32) -> TcpState {
    TcpState {
        endpoints: Endpoints::new(
            "[2001:db8::101]:40000".parse().unwrap(),
            "[2001:db8::10]:443".parse().unwrap(),
        )
        .unwrap(),
        client_isn: 0xffff_fff0,
        client_next: 0xffff_fff1u32.wrapping_add(request_len),
        server_isn: 7,
        server_next: 8,
        client_window: 65_535,
        server_window: 29_200,
        mss: 1440,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
    }
}

pub fn seal_vec(header: &Header, body: &Body<'_>, key: &Key) -> Vec<u8> {
    let mut out = vec![0u8; frame_len(body)];
    let n = seal(header, body, key, &mut out);
    assert_eq!(n, out.len(), "seal wrote frame_len() bytes");
    out
}
