//! Socket-destroy notifications from the kernel (`NETLINK_SOCK_DIAG`,
//! multicast groups `SKNLGRP_INET_TCP_DESTROY` and `SKNLGRP_INET6_TCP_DESTROY`).
//!
//! In handover mode the agent gives the adopted socket away and keeps no
//! descriptor of it (a kept copy would hold the socket open and swallow the
//! server's FIN). To still send THOP_CLOSE when the connection ends, it
//! listens for the kernel's broadcast that a TCP socket of this network
//! namespace was freed — after the FIN exchange, or a reset — and matches it
//! by the socket cookie (`SO_COOKIE`) it read at adoption. Joining the groups
//! needs `CAP_NET_ADMIN`, which the agent has for `TCP_REPAIR` anyway.
//!
//! The notification carries an `inet_diag_msg` (`linux/inet_diag.h`):
//! family, state, timer, retrans (1 byte each), then the socket id — ports
//! (2 × 2), addresses (2 × 16), interface (4), cookie (2 × 4) — then expiry,
//! queues, uid and inode. Only the cookie is read.
//!
//! The same netlink family ends one socket on request ([`destroy`]): the
//! stale holder of a 4-tuple the agent must adopt.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_HDRLEN: usize = 16;
/// Offset of the cookie in `inet_diag_msg`.
const COOKIE_OFFSET: usize = 4 + 4 + 32 + 4;
/// Netlink receive buffer: a burst of closes must not overflow it.
const RCVBUF: libc::c_int = 8 << 20;

/// A subscription to TCP socket-destroy notifications.
pub struct DestroyWatch {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// What one read of the subscription found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// Cookies of TCP sockets that were freed.
    pub cookies: Vec<u64>,
    /// Notifications were lost (receive buffer overflowed): the caller must
    /// reconcile what it tracks some other way.
    pub overflowed: bool,
}

impl DestroyWatch {
    /// Subscribes (needs `CAP_NET_ADMIN`).
    pub fn open() -> io::Result<DestroyWatch> {
        // SAFETY: socket(2); checked and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor of ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain old data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups =
            (1 << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (SKNLGRP_INET6_TCP_DESTROY - 1));
        // SAFETY: a valid sockaddr_nl of its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: an int option from a live int.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&RCVBUF as *const libc::c_int).cast(),
                    4,
                )
            };
            if rc == 0 {
                break;
            }
        }
        Ok(DestroyWatch {
            fd,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The descriptor to poll for readability.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every waiting notification.
    pub fn read(&mut self) -> Destroyed {
        let mut out = Destroyed::default();
        loop {
            // SAFETY: recv into our live buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::ENOBUFS) => {
                        out.overflowed = true;
                        continue;
                    }
                    Some(libc::EINTR) => continue,
                    _ => return out,
                }
            }
            parse(&self.buf[..n as usize], &mut out.cookies);
        }
    }
}

/// `SOCK_DESTROY` (`linux/sock_diag.h`).
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
/// `inet_diag_req_v2`: family, protocol, ext, pad (1 byte each), states (4),
/// then the socket id (48).
const REQ_LEN: usize = 4 + 4 + 48;
/// `TCP_LISTEN` in `inet_diag_msg.idiag_state`.
const TCP_LISTEN: u8 = 10;
/// `INET_DIAG_NOCOOKIE`.
const NO_COOKIE: [u8; 8] = [0xff; 8];

