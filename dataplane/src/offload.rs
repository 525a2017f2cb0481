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
//! A SYN on an offloaded flow's 4-tuple retires the flow in the fast path:
//! its segments reach a worker again, so a client reusing the 4-tuple for a
//! new connection is answered by whichever worker its receive queue feeds,
//! without the old flow's entry relaying the new connection to the old
//! backend. Every flow carries its connection's owner tag; the old
//! connection's worker removes only what it still owns.
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
    /// Which connection the flow belongs to ([`owner_tag`]): a later
    /// connection on the same 4-tuple, answered by another worker, may
    /// take the key over, and the old one must then neither remove nor
    /// read it.
    pub owner: u32,
}

/// The owner tag of worker `worker`'s connection with serial `serial` (the
/// table entry's 24-bit generation): unique among the live connections of
/// up to 256 workers.
pub fn owner_tag(worker: u16, serial: u32) -> u32 {
    (u32::from(worker as u8) << 24) | (serial & 0x00ff_ffff)
}

/// What [`FlowOffload::remove`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The flow was the caller's and is gone from the fast path.
    Removed,
    /// Another connection on the same 4-tuple owns the key now (a worker
    /// answered its SYN and offloaded it); left in place.
    TakenOver,
    /// The key was not there, or the kernel refused the call.
    Failed,
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
    /// A SYN on the flow's 4-tuple made the fast path stop relaying it: its
    /// segments reach a worker again.
    pub retired: bool,
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
/// (one or two each), made a few times per connection, never per packet.
pub trait FlowOffload: Send {
    /// Relays `key`'s ordinary segments in the kernel from now on. An
    /// existing entry for the key (a retired flow of an earlier connection)
    /// is replaced.
    fn insert(&mut self, key: &OffloadKey, flow: &OffloadFlow) -> Result<(), OffloadError>;
    /// Stops relaying `key` in the kernel if connection `owner` still owns
    /// it.
    fn remove(&mut self, key: &OffloadKey, owner: u32) -> Removal;
    /// What the fast path saw of `key` for connection `owner`; `None` when
    /// the key is not offloaded or belongs to another connection.
    fn read(&mut self, key: &OffloadKey, owner: u32) -> Option<OffloadSeen>;
}
