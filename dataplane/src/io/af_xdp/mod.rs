//! The AF_XDP backend: one AF_XDP socket per worker queue, and an XDP
//! program on the data interface that relays the packets of FORWARDING
//! connections in the kernel.
//!
//! Files: `config.rs` (settings), `program.rs` (the XDP program: load,
//! attach, detach, its maps and counters; the C source is in `bpf/`),
//! `flows.rs` (the flow map as the engine's [`crate::offload::FlowOffload`]),
//! `umem.rs` and `queue.rs` (the sockets, their frame pool and rings).

pub mod config;
#[cfg(feature = "af_xdp")]
pub mod flows;
#[cfg(feature = "af_xdp")]
pub mod program;

pub use config::{AfXdpConfig, FastPath, XdpAttach, XdpBind};
