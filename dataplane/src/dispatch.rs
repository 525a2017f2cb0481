//! The dispatch interface between workers and the control-plane thread.
//!
//! A worker whose connection has a complete request header sends a
//! [`DispatchRequest`] on its request queue and goes on with other packets; the
//! control plane answers with a [`Decision`] on that worker's decision queue.
//! Header buffers travel inside the messages and come back with the decision,
//! so no allocation happens per request once the pools are warm.
//!
//! Workers also report what the control plane needs for health and load
//! (handoff outcomes, agents' LOAD reports, closes) as [`WorkerEvent`]s, and
//! take [`WorkerCommand`]s (backend table updates, drain, stop).
//!
//! A worker may also decide a request itself (see [`LocalDecider`]): the
//! control plane hands each worker a decider at start-up and publishes
//! immutable routing snapshots to it as [`WorkerCommand::Routing`]; the
//! worker reports what it decided as [`WorkerEvent::Decided`] so the control
//! plane's counts stay whole.
//!
//! Whatever the control plane sends a worker (a decision, a command) rings
//! that worker's [`Doorbell`] after the enqueue, so a worker asleep in
//! adaptive polling takes it at once rather than at its next frame or timer;
//! a worker that is awake costs the producer a fence and a load.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};

/// Index of a backend in the control plane's registry (stable across reloads
/// for a backend that keeps its name).
pub type BackendId = u32;

pub use crate::connid::ConnToken;

/// A request whose header is complete, waiting for a backend.
#[derive(Debug)]
pub struct DispatchRequest {
    pub token: ConnToken,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// The raw request header, request line to the blank line inclusive.
    /// Parse it with [`crate::http`]'s helpers (httparse); returned in the
    /// [`Decision`] for reuse.
    pub header: Vec<u8>,
    /// Backends already tried for this request (NACK or THOP timeout); the
    /// control plane must not pick them again.
    pub exclude: Vec<BackendId>,
    /// Monotonic nanoseconds at which the header became complete (for the
    /// handoff latency histogram and decision time).
    pub header_complete_ns: u64,
}

/// Where a connection goes: everything the worker needs to hand it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTarget {
    pub id: BackendId,
    /// The backend's data address (its MAC is resolved by ARP unless given).
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    /// The agent's THOP UDP address.
    pub thop: SocketAddr,
}

/// The control plane's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the connection off to this backend.
    Backend(BackendTarget),
    /// Answer the client with this HTTP status (e.g. 503: no backend) and close.
    Reject(u16),
}

/// Answer to one [`DispatchRequest`].
#[derive(Debug)]
pub struct Decision {
    pub token: ConnToken,
    pub verdict: Verdict,
    /// The pool that the routing rules chose (for counters and access logs).
    pub pool: u16,
    /// The request's header buffer, handed back for reuse.
    pub header: Vec<u8>,
}

/// How a handoff ended, reported by workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffOutcome {
    /// THOP_ACK arrived; the entry is FORWARDING.
    Acked,
    /// THOP_NACK with this reason code (see `handoff-proto`).
    Nacked(u16),
    /// No ACK within the retransmission budget.
    TimedOut,
    /// The client went away before the ACK.
    Aborted,
}

/// Agent load report (THOP LOAD), passed through to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadReport {
    pub active: u32,
    pub adopted_per_sec: u32,
    pub capacity_hint: u32,
}

/// What workers tell the control plane besides dispatch requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    Handoff {
        backend: BackendId,
        outcome: HandoffOutcome,
        /// Header complete → outcome, in nanoseconds.
        latency_ns: u64,
    },
    /// A FORWARDING connection to this backend ended (CLOSE, RST, timeout).
    Closed { backend: BackendId },
    /// A LOAD frame from the agent with this node id (authenticated; the
    /// key it was tagged with is bound to that node when the profile gives
    /// the backend a key of its own), received from `from`.
    Load {
        from: SocketAddr,
        sender: u32,
        report: LoadReport,
    },
    /// The worker decided a request itself ([`LocalDecider`]): what the
    /// control plane would have counted had it decided (dispatch counters,
    /// the backend's active count, the access log).
    Decided {
        worker: u16,
        /// The pool the routing rules chose.
        pool: u16,
        /// Index of the chosen member in the pool (`u16::MAX` when rejected).
        member: u16,
        /// The service and its rule that chose the pool (`u16::MAX`: the
        /// default pool), as [`LocalDecision`] has them.
        service: u16,
        rule: u16,
        /// The chosen backend; `None`: no usable member (rejected).
        backend: Option<BackendId>,
        client: SocketAddr,
        vip: SocketAddr,
        /// The request header when the decider sampled it for the access
        /// log (a pooled buffer, sent back as [`WorkerCommand::Recycle`]);
        /// empty otherwise (no allocation).
        header: Vec<u8>,
    },
    /// The agent with this node id reported another boot than before: it
    /// restarted (connections it relayed itself are gone).
    AgentRestarted { node: u32, old: u32, new: u32 },
}

