//! Listener mode: adopted connections handed to a Rust application as plain
//! `std::net::TcpStream`s, the way `TcpListener::accept` would.
//!
//! The agent loop pushes each adopted socket into a bounded queue (its length
//! is the `limits.backlog`; beyond it CREATE is refused with `backlog_full`, so
//! the switch re-dispatches instead of the client waiting). The application
//! takes them with [`HandoffListener::accept`] (blocking) or
//! [`HandoffListener::try_accept`] plus the readiness descriptor
//! ([`AsRawFd`]), which is how it plugs into an async runtime: wrap the
//! listener in `tokio::io::unix::AsyncFd`, await readability, `try_accept`,
//! then `tokio::net::TcpStream::from_std`.
//!
//! Each connection comes with a [`CloseTicket`]: dropping it (normally with the
//! stream, see [`Adopted`]) tells the agent the connection ended, and the agent
//! sends THOP_CLOSE so the switch frees its entry at once.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A message from the application side to the agent loop.
#[derive(Debug)]
pub(crate) enum LoopMsg {
    /// A listener-mode connection was dropped by the application.
    Closed {
        /// Sender node id of the switch the connection came from.
        sender: u32,
        /// THOP connection id.
        conn_id: u64,
    },
    /// Stop the loop (graceful when `now` is false).
    Stop {
        /// Reset every connection at once instead of draining.
        now: bool,
    },
}

/// Wakes the agent loop after a message was queued.
#[derive(Clone)]
pub(crate) struct LoopTx {
    pub(crate) tx: Sender<LoopMsg>,
    pub(crate) waker: Arc<mio::Waker>,
}

impl LoopTx {
    pub(crate) fn send(&self, msg: LoopMsg) {
        if self.tx.send(msg).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Tells the agent that an adopted connection ended when dropped.
pub struct CloseTicket {
    tx: Option<LoopTx>,
    switch: SocketAddr,
    sender: u32,
    conn_id: u64,
}

impl CloseTicket {
    /// The THOP connection id (for logs).
    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }
}

impl std::fmt::Debug for CloseTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseTicket")
            .field("switch", &self.switch)
            .field("conn_id", &self.conn_id)
            .finish()
    }
}

impl Drop for CloseTicket {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.send(LoopMsg::Closed {
                sender: self.sender,
                conn_id: self.conn_id,
            });
        }
    }
}

/// One adopted connection: the socket (ESTABLISHED, the request already in
/// its receive queue), the client's address, and the ticket that reports its
/// end. Keep the ticket as long as the stream: drop both together.
#[derive(Debug)]
pub struct Adopted {
    /// The connection, blocking mode.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The service address (VIP:port) it was made to.
    pub local: SocketAddr,
    /// Reports the end of the connection when dropped.
    pub ticket: CloseTicket,
}

struct Queue {
    items: VecDeque<Adopted>,
    closed: bool,
}

pub(crate) struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
    /// Readable while the queue is non-empty (or the listener is closed).
    notify_r: OwnedFd,
    notify_w: OwnedFd,
    backlog: usize,
    vip: SocketAddr,
}

impl Shared {
    pub(crate) fn new(vip: SocketAddr, backlog: usize) -> io::Result<Arc<Shared>> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds is a writable array of two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and ours.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Arc::new(Shared {
            q: Mutex::new(Queue {
                items: VecDeque::new(),
                closed: false,
            }),
            cv: Condvar::new(),
            notify_r: r,
            notify_w: w,
            backlog,
            vip,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves a consistent VecDeque: keep going.
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal(&self) {
        // SAFETY: one byte from a live buffer into our own non-blocking pipe;
        // a full pipe (EAGAIN) is already readable, which is all we need.
        unsafe {
            libc::write(
                self.notify_w.as_raw_fd(),
                b"!".as_ptr() as *const libc::c_void,
                1,
            )
        };
    }

    fn drain_signal(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a live local buffer from our own non-blocking pipe.
        while unsafe {
            libc::read(
                self.notify_r.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        } > 0
        {}
    }

    /// Whether another connection fits the backlog.
    pub(crate) fn has_room(&self) -> bool {
        let q = self.lock();
        !q.closed && q.items.len() < self.backlog
    }

    /// Queues an adopted connection; gives it back if the queue is full or closed.
    pub(crate) fn push(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        tx: LoopTx,
        switch: SocketAddr,
        sender: u32,
        conn_id: u64,
    ) -> Result<(), TcpStream> {
        let mut q = self.lock();
        if q.closed || q.items.len() >= self.backlog {
            return Err(stream);
        }
        let ticket = CloseTicket {
            tx: Some(tx),
            switch,
            sender,
            conn_id,
        };
        q.items.push_back(Adopted {
            stream,
            peer,
            local: self.vip,
            ticket,
        });
        self.signal();
        drop(q);
        self.cv.notify_one();
        Ok(())
    }

    /// Closes the queue: waiting `accept`s return an error; queued
    /// connections are dropped (their tickets report them closed).
    pub(crate) fn close(&self) {
        let items = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        self.signal();
        self.cv.notify_all();
        drop(items);
    }
}

/// Yields connections handed off to one service (VIP:port) in listener mode.
#[derive(Clone)]
pub struct HandoffListener {
    shared: Arc<Shared>,
}

impl HandoffListener {
    pub(crate) fn new(shared: Arc<Shared>) -> HandoffListener {
        HandoffListener { shared }
    }

    /// The service address (VIP:port) this listener yields connections for.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.vip
    }

    /// Waits for the next adopted connection. Fails with `NotConnected` once
    /// the agent has stopped.
    pub fn accept(&self) -> io::Result<Adopted> {
        self.accept_timeout(None)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
    }

    /// As [`accept`](Self::accept), giving up after `timeout` (`Ok(None)`).
    pub fn accept_timeout(&self, timeout: Option<Duration>) -> io::Result<Option<Adopted>> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut q = self.shared.lock();
        loop {
            if let Some(a) = q.items.pop_front() {
                if q.items.is_empty() {
                    self.shared.drain_signal();
                }
                return Ok(Some(a));
            }
            if q.closed {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "handoff agent stopped",
                ));
            }
            q = match deadline {
                None => self.shared.cv.wait(q).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    self.shared
                        .cv
                        .wait_timeout(q, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Takes a connection if one is queued; `WouldBlock` otherwise. Use with
    /// the readiness descriptor ([`AsRawFd`]) in an event loop.
    pub fn try_accept(&self) -> io::Result<Adopted> {
        let mut q = self.shared.lock();
        match q.items.pop_front() {
            Some(a) => {
                if q.items.is_empty() {
                    self.shared.drain_signal();
                }
                Ok(a)
            }
            None if q.closed => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "handoff agent stopped",
            )),
            None => {
                self.shared.drain_signal();
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

impl AsRawFd for HandoffListener {
    /// A descriptor that polls readable while connections are queued.
    fn as_raw_fd(&self) -> RawFd {
        self.shared.notify_r.as_raw_fd()
    }
}

impl Iterator for HandoffListener {
    type Item = io::Result<Adopted>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.accept() {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            other => Some(other),
        }
    }
}
