//! DPDK backend (cargo feature `dpdk`): workers poll NIC queues from user
//! space and never enter the kernel on the packet path.
//!
//! Bound to the system DPDK (22.11, found by pkg-config) through bindgen and
//! the C shim in `csrc/` (DPDK's fast-path calls are inline functions). The
//! EAL starts once per process ([`eal`]); the port gets one RX/TX queue pair
//! per worker and spreads flows with RSS (symmetric key) where the PMD can,
//! trusts the af_packet PMD's own kernel fanout, or else steers in software
//! ([`crate::steer`], [`port::Steering`]). One mbuf pool serves the port; each
//! worker thread registers with the EAL so it gets its own lcore mempool
//! cache. Received mbufs are handed to the worker as [`DpdkBuf`]s and
//! transmitted from the same mbuf after an in-place rewrite (zero copy).

pub mod config;

#[cfg(feature = "dpdk")]
pub mod buf;
#[cfg(feature = "dpdk")]
pub mod eal;
#[cfg(feature = "dpdk")]
mod ffi;
#[cfg(feature = "dpdk")]
pub mod port;
#[cfg(feature = "dpdk")]
mod queue;

#[cfg(feature = "dpdk")]
pub use buf::DpdkBuf;
pub use config::{DpdkConfig, DpdkPort};
#[cfg(feature = "dpdk")]
pub use queue::{open, DpdkQueue, DPDK_VERSION};
