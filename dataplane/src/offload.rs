//! Flows the kernel relays without the worker: the interface between the
//! engine and a backend's in-kernel fast path (the AF_XDP backend's XDP
//! program).
//!
//! When a connection enters FORWARDING the engine offers it to the fast path
//! ([`FlowOffload::insert`]); from then on its ordinary client segments (no
//! SYN, FIN or RST) get their MACs rewritten in the kernel and never reach the
//! worker. Everything that can change the connection's fate still does: the
//! engine keeps its table entry, judges FIN and RST itself, and removes the
//! flow when the entry goes ([`FlowOffload::remove`]). What only the fast path
//! sees — when the client was last heard from, and how far its sequence
//! numbers went — the engine reads back ([`FlowOffload::read`]) before it
//! decides on idleness or on a FIN/RST's window.
//!
//! A fast path that refuses a flow (map full, kernel error) costs nothing but
//! speed: the flow's packets keep reaching the worker, which forwards them as
//! before. The engine counts each refusal.

use std::time::Duration;

use crate::wire::Mac;

/// An offloaded flow's identity: the client's IPv4 address and port and the
/// service's VIP and port, addresses as they appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OffloadKey {
    /// Client IPv4 address, network order bytes.
    pub client: [u8; 4],
    /// Service VIP, network order bytes.
    pub vip: [u8; 4],
    /// Client TCP port (host order).
    pub client_port: u16,
    /// Service TCP port (host order).
    pub port: u16,
}

/// What the fast path needs to relay a flow and to keep its sequence state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadFlow {
    /// The backend's data MAC (new destination of every relayed frame).
    pub backend_mac: Mac,
    /// The client's next sequence number as the switch knows it.
    pub rcv_nxt: u32,
    /// The backend's window scale (bounds how far `rcv_nxt` may move).
    pub wshift: u8,
}

/// What the fast path saw of a flow since it was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadSeen {
    /// Time since the fast path last relayed a packet of the flow (or since
    /// the insert, when it relayed none).
    pub idle: Duration,
    /// The client's next sequence number, moved forward by relayed segments.
    pub rcv_nxt: u32,
    /// Packets the fast path relayed for the flow.
    pub packets: u64,
}

/// Why a flow was not offloaded.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// The fast path's flow table is full; the worker keeps forwarding.
    #[error("the fast path's flow table is full")]
    Full,
    /// The kernel refused the update.
    #[error("updating the fast path's flow table failed: {0}")]
    Os(#[from] std::io::Error),
}

/// One worker's handle on an in-kernel fast path. Calls are system calls
/// (one per insert, remove or read), made once or twice per connection, never
/// per packet.
pub trait FlowOffload: Send {
    /// Relays `key`'s ordinary segments in the kernel from now on.
    fn insert(&mut self, key: &OffloadKey, flow: &OffloadFlow) -> Result<(), OffloadError>;
    /// Stops relaying `key` in the kernel; false when it was not there.
    fn remove(&mut self, key: &OffloadKey) -> bool;
    /// What the fast path saw of `key`; `None` when it is not offloaded.
    fn read(&mut self, key: &OffloadKey) -> Option<OffloadSeen>;
}
