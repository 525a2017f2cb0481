//! IPv6 frames on the data port: the extension-header walk and the
//! upper-layer checksum checks (the header itself is [`super::ip6`]).
//!
//! [`parse`] reduces an IPv6 frame to the same [`Frame`] summary as IPv4, so
//! the engine sees one kind of TCP segment, UDP datagram and echo request
//! whatever the family.
//!
//! Extension headers are walked by a fixed, documented rule rather than
//! accepted as they come, because every header the switch skips is a header
//! an attacker can pile up:
//!
//! * Hop-by-Hop Options only as the first header (RFC 8200 §4.1), Routing
//!   and Destination Options anywhere, each skipped by its length field;
//! * at most [`MAX_EXT_HEADERS`] headers and [`MAX_EXT_BYTES`] bytes of them
//!   before the upper-layer header, else `ipv6_ext_chain`;
//! * a Fragment header is refused (`fragment`), as IPv4 fragments are: the
//!   switch reassembles nothing, and a TCP client never fragments;
//! * AH, ESP, Mobility, HIP, Shim6 and unknown next headers are
//!   `unsupported`; No Next Header is `ignored`.
//!
//! UDP over IPv6 must carry a checksum (RFC 8200 §8.1): a zero one is a bad
//! checksum.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

pub use super::ip6::{emit_header, l4_checksum_ok, pseudo_header, IPV6_LEN};
use crate::counters::DropReason;
use crate::wire::{Frame, Mac, TcpSeg, UdpDgram, Verify, ETH_LEN, TCP_LEN, UDP_LEN};

/// Most extension headers walked before the upper-layer header.
pub const MAX_EXT_HEADERS: usize = 8;
/// Most bytes of extension headers walked before the upper-layer header.
pub const MAX_EXT_BYTES: usize = 512;

