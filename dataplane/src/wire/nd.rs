//! Neighbour discovery (RFC 4861): what ARP is for IPv4.
//!
//! The switch answers Neighbour Solicitations for the IPv6 addresses it
//! owns — its IPv6 data address, the link-local address derived from its
//! MAC, every IPv6 VIP — and solicits the link-layer addresses of the
//! backends and agents it hands connections to, learning them into the same
//! shared cache as ARP ([`crate::arp::ArpCache`]) under the same rule: an
//! address is learnt only when the switch asked for it, and a known MAC is
//! changed only by a solicited advertisement to a solicitation still
//! outstanding. At start it announces its addresses with unsolicited
//! advertisements, as gratuitous ARP does for IPv4.
//!
//! Messages are checked as RFC 4861 §7.1 says: hop limit 255 (so they
//! cannot come from off-link), code 0, a target that is not multicast,
//! options with a non-zero length, and for duplicate-address detection
//! (unspecified source) a solicited-node destination and no source
//! link-layer address option. Router solicitations, router advertisements
//! and redirects are ignored: the switch routes nothing.

use std::net::Ipv6Addr;

use crate::counters::DropReason;
use crate::wire::ip6::{emit_header, pseudo_header, IPV6_LEN};
use crate::wire::{checksum, Mac, ETH_LEN};

/// ICMPv6 types of neighbour discovery.
pub mod types {
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;
/// Length of a solicitation or advertisement with one link-layer option.
const MSG_LEN: usize = 32;

/// All-nodes multicast (the destination of unsolicited advertisements).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbour solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nd {
    /// A solicitation (else an advertisement).
    pub solicit: bool,
    /// Advertisement flags: solicited, override.
    pub solicited: bool,
    pub override_: bool,
    pub src_mac: Mac,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The source (solicitation) or target (advertisement) link-layer address.
    pub lladdr: Option<Mac>,
}

/// The solicited-node multicast address of `a` (ff02::1:ffXX:XXXX).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet address an IPv6 multicast address maps to (33:33 and its
/// low 32 bits, RFC 2464 §7).
pub fn multicast_mac(a: Ipv6Addr) -> Mac {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The link-local address of an interface with `mac` (modified EUI-64,
/// RFC 4291 appendix A).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// Reads a neighbour-discovery message (`icmp`: the ICMPv6 message, its
/// checksum already verified). `Ok(None)`: a valid message the switch
/// ignores (router messages, redirects).
pub fn parse(
    src_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp: &[u8],
) -> Result<Option<Nd>, DropReason> {
    let kind = icmp[0];
    if !(types::ROUTER_SOLICIT..=types::REDIRECT).contains(&kind) {
        return Err(DropReason::Unsupported);
    }
    if hop_limit != 255 || icmp[1] != 0 {
        return Err(DropReason::NdInvalid);
    }
    if kind != types::NEIGHBOR_SOLICIT && kind != types::NEIGHBOR_ADVERT {
        return Ok(None);
    }
    if icmp.len() < 24 {
        return Err(DropReason::NdInvalid);
    }
    let target = addr(&icmp[8..24]);
    if target.is_multicast() {
        return Err(DropReason::NdInvalid);
    }
    let want = if kind == types::NEIGHBOR_SOLICIT {
        OPT_SOURCE_LL
    } else {
        OPT_TARGET_LL
    };
    let mut lladdr = None;
    let mut opts = &icmp[24..];
    while !opts.is_empty() {
        if opts.len() < 2 || opts[1] == 0 {
            return Err(DropReason::NdInvalid);
        }
        let len = usize::from(opts[1]) * 8;
        let o = opts.get(..len).ok_or(DropReason::NdInvalid)?;
        if o[0] == want && len == 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&o[2..8]);
            lladdr = Some(m);
        }
        opts = &opts[len..];
    }
    let flags = icmp[4];
    let nd = Nd {
        solicit: kind == types::NEIGHBOR_SOLICIT,
        solicited: kind == types::NEIGHBOR_ADVERT && flags & FLAG_SOLICITED != 0,
        override_: kind == types::NEIGHBOR_ADVERT && flags & FLAG_OVERRIDE != 0,
        src_mac,
        src,
        dst,
        target,
        lladdr,
    };
    if nd.solicit && src.is_unspecified() && (dst != solicited_node(target) || lladdr.is_some()) {
        return Err(DropReason::NdInvalid);
    }
    if !nd.solicit && dst.is_multicast() && nd.solicited {
        return Err(DropReason::NdInvalid);
    }
    Ok(Some(nd))
}

/// Frame length of every message [`emit`] writes.
pub const FRAME_LEN: usize = ETH_LEN + IPV6_LEN + MSG_LEN;

/// What [`emit`] writes.
#[derive(Debug, Clone, Copy)]
pub enum Out {
    /// A solicitation for `target` to its solicited-node group.
    Solicit { target: Ipv6Addr },
    /// An advertisement of `target`; `to`: the solicitor (address and MAC)
    /// for a solicited one, None for an unsolicited one to all nodes.
    Advert {
        target: Ipv6Addr,
        to: Option<(Ipv6Addr, Mac)>,
    },
}

