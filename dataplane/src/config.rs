//! Plain configuration for the dataplane workers.
//!
//! The control plane builds a [`WorkerConfig`] from its YAML profile; the
//! dataplane never parses YAML. Every limit and timeout of the state machine is
//! here, with a default an operator would accept for a first deployment.

pub use crate::entropy::random_secret;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// One load-balanced service: the switch's LISTEN state for `vip:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub vip: IpAddr,
    pub port: u16,
    /// What WAITHEADER waits for before a decision.
    pub protocol: Protocol,
}

/// What a service's clients send first, and so what WAITHEADER waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// An HTTP/1.x request head; refusals are HTTP responses.
    #[default]
    Http,
    /// A TLS ClientHello (routing by SNI and ALPN); refusals are TLS alerts
    /// or a bare close. The switch never terminates TLS.
    Tls,
}

impl Service {
    /// The service as a socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }
}

/// When the switch answers a SYN with a SYN cookie instead of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynCookieMode {
    /// Never: a SYN that finds the SYN_RCVD budget full is dropped.
    Off,
    /// Above `syncookie_threshold` entries in SYN_RCVD (the Linux default).
    OnOverload,
    /// Always: no state is kept before the handshake completes.
    Always,
}

/// How a worker waits when its queues are empty (shared with the packet I/O config).
pub use crate::io::PollMode;

/// TCP options the switch offers in its SYN/ACK. The backend continues the
/// connection with exactly these (TCP_REPAIR), so they must be ones a stock
/// Linux backend honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptionsConfig {
    /// Our MSS (IPv4, Ethernet MTU 1500: 1460).
    pub mss: u16,
    /// Our receive window scale shift (0..=14); Linux uses 7 for default buffers.
    pub window_scale: u8,
    /// Offer SACK when the client does.
    pub sack: bool,
    /// Offer timestamps when the client does.
    pub timestamps: bool,
}

impl Default for TcpOptionsConfig {
    fn default() -> Self {
        TcpOptionsConfig {
            mss: 1460,
            window_scale: 7,
            sack: true,
            timestamps: true,
        }
    }
}

/// THOP endpoint and keys (authenticated, see `docs/thop.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThopConfig {
    /// UDP port on the switch's data address (and the agents' default).
    pub port: u16,
    /// Key id used for frames we send.
    pub key_id: u32,
    /// All keys accepted on receipt (id, 32-byte key); must contain `key_id`.
    pub keys: Vec<(u32, [u8; 32])>,
    /// Agents with a key of their own: (node id, key id). The switch signs
    /// frames to the node with that key, and a key named here is accepted
    /// only from the nodes naming it, so an agent cannot speak for another.
    pub peers: Vec<(u32, u32)>,
}

impl Default for ThopConfig {
    fn default() -> Self {
        ThopConfig {
            port: 9199,
            key_id: 0,
            keys: vec![(0, [0u8; 32])],
            peers: Vec::new(),
        }
    }
}

/// Recovering FORWARDING flows from the agents (`docs/thop.md` §9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Look unknown flows up and install what the agents report; off: a
    /// segment of an unknown flow is dropped (`no_flow`) as it always was.
    pub enabled: bool,
    /// HELLO to every agent at start and this often.
    pub hello_interval: Duration,
    /// Wait for an answer to a LOOKUP this long before asking again.
    pub lookup_timeout: Duration,
    /// LOOKUPs sent for one flow before its segments are dropped.
    pub lookup_tries: u32,
    /// New lookups a worker starts per second (a burst of as many is allowed).
    pub lookups_per_sec: u32,
    /// Lookups one worker has outstanding at once.
    pub max_pending: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            enabled: true,
            hello_interval: Duration::from_secs(1),
            lookup_timeout: Duration::from_millis(50),
            lookup_tries: 3,
            lookups_per_sec: 2000,
            max_pending: 1024,
        }
    }
}