/// The immutable routing state a [`LocalDecider`] decides from; opaque to
/// the dataplane (the control plane's type behind `Any`).
pub type RoutingUpdate = Arc<dyn Any + Send + Sync>;

/// A request a worker may decide itself: its first dispatch (nothing
/// excluded), with the header still in the connection's buffer (no copy).
#[derive(Debug, Clone, Copy)]
pub struct LocalRequest<'a> {
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// The raw request header, request line to the blank line inclusive.
    pub header: &'a [u8],
}

/// What a [`LocalDecider`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDecision {
    pub verdict: Verdict,
    pub pool: u16,
    /// Index of the chosen member in the pool (`u16::MAX` when rejected).
    pub member: u16,
    /// The service and the index of its rule that chose the pool
    /// (`u16::MAX`: no rule matched, the default pool).
    pub service: u16,
    pub rule: u16,
    /// Send the header along with the [`WorkerEvent::Decided`] for the access log.
    pub log: bool,
}

/// Decides requests on the worker thread when that needs no shared mutable
/// state (consistent hashing, sticky cookies, per-worker round-robin).
///
/// The control plane implements it (routing rules and policies live there;
/// the dataplane knows nothing of profiles) and hands one to each worker at
/// start-up. `decide` runs on the packet path: it must not block, lock or
/// allocate. `None` means "ask the control plane": the request then goes on
/// the queue exactly as without a decider (stateful policy, no snapshot yet,
/// a stale snapshot, an unparsable header…).
pub trait LocalDecider: Send {
    /// A new routing snapshot (taken between two packets, from the worker's
    /// command queue).
    fn install(&mut self, update: RoutingUpdate);
    /// The decision for `req`, or `None` to send it to the control plane.
    fn decide(&mut self, req: &LocalRequest<'_>) -> Option<LocalDecision>;
}

/// What the control plane tells workers.
#[derive(Debug, Clone)]
pub enum WorkerCommand {
    /// Stop accepting new connections (SYN → RST); finish the others.
    Drain,
    /// Exit the loop once the table is empty or at once if `now` is set.
    Stop { now: bool },
    /// A new routing snapshot for the worker's [`LocalDecider`].
    Routing(RoutingUpdate),
    /// A header buffer that came with a [`WorkerEvent::Decided`], handed back
    /// for reuse.
    Recycle(Vec<u8>),
    /// The agents of every configured backend, for flow recovery (HELLO,
    /// LOOKUP, installing what they report).
    Agents(Arc<Vec<crate::config::AgentPeer>>),
}

// ---------------------------------------------------------------------------
// Queue set between N workers and the control plane.
// ---------------------------------------------------------------------------

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::doorbell::Doorbell;
use crate::shared::Shared;

/// One worker's end of the queues.
#[derive(Debug)]
pub struct WorkerQueues {
    /// This worker's index (also its `ConnToken::worker`).
    pub index: u16,
    /// Complete request heads to the control plane (shared by all workers).
    pub requests: Sender<DispatchRequest>,
    /// Handoff outcomes, closes and LOAD reports to the control plane.
    pub events: Sender<WorkerEvent>,
    /// Decisions for this worker's connections.
    pub decisions: Receiver<Decision>,
    /// Commands for this worker.
    pub commands: Receiver<WorkerCommand>,
    /// State shared by all workers (THOP reply relay, ARP cache, clock).
    pub shared: Arc<Shared>,
    /// Rung by whoever queues work for this worker.
    pub doorbell: Arc<Doorbell>,
}

impl WorkerQueues {
    /// True when a decision, a command or a relayed THOP reply waits (what a
    /// worker checks after arming its doorbell, before it blocks).
    pub fn pending(&self) -> bool {
        !self.decisions.is_empty()
            || !self.commands.is_empty()
            || !self.shared.peers.is_empty_for(self.index)
    }
}

/// The control plane's end of the queues.
#[derive(Debug)]
pub struct ControlQueues {
    /// Requests from every worker.
    pub requests: Receiver<DispatchRequest>,
    /// Events from every worker.
    pub events: Receiver<WorkerEvent>,
    /// Decision queue per worker, indexed by `ConnToken::worker`.
    pub decisions: Vec<Sender<Decision>>,
    /// Command queue per worker.
    pub commands: Vec<Sender<WorkerCommand>>,
    /// Doorbell per worker, rung after each decision or command.
    pub doorbells: Vec<Arc<Doorbell>>,
}

impl ControlQueues {
    /// Sends a decision to the worker that owns `d.token` and wakes it if it
    /// sleeps; gives the decision back when that queue is full or the worker
    /// is gone.
    pub fn decide(&self, d: Decision) -> Result<(), Decision> {
        let w = d.token.worker as usize;
        let Some(q) = self.decisions.get(w) else {
            return Err(d);
        };
        q.try_send(d).map_err(|e| match e {
            TrySendError::Full(d) | TrySendError::Disconnected(d) => d,
        })?;
        self.doorbells[w].ring();
        Ok(())
    }