/// Next-header values (IANA "Assigned Internet Protocol Numbers").
mod nh {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

/// ICMPv6 message types the switch reads.
pub mod icmp6 {
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
}

/// Where the upper-layer header of an IPv6 packet starts (offset within the
/// IP packet) and what it is, after the extension-header walk.
fn walk(ip: &[u8]) -> Result<(u8, usize), DropReason> {
    let mut next = ip[6];
    let mut at = IPV6_LEN;
    let mut count = 0;
    loop {
        match next {
            nh::TCP | nh::UDP | nh::ICMPV6 => return Ok((next, at)),
            nh::FRAGMENT => return Err(DropReason::Fragment),
            nh::NO_NEXT => return Err(DropReason::Ignored),
            nh::HOP_BY_HOP if count > 0 => return Err(DropReason::Ipv6ExtChain),
            nh::HOP_BY_HOP | nh::ROUTING | nh::DEST_OPTS => {
                let h = ip.get(at..at + 2).ok_or(DropReason::Malformed)?;
                let len = (usize::from(h[1]) + 1) * 8;
                count += 1;
                if count > MAX_EXT_HEADERS || at + len - IPV6_LEN > MAX_EXT_BYTES {
                    return Err(DropReason::Ipv6ExtChain);
                }
                if at + len > ip.len() {
                    return Err(DropReason::Malformed);
                }
                next = h[0];
                at += len;
            }
            _ => return Err(DropReason::Unsupported),
        }
    }
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// Reduces an IPv6 frame (the Ethernet header already checked) to its
/// summary. `verify` = Full also checks the TCP checksum; UDP and ICMPv6
/// checksums are always checked, as for IPv4.
pub fn parse(frame: &[u8], src_mac: Mac, verify: Verify) -> Result<Frame, DropReason> {
    let ip = frame.get(ETH_LEN..).ok_or(DropReason::Malformed)?;
    if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    // A zero payload length announces a jumbogram (RFC 2675): never on a
    // link the switch serves.
    if payload_len == 0 || IPV6_LEN + payload_len > ip.len() {
        return Err(DropReason::Malformed);
    }
    let ip = &ip[..IPV6_LEN + payload_len];
    let (src, dst) = (addr(&ip[8..24]), addr(&ip[24..40]));
    // IPv4-mapped addresses never appear on the wire (RFC 4291 §2.5.5.2);
    // one would share a connection key with the IPv4 client it names.
    if src.is_multicast()
        || src.is_unspecified() && ip[6] != nh::ICMPV6
        || src.to_ipv4_mapped().is_some()
    {
        return Err(DropReason::Malformed);
    }
    let (next, at) = walk(ip)?;
    let l4 = &ip[at..];
    let l4_at = ETH_LEN + at;
    match next {
        nh::TCP => {
            if l4.len() < TCP_LEN {
                return Err(DropReason::Malformed);
            }
            let hl = usize::from(l4[12] >> 4) * 4;
            if hl < TCP_LEN || hl > l4.len() {
                return Err(DropReason::Malformed);
            }
            if verify == Verify::Full && !l4_checksum_ok(src, dst, nh::TCP, l4) {
                return Err(DropReason::BadChecksum);
            }
            Ok(Frame::Tcp(TcpSeg {
                src_mac,
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                src_port: u16::from_be_bytes([l4[0], l4[1]]),
                dst_port: u16::from_be_bytes([l4[2], l4[3]]),
                seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                flags: l4[13] & 0x3f,
                window: u16::from_be_bytes([l4[14], l4[15]]),
                opts_at: (l4_at + TCP_LEN, hl - TCP_LEN),
                payload: (l4_at + hl, l4.len() - hl),
            }))
        }
        nh::UDP => {
            if l4.len() < UDP_LEN {
                return Err(DropReason::Malformed);
            }
            let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if len < UDP_LEN || len > l4.len() {
                return Err(DropReason::Malformed);
            }
            let l4 = &l4[..len];
            if (l4[6] == 0 && l4[7] == 0) || !l4_checksum_ok(src, dst, nh::UDP, l4) {
                return Err(DropReason::BadChecksum);
            }
            Ok(Frame::Udp(UdpDgram {
                src_mac,
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                src_port: u16::from_be_bytes([l4[0], l4[1]]),
                dst_port: u16::from_be_bytes([l4[2], l4[3]]),
                payload: (l4_at + UDP_LEN, len - UDP_LEN),
            }))
        }
        _ => {
            if l4.len() < 8 {
                return Err(DropReason::Malformed);
            }
            if !l4_checksum_ok(src, dst, nh::ICMPV6, l4) {
                return Err(DropReason::BadChecksum);
            }
            match (l4[0], l4[1]) {
                (icmp6::ECHO_REQUEST, 0) if !dst.is_multicast() => Ok(Frame::IcmpEcho {
                    dst: IpAddr::V6(dst),
                }),
                (icmp6::PACKET_TOO_BIG, 0) => too_big(l4),
                // An MLD query from a router on the link (RFC 3810 §6.2:
                // link-local source, hop limit 1): the switch reports its
                // groups. Anything else about MLD is for routers.
                (crate::wire::mld::types::QUERY, 0)
                    if ip[7] == 1 && src.segments()[0] & 0xffc0 == 0xfe80 =>
                {
                    Ok(Frame::MldQuery)
                }
                (133..=137, _) => match crate::wire::nd::parse(src_mac, src, dst, ip[7], l4)? {
                    Some(nd) => Ok(Frame::Nd(nd)),
                    None => Err(DropReason::Ignored),
                },
                _ => Err(DropReason::Ignored),
            }
        }
    }
}

/// A Packet Too Big message about a TCP segment the switch sent (the
/// invoking packet's IPv6 header, no extension headers, and its ports).
fn too_big(icmp: &[u8]) -> Result<Frame, DropReason> {
    let mtu = u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]);
    let inner = &icmp[8..];
    if inner.len() < IPV6_LEN + 4 || inner[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    if inner[6] != nh::TCP {
        return Err(DropReason::Ignored);
    }
    let t = &inner[IPV6_LEN..];
    Ok(Frame::TooBig {
        mtu,
        ours: SocketAddr::new(
            IpAddr::V6(addr(&inner[8..24])),
            u16::from_be_bytes([t[0], t[1]]),
        ),
        peer: SocketAddr::new(
            IpAddr::V6(addr(&inner[24..40])),
            u16::from_be_bytes([t[2], t[3]]),
        ),
    })
}

/// Turns an ICMPv6 echo request (already summarised by [`parse`], without
/// extension headers) into its reply in place: MACs and addresses swapped
/// (the pseudo-header sum does not change), hop limit 64, type 129 with the
/// checksum updated incrementally. False leaves the frame unusable.
pub fn echo_reply_in_place(frame: &mut [u8], our_mac: Mac) -> bool {
    let icmp_at = ETH_LEN + IPV6_LEN;
    if frame.len() < icmp_at + 8
        || frame[ETH_LEN + 6] != nh::ICMPV6
        || frame[icmp_at] != icmp6::ECHO_REQUEST
    {
        return false;
    }
    let mut peer = [0u8; 6];
    peer.copy_from_slice(&frame[6..12]);
    frame[0..6].copy_from_slice(&peer);
    frame[6..12].copy_from_slice(&our_mac);
    for i in 0..16 {
        frame.swap(ETH_LEN + 8 + i, ETH_LEN + 24 + i);
    }
    frame[ETH_LEN + 7] = 64;
    let old = u16::from_be_bytes([frame[icmp_at], frame[icmp_at + 1]]);
    frame[icmp_at] = icmp6::ECHO_REPLY;
    let new = u16::from_be_bytes([frame[icmp_at], frame[icmp_at + 1]]);
    let c = u16::from_be_bytes([frame[icmp_at + 2], frame[icmp_at + 3]]);
    frame[icmp_at + 2..icmp_at + 4]
        .copy_from_slice(&crate::wire::csum_update16(c, old, new).to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x101);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10);

