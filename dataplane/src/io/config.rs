//! Packet I/O configuration: which backend opens the data port and how.
//!
//! Plain structs, no YAML: the control plane builds them from the profile.
//! Defaults are what a test bed on veths needs; the appliance profile sets
//! the DPDK ring and pool sizes for its NIC (see `docs/packet-io.md`).

use std::time::Duration;

/// Which backend opens the data port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoConfig {
    /// Linux AF_PACKET sockets (TPACKET_V3), one per worker, joined in a
    /// fanout group. The default where DPDK is absent.
    AfPacket(AfPacketConfig),
    /// DPDK poll-mode driver (cargo feature `dpdk`).
    Dpdk(DpdkConfig),
}

impl IoConfig {
    /// The polling mode the workers should use with this port.
    pub fn poll_mode(&self) -> PollMode {
        match self {
            IoConfig::AfPacket(c) => c.poll,
            IoConfig::Dpdk(c) => c.poll,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn backend_name(&self) -> &'static str {
        match self {
            IoConfig::AfPacket(_) => "af_packet",
            IoConfig::Dpdk(_) => "dpdk",
        }
    }
}

/// How a worker polls its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Spin on the queue forever (production: one dedicated core per worker).
    Busy,
    /// Spin for `spin_polls` empty polls in a row, then block in the backend's
    /// `wait()` for at most `max_wait` (or until the next timer), so an idle
    /// test bed does not burn a core.
    Adaptive {
        /// Empty polls in a row before the worker sleeps.
        spin_polls: u32,
        /// The longest single sleep; bounds the delay of a timer or command.
        max_wait: Duration,
    },
}

impl PollMode {
    /// Adaptive polling with the defaults: 2,000 empty polls (tens of
    /// microseconds of spinning), then sleeps of at most 10 ms.
    pub const ADAPTIVE: PollMode = PollMode::Adaptive {
        spin_polls: 2_000,
        max_wait: Duration::from_millis(10),
    };
}

impl Default for PollMode {
    fn default() -> Self {
        PollMode::ADAPTIVE
    }
}

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

/// Which DPDK port the workers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpdkPort {
    /// Port id in EAL's numbering.
    Id(u16),
    /// Device name as EAL knows it: a PCI address (`0000:03:00.0`) or a
    /// virtual device (`net_af_packet0`).
    Name(String),
}

/// The DPDK backend's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkConfig {
    /// Arguments for `rte_eal_init`, without the program name
    /// (e.g. `-l 0-3 -a 0000:03:00.0` or, on a test bed,
    /// `--no-huge --no-pci -m 512 --vdev=net_af_packet0,iface=veth0`).
    pub eal_args: Vec<String>,
    /// The port to open.
    pub port: DpdkPort,
    /// Receive descriptors per queue (the PMD may round it).
    pub rx_ring_size: u16,
    /// Transmit descriptors per queue.
    pub tx_ring_size: u16,
    /// Mbufs in the pool (best 2^n − 1). Must cover every RX ring, TX ring,
    /// per-worker cache and the packets workers hold.
    pub mempool_size: u32,
    /// Per-worker (per-lcore) mempool cache size, ≤ 512.
    pub mempool_cache: u32,
    /// Receive frames for any MAC.
    pub promiscuous: bool,
    /// Port MTU; `None` keeps the PMD's default (1,500).
    pub mtu: Option<u16>,
    /// Force software steering even when the PMD could spread flows itself.
    pub force_software_steering: bool,
    /// Polling mode of the workers.
    pub poll: PollMode,
}

impl DpdkConfig {
    /// Defaults for a port: 1,024-descriptor rings, an 8,191-mbuf pool with
    /// 256-mbuf caches.
    pub fn new(eal_args: Vec<String>, port: DpdkPort) -> Self {
        DpdkConfig {
            eal_args,
            port,
            rx_ring_size: 1024,
            tx_ring_size: 1024,
            mempool_size: 8191,
            mempool_cache: 256,
            promiscuous: false,
            mtu: None,
            force_software_steering: false,
            poll: PollMode::default(),
        }
    }
}
