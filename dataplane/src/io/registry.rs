//! The packet I/O backends, and the enums that let the `baton` binary and
//! the worker loop use whichever one a profile names without generics.
//!
//! A backend lives in one folder, `io/<name>/`: its settings (`config.rs`),
//! a queue type implementing [`PacketIo`] and [`PortQueue`], its buffer type,
//! and `open(&Config, workers) -> Result<Vec<Queue>, IoError>`. The
//! `backends!` list below is its one registration line; it generates
//! [`IoConfig`] (one variant per backend, always present so a profile can name
//! a backend this build lacks and get a clear error), [`AnyQueue`] and
//! [`AnyBuf`] (variants only for backends compiled in), [`open`] and every
//! delegating match. The checklist for a new backend is in
//! `docs/architecture.md`.

use std::sync::Arc;
use std::time::Duration;

use crate::doorbell::Doorbell;
use crate::io::config::PollMode;
use crate::io::port::{IoError, PortMonitor};
use crate::io::{IoStats, PacketBuf, PacketIo, PortQueue};

/// Sends the leading run of `Q`'s buffers in `pkts` through `q`, unwrapping
/// them into the queue's scratch vector (no allocation) and putting back, in
/// order, what the queue did not take.
fn tx_via<Q: PortQueue>(
    q: &mut Q,
    pkts: &mut Vec<AnyBuf>,
    unwrap: fn(AnyBuf) -> Result<Q::Buf, AnyBuf>,
    wrap: fn(Q::Buf) -> AnyBuf,
) -> usize {
    let mut scratch = std::mem::take(q.tx_scratch());
    scratch.clear();
    let mut foreign = 0;
    for b in pkts.drain(..) {
        match unwrap(b) {
            Ok(b) => scratch.push(b),
            // Never happens: a queue only ever hands out its own kind.
            Err(_) => foreign += 1,
        }
    }
    debug_assert_eq!(foreign, 0, "buffers of another backend");
    let sent = q.tx_burst(&mut scratch);
    pkts.extend(scratch.drain(..).map(wrap));
    *q.tx_scratch() = scratch;
    sent
}

