//! Adoption of a handed-off connection with Linux `TCP_REPAIR`.
//!
//! The switch completed the handshake and read the request; this module
//! rebuilds that connection on the backend as an ESTABLISHED socket without
//! any packet exchange: the mechanism CRIU uses for checkpoint/restore.
//!
//! The order below is the one verified on the target kernel (see
//! `docs/agent.md`):
//!
//! `socket` → `TCP_REPAIR`=1 → `bind(VIP, port)` → send queue seq → recv queue
//! seq → `connect(client)` (no SYN is sent in repair mode) →
//! `TCP_REPAIR_OPTIONS` (options are accepted only once the socket is
//! ESTABLISHED) → `TCP_TIMESTAMP` → request bytes into the receive queue →
//! `TCP_REPAIR_WINDOW` → `TCP_REPAIR`=0 (which sends a window probe, i.e. an
//! ACK the client can use).
//!
//! Two kernel lessons are encoded here:
//! - never set `SO_REUSEADDR`: repair mode forces address reuse, and setting
//!   the option afterwards overwrites that, so a second adopted connection on
//!   the same VIP:port would fail with `EADDRINUSE`;
//! - `TCP_QUEUE_SEQ` and `TCP_TIMESTAMP` take `u32`; passing a sign-extended
//!   `i32` fails for half of all sequence numbers.
//!
//! On any error the partly built socket is closed while still in repair mode,
//! which the kernel does silently (no RST, no FIN): nothing reaches the client
//! and the switch may re-dispatch.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, TcpStream};

pub use handoff_proto::TcpState;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `TCP_REPAIR_QUEUE` selectors (linux/tcp.h).
const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
/// `TCP_REPAIR` values (linux/tcp.h).
const TCP_REPAIR_ON: libc::c_int = 1;
const TCP_REPAIR_OFF: libc::c_int = 0;
/// TCP option kinds accepted by `TCP_REPAIR_OPTIONS` (RFC 9293, RFC 7323, RFC 2018).
const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
/// Largest window scale shift (RFC 7323 §2.3).
pub const MAX_WSCALE: u8 = 14;
/// Largest chunk written into the receive queue per call (one skb each).
const RCVQ_CHUNK: usize = 16 * 1024;

/// `struct tcp_repair_opt` (linux/tcp.h).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct TcpRepairOpt {
    opt_code: u32,
    opt_val: u32,
}

/// `struct tcp_repair_window` (linux/tcp.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpRepairWindow {
    /// Sequence number of the segment that last updated the send window.
    pub snd_wl1: u32,
    /// The peer's window, already scaled, in bytes.
    pub snd_wnd: u32,
    /// Largest window the peer has offered.
    pub max_window: u32,
    /// The window we last advertised, in bytes.
    pub rcv_wnd: u32,
    /// `rcv_nxt` at the time of our last window update.
    pub rcv_wup: u32,
}

/// Why an adoption failed, mapped one-to-one to a NACK reason and a counter.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// A field of the state cannot be honoured by this kernel.
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// The VIP/client address families differ or the family is unsupported.
    #[error("address family mismatch between VIP and client")]
    Family,
    /// Missing privilege (CAP_NET_ADMIN) for TCP_REPAIR.
    #[error("TCP_REPAIR not permitted (CAP_NET_ADMIN missing): {0}")]
    Permission(io::Error),
    /// The VIP:port + client 4-tuple exists already.
    #[error("connection already exists: {0}")]
    Exists(io::Error),
    /// Any other system call failure, naming the step.
    #[error("{step}: {err}")]
    Sys {
        /// The step that failed.
        step: &'static str,
        /// The OS error.
        err: io::Error,
    },
}

impl AdoptError {
    /// A short stable label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            AdoptError::InvalidState(_) => "invalid_state",
            AdoptError::Family => "family",
            AdoptError::Permission(_) => "permission",
            AdoptError::Exists(_) => "exists",
            AdoptError::Sys { .. } => "syscall",
        }
    }
}

fn sys(step: &'static str) -> impl FnOnce(io::Error) -> AdoptError {
    move |err| match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => AdoptError::Permission(err),
        Some(libc::EADDRINUSE) | Some(libc::EISCONN) => AdoptError::Exists(err),
        // A repair-mode connect finds the 4-tuple held by another socket
        // (one not in TIME_WAIT, or in TIME_WAIT without timestamps).
        Some(libc::EADDRNOTAVAIL) if step == "connect (repair)" => AdoptError::Exists(err),
        _ => AdoptError::Sys { step, err },
    }
}

