//! Raw IPv4 packets for the attacks: TCP and UDP builders with finished
//! checksums, a sender whose source address is whatever the packet says
//! (`IPPROTO_RAW`: the kernel still routes and resolves ARP, so no MAC
//! bookkeeping here), a pacer that bounds the send rate, and a capture of a
//! host's data interface (`AF_PACKET`) with parsers for what it returns.
//! For IPv6, builders of whole packets (any extension-header chain, or a
//! TCP segment with its pseudo-header checksum) and a sender of whole
//! Ethernet frames ([`FrameSender`]), which the kernel passes on unchecked:
//! what the tests need to hand the switch frames no stack would build.
//!
//! Open sockets inside the namespace they belong to ([`crate::netns::in_ns`]).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// TCP flag bits.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// A TCP segment to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSeg {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// TCP options, padded here to a multiple of 4.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl TcpSeg {
    /// A segment with no options and no payload.
    pub fn new(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32, flags: u8) -> TcpSeg {
        TcpSeg {
            src,
            dst,
            seq,
            ack,
            flags,
            window: 64240,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// The IPv4 packet (header, TCP header, options, payload).
    pub fn build(&self) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let thl = 20 + opts.len();
        let mut t = Vec::with_capacity(thl + self.payload.len());
        t.extend_from_slice(&self.src.port().to_be_bytes());
        t.extend_from_slice(&self.dst.port().to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.push(((thl / 4) as u8) << 4);
        t.push(self.flags);
        t.extend_from_slice(&self.window.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        t.extend_from_slice(&opts);
        t.extend_from_slice(&self.payload);
        let c = l4_checksum(*self.src.ip(), *self.dst.ip(), 6, &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        ipv4(*self.src.ip(), *self.dst.ip(), 6, &t)
    }
}

/// A UDP datagram as an IPv4 packet.
pub fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = l4_checksum(*src.ip(), *dst.ip(), 17, &u);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4(*src.ip(), *dst.ip(), 17, &u)
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0]); // id (kernel fills), DF
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = fold(sum16(&p[..20], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn sum16(b: &[u8], mut acc: u32) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    fold(sum16(l4, sum16(&pseudo, 0)))
}

/// IPv6 next-header values the tests build with.
pub mod nh {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTS: u8 = 60;
}

/// An IPv6 packet: the fixed header (hop limit 64, payload length from
/// `payload`) with `next` as its next header, followed by `payload` (any
/// extension headers, then the upper-layer header and data).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An 8-byte extension header (Hop-by-Hop, Routing or Destination
/// Options) whose next header is `next`, padded with a PadN option (a
/// Routing header of type 0 with no segments left for Routing).
pub fn ext_header(kind: u8, next: u8) -> [u8; 8] {
    match kind {
        nh::ROUTING => [next, 0, 0, 0, 0, 0, 0, 0],
        _ => [next, 0, 1, 4, 0, 0, 0, 0],
    }
}

/// A Fragment header (first fragment, more to come) whose next header is
/// `next`.
pub fn fragment_header(next: u8) -> [u8; 8] {
    [next, 0, 0, 1, 0, 0, 0x0b, 0xad]
}

/// The upper-layer checksum of `l4` with the IPv6 pseudo-header.
fn l4_checksum6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, next]);
    fold(sum16(l4, sum16(&pseudo, 0)))
}