/// Ends the TCP socket of this network namespace whose local end is `local`
/// and whose peer is `remote`, whatever its state (`SOCK_DESTROY`, the
/// kernel's `ss -K`; needs `CONFIG_INET_DIAG_DESTROY` and `CAP_NET_ADMIN`).
/// A TIME_WAIT entry is simply removed; a full socket is aborted, which
/// sends a reset carrying its own, old sequence numbers. IPv4 and IPv6
/// (`AF_INET6` requests, the addresses in all 16 bytes) alike.
///
/// The kernel finds the socket the way it finds the one an arriving segment
/// belongs to, so with no connection on the 4-tuple it would find a
/// listener on `local` and end that. The socket is therefore looked up
/// first (`SOCK_DIAG_BY_FAMILY`): a listener is left alone, and the
/// destroy names the socket found by its cookie, so it cannot hit another
/// one that took the 4-tuple in between.
///
/// Returns false when no such connection exists. The agent uses it for a
/// 4-tuple it must adopt: the switch completed a new handshake with the
/// client on that 4-tuple, so any socket still holding it here belongs to a
/// connection the client has finished with (one whose last segments were
/// lost, typically), exactly what a SYN to a TIME_WAIT socket retires.
pub fn destroy(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> io::Result<bool> {
    let Some(found) = lookup(local, remote)? else {
        return Ok(false);
    };
    if found.state == TCP_LISTEN {
        return Ok(false);
    }
    let reply = request(SOCK_DESTROY, NLM_F_ACK, local, remote, found.cookie)?;
    match ack_errno(&reply)? {
        0 => Ok(true),
        // Gone, or the 4-tuple now belongs to another socket: nothing ended.
        libc::ENOENT | libc::ESTALE => Ok(false),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// What `SOCK_DIAG_BY_FAMILY` says about one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// `idiag_state` (TCP_ESTABLISHED 1 … TCP_LISTEN 10, TCP_TIME_WAIT 6).
    pub state: u8,
    /// The socket's cookie, as the kernel's `idiag_cookie` bytes.
    pub cookie: [u8; 8],
}

/// Looks up the TCP socket the kernel would deliver a segment from `remote`
/// to `local` to: the connection of that 4-tuple (TIME_WAIT included), else
/// a listener on `local`; `None` when neither exists.
pub fn lookup(
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> io::Result<Option<Found>> {
    let reply = request(SOCK_DIAG_BY_FAMILY, 0, local, remote, NO_COOKIE)?;
    if reply.len() >= NLMSG_HDRLEN + 4 && u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
        return match ack_errno(&reply)? {
            libc::ENOENT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    let body = reply.get(NLMSG_HDRLEN..).unwrap_or_default();
    if u16::from_ne_bytes([reply[4], reply[5]]) != SOCK_DIAG_BY_FAMILY
        || body.len() < COOKIE_OFFSET + 8
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SOCK_DIAG_BY_FAMILY: unexpected answer",
        ));
    }
    let mut cookie = [0u8; 8];
    cookie.copy_from_slice(&body[COOKIE_OFFSET..COOKIE_OFFSET + 8]);
    Ok(Some(Found {
        state: body[1],
        cookie,
    }))
}

/// The errno of a netlink acknowledgment (0: success).
fn ack_errno(d: &[u8]) -> io::Result<i32> {
    if d.len() < NLMSG_HDRLEN + 4 || u16::from_ne_bytes([d[4], d[5]]) != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sock_diag: no netlink acknowledgment",
        ));
    }
    Ok(-i32::from_ne_bytes([d[16], d[17], d[18], d[19]]))
}

