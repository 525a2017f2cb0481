//! What every backend reports about its data port: why it could not be
//! opened ([`IoError`]), and the read-only view the control plane polls
//! ([`PortMonitor`]: link state, port counters, driver statistics).
//!
//! Its own module so that backends and the code that chooses between them
//! both depend on it, and not on each other.

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
    /// A backend the profile names is not compiled into this build.
    #[error("this build has no {0} support (build with `--features {0}`)")]
    NotBuilt(&'static str),
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
    /// The in-kernel fast path's counters (summed over CPUs); `None` for a
    /// backend without one.
    fn fast_path(&self) -> Option<FastPathStats> {
        None
    }
    /// What opening the port did that an operator should hear of (e.g. a
    /// stale XDP program of an earlier run removed), for the start-up log.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What an in-kernel fast path (the AF_XDP backend's XDP program) did with
/// the frames it saw, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastPathStats {
    /// Frames of offloaded flows relayed in the kernel.
    pub forwarded_packets: u64,
    /// Bytes of those frames.
    pub forwarded_bytes: u64,
    /// Frames handed to a worker's AF_XDP socket.
    pub to_worker: u64,
    /// Frames left to the kernel stack (no socket on their queue).
    pub passed: u64,
    /// Frames the program dropped itself (it drops none today: frames it
    /// cannot parse go to the worker, which counts them; failed transmits
    /// are counted by the driver, e.g. `ethtool -S`'s `xdp_tx_errors`).
    pub dropped: u64,
    /// Flows the program stopped relaying because a SYN reused their
    /// 4-tuple (their segments reach a worker again).
    pub retired: u64,
    /// Flows in the fast path's table now.
    pub flows: u64,
    /// The attach mode in use (`"native"` or `"generic"`).
    pub mode: &'static str,
}