/// Writes a solicitation or an advertisement from `src` (the switch's
/// `mac`); returns the frame length, or None when `buf` is too small.
pub fn emit(buf: &mut [u8], mac: Mac, src: Ipv6Addr, msg: Out) -> Option<usize> {
    let b = buf.get_mut(..FRAME_LEN)?;
    let (dst, dst_mac, kind, flags, target, opt) = match msg {
        Out::Solicit { target } => {
            let g = solicited_node(target);
            (
                g,
                multicast_mac(g),
                types::NEIGHBOR_SOLICIT,
                0,
                target,
                OPT_SOURCE_LL,
            )
        }
        Out::Advert { target, to } => {
            let (dst, dst_mac, solicited) = match to {
                Some((ip, m)) if !ip.is_unspecified() => (ip, m, FLAG_SOLICITED),
                // A solicitation for duplicate-address detection is
                // answered to all nodes, unsolicited (§7.2.4).
                _ => (ALL_NODES, multicast_mac(ALL_NODES), 0),
            };
            (
                dst,
                dst_mac,
                types::NEIGHBOR_ADVERT,
                solicited | FLAG_OVERRIDE,
                target,
                OPT_TARGET_LL,
            )
        }
    };
    debug_assert_eq!(flags & FLAG_ROUTER, 0);
    b[0..6].copy_from_slice(&dst_mac);
    b[6..12].copy_from_slice(&mac);
    b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    emit_header(&mut b[ETH_LEN..], src, dst, 58, MSG_LEN, 255);
    let m = &mut b[ETH_LEN + IPV6_LEN..];
    m.fill(0);
    m[0] = kind;
    m[4] = flags;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = opt;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac);
    let ph = pseudo_header(src, dst, 58, MSG_LEN as u32);
    let c = !checksum::combine(&[ph, checksum::data(m)]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse as parse_frame, Frame, Verify};

    const MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
    const ME: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    const BACKEND: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11);

    fn nd_of(f: &[u8]) -> Nd {
        match parse_frame(f, Verify::Full) {
            Ok(Frame::Nd(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addresses_derive_as_the_rfcs_say() {
        assert_eq!(
            solicited_node(BACKEND),
            "ff02::1:ff00:11".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(BACKEND)),
            [0x33, 0x33, 0xff, 0, 0, 0x11]
        );
        assert_eq!(
            link_local([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_solicitation_round_trips() {
        let mut f = [0u8; 128];
        let n = emit(&mut f, MAC, ME, Out::Solicit { target: BACKEND }).unwrap();
        let nd = nd_of(&f[..n]);
        assert!(nd.solicit);
        assert_eq!(
            (nd.src, nd.dst, nd.target),
            (ME, solicited_node(BACKEND), BACKEND)
        );
        assert_eq!(nd.lladdr, Some(MAC));
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0, 0, 0x11]);
    }

    #[test]
    fn advertisements_solicited_and_not() {
        let peer = [2, 0, 0, 0, 0, 0x11];
        let mut f = [0u8; 128];
        let n = emit(
            &mut f,
            MAC,
            ME,
            Out::Advert {
                target: ME,
                to: Some((BACKEND, peer)),
            },
        )
        .unwrap();
        let nd = nd_of(&f[..n]);
        assert!(!nd.solicit && nd.solicited && nd.override_);
        assert_eq!((nd.dst, nd.target, nd.lladdr), (BACKEND, ME, Some(MAC)));
        assert_eq!(&f[..6], &peer);
        let n = emit(
            &mut f,
            MAC,
            ME,
            Out::Advert {
                target: ME,
                to: None,
            },
        )
        .unwrap();
        let nd = nd_of(&f[..n]);
        assert!(!nd.solicited && nd.override_);
        assert_eq!(nd.dst, ALL_NODES);
    }

    #[test]
    fn invalid_messages_are_named() {
        let mut f = [0u8; 128];
        let n = emit(&mut f, MAC, ME, Out::Solicit { target: BACKEND }).unwrap();
        // Hop limit other than 255: could come from off-link.
        let mut g = f[..n].to_vec();
        g[ETH_LEN + 7] = 64;
        assert_eq!(parse_frame(&g, Verify::Full), Err(DropReason::NdInvalid));
        // A zero-length option (the checksum fixed up, so the option is what fails).
        let mut g = f[..n].to_vec();
        g[ETH_LEN + IPV6_LEN + 25] = 0;
        fix(&mut g);
        assert_eq!(parse_frame(&g, Verify::Full), Err(DropReason::NdInvalid));
        // Duplicate-address detection with a source link-layer option.
        let mut g = f[..n].to_vec();
        g[ETH_LEN + 8..ETH_LEN + 24].fill(0);
        fix(&mut g);
        assert_eq!(parse_frame(&g, Verify::Full), Err(DropReason::NdInvalid));
        // A multicast target.
        let mut g = f[..n].to_vec();
        g[ETH_LEN + IPV6_LEN + 8] = 0xff;
        fix(&mut g);
        assert_eq!(parse_frame(&g, Verify::Full), Err(DropReason::NdInvalid));
        // Cut anywhere: an error, never a panic.
        for cut in 0..n {
            assert!(parse_frame(&f[..cut], Verify::Full).is_err());
        }
    }

    fn fix(f: &mut [u8]) {
        let ip = &f[ETH_LEN..];
        let (s, d) = (addr(&ip[8..24]), addr(&ip[24..40]));
        let m = &mut f[ETH_LEN + IPV6_LEN..];
        m[2] = 0;
        m[3] = 0;
        let ph = pseudo_header(s, d, 58, m.len() as u32);
        let c = !checksum::combine(&[ph, checksum::data(m)]);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
}
