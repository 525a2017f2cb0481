//! The shared test-bed addresses (docs/testbed.md): 198.18.0.0/24 for data,
//! 198.18.1.0/24 for the clients of a routed bed, 198.19.0.0/24 for
//! management; nothing outside 198.18.0.0/15. The data segment is dual-stack:
//! 2001:2::/64 from the IPv6 benchmarking prefix 2001:2::/48, each host's
//! IPv6 address ending in the same digits as its IPv4 last octet
//! (198.18.0.11 and 2001:2::11).
//!
//! Every part of Baton that runs in the bed (the switch profile, the agent
//! profiles, the tests) uses these, so they live in one place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The (first) switch's data address: THOP source, answers ARP.
pub const SWITCH_DATA: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The kernel address of the L7 proxies (nginx, HAProxy) in the benchmarks.
pub const PROXY_DATA: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// The virtual IP clients connect to.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The virtual service port.
pub const VIP_PORT: u16 = 80;
/// The virtual HTTPS service port (the switch routes it by the ClientHello's
/// SNI and ALPN; the backends' nginx terminates TLS). The backends' nginx
/// also listens on it at their data address, for the direct benchmark and
/// the peers ([`BACKEND_TLS_PORT`]).
pub const VIP_TLS_PORT: u16 = 443;
/// The (first) switch's management address (metrics and admin on
/// [`METRICS_PORT`]).
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
/// Where each backend's nginx terminates TLS on 127.0.0.1: the upstream of
/// the agents' relay for the VIP's HTTPS service.
pub const WEB_TLS_PORT: u16 = 8443;
/// Where each backend's nginx terminates TLS on its data address (clients
/// of the direct benchmark, HAProxy in front of the backends).
pub const BACKEND_TLS_PORT: u16 = 443;
/// Prefix length of every segment.
pub const PREFIX: u8 = 24;

/// The (first) switch's IPv6 data address: answered in neighbour discovery.
pub const SWITCH_DATA6: Ipv6Addr = v6(2);
/// The IPv6 kernel address of the L7 proxies' host.
pub const PROXY_DATA6: Ipv6Addr = v6(3);
/// The virtual IP's IPv6 address: the same services as [`VIP`].
pub const VIP6: Ipv6Addr = v6(0x10);
/// Prefix length of the IPv6 data segment (2001:2::/64).
pub const PREFIX6: u8 = 64;

/// 2001:2::`tail` where `tail`'s hex digits read as the IPv4 last octet's
/// decimal ones: `v6(0x11)` is 2001:2::11, beside 198.18.0.11.
const fn v6(tail: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, tail)
}

/// The IPv6 twin of an IPv4 last octet: 11 → 0x11, 101 → 0x101.
const fn twin(octet: u8) -> u16 {
    let o = octet as u16;
    (o / 100) * 0x100 + (o / 10 % 10) * 0x10 + o % 10
}

/// Switches a bed can have: data addresses .2 and .4–.9 (.3 is the proxy,
/// .10 the VIP, .11 on the backends).
pub const MAX_SWITCHES: usize = 7;
/// The router of a routed bed on the data segment (the backends' way back
/// to the clients).
pub const ROUTER_DATA: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The router of a routed bed on the clients' segment (their default route).
pub const ROUTER_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The router of a routed bed on the management segment (its BGP sessions).
pub const ROUTER_MGMT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 254);
/// The clients' segment of a routed bed.
pub const CLIENT_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 0);

/// Last octet of switch `i`'s addresses (0-based): 2, 4, 5, … (3 is the
/// proxy's).
fn switch_octet(i: usize) -> u8 {
    if i == 0 {
        2
    } else {
        (3 + i) as u8
    }
}

/// Data address of switch `i` (0-based): 198.18.0.2, .4, .5, … (the bed
/// refuses more than [`MAX_SWITCHES`]).
pub fn switch_data(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, switch_octet(i))
}

/// Management address of switch `i` (0-based): 198.19.0.2, .4, .5, …
pub fn switch_mgmt(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, switch_octet(i))
}

/// Metrics and admin endpoint of switch `i` (0-based).
pub fn switch_metrics_of(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(switch_mgmt(i), METRICS_PORT))
}

