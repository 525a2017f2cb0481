//! The agent's sans-IO handoff core: the THOP protocol of a backend, without
//! sockets, descriptors or clocks.
//!
//! The core owns what decides what the agent says to the switch: the receive
//! order (`docs/thop.md` §9: source allowed → parse → tag → receiver →
//! decode → sender is a configured switch → replay window → act), CREATE
//! reassembly, duplicate detection by the client's (address, ISN)
//! fingerprint, the table of connections and of recently ended ids, NACK
//! decisions, ABORT, CLOSE retransmission, LOAD reports and the graceful
//! drain. It never reads a clock and never touches a socket:
//!
//! - inputs are calls that take `now` (a monotonic [`Instant`] the caller
//!   read): [`Core::handle_frame`] (one received datagram; it also takes the
//!   wall clock, which the replay window needs for a sender's first frame),
//!   [`Core::adopted`] (the outcome of an [`Action::Adopt`]), [`Core::ended`]
//!   (an adopted connection ended), [`Core::stop`] and
//!   [`Core::handle_timeout`];
//! - outputs are [`Action`]s, taken with [`Core::poll_action`]: frames to
//!   send, sockets to adopt, silence or forget, the drain's end;
//! - [`Core::poll_timeout`] says when [`Core::handle_timeout`] has work
//!   (CLOSE retransmission, LOAD, reassembly and recent-id expiry, drain,
//!   the paced FLOWS of a resynchronisation).
//!
//! Every frame the core sends carries the agent's boot identity, drawn at
//! construction, so a switch learns from a new one that the agent restarted
//! and lost its sockets (`docs/thop.md` §4.3). The core remembers each
//! switch's boot in turn: a switch that restarted lost its table, and the
//! agent gives it back its live connections (§9.4, `recovery.rs`).
//!
//! THOP timestamps of the frames the core sends are the wall clock given at
//! construction plus the monotonic time since, so a step of the host's clock
//! does not move them (`docs/thop.md` §7.4).
//!
//! Metrics stay in the core: [`Metrics`] is counters and gauges in memory,
//! no I/O. Log lines (`tracing`) are written where a decision is taken,
//! rejected frames through a per-reason rate limiter driven by `now`.
//!
//! The event loop that feeds the core from the THOP socket and performs its
//! actions is [`crate::engine`]; `tests/core_scripts.rs` drives the core from
//! packetdrill-like scripts.
//!
//! Files: `receive.rs` (authentication, replay, dispatch by opcode),
//! `conns.rs` (duplicates, CREATE decisions, adoption outcomes, ABORT, ends),
//! `timers.rs` (CLOSE retries, recent ids, LOAD, drain), `recovery.rs`
//! (switch boots, resynchronisation, LOOKUP, holders), `log.rs`.

mod conns;
mod log;
mod receive;
mod recovery;
mod timers;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff_proto::{
    frame_len, node_id, seal, Body, Close, Header, Keyring, Now, Opcode, Reassembler,
    ReassemblyConfig, ReplayGuards, SeqCounter, TcpState, NOT_BEFORE_SLACK_MS,
};

use crate::config::{Config, Mode, SwitchAddr};
use crate::metrics::Metrics;
use crate::repair::AdoptError;
use crate::replay_state::ReplayState;

pub(crate) use log::LogLimiter;
pub use recovery::{MAX_HOLDERS, RESYNC_BURST, RESYNC_PACE};
pub use timers::{CLOSE_GRACE, CLOSE_RTO, CLOSE_TRIES, RECENT_TTL};

/// Largest frame the core seals.
const MAX_FRAME: usize = 65536;

/// A connection as THOP names it: the switch's node id and its connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// Node id of the switch that handed the connection off.
    pub sender: u32,
    /// The switch's connection id.
    pub conn_id: u64,
}

