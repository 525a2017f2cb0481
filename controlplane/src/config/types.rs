//! The profile: every knob of the appliance, as the YAML file spells it.
//!
//! These types are the single source of truth: the loader deserializes them
//! (unknown fields rejected), the JSON Schema in `docs/config.schema.json` and
//! the field reference in `docs/configuration.md` are generated from them, and
//! `check-config` prints them back resolved. Doc comments are user-facing.

use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{Addresses, DurationStr, MacAddr};

/// A complete, self-describing tuning of the appliance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name of this profile (shown in logs, `/healthz` and metrics labels).
    pub name: String,
    /// Free text for operators: what this profile is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Packet I/O backend of the data port and its settings.
    pub io: IoSection,
    /// Worker threads (one per core) that run the packet path.
    #[serde(default)]
    pub workers: Workers,
    /// The switch's own identity on the data segment and the forwarding mode.
    pub switch: SwitchSection,
    /// Virtual services (VIP and port) with their routing rules.
    pub services: Vec<Service>,
    /// Real servers. Each runs `baton-agent`.
    pub backends: Vec<Backend>,
    /// Groups of backends, each with a dispatch policy.
    pub pools: Vec<Pool>,
    /// Default health checking; a backend may override it.
    #[serde(default)]
    pub health: Health,
    /// Limits on what clients may send.
    #[serde(default)]
    pub limits: Limits,
    /// TCP options the switch offers in its SYN/ACK (the backend continues with them).
    #[serde(default)]
    pub tcp: TcpOptions,
    /// Timers of the switch's TCP state machine and handoff.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Dataplane tuning knobs: burst size, table capacity, polling, SYN cookies.
    #[serde(default)]
    pub tuning: Tuning,
    /// TCP handoff protocol (THOP) port and keys.
    pub thop: Thop,
    /// Recovering handed-off connections from the agents after a restart
    /// (and flows a router moved from another switch).
    #[serde(default)]
    pub recovery: Recovery,
    /// Several switches behind routers that spread the VIPs' flows over
    /// them (ECMP): the secret they share and how this one announces the
    /// VIPs.
    #[serde(default, skip_serializing_if = "Cluster::is_single")]
    pub cluster: Cluster,
    /// Management endpoint: Prometheus metrics and admin API.
    #[serde(default)]
    pub admin: Admin,
    /// Logging and access log.
    #[serde(default)]
    pub logging: Logging,
}

// ---------------------------------------------------------------- I/O

/// Packet I/O backend: exactly one of the keys below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IoSection {
    /// Linux AF_PACKET (TPACKET_V3 ring, fanout across workers). Runs anywhere.
    AfPacket(AfPacketIo),
    /// Linux AF_XDP sockets, one per worker queue, with an XDP program that
    /// relays the packets of FORWARDING connections in the kernel (the
    /// `af_xdp` build feature).
    AfXdp(AfXdpIo),
    /// DPDK poll-mode driver (the `dpdk` build feature).
    Dpdk(DpdkIo),
    /// In-memory loopback backend, for tests and dry runs; no traffic leaves the process.
    Memory(MemoryIo),
}

/// AF_PACKET settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AfPacketIo {
    /// Data interface. It must carry no kernel address the switch serves.
    pub interface: String,
    /// Receive ring version: `v3` (frames handed over a block at a time: best
    /// throughput, but a frame may wait up to `block_timeout` at low rates) or
    /// `v2` (every frame at once: lowest latency, the choice for a lightly
    /// loaded or latency-sensitive switch).
    #[serde(default)]
    pub ring: AfPacketRingKind,
    /// PACKET_FANOUT group id; default derived from the process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout_group: Option<u16>,
    /// TPACKET_V3 block size in bytes (power of two, multiple of the page size).
    #[serde(default = "d_block_size")]
    pub block_size: u32,
    /// Number of blocks in each worker's RX ring.
    #[serde(default = "d_block_count")]
    pub block_count: u32,
    /// Largest frame in bytes.
    #[serde(default = "d_frame_size")]
    pub frame_size: u32,
    /// Bypass the kernel qdisc layer on transmit (PACKET_QDISC_BYPASS).
    #[serde(default = "d_true")]
    pub qdisc_bypass: bool,
    /// Transmit ring slots per worker socket.
    #[serde(default = "d_tx_frames")]
    pub tx_frames: u32,
    /// Buffers in each worker's pool (received copies and frames the worker originates or holds).
    #[serde(default = "d_pool_size")]
    pub pool_size: u32,
    /// Longest wait before the kernel hands over a part-filled receive block (TPACKET_V3 retire timeout).
    #[serde(default = "d_block_timeout")]
    pub block_timeout: DurationStr,
    /// Receive frames for any MAC (only when `switch.data_mac` differs from the interface's).
    #[serde(default)]
    pub promiscuous: bool,
}

