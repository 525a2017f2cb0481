//! The dataplane engine's test world: the addresses, MACs and THOP key of a
//! client, the switch and three backends, and the small deterministic
//! `WorkerConfig` built from them, which the engine's scenario tests and
//! benches start from (overriding what they measure).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use dataplane::config::{Protocol, Service, SynCookieMode, ThopConfig, WorkerConfig};
use dataplane::dispatch::BackendTarget;
use dataplane::wire::Mac;

pub const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x65];
pub const SWITCH_MAC: Mac = [0x02, 0xba, 0x70, 0, 0, 0x02];
/// The THOP key (id 1) of the switch and every backend.
pub const KEY: [u8; 32] = [0x42; 32];

/// The client, 198.18.0.101.
pub fn client_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 101))
}
/// The service's VIP, 198.18.0.10 (port 80).
pub fn vip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10))
}
/// The switch's own address, 198.18.0.2.
pub fn switch_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))
}
/// Backend `b` (1, 2, 3 are configured): 198.18.0.(10 + b).
pub fn backend_ip(b: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10 + b as u8))
}
pub fn backend_mac(b: u32) -> Mac {
    [0x02, 0, 0, 0, 0, 10 + b as u8]
}
/// Backend `b` as a dispatch decision names it.
pub fn target(b: u32) -> BackendTarget {
    BackendTarget {
        id: b,
        ip: backend_ip(b),
        mac: None,
        thop: SocketAddr::new(backend_ip(b), 9199),
    }
}

/// The engine tests' configuration (small, deterministic): one service,
/// three backends with static MACs, SYN cookies on overload.
pub fn test_config() -> WorkerConfig {
    WorkerConfig {
        services: vec![
            Service {
                vip: vip(),
                port: 80,
                protocol: Protocol::Http,
            },
            Service {
                vip: vip(),
                port: 443,
                protocol: Protocol::Tls,
            },
        ],
        mac: SWITCH_MAC,
        ip: switch_ip(),
        thop: ThopConfig {
            port: 9199,
            key_id: 1,
            keys: vec![(1, KEY)],
            peers: Vec::new(),
        },
        header_max: 1024,
        client_hello_max: 2048,
        request_buffer: 4096,
        table_capacity: 64,
        pending_capacity: 16,
        syncookie_mode: SynCookieMode::OnOverload,
        syncookie_threshold: 32,
        static_macs: (1..=3).map(|b| (backend_ip(b), backend_mac(b))).collect(),
        gratuitous_arp: false,
        secret: [9; 16],
        ..WorkerConfig::default()
    }
}
