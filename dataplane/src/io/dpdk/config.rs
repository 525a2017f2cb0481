//! The DPDK backend's settings. Compiled with or without the `dpdk` feature,
//! so a profile can name DPDK and get a clear error from a build without it.
//! The appliance profile sets the ring and pool sizes for its NIC
//! (`docs/packet-io.md`).

use crate::io::config::PollMode;

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
