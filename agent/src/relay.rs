//! Relay mode: every adopted connection is joined to a fresh connection to the
//! local, unmodified web server, and bytes move both ways with `splice(2)`
//! through one pipe per direction, never entering user space.
//!
//! One mio (epoll, edge-triggered) loop carries all connections; there is no
//! thread per connection. Pipes come from a pool and are held by a direction
//! only while bytes are in transit. Each connection has two tokens (client side,
//! upstream side); any event on either pumps both directions until every
//! splice would block, which is what edge-triggered readiness requires.
//!
//! End-of-stream semantics follow a transparent proxy:
//! - EOF from one side (a FIN) becomes `shutdown(SHUT_WR)` on the other once
//!   the pipe is drained: half-close is propagated, never collapsed;
//! - a reset or write error on one side becomes a reset (`SO_LINGER` 0 and
//!   close) on the other;
//! - the connection ends when both directions have seen EOF and drained, or
//!   on a reset, or when it stays idle past the configured limit.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// Requested pipe capacity per direction.
const PIPE_SIZE: usize = 256 * 1024;

/// First token used by relay connections; lower ones belong to the agent loop.
pub const TOKEN_BASE: usize = 64;

/// Why a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed; the client's FIN came first.
    ClientFin,
    /// Both sides closed; the server's FIN came first.
    ServerClose,
    /// The client reset the connection (propagated to the server).
    ClientReset,
    /// The server reset or failed (propagated to the client).
    ServerReset,
    /// Idle longer than the limit; both sides reset.
    IdleTimeout,
    /// The switch sent ABORT: the client socket was dropped silently.
    Aborted,
    /// The agent stopped before the connection finished.
    Shutdown,
}

/// What the relay reports to the agent loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The upstream connection is established: the handoff may be ACKed.
    Connected(ConnMeta),
    /// The upstream could not be reached: the adopted socket was dropped
    /// silently and the handoff must be NACKed.
    ConnectFailed(ConnMeta, String),
    /// A connection ended.
    Finished {
        /// Its identity.
        meta: ConnMeta,
        /// How it ended.
        end: End,
        /// Bytes moved client → server (request bytes from the CREATE included).
        from_client: u64,
        /// Bytes moved server → client.
        to_client: u64,
    },
}

/// Identity of a relayed connection, as the agent loop knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnMeta {
    /// The switch that handed it off (CLOSE goes there).
    pub switch: SocketAddr,
    /// Node id of that switch (THOP header `sender`).
    pub sender: u32,
    /// THOP connection id.
    pub conn_id: u64,
    /// The client.
    pub client: SocketAddr,
}

/// A non-blocking pipe holding bytes in transit for one direction.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    len: usize,
    cap: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds is a writable array of two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are fresh and ours.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe moves more per splice pair; pages are only used while
        // bytes are in transit. Refused (pipe-user-pages limits): keep the default.
        // SAFETY: F_SETPIPE_SZ / F_GETPIPE_SZ on our own pipe.
        let cap = unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int);
            libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        let cap = if cap > 0 { cap as usize } else { 65536 };
        Ok(Pipe { r, w, len: 0, cap })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between two descriptors we own; null offsets (streams).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Which side failed during a pump.
enum Fault {
    Src(io::Error),
    Dst(io::Error),
    /// No pipe could be made (descriptor limit): the agent fails the connection.
    Local(io::Error),
}

/// Empty pipes ready for reuse. A direction holds a pipe only while bytes
/// are in transit, so thousands of mostly idle connections need a handful of
/// pipes (two descriptors per connection instead of six, and no pipe pages
/// counted against `pipe-user-pages-soft` while idle).
pub(crate) struct PipePool {
    free: Vec<Pipe>,
    max_free: usize,
}

impl PipePool {
    fn new(max_free: usize) -> PipePool {
        PipePool {
            free: Vec::new(),
            max_free,
        }
    }

    fn get(&mut self) -> io::Result<Pipe> {
        match self.free.pop() {
            Some(p) => Ok(p),
            None => Pipe::new(),
        }
    }

    fn put(&mut self, p: Pipe) {
        if p.len == 0 && self.free.len() < self.max_free {
            self.free.push(p);
        }
    }
}

