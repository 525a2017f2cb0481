//! The IPv6 header itself: its length, how to write one, and the
//! pseudo-header that upper-layer checksums cover (RFC 8200 §8.1). Kept
//! apart from the frame parser ([`super::ipv6`]) because neighbour
//! discovery and MLD build and check packets with it too, and the parser
//! dispatches to them.

use std::net::Ipv6Addr;

use crate::wire::checksum;

/// IPv6 fixed header length.
pub const IPV6_LEN: usize = 40;

/// The IPv6 pseudo-header's partial sum (RFC 8200 §8.1).
pub fn pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u16 {
    let mut words = [0u8; 40];
    words[..16].copy_from_slice(&src.octets());
    words[16..32].copy_from_slice(&dst.octets());
    words[32..36].copy_from_slice(&len.to_be_bytes());
    words[39] = next_header;
    checksum::data(&words)
}

/// True when the upper-layer checksum of `l4` (header and payload) is right.
pub fn l4_checksum_ok(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4: &[u8]) -> bool {
    let ph = pseudo_header(src, dst, next_header, l4.len() as u32);
    checksum::combine(&[ph, checksum::data(l4)]) == 0xffff
}

/// Writes a fixed IPv6 header (no extension headers) for `payload_len`
/// bytes of `next_header`.
pub fn emit_header(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload_len: usize,
    hop_limit: u8,
) {
    let b = &mut buf[..IPV6_LEN];
    b[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    b[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    b[6] = next_header;
    b[7] = hop_limit;
    b[8..24].copy_from_slice(&src.octets());
    b[24..40].copy_from_slice(&dst.octets());
}
