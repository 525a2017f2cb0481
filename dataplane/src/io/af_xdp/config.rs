//! The AF_XDP backend's settings. The control plane fills them from the
//! profile's `io.af_xdp`.

use crate::io::config::PollMode;

/// How the XDP program is attached to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpAttach {
    /// Native (driver) mode when the driver has it, generic mode otherwise.
    #[default]
    Auto,
    /// Driver mode only (veth, mlx5, i40e, ice, ixgbe…); fails elsewhere.
    Native,
    /// Generic (SKB) mode: works on any interface, at kernel-stack speed.
    Generic,
}

/// How the AF_XDP sockets share frames with the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpBind {
    /// Zero-copy when the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Copy mode (every driver).
    Copy,
    /// Zero-copy only; fails where the driver lacks it.
    ZeroCopy,
}

/// Whether FORWARDING connections are relayed in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FastPath {
    /// The XDP program rewrites and transmits packets of FORWARDING flows
    /// itself (the worker inserts and removes the flows).
    #[default]
    Xdp,
    /// Every packet goes to the workers (the XDP program only steers them
    /// to the AF_XDP sockets).
    Off,
}

/// The AF_XDP backend's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// The data interface.
    pub iface: String,
    /// Receive queues the workers serve (queue i ↔ worker i); `None`: one per
    /// worker. Must equal the worker count and the interface's queue count.
    pub queues: Option<u32>,
    /// UMEM frames per worker queue (receive, transmit and held frames).
    pub frame_count: u32,
    /// Bytes per UMEM frame (2048 or 4096).
    pub frame_size: u32,
    /// Descriptors in each of the four rings (fill, completion, RX, TX); a
    /// power of two.
    pub ring_size: u32,
    /// XDP attach mode.
    pub attach: XdpAttach,
    /// Socket bind mode.
    pub bind: XdpBind,
    /// In-kernel forwarding of FORWARDING connections.
    pub fast_path: FastPath,
    /// Largest number of flows in the fast path's table (beyond it, flows
    /// stay in user space, counted).
    pub flow_capacity: u32,
    /// Polling mode of the workers.
    pub poll: PollMode,
}

impl AfXdpConfig {
    /// Defaults for `iface`: 4,096 frames of 4 KiB per queue, rings of 2,048,
    /// auto attach and bind, the fast path on with room for 262,144 flows.
    pub fn new(iface: impl Into<String>) -> Self {
        AfXdpConfig {
            iface: iface.into(),
            queues: None,
            frame_count: 4096,
            frame_size: 4096,
            ring_size: 2048,
            attach: XdpAttach::Auto,
            bind: XdpBind::Auto,
            fast_path: FastPath::Xdp,
            flow_capacity: 1 << 18,
            poll: PollMode::default(),
        }
    }
}
