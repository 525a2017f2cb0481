//! The sans-IO core of one worker: the modified TCP state machine over the
//! worker's connection table.
//!
//! Inputs are `handle_*(now, …)` calls; outputs go to a [`Sink`] (frames to
//! transmit, dispatch requests, events, replies relayed to other workers).
//! The engine never reads a clock, never touches a socket or a queue; `now`
//! is monotonic nanoseconds. [`Engine::poll_timeout`] says when to call
//! [`Engine::handle_timeout`] next. This is what the scenario tests, the fuzz
//! target and the benchmarks drive directly.
//!
//! Route before you process: every TCP segment is first mapped to its service
//! and table slot; the slot's state decides which file handles it —
//! `handshake.rs` (LISTEN, SYN_RCVD, SYN cookies), `request.rs` (WAITHEADER,
//! the switch's own responses, CLOSING, TIME_WAIT), `handoff.rs` (DISPATCH,
//! HANDOFF, THOP), `forward.rs` (FORWARDING).
//!
//! A connection's state is stored in two shapes (the slot, and for
//! WAITHEADER to CLOSING the session's phase) by code in all those files, so
//! none of them sets it on its own authority: each state change asks
//! `Engine::apply`, which answers from the one table in `state.rs` (or
//! refuses an edge the table lacks), and stores that answer; debug builds
//! check the stored state against it (`Engine::stored`).

mod aborts;
mod forward;
mod handoff;
mod handshake;
mod offload;
mod recovery;
mod request;
pub mod session;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use handoff_proto::{Key, Keyring};

use crate::config::{ConfigError, WorkerConfig};
use crate::counters::{bump, CloseReason, Counters, DropReason};
use crate::dispatch::{DispatchRequest, WorkerEvent};
use crate::io::PacketBuf;
use crate::peer::PeerMsg;
use crate::shared::Shared;
use crate::state::{transition, Event, State};
use crate::syncookie::Secrets;
use crate::table::{ConnTable, FlowKey, Ms, Slot};
use crate::wire::{self, mld, nd, Frame, Mac, TcpOpts, TcpOut, TcpSeg, Verify};

pub use forward::{DirectRouting, Forwarder};
use session::{Phase, Session};

/// Where the engine's outputs go. The worker loop implements it over its
/// packet I/O and queues; tests implement it over vectors.
pub trait Sink<B> {
    /// A buffer for a frame the switch originates.
    fn alloc(&mut self) -> Option<B>;
    /// Queues a frame for transmission.
    fn send(&mut self, pkt: B);
    /// Queues a dispatch request; gives it back when the queue is full
    /// (by value: the request owns pooled buffers that must come back).
    #[allow(clippy::result_large_err)]
    fn dispatch(&mut self, req: DispatchRequest) -> Result<(), DispatchRequest>;
    /// Reports an event to the control plane; false when the queue is full.
    fn event(&mut self, ev: WorkerEvent) -> bool;
    /// Relays a THOP reply to the worker that owns the connection.
    fn relay(&mut self, worker: u16, msg: PeerMsg) -> bool;
}

/// A configured service with its address in the forms the hot path needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Svc {
    pub vip: IpAddr,
    pub vip16: [u8; 16],
    pub port: u16,
    /// The IPv4 VIP as the four bytes appear on the wire (0 for IPv6).
    pub vip4_be: u32,
    /// A TLS service: WAITHEADER waits for a ClientHello, refusals are alerts.
    pub tls: bool,
}

/// One worker's state machine.
pub struct Engine<B: PacketBuf, F: Forwarder = DirectRouting> {
    pub(crate) cfg: WorkerConfig,
    pub(crate) index: u16,
    pub(crate) svcs: Vec<Svc>,
    pub(crate) table: ConnTable,
    /// How this switch instance numbers its connections in THOP.
    pub(crate) ids: crate::connid::IdLayout,
    /// ABORTs retransmitted until the agent acknowledges them.
    pub(crate) aborts: aborts::PendingAborts,
    pub(crate) sessions: Vec<Session<B>>,
    pub(crate) free_sessions: Vec<u32>,
    pub(crate) secrets: Secrets,
    /// The switch's keys; frames to an agent are tagged with the key bound
    /// to it, else the current key (`Keyring::for_peer`).
    pub(crate) keys: Keyring,
    pub(crate) node: u32,
    /// The THOP node id of the switch's IPv6 data address (dual stack).
    pub(crate) node6: Option<u32>,
    /// The link-local IPv6 address derived from the data MAC.
    pub(crate) link_local: Ipv6Addr,
    /// The switch's IPv6 addresses it answers neighbour discovery for and
    /// announces (the link-local one, the IPv6 data address, the IPv6
    /// VIPs), and their solicited-node groups; both empty on a switch with
    /// neither an IPv6 data address nor an IPv6 VIP.
    pub(crate) own6: Vec<Ipv6Addr>,
    pub(crate) groups6: Vec<Ipv6Addr>,
    /// When this worker last answered an MLD query (ms), to bound reports.
    pub(crate) last_mld_report: Option<Ms>,
    /// Agent node id by backend id, learnt from decisions: a CLOSE must
    /// come from the agent the connection was handed to.
    pub(crate) backend_nodes: Vec<u32>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) fwd: F,
    pub(crate) syn_rcvd: usize,
    /// Client packets held by all sessions together (at most `held_capacity`).
    pub(crate) held_total: usize,
    /// Connections and sessions per client address (per-client limits).
    pub(crate) clients: crate::clients::ClientCounts,
    /// Table entries from which connections get the pressure holds.
    pub(crate) table_pressure: usize,
    /// Sessions in use from which connections get the pressure holds.
    pub(crate) session_pressure: usize,
    /// Where the next search for an idle FORWARDING entry to evict starts.
    pub(crate) evict_cursor: u32,
    pub(crate) draining: bool,
    /// Minute of the last SYN cookie sent (cookie ACKs are checked only then).
    pub(crate) last_cookie_min: Option<u64>,
    pub(crate) header_pool: Vec<Vec<u8>>,
    pub(crate) expired: Vec<u32>,
    pub(crate) now_ms: Ms,
    /// `now` as given (ns), for the wall-clock THOP timestamps.
    pub(crate) now_ns: u64,
    pub(crate) started: bool,
    /// Decides first dispatches on this thread where the control plane's
    /// snapshot allows (None: every request goes to the control plane).
    pub(crate) decider: Option<Box<dyn crate::dispatch::LocalDecider>>,
    /// The in-kernel fast path FORWARDING flows are offered to, if the
    /// packet I/O backend has one.
    pub(crate) offload: Option<Box<dyn crate::offload::FlowOffload>>,
    /// Flows recovered from the agents (`recovery.rs`).
    pub(crate) rec: recovery::RecoveryState<B>,
}

