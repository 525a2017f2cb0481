//! Packet views and builders for the frames the switch reads and writes.
//!
//! Parsing uses smoltcp's `wire` views (`new_checked` first, so no accessor
//! can panic afterwards) and reduces a received frame to a small owned
//! summary ([`Frame`]). Building writes Ethernet/IPv4/TCP|UDP|ARP headers
//! straight into a pooled buffer, with full checksums; [`csum_update16`] is
//! the incremental form (RFC 1624) used when one field of a received packet
//! changes (ICMP echo → reply).
//!
//! Addresses travel as [`IpAddr`]. IPv6 frames are read by [`ipv6`] into
//! the same summary; the connection key keeps 16-byte addresses. The IPv6
//! side lives in submodules layered so none needs another's caller:
//! [`ip6`] (the header and pseudo-header) under [`nd`] (neighbour
//! discovery) under [`mld`] (listener reports) under [`ipv6`] (the frame
//! parser, which hands ICMPv6 to the first two).

pub mod ip6;
pub mod ipv6;
pub mod mld;
pub mod nd;

use std::net::{IpAddr, Ipv4Addr};

use self::ip6::IPV6_LEN;

use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpOption,
    TcpPacket, UdpPacket,
};

use crate::counters::DropReason;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// The broadcast MAC.
pub const BROADCAST: Mac = [0xff; 6];

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// IPv4 header length without options (what the switch emits).
pub const IPV4_LEN: usize = 20;
/// TCP header length without options.
pub const TCP_LEN: usize = 20;
/// UDP header length.
pub const UDP_LEN: usize = 8;

/// TCP flag bits, as in the header's low byte.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// TCP options of a segment (the ones the switch negotiates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOpts {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    /// SACK blocks (left, right edge), up to 3; `sack_count` are valid.
    pub sack: [(u32, u32); 3],
    pub sack_count: u8,
}

impl TcpOpts {
    /// Parses an options area; a malformed option list is an error.
    pub fn parse(mut data: &[u8]) -> Result<TcpOpts, DropReason> {
        let mut o = TcpOpts::default();
        while !data.is_empty() {
            let (rest, opt) = TcpOption::parse(data).map_err(|_| DropReason::Malformed)?;
            match opt {
                TcpOption::EndOfList => break,
                TcpOption::MaxSegmentSize(m) => o.mss = Some(m),
                TcpOption::WindowScale(w) => o.window_scale = Some(w.min(14)),
                TcpOption::SackPermitted => o.sack_permitted = true,
                TcpOption::TimeStamp { tsval, tsecr } => o.timestamp = Some((tsval, tsecr)),
                TcpOption::SackRange(r) => {
                    for (l, rt) in r.iter().flatten() {
                        if (o.sack_count as usize) < o.sack.len() {
                            o.sack[o.sack_count as usize] = (*l, *rt);
                            o.sack_count += 1;
                        }
                    }
                }
                _ => {}
            }
            data = rest;
        }
        Ok(o)
    }

    /// Bytes these options take when emitted by [`emit_tcp`] (multiple of 4).
    pub fn len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        n += match (self.sack_permitted, self.timestamp.is_some()) {
            (_, true) => 12, // [nop nop | sackOK] TS
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4;
        }
        if self.sack_count > 0 {
            n += 4 + 8 * self.sack_count.min(3) as usize; // nop nop SACK
        }
        n
    }

    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A TCP segment's summary; payload is `frame[payload.0 .. payload.0 + payload.1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSeg {
    pub src_mac: Mac,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Byte offset and length of the options area within the frame.
    pub opts_at: (usize, usize),
    /// Byte offset and length of the payload within the frame.
    pub payload: (usize, usize),
}

impl TcpSeg {
    /// True when every bit of `f` is set.
    #[inline]
    pub fn has(&self, f: u8) -> bool {
        self.flags & f == f
    }
    /// Payload length.
    #[inline]
    pub fn len(&self) -> usize {
        self.payload.1
    }
    /// True when the segment carries no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.payload.1 == 0
    }
    /// Sequence space taken: payload plus one for SYN and FIN each.
    #[inline]
    pub fn seq_len(&self) -> u32 {
        self.payload.1 as u32
            + (self.flags & flags::SYN != 0) as u32
            + (self.flags & flags::FIN != 0) as u32
    }
    /// The payload bytes of `frame`.
    #[inline]
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame
            .get(self.payload.0..self.payload.0 + self.payload.1)
            .unwrap_or(&[])
    }
    /// Parses the options.
    pub fn opts(&self, frame: &[u8]) -> Result<TcpOpts, DropReason> {
        TcpOpts::parse(
            frame
                .get(self.opts_at.0..self.opts_at.0 + self.opts_at.1)
                .unwrap_or(&[]),
        )
    }
}