/// AF_PACKET receive ring version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AfPacketRingKind {
    /// TPACKET_V3 (block-based).
    #[default]
    V3,
    /// TPACKET_V2 (frame-based).
    V2,
}

/// AF_XDP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AfXdpIo {
    /// Data interface. It must carry no kernel address the switch serves.
    pub interface: String,
    /// Receive queues the workers serve (queue i to worker i); absent: one
    /// per worker. Must equal `workers.count`, and the interface must have
    /// exactly this many queues (`ethtool -L`), or frames on the other
    /// queues never reach a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u32>,
    /// UMEM frames per worker queue (receive, transmit and frames the worker
    /// holds).
    #[serde(default = "d_xdp_frame_count")]
    pub frame_count: u32,
    /// Bytes per UMEM frame: 2048 or 4096.
    #[serde(default = "d_xdp_frame_size")]
    pub frame_size: u32,
    /// Descriptors in each of a socket's four rings (fill, completion,
    /// receive, transmit); a power of two.
    #[serde(default = "d_xdp_ring_size")]
    pub ring_size: u32,
    /// How the XDP program is attached: `native` (in the driver; veth and
    /// most 10G+ NICs), `generic` (any interface, at kernel-stack speed) or
    /// `auto` (native where the driver has it).
    #[serde(default)]
    pub mode: XdpMode,
    /// How the sockets share frames with the driver: `zero_copy`, `copy`,
    /// or `auto` (zero-copy where the driver supports it).
    #[serde(default)]
    pub bind: XdpBindMode,
    /// `xdp`: the XDP program relays the client packets of FORWARDING
    /// connections itself, without waking a worker; `off`: every packet goes
    /// to the workers.
    #[serde(default)]
    pub fast_path: FastPathMode,
    /// Largest number of connections in the fast path's flow table; beyond
    /// it, connections are forwarded by the workers (counted in
    /// `baton_worker_offload_full_total`).
    #[serde(default = "d_xdp_flow_capacity")]
    pub flow_capacity: u32,
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Native where the driver has it, generic otherwise.
    #[default]
    Auto,
    /// Driver mode only; starting fails where the driver lacks it.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

/// AF_XDP socket bind mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum XdpBindMode {
    /// Zero-copy where the driver supports it, copy otherwise.
    #[default]
    Auto,
    /// Copy mode (every driver).
    Copy,
    /// Zero-copy only; starting fails where the driver lacks it.
    ZeroCopy,
}

/// Whether FORWARDING connections are relayed in the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FastPathMode {
    /// The XDP program relays them.
    #[default]
    Xdp,
    /// The workers relay every packet.
    Off,
}

/// DPDK settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpdkIo {
    /// EAL arguments, exactly as for a DPDK application (e.g. `-l 0-1`, `--no-huge`, `--vdev=...`).
    pub eal_args: Vec<String>,
    /// Ethernet port id (default 0: the first port the EAL probed).
    #[serde(default)]
    pub port: u16,
    /// Port by device name instead of id (e.g. `0000:03:00.0` or `net_af_packet0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// RX descriptors per queue.
    #[serde(default = "d_ring")]
    pub rx_ring: u16,
    /// TX descriptors per queue.
    #[serde(default = "d_ring")]
    pub tx_ring: u16,
    /// Mbufs in the packet pool (total over all workers).
    #[serde(default = "d_mempool")]
    pub mempool_size: u32,
    /// Per-worker mempool cache size.
    #[serde(default = "d_mempool_cache")]
    pub mempool_cache: u32,
    /// Receive frames for any MAC.
    #[serde(default)]
    pub promiscuous: bool,
    /// Port MTU (absent: the driver's default, 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Steer flows to workers in software even where the NIC could do RSS.
    #[serde(default)]
    pub software_steering: bool,
}

/// In-memory backend settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryIo {
    /// Frames each in-memory queue can hold.
    #[serde(default = "d_memory_capacity")]
    pub capacity: u32,
}

// ---------------------------------------------------------------- workers

/// Worker threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    /// Number of worker threads; each owns a shard of the connection table.
    #[serde(default = "d_one")]
    pub count: u16,
    /// CPU cores to pin the workers to, one per worker (empty: no pinning).
    #[serde(default)]
    pub cores: Vec<u16>,
    /// CPU core for the control-plane thread (absent: not pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_core: Option<u16>,
}

