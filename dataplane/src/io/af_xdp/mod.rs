//! The AF_XDP backend: one AF_XDP socket per worker queue, and an XDP
//! program on the data interface that relays the packets of FORWARDING
//! connections in the kernel.
//!
//! Without the fast path every frame of the interface is redirected to the
//! socket of its receive queue and the workers run exactly as over AF_PACKET,
//! minus the copies. With it, the worker offers each connection entering
//! FORWARDING to the program's flow map (see [`crate::offload`]); the
//! program then rewrites the MACs of that flow's ordinary client segments
//! and transmits them back out of the interface (XDP_TX) without waking
//! anyone. SYN, FIN, RST, handshakes, WAITHEADER data, THOP, ARP and
//! anything it does not know still reach the worker.
//!
//! Files: `config.rs` (settings), `program.rs` (the XDP program: load,
//! attach, detach, maps, counters; its C source is in `bpf/`), `flows.rs`
//! (the flow map as the engine's [`crate::offload::FlowOffload`]), `umem.rs`
//! (frame memory and buffers), `queue.rs` (sockets, rings, the port).

pub mod config;
#[cfg(feature = "af_xdp")]
pub mod flows;
#[cfg(feature = "af_xdp")]
pub mod program;
#[cfg(feature = "af_xdp")]
mod queue;
#[cfg(feature = "af_xdp")]
mod umem;

pub use config::{AfXdpConfig, FastPath, XdpAttach, XdpBind};
#[cfg(feature = "af_xdp")]
pub use queue::{open, AfXdpQueue};
#[cfg(feature = "af_xdp")]
pub use umem::AfXdpBuf;
