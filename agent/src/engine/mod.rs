//! The agent's event loop: the I/O around the sans-IO [`crate::handoff`]
//! core.
//!
//! One thread, one mio poll: the THOP socket, a waker for messages from
//! listener-mode applications and from [`AgentHandle`], the handover socket,
//! the kernel's socket-destroy notifications and the relay's connections all
//! share it. The loop reads datagrams and hands them to
//! [`Core::handle_frame`], performs the core's actions (send a frame, adopt
//! with [`crate::repair::adopt`] and give the socket to its service, silence
//! an aborted connection) and reports back what happened to the sockets
//! (adoption outcome, upstream connected, server accepted, connection ended).
//! Adoption itself is a short burst of system calls (no blocking), so it runs
//! inline, before the next datagram is read.
//!
//! The THOP socket is read at most [`RX_BUDGET`] datagrams per wake-up before
//! relays and timers are served again, so a flood of forged datagrams delays
//! them by at most that many tag checks.
//!
//! Files: `setup.rs` (binding, keys, services), `actions.rs` (what the
//! core's actions do to sockets), `events.rs` (what sockets report back).

mod actions;
mod events;
mod setup;

pub use setup::keyring;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Poll, Token};

use crate::config::Config;
use crate::handoff::{ConnKey, Core, LogLimiter};
use crate::handover::Handover;
use crate::listener::{HandoffListener, LoopMsg, LoopTx, Shared};
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::sockdiag::DestroyWatch;

const UDP: Token = Token(0);
const WAKER: Token = Token(1);
const HANDOVER: Token = Token(2);
const DESTROY: Token = Token(3);
/// Housekeeping period of the loop's own timers: relay idle sweep, the
/// warning about handover services no server announced.
const TICK: Duration = Duration::from_millis(100);
/// Largest datagram read (CREATE fragments are at most one MTU; allow jumbo).
const RX_BUF: usize = 65536;
/// Datagrams read from the THOP socket per wake-up before relays, timers and
/// application messages are served again: a flood of datagrams (forged or
/// not) delays them by at most this many tag checks (a few tens of µs each).
pub const RX_BUDGET: usize = 256;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The THOP socket could not be bound.
    #[error("cannot bind THOP socket {addr}: {err}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        err: io::Error,
    },
    /// A key in the configuration is unusable.
    #[error("thop.keys: {0}")]
    Key(String),
    /// Any other resource failure.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Where connections of one service go.
enum Target {
    Relay,
    Listener(Arc<Shared>),
    Handover,
}

/// What the loop holds for an adopted connection besides the relay's sockets.
#[derive(Default)]
struct Held {
    /// Listener mode: a duplicate of the application's descriptor, so that an
    /// ABORT can silence the socket (TCP_REPAIR on) while the application
    /// still holds it. Released when the ticket reports the close.
    hold: Option<Arc<OwnedFd>>,
    /// Handover mode: the socket cookie (the kernel's destroy notification
    /// names it).
    cookie: Option<u64>,
    /// Handover mode: the offer's token while not accepted.
    token: Option<u64>,
    /// Handover mode: once accepted, the server's process and descriptor.
    owner: Option<(u32, i32)>,
}

/// Stops a running agent from another thread.
#[derive(Clone)]
pub struct AgentHandle {
    tx: LoopTx,
}

impl AgentHandle {
    /// Graceful stop: refuse new CREATEs, let adopted connections finish
    /// (up to `limits.drain_timeout_s`), then exit.
    pub fn stop(&self) {
        self.tx.send(LoopMsg::Stop { now: false });
    }

    /// Immediate stop: reset what is still open and exit.
    pub fn stop_now(&self) {
        self.tx.send(LoopMsg::Stop { now: true });
    }
}

