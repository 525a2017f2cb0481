//! The agent's event loop: THOP in (authenticate, replay-check, reassemble),
//! adoption, relay, and THOP out (ACK, NACK, CLOSE, LOAD).
//!
//! One thread, one mio poll: the THOP socket, a waker for messages from
//! listener-mode applications and from [`AgentHandle`], and the relay's
//! connections all share it. Adoption itself is a short burst of system calls
//! (no blocking), so it runs inline.
//!
//! Receiver order (`docs/thop.md` §9): source address allowed → parse →
//! tag (with a key bound to the sender) → receiver node → decode → sender is
//! a configured switch → replay window → act. Nothing is answered before the
//! tag verified; every drop is counted by reason, and logged at most once a
//! second per reason ([`LogLimiter`]), so a flood of forged datagrams costs
//! neither the log nor the relays: the socket is read at most [`RX_BUDGET`]
//! datagrams per wake-up before relays and timers are served again.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use handoff_proto::{
    flags, node_id, open, seal, Abort, Ack, Assembled, Body, Close, CloseReason, DecodeError,
    FrameView, Header, Keyring, Load, Nack, NackReason, Now, Opcode, Reassembler, ReassemblyConfig,
    ReplayGuards, SeqCounter, NOT_BEFORE_SLACK_MS,
};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::{Config, Mode, SwitchAddr};
use crate::handover::{Handover, HandoverEvent};
use crate::listener::{HandoffListener, LoopMsg, LoopTx, Shared};
use crate::metrics::Metrics;
use crate::relay::{self, ConnMeta, End, Relay, RelayEvent};
use crate::repair::{adopt, AdoptError};
use crate::sockdiag::DestroyWatch;

const UDP: Token = Token(0);
const WAKER: Token = Token(1);
const HANDOVER: Token = Token(2);
const DESTROY: Token = Token(3);
/// How often "no server has registered for a handover service" is repeated.
const NO_SERVER_WARN: Duration = Duration::from_secs(10);
/// Housekeeping period: reassembly expiry, idle sweep, CLOSE retransmission.
const TICK: Duration = Duration::from_millis(100);
/// A closed connection id is remembered this long, so a late duplicate CREATE
/// is acknowledged again instead of adopted a second time.
const RECENT_TTL: Duration = Duration::from_secs(120);
/// CLOSE is retransmitted until ACKed, at most this many times.
const CLOSE_TRIES: u32 = 6;
const CLOSE_RTO: Duration = Duration::from_millis(200);
/// On stop, how long unacknowledged CLOSEs may hold the exit once nothing is open.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Receive buffer of the THOP socket: a burst of CREATE fragments must not
/// overflow it while the loop is busy adopting.
const UDP_RCVBUF: libc::c_int = 4 << 20;
/// Largest datagram read (CREATE fragments are at most one MTU; allow jumbo).
const RX_BUF: usize = 65536;
/// Datagrams read from the THOP socket per wake-up before relays, timers and
/// application messages are served again: a flood of datagrams (forged or
/// not) delays them by at most this many tag checks (a few tens of µs each).
pub const RX_BUDGET: usize = 256;
/// Rejected frames are logged at most once per reason in this period; the
/// next line says how many were not logged.
const LOG_PERIOD: Duration = Duration::from_secs(1);

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
    Relay(SocketAddr),
    Listener(Arc<Shared>),
    Handover,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Relay mode: adopted, connecting upstream; ACK when connected.
    Connecting { echo_seq: u64, since: Instant },
    /// Handover mode: offered to a server; ACK when it accepted (TAKEN).
    Offered {
        echo_seq: u64,
        since: Instant,
        token: u64,
    },
    /// Adopted and handed over.
    Live,
}

/// What tells one client connection from another that arrives under the
/// same id (a restarted switch, or an id that came round again): the
/// client's address and initial sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    client: SocketAddr,
    isn: u32,
}

