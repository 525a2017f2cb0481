//! The AF_PACKET backend's settings. Defaults are what a test bed on veths
//! needs; the control plane fills them from the profile's `io.af_packet`.

use crate::io::config::PollMode;

/// Which PACKET_MMAP ring version receives frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfPacketRing {
    /// TPACKET_V3: frames handed over a block at a time (full, or after
    /// `block_timeout_ms`). Best throughput; at low rates a frame may wait up
    /// to the block timeout.
    #[default]
    V3,
    /// TPACKET_V2: every frame handed over the moment it is written (like
    /// libpcap's immediate mode). Lowest latency; one status word per frame.
    V2,
}

/// The AF_PACKET backend's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// The data interface (carries no IP address the switch serves).
    pub iface: String,
    /// Receive ring version (V3 by default; V2 for lowest latency).
    pub ring: AfPacketRing,
    /// PACKET_FANOUT group id; `None` picks one from the process id. Must be
    /// unique per interface among processes that fan out on it.
    pub fanout_group: Option<u16>,
    /// Bytes per receive block (a multiple of the page size).
    pub block_size: u32,
    /// Receive blocks per worker socket.
    pub block_count: u32,
    /// Largest frame slot (receive snap length and transmit slot size).
    pub frame_size: u32,
    /// Transmit ring slots per worker socket.
    pub tx_frames: u32,
    /// Buffers in each worker's pool (received copies plus frames the worker
    /// originates or holds).
    pub pool_size: u32,
    /// How long the kernel waits before handing a part-filled receive block
    /// to user space, in milliseconds (TPACKET_V3 retire timeout; ≥ 1;
    /// unused with V2).
    pub block_timeout_ms: u32,
    /// Send straight to the driver, skipping the qdisc layer.
    pub qdisc_bypass: bool,
    /// Receive frames for any MAC (needed only when the switch answers for a
    /// MAC other than the interface's own).
    pub promiscuous: bool,
    /// Polling mode of the workers.
    pub poll: PollMode,
}

impl AfPacketConfig {
    /// Defaults for `iface`: 64 × 256 KiB receive blocks (16 MiB per worker),
    /// 2 KiB frames, 1,024 transmit slots, bypassing the qdisc.
    pub fn new(iface: impl Into<String>) -> Self {
        AfPacketConfig {
            iface: iface.into(),
            ring: AfPacketRing::V3,
            fanout_group: None,
            block_size: 1 << 18,
            block_count: 64,
            frame_size: 2048,
            tx_frames: 1024,
            pool_size: 4096,
            block_timeout_ms: 1,
            qdisc_bypass: true,
            promiscuous: false,
            poll: PollMode::default(),
        }
    }
}