macro_rules! backends {
    ($(
        $(#[doc = $doc:literal])*
        $(#[cfg($cfg:meta)])?
        $variant:ident = $name:literal : $module:ident :: { $config:ident, $queue:ident, $buf:ident }
    ),* $(,)?) => {
        /// Which backend opens the data port, with its settings.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum IoConfig {
            $( $(#[doc = $doc])* $variant(crate::io::$module::$config), )*
        }

        impl IoConfig {
            /// The polling mode the workers should use with this port.
            pub fn poll_mode(&self) -> PollMode {
                match self {
                    $( IoConfig::$variant(c) => c.poll, )*
                }
            }

            /// A short name for logs and metrics labels.
            pub fn backend_name(&self) -> &'static str {
                match self {
                    $( IoConfig::$variant(_) => $name, )*
                }
            }
        }

        /// One worker's queue on whichever backend [`open`] chose (boxed:
        /// queues carry their burst arrays inline).
        pub enum AnyQueue {
            $( $(#[cfg($cfg)])? $variant(Box<crate::io::$module::$queue>), )*
        }

        /// A packet buffer of an [`AnyQueue`].
        #[derive(Debug)]
        pub enum AnyBuf {
            $( $(#[cfg($cfg)])? $variant(crate::io::$module::$buf), )*
        }

        /// Opens the data port described by `cfg` with one queue per worker.
        ///
        /// Flows are spread so that every packet of a TCP connection reaches
        /// the same queue (see `docs/decisions.md`: kernel fanout hash, RSS
        /// with a symmetric key, or software steering). Errors name the
        /// interface or the call that failed.
        #[allow(unreachable_patterns)]
        pub fn open(cfg: &IoConfig, workers: usize) -> Result<Vec<AnyQueue>, IoError> {
            if workers == 0 || workers > u16::MAX as usize {
                return Err(IoError::Config(format!(
                    "{workers} workers: need 1 to 65535"
                )));
            }
            match cfg {
                $(
                    $(#[cfg($cfg)])?
                    IoConfig::$variant(c) => Ok(crate::io::$module::open(c, workers)?
                        .into_iter()
                        .map(|q| AnyQueue::$variant(Box::new(q)))
                        .collect()),
                )*
                other => Err(IoError::NotBuilt(other.backend_name())),
            }
        }

        impl AnyQueue {
            /// The port monitor shared by all queues of the port.
            pub fn monitor(&self) -> Arc<dyn PortMonitor> {
                match self {
                    $( $(#[cfg($cfg)])? AnyQueue::$variant(q) => q.monitor(), )*
                }
            }

            /// The port's MAC address (source of frames the worker originates).
            pub fn mac(&self) -> [u8; 6] {
                match self {
                    $( $(#[cfg($cfg)])? AnyQueue::$variant(q) => q.mac(), )*
                }
            }

            /// This queue's index (= the worker it belongs to).
            pub fn index(&self) -> usize {
                match self {
                    $( $(#[cfg($cfg)])? AnyQueue::$variant(q) => PortQueue::index(q.as_ref()), )*
                }
            }
        }

        impl PacketBuf for AnyBuf {
            fn data(&self) -> &[u8] {
                match self {
                    $( $(#[cfg($cfg)])? AnyBuf::$variant(b) => b.data(), )*
                }
            }

            fn data_mut(&mut self) -> &mut [u8] {
                match self {
                    $( $(#[cfg($cfg)])? AnyBuf::$variant(b) => b.data_mut(), )*
                }
            }

            fn set_len(&mut self, len: usize) -> bool {
                match self {
                    $( $(#[cfg($cfg)])? AnyBuf::$variant(b) => b.set_len(len), )*
                }
            }

            fn capacity(&self) -> usize {
                match self {
                    $( $(#[cfg($cfg)])? AnyBuf::$variant(b) => b.capacity(), )*
                }
            }
        }

        impl PacketIo for AnyQueue {
            type Buf = AnyBuf;

            fn rx_burst(&mut self, out: &mut Vec<AnyBuf>, max: usize) -> usize {
                match self {
                    $( $(#[cfg($cfg)])?
                    AnyQueue::$variant(q) => q.rx_burst_with(max, |b| out.push(AnyBuf::$variant(b))), )*
                }
            }

            fn alloc(&mut self) -> Option<AnyBuf> {
                match self {
                    $( $(#[cfg($cfg)])? AnyQueue::$variant(q) => q.alloc().map(AnyBuf::$variant), )*
                }
            }

            #[allow(unreachable_patterns)]
            fn tx_burst(&mut self, pkts: &mut Vec<AnyBuf>) -> usize {
                match self {
                    $( $(#[cfg($cfg)])?
                    AnyQueue::$variant(q) => tx_via(
                        q.as_mut(),
                        pkts,
                        |b| match b {
                            AnyBuf::$variant(b) => Ok(b),
                            other => Err(other),
                        },
                        AnyBuf::$variant,
                    ), )*
                }
            }

            fn wait(&mut self, timeout: Duration, bell: &Doorbell) {
                match self {
                    $( $(#[cfg($cfg)])? AnyQueue::$variant(q) => q.wait(timeout, bell), )*
                }
            }

            fn stats(&self) -> IoStats {
                match self {
                    $( $(#[cfg($cfg)])? AnyQueue::$variant(q) => q.stats(), )*
                }
            }

            fn take_offload(&mut self) -> Option<Box<dyn crate::offload::FlowOffload>> {
                match self {
                    $( $(#[cfg($cfg)])? AnyQueue::$variant(q) => q.take_offload(), )*
                }
            }
        }
    };
}

backends! {
    /// Linux AF_PACKET sockets (TPACKET_V3), one per worker, joined in a
    /// fanout group. The default where DPDK is absent.
    AfPacket = "af_packet": afpacket::{AfPacketConfig, AfPacketQueue, AfPacketBuf},
    /// Linux AF_XDP sockets, one per worker queue, with an XDP program that
    /// relays FORWARDING flows in the kernel (cargo feature `af_xdp`).
    #[cfg(feature = "af_xdp")]
    AfXdp = "af_xdp": af_xdp::{AfXdpConfig, AfXdpQueue, AfXdpBuf},
    /// DPDK poll-mode driver (cargo feature `dpdk`).
    #[cfg(feature = "dpdk")]
    Dpdk = "dpdk": dpdk::{DpdkConfig, DpdkQueue, DpdkBuf},
}
