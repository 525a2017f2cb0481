//! CREATE (switch → agent, spec §6): the TCP state of a connection the switch
//! accepted, and the request bytes it already acknowledged to the client,
//! split into fragments that each fit one UDP datagram.
//!
//! ```text
//! body:   0 total_len u32 | 4 offset u32 | 8 state_len u16 | 10 reserved u16
//!        12 state block (state_len bytes; only in the fragment at offset 0)
//!           request data (the rest of the body)
//! state:  0 family u8 | 1 options u8 | 2 client_wscale u8 | 3 server_wscale u8
//!         4 mss u16 | 6 reserved u16 | 8 client_isn | 12 client_next
//!        16 server_isn | 20 server_next | 24 client_window | 28 server_window
//!        32 ts_recent | 36 ts_val | 40 client_port u16 | 42 vip_port u16
//!        44 client address (4 or 16) | vip address (4 or 16)
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::error::DecodeError;
use crate::wire::{Reader, Writer};

/// Length of the fixed fragment header at the start of every CREATE body.
pub const CREATE_FIXED_LEN: usize = 12;
/// Length of a version-1 state block for IPv4 endpoints.
pub const STATE_LEN_V4: usize = 52;
/// Length of a version-1 state block for IPv6 endpoints.
pub const STATE_LEN_V6: usize = 76;
/// The largest request a CREATE may carry (16 MiB); agents usually set a lower
/// limit in their [`crate::ReassemblyConfig`].
pub const MAX_REQUEST_LEN: u32 = 16 << 20;
/// Smallest MSS accepted (Linux `TCP_MIN_MSS`).
pub const MIN_MSS: u16 = 88;
/// Largest window scale shift (RFC 7323 §2.3).
pub const MAX_WSCALE: u8 = 14;

/// State-block option bits (spec §6.2). All are critical: an unknown bit
/// means the switch negotiated something the agent cannot continue.
pub mod tcp_opt {
    /// Window scaling was negotiated (both shifts are meaningful).
    pub const WSCALE: u8 = 0x01;
    /// SACK-permitted was negotiated.
    pub const SACK_PERMITTED: u8 = 0x02;
    /// Timestamps were negotiated (ts_recent and ts_val are meaningful).
    pub const TIMESTAMPS: u8 = 0x04;
    /// Every bit version 1 defines.
    pub const KNOWN: u8 = WSCALE | SACK_PERMITTED | TIMESTAMPS;
}

/// The client and virtual endpoints, one address family for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoints {
    /// IPv4 client and VIP.
    V4 {
        /// The client's address and port.
        client: SocketAddrV4,
        /// The virtual address and port the client connected to.
        vip: SocketAddrV4,
    },
    /// IPv6 client and VIP (flow label and scope are not carried).
    V6 {
        /// The client's address and port.
        client: SocketAddrV6,
        /// The virtual address and port the client connected to.
        vip: SocketAddrV6,
    },
}

impl Endpoints {
    /// Pairs two socket addresses; `None` if their families differ.
    pub fn new(client: SocketAddr, vip: SocketAddr) -> Option<Endpoints> {
        match (client, vip) {
            (SocketAddr::V4(client), SocketAddr::V4(vip)) => Some(Endpoints::V4 { client, vip }),
            (SocketAddr::V6(client), SocketAddr::V6(vip)) => Some(Endpoints::V6 { client, vip }),
            _ => None,
        }
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        match *self {
            Endpoints::V4 { client, .. } => SocketAddr::V4(client),
            Endpoints::V6 { client, .. } => SocketAddr::V6(client),
        }
    }

    /// The virtual address.
    pub fn vip(&self) -> SocketAddr {
        match *self {
            Endpoints::V4 { vip, .. } => SocketAddr::V4(vip),
            Endpoints::V6 { vip, .. } => SocketAddr::V6(vip),
        }
    }

    fn state_len(&self) -> usize {
        match self {
            Endpoints::V4 { .. } => STATE_LEN_V4,
            Endpoints::V6 { .. } => STATE_LEN_V6,
        }
    }
}

/// Window scale shifts, present when window scaling was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowScale {
    /// The shift the client announced: applies to windows the client sends
    /// (the backend's `snd_wscale`).
    pub client: u8,
    /// The shift the switch announced in its SYN/ACK: applies to windows the
    /// backend sends (its `rcv_wscale`).
    pub server: u8,
}

/// Timestamp state, present when timestamps were negotiated (RFC 7323).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamps {
    /// The client's most recent TSval (the backend's `ts_recent`, echoed as TSecr).
    pub recent: u32,
    /// The TSval the backend's next segment must carry (at least the last one
    /// the switch sent); the agent sets its timestamp offset from it.
    pub next_val: u32,
}