/// A UDP datagram's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDgram {
    pub src_mac: Mac,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: (usize, usize),
}

/// An ARP packet (Ethernet/IPv4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub request: bool,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

/// What a received frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Tcp(TcpSeg),
    Udp(UdpDgram),
    Arp(Arp),
    /// ICMP (v4 or v6) echo request to `dst`; the reply is built in place.
    IcmpEcho {
        dst: IpAddr,
    },
    /// An IPv6 neighbour solicitation or advertisement.
    Nd(nd::Nd),
    /// An MLD query from a router on the link.
    MldQuery,
    /// ICMPv6 Packet Too Big about a TCP segment from `ours` to `peer`:
    /// the path to `peer` carries at most `mtu` bytes.
    TooBig {
        mtu: u32,
        ours: std::net::SocketAddr,
        peer: std::net::SocketAddr,
    },
}

/// How much checking [`parse`] does on TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// IPv4 header checksum only (FORWARDING: the backend verifies TCP).
    Header,
    /// Also the TCP/UDP/ICMP checksum.
    Full,
}

/// True when an IPv4 header (any length, a multiple of 4) sums to 0xffff.
/// Summed as 32-bit words into a 64-bit accumulator: a handful of
/// instructions for the usual 20 bytes.
#[inline]
pub fn ipv4_header_ok(h: &[u8]) -> bool {
    let w = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
    let acc = if let Some(b) = h.first_chunk::<20>() {
        // The usual header: five loads, no loop.
        w(&b[0..4]) + w(&b[4..8]) + w(&b[8..12]) + w(&b[12..16]) + w(&b[16..20])
    } else {
        0
    };
    let rest = h.get(20..).unwrap_or(&[]);
    let acc = rest.chunks_exact(4).fold(acc, |a, c| a + w(c));
    h.len() >= 20 && checksum::fold(acc) == 0xffff
}

/// The fast path for the common frame (Ethernet, IPv4 without fragments,
/// TCP): one length check, fixed-offset reads, the IPv4 header checksum. It
/// accepts exactly what [`parse`] accepts as `Frame::Tcp` (a property test
/// keeps the two equal) and returns None for anything else, which then goes
/// through [`parse`]. FORWARDING packets take only this path.
#[inline]
pub fn tcp4_fast(frame: &[u8]) -> Option<TcpSeg> {
    if frame.len() < ETH_LEN + IPV4_LEN + TCP_LEN || frame[12] != 0x08 || frame[13] != 0x00 {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    // Version 4, TCP, no fragment (MF clear, offset 0), lengths consistent.
    if ip[0] >> 4 != 4 || ip[9] != 6 || ihl < IPV4_LEN || total < ihl + TCP_LEN || total > ip.len()
    {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    if !ipv4_header_ok(&ip[..ihl]) {
        return None;
    }
    let l4_at = ETH_LEN + ihl;
    let tcp = &frame[l4_at..ETH_LEN + total];
    let hl = ((tcp[12] >> 4) as usize) * 4;
    if hl < TCP_LEN || hl > tcp.len() {
        return None;
    }
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&frame[6..12]);
    let a = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    Some(TcpSeg {
        src_mac,
        src: IpAddr::V4(a(12)),
        dst: IpAddr::V4(a(16)),
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        flags: tcp[13] & 0x3f,
        window: u16::from_be_bytes([tcp[14], tcp[15]]),
        opts_at: (l4_at + TCP_LEN, hl - TCP_LEN),
        payload: (l4_at + hl, tcp.len() - hl),
    })
}

/// Reduces a received frame to its summary. `verify` = Full also checks
/// the L4 checksum (call [`verify_l4`] later otherwise).
pub fn parse(frame: &[u8], verify: Verify) -> Result<Frame, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&frame[6..12]);
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {}
        EthernetProtocol::Arp => return parse_arp(eth.payload()),
        EthernetProtocol::Ipv6 => return ipv6::parse(frame, src_mac, verify),
        _ => return Err(DropReason::Unsupported),
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
    if ip.version() != 4 {
        return Err(DropReason::Malformed);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(DropReason::Fragment);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let l4_at = ETH_LEN + ip.header_len() as usize;
    let l4 = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            if verify == Verify::Full && !tcp_checksum_ok(src, dst, l4) {
                return Err(DropReason::BadChecksum);
            }
            let hl = tcp.header_len() as usize;
            let raw_flags = l4[13];
            Ok(Frame::Tcp(TcpSeg {
                src_mac,
                src: IpAddr::V4(src),
                dst: IpAddr::V4(dst),
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                flags: raw_flags & 0x3f,
                window: tcp.window_len(),
                opts_at: (l4_at + TCP_LEN, hl - TCP_LEN),
                payload: (l4_at + hl, l4.len() - hl),
            }))
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            if verify == Verify::Full && !udp.verify_checksum(&src.into(), &dst.into()) {
                return Err(DropReason::BadChecksum);
            }
            Ok(Frame::Udp(UdpDgram {
                src_mac,
                src: IpAddr::V4(src),
                dst: IpAddr::V4(dst),
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                payload: (l4_at + UDP_LEN, udp.len() as usize - UDP_LEN),
            }))
        }
        IpProtocol::Icmp => {
            let icmp =
                smoltcp::wire::Icmpv4Packet::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            if !icmp.verify_checksum() {
                return Err(DropReason::BadChecksum);
            }
            if icmp.msg_type() != smoltcp::wire::Icmpv4Message::EchoRequest || icmp.msg_code() != 0
            {
                return Err(DropReason::Ignored);
            }
            Ok(Frame::IcmpEcho {
                dst: IpAddr::V4(dst),
            })
        }
        _ => Err(DropReason::Unsupported),
    }
}

