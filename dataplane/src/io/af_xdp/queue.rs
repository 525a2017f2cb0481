//! The AF_XDP sockets: one per worker, bound to the interface queue of the
//! same index, each with its own UMEM and four rings (fill, completion, RX,
//! TX); and the port they share (the XDP program, the monitor).
//!
//! Receive is zero copy: a frame the kernel wrote into the UMEM is the buffer
//! the worker gets, and a forwarded frame leaves from the same memory. With
//! `XDP_USE_NEED_WAKEUP` the rings run without system calls while the kernel
//! is busy; a transmit costs one `sendto` when the kernel asks for a kick
//! (always in copy mode, where the copy is made in that call).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, UmemConfig, User};

use crate::doorbell::Doorbell;
use crate::io::af_xdp::config::{AfXdpConfig, FastPath, XdpBind};
use crate::io::af_xdp::flows::FlowTable;
use crate::io::af_xdp::program::XdpProgram;
use crate::io::af_xdp::umem::{AfXdpBuf, Umem};
use crate::io::netdev;
use crate::io::port::{FastPathStats, IoError, LinkStatus, PortMonitor, PortStats};
use crate::io::{IoStats, PacketBuf, PacketIo, PortQueue};

/// Where the kernel puts a received frame's data inside its UMEM frame.
const XDP_PACKET_HEADROOM: u32 = 256;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const SOL_XDP: libc::c_int = 283;
const XDP_STATISTICS: libc::c_int = 7;

/// `struct xdp_statistics` (kernel ≥ 5.9 fills all six).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct XdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

fn xdp_statistics(fd: RawFd) -> XdpStatistics {
    let mut s = XdpStatistics::default();
    let mut len = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
    // SAFETY: reads the option into a live buffer of `len` bytes.
    unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            (&mut s as *mut XdpStatistics).cast(),
            &mut len,
        )
    };
    s
}

/// What one queue counts (written by its worker, read by the monitor).
#[derive(Debug, Default)]
struct QueueCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    /// Frames the worker gave that were empty or larger than a frame.
    tx_dropped: AtomicU64,
    /// Received descriptors pointing outside the UMEM (never expected).
    rx_bad_desc: AtomicU64,
    /// Transmit kicks (`sendto`) the kernel refused (link gone, device
    /// down); the frames stay in the ring and are kicked again.
    tx_kick_errors: AtomicU64,
}

/// The port shared by every queue: the XDP program, the monitor.
struct AfXdpPort {
    iface: String,
    mac: [u8; 6],
    /// Datagram socket for interface ioctls.
    ctl: OwnedFd,
    /// Holds the interface's all-multicast mode while the port lives.
    _allmulti: OwnedFd,
    /// `"zero-copy"` or `"copy"`.
    bind_mode: &'static str,
    /// Each queue's socket (a duplicate, for XDP_STATISTICS) and counters.
    queues: Vec<(OwnedFd, Arc<QueueCounters>, Arc<Umem>)>,
    /// Detached when the last holder (the monitor) goes (it locks its own
    /// state: safe to read from the control plane's thread).
    program: XdpProgram,
}