/// What the core asks its event loop to do.
#[derive(Debug)]
pub enum Action {
    /// Send this sealed THOP frame.
    Send {
        /// Destination (a switch).
        to: SocketAddr,
        /// The frame's opcode (for the transmit counter).
        opcode: Opcode,
        /// The frame, tagged.
        frame: Vec<u8>,
    },
    /// Adopt a connection with `TCP_REPAIR` and hand it to its service;
    /// report the outcome with [`Core::adopted`].
    Adopt(Box<AdoptOrder>),
    /// The switch aborted an adopted connection: make sure nothing more
    /// reaches the client (relay: drop both sides; listener: repair mode
    /// through the held duplicate; handover: cancel the offer or silence the
    /// server's copy). The connection is forgotten, as with [`Action::Forget`].
    Silence {
        /// The connection.
        conn: ConnKey,
        /// Its service's mode.
        mode: Mode,
    },
    /// The core no longer tracks this connection: drop what is held for it.
    Forget {
        /// The connection.
        conn: ConnKey,
    },
    /// The drain budget ran out with connections open: reset the relayed
    /// ones and close the listeners (listener and handover connections belong
    /// to the application and were forgotten).
    ResetAll,
    /// The drain is complete: the loop may exit.
    Stopped,
}

/// A complete CREATE to adopt.
#[derive(Debug, Clone)]
pub struct AdoptOrder {
    /// The connection.
    pub conn: ConnKey,
    /// Where its switch speaks from.
    pub switch: SocketAddr,
    /// The service's mode.
    pub mode: Mode,
    /// Relay mode: the local server.
    pub upstream: Option<SocketAddr>,
    /// The TCP state to rebuild.
    pub state: TcpState,
    /// The request bytes to put in the receive queue.
    pub request: Vec<u8>,
}

/// The outcome of an adoption, reported with [`Core::adopted`].
#[derive(Debug)]
pub enum Adoption {
    /// The application has the connection (listener mode; relay: upstream
    /// connected; handover: the server accepted it): ACK.
    Ready,
    /// Adopted; the ACK waits for [`Adoption::Ready`] (relay: connecting
    /// upstream; handover: offered to a server).
    Waiting,
    /// Not adopted, nothing left behind: NACK.
    Failed(AdoptFailure),
}

