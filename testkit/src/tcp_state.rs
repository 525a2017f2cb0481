//! `handoff_proto::TcpState` fixtures: the frozen TCP connection a
//! THOP_CREATE carries, for the protocol's tests and the codec and adoption
//! benches. [`v4`] is the worked example of the THOP specification
//! (docs/thop.md, Appendix A); golden vectors depend on its values.

use std::net::SocketAddr;

use handoff_proto::{Endpoints, TcpState, Timestamps, WindowScale};

/// The worked example's connection: 198.18.0.101:40000 → 198.18.0.10:80,
/// every option negotiated, `request_len` request bytes received.
pub fn v4(request_len: u32) -> TcpState {
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
pub fn v6(request_len: u32) -> TcpState {
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

/// The options of [`v4`] on another connection: `client` → `vip`, client ISN
/// `isn` (the server's is `!isn`), `request_len` request bytes received.
pub fn between(client: SocketAddr, vip: SocketAddr, isn: u32, request_len: u32) -> TcpState {
    TcpState {
        endpoints: Endpoints::new(client, vip).unwrap(),
        client_isn: isn,
        client_next: isn.wrapping_add(1).wrapping_add(request_len),
        server_isn: !isn,
        server_next: (!isn).wrapping_add(1),
        timestamps: Some(Timestamps {
            recent: 1,
            next_val: isn,
        }),
        ..v4(request_len)
    }
}