fn parse_arp(p: &[u8]) -> Result<Frame, DropReason> {
    let arp = ArpPacket::new_checked(p).map_err(|_| DropReason::Malformed)?;
    if arp.hardware_len() != 6 || arp.protocol_len() != 4 {
        return Err(DropReason::Unsupported);
    }
    let op = arp.operation();
    let request = match op {
        ArpOperation::Request => true,
        ArpOperation::Reply => false,
        _ => return Err(DropReason::Ignored),
    };
    let m = |s: &[u8]| -> Mac { [s[0], s[1], s[2], s[3], s[4], s[5]] };
    let a = |s: &[u8]| Ipv4Addr::new(s[0], s[1], s[2], s[3]);
    Ok(Frame::Arp(Arp {
        request,
        sender_mac: m(arp.source_hardware_addr()),
        sender_ip: a(arp.source_protocol_addr()),
        target_mac: m(arp.target_hardware_addr()),
        target_ip: a(arp.target_protocol_addr()),
    }))
}

/// Checks the TCP checksum of `seg` (an IPv4 TCP segment, header and payload).
pub fn tcp_checksum_ok(src: Ipv4Addr, dst: Ipv4Addr, seg: &[u8]) -> bool {
    let ph = checksum::pseudo_header_v4(src, dst, 6, seg.len() as u32);
    checksum::combine(&[ph, checksum::data(seg)]) == !0
}

/// Checks the L4 checksum of a frame already summarised by [`parse`] with
/// `Verify::Header`.
pub fn verify_l4(frame: &[u8]) -> bool {
    match parse(frame, Verify::Full) {
        Ok(_) => true,
        Err(e) => e != DropReason::BadChecksum,
    }
}

/// Checks the TCP checksum of a segment already summarised (no re-parse).
pub fn tcp_seg_checksum_ok(frame: &[u8], seg: &TcpSeg) -> bool {
    let start = seg.opts_at.0 - TCP_LEN;
    let end = seg.payload.0 + seg.payload.1;
    match (seg.src, seg.dst, frame.get(start..end)) {
        (IpAddr::V4(s), IpAddr::V4(d), Some(l4)) => tcp_checksum_ok(s, d, l4),
        (IpAddr::V6(s), IpAddr::V6(d), Some(l4)) => ipv6::l4_checksum_ok(s, d, 6, l4),
        _ => false,
    }
}