impl TcpSeg {
    /// The segment between IPv6 addresses (ports, numbers, flags, options
    /// and payload from `self`; its IPv4 addresses ignored) as an IPv6
    /// packet, after the extension headers `ext` (each chained by its
    /// first byte; the fixed header's next header is `ext_first`, or TCP
    /// when `ext` is empty).
    pub fn build6(&self, src: Ipv6Addr, dst: Ipv6Addr, ext_first: u8, ext: &[u8]) -> Vec<u8> {
        let v4 = self.build();
        let t = &v4[20..];
        let mut t = t.to_vec();
        t[16..18].copy_from_slice(&[0, 0]);
        let c = l4_checksum6(src, dst, nh::TCP, &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        let mut payload = ext.to_vec();
        payload.extend_from_slice(&t);
        let next = if ext.is_empty() { nh::TCP } else { ext_first };
        ipv6(src, dst, next, &payload)
    }

    /// The segment as a packet of its family: [`TcpSeg::build`] for IPv4,
    /// [`TcpSeg::build6`] (no extension headers) for IPv6.
    pub fn build_for(&self, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let mut s = self.clone();
        s.src.set_port(src.port());
        s.dst.set_port(dst.port());
        match (src, dst) {
            (SocketAddr::V6(a), SocketAddr::V6(b)) => s.build6(*a.ip(), *b.ip(), nh::TCP, &[]),
            (SocketAddr::V4(a), SocketAddr::V4(b)) => {
                s.src = a;
                s.dst = b;
                s.build()
            }
            _ => Vec::new(),
        }
    }
}

/// EtherTypes of the frames a [`FrameSender`] sends.
pub const ETH_P_IPV4: u16 = 0x0800;
/// IPv6's EtherType.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut it = s.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(mac)
}

/// Sends whole Ethernet frames on one interface of the calling thread's
/// namespace (`AF_PACKET`, `SOCK_RAW`): nothing is routed, resolved or
/// checked, so the frame reaches the wire (here: the bridge) as built.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
    ifindex: i32,
    /// The interface's own MAC (the frames' source).
    pub mac: [u8; 6],
}

/// An AF_PACKET socket of `kind` for `proto` (network order) bound to
/// `iface`, and the address it was bound with.
fn bound_packet_socket(
    iface: &str,
    kind: libc::c_int,
    proto: u16,
) -> io::Result<(OwnedFd, libc::sockaddr_ll)> {
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, kind, i32::from(proto)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: if_nametoindex on a NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = idx as i32;
    // SAFETY: bind with a sockaddr_ll of the right size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, sll))
}

impl FrameSender {
    /// Opens the sender on `iface` (e.g. `data0`; needs CAP_NET_RAW).
    pub fn open(iface: &str) -> io::Result<FrameSender> {
        // Protocol 0: the sender receives nothing.
        let (fd, mut sll) = bound_packet_socket(iface, libc::SOCK_RAW, 0)?;
        let ifindex = sll.sll_ifindex;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // Bound to the interface, the socket names its hardware address
        // (sysfs would show the namespace the process started in).
        let mut got = len;
        // SAFETY: getsockname into the sockaddr_ll, its size given.
        if unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut got,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        if sll.sll_halen != 6 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{iface} has no Ethernet address"),
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&sll.sll_addr[..6]);
        Ok(FrameSender { fd, ifindex, mac })
    }

    /// Sends `payload` in a frame to `dst` with EtherType `ethertype`,
    /// padded with zeros to Ethernet's 60 bytes as a NIC would (a runt
    /// frame never reaches a real switch).
    pub fn send(&self, dst: [u8; 6], ethertype: u16, payload: &[u8]) -> io::Result<()> {
        let mut f = Vec::with_capacity(60.max(14 + payload.len()));
        f.extend_from_slice(&dst);
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f.resize(f.len().max(60), 0);
        // SAFETY: an all-zero sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dst);
        // SAFETY: sendto with a buffer we own and a sockaddr_ll of its size.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Sends finished IPv4 packets as they are (`IPPROTO_RAW` implies
/// `IP_HDRINCL`): the source address may be anyone's.
#[derive(Debug)]
pub struct RawSender {
    fd: OwnedFd,
    /// Packets the kernel refused (ENOBUFS and the like).
    pub refused: u64,
}

impl RawSender {
    /// Opens the socket in the calling thread's namespace (needs CAP_NET_RAW).
    pub fn open() -> io::Result<RawSender> {
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let big: libc::c_int = 4 << 20;
        // SAFETY: setsockopt with a pointer to a local int of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&big as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(RawSender { fd, refused: 0 })
    }

    /// Sends one packet; true when the kernel took it.
    pub fn send(&mut self, pkt: &[u8]) -> bool {
        if pkt.len() < 20 {
            self.refused += 1;
            return false;
        }
        let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        for _ in 0..100 {
            // SAFETY: sendto with a valid buffer and a sockaddr_in of the right size.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return true;
            }
            match io::Error::last_os_error().raw_os_error() {
                // The queue is full: let it drain rather than count a loss.
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                _ => break,
            }
        }
        self.refused += 1;
        false
    }
}

