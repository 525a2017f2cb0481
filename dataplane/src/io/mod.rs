//! Packet I/O: the one interface every backend (in-memory, AF_PACKET, AF_XDP, DPDK)
//! implements, and that the worker loop is generic over.
//!
//! A backend hands the worker *owned* buffers. The worker may rewrite a
//! received buffer in place and put it on the transmit list (zero-copy
//! forwarding), allocate a fresh one for a packet it originates (SYN/ACK, THOP,
//! ARP), or simply drop it (which returns it to the backend's pool).

use std::sync::Arc;
use std::time::Duration;

use crate::doorbell::Doorbell;

pub mod af_xdp;
pub mod afpacket;
pub mod config;
pub mod dpdk;
/// Seeded fault injection (feature `testing`: tests and the test bed only).
#[cfg(feature = "testing")]
pub mod faulty;
pub mod memory;
pub mod netdev;
pub mod poll;
pub mod port;
pub mod registry;

pub use af_xdp::{AfXdpConfig, FastPath, XdpAttach, XdpBind};
pub use afpacket::{AfPacketConfig, AfPacketRing};
pub use config::PollMode;
pub use dpdk::{DpdkConfig, DpdkPort};
pub use port::{FastPathStats, IoError, LinkStatus, PortMonitor, PortStats};
pub use registry::{open, AnyBuf, AnyQueue, IoConfig};

/// One packet buffer owned by the worker. Dropping it returns it to its pool.
pub trait PacketBuf {
    /// The frame bytes (Ethernet header first).
    fn data(&self) -> &[u8];
    /// The frame bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Sets the frame length; false (and no change) when `len` exceeds capacity.
    fn set_len(&mut self, len: usize) -> bool;
    /// The largest frame this buffer can hold.
    fn capacity(&self) -> usize;
}

/// Counters a backend keeps about its own port/queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IoStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames the backend could not hand over (ring full, no buffers).
    pub rx_dropped: u64,
    /// Frames the worker gave that were not sent.
    pub tx_dropped: u64,
}

/// One worker's queue pair on a port.
pub trait PacketIo {
    type Buf: PacketBuf;

    /// Appends up to `max` received frames to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Vec<Self::Buf>, max: usize) -> usize;

    /// A fresh buffer for a frame the worker originates; `None` when the pool
    /// is empty (the caller counts a drop).
    fn alloc(&mut self) -> Option<Self::Buf>;

    /// Sends frames from the front of `pkts`, removing those it took; frames
    /// left in `pkts` were not sent (queue full) and stay the caller's.
    fn tx_burst(&mut self, pkts: &mut Vec<Self::Buf>) -> usize;

    /// Blocks for at most `timeout` until a frame may be ready or `bell`
    /// rings (adaptive polling when idle). A backend polls the doorbell's
    /// eventfd beside its own descriptor, or alone when it has none, and
    /// must read it whenever it was readable ([`Doorbell::poll`] does both).
    fn wait(&mut self, timeout: Duration, bell: &Doorbell) {
        bell.poll(None, timeout);
    }

    /// Port/queue counters.
    fn stats(&self) -> IoStats;

    /// The queue's handle on an in-kernel fast path for FORWARDING flows,
    /// taken once by the worker that owns the queue; `None` for a backend
    /// without one (or when it is switched off).
    fn take_offload(&mut self) -> Option<Box<dyn crate::offload::FlowOffload>> {
        None
    }
}

/// A real port's queue: what [`AnyQueue`] needs from a backend besides
/// [`PacketIo`]. Every backend in [`registry`] implements it.
pub trait PortQueue: PacketIo {
    /// The monitor shared by all queues of the port.
    fn monitor(&self) -> Arc<dyn PortMonitor>;
    /// The port's MAC address (source of frames the worker originates).
    fn mac(&self) -> [u8; 6];
    /// This queue's index (= the worker it belongs to).
    fn index(&self) -> usize;
    /// Hands up to `max` received frames to `push`; returns how many (lets
    /// [`AnyQueue`] wrap each buffer without an intermediate vector).
    fn rx_burst_with(&mut self, max: usize, push: impl FnMut(Self::Buf)) -> usize;
    /// An empty vector kept in the queue, lent to [`AnyQueue`]'s transmit
    /// path so it can unwrap buffers without allocating.
    fn tx_scratch(&mut self) -> &mut Vec<Self::Buf>;
}