/// An agent the switch may have handed connections to: what recovery needs
/// to say HELLO to it and to install the flows it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPeer {
    /// The backend the agent serves.
    pub backend: u32,
    /// The backend's data address (FORWARDING frames go to its MAC).
    pub ip: IpAddr,
    /// Its MAC when known in advance.
    pub mac: Option<[u8; 6]>,
    /// The agent's THOP address.
    pub thop: SocketAddr,
}

/// Everything one worker needs; identical for all workers of a switch.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Load-balanced services (LISTEN entries).
    pub services: Vec<Service>,
    /// The switch's data MAC (source of every frame it sends).
    pub mac: [u8; 6],
    /// The switch's data address (THOP source towards agents of its family,
    /// answered in ARP or neighbour discovery, and to ping).
    pub ip: IpAddr,
    /// The switch's IPv6 data address when `ip` is IPv4 (a dual-stack data
    /// port): answered in neighbour discovery and to ping, the source of
    /// THOP towards agents with IPv6 addresses. `None` with an IPv4 `ip`:
    /// IPv6 uses only the link-local address derived from `mac`.
    pub ip6: Option<Ipv6Addr>,
    pub thop: ThopConfig,
    pub tcp: TcpOptionsConfig,

    /// Largest request header accepted (request line to blank line); above: 431.
    pub header_max: usize,
    /// Largest ClientHello accepted on a TLS service (the handshake
    /// message, record headers not counted); above: `illegal_parameter`.
    pub client_hello_max: usize,
    /// Request bytes buffered per connection in WAITHEADER (header plus any
    /// body/pipelined bytes); also the window we advertise. At least
    /// `header_max + 1`.
    pub request_buffer: usize,
    /// Most header fields parsed; more: 431.
    pub max_headers: usize,
    /// Client packets held per connection while HANDOFF is pending.
    pub handoff_hold: usize,
    /// Client packets held by one worker at once, all connections together
    /// (held buffers come from the packet pool; this keeps most of it free).
    pub held_capacity: usize,

    /// First SYN/ACK retransmission timeout (doubles each time).
    pub synack_rto: Duration,
    /// SYN/ACK retransmissions before the entry is dropped (Linux: 5).
    pub synack_retries: u32,
    /// Time from the end of the handshake to a complete header; then 408.
    pub header_timeout: Duration,
    /// Time a dispatch decision may take; then 503.
    pub decision_timeout: Duration,
    /// THOP_CREATE retransmission timeout (doubles each time).
    pub handoff_rto: Duration,
    /// THOP_CREATE retransmissions before another backend is asked for.
    pub handoff_retries: u32,
    /// Backends tried per request before answering 503.
    pub dispatch_attempts: u32,
    /// Retransmission timeout of the switch's own 4xx/5xx response.
    pub response_rto: Duration,
    /// Retransmissions of that response before the connection is reset.
    pub response_retries: u32,
    /// After the client's FIN, a FORWARDING entry is freed when the client
    /// sent nothing for this long.
    pub fin_timeout: Duration,
    /// FORWARDING entry without client packets for this long is freed.
    pub idle_timeout: Duration,
    /// After the switch closed a connection itself, retransmitted FINs are
    /// answered for this long (a short TIME_WAIT).
    pub time_wait: Duration,

    /// Connection table capacity per worker (all states).
    pub table_capacity: usize,
    /// Connections per worker that may be in WAITHEADER/HANDOFF at once (each
    /// holds a `request_buffer`).
    pub pending_capacity: usize,
    pub syncookie_mode: SynCookieMode,
    /// SYN_RCVD entries per worker above which cookies are used (OnOverload).
    pub syncookie_threshold: usize,
    /// Table entries (any state) one client address may have on a worker;
    /// its next SYN is dropped (0: no limit).
    pub client_max_connections: usize,
    /// Sessions (WAITHEADER to HANDOFF) one client address may have on a
    /// worker; its next completed handshake is reset (0: no limit).
    pub client_max_pending: usize,
    /// Fill of the table or of the session pool (0..=1) from which new
    /// connections get the shorter `pressure_*` holds.
    pub pressure_threshold: f64,
    /// Header timeout of connections established under pressure.
    pub pressure_header_timeout: Duration,
    /// Retransmissions of the switch's own response under pressure.
    pub pressure_response_retries: u32,
    /// FIN-to-free idle time under pressure (CLOSING after our FIN was
    /// acknowledged, FORWARDING after the client's FIN).
    pub pressure_fin_timeout: Duration,
    /// A full table frees its longest-idle FORWARDING entry for a new
    /// connection when that entry saw no client packet for this long
    /// (zero: never evict).
    pub evict_idle_after: Duration,
    /// Frames received per poll.
    pub burst: usize,
    pub poll: PollMode,

    /// Backend data MACs known in advance (skip ARP for them).
    pub static_macs: Vec<(IpAddr, [u8; 6])>,
    /// Re-resolve a backend MAC when its entry is older than this.
    pub arp_refresh: Duration,
    /// Forget a MAC that was not confirmed for this long.
    pub arp_timeout: Duration,
    /// Announce the VIPs and the data address with gratuitous ARP at start.
    pub gratuitous_arp: bool,

    /// Secret for ISNs, SYN cookies and table hashing. Every worker of one
    /// switch gets the same one.
    pub secret: [u8; 16],
    /// Random and non-zero per start of the switch: the `boot` of every THOP
    /// frame it sends, and (its low byte) part of every connection id, so a
    /// restarted switch never reuses its predecessor's ids.
    pub boot: u32,
    pub recovery: RecoveryConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            services: vec![Service {
                vip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)),
                port: 80,
                protocol: Protocol::Http,
            }],
            mac: [0x02, 0xba, 0x70, 0x00, 0x00, 0x02],
            ip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            ip6: None,
            thop: ThopConfig::default(),
            tcp: TcpOptionsConfig::default(),
            header_max: 16 * 1024,
            client_hello_max: 16 * 1024,
            request_buffer: 24 * 1024,
            max_headers: 100,
            handoff_hold: 4,
            held_capacity: 512,
            synack_rto: Duration::from_secs(1),
            synack_retries: 5,
            header_timeout: Duration::from_secs(10),
            decision_timeout: Duration::from_secs(1),
            handoff_rto: Duration::from_millis(100),
            handoff_retries: 3,
            dispatch_attempts: 3,
            response_rto: Duration::from_millis(500),
            response_retries: 3,
            fin_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            time_wait: Duration::from_secs(2),
            table_capacity: 1 << 18,
            pending_capacity: 4096,
            syncookie_mode: SynCookieMode::OnOverload,
            syncookie_threshold: 1024,
            client_max_connections: 8192,
            client_max_pending: 1024,
            pressure_threshold: 0.75,
            pressure_header_timeout: Duration::from_secs(2),
            pressure_response_retries: 1,
            pressure_fin_timeout: Duration::from_secs(2),
            evict_idle_after: Duration::from_secs(60),
            burst: 32,
            poll: PollMode::ADAPTIVE,
            static_macs: Vec::new(),
            arp_refresh: Duration::from_secs(30),
            arp_timeout: Duration::from_secs(120),
            gratuitous_arp: true,
            secret: random_secret(),
            boot: crate::connid::random_boot(),
            recovery: RecoveryConfig::default(),
        }
    }
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no services configured")]
    NoServices,
    #[error("request_buffer ({buffer}) must exceed header_max ({header_max})")]
    BufferTooSmall { buffer: usize, header_max: usize },
    #[error("request_buffer ({buffer}) must hold a ClientHello of client_hello_max ({hello_max}) with its record headers")]
    BufferTooSmallForHello { buffer: usize, hello_max: usize },
    #[error("request_buffer must be at most 1 MiB")]
    BufferTooLarge,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("table_capacity must be at most 2^23 (8,388,608) per worker: connection ids need the other bits")]
    TableTooLarge,
    #[error("window_scale must be at most 14")]
    WindowScale,
    #[error("mss must be between 88 and 65495")]
    Mss,
    #[error("THOP key id {0} is not among the keys")]
    MissingKey(u32),
    #[error("{0} is not a unicast address the switch can answer for (unspecified, multicast, loopback, link-local or IPv4-mapped)")]
    NotUnicast(IpAddr),
    #[error("two IPv6 data addresses ({0} and {1}); give one")]
    TwoIpv6(Ipv6Addr, Ipv6Addr),
}