impl Default for Workers {
    fn default() -> Self {
        Self {
            count: 1,
            cores: Vec::new(),
            control_core: None,
        }
    }
}

// ---------------------------------------------------------------- switch

/// The switch on the data segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchSection {
    /// The switch's own data address, or one of each family for a
    /// dual-stack data port (`[198.18.0.2, "2001:2::2"]`): answered in ARP
    /// or neighbour discovery and to ping, and the source of THOP towards
    /// the agents of its family (a backend's THOP address needs a data
    /// address of its family here).
    pub data_ip: Addresses,
    /// The data port's MAC; default: the interface's or port's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_mac: Option<MacAddr>,
    /// How client packets reach the backend after handoff (logged at start;
    /// `mac_rewrite`, L2 direct routing, is the only mode).
    #[serde(default)]
    pub forwarding: Forwarding,
}

/// Forwarding mode after handoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Forwarding {
    /// L2 direct routing: rewrite source and destination MAC (backends on the same segment).
    #[default]
    MacRewrite,
}

// ---------------------------------------------------------------- services and routing

/// A virtual service: clients connect to `vip:port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Service name (metrics label).
    pub name: String,
    /// Virtual IP the switch answers ARP (IPv4) or neighbour discovery
    /// (IPv6) for; one of each family (`[198.18.0.10, "2001:2::10"]`) makes
    /// one service answering on both, with the same rules and metrics.
    pub vip: Addresses,
    /// TCP port.
    #[serde(default = "d_http_port")]
    pub port: u16,
    /// What clients send first: `http` (an HTTP/1.x request head; rules
    /// match its path, host, headers…) or `tls` (a TLS ClientHello; rules
    /// match `sni` and `alpn`, the backend terminates TLS, the switch never
    /// sees a key). One VIP may carry both, on different ports.
    #[serde(default)]
    pub protocol: ServiceProtocol,
    /// Ordered routing rules; the first rule whose conditions all match chooses the pool.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Pool for requests that match no rule.
    pub default_pool: String,
}

/// What a service's clients send first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceProtocol {
    /// HTTP/1.x: WAITHEADER waits for the request head.
    #[default]
    Http,
    /// TLS: WAITHEADER waits for the ClientHello; routing by SNI and ALPN.
    Tls,
}

/// One routing rule: all given conditions must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Rule name (access log and metrics); default `rule<N>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions.
    #[serde(rename = "match")]
    pub matches: Match,
    /// Pool the request goes to.
    pub pool: String,
}

/// Conditions of a rule. Absent conditions always hold; an empty `match` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Host header (port stripped, case-insensitive); `*.example.com` matches subdomains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host: Vec<String>,
    /// Path starts with one of these (query string excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefix: Vec<String>,
    /// Path equals one of these (query string excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_exact: Vec<String>,
    /// Path (query excluded) matches this regular expression (Rust `regex` syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// File extension of the path's last segment, without the dot, case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<String>,
    /// Request method, one of these (e.g. `GET`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub method: Vec<String>,
    /// Request headers that must be present, with a required value or regex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderMatch>,
    /// Cookies that must be present, with a required value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookie: Vec<CookieMatch>,
    /// TLS services: the ClientHello's server name (case-insensitive, no
    /// trailing dot); `*.example.com` matches subdomains. A hello without
    /// SNI matches no `sni` condition (it goes to the default pool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni: Vec<String>,
    /// TLS services: the client offers one of these ALPN protocols
    /// (`h2`, `http/1.1`, …; exact, case-sensitive as on the wire).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact value required (absent: presence suffices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Regular expression the value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A cookie condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CookieMatch {
    /// Cookie name (case-sensitive, as browsers send it).
    pub name: String,
    /// Exact value required (absent: presence suffices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

// ---------------------------------------------------------------- backends and pools

