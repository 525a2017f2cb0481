//! The local handover protocol: how `baton-agent` gives an adopted socket to
//! an unmodified web server that runs with the handover library preloaded
//! (`LD_PRELOAD=libbaton_handover.so`). Spec: `docs/agent.md`, "Socket
//! handover".
//!
//! Both ends are `AF_UNIX` datagram sockets on the backend itself: the agent's
//! is bound to a file (`handover.socket`), each converted server listener to
//! an abstract name that starts with [`LISTENER_PREFIX`]. Datagrams keep
//! boundaries, carry the descriptor (`SCM_RIGHTS`) with the message that names
//! it, and survive either side restarting: neither end is connected, so a new
//! agent finds live listeners again by their names and a [`Msg::Ping`].
//!
//! Every message is [`MSG_LEN`] bytes, little-endian:
//!
//! ```text
//!  0      4  5  6       8               16              24             32
//! +------+--+--+-------+---------------+---------------+--------------+----…
//! |magic |v |k | port  |     token / pid, fd …         |  address (16 bytes)
//! +------+--+--+-------+---------------+---------------+--------------+----…
//! ```
//!
//! | kind | from | meaning |
//! |---|---|---|
//! | HELLO | library | a listener on `address:port` is converted; `a` = pid |
//! | PING | agent | say HELLO again (sent to listeners found after a restart) |
//! | CONN | agent | the attached descriptor is an adopted connection; `a` = token |
//! | TAKEN | library | the server's `accept` returned CONN `a`; `b` = pid, `c` = its fd |
//!
//! The agent acknowledges a handoff to the switch only after TAKEN, so a
//! connection the server never accepts is never reported as delivered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// First four bytes of every message.
pub const HANDOVER_MAGIC: [u8; 4] = *b"BHO1";
/// Protocol version spoken by this crate (byte 4).
pub const HANDOVER_VERSION: u8 = 1;
/// Length of every message.
pub const MSG_LEN: usize = 40;
/// Abstract socket names of converted listeners start with this (after the
/// leading NUL); the agent lists `/proc/net/unix` for it after a restart.
pub const LISTENER_PREFIX: &str = "baton-handover/";
/// Environment variable: the listeners to convert (`ip:port`, `*:port`, comma-separated).
pub const ENV_LISTEN: &str = "BATON_HANDOVER_LISTEN";
/// Environment variable: the agent's socket (default [`DEFAULT_SOCKET`]).
pub const ENV_SOCKET: &str = "BATON_HANDOVER_SOCKET";
/// Where the agent's socket is unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/baton-agent/handover.sock";

const KIND_HELLO: u8 = 1;
const KIND_PING: u8 = 2;
const KIND_CONN: u8 = 3;
const KIND_TAKEN: u8 = 4;

/// One handover message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// Library → agent: a listener on `listener` was converted by process `pid`.
    Hello {
        /// Process that converted it (the server's master, for nginx).
        pid: u32,
        /// The TCP address the server asked to listen on.
        listener: SocketAddr,
    },
    /// Agent → library: announce yourself again.
    Ping,
    /// Agent → library: the attached descriptor is connection `token`.
    Conn {
        /// Opaque, unguessable id chosen by the agent.
        token: u64,
    },
    /// Library → agent: connection `token` was accepted as descriptor `fd` of process `pid`.
    Taken {
        /// The CONN's token.
        token: u64,
        /// The accepting process.
        pid: u32,
        /// The descriptor `accept` returned there.
        fd: i32,
    },
}

/// Why a datagram is not a handover message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverError {
    /// Not [`MSG_LEN`] bytes.
    Length,
    /// Wrong magic.
    Magic,
    /// A version this crate does not speak.
    Version,
    /// Unknown message kind.
    Kind,
    /// HELLO with an address family other than 4 or 6.
    Family,
}

impl HandoverError {
    /// A short label for counters and logs.
    pub fn label(self) -> &'static str {
        match self {
            HandoverError::Length => "length",
            HandoverError::Magic => "magic",
            HandoverError::Version => "version",
            HandoverError::Kind => "kind",
            HandoverError::Family => "family",
        }
    }
}

