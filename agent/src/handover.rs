//! Handover mode: adopted sockets are given to the web server process itself.
//!
//! The server runs unmodified with `libbaton_handover.so` preloaded (crate
//! `agent/preload`), which turns its listener on the VIP into an `AF_UNIX`
//! datagram socket and announces it here (HELLO). For each adopted
//! connection the agent sends a CONN datagram carrying the descriptor
//! (`SCM_RIGHTS`); the server's `accept` returns it and the library answers
//! TAKEN. Only then does the agent acknowledge the handoff to the switch, so
//! "acknowledged" still means "a server has the connection":
//!
//! - no server registered for the VIP, or every server's backlog full
//!   (`limits.backlog` offered and not yet accepted) → NACK at once;
//! - a server that does not accept within `accept_timeout_ms` (stopped,
//!   hung, restarting) → the agent puts the socket back into repair mode
//!   through the descriptor it still holds (nothing more reaches the client,
//!   the server's later `read` fails, its close is silent) and NACKs; the
//!   switch re-dispatches;
//! - a server that died with connections queued → its socket's datagrams are
//!   dropped by the kernel, the agent's copies keep the connections alive
//!   until they expire as above.
//!
//! After TAKEN the agent closes its copy: the server's `close` is then the
//! socket's real close (FIN), and the agent learns of the end from the
//! kernel's socket-destroy notification ([`crate::sockdiag`]), matched by the
//! socket cookie, to send THOP_CLOSE.
//!
//! A datagram socket's queue holds at most `net.unix.max_dgram_qlen` messages
//! (10 on a stock kernel), so the agent keeps the CONNs beyond that window in
//! its own per-server queue and sends the next one each time a TAKEN says
//! the server read one: the window is the kernel's, the backlog is ours.
//!
//! The message layout is `handoff_proto::handover`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use handoff_proto::handover::{Msg, LISTENER_PREFIX, MSG_LEN};

/// An abstract unix name (without the leading NUL) of a converted listener.
type Name = Vec<u8>;

/// One converted listener of a server process.
#[derive(Debug)]
struct Server {
    name: Name,
    vip: SocketAddr,
    pid: u32,
    /// CONNs in its socket's queue: sent and not yet TAKEN (cancelled ones
    /// included: they stay queued until the server reads them).
    in_flight: u32,
    /// Offered connections waiting for room in that queue, oldest first.
    waiting: VecDeque<u64>,
    /// Failed with something other than a full queue: to be removed.
    gone: bool,
}

/// A connection offered to a server, waiting for TAKEN.
#[derive(Debug)]
struct Pending {
    /// The agent's copy of the socket (closed on TAKEN, silenced on expiry).
    fd: OwnedFd,
    server: Name,
    since: Instant,
    /// Its CONN is in the server's queue (else it waits in `Server::waiting`).
    sent: bool,
}

/// Why a connection could not be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No server has announced a listener for this VIP:port.
    NoServer,
    /// Every server for it has a full queue.
    Full,
}

impl Refusal {
    /// Label for counters.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NoServer => "no_server",
            Refusal::Full => "queue_full",
        }
    }
}