impl Fingerprint {
    fn of(st: &handoff_proto::TcpState) -> Fingerprint {
        Fingerprint {
            client: st.client(),
            isn: st.client_isn,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    switch: SocketAddr,
    fp: Fingerprint,
    mode: Mode,
    phase: Phase,
    request_len: u64,
    /// Listener mode: a duplicate of the application's descriptor, so that an
    /// ABORT can silence the socket (TCP_REPAIR on) while the application
    /// still holds it. Released when the ticket reports the close.
    hold: Option<Arc<OwnedFd>>,
    /// Handover mode: the socket cookie (the kernel's destroy notification
    /// names it) and, once accepted, the server's process and descriptor.
    cookie: Option<u64>,
    owner: Option<(u32, i32)>,
}

struct PendingClose {
    to: SocketAddr,
    header: Header,
    close: Close,
    tries: u32,
    next: Instant,
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
    poll: Poll,
    udp: UdpSocket,
    keys: Keyring,
    local_node: u32,
    switches: Vec<SwitchAddr>,
    replay: ReplayGuards,
    reasm: Reassembler,
    seq: SeqCounter,
    services: HashMap<SocketAddr, Target>,
    conns: HashMap<(u32, u64), Entry>,
    /// Connections closed in the last [`RECENT_TTL`]: a retransmitted CREATE
    /// for one of them is acknowledged again, never adopted twice.
    recent: HashMap<(u32, u64), (Instant, Fingerprint)>,
    /// `recent`'s entries in insertion order (= expiry order), so expiry
    /// looks only at what is due.
    recent_order: VecDeque<(Instant, (u32, u64))>,
    /// Node ids of the configured switches: the only senders accepted.
    switch_nodes: Vec<u32>,
    /// The socket had more datagrams when the budget ran out.
    rx_more: bool,
    rejects: LogLimiter,
    relay: Relay,
    /// Handover mode: the socket servers announce themselves on.
    handover: Option<Handover>,
    /// Handover mode: the kernel's TCP socket-destroy notifications.
    destroy: Option<DestroyWatch>,
    /// Handover token → connection key.
    offered: HashMap<u64, (u32, u64)>,
    /// Socket cookie → connection key, for handed-over connections.
    by_cookie: HashMap<u64, (u32, u64)>,
    rx: Receiver<LoopMsg>,
    tx: LoopTx,
    pending_close: HashMap<(u32, u64), PendingClose>,
    adopted_in_period: u32,
    draining: Option<Instant>,
    last_unserved_warn: Option<Instant>,
    stop_now: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
}

/// Raises the socket's receive buffer beyond `net.core.rmem_max` when the
/// capability allows (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which we have).
fn grow_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) {
    let fd = sock.as_raw_fd();
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `bytes` is a live c_int; the fd is our socket.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &bytes as *const _ as *const libc::c_void,
                4,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// The wall clock when the process first asked, and the monotonic instant
/// then: THOP timestamps are that wall time plus monotonic time elapsed, so a
/// step of the wall clock while the agent runs does not move them (the
/// switch's replay windows would refuse a jump; `docs/thop.md` §7.4).
fn epoch() -> &'static (Instant, u64) {
    static EPOCH: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
    EPOCH.get_or_init(|| (Instant::now(), wall_ms()))
}

/// The wall clock, ms since the Unix epoch (may step).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This agent's THOP timestamp: the start's wall time plus monotonic time.
fn now_ms() -> u64 {
    let (at, wall) = epoch();
    wall + at.elapsed().as_millis() as u64
}

/// Both clock readings for the replay check.
fn clock_now() -> Now {
    Now {
        wall_ms: wall_ms(),
        mono_ms: epoch().0.elapsed().as_millis() as u64,
    }
}

/// Logs at most one line per reason per [`LOG_PERIOD`], with the number of
/// occurrences not logged since the previous line.
#[derive(Default)]
struct LogLimiter {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    /// `Some(suppressed)` when a line for `reason` may be written now.
    fn allow(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < LOG_PERIOD => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

impl Agent {
    /// Binds the THOP socket and prepares every service. Start-up checks
    /// (capabilities, VIP on `lo`) are [`crate::checks`]' job, run before.
    pub fn new(cfg: Config, metrics: Arc<Metrics>) -> Result<Agent, StartError> {
        let poll = Poll::new()?;
        let addr = cfg.thop.listen;
        let mut udp = UdpSocket::bind(addr).map_err(|err| StartError::Bind { addr, err })?;
        grow_rcvbuf(&udp, UDP_RCVBUF);
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = channel();
        let tx = LoopTx { tx, waker };

        let mut keys: Option<Keyring> = None;
        for key in cfg
            .thop_keys()
            .map_err(|e| StartError::Key(e.to_string()))?
        {
            match keys.as_mut() {
                None => keys = Some(Keyring::new(key)),
                Some(ring) => ring.insert(key),
            }
        }
        let mut keys = keys.ok_or_else(|| StartError::Key("no key".into()))?;
        if let Some(id) = cfg.thop.send_key {
            keys.set_current(id);
        }
        for (id, nodes) in cfg.key_bindings() {
            keys.bind(id, nodes);
        }

        let mut services = HashMap::new();
        for s in &cfg.services {
            let t = match (s.mode, s.upstream) {
                (Mode::Relay, Some(up)) => Target::Relay(up),
                (Mode::Handover, _) => Target::Handover,
                _ => Target::Listener(Shared::new(s.vip, cfg.limits.backlog as usize)?),
            };
            services.insert(s.vip, t);
        }
        let (handover, destroy) = if cfg.services.iter().any(|s| s.mode == Mode::Handover) {
            let h = &cfg.handover;
            let group = match &h.group {
                None => None,
                Some(g) => Some(group_id(g).ok_or_else(|| {
                    StartError::Io(io::Error::other(format!("handover.group: no group {g}")))
                })?),
            };
            let mut ho = Handover::bind(
                &h.socket,
                group,
                Duration::from_millis(h.accept_timeout_ms),
                cfg.limits.backlog,
            )
            .map_err(|e| {
                StartError::Io(io::Error::other(format!(
                    "handover.socket {}: {e}",
                    h.socket.display()
                )))
            })?;
            poll.registry()
                .register(&mut SourceFd(&ho.raw_fd()), HANDOVER, Interest::READABLE)?;
            let dw = DestroyWatch::open().map_err(|e| {
                StartError::Io(io::Error::other(format!(
                    "socket-destroy notifications (NETLINK_SOCK_DIAG): {e}"
                )))
            })?;
            poll.registry()
                .register(&mut SourceFd(&dw.raw_fd()), DESTROY, Interest::READABLE)?;
            let found = ho.discover();
            if found > 0 {
                tracing::info!(
                    found,
                    "asked running servers' handover listeners to announce themselves"
                );
            }
            (Some(ho), Some(dw))
        } else {
            (None, None)
        };
        let reasm = Reassembler::new(ReassemblyConfig {
            max_request_len: cfg.thop.max_request_bytes,
            max_pending: cfg.thop.max_pending_creates as usize,
            memory_limit: (cfg.thop.max_pending_creates as usize)
                .saturating_mul(64 * 1024)
                .max(1 << 20),
            timeout_ms: cfg.thop.reassembly_timeout_ms,
        });
        Ok(Agent {
            local_node: node_id(addr.ip()),
            switches: cfg.switches(),
            switch_nodes: cfg.switches().iter().map(|s| node_id(s.ip)).collect(),
            replay: ReplayGuards::new(cfg.thop.max_clock_skew_ms, 1024).with_start(
                clock_now(),
                NOT_BEFORE_SLACK_MS.min(cfg.thop.max_clock_skew_ms),
            ),
            reasm,
            seq: SeqCounter::new(now_ms()),
            relay: Relay::new(Duration::from_secs(cfg.limits.idle_timeout_s.max(1))),
            services,
            handover,
            destroy,
            offered: HashMap::new(),
            by_cookie: HashMap::new(),
            conns: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            rx_more: false,
            rejects: LogLimiter::default(),
            pending_close: HashMap::new(),
            adopted_in_period: 0,
            draining: None,
            last_unserved_warn: None,
            stop_now: false,
            buf: vec![0; RX_BUF],
            out: vec![0; RX_BUF],
            keys,
            cfg,
            metrics,
            poll,
            udp,
            rx,
            tx,
        })
    }

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

    /// Connections adopted and not yet ended.
    fn active(&self) -> usize {
        self.conns.len()
    }

    /// Runs until stopped; returns after a graceful drain.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut relay_events = Vec::new();
        let period = Duration::from_millis(self.cfg.load.period_ms);
        let mut next_load = Instant::now();
        let mut next_tick = Instant::now() + TICK;
        let mut drained_at: Option<Instant> = None;
        let mut ho_events = Vec::new();
        tracing::info!(thop = %self.cfg.thop.listen, services = self.services.len(), "agent running");
        loop {
            let now = Instant::now();
            let mut wake = next_tick;
            if !period.is_zero() {
                wake = wake.min(next_load);
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
            for ev in relay_events.drain(..) {
                self.relay_event(ev);
            }
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
            if !period.is_zero() && now >= next_load {
                self.send_load(period);
                next_load = now + period;
            }
            if now >= next_tick {
                self.tick(now, &mut relay_events);
                for ev in relay_events.drain(..) {
                    self.relay_event(ev);
                }
                next_tick = now + TICK;
            }
            if self.stop_now {
                self.relay.shutdown(self.poll.registry(), &mut relay_events);
                for ev in relay_events.drain(..) {
                    self.relay_event(ev);
                }
            }
            if let Some(deadline) = self.draining {
                // Once nothing is open, wait briefly for the switch to ACK
                // the last CLOSEs (they free its entries at once), no longer.
                let pending = self.pending_close.values().any(|p| p.tries < CLOSE_TRIES);
                if self.active() == 0 {
                    let since = *drained_at.get_or_insert(now);
                    if !pending || now >= deadline || now >= since + CLOSE_GRACE {
                        break;
                    }
                }
                if now >= deadline && self.active() > 0 {
                    tracing::warn!(
                        open = self.active(),
                        "drain timeout: resetting what is left"
                    );
                    self.stop_now = true;
                    self.close_listeners();
                    // Listener and handover connections belong to the
                    // application now: forget them, they go on without us.
                    self.conns.retain(|_, e| e.mode == Mode::Relay);
                    self.by_cookie.clear();
                }
            }
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

    fn messages(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                LoopMsg::Closed {
                    switch,
                    sender,
                    conn_id,
                } => {
                    if let Some(e) = self.conns.remove(&(sender, conn_id)) {
                        self.ended(
                            switch,
                            (sender, conn_id),
                            e.fp,
                            CloseReason::ServerClose,
                            0,
                            0,
                        );
                    }
                }
                LoopMsg::Stop { now } => {
                    if self.draining.is_none() {
                        let grace = Duration::from_secs(self.cfg.limits.drain_timeout_s);
                        tracing::info!(
                            open = self.active(),
                            grace_s = grace.as_secs(),
                            "stopping: draining adopted connections"
                        );
                        self.draining = Some(Instant::now() + grace);
                    }
                    if now {
                        self.draining = Some(Instant::now());
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<RelayEvent>) {
        self.warn_unserved(now);
        self.reasm.expire(now_ms());
        self.metrics
            .reassembly_pending
            .set(self.reasm.pending() as i64);
        self.relay.sweep(self.poll.registry(), now, out);
        self.expire_recent(now);
        let due: Vec<(u32, u64)> = self
            .pending_close
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            let Some(mut p) = self.pending_close.remove(&k) else {
                continue;
            };
            if p.tries >= CLOSE_TRIES {
                tracing::debug!(conn_id = k.1, "CLOSE never acknowledged");
                continue;
            }
            p.tries += 1;
            p.next = now + CLOSE_RTO * (1 << p.tries.min(5));
            p.header.msg_seq = self.seq.next();
            p.header.timestamp_ms = now_ms();
            self.metrics.close_retransmits.inc();
            self.send(p.to, &p.header, &Body::Close(p.close));
            self.pending_close.insert(k, p);
        }
    }

    /// Remembers a connection id that ended (see [`RECENT_TTL`]).
    fn remember_recent(&mut self, key: (u32, u64), fp: Fingerprint) {
        let now = Instant::now();
        self.recent.insert(key, (now, fp));
        self.recent_order.push_back((now, key));
    }

    /// Forgets ended connection ids older than [`RECENT_TTL`]: only the due
    /// front of the queue is looked at.
    fn expire_recent(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.recent_order.front() {
            if now.saturating_duration_since(at) < RECENT_TTL {
                break;
            }
            self.recent_order.pop_front();
            // Remembered again later: that younger entry decides.
            if self.recent.get(&key).is_some_and(|(t, _)| *t == at) {
                self.recent.remove(&key);
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
            let dgram = std::mem::take(&mut self.buf);
            self.datagram(&dgram[..n], from);
            self.buf = dgram;
        }
        self.rx_more = true;
    }

    /// Hands one received datagram to the receive path, as the loop does
    /// after `recv_from` (the fuzzing harness's entry, [`crate::fuzzing`]).
    #[cfg(feature = "testing")]
    pub fn receive_datagram(&mut self, dgram: &[u8], from: SocketAddr) {
        self.datagram(dgram, from);
    }

    /// Counts a dropped datagram; logs it (debug) at most once per reason
    /// and second. Reasons that deserve an operator's attention are logged
    /// where they are found, through the same limiter.
    fn drop_frame(&mut self, reason: &'static str, from: SocketAddr) {
        self.metrics.thop_dropped.with_label_values(&[reason]).inc();
        if let Some(n) = self.rejects.allow(reason, Instant::now()) {
            tracing::debug!(%from, reason, suppressed = n, "THOP frame dropped");
        }
    }

    /// Counts a dropped datagram without logging (the caller did).
    fn count_drop(&self, reason: &'static str) {
        self.metrics.thop_dropped.with_label_values(&[reason]).inc();
    }

    fn datagram(&mut self, dgram: &[u8], from: SocketAddr) {
        if !self.switches.iter().any(|s| s.matches(from)) {
            return self.drop_frame("source_not_allowed", from);
        }
        let frame = match open(&self.keys, self.local_node, dgram) {
            Ok((f, _)) => f,
            Err(DecodeError::UnsupportedVersion(v)) => {
                self.drop_frame("unsupported_version", from);
                // Authenticated (open verifies the tag first): answer with our
                // versions, unless it is a NACK itself.
                if let Ok((view, _)) = FrameView::parse(dgram) {
                    if view.opcode_raw() != Opcode::Nack as u8 {
                        let (h, nack) = view.version_nack(self.seq.next(), now_ms());
                        tracing::info!(%from, version = v, "THOP version not supported");
                        self.send(from, &h, &Body::Nack(nack));
                    }
                }
                return;
            }
            Err(e) => {
                if !e.is_auth_failure() {
                    return self.drop_frame(e.label(), from);
                }
                if let Some(n) = self.rejects.allow(e.label(), Instant::now()) {
                    tracing::warn!(%from, reason = e.reason(), suppressed = n,
                        "THOP frame failed authentication (one line per reason and second; \
                         `suppressed` were not logged)");
                }
                return self.count_drop(e.label());
            }
        };
        if !self.switch_nodes.contains(&frame.header.sender) {
            if let Some(n) = self.rejects.allow("unknown_sender", Instant::now()) {
                tracing::warn!(%from, sender = format_args!("{:#010x}", frame.header.sender),
                    suppressed = n, "THOP frame from a node that is not a configured switch");
            }
            return self.count_drop("unknown_sender");
        }
        if let Err(e) = self.replay.accept_at(&frame.header, clock_now()) {
            if let Some(n) = self.rejects.allow(e.label(), Instant::now()) {
                tracing::info!(%from, error = %e, suppressed = n, "THOP replay check failed");
            }
            return self.count_drop(e.label());
        }
        self.metrics
            .thop_rx
            .with_label_values(&[frame.body.opcode().name()])
            .inc();
        let h = frame.header;
        match frame.body {
            Body::Create(frag) => {
                let key = (h.sender, h.conn_id);
                if self.duplicate(key, &h, from, frag.state.as_ref()) {
                    return;
                }
                if self.draining.is_some() {
                    return self.nack(from, &h, NackReason::ShuttingDown, "draining");
                }
                match self.reasm.push(h.sender, h.conn_id, &frag, now_ms()) {
                    Ok(None) => self
                        .metrics
                        .reassembly_pending
                        .set(self.reasm.pending() as i64),
                    Ok(Some(asm)) => self.create(asm, &h, from),
                    Err(e) => self.nack(from, &h, e.nack_reason(), e.label()),
                }
            }
            Body::Abort(a) => self.abort(a, &h, from),
            Body::Ack(a) => self.acked(a, &h),
            Body::Nack(_) | Body::Close(_) | Body::Load(_) => {
                self.drop_frame("unexpected_opcode", from)
            }
        }
    }

    /// A CREATE for a connection adopted already: ACK again, never adopt
    /// twice. Only the same client connection is the same connection: a
    /// first fragment whose client address or initial sequence number
    /// differs is another connection under a reused id.
    fn duplicate(
        &mut self,
        key: (u32, u64),
        h: &Header,
        from: SocketAddr,
        state: Option<&handoff_proto::TcpState>,
    ) -> bool {
        let (known, live) = match (self.conns.get(&key), self.recent.get(&key)) {
            (Some(e), _) => (e.fp, matches!(e.phase, Phase::Live)),
            (None, Some((_, fp))) => (*fp, false),
            (None, None) => return false,
        };
        let open = self.conns.contains_key(&key);
        match state.map(Fingerprint::of) {
            Some(fp) if fp != known && !open => {
                // The connection once known by this id is closed: this one
                // is new.
                self.recent.remove(&key);
                return false;
            }
            Some(fp) if fp != known => {
                tracing::warn!(conn_id = h.conn_id, client = %fp.client, owner = %known.client,
                    "CREATE under the id of another client's open connection");
                self.nack(
                    from,
                    h,
                    NackReason::BadState,
                    "the connection id names another client's open connection",
                );
                return true;
            }
            // A later fragment names no client: acknowledge only for an
            // open connection (a closed one's id may be a new connection's
            // whose first fragment is still on its way).
            None if !open => {
                self.metrics.duplicate_creates.inc();
                return true;
            }
            _ => {}
        }
        self.metrics.duplicate_creates.inc();
        if live || !open {
            let mut rh = h.reply(self.seq.next(), now_ms());
            rh.flags = flags::DUPLICATE;
            self.send(
                from,
                &rh,
                &Body::Ack(Ack {
                    echo_seq: h.msg_seq,
                }),
            );
        }
        // Still connecting upstream: the ACK follows when it is up.
        true
    }

    fn nack(&mut self, to: SocketAddr, h: &Header, reason: NackReason, why: &str) {
        self.metrics
            .refused
            .with_label_values(&[reason.label()])
            .inc();
        tracing::info!(conn_id = h.conn_id, %reason, why, "CREATE refused");
        let rh = h.reply(self.seq.next(), now_ms());
        self.send(
            to,
            &rh,
            &Body::Nack(Nack {
                echo_seq: h.msg_seq,
                reason,
                versions: &[],
            }),
        );
    }

    fn create(&mut self, asm: Assembled, h: &Header, from: SocketAddr) {
        self.metrics
            .reassembly_pending
            .set(self.reasm.pending() as i64);
        let started = Instant::now();
        let vip = asm.state.vip();
        let (mode, upstream, shared) = match self.services.get(&vip) {
            Some(Target::Relay(up)) => (Mode::Relay, Some(*up), None),
            Some(Target::Listener(s)) => (Mode::Listener, None, Some(Arc::clone(s))),
            Some(Target::Handover) => (Mode::Handover, None, None),
            None => {
                return self.nack(
                    from,
                    h,
                    NackReason::NoSuchService,
                    "no service for this VIP:port",
                )
            }
        };
        if self.active() >= self.cfg.limits.max_active as usize {
            return self.nack(from, h, NackReason::Overloaded, "limits.max_active reached");
        }
        if let Some(s) = &shared {
            if !s.has_room() {
                return self.nack(from, h, NackReason::BacklogFull, "listener backlog full");
            }
        }
        if mode == Mode::Handover {
            // Refuse before adopting when no server could take it.
            let servers = self.handover.as_ref().map_or(0, |ho| ho.servers_for(vip));
            if servers == 0 {
                self.metrics
                    .handover_refused
                    .with_label_values(&["no_server"])
                    .inc();
                return self.nack(
                    from,
                    h,
                    NackReason::BacklogFull,
                    "no server has announced a handover listener for this VIP:port",
                );
            }
        }
        let stream = match adopt(&asm.state, &asm.request) {
            Ok(s) => s,
            Err(e) => {
                let reason = match e {
                    AdoptError::InvalidState(_) | AdoptError::Family => NackReason::BadState,
                    AdoptError::Exists(_) => NackReason::AddressInUse,
                    AdoptError::Permission(_) | AdoptError::Sys { .. } => NackReason::RepairFailed,
                };
                tracing::warn!(client = %asm.state.client(), error = %e, "adoption failed");
                return self.nack(from, h, reason, e.label());
            }
        };
        let key = (h.sender, h.conn_id);
        let client = asm.state.client();
        let request_len = asm.request.len() as u64;
        match (upstream, shared) {
            (Some(up), _) => {
                let meta = ConnMeta {
                    switch: from,
                    sender: h.sender,
                    conn_id: h.conn_id,
                    client,
                };
                if let Err(e) = self.relay.add(self.poll.registry(), meta, stream, up) {
                    tracing::warn!(upstream = %up, error = %e, "upstream unavailable");
                    return self.nack(from, h, NackReason::Internal, "upstream connect failed");
                }
                let phase = Phase::Connecting {
                    echo_seq: h.msg_seq,
                    since: started,
                };
                self.conns.insert(
                    key,
                    Entry {
                        switch: from,
                        fp: Fingerprint::of(&asm.state),
                        mode,
                        phase,
                        request_len,
                        hold: None,
                        cookie: None,
                        owner: None,
                    },
                );
            }
            (None, Some(shared)) => {
                let hold = stream.try_clone().ok().map(|s| Arc::new(OwnedFd::from(s)));
                if let Err(stream) =
                    shared.push(stream, client, self.tx.clone(), from, h.sender, h.conn_id)
                {
                    relay::close_silently(stream.as_raw_fd());
                    return self.nack(from, h, NackReason::BacklogFull, "listener backlog full");
                }
                self.conns.insert(
                    key,
                    Entry {
                        switch: from,
                        fp: Fingerprint::of(&asm.state),
                        mode,
                        phase: Phase::Live,
                        request_len,
                        hold,
                        cookie: None,
                        owner: None,
                    },
                );
                self.adopted(mode, started);
                let rh = h.reply(self.seq.next(), now_ms());
                self.send(
                    from,
                    &rh,
                    &Body::Ack(Ack {
                        echo_seq: h.msg_seq,
                    }),
                );
            }
            (None, None) => {
                let fp = Fingerprint::of(&asm.state);
                self.offer(stream, vip, key, fp, h, from, started, request_len)
            }
        }
        tracing::debug!(conn_id = h.conn_id, %client, %vip, ?mode, "adopted");
    }

    /// Handover mode: offers the adopted socket to a server; the ACK waits
    /// for TAKEN.
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        stream: std::net::TcpStream,
        vip: SocketAddr,
        key: (u32, u64),
        fp: Fingerprint,
        h: &Header,
        from: SocketAddr,
        started: Instant,
        request_len: u64,
    ) {
        let fd = OwnedFd::from(stream);
        let cookie = crate::handover::socket_cookie(fd.as_raw_fd());
        let Some(ho) = self.handover.as_mut() else {
            relay::close_silently(fd.as_raw_fd());
            return self.nack(from, h, NackReason::Internal, "handover not set up");
        };
        match ho.offer(vip, fd, started) {
            Ok(token) => {
                self.offered.insert(token, key);
                self.metrics.handover_pending.set(ho.pending() as i64);
                self.conns.insert(
                    key,
                    Entry {
                        switch: from,
                        fp,
                        mode: Mode::Handover,
                        phase: Phase::Offered {
                            echo_seq: h.msg_seq,
                            since: started,
                            token,
                        },
                        request_len,
                        hold: None,
                        cookie,
                        owner: None,
                    },
                );
            }
            Err((why, fd)) => {
                relay::close_silently(fd.as_raw_fd());
                self.metrics
                    .handover_refused
                    .with_label_values(&[why.label()])
                    .inc();
                self.nack(from, h, NackReason::BacklogFull, why.label());
            }
        }
    }

    fn handover_event(&mut self, ev: HandoverEvent) {
        match ev {
            HandoverEvent::Registered { vip, pid } => {
                self.metrics
                    .handover_listeners
                    .set(self.handover.as_ref().map_or(0, |h| h.servers()) as i64);
                tracing::info!(%vip, pid, "handover listener announced");
            }
            HandoverEvent::Malformed(why) => {
                self.metrics
                    .handover_dropped
                    .with_label_values(&[why])
                    .inc();
            }
            HandoverEvent::Taken { token, pid, fd } => {
                self.set_pending_gauge();
                let Some(key) = self.offered.remove(&token) else {
                    return;
                };
                let Some(entry) = self.conns.get_mut(&key) else {
                    return;
                };
                let Phase::Offered {
                    echo_seq, since, ..
                } = entry.phase
                else {
                    return;
                };
                entry.phase = Phase::Live;
                entry.owner = Some((pid, fd));
                let switch = entry.switch;
                if let Some(c) = entry.cookie {
                    self.by_cookie.insert(c, key);
                }
                self.adopted(Mode::Handover, since);
                self.ack_later(switch, key, echo_seq);
            }
            HandoverEvent::Expired { token } => {
                self.set_pending_gauge();
                let Some(key) = self.offered.remove(&token) else {
                    return;
                };
                let Some(entry) = self.conns.remove(&key) else {
                    return;
                };
                self.metrics
                    .handover_refused
                    .with_label_values(&["not_accepted"])
                    .inc();
                if let Phase::Offered { echo_seq, .. } = entry.phase {
                    tracing::warn!(
                        conn_id = key.1,
                        "server did not accept the connection in time: silenced, NACK"
                    );
                    self.nack_later(
                        entry.switch,
                        key,
                        echo_seq,
                        NackReason::BacklogFull,
                        "server did not accept in time",
                    );
                }
            }
        }
    }

    fn set_pending_gauge(&self) {
        if let Some(h) = &self.handover {
            self.metrics.handover_pending.set(h.pending() as i64);
        }
    }

    /// Handed-over sockets the kernel freed: their connections ended.
    fn destroyed(&mut self) {
        let Some(w) = self.destroy.as_mut() else {
            return;
        };
        let d = w.read();
        if d.overflowed {
            self.metrics
                .handover_dropped
                .with_label_values(&["destroy_notifications_lost"])
                .inc();
            tracing::warn!("socket-destroy notifications were lost (netlink buffer full)");
        }
        for cookie in d.cookies {
            let Some(key) = self.by_cookie.remove(&cookie) else {
                continue;
            };
            if let Some(entry) = self.conns.remove(&key) {
                self.ended(entry.switch, key, entry.fp, CloseReason::ServerClose, 0, 0);
            }
        }
    }

    /// Warns, every so often, about handover services no server announced.
    fn warn_unserved(&mut self, now: Instant) {
        let Some(ho) = self.handover.as_ref() else {
            return;
        };
        if self
            .last_unserved_warn
            .is_some_and(|t| now < t + NO_SERVER_WARN)
        {
            return;
        }
        for s in &self.cfg.services {
            if s.mode == Mode::Handover && ho.servers_for(s.vip) == 0 {
                self.last_unserved_warn = Some(now);
                tracing::warn!(
                    vip = %s.vip,
                    socket = %ho.path().display(),
                    "no server has announced a handover listener for this service: start it with \
                     LD_PRELOAD={} BATON_HANDOVER_LISTEN={} BATON_HANDOVER_SOCKET={}; CREATEs are refused",
                    self.cfg.handover.library.display(),
                    s.vip,
                    ho.path().display()
                );
            }
        }
    }

    fn adopted(&mut self, mode: Mode, since: Instant) {
        let label = match mode {
            Mode::Relay => "relay",
            Mode::Listener => "listener",
            Mode::Handover => "handover",
        };
        self.metrics.adopted.with_label_values(&[label]).inc();
        self.metrics
            .adopt_seconds
            .observe(since.elapsed().as_secs_f64());
        self.metrics.active.set(self.active() as i64);
        self.adopted_in_period = self.adopted_in_period.saturating_add(1);
    }

    fn abort(&mut self, a: Abort, h: &Header, from: SocketAddr) {
        let key = (h.sender, h.conn_id);
        self.reasm.remove(h.sender, h.conn_id);
        if let Some(entry) = self.conns.remove(&key) {
            self.metrics.aborts.inc();
            tracing::info!(conn_id = h.conn_id, reason = %a.reason, "ABORT from switch");
            match entry.mode {
                Mode::Relay => {
                    self.relay.abort(self.poll.registry(), h.sender, h.conn_id);
                }
                // The application owns the socket: put it back into repair
                // mode through our duplicate. Nothing more reaches the client,
                // the application's next read or write fails, its close is silent.
                Mode::Listener => {
                    if let Some(fd) = &entry.hold {
                        relay::close_silently(fd.as_raw_fd());
                    }
                }
                // Not yet accepted: silence it through our copy. Accepted
                // (our ACK was lost): reach into the server for its copy.
                Mode::Handover => match entry.phase {
                    Phase::Offered { token, .. } => {
                        self.offered.remove(&token);
                        if let Some(ho) = self.handover.as_mut() {
                            ho.cancel(token);
                        }
                        self.set_pending_gauge();
                    }
                    _ => {
                        if let Some(c) = entry.cookie {
                            self.by_cookie.remove(&c);
                        }
                        if let Some((pid, fd)) = entry.owner {
                            if let Err(e) = crate::handover::silence_remote(pid, fd) {
                                tracing::warn!(conn_id = h.conn_id, pid, fd, error = %e,
                                    "ABORT after the server accepted: cannot silence its socket");
                            }
                        }
                    }
                },
            }
            self.remember_recent(key, entry.fp);
            self.metrics
                .closed
                .with_label_values(&[CloseReason::Aborted.label()])
                .inc();
            self.metrics.active.set(self.active() as i64);
        }
        // ACK only once acted upon (spec §5.2), for unknown ids too.
        let rh = h.reply(self.seq.next(), now_ms());
        self.send(
            from,
            &rh,
            &Body::Ack(Ack {
                echo_seq: h.msg_seq,
            }),
        );
    }

    fn acked(&mut self, a: Ack, h: &Header) {
        let key = (h.sender, h.conn_id);
        if self
            .pending_close
            .get(&key)
            .is_some_and(|p| p.header.msg_seq == a.echo_seq || p.tries > 0)
        {
            self.pending_close.remove(&key);
        }
    }

    fn relay_event(&mut self, ev: RelayEvent) {
        match ev {
            RelayEvent::Connected(meta) => {
                let Some(key) = self.key_of(&meta) else {
                    return;
                };
                let Some(entry) = self.conns.get_mut(&key) else {
                    return;
                };
                if let Phase::Connecting { echo_seq, since } = entry.phase {
                    entry.phase = Phase::Live;
                    let switch = entry.switch;
                    self.adopted(Mode::Relay, since);
                    self.ack_later(switch, key, echo_seq);
                }
            }
            RelayEvent::ConnectFailed(meta, why) => {
                let Some(key) = self.key_of(&meta) else {
                    return;
                };
                let Some(entry) = self.conns.remove(&key) else {
                    return;
                };
                if let Phase::Connecting { echo_seq, .. } = entry.phase {
                    tracing::warn!(conn_id = key.1, error = %why, "upstream connect failed: NACK");
                    self.nack_later(
                        entry.switch,
                        key,
                        echo_seq,
                        NackReason::Internal,
                        "upstream connect failed",
                    );
                }
            }
            RelayEvent::Finished {
                meta,
                end,
                from_client,
                to_client,
            } => {
                let Some(key) = self.key_of(&meta) else {
                    return;
                };
                let Some(entry) = self.conns.remove(&key) else {
                    return;
                };
                self.metrics
                    .relayed_bytes
                    .with_label_values(&["from_client"])
                    .inc_by(from_client);
                self.metrics
                    .relayed_bytes
                    .with_label_values(&["to_client"])
                    .inc_by(to_client);
                let reason = match end {
                    End::ClientFin => CloseReason::ClientFin,
                    End::ServerClose => CloseReason::ServerClose,
                    End::ClientReset => CloseReason::ClientReset,
                    End::ServerReset => CloseReason::ServerReset,
                    End::IdleTimeout => CloseReason::IdleTimeout,
                    End::Aborted => CloseReason::Aborted,
                    End::Shutdown => CloseReason::Shutdown,
                };
                let from_client = from_client.saturating_sub(entry.request_len);
                self.ended(entry.switch, key, entry.fp, reason, from_client, to_client);
            }
        }
    }

    /// ACKs a CREATE whose answer waited (upstream connect, server accept).
    fn ack_later(&mut self, switch: SocketAddr, key: (u32, u64), echo_seq: u64) {
        let h = Header {
            flags: 0,
            sender: self.local_node,
            receiver: key.0,
            conn_id: key.1,
            msg_seq: self.seq.next(),
            timestamp_ms: now_ms(),
        };
        self.send(switch, &h, &Body::Ack(Ack { echo_seq }));
    }

    /// NACKs a CREATE whose answer waited; the header is the CREATE's as
    /// [`Agent::nack`] expects it (it swaps sender and receiver).
    fn nack_later(
        &mut self,
        switch: SocketAddr,
        key: (u32, u64),
        echo_seq: u64,
        reason: NackReason,
        why: &str,
    ) {
        let h = Header {
            flags: 0,
            sender: key.0,
            receiver: self.local_node,
            conn_id: key.1,
            msg_seq: echo_seq,
            timestamp_ms: 0,
        };
        self.nack(switch, &h, reason, why);
    }

    fn key_of(&self, meta: &ConnMeta) -> Option<(u32, u64)> {
        let key = (meta.sender, meta.conn_id);
        self.conns.contains_key(&key).then_some(key)
    }

    /// An adopted connection ended: count it and tell the switch (CLOSE,
    /// retransmitted until ACKed).
    fn ended(
        &mut self,
        switch: SocketAddr,
        (sender, conn_id): (u32, u64),
        fp: Fingerprint,
        reason: CloseReason,
        from: u64,
        to: u64,
    ) {
        self.metrics
            .closed
            .with_label_values(&[reason.label()])
            .inc();
        self.metrics.active.set(self.active() as i64);
        self.remember_recent((sender, conn_id), fp);
        let header = Header {
            flags: 0,
            sender: self.local_node,
            receiver: sender,
            conn_id,
            msg_seq: self.seq.next(),
            timestamp_ms: now_ms(),
        };
        let close = Close {
            reason,
            bytes_from_client: from,
            bytes_to_client: to,
        };
        self.send(switch, &header, &Body::Close(close));
        let p = PendingClose {
            to: switch,
            header,
            close,
            tries: 0,
            next: Instant::now() + CLOSE_RTO,
        };
        self.pending_close.insert((sender, conn_id), p);
    }

    fn send_load(&mut self, period: Duration) {
        let per_sec =
            (u64::from(self.adopted_in_period) * 1000 / (period.as_millis().max(1) as u64)) as u32;
        self.adopted_in_period = 0;
        let cap = if self.draining.is_some() {
            0
        } else {
            (self.cfg.limits.max_active as usize).saturating_sub(self.active()) as u32
        };
        let load = Load {
            active_conns: self.active() as u32,
            adopted_per_sec: per_sec,
            capacity_hint: cap,
            interval_ms: period.as_millis().min(u32::MAX as u128) as u32,
        };
        for to in self.cfg.load_targets() {
            let h = Header {
                flags: 0,
                sender: self.local_node,
                receiver: node_id(to.ip()),
                conn_id: 0,
                msg_seq: self.seq.next(),
                timestamp_ms: now_ms(),
            };
            self.send(to, &h, &Body::Load(load));
        }
    }

    fn send(&mut self, to: SocketAddr, h: &Header, body: &Body<'_>) {
        let len = handoff_proto::frame_len(body);
        if len > self.out.len() {
            return;
        }
        let n = seal(h, body, self.keys.for_peer(h.receiver), &mut self.out);
        match self.udp.send_to(&self.out[..n], to) {
            Ok(_) => self
                .metrics
                .thop_tx
                .with_label_values(&[body.opcode().name()])
                .inc(),
            Err(e) => {
                tracing::warn!(%to, error = %e, opcode = body.opcode().name(), "THOP send failed")
            }
        }
    }
}

/// A group's id from its name or number.
fn group_id(g: &str) -> Option<u32> {
    if let Ok(n) = g.parse() {
        return Some(n);
    }
    let c = std::ffi::CString::new(g).ok()?;
    // SAFETY: getgrnam with a NUL-terminated name; the result is read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: non-null getgrnam results point at a valid struct group.
    (!gr.is_null()).then(|| unsafe { (*gr).gr_gid })
}