impl Msg {
    /// Writes the message; the layout is fixed, so this cannot fail.
    pub fn encode(&self) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        b[..4].copy_from_slice(&HANDOVER_MAGIC);
        b[4] = HANDOVER_VERSION;
        match *self {
            Msg::Hello { pid, listener } => {
                b[5] = KIND_HELLO;
                b[6..8].copy_from_slice(&listener.port().to_le_bytes());
                b[8..12].copy_from_slice(&pid.to_le_bytes());
                match listener.ip() {
                    IpAddr::V4(ip) => {
                        b[12] = 4;
                        b[24..28].copy_from_slice(&ip.octets());
                    }
                    IpAddr::V6(ip) => {
                        b[12] = 6;
                        b[24..40].copy_from_slice(&ip.octets());
                    }
                }
            }
            Msg::Ping => b[5] = KIND_PING,
            Msg::Conn { token } => {
                b[5] = KIND_CONN;
                b[8..16].copy_from_slice(&token.to_le_bytes());
            }
            Msg::Taken { token, pid, fd } => {
                b[5] = KIND_TAKEN;
                b[8..16].copy_from_slice(&token.to_le_bytes());
                b[16..20].copy_from_slice(&pid.to_le_bytes());
                b[20..24].copy_from_slice(&fd.to_le_bytes());
            }
        }
        b
    }

    /// Reads one datagram.
    pub fn decode(b: &[u8]) -> Result<Msg, HandoverError> {
        let b: &[u8; MSG_LEN] = b.try_into().map_err(|_| HandoverError::Length)?;
        if b[..4] != HANDOVER_MAGIC {
            return Err(HandoverError::Magic);
        }
        if b[4] != HANDOVER_VERSION {
            return Err(HandoverError::Version);
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
        match b[5] {
            KIND_HELLO => {
                let port = u16::from_le_bytes([b[6], b[7]]);
                let ip = match b[12] {
                    4 => IpAddr::V4(Ipv4Addr::new(b[24], b[25], b[26], b[27])),
                    6 => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&b[24..40]);
                        IpAddr::V6(Ipv6Addr::from(o))
                    }
                    _ => return Err(HandoverError::Family),
                };
                Ok(Msg::Hello {
                    pid: u32_at(8),
                    listener: SocketAddr::new(ip, port),
                })
            }
            KIND_PING => Ok(Msg::Ping),
            KIND_CONN => Ok(Msg::Conn { token: u64_at(8) }),
            KIND_TAKEN => Ok(Msg::Taken {
                token: u64_at(8),
                pid: u32_at(16),
                fd: u32_at(20) as i32,
            }),
            _ => Err(HandoverError::Kind),
        }
    }
}

/// One entry of [`ENV_LISTEN`]: an exact address, or any address on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenSpec {
    /// Exactly this address and port.
    Exact(SocketAddr),
    /// Any address (a wildcard or a specific one) on this port.
    Port(u16),
}

impl ListenSpec {
    /// Parses a comma-separated list (`198.18.0.10:80,*:443,[2001:2::10]:80`).
    pub fn parse_list(s: &str) -> Result<Vec<ListenSpec>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if let Some(port) = p.strip_prefix("*:") {
                    port.parse()
                        .map(ListenSpec::Port)
                        .map_err(|_| format!("`{p}`: bad port"))
                } else {
                    p.parse()
                        .map(ListenSpec::Exact)
                        .map_err(|_| format!("`{p}`: expected ip:port or *:port"))
                }
            })
            .collect()
    }

    /// Whether a listener bound to `addr` is covered.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        match *self {
            ListenSpec::Exact(a) => a == addr,
            ListenSpec::Port(p) => p == addr.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let msgs = [
            Msg::Hello {
                pid: 4242,
                listener: "198.18.0.10:80".parse().unwrap(),
            },
            Msg::Hello {
                pid: 1,
                listener: "[2001:2::10]:443".parse().unwrap(),
            },
            Msg::Ping,
            Msg::Conn {
                token: 0xdead_beef_0123_4567,
            },
            Msg::Taken {
                token: u64::MAX,
                pid: 77,
                fd: 1023,
            },
        ];
        for m in msgs {
            assert_eq!(Msg::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn golden_conn_layout() {
        let b = Msg::Conn { token: 0x0102 }.encode();
        assert_eq!(&b[..8], b"BHO1\x01\x03\x00\x00");
        assert_eq!(&b[8..16], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert!(b[16..].iter().all(|&x| x == 0));
    }

    #[test]
    fn bad_datagrams_are_typed_errors() {
        let good = Msg::Ping.encode();
        assert_eq!(Msg::decode(&good[..39]), Err(HandoverError::Length));
        assert_eq!(Msg::decode(&[]), Err(HandoverError::Length));
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Msg::decode(&b), Err(HandoverError::Magic));
        let mut b = good;
        b[4] = 9;
        assert_eq!(Msg::decode(&b), Err(HandoverError::Version));
        let mut b = good;
        b[5] = 200;
        assert_eq!(Msg::decode(&b), Err(HandoverError::Kind));
        let mut b = Msg::Hello {
            pid: 1,
            listener: "1.2.3.4:5".parse().unwrap(),
        }
        .encode();
        b[12] = 5;
        assert_eq!(Msg::decode(&b), Err(HandoverError::Family));
        // Any 40 bytes decode to a value or an error, never a panic.
        for k in 0..=255u8 {
            let mut b = good;
            b[5] = k;
            b[12] = k;
            let _ = Msg::decode(&b);
        }
    }

    #[test]
    fn listen_specs() {
        let l = ListenSpec::parse_list("198.18.0.10:80, *:443,[2001:2::10]:80").unwrap();
        assert_eq!(l.len(), 3);
        assert!(l[0].matches("198.18.0.10:80".parse().unwrap()));
        assert!(!l[0].matches("198.18.0.11:80".parse().unwrap()));
        assert!(l[1].matches("0.0.0.0:443".parse().unwrap()));
        assert!(l[2].matches("[2001:2::10]:80".parse().unwrap()));
        assert!(ListenSpec::parse_list("80").is_err());
        assert!(ListenSpec::parse_list("*:http").is_err());
        assert_eq!(ListenSpec::parse_list("").unwrap(), vec![]);
    }
}