/// What [`Handover::receive`] and [`Handover::expire`] report.
#[derive(Debug, PartialEq, Eq)]
pub enum HandoverEvent {
    /// A server accepted connection `token` as its descriptor `fd` (process `pid`).
    Taken {
        /// The token [`Handover::offer`] returned.
        token: u64,
        /// The accepting process.
        pid: u32,
        /// Its descriptor for the connection.
        fd: i32,
    },
    /// Connection `token` was not accepted in time; it has been silenced.
    Expired {
        /// The token [`Handover::offer`] returned.
        token: u64,
    },
    /// A listener (re)announced itself.
    Registered {
        /// Its VIP:port.
        vip: SocketAddr,
        /// The process that converted it.
        pid: u32,
    },
    /// A datagram that is not a valid message from a listener.
    Malformed(&'static str),
}

/// The agent's handover socket and the servers known to it.
pub struct Handover {
    sock: OwnedFd,
    path: PathBuf,
    servers: Vec<Server>,
    pending: HashMap<u64, Pending>,
    next: usize,
    accept_timeout: Duration,
    max_outstanding: u32,
    /// CONNs a server's socket queue can hold (net.unix.max_dgram_qlen).
    window: u32,
    /// Tokens of connections whose server vanished: reported by `expire`.
    failed: Vec<u64>,
    token_key: u64,
    token_seq: u64,
}

fn abstract_addr(name: &[u8]) -> Option<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data.
    let mut a: libc::sockaddr_un = unsafe { zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if name.len() + 1 > a.sun_path.len() {
        return None;
    }
    for (i, b) in name.iter().enumerate() {
        a.sun_path[i + 1] = *b as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + name.len();
    Some((a, len as libc::socklen_t))
}

fn cvt(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

impl Handover {
    /// Binds the agent's socket at `path` (a stale socket file there is
    /// replaced), mode `0o660` with `group` if given, else `0o600`.
    pub fn bind(
        path: &Path,
        group: Option<u32>,
        accept_timeout: Duration,
        max_outstanding: u32,
    ) -> io::Result<Handover> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(path)?
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(_) => {}
        }
        // SAFETY: socket(2); the result is checked and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor of ours.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_un is plain old data.
        let mut a: libc::sockaddr_un = unsafe { zeroed() };
        a.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() >= a.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "handover.socket: path too long",
            ));
        }
        for (i, b) in bytes.iter().enumerate() {
            a.sun_path[i] = *b as libc::c_char;
        }
        let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
        // SAFETY: a valid sockaddr_un of `len` bytes.
        let rc = unsafe { libc::bind(fd, (&a as *const libc::sockaddr_un).cast(), len as _) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        // Many CONNs may wait while a server is busy; the kernel's datagram
        // queue limit (net.unix.max_dgram_qlen) is what bounds each server.
        let mut token_key = [0u8; 8];
        // SAFETY: getrandom into a live buffer.
        let _ = unsafe { libc::getrandom(token_key.as_mut_ptr().cast(), 8, 0) };
        Ok(Handover {
            sock,
            path: path.to_path_buf(),
            servers: Vec::new(),
            pending: HashMap::new(),
            next: 0,
            accept_timeout,
            max_outstanding: max_outstanding.max(1),
            window: dgram_qlen(),
            failed: Vec::new(),
            token_key: u64::from_le_bytes(token_key) | 1,
            token_seq: 0,
        })
    }

    /// The descriptor to poll for readability.
    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Listeners known for `vip`.
    pub fn servers_for(&self, vip: SocketAddr) -> usize {
        let rank = self.best_rank(vip);
        self.servers
            .iter()
            .filter(|s| rank > 0 && serves(s.vip, vip) == rank && !s.gone)
            .count()
    }

    /// How well the best live listener matches `vip` (see [`serves`]).
    fn best_rank(&self, vip: SocketAddr) -> u8 {
        self.servers
            .iter()
            .filter(|s| !s.gone)
            .map(|s| serves(s.vip, vip))
            .max()
            .unwrap_or(0)
    }

    /// Every known listener.
    pub fn servers(&self) -> usize {
        self.servers.len()
    }

    /// Connections offered and not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// After a restart: asks every converted listener in this network
    /// namespace (found in `/proc/net/unix`) to announce itself again.
    pub fn discover(&mut self) -> usize {
        let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
            return 0;
        };
        let mut n = 0;
        for name in listener_names(&text) {
            if self.send(&name, Msg::Ping, None).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Offers an adopted socket to a server of `vip`; returns its token.
    /// On success the socket stays held here until TAKEN or expiry; on
    /// refusal it is handed back to the caller.
    pub fn offer(
        &mut self,
        vip: SocketAddr,
        stream: OwnedFd,
        now: Instant,
    ) -> Result<u64, (Refusal, OwnedFd)> {
        let count = self.servers.len();
        let mut saw_server = false;
        let mut chosen = None;
        // Listeners on the VIP itself take precedence over wildcard ones,
        // as the kernel's lookup of a listening socket does.
        let rank = self.best_rank(vip);
        for i in 0..count {
            let idx = (self.next + i) % count;
            let s = &self.servers[idx];
            if rank == 0 || serves(s.vip, vip) != rank || s.gone {
                continue;
            }
            saw_server = true;
            if s.in_flight + s.waiting.len() as u32 >= self.max_outstanding {
                continue;
            }
            chosen = Some(idx);
            break;
        }
        let Some(idx) = chosen else {
            let why = if saw_server {
                Refusal::Full
            } else {
                Refusal::NoServer
            };
            return Err((why, stream));
        };
        self.next = idx + 1;
        self.token_seq += 1;
        // Unguessable by a local process that did not see the CONN.
        let token = self.token_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.token_key;
        let name = self.servers[idx].name.clone();
        self.pending.insert(
            token,
            Pending {
                fd: stream,
                server: name,
                since: now,
                sent: false,
            },
        );
        self.servers[idx].waiting.push_back(token);
        self.pump(idx);
        Ok(token)
    }

    /// Sends waiting CONNs of server `idx` while its socket queue has room.
    fn pump(&mut self, idx: usize) {
        while self.servers[idx].in_flight < self.window && !self.servers[idx].gone {
            let Some(token) = self.servers[idx].waiting.pop_front() else {
                return;
            };
            let Some(p) = self.pending.get(&token) else {
                continue;
            };
            let fd = p.fd.as_raw_fd();
            let name = self.servers[idx].name.clone();
            match self.send(&name, Msg::Conn { token }, Some(fd)) {
                Ok(()) => {
                    self.servers[idx].in_flight += 1;
                    if let Some(p) = self.pending.get_mut(&token) {
                        p.sent = true;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    // Fuller than we counted (a PING, or a smaller sysctl
                    // when the server started): retried on the loop's next
                    // turn ([`Handover::expire`]) or the next TAKEN.
                    self.servers[idx].waiting.push_front(token);
                    return;
                }
                Err(e) => {
                    let s = &mut self.servers[idx];
                    tracing::info!(pid = s.pid, vip = %s.vip, error = %e, "handover listener gone");
                    s.gone = true;
                    let vip = s.vip;
                    let mut orphans: Vec<u64> = vec![token];
                    orphans.extend(s.waiting.drain(..));
                    self.requeue(vip, orphans);
                    return;
                }
            }
        }
    }

    /// Offers the connections of a listener that vanished (its server
    /// restarted) to another listener of the same VIP; what finds no room
    /// is refused on the loop's next turn, and the switch re-dispatches it.
    fn requeue(&mut self, vip: SocketAddr, tokens: Vec<u64>) {
        for token in tokens {
            let target = self.servers.iter().position(|s| {
                s.vip == vip
                    && !s.gone
                    && s.in_flight + (s.waiting.len() as u32) < self.max_outstanding
            });
            match (target, self.pending.get_mut(&token)) {
                (Some(i), Some(p)) => {
                    p.server = self.servers[i].name.clone();
                    p.sent = false;
                    self.servers[i].waiting.push_back(token);
                    self.pump(i);
                }
                _ => self.failed.push(token),
            }
        }
    }

    /// Gives up on `token` (the switch aborted the handoff, or it expired):
    /// the socket is silenced through the agent's copy. Returns whether it
    /// was pending.
    pub fn cancel(&mut self, token: u64) -> bool {
        let Some(p) = self.pending.remove(&token) else {
            return false;
        };
        if !p.sent {
            if let Some(s) = self.servers.iter_mut().find(|s| s.name == p.server) {
                s.waiting.retain(|t| *t != token);
            }
        }
        // A sent CONN stays in the server's queue (counted in flight) until
        // the server reads it and finds the socket silenced.
        crate::relay::close_silently(p.fd.as_raw_fd());
        true
    }

    /// Reads every waiting datagram.
    pub fn receive(&mut self, out: &mut Vec<HandoverEvent>) {
        loop {
            let mut buf = [0u8; MSG_LEN + 8];
            // SAFETY: plain old data.
            let mut from: libc::sockaddr_un = unsafe { zeroed() };
            let mut flen = size_of::<libc::sockaddr_un>() as libc::socklen_t;
            // SAFETY: recvfrom into live buffers of the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_un).cast(),
                    &mut flen,
                )
            };
            let Ok(n) = cvt(n) else {
                return;
            };
            let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
            let name: Name = if (flen as usize) > base + 1 && from.sun_path[0] == 0 {
                from.sun_path[1..flen as usize - base]
                    .iter()
                    .map(|&c| c as u8)
                    .collect()
            } else {
                Vec::new()
            };
            if !name.starts_with(LISTENER_PREFIX.as_bytes()) {
                out.push(HandoverEvent::Malformed("foreign_sender"));
                continue;
            }
            match Msg::decode(&buf[..n]) {
                Ok(Msg::Hello { pid, listener }) => {
                    match self.servers.iter_mut().find(|s| s.name == name) {
                        Some(s) => {
                            s.vip = listener;
                            s.pid = pid;
                        }
                        None => self.servers.push(Server {
                            name,
                            vip: listener,
                            pid,
                            in_flight: 0,
                            waiting: VecDeque::new(),
                            gone: false,
                        }),
                    }
                    out.push(HandoverEvent::Registered { vip: listener, pid });
                }
                Ok(Msg::Taken { token, pid, fd }) => {
                    // One CONN left that listener's queue: room for the next.
                    let idx = self.servers.iter().position(|s| s.name == name);
                    if let Some(i) = idx {
                        let s = &mut self.servers[i];
                        s.in_flight = s.in_flight.saturating_sub(1);
                    }
                    // The token must come back from the listener it went to.
                    match self.pending.get(&token) {
                        Some(p) if p.server == name => {
                            // Dropping our copy: the server's descriptor is
                            // now the socket's only one.
                            self.pending.remove(&token);
                            out.push(HandoverEvent::Taken { token, pid, fd });
                        }
                        // Expired or cancelled before the server read it.
                        _ => out.push(HandoverEvent::Malformed("late_or_unknown_token")),
                    }
                    if let Some(i) = idx {
                        self.pump(i);
                    }
                }
                Ok(_) => out.push(HandoverEvent::Malformed("unexpected_kind")),
                Err(e) => out.push(HandoverEvent::Malformed(e.label())),
            }
        }
    }

    /// Silences and reports connections not taken within the timeout.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<HandoverEvent>) {
        for token in std::mem::take(&mut self.failed) {
            if self.cancel(token) {
                out.push(HandoverEvent::Expired { token });
            }
        }
        self.servers.retain(|s| !s.gone);
        for i in 0..self.servers.len() {
            if !self.servers[i].waiting.is_empty() {
                self.pump(i);
            }
        }
        let timeout = self.accept_timeout;
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= timeout)
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            if self.cancel(token) {
                out.push(HandoverEvent::Expired { token });
            }
        }
    }

    /// The earliest expiry, for the loop's timeout.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.since + self.accept_timeout)
            .min()
    }

    fn send(&self, name: &[u8], msg: Msg, fd: Option<RawFd>) -> io::Result<()> {
        let Some((addr, alen)) = abstract_addr(name) else {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        };
        let b = msg.encode();
        let mut iov = libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        };
        let mut cmsg = [0u64; 4];
        // SAFETY: plain old data.
        let mut m: libc::msghdr = unsafe { zeroed() };
        m.msg_name = (&addr as *const libc::sockaddr_un) as *mut libc::c_void;
        m.msg_namelen = alen;
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        if let Some(fd) = fd {
            // SAFETY: the control buffer has room for one SCM_RIGHTS header
            // and one int (CMSG_SPACE(4) = 24 <= 32 bytes), aligned to u64.
            unsafe {
                m.msg_control = cmsg.as_mut_ptr().cast();
                m.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
                let c = libc::CMSG_FIRSTHDR(&m);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
            }
        }
        // SAFETY: m points at live buffers for the duration of the call.
        let n = unsafe {
            libc::sendmsg(
                self.sock.as_raw_fd(),
                &m,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        cvt(n).map(|_| ())
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a server listening on `listener` takes connections to `vip`:
/// 2 when it listens on that very address and port, 1 when it listens on
/// the wildcard address of the VIP's family (`0.0.0.0:80` for an IPv4 VIP,
/// `[::]:80` for an IPv6 one) on that port, 0 otherwise.
///
/// A dual-stack `[::]` listener (`IPV6_V6ONLY` off) is not given IPv4
/// connections: the adopted socket of an IPv4 connection is an `AF_INET`
/// socket, not the IPv4-mapped `AF_INET6` one such a listener would accept,
/// and the library's announcement does not say whether a listener is
/// dual-stack. A server that serves an IPv4 VIP listens on an IPv4 address
/// (nginx: `listen 80;` beside `listen [::]:80;`).
pub fn serves(listener: SocketAddr, vip: SocketAddr) -> u8 {
    if listener.port() != vip.port() {
        return 0;
    }
    if listener.ip() == vip.ip() {
        return 2;
    }
    let wildcard = listener.ip().is_unspecified() && listener.is_ipv4() == vip.is_ipv4();
    u8::from(wildcard)
}

/// How many datagrams a unix socket of this network namespace queues
/// (`net.unix.max_dgram_qlen`, read when the agent starts).
fn dgram_qlen() -> u32 {
    std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(10)
        .clamp(1, 4096)
}

/// Abstract names of converted listeners in `/proc/net/unix` text.
fn listener_names(text: &str) -> Vec<Name> {
    let prefix = format!("@{LISTENER_PREFIX}");
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter(|p| p.starts_with(&prefix))
        .map(|p| p.as_bytes()[1..].to_vec())
        .collect()
}

/// The socket cookie (`SO_COOKIE`): the id the kernel's socket-destroy
/// notification carries.
pub fn socket_cookie(fd: RawFd) -> Option<u64> {
    let mut v: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: reads a u64 option into a live u64.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

/// Silences a socket now owned by another process (descriptor `fd` of `pid`):
/// takes a copy with `pidfd_getfd(2)` and puts it into repair mode, so
/// nothing more reaches the client. Used when the switch aborts a handoff
/// whose ACK it never saw after the server already accepted it.
pub fn silence_remote(pid: u32, fd: i32, cookie: Option<u64>) -> io::Result<()> {
    // SAFETY: pidfd_open(2) / pidfd_getfd(2) raw syscalls; results checked
    // and owned at once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        let copy = OwnedFd::from_raw_fd(copy as RawFd);
        // The server may have closed that descriptor already and reused its
        // number for another client's connection: only the socket adopted
        // for this one may be touched.
        if cookie.is_none() || socket_cookie(copy.as_raw_fd()) != cookie {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the server no longer holds that socket under this descriptor",
            ));
        }
        crate::relay::close_silently(copy.as_raw_fd());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_serve_their_address_or_their_family_s_wildcard() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let (v4, v6) = (a("198.18.0.10:80"), a("[2001:2::10]:80"));
        assert_eq!(serves(v4, v4), 2);
        assert_eq!(serves(v6, v6), 2);
        assert_eq!(serves(a("0.0.0.0:80"), v4), 1);
        assert_eq!(serves(a("[::]:80"), v6), 1);
        // Another family, port or address: no.
        assert_eq!(serves(a("[::]:80"), v4), 0);
        assert_eq!(serves(a("0.0.0.0:80"), v6), 0);
        assert_eq!(serves(a("[::]:81"), v6), 0);
        assert_eq!(serves(a("[2001:2::11]:80"), v6), 0);
        assert_eq!(serves(a("[::ffff:198.18.0.10]:80"), v4), 0);
    }

    /// A wildcard listener gets the VIP's connections only while no server
    /// listens on the VIP itself.
    #[test]
    fn an_exact_listener_is_preferred_over_a_wildcard_one() {
        let dir = std::env::temp_dir().join(format!("ho-rank-{}", std::process::id()));
        let mut h = Handover::bind(&dir.join("h.sock"), None, Duration::from_secs(1), 8).unwrap();
        let vip: SocketAddr = "[2001:2::10]:80".parse().unwrap();
        let server = |name: &str, vip: &str| Server {
            name: name.as_bytes().to_vec(),
            vip: vip.parse().unwrap(),
            pid: 1,
            in_flight: 0,
            waiting: VecDeque::new(),
            gone: false,
        };
        h.servers.push(server("baton-handover/1.3.0", "[::]:80"));
        h.servers.push(server("baton-handover/1.4.1", "0.0.0.0:80"));
        assert_eq!(h.servers_for(vip), 1);
        assert_eq!(h.best_rank(vip), 1);
        h.servers
            .push(server("baton-handover/1.5.2", "[2001:2::10]:80"));
        assert_eq!(h.servers_for(vip), 1);
        assert_eq!(h.best_rank(vip), 2);
        h.servers[2].gone = true;
        assert_eq!(h.best_rank(vip), 1);
        assert_eq!(h.servers_for("198.18.0.10:80".parse().unwrap()), 1);
        assert_eq!(h.servers_for("198.18.0.10:443".parse().unwrap()), 0);
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn finds_listener_names_in_proc_net_unix() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 123 @baton-handover/17.5.0\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 124 /run/other.sock\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 125\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 126 @baton-handover/18.6.1\n";
        assert_eq!(
            listener_names(text),
            vec![
                b"baton-handover/17.5.0".to_vec(),
                b"baton-handover/18.6.1".to_vec()
            ]
        );
    }
}