/// Checks the UDP checksum of a datagram already summarised (0 = none sent).
pub fn udp_dgram_checksum_ok(frame: &[u8], d: &UdpDgram) -> bool {
    let start = d.payload.0 - UDP_LEN;
    let end = d.payload.0 + d.payload.1;
    match (d.src, d.dst, frame.get(start..end)) {
        (IpAddr::V4(s), IpAddr::V4(t), Some(l4)) => {
            if l4[6] == 0 && l4[7] == 0 {
                return true;
            }
            let ph = checksum::pseudo_header_v4(s, t, 17, l4.len() as u32);
            checksum::combine(&[ph, checksum::data(l4)]) == 0xffff
        }
        // Mandatory over IPv6: a zero checksum is wrong.
        (IpAddr::V6(s), IpAddr::V6(t), Some(l4)) => ipv6::l4_checksum_ok(s, t, 17, l4),
        _ => false,
    }
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changed from `old` to
/// `new` (`HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn csum_update16(csum: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!csum as u32) + (!old as u32) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// RFC 1071 Internet checksum helpers (sums without the final complement).
pub mod checksum {
    use std::net::Ipv4Addr;

    /// One's-complement sum of `data`, folded to 16 bits (big-endian words).
    pub fn data(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            acc += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
        }
        let mut rest = chunks.remainder();
        while rest.len() >= 2 {
            acc += u16::from_be_bytes([rest[0], rest[1]]) as u64;
            rest = &rest[2..];
        }
        if let Some(&b) = rest.first() {
            acc += (b as u64) << 8;
        }
        fold(acc)
    }

    /// Folds a wide one's-complement sum to 16 bits.
    #[inline(always)]
    pub fn fold(acc: u64) -> u16 {
        // 64 → 33 → 17 → 16 bits: four fixed steps, no loop.
        let a = (acc & 0xffff_ffff) + (acc >> 32);
        let a = (a & 0xffff) + (a >> 16);
        let a = (a & 0xffff) + (a >> 16);
        let a = (a & 0xffff) + (a >> 16);
        a as u16
    }

    /// Sums several partial checksums.
    pub fn combine(parts: &[u16]) -> u16 {
        fold(parts.iter().map(|&p| p as u64).sum())
    }

    /// The IPv4 pseudo header's partial sum.
    pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u16 {
        let (s, d) = (src.octets(), dst.octets());
        fold(
            u16::from_be_bytes([s[0], s[1]]) as u64
                + u16::from_be_bytes([s[2], s[3]]) as u64
                + u16::from_be_bytes([d[0], d[1]]) as u64
                + u16::from_be_bytes([d[2], d[3]]) as u64
                + proto as u64
                + len as u64,
        )
    }
}

fn emit_eth(buf: &mut [u8], src: Mac, dst: Mac, ethertype: u16) {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

fn emit_ipv4(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload_len: usize,
    ident: u16,
) {
    let b = &mut buf[..IPV4_LEN];
    b[0] = 0x45;
    b[1] = 0;
    b[2..4].copy_from_slice(&((IPV4_LEN + payload_len) as u16).to_be_bytes());
    b[4..6].copy_from_slice(&ident.to_be_bytes());
    b[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    b[8] = 64;
    b[9] = proto;
    b[10..12].copy_from_slice(&[0, 0]);
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&dst.octets());
    let c = !checksum::data(b);
    b[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Length of the IP header the switch emits towards `dst` (no options, no
/// extension headers).
#[inline]
pub fn ip_header_len(dst: IpAddr) -> usize {
    match dst {
        IpAddr::V4(_) => IPV4_LEN,
        IpAddr::V6(_) => IPV6_LEN,
    }
}

/// Writes the Ethernet and IP headers of a packet from `src` to `dst`
/// carrying `payload_len` bytes of `proto`, and returns the upper-layer
/// pseudo-header sum; None when the two addresses differ in family.
fn emit_l3(
    buf: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload_len: usize,
) -> Option<u16> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            emit_eth(buf, src_mac, dst_mac, 0x0800);
            emit_ipv4(&mut buf[ETH_LEN..], s, d, proto, payload_len, 0);
            Some(checksum::pseudo_header_v4(s, d, proto, payload_len as u32))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            emit_eth(buf, src_mac, dst_mac, 0x86dd);
            ipv6::emit_header(&mut buf[ETH_LEN..], s, d, proto, payload_len, 64);
            Some(ipv6::pseudo_header(s, d, proto, payload_len as u32))
        }
        _ => None,
    }
}

/// A TCP segment the switch originates.
#[derive(Debug, Clone, Copy)]
pub struct TcpOut<'a> {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub opts: TcpOpts,
    pub payload: &'a [u8],
}