/// A configured agent, ready to run.
pub struct Agent {
    cfg: Config,
    metrics: Arc<Metrics>,
    core: Core,
    poll: Poll,
    udp: UdpSocket,
    services: HashMap<SocketAddr, Target>,
    relay: Relay,
    /// Handover mode: the socket servers announce themselves on.
    handover: Option<Handover>,
    /// Handover mode: the kernel's TCP socket-destroy notifications.
    destroy: Option<DestroyWatch>,
    held: HashMap<ConnKey, Held>,
    /// Handover token → connection.
    offered: HashMap<u64, ConnKey>,
    /// Socket cookie → connection, for handed-over connections.
    by_cookie: HashMap<u64, ConnKey>,
    rx: Receiver<LoopMsg>,
    tx: LoopTx,
    /// The socket had more datagrams when the budget ran out.
    rx_more: bool,
    rejects: LogLimiter,
    last_unserved_warn: Option<Instant>,
    /// The drain ran out: reset relays on every turn until none is left.
    stop_now: bool,
    stopped: bool,
    buf: Vec<u8>,
}

/// The wall clock, ms since the Unix epoch (may step; the core only uses it
/// for the replay window and, at start, as the origin of its timestamps).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Agent {
    /// The bound THOP address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The listener of a listener-mode service.
    pub fn listener(&self, vip: SocketAddr) -> Option<HandoffListener> {
        match self.services.get(&vip) {
            Some(Target::Listener(s)) => Some(HandoffListener::new(Arc::clone(s))),
            _ => None,
        }
    }

    /// A handle to stop the loop.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            tx: self.tx.clone(),
        }
    }

    /// Runs the loop on a new thread.
    pub fn spawn(self) -> io::Result<std::thread::JoinHandle<io::Result<()>>> {
        std::thread::Builder::new()
            .name("baton-agent".into())
            .spawn(move || self.run())
    }

    /// Runs until stopped; returns after a graceful drain.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut relay_events = Vec::new();
        let mut ho_events = Vec::new();
        let mut next_tick = Instant::now() + TICK;
        tracing::info!(thop = %self.cfg.thop.listen, services = self.services.len(), "agent running");
        while !self.stopped {
            let now = Instant::now();
            let mut wake = next_tick;
            if let Some(t) = self.core.poll_timeout() {
                wake = wake.min(t);
            }
            if let Some(t) = self.handover.as_ref().and_then(Handover::next_expiry) {
                wake = wake.min(t);
            }
            let mut timeout = wake.saturating_duration_since(now);
            if self.rx_more {
                // Datagrams are waiting beyond the last budget: only look
                // for other work, then read on.
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    UDP => self.receive(),
                    WAKER => self.messages(),
                    HANDOVER => {
                        if let Some(h) = self.handover.as_mut() {
                            h.receive(&mut ho_events);
                        }
                    }
                    DESTROY => self.destroyed(),
                    t => self
                        .relay
                        .handle(self.poll.registry(), t, &mut relay_events),
                }
            }
            self.relay_events(&mut relay_events);
            if self.rx_more && !events.iter().any(|e| e.token() == UDP) {
                self.receive();
            }
            let now = Instant::now();
            if let Some(h) = self.handover.as_mut() {
                h.expire(now, &mut ho_events);
            }
            for ev in ho_events.drain(..) {
                self.handover_event(ev);
            }
            if now >= next_tick {
                self.warn_unserved(now);
                self.relay
                    .sweep(self.poll.registry(), now, &mut relay_events);
                self.relay_events(&mut relay_events);
                next_tick = now + TICK;
            }
            if self.stop_now {
                self.relay.shutdown(self.poll.registry(), &mut relay_events);
                self.relay_events(&mut relay_events);
            }
            self.core.handle_timeout(now);
            self.perform(now);
        }
        self.close_listeners();
        tracing::info!("agent stopped");
        Ok(())
    }

    fn close_listeners(&self) {
        for t in self.services.values() {
            if let Target::Listener(s) = t {
                s.close();
            }
        }
    }

    /// Reads at most [`RX_BUDGET`] datagrams; sets `rx_more` when the
    /// socket may hold more.
    fn receive(&mut self) {
        self.rx_more = false;
        for _ in 0..RX_BUDGET {
            let (n, from) = match self.udp.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if let Some(n) = self.rejects.allow("receive_failed", Instant::now()) {
                        tracing::warn!(error = %e, suppressed = n, "THOP receive failed");
                    }
                    return;
                }
            };
            let now = Instant::now();
            self.core.handle_frame(now, wall_ms(), &self.buf[..n], from);
            self.perform(now);
        }
        self.rx_more = true;
    }
}
