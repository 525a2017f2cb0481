//! The shared test-bed addresses (docs/testbed.md): 198.18.0.0/15 for data,
//! 198.19.0.0/24 for management.
//!
//! Every part of Baton that runs in the bed (the switch profile, the agent
//! profiles, the tests) uses these, so they live in one place.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The switch's data address: THOP source, answers ARP.
pub const SWITCH_DATA: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The kernel address of the L7 proxies (nginx, HAProxy) in the benchmarks.
pub const PROXY_DATA: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// The virtual IP clients connect to.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The virtual service port.
pub const VIP_PORT: u16 = 80;
/// The switch's management address (metrics and admin on [`METRICS_PORT`]).
pub const SWITCH_MGMT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// The hub's own address on the management bridge (scrapes, admin calls).
pub const HUB_MGMT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The switch's metrics and admin port.
pub const METRICS_PORT: u16 = 9100;
/// The agents' metrics port.
pub const AGENT_METRICS_PORT: u16 = 9101;
/// THOP's UDP port, on the switch and on each agent.
pub const THOP_PORT: u16 = 9199;
/// Where each backend's web server listens (127.0.0.1 and its data address).
pub const WEB_PORT: u16 = 8080;
/// Prefix length of both segments.
pub const PREFIX: u8 = 24;

/// Data address of backend `i` (0-based): 198.18.0.11, .12, …
pub fn backend_data(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + i as u8)
}

/// Management address of backend `i` (0-based): 198.19.0.11, .12, …
pub fn backend_mgmt(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 11 + i as u8)
}

/// Data address of client `i` (0-based): 198.18.0.101, .102, …
pub fn client_data(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 101 + i as u8)
}

/// The VIP service as a socket address.
pub fn vip_service() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(VIP, VIP_PORT))
}

/// The switch's metrics/admin endpoint.
pub fn switch_metrics() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(SWITCH_MGMT, METRICS_PORT))
}
