//! Opening the data port: one queue per worker, whatever the backend.
//!
//! [`open`] turns an [`IoConfig`] into `workers` [`AnyQueue`]s, an enum over
//! the backends that implements [`PacketIo`], so the `baton` binary and the
//! worker loop need no generics over the backend. Each queue also hands out a
//! [`PortMonitor`] the control plane polls for link state, port counters and
//! driver extended statistics.

use std::sync::Arc;
use std::time::Duration;

use crate::doorbell::Doorbell;
use crate::io::afpacket::{AfPacketBuf, AfPacketQueue};
use crate::io::config::IoConfig;
#[cfg(feature = "dpdk")]
use crate::io::dpdk::{DpdkBuf, DpdkQueue};
use crate::io::{IoStats, PacketBuf, PacketIo};

/// Why the data port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("interface {0:?} does not exist (in this network namespace)")]
    NoSuchInterface(String),
    #[error("permission denied: {what}")]
    Permission { what: String },
    #[error("{call} failed on {iface}: {err}")]
    Os {
        call: &'static str,
        iface: String,
        err: std::io::Error,
    },
    #[error("bad packet I/O configuration: {0}")]
    Config(String),
    #[error("DPDK EAL initialisation failed: {0}")]
    EalInit(String),
    #[error("DPDK EAL is already initialised in this process with other arguments (it can start only once)")]
    EalAlreadyInitialised,
    #[error("DPDK port {port}: {call} failed: {reason}")]
    Dpdk {
        port: String,
        call: String,
        reason: String,
    },
    #[error("this build has no DPDK support (build with `--features dpdk`)")]
    DpdkNotBuilt,
}

/// Link state of the data port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    /// Mb/s, when the driver reports it.
    pub speed_mbps: Option<u32>,
    pub full_duplex: Option<bool>,
}

/// Port-wide counters (all queues), as the driver or kernel keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames the hardware or kernel dropped because a receive ring was full.
    pub rx_missed: u64,
    /// Receive errors reported by the driver.
    pub rx_errors: u64,
    /// Transmit errors reported by the driver.
    pub tx_errors: u64,
    /// Receive failures for want of a buffer (mbuf pool empty).
    pub rx_nombuf: u64,
}

/// Read-only view of the data port for the control plane (any thread).
pub trait PortMonitor: Send + Sync {
    /// The backend and device, e.g. `af_packet:veth0` or `dpdk:net_af_packet0`.
    fn name(&self) -> String;
    /// The port's MAC address.
    fn mac(&self) -> [u8; 6];
    /// Current link state (never blocks).
    fn link(&self) -> LinkStatus;
    /// Port-wide counters.
    fn stats(&self) -> PortStats;
    /// Driver extended statistics by name (DPDK xstats; per-queue and
    /// kernel ring counters for AF_PACKET).
    fn xstats(&self) -> Vec<(String, u64)>;
    /// How flows are spread over the worker queues (`"fanout-hash"`, `"rss"`,
    /// `"pmd-fanout"`, `"software"`, `"single"`), for logs.
    fn steering(&self) -> &'static str;
}

/// Opens the data port described by `cfg` with one queue per worker.
///
/// Flows are spread so that every packet of a TCP connection reaches the
/// same queue (see `docs/decisions.md`: kernel fanout hash, RSS with a
/// symmetric key, or software steering). Errors name the interface or the
/// DPDK call that failed.
pub fn open(cfg: &IoConfig, workers: usize) -> Result<Vec<AnyQueue>, IoError> {
    if workers == 0 || workers > u16::MAX as usize {
        return Err(IoError::Config(format!(
            "{workers} workers: need 1 to 65535"
        )));
    }
    match cfg {
        IoConfig::AfPacket(c) => Ok(crate::io::afpacket::open(c, workers)?
            .into_iter()
            .map(AnyQueue::AfPacket)
            .collect()),
        #[cfg(feature = "dpdk")]
        IoConfig::Dpdk(c) => Ok(crate::io::dpdk::open(c, workers)?
            .into_iter()
            .map(|q| AnyQueue::Dpdk(Box::new(q)))
            .collect()),
        #[cfg(not(feature = "dpdk"))]
        IoConfig::Dpdk(_) => Err(IoError::DpdkNotBuilt),
    }
}

/// One worker's queue on whichever backend [`open`] chose.
pub enum AnyQueue {
    AfPacket(AfPacketQueue),
    /// Boxed: the DPDK queue carries its burst arrays inline.
    #[cfg(feature = "dpdk")]
    Dpdk(Box<DpdkQueue>),
}