/// A real server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Unique name; say what it serves (`static-1`, `app-1`). Stable across reloads.
    pub name: String,
    /// Data address on the switch's segment, IPv4 or IPv6 (the backend
    /// holds the VIPs on `lo`; a backend of either family serves VIPs of
    /// both, since the switch forwards to its MAC).
    pub address: IpAddr,
    /// Static MAC; absent: resolved by ARP (IPv4) or neighbour discovery (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The agent's THOP address; default `address:thop.port`
    /// (`[2001:2::11]:9199` for an IPv6 address). The switch sends THOP
    /// from its data address of the same family, so `switch.data_ip` must
    /// have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thop: Option<SocketAddr>,
    /// Id of this backend's own THOP key (one of `thop.keys`): the switch
    /// signs frames to this agent with it, and accepts that key only from
    /// the backends naming it, so an agent cannot speak for another. Absent:
    /// the shared `thop.active_key`. Changing it needs a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thop_key: Option<u32>,
    /// Management address for health checks (kernel stack); default `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<IpAddr>,
    /// Relative weight (WRR, Maglev share); 0 keeps it configured but unused.
    #[serde(default = "d_weight")]
    pub weight: u32,
    /// Start drained: no new requests, established ones finish.
    #[serde(default)]
    pub drain: bool,
    /// Health checking for this backend instead of the profile default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// A group of backends sharing a dispatch policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Pool name (referred to by rules; metrics label).
    pub name: String,
    /// Backend names in this pool.
    pub backends: Vec<String>,
    /// Dispatch policy and its parameters.
    #[serde(default)]
    pub policy: Policy,
    /// Status the switch answers when no backend of this pool can take the request.
    #[serde(default = "d_503")]
    pub unavailable_status: u16,
}

pub use crate::policy::{
    CapParams, HashKey, LardParams, LardRParams, LeastConnParams, MaglevParams, Policy,
    StickyParams, WrrParams,
};

// ---------------------------------------------------------------- health

/// Health checking of a backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Active check.
    #[serde(default)]
    pub check: Check,
    /// Time between checks.
    #[serde(default = "d_interval")]
    pub interval: DurationStr,
    /// A check that takes longer fails.
    #[serde(default = "d_check_timeout")]
    pub timeout: DurationStr,
    /// Consecutive successes that bring a down backend up.
    #[serde(default = "d_rise")]
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    #[serde(default = "d_fall")]
    pub fall: u32,
    /// Passive signals from the packet path.
    #[serde(default)]
    pub passive: Passive,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            check: Check::default(),
            interval: d_interval(),
            timeout: d_check_timeout(),
            rise: d_rise(),
            fall: d_fall(),
            passive: Passive::default(),
        }
    }
}

/// Active check kind: exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// HTTP/1.1 GET of a path on the management address.
    Http(HttpCheck),
    /// TCP connect to a port on the management address.
    Tcp(TcpCheck),
    /// No active check: passive signals only.
    None(NoCheck),
}

impl Default for Check {
    fn default() -> Self {
        Check::Tcp(TcpCheck {
            port: d_agent_port(),
        })
    }
}

/// HTTP check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// Port on the backend's management address.
    #[serde(default = "d_agent_port")]
    pub port: u16,
    /// Path requested.
    #[serde(default = "d_health_path")]
    pub path: String,
    /// Host header sent (default: the management address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Status codes that count as healthy (default 200–399).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
}

/// TCP connect check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    /// Port on the backend's management address.
    #[serde(default = "d_agent_port")]
    pub port: u16,
}

/// Placeholder for `check: {none: {}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoCheck {}

/// Passive health: signals from handoffs and LOAD reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Passive {
    /// Consecutive failed handoffs (THOP NACK or timeout) that take a backend down (0: never).
    #[serde(default = "d_passive_fall")]
    pub handoff_failures: u32,
    /// A backend that sent LOAD reports and then none for this long is taken down (absent: not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_report_timeout: Option<DurationStr>,
    /// How long a passively failed backend stays out before checks may bring it back.
    #[serde(default = "d_passive_hold")]
    pub hold_down: DurationStr,
}

impl Default for Passive {
    fn default() -> Self {
        Self {
            handoff_failures: d_passive_fall(),
            load_report_timeout: None,
            hold_down: d_passive_hold(),
        }
    }
}

// ---------------------------------------------------------------- limits, timeouts, tuning

/// Limits on client input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request header in bytes; larger gets `431`.
    #[serde(default = "d_max_header")]
    pub max_header_bytes: u32,
    /// TLS services: largest ClientHello in bytes (the handshake message; it may span several records and segments); larger gets the alert `illegal_parameter`.
    #[serde(default = "d_max_client_hello")]
    pub max_client_hello_bytes: u32,
    /// Client packets held per connection while the handoff is in flight.
    #[serde(default = "d_held")]
    pub held_packets: u32,
    /// Client packets one worker holds at once over all its connections (held packets are packet buffers: at most half the AF_PACKET pool of a worker, or half the DPDK mempool over all workers).
    #[serde(default = "d_held_per_worker")]
    pub held_packets_per_worker: u32,
    /// Dispatch requests in flight per worker; beyond it the worker answers `503`.
    #[serde(default = "d_dispatch_queue")]
    pub dispatch_queue: u32,
    /// Connections per worker that may wait for a header or a handoff at once (each holds a request buffer).
    #[serde(default = "d_pending")]
    pub pending_per_worker: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: d_max_header(),
            max_client_hello_bytes: d_max_client_hello(),
            held_packets: d_held(),
            held_packets_per_worker: d_held_per_worker(),
            dispatch_queue: d_dispatch_queue(),
            pending_per_worker: d_pending(),
        }
    }
}

/// Timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Whole request header must arrive within this (slowloris defence; `408`).
    #[serde(default = "d_header_timeout")]
    pub header: DurationStr,
    /// A dispatch decision not received within this is answered `503`.
    #[serde(default = "d_decision")]
    pub decision: DurationStr,
    /// First SYN/ACK retransmission timeout (doubles each time).
    #[serde(default = "d_syn_rto")]
    pub syn_ack_rto: DurationStr,
    /// SYN/ACK retransmissions before giving up.
    #[serde(default = "d_syn_retries")]
    pub syn_ack_retries: u32,
    /// THOP_CREATE retransmission timeout.
    #[serde(default = "d_handoff_rto")]
    pub handoff_rto: DurationStr,
    /// THOP_CREATE retransmissions before another backend is tried.
    #[serde(default = "d_handoff_retries")]
    pub handoff_retries: u32,
    /// Backends tried per request before answering `503`.
    #[serde(default = "d_redispatch")]
    pub max_redispatch: u32,
    /// After a client FIN in FORWARDING, the entry is freed once the client sent nothing for this long (a half-closed client still acknowledging the response keeps it).
    #[serde(default = "d_fin_timeout")]
    pub fin: DurationStr,
    /// A FORWARDING entry with no client packet for this long is freed.
    #[serde(default = "d_idle_timeout")]
    pub idle: DurationStr,
    /// Graceful stop: how long to wait for handoffs in flight on SIGTERM.
    #[serde(default = "d_drain_timeout")]
    pub shutdown_grace: DurationStr,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header: d_header_timeout(),
            decision: d_decision(),
            syn_ack_rto: d_syn_rto(),
            syn_ack_retries: d_syn_retries(),
            handoff_rto: d_handoff_rto(),
            handoff_retries: d_handoff_retries(),
            max_redispatch: d_redispatch(),
            fin: d_fin_timeout(),
            idle: d_idle_timeout(),
            shutdown_grace: d_drain_timeout(),
        }
    }
}

/// TCP options offered in the SYN/ACK; a stock Linux backend must honour them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpOptions {
    /// MSS the switch announces (1460 for a 1500-byte MTU); IPv6
    /// connections advertise 20 bytes less, for the larger header.
    #[serde(default = "d_mss")]
    pub mss: u16,
    /// Receive window scale shift (0–14).
    #[serde(default = "d_wscale")]
    pub window_scale: u8,
    /// Offer SACK when the client does.
    #[serde(default = "d_true")]
    pub sack: bool,
    /// Offer timestamps when the client does.
    #[serde(default = "d_true")]
    pub timestamps: bool,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            mss: d_mss(),
            window_scale: d_wscale(),
            sack: true,
            timestamps: true,
        }
    }
}

/// Dataplane tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Packets per RX/TX burst.
    #[serde(default = "d_burst")]
    pub burst_size: u32,
    /// Connection-table entries per worker (fixed at start-up).
    #[serde(default = "d_table")]
    pub table_capacity: u32,
    /// Polling of the data port.
    #[serde(default)]
    pub polling: Polling,
    /// SYN cookies.
    #[serde(default)]
    pub syn_cookies: SynCookies,
    /// Workers decide requests for stateless pools (maglev, sticky, weighted round-robin) themselves from a routing snapshot, without the hop to the control thread; `false` sends every request to the control thread.
    #[serde(default = "d_true")]
    pub local_decisions: bool,
    /// Bounds on what one client address may hold on a worker.
    #[serde(default)]
    pub per_client: PerClient,
    /// Shorter holds once the connection table or the session pool fills up.
    #[serde(default)]
    pub pressure: Pressure,
    /// When the table is full, a new connection may take the entry of the longest-idle FORWARDING connection that sent nothing for this long (`0s`: never evict).
    #[serde(default = "d_evict_idle")]
    pub evict_idle_after: DurationStr,
}

