//! Which worker owns a connection: a symmetric hash of the 4-tuple.
//!
//! NIC RSS (with the symmetric Toeplitz key), AF_PACKET fanout (the kernel's
//! symmetric flow hash) and software steering must agree only in one thing:
//! every packet of a connection reaches the same worker. This is the
//! software form, used by the in-memory backend and the tests: the two
//! (address, port) endpoints are ordered before hashing, so both directions
//! hash alike. An ICMPv6 Packet Too Big goes where the connection it names
//! goes. Other frames that are not TCP or UDP go to worker 0 (ARP,
//! neighbour discovery), and THOP replies name their owning worker in the
//! connection id instead.

use crate::wire::{self, Frame, Verify};

/// The worker of `workers` that should receive `frame`.
pub fn worker_for(frame: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let (a, b) = match wire::parse(frame, Verify::Header) {
        Ok(Frame::Tcp(s)) => ((s.src, s.src_port), (s.dst, s.dst_port)),
        Ok(Frame::Udp(d)) => ((d.src, d.src_port), (d.dst, d.dst_port)),
        // About a connection: to the worker that owns it.
        Ok(Frame::TooBig { ours, peer, .. }) => {
            ((ours.ip(), ours.port()), (peer.ip(), peer.port()))
        }
        _ => return 0,
    };
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes {
            h ^= x as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (ip, port) in [lo, hi] {
        match ip {
            std::net::IpAddr::V4(v) => eat(&v.octets()),
            std::net::IpAddr::V6(v) => eat(&v.octets()),
        }
        eat(&port.to_be_bytes());
    }
    // FNV leaves the last bytes (the client port) in the low bits; mix them
    // into the high bits the multiply-shift below picks from (splitmix64).
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ((h as u128 * workers as u128) >> 64) as usize
}