/// The IPv6 addresses the switch of `cfg` answers for: its link-local
/// address, its IPv6 data address and the IPv6 VIPs, without repeats; none
/// when it has neither an IPv6 data address nor an IPv6 VIP.
fn own_ipv6(cfg: &WorkerConfig) -> Vec<Ipv6Addr> {
    let mut own = vec![nd::link_local(cfg.mac)];
    let vips = cfg.services.iter().map(|s| s.vip);
    for ip in cfg.data_ip6().map(IpAddr::V6).into_iter().chain(vips) {
        if let IpAddr::V6(a) = ip {
            if !own.contains(&a) {
                own.push(a);
            }
        }
    }
    if own.len() == 1 {
        own.clear();
    }
    own
}

#[inline]
pub(crate) fn ms_of(now: u64) -> Ms {
    (now / 1_000_000) as Ms
}

/// True when a retransmission count kept in a `u8` has reached `limit`
/// (a limit above 255 counts as 255: the counter saturates there).
#[inline]
pub(crate) fn retries_exhausted(retries: u8, limit: u32) -> bool {
    retries as u32 >= limit.min(u8::MAX as u32)
}

#[inline]
pub(crate) fn dur_ms(d: std::time::Duration) -> u32 {
    d.as_millis().clamp(1, (i32::MAX / 2) as u128) as u32
}

impl<B: PacketBuf> Engine<B, DirectRouting> {
    /// An engine for worker `index` with L2 direct-routing forwarding.
    pub fn new(
        index: u16,
        cfg: &WorkerConfig,
        counters: Arc<Counters>,
        shared: Arc<Shared>,
    ) -> Result<Self, ConfigError> {
        let fwd = DirectRouting::new(cfg.mac);
        Self::with_forwarder(index, cfg, counters, shared, fwd)
    }
}

impl<B: PacketBuf, F: Forwarder> Engine<B, F> {
    /// An engine with a custom forwarding step.
    pub fn with_forwarder(
        index: u16,
        cfg: &WorkerConfig,
        counters: Arc<Counters>,
        shared: Arc<Shared>,
        fwd: F,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let svcs = cfg
            .services
            .iter()
            .map(|s| Svc {
                vip: s.vip,
                vip16: FlowKey::new(s.vip, 0, 0).client,
                port: s.port,
                vip4_be: match s.vip {
                    IpAddr::V4(a) => u32::from_ne_bytes(a.octets()),
                    IpAddr::V6(_) => 0,
                },
                tls: s.protocol == crate::config::Protocol::Tls,
            })
            .collect();
        let secrets = Secrets::new(cfg.secret);
        let mut keys = None::<Keyring>;
        for (id, k) in &cfg.thop.keys {
            let key = Key::new(*id, *k);
            match keys.as_mut() {
                None => keys = Some(Keyring::new(key)),
                Some(r) => r.insert(key),
            }
        }
        let mut keys = keys.ok_or(ConfigError::MissingKey(cfg.thop.key_id))?;
        keys.set_current(cfg.thop.key_id);
        for (node, kid) in &cfg.thop.peers {
            keys.bind(*kid, [*node]);
        }
        for (ip, mac) in &cfg.static_macs {
            shared.arp.set_static(*ip, *mac);
        }
        let ids = crate::connid::IdLayout::new(cfg.boot as u8);
        let mut table = ConnTable::new(cfg.table_capacity, secrets.table_seed(), 0);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        counters
            .table_capacity
            .store(table.capacity() as u64, relaxed);
        counters
            .pending_capacity
            .store(cfg.pending_capacity as u64, relaxed);
        // A random first serial: ids of this instance also differ from those
        // of an earlier one that drew the same boot part.
        let start = u32::from_le_bytes(
            crate::config::random_secret()[..4]
                .try_into()
                .unwrap_or([0; 4]),
        );
        table.set_serial(start);
        let limits_on = cfg.client_max_connections > 0 || cfg.client_max_pending > 0;
        let client_seed = secrets
            .table_seed()
            .map(|w| w.rotate_left(29) ^ 0x5bd1_e995);
        let at_fill = |n: usize| ((n as f64 * cfg.pressure_threshold).ceil() as usize).max(1);
        let own6 = own_ipv6(cfg);
        Ok(Engine {
            clients: crate::clients::ClientCounts::new(
                limits_on.then_some(cfg.table_capacity),
                client_seed,
            ),
            table_pressure: at_fill(cfg.table_capacity),
            session_pressure: at_fill(cfg.pending_capacity),
            evict_cursor: 0,
            table,
            ids,
            aborts: aborts::PendingAborts::new(cfg.pending_capacity),
            sessions: Vec::with_capacity(cfg.pending_capacity),
            free_sessions: Vec::with_capacity(cfg.pending_capacity),
            node: handoff_proto::node_id(cfg.ip),
            node6: cfg.ip6.map(|a| handoff_proto::node_id(IpAddr::V6(a))),
            link_local: nd::link_local(cfg.mac),
            own6: own6.clone(),
            groups6: {
                let mut g: Vec<Ipv6Addr> = own6.iter().map(|a| nd::solicited_node(*a)).collect();
                g.sort();
                g.dedup();
                g
            },
            last_mld_report: None,
            backend_nodes: Vec::new(),
            header_pool: Vec::new(),
            expired: Vec::with_capacity(1024),
            cfg: cfg.clone(),
            index,
            svcs,
            secrets,
            keys,
            counters,
            shared,
            fwd,
            syn_rcvd: 0,
            held_total: 0,
            draining: false,
            last_cookie_min: None,
            now_ms: 0,
            now_ns: 0,
            started: false,
            decider: None,
            offload: None,
            rec: recovery::RecoveryState::new(cfg.recovery.lookups_per_sec),
        })
    }