/// Everything the backend needs to continue the connection exactly where the
/// switch left it (spec §6.2). Sequence numbers are in the client's view: the
/// switch chose the server ISN and the backend continues from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpState {
    /// Client and virtual endpoints.
    pub endpoints: Endpoints,
    /// The client's initial sequence number (its SYN).
    pub client_isn: u32,
    /// The next sequence number expected from the client (the backend's
    /// `rcv_nxt`): `client_isn + 1 + request length`.
    pub client_next: u32,
    /// The server initial sequence number the switch put in its SYN/ACK.
    pub server_isn: u32,
    /// The next sequence number the backend sends (its `snd_nxt`, normally `server_isn + 1`).
    pub server_next: u32,
    /// The client's receive window in bytes (already scaled).
    pub client_window: u32,
    /// The receive window the switch last advertised to the client, in bytes
    /// (already scaled); the backend must not shrink below it.
    pub server_window: u32,
    /// The MSS the client announced (the most the backend may send per segment).
    pub mss: u16,
    /// Window scaling, when negotiated.
    pub window_scale: Option<WindowScale>,
    /// Whether SACK-permitted was negotiated.
    pub sack_permitted: bool,
    /// Timestamps, when negotiated.
    pub timestamps: Option<Timestamps>,
}

impl TcpState {
    /// Length of this state's block on the wire.
    pub fn encoded_len(&self) -> usize {
        self.endpoints.state_len()
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        self.endpoints.client()
    }

    /// The virtual address the client connected to.
    pub fn vip(&self) -> SocketAddr {
        self.endpoints.vip()
    }

    /// Checks what a receiver would check (spec §6.2), without the request
    /// length: the sender uses it before splitting.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.mss < MIN_MSS {
            return Err(DecodeError::Invalid("state: mss below 88"));
        }
        if let Some(ws) = self.window_scale {
            if ws.client > MAX_WSCALE || ws.server > MAX_WSCALE {
                return Err(DecodeError::Invalid("state: window scale above 14"));
            }
        }
        if self.client().port() == 0 || self.vip().port() == 0 {
            return Err(DecodeError::Invalid("state: port 0"));
        }
        for ip in [self.client().ip(), self.vip().ip()] {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(DecodeError::Invalid(
                    "state: unspecified or multicast address",
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let mut opts = 0u8;
        let (cws, sws) = match self.window_scale {
            Some(ws) => {
                opts |= tcp_opt::WSCALE;
                (ws.client, ws.server)
            }
            None => (0, 0),
        };
        if self.sack_permitted {
            opts |= tcp_opt::SACK_PERMITTED;
        }
        let (recent, next_val) = match self.timestamps {
            Some(ts) => {
                opts |= tcp_opt::TIMESTAMPS;
                (ts.recent, ts.next_val)
            }
            None => (0, 0),
        };
        let family = match self.endpoints {
            Endpoints::V4 { .. } => 4,
            Endpoints::V6 { .. } => 6,
        };
        w.u8(family);
        w.u8(opts);
        w.u8(cws);
        w.u8(sws);
        w.u16(self.mss);
        w.u16(0);
        w.u32(self.client_isn);
        w.u32(self.client_next);
        w.u32(self.server_isn);
        w.u32(self.server_next);
        w.u32(self.client_window);
        w.u32(self.server_window);
        w.u32(recent);
        w.u32(next_val);
        w.u16(self.client().port());
        w.u16(self.vip().port());
        match self.endpoints {
            Endpoints::V4 { client, vip } => {
                w.bytes(&client.ip().octets());
                w.bytes(&vip.ip().octets());
            }
            Endpoints::V6 { client, vip } => {
                w.bytes(&client.ip().octets());
                w.bytes(&vip.ip().octets());
            }
        }
    }

    /// Decodes a state block of exactly `block.len()` bytes; bytes after the
    /// version-1 fields are ignored (forward compatibility, spec §8.3).
    pub(crate) fn decode(block: &[u8]) -> Result<TcpState, DecodeError> {
        let mut r = Reader::new(block);
        let family = r.u8("state: family")?;
        let opts = r.u8("state: options")?;
        let cws = r.u8("state: client_wscale")?;
        let sws = r.u8("state: server_wscale")?;
        let mss = r.u16("state: mss")?;
        let _reserved = r.u16("state: reserved")?;
        let client_isn = r.u32("state: client_isn")?;
        let client_next = r.u32("state: client_next")?;
        let server_isn = r.u32("state: server_isn")?;
        let server_next = r.u32("state: server_next")?;
        let client_window = r.u32("state: client_window")?;
        let server_window = r.u32("state: server_window")?;
        let recent = r.u32("state: ts_recent")?;
        let next_val = r.u32("state: ts_val")?;
        let cport = r.u16("state: client_port")?;
        let vport = r.u16("state: vip_port")?;
        let endpoints = match family {
            4 => {
                let c: [u8; 4] = r.array("state: client address")?;
                let v: [u8; 4] = r.array("state: vip address")?;
                Endpoints::V4 {
                    client: SocketAddrV4::new(Ipv4Addr::from(c), cport),
                    vip: SocketAddrV4::new(Ipv4Addr::from(v), vport),
                }
            }
            6 => {
                let c: [u8; 16] = r.array("state: client address")?;
                let v: [u8; 16] = r.array("state: vip address")?;
                Endpoints::V6 {
                    client: SocketAddrV6::new(Ipv6Addr::from(c), cport, 0, 0),
                    vip: SocketAddrV6::new(Ipv6Addr::from(v), vport, 0, 0),
                }
            }
            _ => return Err(DecodeError::Invalid("state: family is neither 4 nor 6")),
        };
        if opts & !tcp_opt::KNOWN != 0 {
            return Err(DecodeError::Invalid("state: unknown TCP option bit"));
        }
        let state = TcpState {
            endpoints,
            client_isn,
            client_next,
            server_isn,
            server_next,
            client_window,
            server_window,
            mss,
            window_scale: (opts & tcp_opt::WSCALE != 0).then_some(WindowScale {
                client: cws,
                server: sws,
            }),
            sack_permitted: opts & tcp_opt::SACK_PERMITTED != 0,
            timestamps: (opts & tcp_opt::TIMESTAMPS != 0)
                .then_some(Timestamps { recent, next_val }),
        };
        state.validate()?;
        Ok(state)
    }
}

/// One CREATE fragment: a slice of the request at `offset`, and the TCP state
/// in the fragment at offset 0. A borrowed view when decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateFragment<'a> {
    /// Total request bytes across all fragments.
    pub total_len: u32,
    /// Where `data` starts in the request.
    pub offset: u32,
    /// The TCP state; present exactly in the fragment at offset 0.
    pub state: Option<TcpState>,
    /// This fragment's request bytes.
    pub data: &'a [u8],
}