/// Frame length [`emit_tcp`] needs for `t`.
pub fn tcp_frame_len(t: &TcpOut<'_>) -> usize {
    ETH_LEN + ip_header_len(t.dst) + TCP_LEN + t.opts.len() + t.payload.len()
}

/// Writes `t` into `buf` (Ethernet first); returns the frame length, or None
/// when `buf` is too small. Options appear in Linux's SYN/ACK order:
/// `mss, sackOK, TS, nop, wscale` (`nop, nop, TS` on other segments).
/// IPv4 or IPv6 by the addresses' family (None when they differ).
pub fn emit_tcp(buf: &mut [u8], t: &TcpOut<'_>) -> Option<usize> {
    let olen = t.opts.len();
    let tcp_len = TCP_LEN + olen + t.payload.len();
    let ip_len = ip_header_len(t.dst);
    let total = ETH_LEN + ip_len + tcp_len;
    if buf.len() < total || tcp_len + IPV4_LEN > u16::MAX as usize {
        return None;
    }
    let ph = emit_l3(buf, t.src_mac, t.dst_mac, t.src, t.dst, 6, tcp_len)?;
    let s = &mut buf[ETH_LEN + ip_len..total];
    s[0..2].copy_from_slice(&t.src_port.to_be_bytes());
    s[2..4].copy_from_slice(&t.dst_port.to_be_bytes());
    s[4..8].copy_from_slice(&t.seq.to_be_bytes());
    s[8..12].copy_from_slice(&t.ack.to_be_bytes());
    s[12] = (((TCP_LEN + olen) / 4) as u8) << 4;
    s[13] = t.flags;
    s[14..16].copy_from_slice(&t.window.to_be_bytes());
    s[16..20].copy_from_slice(&[0, 0, 0, 0]);
    let mut o = TCP_LEN;
    if let Some(m) = t.opts.mss {
        s[o..o + 4].copy_from_slice(&[2, 4, (m >> 8) as u8, m as u8]);
        o += 4;
    }
    match (t.opts.sack_permitted, t.opts.timestamp) {
        (sack, Some((val, ecr))) => {
            if sack {
                s[o..o + 2].copy_from_slice(&[4, 2]);
            } else {
                s[o..o + 2].copy_from_slice(&[1, 1]);
            }
            s[o + 2] = 8;
            s[o + 3] = 10;
            s[o + 4..o + 8].copy_from_slice(&val.to_be_bytes());
            s[o + 8..o + 12].copy_from_slice(&ecr.to_be_bytes());
            o += 12;
        }
        (true, None) => {
            s[o..o + 4].copy_from_slice(&[1, 1, 4, 2]);
            o += 4;
        }
        (false, None) => {}
    }
    if let Some(w) = t.opts.window_scale {
        s[o..o + 4].copy_from_slice(&[1, 3, 3, w]);
        o += 4;
    }
    let n = t.opts.sack_count.min(3) as usize;
    if n > 0 {
        s[o..o + 4].copy_from_slice(&[1, 1, 5, (2 + 8 * n) as u8]);
        o += 4;
        for &(l, r) in &t.opts.sack[..n] {
            s[o..o + 4].copy_from_slice(&l.to_be_bytes());
            s[o + 4..o + 8].copy_from_slice(&r.to_be_bytes());
            o += 8;
        }
    }
    s[o..].copy_from_slice(t.payload);
    let c = !checksum::combine(&[ph, checksum::data(s)]);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

/// Writes an Ethernet/IP/UDP header for `payload_len` bytes that the caller
/// has already placed at `buf[udp_payload_offset_to(dst)..]`, then the
/// checksum. IPv4 or IPv6 by the addresses' family. Returns the frame
/// length, or None when `buf` is too small or the families differ.
#[allow(clippy::too_many_arguments)]
pub fn emit_udp(
    buf: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload_len: usize,
) -> Option<usize> {
    let udp_len = UDP_LEN + payload_len;
    let ip_len = ip_header_len(dst);
    let total = ETH_LEN + ip_len + udp_len;
    if buf.len() < total || udp_len + IPV4_LEN > u16::MAX as usize {
        return None;
    }
    let ph = emit_l3(buf, src_mac, dst_mac, src, dst, 17, udp_len)?;
    let u = &mut buf[ETH_LEN + ip_len..total];
    u[0..2].copy_from_slice(&src_port.to_be_bytes());
    u[2..4].copy_from_slice(&dst_port.to_be_bytes());
    u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    u[6..8].copy_from_slice(&[0, 0]);
    let mut c = !checksum::combine(&[ph, checksum::data(u)]);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

/// Where a UDP payload starts in an IPv4 frame built by [`emit_udp`].
pub const fn udp_payload_offset() -> usize {
    ETH_LEN + IPV4_LEN + UDP_LEN
}

/// Where a UDP payload starts in a frame to `dst` built by [`emit_udp`].
pub fn udp_payload_offset_to(dst: IpAddr) -> usize {
    ETH_LEN + ip_header_len(dst) + UDP_LEN
}

/// Writes an ARP request or reply; returns the frame length (42, padded to 60).
pub fn emit_arp(
    buf: &mut [u8],
    request: bool,
    sha: Mac,
    spa: Ipv4Addr,
    tha: Mac,
    tpa: Ipv4Addr,
) -> Option<usize> {
    if buf.len() < 60 {
        return None;
    }
    let eth_dst = if request { BROADCAST } else { tha };
    emit_eth(buf, sha, eth_dst, 0x0806);
    let a = &mut buf[ETH_LEN..ETH_LEN + 28];
    a[0..2].copy_from_slice(&1u16.to_be_bytes());
    a[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&(if request { 1u16 } else { 2 }).to_be_bytes());
    a[8..14].copy_from_slice(&sha);
    a[14..18].copy_from_slice(&spa.octets());
    a[18..24].copy_from_slice(&if request { [0; 6] } else { tha });
    a[24..28].copy_from_slice(&tpa.octets());
    buf[ETH_LEN + 28..60].fill(0);
    Some(60)
}

/// Turns a received ICMPv4 echo request (already validated by [`parse`])
/// into its reply in place: swaps MACs and addresses, sets type 0 with an
/// incremental checksum update, resets TTL. Returns false if the frame is not
/// one.
pub fn echo_reply_in_place(frame: &mut [u8], our_mac: Mac) -> bool {
    if frame.len() > 13 && frame[12..14] == [0x86, 0xdd] {
        return ipv6::echo_reply_in_place(frame, our_mac);
    }
    if frame.len() < ETH_LEN + IPV4_LEN + 8 {
        return false;
    }
    let ihl = ((frame[ETH_LEN] & 0x0f) as usize) * 4;
    let icmp_at = ETH_LEN + ihl;
    if frame.len() < icmp_at + 8 || frame[icmp_at] != 8 {
        return false;
    }
    let mut peer = [0u8; 6];
    peer.copy_from_slice(&frame[6..12]);
    frame[0..6].copy_from_slice(&peer);
    frame[6..12].copy_from_slice(&our_mac);
    // Swap IPv4 addresses: the header checksum is unchanged by a swap.
    for i in 0..4 {
        frame.swap(ETH_LEN + 12 + i, ETH_LEN + 16 + i);
    }
    // TTL 64: update the header checksum incrementally (TTL shares a word with protocol).
    let old = u16::from_be_bytes([frame[ETH_LEN + 8], frame[ETH_LEN + 9]]);
    frame[ETH_LEN + 8] = 64;
    let new = u16::from_be_bytes([frame[ETH_LEN + 8], frame[ETH_LEN + 9]]);
    let c = u16::from_be_bytes([frame[ETH_LEN + 10], frame[ETH_LEN + 11]]);
    frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&csum_update16(c, old, new).to_be_bytes());
    // Type 8 → 0 (the word is type<<8 | code).
    let old = u16::from_be_bytes([frame[icmp_at], frame[icmp_at + 1]]);
    frame[icmp_at] = 0;
    let new = u16::from_be_bytes([frame[icmp_at], frame[icmp_at + 1]]);
    let c = u16::from_be_bytes([frame[icmp_at + 2], frame[icmp_at + 3]]);
    frame[icmp_at + 2..icmp_at + 4].copy_from_slice(&csum_update16(c, old, new).to_be_bytes());
    true
}

/// Rewrites the Ethernet addresses of a frame in place (L2 direct routing).
#[inline]
pub fn rewrite_macs(frame: &mut [u8], src: Mac, dst: Mac) -> bool {
    if frame.len() < ETH_LEN {
        return false;
    }
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg<'a>(opts: TcpOpts, payload: &'a [u8]) -> TcpOut<'a> {
        TcpOut {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "198.18.0.101".parse().unwrap(),
            dst: "198.18.0.10".parse().unwrap(),
            src_port: 40000,
            dst_port: 80,
            seq: 0xdead_beef,
            ack: 7,
            flags: flags::SYN | flags::ACK,
            window: 65535,
            opts,
            payload,
        }
    }

    #[test]
    fn tcp_round_trip_with_every_option_set() {
        let all = [
            TcpOpts::default(),
            TcpOpts {
                mss: Some(1460),
                ..Default::default()
            },
            TcpOpts {
                mss: Some(1460),
                sack_permitted: true,
                ..Default::default()
            },
            TcpOpts {
                timestamp: Some((1, 2)),
                ..Default::default()
            },
            TcpOpts {
                mss: Some(536),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some((9, 8)),
                ..Default::default()
            },
            TcpOpts {
                window_scale: Some(14),
                sack_permitted: true,
                ..Default::default()
            },
        ];
        for o in all {
            let t = seg(o, b"hello");
            let mut b = [0u8; 200];
            let n = emit_tcp(&mut b, &t).unwrap();
            assert_eq!(n, tcp_frame_len(&t));
            let Frame::Tcp(s) = parse(&b[..n], Verify::Full).unwrap() else {
                panic!()
            };
            assert_eq!(s.opts(&b[..n]).unwrap(), o);
            assert_eq!(s.payload(&b[..n]), b"hello");
            assert_eq!(
                (s.seq, s.ack, s.flags, s.window),
                (0xdead_beef, 7, flags::SYN | flags::ACK, 65535)
            );
            // A flipped payload bit fails the full check but not the header one.
            b[n - 1] ^= 1;
            assert_eq!(parse(&b[..n], Verify::Full), Err(DropReason::BadChecksum));
            assert!(parse(&b[..n], Verify::Header).is_ok());
        }
    }

    #[test]
    fn truncated_frames_are_malformed_not_panics() {
        let t = seg(
            TcpOpts {
                mss: Some(1460),
                ..Default::default()
            },
            b"x",
        );
        let mut b = [0u8; 100];
        let n = emit_tcp(&mut b, &t).unwrap();
        assert!(matches!(parse(&b[..n], Verify::Full), Ok(Frame::Tcp(_))));
        for cut in 0..n {
            assert_eq!(
                parse(&b[..cut], Verify::Full).err(),
                Some(DropReason::Malformed),
                "frame cut to {cut} of {n} bytes"
            );
        }
    }

    #[test]
    fn fast_path_agrees_with_parse() {
        use proptest::prelude::*;
        let t = seg(
            TcpOpts {
                mss: Some(1460),
                timestamp: Some((1, 2)),
                ..Default::default()
            },
            b"abc",
        );
        let mut b = [0u8; 120];
        let n = emit_tcp(&mut b, &t).unwrap();
        let base = b[..n].to_vec();
        proptest!(|(at in 0usize..80, val in any::<u8>(), cut in 0usize..80)| {
            let mut f = base.clone();
            if at < f.len() { f[at] = val; }
            let f = &f[..f.len().saturating_sub(cut)];
            let slow = match parse(f, Verify::Header) { Ok(Frame::Tcp(s)) => Some(s), _ => None };
            prop_assert_eq!(tcp4_fast(f), slow);
            if let Some(seg) = slow {
                let full = matches!(parse(f, Verify::Full), Ok(Frame::Tcp(_)));
                prop_assert_eq!(tcp_seg_checksum_ok(f, &seg), full);
            }
        });
    }

    #[test]
    fn incremental_checksum_matches_full() {
        let mut data = [
            0x45u8, 0, 0, 40, 1, 2, 0x40, 0, 17, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = !checksum::data(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        let old = u16::from_be_bytes([data[8], data[9]]);
        data[8] = 64;
        let new = u16::from_be_bytes([data[8], data[9]]);
        let inc = csum_update16(c, old, new);
        data[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, !checksum::data(&data));
    }
}