/// Sets an integer-like socket option, any plain-old-data value.
fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A `sockaddr_storage` plus its length, for bind/connect.
pub(crate) fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Checks the fields this kernel would reject, before touching a socket
/// (the codec has checked the wire-level invariants already).
pub fn validate(st: &TcpState) -> Result<(), AdoptError> {
    if st.mss < 64 {
        return Err(AdoptError::InvalidState("mss below 64"));
    }
    if st
        .window_scale
        .is_some_and(|w| w.client > MAX_WSCALE || w.server > MAX_WSCALE)
    {
        return Err(AdoptError::InvalidState("window scale above 14"));
    }
    if st.client().port() == 0 || st.vip().port() == 0 {
        return Err(AdoptError::InvalidState("port 0"));
    }
    let ip = st.client().ip();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(AdoptError::InvalidState(
            "client address not a remote unicast address",
        ));
    }
    if let (IpAddr::V6(client), IpAddr::V6(vip)) = (ip, st.vip().ip()) {
        // An AF_INET6 socket connected to a mapped address is an IPv4
        // connection: the switch sends those as IPv4 state blocks.
        if client.to_ipv4_mapped().is_some() || vip.to_ipv4_mapped().is_some() {
            return Err(AdoptError::InvalidState(
                "IPv4-mapped address in an IPv6 state block",
            ));
        }
        // A link-local address needs a zone, which THOP does not carry.
        let link_local = |a: &std::net::Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
        if link_local(&client) || link_local(&vip) {
            return Err(AdoptError::InvalidState("link-local address"));
        }
    }
    if st.max_window_ok().is_none() {
        return Err(AdoptError::InvalidState(
            "window larger than the scale allows",
        ));
    }
    Ok(())
}

trait WindowCheck {
    fn max_window_ok(&self) -> Option<()>;
}

impl WindowCheck for TcpState {
    /// A window must fit 16 bits after the negotiated shift (RFC 7323 §2.3).
    fn max_window_ok(&self) -> Option<()> {
        let shift = self.window_scale.map_or(0, |w| w.client);
        (u64::from(self.client_window) <= (65535u64 << shift)).then_some(())
    }
}