    /// An Ethernet/IPv6 frame: `ext` (extension headers, already chained by
    /// the caller) then `l4` under `first` as the first next header, and
    /// `upper` as the upper-layer protocol for the checksum.
    fn frame(first: u8, ext: &[u8], upper: u8, mut l4: Vec<u8>) -> Vec<u8> {
        let csum_at = match upper {
            nh::TCP => Some(16),
            nh::UDP => Some(6),
            nh::ICMPV6 => Some(2),
            _ => None,
        };
        if let Some(c) = csum_at {
            l4[c] = 0;
            l4[c + 1] = 0;
            let ph = pseudo_header(SRC, DST, upper, l4.len() as u32);
            let sum = !checksum::combine(&[ph, checksum::data(&l4)]);
            l4[c..c + 2].copy_from_slice(&sum.to_be_bytes());
        }
        let mut f = vec![0u8; ETH_LEN];
        f[12] = 0x86;
        f[13] = 0xdd;
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let plen = (ext.len() + l4.len()) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.push(first);
        f.push(64);
        f.extend_from_slice(&SRC.octets());
        f.extend_from_slice(&DST.octets());
        f.extend_from_slice(ext);
        f.extend_from_slice(&l4);
        f
    }

    fn syn() -> Vec<u8> {
        let mut t = vec![0u8; 24];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&7u32.to_be_bytes());
        t[12] = 6 << 4;
        t[13] = 0x02;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        t[20..24].copy_from_slice(&[2, 4, 0x05, 0xa0]);
        t
    }

    /// One extension header of 8 bytes whose next header is `next`.
    fn ext8(next: u8) -> [u8; 8] {
        [next, 0, 1, 4, 0, 0, 0, 0]
    }

    fn parse_full(f: &[u8]) -> Result<Frame, DropReason> {
        parse(f, [2, 0, 0, 0, 0, 1], Verify::Full)
    }

    #[test]
    fn a_tcp_syn_is_summarised_like_ipv4() {
        let f = frame(nh::TCP, &[], nh::TCP, syn());
        let Ok(Frame::Tcp(s)) = parse_full(&f) else {
            panic!("{:?}", parse_full(&f))
        };
        assert_eq!((s.src, s.dst), (IpAddr::V6(SRC), IpAddr::V6(DST)));
        assert_eq!(
            (s.src_port, s.dst_port, s.seq, s.flags),
            (40000, 80, 7, 0x02)
        );
        assert_eq!(s.opts(&f).unwrap().mss, Some(1440));
        assert_eq!(s.len(), 0);
        assert!(crate::wire::tcp_seg_checksum_ok(&f, &s));
    }

    #[test]
    fn extension_headers_are_walked_by_the_rule() {
        // Hop-by-hop first, then destination options, then TCP.
        let mut ext = ext8(nh::DEST_OPTS).to_vec();
        ext.extend_from_slice(&ext8(nh::TCP));
        let f = frame(nh::HOP_BY_HOP, &ext, nh::TCP, syn());
        assert!(matches!(parse_full(&f), Ok(Frame::Tcp(_))));
        // Hop-by-hop after another header.
        let mut ext = ext8(nh::HOP_BY_HOP).to_vec();
        ext.extend_from_slice(&ext8(nh::TCP));
        let f = frame(nh::ROUTING, &ext, nh::TCP, syn());
        assert_eq!(parse_full(&f), Err(DropReason::Ipv6ExtChain));
        // Too many headers.
        let mut ext = vec![];
        for _ in 0..MAX_EXT_HEADERS {
            ext.extend_from_slice(&ext8(nh::DEST_OPTS));
        }
        ext.extend_from_slice(&ext8(nh::TCP));
        let f = frame(nh::DEST_OPTS, &ext, nh::TCP, syn());
        assert_eq!(parse_full(&f), Err(DropReason::Ipv6ExtChain));
        // One header too long for the limit.
        let mut big = vec![0u8; 8 * 80];
        big[0] = nh::TCP;
        big[1] = 79;
        let f = frame(nh::DEST_OPTS, &big, nh::TCP, syn());
        assert_eq!(parse_full(&f), Err(DropReason::Ipv6ExtChain));
        // A header whose length runs past the packet.
        let f = frame(nh::DEST_OPTS, &[nh::TCP, 9, 0, 0, 0, 0, 0, 0], 255, vec![]);
        assert_eq!(parse_full(&f), Err(DropReason::Malformed));
    }

    #[test]
    fn fragments_esp_and_no_next_header_are_refused_by_name() {
        let f = frame(nh::FRAGMENT, &ext8(nh::TCP), nh::TCP, syn());
        assert_eq!(parse_full(&f), Err(DropReason::Fragment));
        let f = frame(50, &[0; 16], 50, vec![0; 8]);
        assert_eq!(parse_full(&f), Err(DropReason::Unsupported));
        let f = frame(nh::NO_NEXT, &[0; 8], nh::NO_NEXT, vec![]);
        assert_eq!(parse_full(&f), Err(DropReason::Ignored));
    }

    #[test]
    fn bad_checksums_and_lengths_are_named() {
        let mut f = frame(nh::TCP, &[], nh::TCP, syn());
        let n = f.len();
        f[n - 1] ^= 1;
        assert_eq!(parse_full(&f), Err(DropReason::BadChecksum));
        assert!(matches!(
            parse(&f, [0; 6], Verify::Header),
            Ok(Frame::Tcp(_))
        ));
        // UDP without a checksum is not allowed over IPv6.
        let mut u = vec![0u8; 12];
        u[4..6].copy_from_slice(&12u16.to_be_bytes());
        let mut f = frame(nh::UDP, &[], nh::UDP, u);
        let at = ETH_LEN + IPV6_LEN + 6;
        f[at] = 0;
        f[at + 1] = 0;
        assert_eq!(parse_full(&f), Err(DropReason::BadChecksum));
        // Payload length beyond the frame, zero (jumbogram), truncated header.
        let mut f = frame(nh::TCP, &[], nh::TCP, syn());
        f[ETH_LEN + 5] += 1;
        assert_eq!(parse_full(&f), Err(DropReason::Malformed));
        f[ETH_LEN + 4] = 0;
        f[ETH_LEN + 5] = 0;
        assert_eq!(parse_full(&f), Err(DropReason::Malformed));
        let f = frame(nh::TCP, &[], nh::TCP, syn());
        for cut in 0..f.len() {
            let r = crate::wire::parse(&f[..cut], Verify::Full);
            assert!(r.is_err(), "cut at {cut}: {r:?}");
        }
    }

    #[test]
    fn an_echo_request_is_answered_in_place() {
        let mut e = vec![icmp6::ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 1];
        e.extend_from_slice(b"ping");
        let mut f = frame(nh::ICMPV6, &[], nh::ICMPV6, e);
        assert_eq!(
            parse_full(&f),
            Ok(Frame::IcmpEcho {
                dst: IpAddr::V6(DST)
            })
        );
        assert!(echo_reply_in_place(&mut f, [2, 0, 0, 0, 0, 9]));
        let ip = &f[ETH_LEN..];
        assert_eq!(addr(&ip[8..24]), DST);
        assert_eq!(addr(&ip[24..40]), SRC);
        assert_eq!(ip[7], 64);
        assert_eq!(ip[IPV6_LEN], icmp6::ECHO_REPLY);
        assert!(l4_checksum_ok(DST, SRC, nh::ICMPV6, &ip[IPV6_LEN..]));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 9]);
    }
}