/// Per-client-address bounds, per worker (a client's connections spread over the workers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerClient {
    /// Connections (table entries in any state) one client address may have on a worker; its next SYN is dropped (`0`: no limit).
    #[serde(default = "d_client_conns")]
    pub max_connections: u32,
    /// Connections of one client address that may wait for a header or a handoff on a worker at once; the next completed handshake is reset (`0`: no limit).
    #[serde(default = "d_client_pending")]
    pub max_pending: u32,
}

impl Default for PerClient {
    fn default() -> Self {
        Self {
            max_connections: d_client_conns(),
            max_pending: d_client_pending(),
        }
    }
}

/// Holds under pressure: connections made while the table or the session pool is at least `threshold` full get these shorter limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pressure {
    /// Fill (0–1) of the connection table or of `limits.pending_per_worker` from which the shorter holds apply.
    #[serde(default = "d_pressure_threshold")]
    pub threshold: f64,
    /// Header timeout under pressure (instead of `timeouts.header`).
    #[serde(default = "d_pressure_header")]
    pub header_timeout: DurationStr,
    /// Retransmissions of the switch's own response (zero-window probes included) under pressure.
    #[serde(default = "d_pressure_retries")]
    pub response_retries: u32,
    /// Idle time after a FIN before the entry is freed, under pressure (instead of `timeouts.fin`).
    #[serde(default = "d_pressure_fin")]
    pub fin_timeout: DurationStr,
}

impl Default for Pressure {
    fn default() -> Self {
        Self {
            threshold: d_pressure_threshold(),
            header_timeout: d_pressure_header(),
            response_retries: d_pressure_retries(),
            fin_timeout: d_pressure_fin(),
        }
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            burst_size: d_burst(),
            table_capacity: d_table(),
            polling: Polling::default(),
            syn_cookies: SynCookies::default(),
            local_decisions: true,
            per_client: PerClient::default(),
            pressure: Pressure::default(),
            evict_idle_after: d_evict_idle(),
        }
    }
}

/// Polling mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Polling {
    /// `busy` spins on the port (lowest latency, a full core); `adaptive` sleeps when idle.
    #[serde(default)]
    pub mode: PollMode,
    /// Adaptive: empty polls before sleeping.
    #[serde(default = "d_spin")]
    pub idle_spins: u32,
    /// Adaptive: longest sleep when idle.
    #[serde(default = "d_max_sleep")]
    pub max_sleep: DurationStr,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            mode: PollMode::Adaptive,
            idle_spins: d_spin(),
            max_sleep: d_max_sleep(),
        }
    }
}

/// Polling mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PollMode {
    /// Spin.
    Busy,
    /// Spin, then sleep in bounded steps.
    #[default]
    Adaptive,
}

/// SYN cookies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynCookies {
    /// `auto`: above the threshold; `always`; `never`.
    #[serde(default)]
    pub mode: SynCookieMode,
    /// Auto mode: fraction (0–1) of a worker's table in SYN_RCVD above which cookies are used.
    #[serde(default = "d_syn_threshold")]
    pub threshold: f64,
}

impl Default for SynCookies {
    fn default() -> Self {
        Self {
            mode: SynCookieMode::Auto,
            threshold: d_syn_threshold(),
        }
    }
}

/// SYN cookie mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SynCookieMode {
    /// Cookies above the threshold.
    #[default]
    Auto,
    /// Always cookies (no SYN_RCVD state kept).
    Always,
    /// Never (a full table drops SYNs).
    Never,
}

// ---------------------------------------------------------------- THOP, admin, logging

/// THOP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thop {
    /// UDP port on the switch's data address (and the agents' default).
    #[serde(default = "d_thop_port")]
    pub port: u16,
    /// Keys shared with the agents; frames are authenticated with one of them.
    pub keys: Vec<ThopKey>,
    /// Key id used to sign outgoing frames (default: the first key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key: Option<u32>,
    /// Test beds only: accept published sample keys and low-entropy keys
    /// (all zero, a repeated byte, a sequence, few distinct bytes), which
    /// are otherwise refused by `check-config` and at start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_sample_keys: bool,
}

/// A THOP key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThopKey {
    /// Key id carried in each frame (rotation: add the new key to agents first).
    pub id: u32,
    /// 32-byte key as 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hex: Option<String>,
    /// File holding the 64 hex digits (kept out of the profile); it must
    /// not be readable by group or others (mode 0600 or 0400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
}