    #[inline(always)]
    pub(crate) fn set_now(&mut self, now: u64) {
        self.now_ms = ms_of(now);
        self.now_ns = now;
    }

    /// Lets this engine decide first dispatches itself where `d` can.
    pub fn set_decider(&mut self, d: Box<dyn crate::dispatch::LocalDecider>) {
        self.decider = Some(d);
    }

    /// Hands a new routing snapshot to the decider (ignored without one).
    pub fn install_routing(&mut self, u: crate::dispatch::RoutingUpdate) {
        if let Some(d) = self.decider.as_mut() {
            d.install(u);
        }
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Connections in the table.
    pub fn connections(&self) -> usize {
        self.table.len()
    }

    /// Connections a graceful stop waits for: all of them, or with flow
    /// recovery on only those no agent holds yet (SYN_RCVD, WAITHEADER to
    /// HANDOFF, the switch's own responses) — a FORWARDING connection is
    /// recovered by the next process from its agent.
    pub fn unfinished(&self) -> usize {
        if self.cfg.recovery.enabled {
            self.sessions.len() - self.free_sessions.len() + self.syn_rcvd
        } else {
            self.table.len()
        }
    }

    /// Bytes of memory per table entry (bucket array included).
    pub fn bytes_per_entry(&self) -> f64 {
        self.table.bytes_per_entry()
    }

    /// Puts a FORWARDING entry straight into the table (benchmarks and
    /// tests that need many live entries without a million handshakes).
    #[cfg(any(test, feature = "testing"))]
    pub fn insert_forwarding(
        &mut self,
        client: IpAddr,
        port: u16,
        svc: u16,
        backend: u32,
        mac: Mac,
    ) -> bool {
        let key = FlowKey::new(client, port, svc);
        let h = self.table.hash(&key);
        if self.table.lookup(&key, h).is_some() {
            return false;
        }
        let Ok(i) = self.table.insert(
            key,
            h,
            Slot::Forwarding {
                mac,
                backend,
                fin: false,
                closed: false,
                rcv_nxt: 0,
                wshift: self.cfg.tcp.window_scale,
                offloaded: false,
            },
        ) else {
            return false;
        };
        self.clients.add(&key.client, 1, 0);
        // Not a transition (no connection went through the handshake): the
        // entry is placed in FORWARDING, counted as one.
        self.counters.transition(None, State::Forwarding.gauge());
        self.stored(i, State::Forwarding);
        self.table.get_mut(i).last_seen = self.now_ms;
        self.table
            .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.idle_timeout)));
        self.offload_insert(i);
        true
    }

    /// Stop accepting new connections (a SYN is answered with RST).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Counts the connections a stopping worker leaves behind before
    /// handoff (SYN_RCVD entries and sessions) as aborted `stopped`; returns
    /// how many. Called once, when the worker's loop ends.
    pub fn count_abandoned(&mut self) -> u64 {
        let sessions = self.sessions.len() - self.free_sessions.len();
        let n = (sessions + self.syn_rcvd) as u64;
        self.counters
            .abort_n(crate::counters::AbortReason::Stopped, n);
        n
    }

    /// The state of the connection from `client` to service `svc`, if any.
    pub fn state_of(&self, client: IpAddr, port: u16, svc: u16) -> Option<State> {
        let key = FlowKey::new(client, port, svc);
        let i = self.table.lookup(&key, self.table.hash(&key))?;
        Some(self.state_at(i))
    }

    pub(crate) fn state_at(&self, i: u32) -> State {
        match self.table.get(i).slot {
            Slot::Free => State::Closed,
            Slot::SynRcvd { .. } => State::SynRcvd,
            Slot::Forwarding { closed: true, .. } => State::ForwardingClosed,
            Slot::Forwarding { fin: false, .. } => State::Forwarding,
            Slot::Forwarding { fin: true, .. } => State::ForwardingFin,
            Slot::TimeWait { .. } => State::TimeWait,
            Slot::Session(s) => match self.sessions[s as usize].phase {
                Phase::WaitHeader => State::WaitHeader,
                Phase::Dispatch => State::Dispatch,
                Phase::Handoff => State::Handoff,
                Phase::Closing => State::Closing,
            },
        }
    }

    /// The one place a connection changes state: looks up the row of
    /// [`crate::state::TABLE`] for `ev` in `from` and moves the state gauges.
    /// Returns the state the caller must store next (in the slot or the
    /// session's phase, then [`Self::stored`]); `None` when the table has no
    /// such row: the caller leaves the connection as it is and the attempt
    /// is counted `illegal_transitions` (a bug; debug builds stop). `from` is
    /// what slot `i` holds now, or LISTEN for an entry just created.
    #[must_use = "store the state the table answers, or leave the connection as it is"]
    #[inline]
    pub(crate) fn apply(&self, i: u32, from: State, ev: Event) -> Option<State> {
        debug_assert!(
            from == State::Listen || self.state_at(i) == from,
            "slot {i} is {} but {ev:?} is applied from {from}",
            self.state_at(i)
        );
        match transition(from, ev) {
            Ok(to) => {
                self.counters.transition(from.gauge(), to.gauge());
                Some(to)
            }
            Err(e) => {
                debug_assert!(false, "{e}");
                bump(&self.counters.illegal_transitions, 1);
                None
            }
        }
    }

    /// Debug builds: what slot `i` stores now reads as `to`, the state
    /// [`Self::apply`] answered (call it where the slot or phase is set).
    #[inline(always)]
    pub(crate) fn stored(&self, i: u32, to: State) {
        debug_assert_eq!(
            self.state_at(i),
            to,
            "slot {i}: the stored state is not the table's"
        );
    }

    /// Stores a session state the table answered as session `s`'s phase.
    #[inline]
    pub(crate) fn set_phase(&mut self, i: u32, s: u32, to: State) {
        if let Some(p) = Phase::of(to) {
            self.sessions[s as usize].phase = p;
        }
        self.stored(i, to);
    }

    /// Frees table slot `i` (and its session) by `ev`. False, with nothing
    /// freed, when the table has no such row from the slot's state.
    pub(crate) fn free_entry(&mut self, i: u32, ev: Event) -> bool {
        let from = self.state_at(i);
        let Some(to) = self.apply(i, from, ev) else {
            return false;
        };
        if from == State::SynRcvd {
            self.syn_rcvd = self.syn_rcvd.saturating_sub(1);
        }
        self.forget_entry(i);
        self.stored(i, to);
        true
    }

    /// Frees slot `i` and its session without a state change (an entry the
    /// caller created and could not use).
    pub(crate) fn forget_entry(&mut self, i: u32) {
        self.offload_remove(i);
        self.recovery_forget(i);
        if let Slot::Session(s) = self.table.get(i).slot {
            self.release_session(s);
        }
        let client = self.table.get(i).key.client;
        self.clients.add(&client, -1, 0);
        self.table.remove(i);
    }

    pub(crate) fn release_session(&mut self, s: u32) {
        self.drop_held(s);
        let entry = self.sessions[s as usize].entry;
        let client = self.table.get(entry).key.client;
        self.clients.add(&client, 0, -1);
        let sess = &mut self.sessions[s as usize];
        sess.phase = Phase::WaitHeader;
        self.free_sessions.push(s);
    }

    /// True when the table or the session pool is filled beyond
    /// `pressure_threshold`: connections then get the shorter holds.
    pub(crate) fn under_pressure(&self) -> bool {
        let sessions = self.sessions.len() - self.free_sessions.len();
        self.table.len() >= self.table_pressure || sessions >= self.session_pressure
    }

    /// `normal`, or `short` when under pressure and shorter.
    pub(crate) fn hold_for(
        &self,
        normal: std::time::Duration,
        short: std::time::Duration,
    ) -> std::time::Duration {
        if self.under_pressure() {
            normal.min(short)
        } else {
            normal
        }
    }

    /// Makes room in a full table by freeing the longest-idle FORWARDING
    /// entry among the next `EVICT_SCAN` slots, if it has been idle for
    /// `evict_idle_after`; true when an entry was freed.
    pub(crate) fn evict_idle(&mut self, out: &mut impl Sink<B>) -> bool {
        /// Slots looked at per attempt (bounded work per refused SYN).
        const EVICT_SCAN: u32 = 128;
        let min_idle = self.cfg.evict_idle_after;
        if min_idle.is_zero() {
            return false;
        }
        let min_idle = dur_ms(min_idle);
        let cap = self.table.capacity() as u32;
        let mut best: Option<(u32, u32)> = None;
        for k in 0..EVICT_SCAN.min(cap) {
            let i = (self.evict_cursor + k) % cap;
            let e = self.table.get(i);
            if !matches!(e.slot, Slot::Forwarding { .. }) {
                continue;
            }
            let idle = self.now_ms.wrapping_sub(e.last_seen);
            if (idle as i32) >= 0 && idle >= min_idle && best.is_none_or(|(_, b)| idle > b) {
                best = Some((i, idle));
            }
        }
        self.evict_cursor = (self.evict_cursor + EVICT_SCAN.min(cap)) % cap;
        let Some((i, _)) = best else {
            return false;
        };
        // An offloaded flow may have been busy in the kernel all along.
        self.offload_sync(i);
        let idle = self.now_ms.wrapping_sub(self.table.get(i).last_seen);
        if (idle as i32) < 0 || idle < min_idle {
            return false;
        }
        let Slot::Forwarding {
            backend, closed, ..
        } = self.table.get(i).slot
        else {
            return false;
        };
        if !self.free_entry(i, Event::Expire) {
            return false;
        }
        bump(&self.counters.closes[CloseReason::Evicted as usize], 1);
        if closed {
            // Reported to the control plane at THOP_CLOSE.
            return true;
        }
        if !out.event(WorkerEvent::Closed { backend }) {
            self.counters.count_drop(DropReason::QueueFull);
        }
        true
    }

    /// Returns session `s`'s held packets to the pool.
    pub(crate) fn drop_held(&mut self, s: u32) {
        let sess = &mut self.sessions[s as usize];
        let ack = usize::from(sess.held_ack.take().is_some());
        self.held_total = self.held_total.saturating_sub(sess.held.len() + ack);
        sess.held.clear();
        sess.held_ranges.clear();
    }

    /// A session from the pool for table slot `entry`.
    pub(crate) fn take_session(&mut self, entry: u32) -> Option<u32> {
        let s = self.alloc_session()?;
        self.bind_session(s, entry);
        Some(s)
    }

    /// A session from the pool, not yet bound to an entry (give it back to
    /// `free_sessions` if unused).
    pub(crate) fn alloc_session(&mut self) -> Option<u32> {
        match self.free_sessions.pop() {
            Some(s) => Some(s),
            None if self.sessions.len() < self.cfg.pending_capacity => {
                self.sessions.push(Session::new(
                    self.cfg.request_buffer,
                    self.cfg.handoff_hold,
                    self.cfg.dispatch_attempts as usize,
                ));
                Some((self.sessions.len() - 1) as u32)
            }
            None => None,
        }
    }

    /// Resets session `s` for the connection in table slot `entry`.
    pub(crate) fn bind_session(&mut self, s: u32, entry: u32) {
        self.sessions[s as usize].reset(entry);
        let client = self.table.get(entry).key.client;
        self.clients.add(&client, 0, 1);
    }

    #[inline]
    pub(crate) fn service_index(&self, ip: IpAddr, port: u16) -> Option<u16> {
        self.svcs
            .iter()
            .position(|s| s.port == port && s.vip == ip)
            .map(|i| i as u16)
    }

    fn is_ours(&self, ip: IpAddr) -> bool {
        self.is_data_addr(ip) || self.svcs.iter().any(|s| s.vip == ip)
    }

    /// One of the switch's own data addresses (not a VIP): the primary, the
    /// IPv6 one of a dual-stack port, the link-local one.
    pub(crate) fn is_data_addr(&self, ip: IpAddr) -> bool {
        ip == self.cfg.ip
            || match ip {
                IpAddr::V6(a) => Some(a) == self.cfg.ip6 || a == self.link_local,
                IpAddr::V4(_) => false,
            }
    }

    /// The switch's data address of `peer`'s family (THOP source), and its
    /// THOP node id; None when the switch has none of that family.
    pub(crate) fn own_addr_for(&self, peer: IpAddr) -> Option<(IpAddr, u32)> {
        if peer.is_ipv6() == self.cfg.ip.is_ipv6() {
            return Some((self.cfg.ip, self.node));
        }
        Some((IpAddr::V6(self.cfg.ip6?), self.node6?))
    }

    /// The TCP MSS the switch advertises to a client of `key`'s family:
    /// the profile's (sized for IPv4) less the 20 bytes IPv6's header adds.
    pub(crate) fn adv_mss(&self, key: &FlowKey) -> u16 {
        if key.client_ip().is_ipv6() {
            self.cfg
                .tcp
                .mss
                .saturating_sub(20)
                .max(handoff_proto::MIN_MSS)
        } else {
            self.cfg.tcp.mss
        }
    }

    /// Our TSval for `key` now (per-connection offset, 1 kHz).
    pub(crate) fn tsval(&self, key: &FlowKey) -> u32 {
        let s = &self.svcs[key.service as usize];
        self.now_ms
            .wrapping_add(self.secrets.ts_offset(key, &s.vip16, s.port))
    }

    /// The receive window we advertise for `sess` (scaled when negotiated).
    pub(crate) fn adv_window(&self, sess: &Session<B>) -> u16 {
        let w = sess.reasm.window();
        let w = if sess.client_ws.is_some() {
            w >> self.cfg.tcp.window_scale
        } else {
            w
        };
        w.min(65535) as u16
    }

    /// Builds and queues a TCP segment from service `key.service` to the client.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_tcp<S: Sink<B>>(
        &self,
        out: &mut S,
        key: &FlowKey,
        mac: Mac,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        opts: TcpOpts,
        payload: &[u8],
    ) -> bool {
        let Some(mut b) = out.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return false;
        };
        let svc = &self.svcs[key.service as usize];
        let t = TcpOut {
            src_mac: self.cfg.mac,
            dst_mac: mac,
            src: svc.vip,
            dst: key.client_ip(),
            src_port: svc.port,
            dst_port: key.client_port,
            seq,
            ack,
            flags,
            window,
            opts,
            payload,
        };
        let need = wire::tcp_frame_len(&t);
        if b.capacity() < need || !b.set_len(need) {
            self.counters.count_drop(DropReason::NoBuffer);
            return false;
        }
        match wire::emit_tcp(b.data_mut(), &t) {
            Some(n) => {
                b.set_len(n);
                self.transmit(out, b);
                true
            }
            None => {
                self.counters.count_drop(DropReason::NoBuffer);
                false
            }
        }
    }

    #[inline]
    pub(crate) fn transmit<S: Sink<B>>(&self, out: &mut S, b: B) {
        bump(&self.counters.tx_packets, 1);
        bump(&self.counters.tx_bytes, b.data().len() as u64);
        out.send(b);
    }

    /// Sends a RST for a segment that has no connection (RFC 9293 §3.10.7.1).
    pub(crate) fn send_reset_for<S: Sink<B>>(&self, out: &mut S, key: &FlowKey, seg: &TcpSeg) {
        use wire::flags::*;
        if seg.has(ACK) {
            self.send_tcp(
                out,
                key,
                seg.src_mac,
                seg.ack,
                0,
                RST,
                0,
                TcpOpts::default(),
                &[],
            );
        } else {
            let ack = seg.seq.wrapping_add(seg.seq_len());
            self.send_tcp(
                out,
                key,
                seg.src_mac,
                0,
                ack,
                RST | ACK,
                0,
                TcpOpts::default(),
                &[],
            );
        }
    }

    /// Announces the data address and every VIP (gratuitous ARP).
    pub fn start<S: Sink<B>>(&mut self, now: u64, out: &mut S) {
        self.set_now(now);
        if self.started {
            return;
        }
        self.started = true;
        if !self.cfg.gratuitous_arp || self.index != 0 {
            return;
        }
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        for ip in std::iter::once(self.cfg.ip).chain(self.svcs.iter().map(|s| s.vip)) {
            if let IpAddr::V4(a) = ip {
                if !ips.contains(&a) {
                    ips.push(a);
                }
            }
        }
        for a in ips {
            self.send_arp(out, true, wire::BROADCAST, a, a);
        }
        // A switch with IPv6 addresses announces them, and joins their
        // solicited-node groups (twice: a report may be lost).
        for &a in &self.own6 {
            let advert = nd::Out::Advert {
                target: a,
                to: None,
            };
            self.send_nd(out, a, advert);
        }
        for _ in 0..2 {
            self.send_mld_report(out, mld::CHANGE_TO_EXCLUDE);
        }
    }

    /// Reports the switch's groups to the link's MLD routers and snooping
    /// switches.
    fn send_mld_report<S: Sink<B>>(&self, out: &mut S, record: u8) {
        let groups = &self.groups6;
        if groups.is_empty() {
            return;
        }
        let Some(mut b) = out.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        let len = mld::report_len(groups.len());
        if !b.set_len(len) {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        }
        let (mac, src) = (self.cfg.mac, self.link_local);
        if mld::emit_report(b.data_mut(), mac, src, groups, record).is_some() {
            bump(&self.counters.mld_reports_sent, 1);
            self.transmit(out, b);
        }
    }

    /// An MLD query: the current state of the switch's groups, at most one
    /// report per half second per worker (a query flood costs little).
    fn on_mld_query<S: Sink<B>>(&mut self, out: &mut S) {
        let now = self.now_ms;
        let recent = self
            .last_mld_report
            .is_some_and(|t| now.wrapping_sub(t) < 500);
        if recent || self.groups6.is_empty() {
            return self.counters.count_drop(DropReason::Ignored);
        }
        self.last_mld_report = Some(now);
        self.send_mld_report(out, mld::MODE_IS_EXCLUDE);
    }

    /// Sends a neighbour solicitation or advertisement from `src`.
    pub(crate) fn send_nd<S: Sink<B>>(&self, out: &mut S, src: Ipv6Addr, msg: nd::Out) {
        let Some(mut b) = out.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        if !b.set_len(nd::FRAME_LEN) {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        }
        if nd::emit(b.data_mut(), self.cfg.mac, src, msg).is_some() {
            match msg {
                nd::Out::Solicit { .. } => bump(&self.counters.nd_solicits_sent, 1),
                nd::Out::Advert { .. } => bump(&self.counters.nd_adverts_sent, 1),
            }
            self.transmit(out, b);
        }
    }

    pub(crate) fn send_arp<S: Sink<B>>(
        &self,
        out: &mut S,
        request: bool,
        tha: Mac,
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    ) {
        let Some(mut b) = out.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        if !b.set_len(60) {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        }
        if wire::emit_arp(b.data_mut(), request, self.cfg.mac, spa, tha, tpa).is_some() {
            if request {
                bump(&self.counters.arp_requests_sent, 1);
            } else {
                bump(&self.counters.arp_replies_sent, 1);
            }
            self.transmit(out, b);
        }
    }

    /// Takes one received frame.
    pub fn handle_packet<S: Sink<B>>(&mut self, now: u64, pkt: B, out: &mut S) {
        self.set_now(now);
        bump(&self.counters.rx_packets, 1);
        bump(&self.counters.rx_bytes, pkt.data().len() as u64);
        let pkt = match self.forward_fast(pkt, out) {
            Ok(()) => return,
            Err(p) => p,
        };
        if let Some(seg) = wire::tcp4_fast(pkt.data()) {
            return self.on_tcp(now, pkt, seg, out);
        }
        let frame = match wire::parse(pkt.data(), Verify::Header) {
            Ok(f) => f,
            Err(r) => return self.counters.count_drop(r),
        };
        match frame {
            Frame::Tcp(seg) => self.on_tcp(now, pkt, seg, out),
            Frame::Udp(d) => self.on_udp(now, pkt, d, out),
            Frame::Arp(a) => self.on_arp(a, out),
            Frame::IcmpEcho { dst } => self.on_echo(pkt, dst, out),
            Frame::Nd(n) => self.on_nd(n, out),
            Frame::MldQuery => self.on_mld_query(out),
            Frame::TooBig { mtu, ours, peer } => self.on_too_big(pkt, mtu, ours, peer, out),
        }
    }

    fn on_tcp<S: Sink<B>>(&mut self, now: u64, pkt: B, seg: TcpSeg, out: &mut S) {
        let Some(svc) = self.service_index(seg.dst, seg.dst_port) else {
            return self.counters.count_drop(DropReason::NotForUs);
        };
        let key = FlowKey::new(seg.src, seg.src_port, svc);
        let h = self.table.hash(&key);
        let Some(i) = self.table.lookup(&key, h) else {
            return self.on_listen(now, key, h, pkt, seg, out);
        };
        if let Slot::Forwarding { .. } = self.table.get(i).slot {
            return self.on_forwarding(i, pkt, seg, out);
        }
        // Everything the switch terminates itself is checksummed in full.
        if !wire::tcp_seg_checksum_ok(pkt.data(), &seg) {
            return self.counters.count_drop(DropReason::BadChecksum);
        }
        match self.table.get(i).slot {
            Slot::SynRcvd { .. } => self.on_syn_rcvd(now, i, pkt, seg, out),
            Slot::Session(s) => self.on_session(now, i, s, pkt, seg, out),
            Slot::TimeWait { .. } => self.on_time_wait(now, i, key, h, pkt, seg, out),
            Slot::Forwarding { .. } | Slot::Free => self.counters.count_drop(DropReason::BadState),
        }
    }

    fn on_arp<S: Sink<B>>(&mut self, a: wire::Arp, out: &mut S) {
        use crate::arp::Learned;
        let now = self.now_ns / 1_000_000;
        let reply_to_us = !a.request && IpAddr::V4(a.target_ip) == self.cfg.ip;
        let sender = IpAddr::V4(a.sender_ip);
        let learned = self
            .shared
            .arp
            .learn(sender, a.sender_mac, now, reply_to_us);
        self.after_learn(learned, sender, a.sender_mac, out);
        if a.request && self.is_ours(IpAddr::V4(a.target_ip)) && a.sender_ip != a.target_ip {
            self.send_arp(out, false, a.sender_mac, a.target_ip, a.sender_ip);
            return;
        }
        if learned == Learned::Ignored {
            self.counters.count_drop(DropReason::Ignored);
        }
    }

    /// What a learnt neighbour (ARP or ND) sets off.
    fn after_learn<S: Sink<B>>(
        &mut self,
        learned: crate::arp::Learned,
        ip: IpAddr,
        mac: Mac,
        out: &mut S,
    ) {
        use crate::arp::Learned;
        match learned {
            Learned::Resolved => self.arp_learned(ip, mac, out),
            Learned::Changed => {
                bump(&self.counters.arp_mac_changes, 1);
                self.arp_learned(ip, mac, out);
            }
            Learned::Refused => self.counters.count_drop(DropReason::ArpUnsolicited),
            Learned::Confirmed | Learned::Ignored => {}
        }
    }

    /// A neighbour solicitation or advertisement: answer for the switch's
    /// own IPv6 addresses, learn the backends it asked about (the same rule
    /// as ARP: only a solicited advertisement to the switch may set or
    /// change a MAC; a solicitation naming the known MAC confirms it).
    fn on_nd<S: Sink<B>>(&mut self, n: nd::Nd, out: &mut S) {
        use crate::arp::Learned;
        let now = self.now_ns / 1_000_000;
        let (ip, mac, reply_to_us) = if n.solicit {
            (IpAddr::V6(n.src), n.lladdr, false)
        } else {
            let to_us = n.solicited && self.is_data_addr(IpAddr::V6(n.dst));
            (IpAddr::V6(n.target), n.lladdr, to_us)
        };
        let learned = match mac {
            Some(m) if !n.src.is_unspecified() => {
                let l = self.shared.arp.learn(ip, m, now, reply_to_us);
                self.after_learn(l, ip, m, out);
                l
            }
            _ => Learned::Ignored,
        };
        if n.solicit && self.is_ours(IpAddr::V6(n.target)) {
            let to = (n.src, n.lladdr.unwrap_or(n.src_mac));
            let advert = nd::Out::Advert {
                target: n.target,
                to: Some(to),
            };
            return self.send_nd(out, n.target, advert);
        }
        if learned == Learned::Ignored {
            self.counters.count_drop(DropReason::Ignored);
        }
    }

    /// ICMPv6 Packet Too Big about a segment from one of the VIPs. After a
    /// handoff the backend sends the responses from the VIP, so the message
    /// comes to the switch: it is relayed to that backend, whose kernel
    /// lowers the path MTU of the socket. While the switch itself answers
    /// (its own responses), the connection's segment size is lowered.
    fn on_too_big<S: Sink<B>>(
        &mut self,
        mut pkt: B,
        mtu: u32,
        ours: std::net::SocketAddr,
        peer: std::net::SocketAddr,
        out: &mut S,
    ) {
        let Some(svc) = self.service_index(ours.ip(), ours.port()) else {
            return self.counters.count_drop(DropReason::NotForUs);
        };
        let key = FlowKey::new(peer.ip(), peer.port(), svc);
        let h = self.table.hash(&key);
        let Some(i) = self.table.lookup(&key, h) else {
            return self.counters.count_drop(DropReason::NoFlow);
        };
        match self.table.get(i).slot {
            Slot::Forwarding { mac, .. } => {
                if wire::rewrite_macs(pkt.data_mut(), self.cfg.mac, mac) {
                    bump(&self.counters.icmp6_too_big, 1);
                    self.transmit(out, pkt);
                }
            }
            Slot::Session(s) => {
                // IPv6 links carry at least 1,280 bytes (RFC 8200 §5).
                let mss = (mtu.clamp(1280, 65535) - 60) as u16;
                let sess = &mut self.sessions[s as usize];
                sess.mss = sess.mss.min(mss);
                bump(&self.counters.icmp6_too_big, 1);
            }
            _ => self.counters.count_drop(DropReason::Ignored),
        }
    }

    fn on_echo<S: Sink<B>>(&mut self, mut pkt: B, dst: IpAddr, out: &mut S) {
        if !self.is_ours(dst) {
            return self.counters.count_drop(DropReason::NotForUs);
        }
        if wire::echo_reply_in_place(pkt.data_mut(), self.cfg.mac) {
            bump(&self.counters.icmp_echo_replies, 1);
            self.transmit(out, pkt);
        } else {
            self.counters.count_drop(DropReason::Malformed);
        }
    }

    /// When the next timer may fire (ns), if any is armed.
    pub fn poll_timeout(&self) -> Option<u64> {
        let table = self.table.next_expiry().map(|ms| {
            // Map the wrapping ms clock back onto the caller's ns clock.
            let ahead = ms.wrapping_sub(self.now_ms);
            let ahead = if (ahead as i32) < 0 { 0 } else { ahead };
            ((self.now_ns / 1_000_000) + ahead as u64) * 1_000_000
        });
        [table, self.aborts.next_due(), self.rec.due()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timers due at `now`.
    /// At most 8,192 timers run per call, so a burst of expiries (say, a
    /// million idle entries after a stall) cannot hold up packets; the rest
    /// stay due and run on the next calls.
    pub fn handle_timeout<S: Sink<B>>(&mut self, now: u64, out: &mut S) {
        self.set_now(now);
        let mut list = std::mem::take(&mut self.expired);
        for _ in 0..8 {
            list.clear();
            self.table.expire(self.now_ms, &mut list, 1024);
            if list.is_empty() {
                break;
            }
            for &i in &list {
                self.on_timer(now, i, out);
            }
        }
        self.expired = list;
        self.retransmit_aborts(out);
        self.poll_recovery(now, out);
    }

    fn on_timer<S: Sink<B>>(&mut self, now: u64, i: u32, out: &mut S) {
        match self.table.get(i).slot {
            Slot::Free => {}
            Slot::SynRcvd { .. } => self.synack_timer(i, out),
            Slot::Session(s) => match self.sessions[s as usize].phase {
                Phase::WaitHeader => self.header_timer(i, s, out),
                Phase::Dispatch => self.decision_timer(i, s, out),
                Phase::Handoff => self.handoff_timer(now, i, s, out),
                Phase::Closing => self.closing_timer(i, s, out),
            },
            Slot::Forwarding {
                fin,
                closed,
                backend,
                ..
            } => {
                // Both timers measure idleness: a client still sending
                // (a half-closed one acknowledging the response too) stays.
                // The fast path, if it relays the flow, knows best.
                self.offload_sync(i);
                let e = self.table.get(i);
                let limit = if fin || closed {
                    dur_ms(self.fin_timeout())
                } else {
                    dur_ms(self.cfg.idle_timeout)
                };
                let due = e.last_seen.wrapping_add(limit);
                if !crate::table::ms_le(due, self.now_ms) {
                    self.table.arm(i, due);
                    return;
                }
                if !self.free_entry(i, Event::Expire) || closed {
                    // Closed already: counted and reported at THOP_CLOSE.
                    return;
                }
                let reason = if fin {
                    CloseReason::Fin
                } else {
                    CloseReason::Idle
                };
                bump(&self.counters.closes[reason as usize], 1);
                if !out.event(WorkerEvent::Closed { backend }) {
                    self.counters.count_drop(DropReason::QueueFull);
                }
            }
            Slot::TimeWait { .. } => {
                self.free_entry(i, Event::Expire);
            }
        }
    }
}