impl PortMonitor for AfXdpPort {
    fn name(&self) -> String {
        format!("af_xdp:{}", self.iface)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link(&self) -> LinkStatus {
        let fd = self.ctl.as_raw_fd();
        let flags = netdev::if_flags(fd, &self.iface).unwrap_or(0);
        LinkStatus {
            up: flags & libc::IFF_UP as u32 != 0 && flags & libc::IFF_RUNNING as u32 != 0,
            speed_mbps: netdev::link_speed(fd, &self.iface),
            full_duplex: None,
        }
    }

    fn stats(&self) -> PortStats {
        let mut s = PortStats::default();
        for (fd, c, _) in &self.queues {
            let k = xdp_statistics(fd.as_raw_fd());
            s.rx_packets += c.rx_packets.load(Ordering::Relaxed);
            s.rx_bytes += c.rx_bytes.load(Ordering::Relaxed);
            s.tx_packets += c.tx_packets.load(Ordering::Relaxed);
            s.tx_bytes += c.tx_bytes.load(Ordering::Relaxed);
            s.rx_missed += k.rx_dropped + k.rx_ring_full;
            s.rx_errors += k.rx_invalid_descs + c.rx_bad_desc.load(Ordering::Relaxed);
            s.tx_errors += k.tx_invalid_descs
                + c.tx_dropped.load(Ordering::Relaxed)
                + c.tx_kick_errors.load(Ordering::Relaxed);
            s.rx_nombuf += k.rx_fill_ring_empty_descs;
        }
        s
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (i, (fd, c, umem)) in self.queues.iter().enumerate() {
            let k = xdp_statistics(fd.as_raw_fd());
            let fields = [
                ("rx_packets", c.rx_packets.load(Ordering::Relaxed)),
                ("rx_bytes", c.rx_bytes.load(Ordering::Relaxed)),
                ("tx_packets", c.tx_packets.load(Ordering::Relaxed)),
                ("tx_bytes", c.tx_bytes.load(Ordering::Relaxed)),
                ("tx_dropped", c.tx_dropped.load(Ordering::Relaxed)),
                ("rx_bad_desc", c.rx_bad_desc.load(Ordering::Relaxed)),
                ("tx_kick_errors", c.tx_kick_errors.load(Ordering::Relaxed)),
                ("xsk_rx_dropped", k.rx_dropped),
                ("xsk_rx_invalid_descs", k.rx_invalid_descs),
                ("xsk_tx_invalid_descs", k.tx_invalid_descs),
                ("xsk_rx_ring_full", k.rx_ring_full),
                ("xsk_rx_fill_ring_empty", k.rx_fill_ring_empty_descs),
                ("xsk_tx_ring_empty", k.tx_ring_empty_descs),
                ("umem_free_frames", umem.available() as u64),
            ];
            for (name, v) in fields {
                out.push((format!("q{i}_{name}"), v));
            }
        }
        out.push((format!("bind_{}", self.bind_mode.replace('-', "_")), 1));
        out
    }

    fn steering(&self) -> &'static str {
        if self.queues.len() > 1 {
            "rss"
        } else {
            "single"
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut n = self.program.notes().to_vec();
        n.extend(netdev::kernel_ipv6_note(&self.iface));
        n
    }

    fn fast_path(&self) -> Option<FastPathStats> {
        Some(self.program.stats())
    }
}

/// One worker's AF_XDP socket with its UMEM and rings.
pub struct AfXdpQueue {
    index: usize,
    rx: RingRx,
    tx: RingTx,
    dev: DeviceQueue,
    /// The socket (its descriptor is shared by the rings).
    _user: User,
    umem: Arc<Umem>,
    /// Frames kept back from the fill ring for the worker's own frames.
    reserve: usize,
    /// Zero-copy sockets: the driver sends by itself unless it asks for a
    /// kick; in copy mode only `sendto` makes the kernel send.
    zero_copy: bool,
    /// The TX ring holds frames the kernel has not been asked to send.
    tx_unkicked: bool,
    ring_size: u32,
    port: Arc<AfXdpPort>,
    counters: Arc<QueueCounters>,
    stats: IoStats,
    offload: Option<FlowTable>,
    /// Scratch for [`crate::io::AnyQueue`]'s transmit path.
    pub(crate) any_scratch: Vec<AfXdpBuf>,
}

fn errno(call: &'static str, iface: &str, e: xdpilone::Errno) -> IoError {
    let err = std::io::Error::from_raw_os_error(e.get_raw());
    match e.get_raw() {
        libc::EPERM | libc::EACCES => IoError::Permission {
            what: format!(
                "{call} on {iface} (AF_XDP needs CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON)"
            ),
        },
        libc::EAFNOSUPPORT => IoError::Config(format!(
            "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): {call} on {iface} failed"
        )),
        _ => IoError::Os {
            call,
            iface: iface.to_owned(),
            err,
        },
    }
}

fn validate(cfg: &AfXdpConfig, workers: usize) -> Result<u32, IoError> {
    let bad = |m: String| Err(IoError::Config(format!("af_xdp on {}: {m}", cfg.iface)));
    if cfg.frame_size != 2048 && cfg.frame_size != 4096 {
        return bad(format!(
            "frame_size {} must be 2048 or 4096",
            cfg.frame_size
        ));
    }
    if !cfg.ring_size.is_power_of_two() || cfg.ring_size < 64 {
        return bad(format!(
            "ring_size {} must be a power of two of at least 64",
            cfg.ring_size
        ));
    }
    if cfg.frame_count < cfg.ring_size * 2 {
        return bad(format!(
            "frame_count {} must be at least twice ring_size ({}): the fill ring and the \
             worker's own frames both need frames",
            cfg.frame_count, cfg.ring_size
        ));
    }
    let queues = cfg.queues.unwrap_or(workers as u32);
    if queues as usize != workers {
        return bad(format!(
            "{queues} queues but {workers} workers: each worker serves the queue of its index"
        ));
    }
    Ok(queues)
}

/// Opens one AF_XDP socket per worker on `cfg.iface`, attaches the XDP
/// program and points each queue's frames at its socket.
pub fn open(cfg: &AfXdpConfig, workers: usize) -> Result<Vec<AfXdpQueue>, IoError> {
    let queues = validate(cfg, workers)?;
    let iface = cfg.iface.as_str();
    let ifindex = netdev::ifindex(iface)?;
    let ctl = netdev::ioctl_socket(iface)?;
    let allmulti = crate::io::afpacket::socket::open_socket(iface)?;
    crate::io::afpacket::socket::add_allmulti(&allmulti, ifindex, iface)?;
    let mac = netdev::hw_addr(&ctl, iface)?;
    let mtu = netdev::mtu(ctl.as_raw_fd(), iface)?;
    let room = cfg.frame_size - XDP_PACKET_HEADROOM;
    if mtu + 18 > room {
        return Err(IoError::Config(format!(
            "af_xdp on {iface}: frame_size {} holds frames up to {room} bytes after the kernel's \
             headroom, but the MTU {mtu} allows {}: use frame_size 4096 or a smaller MTU",
            cfg.frame_size,
            mtu + 18
        )));
    }
    if let Some(n) = netdev::rx_queues(ctl.as_raw_fd(), iface) {
        if n != queues {
            return Err(IoError::Config(format!(
                "af_xdp on {iface}: the interface has {n} receive queues but {queues} workers \
                 serve it; frames on a queue without a worker would be lost. Set workers.count \
                 to {n}, or the queues to {queues} (`ethtool -L {iface} combined {queues}`, or \
                 `rx {queues} tx {queues}` on a veth)"
            )));
        }
    }
    let mut program = XdpProgram::attach(cfg, ifindex as u32, queues, mac)?;
    let mut parts = Vec::with_capacity(workers);
    let mut zero_copy = false;
    for q in 0..queues {
        let (part, zc) = open_queue(cfg, ifindex as u32, q)?;
        zero_copy |= zc;
        program.register_socket(q, part.user.as_raw_fd())?;
        parts.push(part);
    }
    let mut flows = Vec::with_capacity(workers);
    for _ in 0..queues {
        flows.push(match cfg.fast_path {
            FastPath::Xdp => program.flows()?,
            FastPath::Off => None,
        });
    }
    let mut port_queues = Vec::with_capacity(workers);
    for p in &parts {
        // SAFETY: dup(2) of a live descriptor; the result is checked.
        let fd = unsafe { libc::dup(p.user.as_raw_fd()) };
        if fd < 0 {
            return Err(IoError::Os {
                call: "dup",
                iface: iface.to_owned(),
                err: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        port_queues.push((fd, Arc::new(QueueCounters::default()), Arc::clone(&p.umem)));
    }
    let counters: Vec<_> = port_queues.iter().map(|(_, c, _)| Arc::clone(c)).collect();
    let port = Arc::new(AfXdpPort {
        iface: iface.to_owned(),
        mac,
        ctl,
        _allmulti: allmulti,
        bind_mode: if zero_copy { "zero-copy" } else { "copy" },
        queues: port_queues,
        program,
    });
    let mut out = Vec::with_capacity(workers);
    for (index, ((p, c), offload)) in parts.into_iter().zip(counters).zip(flows).enumerate() {
        let mut q = AfXdpQueue {
            index,
            rx: p.rx,
            tx: p.tx,
            dev: p.dev,
            _user: p.user,
            reserve: (cfg.frame_count - cfg.ring_size) as usize / 2,
            zero_copy,
            tx_unkicked: false,
            ring_size: cfg.ring_size,
            umem: p.umem,
            port: Arc::clone(&port),
            counters: c,
            stats: IoStats::default(),
            offload,
            any_scratch: Vec::new(),
        };
        q.refill();
        out.push(q);
    }
    Ok(out)
}

struct QueueParts {
    umem: Arc<Umem>,
    dev: DeviceQueue,
    user: User,
    rx: RingRx,
    tx: RingTx,
}

/// One socket bound to queue `q`; also says whether it is zero-copy.
fn open_queue(cfg: &AfXdpConfig, ifindex: u32, q: u32) -> Result<(QueueParts, bool), IoError> {
    let iface = cfg.iface.as_str();
    let umem = Umem::new(cfg.frame_count, cfg.frame_size).map_err(|err| IoError::Os {
        call: "mmap (UMEM)",
        iface: iface.to_owned(),
        err,
    })?;
    let ucfg = UmemConfig {
        fill_size: cfg.ring_size,
        complete_size: cfg.ring_size,
        frame_size: cfg.frame_size,
        headroom: 0,
        flags: 0,
    };
    let mut info = IfInfo::invalid();
    info.from_ifindex(ifindex)
        .map_err(|e| errno("if_indextoname", iface, e))?;
    info.set_queue(q);
    let ring = std::num::NonZeroU32::new(cfg.ring_size);
    let tries: &[(u16, bool)] = match cfg.bind {
        XdpBind::Auto => &[(XDP_ZEROCOPY, true), (XDP_COPY, false)],
        XdpBind::ZeroCopy => &[(XDP_ZEROCOPY, true)],
        XdpBind::Copy => &[(XDP_COPY, false)],
    };
    let mut last = None;
    // A socket's rings can be set only once: each bind mode gets a fresh
    // socket (the failed one is closed before the next try).
    for &(flag, zc) in tries {
        // SAFETY: the area is a page-aligned mapping of exactly this size,
        // kept alive by `umem` for as long as the queue (and every buffer)
        // lives.
        let reg = unsafe { xdpilone::Umem::new(ucfg.clone(), umem.area()) }
            .map_err(|e| errno("setsockopt(XDP_UMEM_REG)", iface, e))?;
        let sock =
            Socket::with_shared(&info, &reg).map_err(|e| errno("socket(AF_XDP)", iface, e))?;
        let dev = reg
            .fq_cq(&sock)
            .map_err(|e| errno("setsockopt(XDP_UMEM_FILL_RING)", iface, e))?;
        let scfg = SocketConfig {
            rx_size: ring,
            tx_size: ring,
            bind_flags: flag | XDP_USE_NEED_WAKEUP,
        };
        let user = reg
            .rx_tx(&sock, &scfg)
            .map_err(|e| errno("setsockopt(XDP_RX_RING)", iface, e))?;
        match reg.bind(&user) {
            Ok(()) => {
                let rx = user
                    .map_rx()
                    .map_err(|e| errno("mmap (XDP RX ring)", iface, e))?;
                let tx = user
                    .map_tx()
                    .map_err(|e| errno("mmap (XDP TX ring)", iface, e))?;
                return Ok((
                    QueueParts {
                        umem,
                        dev,
                        user,
                        rx,
                        tx,
                    },
                    zc,
                ));
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.map(|e| e.get_raw()).unwrap_or(libc::EINVAL);
    Err(match (cfg.bind, e) {
        (XdpBind::ZeroCopy, libc::EOPNOTSUPP | libc::EINVAL) => IoError::Config(format!(
            "af_xdp on {iface}: the driver has no zero-copy AF_XDP support (bind: zero_copy); \
             use bind: auto or copy"
        )),
        _ => IoError::Os {
            call: "bind(AF_XDP)",
            iface: format!("{iface} queue {q}"),
            err: std::io::Error::from_raw_os_error(e),
        },
    })
}

impl AfXdpQueue {
    /// Frames sent come back through the completion ring: to the free list.
    fn reap_completions(&mut self) {
        let mut r = self.dev.complete(self.ring_size);
        while let Some(addr) = r.read() {
            if let Some((idx, _)) = self.umem.split(addr) {
                self.umem.give(idx);
            }
        }
        r.release();
    }

    /// Lends free frames to the kernel for reception, keeping `reserve`
    /// back for the frames the worker builds itself.
    fn refill(&mut self) {
        let spare = self.umem.available().saturating_sub(self.reserve);
        if spare == 0 {
            return;
        }
        {
            let mut w = self.dev.fill(spare.min(self.ring_size as usize) as u32);
            let cap = w.capacity();
            for _ in 0..cap {
                let Some(idx) = self.umem.take() else {
                    break;
                };
                if !w.insert_once(self.umem.addr(idx, 0)) {
                    self.umem.give(idx);
                    break;
                }
            }
            w.commit();
        }
        if self.dev.needs_wakeup() {
            self.dev.wake();
        }
    }

    /// Asks the kernel to send what the TX ring holds. In copy mode the
    /// copy and the transmit happen in this call, at most a batch (32
    /// frames) per call: it answers EAGAIN while more remain, so the kick
    /// repeats until the ring is empty; a kick the kernel refuses for now
    /// (EBUSY, ENOBUFS) is retried on the next poll.
    fn kick_tx(&mut self) {
        let fd = self.tx.as_raw_fd();
        for _ in 0..=(self.ring_size / 32) {
            // SAFETY: a zero-length sendto on our own socket; the kernel
            // reads only the ring.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                break;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) if self.tx.pending() > 0 => continue,
                Some(libc::EAGAIN) => break,
                Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {}
                _ => {
                    self.counters.tx_kick_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.tx_unkicked = true;
            return;
        }
        self.tx_unkicked = self.tx.pending() > 0;
    }

    /// Hands up to `max` received frames to `push`; returns how many.
    pub fn rx_burst_with(&mut self, max: usize, mut push: impl FnMut(AfXdpBuf)) -> usize {
        if self.tx_unkicked {
            self.kick_tx();
        }
        self.reap_completions();
        if max == 0 {
            return 0;
        }
        let (mut n, mut bytes, mut bad) = (0usize, 0u64, 0u64);
        {
            let mut r = self.rx.receive(max as u32);
            while let Some(XdpDesc { addr, len, .. }) = r.read() {
                match self.umem.split(addr) {
                    Some((idx, off)) if off + len <= self.umem.frame_size() => {
                        bytes += u64::from(len);
                        n += 1;
                        push(AfXdpBuf::new(Arc::clone(&self.umem), idx, off, len));
                    }
                    Some((idx, _)) => {
                        bad += 1;
                        self.umem.give(idx);
                    }
                    None => bad += 1,
                }
            }
            r.release();
        }
        self.refill();
        if n > 0 {
            self.stats.rx_packets += n as u64;
            self.stats.rx_bytes += bytes;
            self.counters
                .rx_packets
                .store(self.stats.rx_packets, Ordering::Relaxed);
            self.counters
                .rx_bytes
                .store(self.stats.rx_bytes, Ordering::Relaxed);
        }
        if bad > 0 {
            self.stats.rx_dropped += bad;
            self.counters.rx_bad_desc.fetch_add(bad, Ordering::Relaxed);
        }
        n
    }
}

impl PacketIo for AfXdpQueue {
    type Buf = AfXdpBuf;

    fn rx_burst(&mut self, out: &mut Vec<AfXdpBuf>, max: usize) -> usize {
        self.rx_burst_with(max, |b| out.push(b))
    }

    fn alloc(&mut self) -> Option<AfXdpBuf> {
        let idx = self.umem.take().or_else(|| {
            self.reap_completions();
            self.umem.take()
        })?;
        Some(AfXdpBuf::new(Arc::clone(&self.umem), idx, 0, 0))
    }

    /// Puts frames on the TX ring until it is full, then kicks the kernel
    /// once if it asks for it. Returns how many frames it took; an empty or
    /// oversized frame is taken and dropped (`tx_dropped`).
    fn tx_burst(&mut self, pkts: &mut Vec<AfXdpBuf>) -> usize {
        self.reap_completions();
        if pkts.is_empty() {
            return 0;
        }
        let (mut sent, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        let taken;
        {
            let mut w = self.tx.transmit(pkts.len().min(u32::MAX as usize) as u32);
            taken = (w.capacity() as usize).min(pkts.len());
            for b in pkts.drain(..taken) {
                let len = b.data().len();
                if len == 0 || len > b.capacity() {
                    dropped += 1;
                    continue; // dropping `b` frees its frame
                }
                let (addr, len) = b.into_desc();
                // Cannot fail: `taken` slots were reserved.
                w.insert_once(XdpDesc {
                    addr,
                    len,
                    options: 0,
                });
                sent += 1;
                bytes += u64::from(len);
            }
            w.commit();
        }
        if sent > 0 {
            if !self.zero_copy || self.tx.needs_wakeup() {
                self.kick_tx();
            }
            self.stats.tx_packets += sent;
            self.stats.tx_bytes += bytes;
            self.counters
                .tx_packets
                .store(self.stats.tx_packets, Ordering::Relaxed);
            self.counters
                .tx_bytes
                .store(self.stats.tx_bytes, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.stats.tx_dropped += dropped;
            self.counters
                .tx_dropped
                .store(self.stats.tx_dropped, Ordering::Relaxed);
        }
        taken
    }

    /// poll(2) on the socket and the doorbell together.
    fn wait(&mut self, timeout: Duration, bell: &Doorbell) {
        if self.tx_unkicked {
            self.kick_tx();
        }
        self.reap_completions();
        self.refill();
        if self.rx.available() > 0 {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: self.rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        bell.poll(Some(&mut pfd), timeout);
    }

    fn stats(&self) -> IoStats {
        self.stats
    }

    fn take_offload(&mut self) -> Option<Box<dyn crate::offload::FlowOffload>> {
        self.offload
            .take()
            .map(|f| Box::new(f) as Box<dyn crate::offload::FlowOffload>)
    }
}

impl PortQueue for AfXdpQueue {
    fn monitor(&self) -> Arc<dyn PortMonitor> {
        Arc::clone(&self.port) as Arc<dyn PortMonitor>
    }
    fn mac(&self) -> [u8; 6] {
        self.port.mac
    }
    fn index(&self) -> usize {
        self.index
    }
    fn rx_burst_with(&mut self, max: usize, push: impl FnMut(AfXdpBuf)) -> usize {
        AfXdpQueue::rx_burst_with(self, max, push)
    }
    fn tx_scratch(&mut self) -> &mut Vec<AfXdpBuf> {
        &mut self.any_scratch
    }
}