/// Whether `ip` can be a data address or a VIP: not unspecified, multicast,
/// loopback or broadcast; for IPv6 not link-local (the switch derives its
/// own) and not IPv4-mapped (an IPv4 address is given as IPv4).
pub fn usable_unicast(ip: IpAddr) -> bool {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return false;
    }
    match ip {
        IpAddr::V4(a) => !a.is_broadcast(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 != 0xfe80 && a.to_ipv4_mapped().is_none(),
    }
}

/// Bytes a ClientHello of `max` bytes may take on the wire: its 4-byte
/// handshake header, and a record header for every 2^14 bytes (a client
/// may cut records smaller; such a hello needs a larger buffer).
pub fn hello_bytes(max: usize) -> usize {
    let msg = max + 4;
    msg + crate::tls::RECORD_HEADER * msg.div_ceil(crate::tls::MAX_RECORD)
}

impl WorkerConfig {
    /// The switch's IPv6 data address, if it has one (`ip` itself or `ip6`).
    pub fn data_ip6(&self) -> Option<Ipv6Addr> {
        match self.ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => self.ip6,
        }
    }

    /// Checks the limits the state machine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.services.is_empty() {
            return Err(ConfigError::NoServices);
        }
        if self.request_buffer <= self.header_max {
            return Err(ConfigError::BufferTooSmall {
                buffer: self.request_buffer,
                header_max: self.header_max,
            });
        }
        if self.request_buffer > 1 << 20 {
            return Err(ConfigError::BufferTooLarge);
        }
        if self.services.iter().any(|s| s.protocol == Protocol::Tls)
            && self.request_buffer < hello_bytes(self.client_hello_max)
        {
            return Err(ConfigError::BufferTooSmallForHello {
                buffer: self.request_buffer,
                hello_max: self.client_hello_max,
            });
        }
        for (v, name) in [
            (self.table_capacity, "table_capacity"),
            (self.pending_capacity, "pending_capacity"),
            (self.burst, "burst"),
            (self.max_headers, "max_headers"),
            (self.dispatch_attempts as usize, "dispatch_attempts"),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.table_capacity > crate::connid::MAX_TABLE_SLOTS {
            return Err(ConfigError::TableTooLarge);
        }
        if self.tcp.window_scale > 14 {
            return Err(ConfigError::WindowScale);
        }
        if !(88..=65495).contains(&self.tcp.mss) {
            return Err(ConfigError::Mss);
        }
        if !self.thop.keys.iter().any(|(id, _)| *id == self.thop.key_id) {
            return Err(ConfigError::MissingKey(self.thop.key_id));
        }
        for (_, kid) in &self.thop.peers {
            if !self.thop.keys.iter().any(|(id, _)| id == kid) {
                return Err(ConfigError::MissingKey(*kid));
            }
        }
        if let (IpAddr::V6(a), Some(b)) = (self.ip, self.ip6) {
            if a != b {
                return Err(ConfigError::TwoIpv6(a, b));
            }
        }
        let ours = std::iter::once(self.ip).chain(self.ip6.map(IpAddr::V6));
        for ip in ours.chain(self.services.iter().map(|s| s.vip)) {
            if !usable_unicast(ip) {
                return Err(ConfigError::NotUnicast(ip));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        WorkerConfig::default().validate().unwrap();
    }

    #[test]
    fn small_buffer_is_rejected() {
        let c = WorkerConfig {
            request_buffer: 100,
            header_max: 100,
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BufferTooSmall { .. })
        ));
    }
}