/// One direction: src → pipe → dst.
struct Dir {
    pipe: Option<Pipe>,
    eof: bool,
    shut: bool,
    bytes: u64,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            pipe: None,
            eof: false,
            shut: false,
            bytes: 0,
        }
    }

    /// Moves what can move without blocking; returns whether anything moved.
    fn pump(&mut self, src: RawFd, dst: RawFd, pool: &mut PipePool) -> Result<bool, Fault> {
        let mut any = false;
        loop {
            let mut progress = false;
            if !self.eof && self.pipe.is_none() {
                self.pipe = Some(pool.get().map_err(Fault::Local)?);
            }
            if let Some(p) = self.pipe.as_mut() {
                if !self.eof && p.len < p.cap {
                    match splice(src, p.w.as_raw_fd(), p.cap - p.len) {
                        Ok(0) => {
                            self.eof = true;
                            progress = true;
                        }
                        Ok(n) => {
                            p.len += n;
                            progress = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                        Err(e) => return Err(Fault::Src(e)),
                    }
                }
                if p.len > 0 {
                    match splice(p.r.as_raw_fd(), dst, p.len) {
                        Ok(n) => {
                            p.len -= n.min(p.len);
                            self.bytes += n as u64;
                            progress = n > 0;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                        Err(e) => return Err(Fault::Dst(e)),
                    }
                }
            }
            if !progress {
                break;
            }
            any = true;
        }
        if self.pipe.as_ref().is_some_and(|p| p.len == 0) {
            if let Some(p) = self.pipe.take() {
                pool.put(p);
            }
        }
        if self.eof && self.pipe.is_none() && !self.shut {
            // SAFETY: shutdown(2) on a socket we own; ENOTCONN after a peer
            // reset is harmless and surfaces on the next splice.
            unsafe { libc::shutdown(dst, libc::SHUT_WR) };
            self.shut = true;
            any = true;
        }
        Ok(any)
    }
}

/// Closes a socket with a reset (RFC 9293 §3.6: abortive close via SO_LINGER 0).
pub(crate) fn reset(fd: RawFd) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: lg is a live linger struct; the fd is ours and closed by the caller.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &lg as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Puts an adopted socket back into repair mode so that closing it sends
/// nothing: the switch still owns the client's view of the connection.
pub(crate) fn close_silently(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: on is a live c_int; failure only means the close is not silent.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_REPAIR,
            &on as *const _ as *const libc::c_void,
            4,
        )
    };
}

/// [`close_silently`] for benchmarks outside the crate (feature `testing`:
/// never in the release binary).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn close_silently_for_bench(fd: RawFd) {
    close_silently(fd)
}

struct Conn {
    meta: ConnMeta,
    client: TcpStream,
    upstream: TcpStream,
    connected: bool,
    c2u: Dir,
    u2c: Dir,
    first_fin: Option<End>,
    last_active: Instant,
}

/// All relayed connections of one agent loop.
pub struct Relay {
    conns: Vec<Option<Conn>>,
    /// Pipes not in use.
    pool: PipePool,
    /// (switch node, conn id) → slot, for ABORT.
    index: HashMap<(u32, u64), usize>,
    free: Vec<usize>,
    active: usize,
    idle_timeout: Duration,
}

impl Relay {
    /// An empty relay; connections idle longer than `idle_timeout` are reset.
    pub fn new(idle_timeout: Duration) -> Relay {
        Relay {
            conns: Vec::new(),
            index: HashMap::new(),
            pool: PipePool::new(256),
            free: Vec::new(),
            active: 0,
            idle_timeout,
        }
    }

    /// Connections currently relayed (or connecting upstream).
    pub fn active(&self) -> usize {
        self.active
    }

    /// Starts relaying an adopted connection: a non-blocking connect to
    /// `upstream` begins; [`RelayEvent::Connected`] or
    /// [`RelayEvent::ConnectFailed`] follows from [`Relay::handle`].
    pub fn add(
        &mut self,
        registry: &Registry,
        meta: ConnMeta,
        client: std::net::TcpStream,
        upstream: SocketAddr,
    ) -> io::Result<()> {
        client.set_nonblocking(true)?;
        // A relay forwards whatever arrived at once, as a proxy does: Nagle
        // would hold a short tail segment back until the peer's ACK.
        let _ = client.set_nodelay(true);
        let fd = client.as_raw_fd();
        let up = match TcpStream::connect(upstream) {
            Ok(s) => s,
            Err(e) => {
                close_silently(fd);
                return Err(e);
            }
        };
        let _ = up.set_nodelay(true);
        let (c2u, u2c) = (Dir::new(), Dir::new());
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut conn = Conn {
            meta,
            client: TcpStream::from_std(client),
            upstream: up,
            connected: false,
            c2u,
            u2c,
            first_fin: None,
            last_active: Instant::now(),
        };
        let rw = Interest::READABLE | Interest::WRITABLE;
        let reg = registry
            .register(&mut conn.client, Token(TOKEN_BASE + 2 * idx), rw)
            .and_then(|_| {
                registry.register(&mut conn.upstream, Token(TOKEN_BASE + 2 * idx + 1), rw)
            });
        if let Err(e) = reg {
            let _ = registry.deregister(&mut conn.client);
            close_silently(conn.client.as_raw_fd());
            self.free.push(idx);
            return Err(e);
        }
        self.index.insert((meta.sender, meta.conn_id), idx);
        self.conns[idx] = Some(conn);
        self.active += 1;
        Ok(())
    }