impl<'a> CreateFragment<'a> {
    /// Body length on the wire.
    pub fn encoded_len(&self) -> usize {
        CREATE_FIXED_LEN + self.state.map_or(0, |s| s.encoded_len()) + self.data.len()
    }

    /// True when this fragment completes the request by itself.
    pub fn is_whole(&self) -> bool {
        self.offset == 0 && self.data.len() as u64 == u64::from(self.total_len)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.total_len);
        w.u32(self.offset);
        let state_len = self.state.map_or(0, |s| s.encoded_len());
        // Invariant: state blocks are 52 or 76 bytes.
        w.u16(state_len as u16);
        w.u16(0);
        if let Some(s) = &self.state {
            s.encode(w);
        }
        w.bytes(self.data);
    }

    /// Decodes and validates a CREATE body (spec §6.1).
    pub fn decode(body: &'a [u8]) -> Result<CreateFragment<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let total_len = r.u32("create: total_len")?;
        let offset = r.u32("create: offset")?;
        let state_len = r.u16("create: state_len")? as usize;
        let _reserved = r.u16("create: reserved")?;
        if total_len > MAX_REQUEST_LEN {
            return Err(DecodeError::Invalid("create: total_len above 16 MiB"));
        }
        let state = match (offset, state_len) {
            (0, 0) => return Err(DecodeError::Invalid("create: first fragment without state")),
            (0, _) => Some(TcpState::decode(
                r.bytes(state_len, "create: state block")?,
            )?),
            (_, 0) => None,
            (_, _) => {
                return Err(DecodeError::Invalid(
                    "create: state block in a later fragment",
                ))
            }
        };
        let data = r.rest();
        let end = u64::from(offset) + data.len() as u64;
        if end > u64::from(total_len) {
            return Err(DecodeError::Invalid("create: data beyond total_len"));
        }
        if let Some(s) = &state {
            let expect = s.client_isn.wrapping_add(1).wrapping_add(total_len);
            if s.client_next != expect {
                return Err(DecodeError::Invalid(
                    "create: client_next is not client_isn + 1 + total_len",
                ));
            }
        }
        Ok(CreateFragment {
            total_len,
            offset,
            state,
            data,
        })
    }
}