/// Bounds a send loop to `rate` packets per second.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    rate: f64,
    sent: u64,
}

impl Pacer {
    /// A pacer for `rate` packets per second (0: unbounded).
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate: rate as f64,
            sent: 0,
        }
    }

    /// Call before each packet: sleeps while ahead of the rate.
    pub fn tick(&mut self) {
        self.sent += 1;
        if self.rate <= 0.0 || !self.sent.is_multiple_of(64) {
            return;
        }
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate);
        let el = self.start.elapsed();
        if due > el {
            std::thread::sleep(due - el);
        }
    }
}

/// A parsed IPv4 packet (no options beyond the header length honoured).
#[derive(Debug, Clone, Copy)]
pub struct Ip<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub payload: &'a [u8],
}

/// Parses an IPv4 packet; None for anything else or a truncated one.
pub fn parse_ipv4(p: &[u8]) -> Option<Ip<'_>> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total < ihl || p.len() < total {
        return None;
    }
    Some(Ip {
        src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        proto: p[9],
        payload: &p[ihl..total],
    })
}

/// Parses an IPv6 packet without extension headers: (source, destination,
/// next header, payload); None for anything else or a truncated one.
pub fn parse_ipv6(p: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u8, &[u8])> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let body = p.get(40..40 + len)?;
    let a = |b: &[u8]| -> Ipv6Addr {
        let mut o = [0u8; 16];
        o.copy_from_slice(b);
        Ipv6Addr::from(o)
    };
    Some((a(&p[8..24]), a(&p[24..40]), p[6], body))
}

/// A parsed TCP segment.
#[derive(Debug, Clone)]
pub struct TcpView<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

/// Parses a TCP segment (the payload of [`Ip`] with proto 6).
pub fn parse_tcp(t: &[u8]) -> Option<TcpView<'_>> {
    if t.len() < 20 {
        return None;
    }
    let off = usize::from(t[12] >> 4) * 4;
    if off < 20 || t.len() < off {
        return None;
    }
    Some(TcpView {
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        flags: t[13],
        window: u16::from_be_bytes([t[14], t[15]]),
        options: &t[20..off],
        payload: &t[off..],
    })
}

/// Parses a UDP datagram: (source port, destination port, payload).
pub fn parse_udp(u: &[u8]) -> Option<(u16, u16, &[u8])> {
    if u.len() < 8 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([u[4], u[5]]));
    if len < 8 || u.len() < len {
        return None;
    }
    Some((
        u16::from_be_bytes([u[0], u[1]]),
        u16::from_be_bytes([u[2], u[3]]),
        &u[8..len],
    ))
}