/// Recovering FORWARDING flows from the agents (`docs/thop.md` §9.4): a
/// segment of a connection the switch does not know is looked up instead of
/// dropped, and the agents re-announce their connections to a new boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// Off: a segment of an unknown flow is dropped (`no_flow`), and a
    /// restart loses every handed-off connection.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// HELLO to every agent this often (and at start): how agents learn of a
    /// new boot of the switch.
    #[serde(default = "d_hello_interval")]
    pub hello_interval: DurationStr,
    /// Wait this long for an answer to a LOOKUP before asking again.
    #[serde(default = "d_lookup_timeout")]
    pub lookup_timeout: DurationStr,
    /// LOOKUPs per unknown flow before its segment is dropped (`unresolved`).
    #[serde(default = "d_lookup_tries")]
    pub lookup_tries: u32,
    /// New lookups per second and worker (each asks every agent); segments
    /// beyond are dropped (`lookup_limited`) and looked up when they come again.
    #[serde(default = "d_lookups_per_second")]
    pub lookups_per_second: u32,
    /// Lookups one worker may have outstanding (each holds one packet buffer).
    #[serde(default = "d_max_pending_lookups")]
    pub max_pending_lookups: u32,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            enabled: true,
            hello_interval: d_hello_interval(),
            lookup_timeout: d_lookup_timeout(),
            lookup_tries: d_lookup_tries(),
            lookups_per_second: d_lookups_per_second(),
            max_pending_lookups: d_max_pending_lookups(),
        }
    }
}

/// A member of a cluster of switches (`docs/operations.md`, "Several
/// switches").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// File with 64 hex digits (mode 0600) that every switch of the cluster
    /// shares: it keys initial sequence numbers and SYN cookies, so a
    /// handshake a router moves to another switch still completes there
    /// (with `tuning.syn_cookies.mode: always`). Default: a random secret
    /// per start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// Announce the VIPs to the routers while this switch is healthy, and
    /// withdraw them on drain and stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<Announce>,
}

impl Cluster {
    /// True for a switch on its own (nothing set).
    pub fn is_single(&self) -> bool {
        self.secret_file.is_none() && self.announce.is_none()
    }
}

/// How the switch announces its VIPs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// Through a BIRD 2 daemon on this host, which speaks BGP to the routers.
    pub bird: BirdAnnounce,
    /// On stop (and on `POST /drain`): after the withdrawal, keep serving
    /// this long while the routers move the flows, then stop.
    #[serde(default = "d_withdraw_grace")]
    pub withdraw_grace: DurationStr,
}

/// A BIRD 2 protocol that carries the VIP routes: the switch enables it
/// through BIRD's control socket when healthy and disables it on drain and
/// stop. Configure it `disabled` in BIRD, so a host that boots without
/// `baton` announces nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BirdAnnounce {
    /// BIRD's control socket (`bird -s`; Debian: `/run/bird/bird.ctl`).
    #[serde(default = "d_bird_socket")]
    pub socket: String,
    /// The name of the protocol (e.g. a `static` one holding the VIPs'
    /// routes, exported by the BGP sessions).
    #[serde(default = "d_bird_protocol")]
    pub protocol: String,
}

fn d_withdraw_grace() -> DurationStr {
    DurationStr::secs(2)
}
fn d_bird_socket() -> String {
    "/run/bird/bird.ctl".into()
}
fn d_bird_protocol() -> String {
    "vip".into()
}

fn d_hello_interval() -> DurationStr {
    DurationStr::secs(1)
}
fn d_lookup_timeout() -> DurationStr {
    DurationStr::millis(50)
}
fn d_lookup_tries() -> u32 {
    3
}
fn d_lookups_per_second() -> u32 {
    2000
}
fn d_max_pending_lookups() -> u32 {
    1024
}

/// Management endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address of `/metrics` and the admin API (kernel stack, management network).
    #[serde(default = "d_admin")]
    pub listen: SocketAddr,
    /// Only these client addresses may connect (others are closed before a byte is read); default: loopback only.
    #[serde(default = "d_admin_allow")]
    pub allow: Vec<IpAddr>,
    /// File holding the bearer token that state-changing calls (`/reload`, drain) must send; mode 0600 or stricter, at least 32 characters. Without it those calls are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Time a client has to send a complete request head; also the longest idle time between keep-alive requests.
    #[serde(default = "d_admin_header_timeout")]
    pub header_timeout: DurationStr,
    /// Connections served at once; a new one closes the oldest waiting for a request head (counted).
    #[serde(default = "d_admin_connections")]
    pub max_connections: u32,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: d_admin(),
            allow: d_admin_allow(),
            token_file: None,
            header_timeout: d_admin_header_timeout(),
            max_connections: d_admin_connections(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// `human` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Filter in `tracing` env-filter syntax (e.g. `info`, `controlplane=debug`); `RUST_LOG` wins.
    #[serde(default = "d_level")]
    pub level: String,
    /// Access log of dispatched requests.
    #[serde(default)]
    pub access_log: AccessLog,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: d_level(),
            access_log: AccessLog::default(),
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Access log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// Write a line per dispatched request (target `baton::access`).
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Log one request in N (1: all).
    #[serde(default = "d_one_u32")]
    pub sample_every: u32,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            sample_every: 1,
        }
    }
}