    /// True when `token` belongs to the relay.
    pub fn owns(token: Token) -> bool {
        token.0 >= TOKEN_BASE
    }

    /// Handles readiness on one of the relay's tokens.
    pub fn handle(&mut self, registry: &Registry, token: Token, out: &mut Vec<RelayEvent>) {
        let idx = (token.0 - TOKEN_BASE) / 2;
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        conn.last_active = Instant::now();
        if !conn.connected {
            match conn.upstream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    let meta = conn.meta;
                    self.remove(registry, idx, Teardown::Silent);
                    out.push(RelayEvent::ConnectFailed(meta, e.to_string()));
                    return;
                }
                Ok(None) => {}
            }
            match conn.upstream.peer_addr() {
                Ok(_) => {
                    conn.connected = true;
                    out.push(RelayEvent::Connected(conn.meta));
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let meta = conn.meta;
                    self.remove(registry, idx, Teardown::Silent);
                    out.push(RelayEvent::ConnectFailed(meta, e.to_string()));
                    return;
                }
            }
        }
        self.pump(registry, idx, out);
    }

    fn pump(&mut self, registry: &Registry, idx: usize, out: &mut Vec<RelayEvent>) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        let cfd = conn.client.as_raw_fd();
        let ufd = conn.upstream.as_raw_fd();
        let pool = &mut self.pool;
        let fault = match conn.c2u.pump(cfd, ufd, pool) {
            Err(Fault::Src(e)) => Some((End::ClientReset, e)),
            Err(Fault::Dst(e)) | Err(Fault::Local(e)) => Some((End::ServerReset, e)),
            Ok(_) => None,
        };
        let fault = fault.or(match conn.u2c.pump(ufd, cfd, pool) {
            Err(Fault::Src(e)) | Err(Fault::Local(e)) => Some((End::ServerReset, e)),
            Err(Fault::Dst(e)) => Some((End::ClientReset, e)),
            Ok(_) => None,
        });
        let fault = fault.map(|(end, e)| {
            tracing::debug!(conn_id = conn.meta.conn_id, ?end, error = %e, "relay fault");
            end
        });
        if conn.first_fin.is_none() {
            if conn.c2u.eof {
                conn.first_fin = Some(End::ClientFin);
            } else if conn.u2c.eof {
                conn.first_fin = Some(End::ServerClose);
            }
        }
        let end = match fault {
            Some(f) => f,
            None if conn.c2u.shut && conn.u2c.shut => conn.first_fin.unwrap_or(End::ClientFin),
            None => return,
        };
        let ev = self.finish(registry, idx, end);
        out.extend(ev);
    }

    /// Ends connection `idx` for `end`, returning its Finished event.
    fn finish(&mut self, registry: &Registry, idx: usize, end: End) -> Option<RelayEvent> {
        let teardown = match end {
            End::ClientFin | End::ServerClose => Teardown::Orderly,
            End::ClientReset => Teardown::ResetUpstream,
            End::ServerReset => Teardown::ResetClient,
            End::IdleTimeout | End::Shutdown => Teardown::ResetBoth,
            End::Aborted => Teardown::Silent,
        };
        let conn = self.remove(registry, idx, teardown)?;
        Some(RelayEvent::Finished {
            meta: conn.meta,
            end,
            from_client: conn.c2u.bytes,
            to_client: conn.u2c.bytes,
        })
    }

    fn remove(&mut self, registry: &Registry, idx: usize, how: Teardown) -> Option<Conn> {
        let mut conn = self.conns.get_mut(idx)?.take()?;
        self.index.remove(&(conn.meta.sender, conn.meta.conn_id));
        let _ = registry.deregister(&mut conn.client);
        let _ = registry.deregister(&mut conn.upstream);
        let (cfd, ufd) = (conn.client.as_raw_fd(), conn.upstream.as_raw_fd());
        match how {
            Teardown::Orderly => {}
            Teardown::Silent => {
                close_silently(cfd);
                reset(ufd);
            }
            Teardown::ResetUpstream => reset(ufd),
            Teardown::ResetClient => reset(cfd),
            Teardown::ResetBoth => {
                reset(cfd);
                reset(ufd);
            }
        }
        self.free.push(idx);
        self.active -= 1;
        Some(conn)
    }

    /// Ends the connection with this id (ABORT from the switch): the client
    /// socket is dropped silently, the upstream reset.
    pub fn abort(&mut self, registry: &Registry, sender: u32, conn_id: u64) -> Option<RelayEvent> {
        let idx = *self.index.get(&(sender, conn_id))?;
        self.finish(registry, idx, End::Aborted)
    }

    /// Resets connections idle longer than the limit.
    pub fn sweep(&mut self, registry: &Registry, now: Instant, out: &mut Vec<RelayEvent>) {
        for idx in 0..self.conns.len() {
            let idle = match &self.conns[idx] {
                Some(c) => now.saturating_duration_since(c.last_active) > self.idle_timeout,
                None => false,
            };
            if idle {
                out.extend(self.finish(registry, idx, End::IdleTimeout));
            }
        }
    }

    /// Resets every connection (end of a graceful stop's grace period).
    pub fn shutdown(&mut self, registry: &Registry, out: &mut Vec<RelayEvent>) {
        for idx in 0..self.conns.len() {
            if self.conns[idx].is_some() {
                out.extend(self.finish(registry, idx, End::Shutdown));
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Teardown {
    Orderly,
    Silent,
    ResetUpstream,
    ResetClient,
    ResetBoth,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};

    /// A loopback "client" socket pair standing in for an adopted socket.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn meta(id: u64) -> ConnMeta {
        ConnMeta {
            switch: "127.0.0.1:9199".parse().unwrap(),
            sender: 1,
            conn_id: id,
            client: "127.0.0.1:1".parse().unwrap(),
        }
    }

    fn run_until(
        poll: &mut Poll,
        relay: &mut Relay,
        out: &mut Vec<RelayEvent>,
        done: impl Fn(&[RelayEvent]) -> bool,
    ) {
        let mut events = Events::with_capacity(256);
        for _ in 0..2000 {
            if done(out) {
                return;
            }
            poll.poll(&mut events, Some(Duration::from_millis(10)))
                .unwrap();
            for ev in events.iter() {
                relay.handle(poll.registry(), ev.token(), out);
            }
        }
        panic!("relay did not reach the expected state: {out:?}");
    }

    #[test]
    fn relays_both_ways_and_propagates_half_close() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut poll = Poll::new().unwrap();
        let mut relay = Relay::new(Duration::from_secs(60));
        let (mut client, adopted) = pair();
        relay
            .add(
                poll.registry(),
                meta(1),
                adopted,
                upstream.local_addr().unwrap(),
            )
            .unwrap();
        let mut out = Vec::new();
        let (mut server, _) = upstream.accept().unwrap();
        run_until(&mut poll, &mut relay, &mut out, |o| {
            o.iter().any(|e| matches!(e, RelayEvent::Connected(_)))
        });
        client.write_all(b"hello").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"hello", "server sees the data then EOF (half-close)");
            server.write_all(&vec![7u8; 300_000]).unwrap();
        });
        run_until(&mut poll, &mut relay, &mut out, |o| {
            o.iter().any(|e| matches!(e, RelayEvent::Finished { .. }))
        });
        t.join().unwrap();
        let mut resp = Vec::new();
        client.read_to_end(&mut resp).unwrap();
        assert_eq!(resp.len(), 300_000);
        let fin = out
            .iter()
            .find(|e| matches!(e, RelayEvent::Finished { .. }))
            .unwrap();
        assert_eq!(
            fin,
            &RelayEvent::Finished {
                meta: meta(1),
                end: End::ClientFin,
                from_client: 5,
                to_client: 300_000
            }
        );
        assert_eq!(relay.active(), 0);
    }

    #[test]
    fn client_reset_resets_upstream() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut poll = Poll::new().unwrap();
        let mut relay = Relay::new(Duration::from_secs(60));
        let (client, adopted) = pair();
        relay
            .add(
                poll.registry(),
                meta(2),
                adopted,
                upstream.local_addr().unwrap(),
            )
            .unwrap();
        let (mut server, _) = upstream.accept().unwrap();
        let mut out = Vec::new();
        run_until(&mut poll, &mut relay, &mut out, |o| !o.is_empty());
        reset(client.as_raw_fd());
        drop(client);
        run_until(&mut poll, &mut relay, &mut out, |o| {
            o.iter().any(|e| matches!(e, RelayEvent::Finished { .. }))
        });
        assert!(
            matches!(
                out.last(),
                Some(RelayEvent::Finished {
                    end: End::ClientReset,
                    ..
                })
            ),
            "{out:?}"
        );
        let mut buf = [0u8; 16];
        let err = server
            .read(&mut buf)
            .expect_err("upstream must see a reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn refused_upstream_is_reported() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut poll = Poll::new().unwrap();
        let mut relay = Relay::new(Duration::from_secs(60));
        let (_client, adopted) = pair();
        let mut out = Vec::new();
        match relay.add(poll.registry(), meta(3), adopted, port) {
            Err(_) => return,
            Ok(()) => run_until(&mut poll, &mut relay, &mut out, |o| !o.is_empty()),
        }
        assert!(matches!(out[0], RelayEvent::ConnectFailed(..)), "{out:?}");
        assert_eq!(relay.active(), 0);
    }
}