    /// Sends a command to every worker (blocking only if a queue is full).
    pub fn broadcast(&self, c: WorkerCommand) {
        for (q, bell) in self.commands.iter().zip(&self.doorbells) {
            let _ = q.send(c.clone());
            bell.ring();
        }
    }

    /// A handle that sends commands to (and wakes) every worker from any
    /// thread, e.g. the one that stops the switch.
    pub fn commander(&self) -> Commander {
        Commander {
            commands: self.commands.clone(),
            doorbells: self.doorbells.clone(),
        }
    }
}

/// Commands to every worker, from any thread; each send rings the worker.
#[derive(Debug, Clone)]
pub struct Commander {
    commands: Vec<Sender<WorkerCommand>>,
    doorbells: Vec<Arc<Doorbell>>,
}

impl Commander {
    /// Sends `c` to every worker without blocking (a full queue skips that
    /// worker) and wakes each.
    pub fn try_broadcast(&self, c: WorkerCommand) {
        for (q, bell) in self.commands.iter().zip(&self.doorbells) {
            let _ = q.try_send(c.clone());
            bell.ring();
        }
    }

    /// Wakes every sleeping worker, e.g. after setting a stop flag it checks
    /// before it sleeps.
    pub fn wake_all(&self) {
        for bell in &self.doorbells {
            bell.ring();
        }
    }
}

/// Builds the queues for `n_workers` workers, each bounded to `capacity`.
/// A full queue never blocks a worker: it counts a `queue_full` drop and, for
/// a request, answers the client 503.
pub fn channels(n_workers: usize, capacity: usize) -> (Vec<WorkerQueues>, ControlQueues) {
    let n = n_workers.clamp(1, u16::MAX as usize);
    let cap = capacity.max(1);
    let (req_tx, req_rx) = crossbeam_channel::bounded(cap * n);
    let (ev_tx, ev_rx) = crossbeam_channel::bounded(cap * n);
    let shared = Arc::new(Shared::new(n, cap));
    let mut workers = Vec::with_capacity(n);
    let mut decisions = Vec::with_capacity(n);
    let mut commands = Vec::with_capacity(n);
    let mut doorbells = Vec::with_capacity(n);
    for i in 0..n {
        let (d_tx, d_rx) = crossbeam_channel::bounded(cap);
        let (c_tx, c_rx) = crossbeam_channel::bounded(64);
        let bell = shared
            .peers
            .doorbell(i as u16)
            .expect("one doorbell per worker")
            .clone();
        decisions.push(d_tx);
        commands.push(c_tx);
        doorbells.push(bell.clone());
        workers.push(WorkerQueues {
            index: i as u16,
            requests: req_tx.clone(),
            events: ev_tx.clone(),
            decisions: d_rx,
            commands: c_rx,
            shared: shared.clone(),
            doorbell: bell,
        });
    }
    (
        workers,
        ControlQueues {
            requests: req_rx,
            events: ev_rx,
            decisions,
            commands,
            doorbells,
        },
    )
}
