//! The dataplane engine's test world: the addresses, MACs and THOP key of a
//! client, the switch and three backends, and the small deterministic
//! `WorkerConfig` built from them, which the engine's scenario tests and
//! benches start from (overriding what they measure).

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use dataplane::config::{Protocol, Service, SynCookieMode, ThopConfig, WorkerConfig};
use dataplane::dispatch::BackendTarget;
use dataplane::wire::Mac;

pub const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x65];
pub const SWITCH_MAC: Mac = [0x02, 0xba, 0x70, 0, 0, 0x02];
/// The THOP key (id 1) of the switch and every backend.
pub const KEY: [u8; 32] = [0x42; 32];

thread_local! {
    static IPV6: Cell<bool> = const { Cell::new(false) };
}

/// Moves this thread's test world to IPv6: the client, the VIP and the
/// backends (their agents too) take the same numbers in 2001:2::/64
/// (2001:2::101, 2001:2::10, 2001:2::11…), and the switch is dual-stack,
/// 198.18.0.2 and 2001:2::2, so THOP runs over IPv6. Call it before
/// building a config or a bed.
pub fn use_ipv6() {
    IPV6.with(|c| c.set(true));
}

/// True once [`use_ipv6`] was called on this thread.
pub fn ipv6() -> bool {
    IPV6.with(Cell::get)
}

fn addr(last: u8) -> IpAddr {
    if ipv6() {
        // The IPv4 address's last octet written as the same digits.
        let digits = u16::from_str_radix(&last.to_string(), 16).unwrap_or(0);
        IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, digits))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }
}

/// The client, 198.18.0.101 (2001:2::101).
pub fn client_ip() -> IpAddr {
    addr(101)
}
/// The service's VIP, 198.18.0.10 (2001:2::10), port 80.
pub fn vip() -> IpAddr {
    addr(10)
}
/// The switch's own address, 198.18.0.2 (2001:2::2).
pub fn switch_ip() -> IpAddr {
    addr(2)
}
/// Backend `b` (1, 2, 3 are configured): 198.18.0.(10 + b) (2001:2::11…).
pub fn backend_ip(b: u32) -> IpAddr {
    addr(10 + b as u8)
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
/// three backends with static MACs, SYN cookies on overload. In the IPv6
/// world the switch's primary address stays 198.18.0.2 beside 2001:2::2
/// (a dual-stack port) and `tcp.mss` is 1,480, so a SYN/ACK advertises the
/// same 1,460 as the IPv4 world's and one script serves both.
pub fn test_config() -> WorkerConfig {
    let v6 = ipv6();
    let mut tcp = dataplane::config::TcpOptionsConfig::default();
    if v6 {
        tcp.mss += 20;
    }
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
        ip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        ip6: match switch_ip() {
            IpAddr::V6(a) if v6 => Some(a),
            _ => None,
        },
        tcp,
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