/// Sends one `inet_diag_req_v2` about the TCP 4-tuple (`local` is the
/// socket's own end) and returns the kernel's first answer.
fn request(
    ty: u16,
    flags: u16,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    cookie: [u8; 8],
) -> io::Result<Vec<u8>> {
    use std::net::SocketAddr;
    let family = match (local, remote) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => libc::AF_INET,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => libc::AF_INET6,
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    let addr = |a: &SocketAddr| -> [u8; 16] {
        match a {
            SocketAddr::V4(v) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v.ip().octets());
                b
            }
            SocketAddr::V6(v) => v.ip().octets(),
        }
    };
    let mut m = [0u8; NLMSG_HDRLEN + REQ_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&ty.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let r = &mut m[NLMSG_HDRLEN..];
    r[0] = family as u8;
    r[1] = libc::IPPROTO_TCP as u8;
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    let id = &mut r[8..];
    // Ports in network order; `src` is the socket's own end.
    id[0..2].copy_from_slice(&local.port().to_be_bytes());
    id[2..4].copy_from_slice(&remote.port().to_be_bytes());
    id[4..20].copy_from_slice(&addr(&local));
    id[20..36].copy_from_slice(&addr(&remote));
    // Interface 0 (any).
    id[40..48].copy_from_slice(&cookie);

    // SAFETY: socket(2); checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: send from a live buffer of its length (to the kernel: the
    // socket's default destination).
    let n = unsafe { libc::send(fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: recv into a live buffer of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf[..n as usize].to_vec())
}

/// Appends the cookies of the SOCK_DIAG_BY_FAMILY messages in one datagram.
fn parse(mut d: &[u8], cookies: &mut Vec<u64>) {
    while d.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        let ty = u16::from_ne_bytes([d[4], d[5]]);
        if len < NLMSG_HDRLEN || len > d.len() {
            return;
        }
        let body = &d[NLMSG_HDRLEN..len];
        if ty == SOCK_DIAG_BY_FAMILY && body.len() >= COOKIE_OFFSET + 8 {
            let lo = u32::from_ne_bytes(
                body[COOKIE_OFFSET..COOKIE_OFFSET + 4]
                    .try_into()
                    .unwrap_or([0; 4]),
            );
            let hi = u32::from_ne_bytes(
                body[COOKIE_OFFSET + 4..COOKIE_OFFSET + 8]
                    .try_into()
                    .unwrap_or([0; 4]),
            );
            cookies.push(u64::from(lo) | (u64::from(hi) << 32));
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        if next >= d.len() {
            return;
        }
        d = &d[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(cookie: u64) -> Vec<u8> {
        let body_len = 72;
        let mut m = vec![0u8; NLMSG_HDRLEN + body_len];
        m[..4].copy_from_slice(&((NLMSG_HDRLEN + body_len) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let c = NLMSG_HDRLEN + COOKIE_OFFSET;
        m[c..c + 4].copy_from_slice(&(cookie as u32).to_ne_bytes());
        m[c + 4..c + 8].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        m
    }

    #[test]
    fn parses_one_and_several_messages_and_ignores_garbage() {
        let mut v = Vec::new();
        parse(&msg(0x1_0000_0002), &mut v);
        assert_eq!(v, vec![0x1_0000_0002]);
        let mut two = msg(7);
        two.extend(msg(9));
        v.clear();
        parse(&two, &mut v);
        assert_eq!(v, vec![7, 9]);
        for cut in 0..two.len() {
            parse(&two[..cut], &mut v);
        }
        let mut bad = msg(1);
        bad[..4].copy_from_slice(&3u32.to_ne_bytes());
        v.clear();
        parse(&bad, &mut v);
        assert!(v.is_empty());
    }

    /// The kernel really reports a closed socket by the cookie SO_COOKIE gave
    /// (needs CAP_NET_ADMIN; the suite runs as root).
    #[test]
    fn a_closed_socket_is_reported_by_its_cookie() {
        closed_socket_reported("127.0.0.1:0");
    }

    /// The same for an IPv6 socket (group SKNLGRP_INET6_TCP_DESTROY).
    #[test]
    fn a_closed_ipv6_socket_is_reported_by_its_cookie() {
        closed_socket_reported("[::1]:0");
    }

    /// SOCK_DESTROY ends the IPv6 socket holding a 4-tuple, and reports a
    /// 4-tuple nobody holds as absent.
    #[test]
    fn destroy_ends_an_ipv6_socket_by_its_4_tuple() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("[::1]:0").expect("IPv6 loopback");
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut a, _) = l.accept().unwrap();
        let (local, peer) = (a.local_addr().unwrap(), a.peer_addr().unwrap());
        assert!(local.is_ipv6() && peer.is_ipv6());
        assert!(destroy(local, peer).expect("SOCK_DESTROY (needs CAP_NET_ADMIN)"));
        let mut b = [0u8; 1];
        let e = a.read(&mut b).expect_err("the destroyed socket fails");
        assert_eq!(e.raw_os_error(), Some(libc::ECONNABORTED), "{e}");
        drop(a);
        let v4: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(destroy(local, v4).is_err(), "families differ");
    }

    /// A 4-tuple nobody holds on a port with a listener: the kernel's
    /// lookup finds the listener, which must survive.
    #[test]
    fn destroy_leaves_a_listener_alone() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let l = std::net::TcpListener::bind(bind).unwrap();
            let local = l.local_addr().unwrap();
            let remote = std::net::SocketAddr::new(local.ip(), 9);
            let found = lookup(local, remote).unwrap().expect("the listener");
            assert_eq!(found.state, TCP_LISTEN);
            assert!(!destroy(local, remote).unwrap(), "{bind}");
            let c = std::net::TcpStream::connect(local).expect("still listening");
            let (a, _) = l.accept().unwrap();
            // With the connection there, it is what is found and ended.
            let (al, ap) = (a.local_addr().unwrap(), a.peer_addr().unwrap());
            assert_eq!(lookup(al, ap).unwrap().map(|f| f.state), Some(1));
            assert!(destroy(al, ap).unwrap());
            drop(l);
            assert_eq!(lookup(al, ap).unwrap(), None, "{bind}");
            drop((a, c));
        }
    }

    fn closed_socket_reported(bind: &str) {
        let mut w = DestroyWatch::open().expect("sock_diag subscription (needs CAP_NET_ADMIN)");
        let l = std::net::TcpListener::bind(bind).unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        let cookie = crate::handover::socket_cookie(a.as_raw_fd()).unwrap();
        drop(a);
        drop(c);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline && !seen.contains(&cookie) {
            seen.extend(w.read().cookies);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(seen.contains(&cookie), "cookie {cookie} not in {seen:?}");
    }
}