/// A packet buffer of an [`AnyQueue`].
#[derive(Debug)]
pub enum AnyBuf {
    AfPacket(AfPacketBuf),
    #[cfg(feature = "dpdk")]
    Dpdk(DpdkBuf),
}

impl AnyQueue {
    /// The port monitor shared by all queues of the port.
    pub fn monitor(&self) -> Arc<dyn PortMonitor> {
        match self {
            AnyQueue::AfPacket(q) => q.monitor(),
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => q.monitor(),
        }
    }

    /// The port's MAC address (source of frames the worker originates).
    pub fn mac(&self) -> [u8; 6] {
        match self {
            AnyQueue::AfPacket(q) => q.mac(),
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => q.mac(),
        }
    }

    /// This queue's index (= the worker it belongs to).
    pub fn index(&self) -> usize {
        match self {
            AnyQueue::AfPacket(q) => q.index(),
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => q.index(),
        }
    }
}

impl PacketBuf for AnyBuf {
    fn data(&self) -> &[u8] {
        match self {
            AnyBuf::AfPacket(b) => b.data(),
            #[cfg(feature = "dpdk")]
            AnyBuf::Dpdk(b) => b.data(),
        }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        match self {
            AnyBuf::AfPacket(b) => b.data_mut(),
            #[cfg(feature = "dpdk")]
            AnyBuf::Dpdk(b) => b.data_mut(),
        }
    }

    fn set_len(&mut self, len: usize) -> bool {
        match self {
            AnyBuf::AfPacket(b) => b.set_len(len),
            #[cfg(feature = "dpdk")]
            AnyBuf::Dpdk(b) => b.set_len(len),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            AnyBuf::AfPacket(b) => b.capacity(),
            #[cfg(feature = "dpdk")]
            AnyBuf::Dpdk(b) => b.capacity(),
        }
    }
}

/// Moves frames between a `Vec<AnyBuf>` and a backend's own buffer type
/// without allocating: the scratch vectors live in the queue.
macro_rules! tx_via {
    ($q:expr, $scratch:expr, $pkts:expr, $variant:path) => {{
        let scratch = &mut $scratch;
        scratch.clear();
        // Take the leading run of this backend's buffers (all of them, in
        // practice: a queue only ever hands out its own kind).
        let mut n = 0;
        while n < $pkts.len() && matches!($pkts[n], $variant(_)) {
            n += 1;
        }
        #[allow(irrefutable_let_patterns)]
        for b in $pkts.drain(..n) {
            if let $variant(b) = b {
                scratch.push(b);
            }
        }
        let sent = $q.tx_burst(scratch);
        // Unsent frames go back to the front of `pkts`, in order.
        let rest = scratch.len();
        if rest > 0 {
            $pkts.splice(0..0, scratch.drain(..).map($variant));
        }
        debug_assert_eq!(scratch.len(), 0, "{rest} frames returned");
        sent
    }};
}

impl PacketIo for AnyQueue {
    type Buf = AnyBuf;

    fn rx_burst(&mut self, out: &mut Vec<AnyBuf>, max: usize) -> usize {
        match self {
            AnyQueue::AfPacket(q) => q.rx_burst_with(max, |b| out.push(AnyBuf::AfPacket(b))),
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => q.rx_burst_with(max, |b| out.push(AnyBuf::Dpdk(b))),
        }
    }

    fn alloc(&mut self) -> Option<AnyBuf> {
        match self {
            AnyQueue::AfPacket(q) => q.alloc().map(AnyBuf::AfPacket),
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => q.alloc().map(AnyBuf::Dpdk),
        }
    }

    fn tx_burst(&mut self, pkts: &mut Vec<AnyBuf>) -> usize {
        match self {
            AnyQueue::AfPacket(q) => {
                let mut scratch = std::mem::take(&mut q.any_scratch);
                let n = tx_via!(q, scratch, pkts, AnyBuf::AfPacket);
                q.any_scratch = scratch;
                n
            }
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => {
                let mut scratch = std::mem::take(&mut q.any_scratch);
                let n = tx_via!(q, scratch, pkts, AnyBuf::Dpdk);
                q.any_scratch = scratch;
                n
            }
        }
    }

    fn wait(&mut self, timeout: Duration, bell: &Doorbell) {
        match self {
            AnyQueue::AfPacket(q) => q.wait(timeout, bell),
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => q.wait(timeout, bell),
        }
    }

    fn stats(&self) -> IoStats {
        match self {
            AnyQueue::AfPacket(q) => q.stats(),
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk(q) => q.stats(),
        }
    }
}
