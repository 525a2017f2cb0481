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

use std::net::{IpAddr, SocketAddr};

/// Index of a backend in the control plane's registry (stable across reloads
/// for a backend that keeps its name).
pub type BackendId = u32;

/// Identifies one connection of one worker; opaque to the control plane,
/// echoed back in the decision. Carries a generation so a stale decision for a
/// reused table slot is recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnToken {
    pub worker: u16,
    pub slot: u32,
    pub generation: u32,
}

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
    /// A LOAD frame from the agent at this THOP address.
    Load { from: SocketAddr, report: LoadReport },
}

/// What the control plane tells workers.
#[derive(Debug, Clone)]
pub enum WorkerCommand {
    /// Stop accepting new connections (SYN → RST); finish the others.
    Drain,
    /// Exit the loop once the table is empty or at once if `now` is set.
    Stop { now: bool },
}