/// Address of client `i` (0-based) of a routed bed: 198.18.1.101, .102, …
pub fn routed_client(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 101 + i as u8)
}

/// Data address of backend `i` (0-based): 198.18.0.11, .12, …
pub fn backend_data(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + i as u8)
}

/// IPv6 data address of backend `i` (0-based): 2001:2::11, ::12, …
pub fn backend_data6(i: usize) -> Ipv6Addr {
    v6(twin(11 + i as u8))
}

/// IPv6 data address of switch `i` (0-based): 2001:2::2, ::4, ::5, …
pub fn switch_data6(i: usize) -> Ipv6Addr {
    v6(twin(switch_octet(i)))
}

/// IPv6 data address of client `i` (0-based) of a bed whose clients are
/// on the data segment: 2001:2::101, ::102, …
pub fn client_data6(i: usize) -> Ipv6Addr {
    v6(twin(101 + i as u8))
}

/// The IPv6 twin of an address on the data segment (198.18.0.x →
/// 2001:2::x); None for any other address.
pub fn data6_of(ip: Ipv4Addr) -> Option<Ipv6Addr> {
    let [a, b, c, d] = ip.octets();
    ((a, b, c) == (198, 18, 0)).then_some(v6(twin(d)))
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

/// The VIP's HTTPS service as a socket address.
pub fn vip_tls_service() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(VIP, VIP_TLS_PORT))
}

/// The VIP service over IPv6: [2001:2::10]:80.
pub fn vip6_service() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(VIP6, VIP_PORT, 0, 0))
}

/// The VIP's HTTPS service over IPv6: [2001:2::10]:443.
pub fn vip6_tls_service() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(VIP6, VIP_TLS_PORT, 0, 0))
}

/// The VIP of family `ipv6` as an address.
pub fn vip_of(ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(VIP6)
    } else {
        IpAddr::V4(VIP)
    }
}

/// `host` as a URL writes it: an IPv6 address in brackets.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// Backend `i`'s TLS listener on its data address (0-based).
pub fn backend_tls(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(backend_data(i), BACKEND_TLS_PORT))
}

/// The (first) switch's metrics/admin endpoint.
pub fn switch_metrics() -> SocketAddr {
    switch_metrics_of(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_skip_the_proxy_and_stay_below_the_vip() {
        assert_eq!(switch_data(0), SWITCH_DATA);
        assert_eq!(switch_mgmt(0), SWITCH_MGMT);
        assert_eq!(switch_data(1), Ipv4Addr::new(198, 18, 0, 4));
        assert_eq!(switch_mgmt(2), Ipv4Addr::new(198, 19, 0, 5));
        let last = switch_data(MAX_SWITCHES - 1);
        assert!(last.octets()[3] < VIP.octets()[3]);
        assert!((0..MAX_SWITCHES).all(|i| switch_data(i) != PROXY_DATA));
        assert_eq!(switch_metrics(), switch_metrics_of(0));
        assert_eq!(routed_client(1), Ipv4Addr::new(198, 18, 1, 102));
    }

    #[test]
    fn ipv6_addresses_repeat_the_ipv4_digits() {
        assert_eq!(SWITCH_DATA6, "2001:2::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(PROXY_DATA6, "2001:2::3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(VIP6, "2001:2::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(switch_data6(0), SWITCH_DATA6);
        assert_eq!(switch_data6(1).to_string(), "2001:2::4");
        assert_eq!(backend_data6(0).to_string(), "2001:2::11");
        assert_eq!(backend_data6(2).to_string(), "2001:2::13");
        assert_eq!(client_data6(1).to_string(), "2001:2::102");
        for i in 0..3 {
            assert_eq!(data6_of(backend_data(i)), Some(backend_data6(i)));
            assert_eq!(data6_of(client_data(i)), Some(client_data6(i)));
        }
        assert_eq!(data6_of(VIP), Some(VIP6));
        assert_eq!(data6_of(HUB_MGMT), None);
        assert_eq!(vip6_service().to_string(), "[2001:2::10]:80");
        assert_eq!(url_host(vip_of(true)), "[2001:2::10]");
        assert_eq!(url_host(vip_of(false)), "198.18.0.10");
    }
}