/// Rebuilds the connection described by `st` as an ESTABLISHED socket, with
/// `request` (the bytes the switch acknowledged) waiting in its receive queue.
///
/// The socket is returned blocking. On failure nothing is left behind and
/// nothing was sent to the client.
pub fn adopt(st: &TcpState, request: &[u8]) -> Result<TcpStream, AdoptError> {
    validate(st)?;
    let family = if st.vip().is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(sys("socket")(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh descriptor we own. Dropping `fd` on an error path
    // closes a socket still in repair mode: the kernel sends nothing.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    build(fd.as_raw_fd(), st, request)?;
    Ok(TcpStream::from(fd))
}

fn build(fd: RawFd, st: &TcpState, request: &[u8]) -> Result<(), AdoptError> {
    let tcp = libc::IPPROTO_TCP;
    setsockopt(fd, tcp, libc::TCP_REPAIR, &TCP_REPAIR_ON).map_err(sys("TCP_REPAIR on"))?;

    let (vip, vip_len) = sockaddr(&st.vip());
    // SAFETY: `vip` is a valid sockaddr of `vip_len` bytes.
    check(unsafe { libc::bind(fd, &vip as *const _ as *const libc::sockaddr, vip_len) })
        .map_err(sys("bind VIP"))?;

    let snd_seq: u32 = st.server_next;
    let rcv_seq: u32 = st.client_isn.wrapping_add(1);
    setsockopt(fd, tcp, libc::TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE)
        .map_err(sys("select send queue"))?;
    setsockopt(fd, tcp, libc::TCP_QUEUE_SEQ, &snd_seq).map_err(sys("send queue seq"))?;
    setsockopt(fd, tcp, libc::TCP_REPAIR_QUEUE, &TCP_RECV_QUEUE)
        .map_err(sys("select recv queue"))?;
    setsockopt(fd, tcp, libc::TCP_QUEUE_SEQ, &rcv_seq).map_err(sys("recv queue seq"))?;

    // The MSS must be known at connect: connect computes the send MSS
    // (mss_cache) from the clamp, and TCP_REPAIR_OPTIONS' MSS, set once
    // ESTABLISHED, only moves the clamp. Without this the socket sends
    // 524-byte segments (the 536 default less timestamps) for its lifetime.
    let mss = libc::c_int::from(st.mss);
    setsockopt(fd, tcp, libc::TCP_MAXSEG, &mss).map_err(sys("TCP_MAXSEG"))?;

    let (peer, peer_len) = sockaddr(&st.client());
    // SAFETY: `peer` is a valid sockaddr of `peer_len` bytes. In repair mode
    // connect(2) only moves the socket to ESTABLISHED; no SYN leaves.
    check(unsafe { libc::connect(fd, &peer as *const _ as *const libc::sockaddr, peer_len) })
        .map_err(sys("connect (repair)"))?;

    let mut opts = Vec::with_capacity(4);
    opts.push(TcpRepairOpt {
        opt_code: TCPOPT_MSS,
        opt_val: u32::from(st.mss),
    });
    if let Some(ws) = st.window_scale {
        // snd_wscale (the client's shift) in the low half, rcv_wscale (ours) high.
        opts.push(TcpRepairOpt {
            opt_code: TCPOPT_WINDOW,
            opt_val: u32::from(ws.client) | (u32::from(ws.server) << 16),
        });
    }
    if st.sack_permitted {
        opts.push(TcpRepairOpt {
            opt_code: TCPOPT_SACK_PERM,
            opt_val: 0,
        });
    }
    if st.timestamps.is_some() {
        opts.push(TcpRepairOpt {
            opt_code: TCPOPT_TIMESTAMP,
            opt_val: 0,
        });
    }
    // SAFETY: `opts` is a contiguous array of repr(C) tcp_repair_opt.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            tcp,
            libc::TCP_REPAIR_OPTIONS,
            opts.as_ptr() as *const libc::c_void,
            (opts.len() * size_of::<TcpRepairOpt>()) as libc::socklen_t,
        )
    };
    check(rc).map_err(sys("TCP_REPAIR_OPTIONS"))?;

    if let Some(ts) = st.timestamps {
        let ts: u32 = ts.next_val;
        setsockopt(fd, tcp, libc::TCP_TIMESTAMP, &ts).map_err(sys("TCP_TIMESTAMP"))?;
    }

    // The receive queue is still selected: writes land there, as if received.
    for chunk in request.chunks(RCVQ_CHUNK) {
        let mut off = 0;
        while off < chunk.len() {
            // SAFETY: the pointer/length pair stays inside `chunk`.
            let n = unsafe {
                libc::send(
                    fd,
                    chunk[off..].as_ptr() as *const libc::c_void,
                    chunk.len() - off,
                    libc::MSG_NOSIGNAL,
                )
            };
            if n <= 0 {
                let err = if n == 0 {
                    io::Error::new(io::ErrorKind::WriteZero, "receive queue refused bytes")
                } else {
                    io::Error::last_os_error()
                };
                return Err(sys("request into receive queue")(err));
            }
            off += n as usize;
        }
    }

    let rcv_nxt = rcv_seq.wrapping_add(request.len() as u32);
    if rcv_nxt != st.client_next {
        return Err(AdoptError::InvalidState(
            "request length disagrees with client_next",
        ));
    }
    let snd_wnd = st.client_window;
    let win = TcpRepairWindow {
        snd_wl1: rcv_nxt,
        snd_wnd,
        max_window: snd_wnd,
        rcv_wnd: st.server_window,
        rcv_wup: rcv_nxt,
    };
    setsockopt(fd, tcp, libc::TCP_REPAIR_WINDOW, &win).map_err(sys("TCP_REPAIR_WINDOW"))?;

    setsockopt(fd, tcp, libc::TCP_REPAIR, &TCP_REPAIR_OFF).map_err(sys("TCP_REPAIR off"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_proto::{Endpoints, Timestamps, WindowScale};

    fn state() -> TcpState {
        TcpState {
            endpoints: Endpoints::new(
                "198.18.0.101:40000".parse().unwrap(),
                "198.18.0.10:80".parse().unwrap(),
            )
            .unwrap(),
            client_isn: 0xffff_fff0,
            client_next: 0xffff_fff0u32.wrapping_add(19),
            server_isn: 0x8000_0001,
            server_next: 0x8000_0002,
            client_window: 502 << 7,
            server_window: 65535,
            mss: 1460,
            window_scale: Some(WindowScale {
                client: 7,
                server: 7,
            }),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                recent: 1,
                next_val: 0xdead_beef,
            }),
        }
    }

    #[test]
    fn validate_rejects_what_the_kernel_would() {
        assert!(validate(&state()).is_ok());
        let mut s = state();
        s.window_scale = Some(WindowScale {
            client: 15,
            server: 0,
        });
        assert!(matches!(validate(&s), Err(AdoptError::InvalidState(_))));
        let mut s = state();
        s.mss = 10;
        assert!(validate(&s).is_err());
        let mut s = state();
        s.endpoints = Endpoints::new(
            "0.0.0.0:4000".parse().unwrap(),
            "198.18.0.10:80".parse().unwrap(),
        )
        .unwrap();
        assert!(validate(&s).is_err());
        let mut s = state();
        s.window_scale = None;
        s.client_window = 1 << 20;
        assert!(validate(&s).is_err(), "a scaled window without scaling");
    }

    #[test]
    fn ipv6_states_validate_except_mapped_and_link_local_addresses() {
        let v6 = |client: &str, vip: &str| {
            let mut s = state();
            s.endpoints = Endpoints::new(client.parse().unwrap(), vip.parse().unwrap()).unwrap();
            validate(&s)
        };
        assert!(v6("[2001:2::101]:40000", "[2001:2::10]:80").is_ok());
        for (client, vip) in [
            ("[::ffff:198.18.0.101]:40000", "[2001:2::10]:80"),
            ("[2001:2::101]:40000", "[::ffff:198.18.0.10]:80"),
            ("[fe80::1]:40000", "[2001:2::10]:80"),
            ("[2001:2::101]:40000", "[fe80::10]:80"),
            ("[::1]:40000", "[2001:2::10]:80"),
            ("[ff02::1]:40000", "[2001:2::10]:80"),
        ] {
            assert!(
                matches!(v6(client, vip), Err(AdoptError::InvalidState(_))),
                "{client} → {vip}"
            );
        }
    }
}