// ---------------------------------------------------------------- defaults

fn d_true() -> bool {
    true
}
fn d_one() -> u16 {
    1
}
fn d_one_u32() -> u32 {
    1
}
fn d_block_size() -> u32 {
    1 << 18
}
fn d_block_count() -> u32 {
    64
}
fn d_frame_size() -> u32 {
    2048
}
fn d_ring() -> u16 {
    1024
}
fn d_xdp_frame_count() -> u32 {
    4096
}
fn d_xdp_frame_size() -> u32 {
    4096
}
fn d_xdp_ring_size() -> u32 {
    2048
}
fn d_xdp_flow_capacity() -> u32 {
    1 << 18
}
fn d_mempool() -> u32 {
    8191
}
fn d_mempool_cache() -> u32 {
    256
}
fn d_memory_capacity() -> u32 {
    4096
}
fn d_http_port() -> u16 {
    80
}
fn d_weight() -> u32 {
    1
}
fn d_503() -> u16 {
    503
}
fn d_interval() -> DurationStr {
    DurationStr::secs(2)
}
fn d_check_timeout() -> DurationStr {
    DurationStr::millis(1000)
}
fn d_rise() -> u32 {
    2
}
fn d_fall() -> u32 {
    3
}
fn d_agent_port() -> u16 {
    9101
}
fn d_health_path() -> String {
    "/healthz".to_string()
}
fn d_passive_fall() -> u32 {
    3
}
fn d_passive_hold() -> DurationStr {
    DurationStr::secs(5)
}
fn d_max_header() -> u32 {
    16 * 1024
}
fn d_max_client_hello() -> u32 {
    16 * 1024
}
fn d_held() -> u32 {
    8
}
fn d_held_per_worker() -> u32 {
    512
}
fn d_client_conns() -> u32 {
    8192
}
fn d_client_pending() -> u32 {
    1024
}
fn d_pressure_threshold() -> f64 {
    0.75
}
fn d_pressure_header() -> DurationStr {
    DurationStr::secs(2)
}
fn d_pressure_retries() -> u32 {
    1
}
fn d_pressure_fin() -> DurationStr {
    DurationStr::secs(2)
}
fn d_evict_idle() -> DurationStr {
    DurationStr::secs(60)
}
fn d_dispatch_queue() -> u32 {
    4096
}
fn d_header_timeout() -> DurationStr {
    DurationStr::secs(10)
}
fn d_syn_rto() -> DurationStr {
    DurationStr::secs(1)
}
fn d_syn_retries() -> u32 {
    5
}
fn d_handoff_rto() -> DurationStr {
    DurationStr::millis(100)
}
fn d_handoff_retries() -> u32 {
    3
}
fn d_redispatch() -> u32 {
    3
}
fn d_fin_timeout() -> DurationStr {
    DurationStr::secs(10)
}
fn d_idle_timeout() -> DurationStr {
    DurationStr::secs(300)
}
fn d_drain_timeout() -> DurationStr {
    DurationStr::secs(10)
}
fn d_burst() -> u32 {
    32
}
fn d_table() -> u32 {
    65_536
}
fn d_spin() -> u32 {
    256
}
fn d_max_sleep() -> DurationStr {
    DurationStr::millis(1)
}
fn d_syn_threshold() -> f64 {
    0.5
}
fn d_thop_port() -> u16 {
    9199
}
fn d_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9100))
}
fn d_admin_allow() -> Vec<IpAddr> {
    vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ]
}
fn d_admin_header_timeout() -> DurationStr {
    DurationStr::secs(5)
}
fn d_admin_connections() -> u32 {
    64
}
fn d_level() -> String {
    "info".to_string()
}
fn d_pending() -> u32 {
    4096
}
fn d_decision() -> DurationStr {
    DurationStr::secs(1)
}
fn d_mss() -> u16 {
    1460
}
fn d_wscale() -> u8 {
    7
}
fn d_tx_frames() -> u32 {
    1024
}
fn d_pool_size() -> u32 {
    4096
}
fn d_block_timeout() -> DurationStr {
    DurationStr::millis(1)
}