/// Why an adoption failed, which decides the NACK reason.
#[derive(Debug)]
pub enum AdoptFailure {
    /// `repair::adopt` failed (`BAD_STATE`, `ADDRESS_IN_USE`, `REPAIR_FAILED`).
    Repair(AdoptError),
    /// No room where the connection should go: listener backlog, no
    /// handover server, full queues, not accepted in time (`BACKLOG_FULL`).
    BacklogFull(&'static str),
    /// The local server refused the relay's connection, or the handover
    /// socket is not set up (`INTERNAL`).
    Internal(&'static str),
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
    fn of(st: &TcpState) -> Fingerprint {
        Fingerprint {
            client: st.client(),
            isn: st.client_isn,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// [`Action::Adopt`] issued, outcome not reported yet.
    Adopting { echo_seq: u64, since: Instant },
    /// Adopted, waiting for the application (relay connect, server accept).
    Waiting { echo_seq: u64, since: Instant },
    /// Acknowledged to the switch.
    Live,
}

#[derive(Debug, Clone)]
struct Entry {
    switch: SocketAddr,
    fp: Fingerprint,
    /// The virtual address and port the client connected to (with
    /// `fp.client`, the flow a LOOKUP or a resynchronisation names).
    vip: SocketAddr,
    mode: Mode,
    phase: Phase,
    request_len: u64,
    /// The boot of the switch process that handed it off (its CREATE's).
    origin_boot: u32,
    /// Switches other than the origin that asked for this connection
    /// (LOOKUP) and get its CLOSE too; at most [`MAX_HOLDERS`].
    holders: Vec<recovery::Holder>,
}

struct PendingClose {
    to: SocketAddr,
    header: Header,
    close: Close,
    tries: u32,
    next: Instant,
}

/// The agent's THOP state machine. See the module documentation.
pub struct Core {
    metrics: Arc<Metrics>,
    keys: Keyring,
    local_node: u32,
    switches: Vec<SwitchAddr>,
    /// Node ids of the configured switches: the only senders accepted.
    switch_nodes: Vec<u32>,
    services: HashMap<SocketAddr, (Mode, Option<SocketAddr>)>,
    max_active: usize,
    load_period: Duration,
    load_targets: Vec<SocketAddr>,
    drain_grace: Duration,
    replay: ReplayGuards,
    /// Where accepted sequence numbers are kept across restarts (none in
    /// the fuzzing harness and the sans-IO tests).
    replay_state: Option<ReplayState>,
    reasm: Reassembler,
    seq: SeqCounter,
    /// The monotonic and wall clocks at construction (THOP timestamps).
    start: Instant,
    start_wall_ms: u64,
    /// The latest `now` given.
    now: Instant,
    conns: HashMap<ConnKey, Entry>,
    /// Connections closed in the last [`RECENT_TTL`]: a retransmitted CREATE
    /// for one of them is acknowledged again, never adopted twice.
    recent: HashMap<ConnKey, (Instant, Fingerprint)>,
    /// `recent`'s entries in insertion order (= expiry order).
    recent_order: VecDeque<(Instant, ConnKey)>,
    pending_close: HashMap<ConnKey, PendingClose>,
    /// When each pending CLOSE is due; entries whose time no longer matches
    /// `pending_close` are stale and skipped.
    close_timers: BinaryHeap<Reverse<(Instant, ConnKey)>>,
    next_load: Option<Instant>,
    adopted_in_period: u32,
    /// Graceful stop: the deadline of the drain.
    draining: Option<Instant>,
    /// When nothing was open any more during the drain.
    drained_at: Option<Instant>,
    reset_sent: bool,
    stopped: bool,
    rejects: LogLimiter,
    out: VecDeque<Action>,
    /// This process's boot identity, in every frame sent (`docs/thop.md` §4.3).
    boot: u32,
    /// The last non-zero boot seen from each switch node.
    switch_boots: HashMap<u32, recovery::SwitchBoot>,
    /// Connections by (client, VIP) (IPv4-mapped addresses as IPv4), for
    /// LOOKUP.
    by_flow: HashMap<(SocketAddr, SocketAddr), ConnKey>,
    /// Resynchronisations under way, by switch node.
    resyncs: BTreeMap<u32, recovery::Resync>,
}

impl Core {
    /// A core for this configuration. `keys` is the keyring built from it
    /// (key files are read by the caller); `now` and `wall_ms` are the
    /// monotonic and wall clocks (ms since the Unix epoch) at start: frames
    /// stamped before the start (less a second) are refused.
    pub fn new(
        cfg: &Config,
        keys: Keyring,
        metrics: Arc<Metrics>,
        now: Instant,
        wall_ms: u64,
    ) -> Core {
        let services = cfg
            .services
            .iter()
            .map(|s| (s.vip, (s.mode, s.upstream)))
            .collect();
        let reasm = Reassembler::new(ReassemblyConfig {
            max_request_len: cfg.thop.max_request_bytes,
            max_pending: cfg.thop.max_pending_creates as usize,
            memory_limit: (cfg.thop.max_pending_creates as usize)
                .saturating_mul(64 * 1024)
                .max(1 << 20),
            timeout_ms: cfg.thop.reassembly_timeout_ms,
        });
        let start_now = Now {
            wall_ms,
            mono_ms: 0,
        };
        let load_period = Duration::from_millis(cfg.load.period_ms);
        Core {
            metrics,
            keys,
            local_node: node_id(cfg.thop.listen.ip()),
            switches: cfg.switches(),
            switch_nodes: cfg.switches().iter().map(|s| node_id(s.ip)).collect(),
            services,
            max_active: cfg.limits.max_active as usize,
            load_period,
            load_targets: cfg.load_targets(),
            drain_grace: Duration::from_secs(cfg.limits.drain_timeout_s),
            replay: ReplayGuards::new(cfg.thop.max_clock_skew_ms, 1024).with_start(
                start_now,
                NOT_BEFORE_SLACK_MS.min(cfg.thop.max_clock_skew_ms),
            ),
            replay_state: None,
            reasm,
            seq: SeqCounter::new(wall_ms),
            start: now,
            start_wall_ms: wall_ms,
            now,
            conns: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            pending_close: HashMap::new(),
            close_timers: BinaryHeap::new(),
            next_load: (!load_period.is_zero()).then_some(now),
            adopted_in_period: 0,
            draining: None,
            drained_at: None,
            reset_sent: false,
            stopped: false,
            rejects: LogLimiter::default(),
            out: VecDeque::new(),
            boot: recovery::draw_boot(),
            switch_boots: HashMap::new(),
            by_flow: HashMap::new(),
            resyncs: BTreeMap::new(),
        }
    }

    /// The same core with a chosen boot identity instead of a random one,
    /// so that tests can check the boot of every frame.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_boot(mut self, boot: u32) -> Core {
        self.boot = boot;
        self
    }

    /// This process's boot identity: random, non-zero, in the header of
    /// every frame the core sends (`docs/thop.md` §4.3).
    pub fn boot(&self) -> u32 {
        self.boot
    }

    /// The next action for the event loop, in the order decided.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// Connections adopted (or being adopted) and not yet ended.
    pub fn active(&self) -> usize {
        self.conns.len()
    }

    /// The mode of a tracked connection.
    pub fn mode_of(&self, conn: ConnKey) -> Option<Mode> {
        self.conns.get(&conn).map(|e| e.mode)
    }

    /// True once a stop was asked for.
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }

    /// This agent's THOP node id.
    pub fn local_node(&self) -> u32 {
        self.local_node
    }

    /// Graceful stop: refuse new CREATEs (NACK `SHUTTING_DOWN`), report
    /// capacity 0, let connections finish until `limits.drain_timeout_s`
    /// (at once when `immediate`), then [`Action::ResetAll`] and
    /// [`Action::Stopped`].
    pub fn stop(&mut self, now: Instant, immediate: bool) {
        self.now = now;
        if self.draining.is_none() {
            tracing::info!(
                open = self.active(),
                grace_s = self.drain_grace.as_secs(),
                "stopping: draining adopted connections"
            );
            self.draining = Some(now + self.drain_grace);
        }
        if immediate {
            self.draining = Some(now);
        }
    }

    /// This agent's THOP timestamp at `self.now`.
    fn stamp(&self) -> u64 {
        self.start_wall_ms + self.now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// The instant at which the THOP clock reads `stamp_ms`.
    fn instant_of_stamp(&self, stamp_ms: u64) -> Instant {
        self.start + Duration::from_millis(stamp_ms.saturating_sub(self.start_wall_ms))
    }

    /// Keeps the replay windows in `state` from now on, resuming each
    /// configured switch's window where the previous process left it.
    /// Returns the switches resumed.
    pub fn keep_replay_state(&mut self, state: ReplayState) -> usize {
        let mut resumed = 0;
        for (sender, highest) in state.entries() {
            if self.switch_nodes.contains(&sender) {
                self.replay.resume(sender, highest);
                resumed += 1;
            }
        }
        self.replay_state = Some(state);
        resumed
    }

    /// Records an accepted frame's sequence number in the replay state.
    fn remember_accepted(&mut self, sender: u32) {
        let (Some(st), Some(h)) = (self.replay_state.as_mut(), self.replay.highest(sender)) else {
            return;
        };
        if !st.record(sender, h) && st.warn_full() {
            tracing::warn!(
                sender = format_args!("{sender:#010x}"),
                "replay state file full: this switch's window is not kept across restarts"
            );
        }
    }

    /// Both clock readings for the replay check.
    fn replay_now(&self, wall_ms: u64) -> Now {
        Now {
            wall_ms,
            mono_ms: self.now.saturating_duration_since(self.start).as_millis() as u64,
        }
    }

    /// A header for a frame of ours to `receiver` about `conn_id`.
    fn header(&self, receiver: u32, conn_id: u64, flags: u16) -> Header {
        Header {
            flags,
            sender: self.local_node,
            receiver,
            boot: self.boot,
            conn_id,
            msg_seq: self.seq.next(),
            timestamp_ms: self.stamp(),
        }
    }

    /// Seals a frame (with the key for its receiver) and queues it.
    fn send(&mut self, to: SocketAddr, h: &Header, body: &Body<'_>) {
        let len = frame_len(body);
        if len > MAX_FRAME {
            return;
        }
        let mut frame = vec![0; len];
        let n = seal(h, body, self.keys.for_peer(h.receiver), &mut frame);
        frame.truncate(n);
        self.out.push_back(Action::Send {
            to,
            opcode: body.opcode(),
            frame,
        });
    }
}