/// Whether a captured packet was received by the host or sent by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// A capture of IPv4 packets on one interface of the calling thread's
/// namespace, both directions.
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// Opens the capture on `iface` (e.g. `data0`), polling every `poll`.
    /// It binds to every protocol: the kernel shows a host's own outgoing
    /// frames only to `ETH_P_ALL` sockets; [`Capture::next`] keeps IPv4.
    pub fn open(iface: &str, poll: Duration) -> io::Result<Capture> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let (fd, _) = bound_packet_socket(iface, libc::SOCK_DGRAM, proto)?;
        let tv = libc::timeval {
            tv_sec: poll.as_secs() as libc::time_t,
            tv_usec: poll.subsec_micros() as libc::suseconds_t,
        };
        let big: libc::c_int = 8 << 20;
        // SAFETY: setsockopt with pointers to locals of the right sizes.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&big as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Capture { fd })
    }

    /// The next IPv4 packet and its direction; None when the poll interval
    /// passed (or the frame was not IPv4).
    pub fn next(&self) -> Option<(Direction, Vec<u8>)> {
        self.next_of(libc::ETH_P_IP as u16)
    }

    /// The next packet of EtherType `ethertype` (e.g. [`ETH_P_IPV6`]) and
    /// its direction; None when the poll interval passed (or the frame was
    /// of another type).
    pub fn next_of(&self, ethertype: u16) -> Option<(Direction, Vec<u8>)> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: zeroed sockaddr_ll is a valid out-parameter.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: recvfrom into a buffer we own, with a sockaddr_ll out-parameter.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut sl,
            )
        };
        if n <= 0 || sll.sll_protocol != ethertype.to_be() {
            return None;
        }
        buf.truncate(n as usize);
        let dir = if sll.sll_pkttype == libc::PACKET_OUTGOING {
            Direction::Out
        } else {
            Direction::In
        };
        Some((dir, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_segments_parse_back_with_valid_checksums() {
        let s = TcpSeg {
            options: vec![2, 4, 5, 0xb4],
            payload: b"GET /".to_vec(),
            ..TcpSeg::new(
                "198.18.0.101:40000".parse().unwrap(),
                "198.18.0.10:80".parse().unwrap(),
                7,
                9,
                flags::ACK | flags::PSH,
            )
        };
        let p = s.build();
        let ip = parse_ipv4(&p).unwrap();
        assert_eq!(ip.proto, 6);
        assert_eq!(fold(sum16(&p[..20], 0)), 0, "IPv4 header checksum");
        let t = parse_tcp(ip.payload).unwrap();
        assert_eq!((t.sport, t.dport, t.seq, t.ack), (40000, 80, 7, 9));
        assert_eq!(t.options, &[2, 4, 5, 0xb4]);
        assert_eq!(t.payload, b"GET /");
        assert_eq!(
            l4_checksum(ip.src, ip.dst, 6, ip.payload),
            0,
            "TCP checksum"
        );

        let src: Ipv6Addr = "2001:2::101".parse().unwrap();
        let dst: Ipv6Addr = "2001:2::10".parse().unwrap();
        let p6 = s.build6(src, dst, nh::TCP, &[]);
        let (a, b, next, body) = parse_ipv6(&p6).unwrap();
        assert_eq!((a, b, next), (src, dst, nh::TCP));
        assert_eq!(l4_checksum6(src, dst, 6, body), 0, "TCP checksum over IPv6");
        let t6 = parse_tcp(body).unwrap();
        assert_eq!((t6.sport, t6.dport, t6.payload), (40000, 80, &b"GET /"[..]));
        // Behind a Destination Options header: same segment, chained.
        let ext = ext_header(nh::DEST_OPTS, nh::TCP);
        let p6 = s.build6(src, dst, nh::DEST_OPTS, &ext);
        assert_eq!(p6[6], nh::DEST_OPTS);
        assert_eq!(&p6[40..48], &ext);
        assert_eq!(
            usize::from(u16::from_be_bytes([p6[4], p6[5]])),
            p6.len() - 40
        );
        assert_eq!(
            parse_mac("02:ba:70:00:00:0a"),
            Some([2, 0xba, 0x70, 0, 0, 10])
        );
        assert_eq!(parse_mac("02:ba"), None);

        let u = udp(
            "198.18.0.2:9199".parse().unwrap(),
            "198.18.0.11:9199".parse().unwrap(),
            b"TH",
        );
        let ip = parse_ipv4(&u).unwrap();
        assert_eq!(parse_udp(ip.payload).unwrap(), (9199, 9199, &b"TH"[..]));
        assert_eq!(
            l4_checksum(ip.src, ip.dst, 17, ip.payload),
            0,
            "UDP checksum"
        );
    }
}
