//! AF_PACKET backend: the data port through Linux packet sockets, for hosts
//! without DPDK (a laptop, a VM, the namespace test bed).
//!
//! One socket per worker, each with a TPACKET_V3 receive ring (or V2, for
//! per-frame delivery without the block timeout) and a transmit ring mapped
//! into the process. The sockets join one `PACKET_FANOUT_HASH`
//! group, so the kernel spreads flows over the workers by its symmetric flow
//! hash (`__skb_get_hash_symmetric`): every packet of a TCP connection lands
//! on the same worker. The kernel's hash is seeded at boot and cannot be
//! recomputed in user space, so the owning worker of a connection is "the one
//! that received its SYN"; replies that arrive elsewhere (THOP) find their
//! owner by the worker index in the connection token.
//!
//! Transmit writes frames into ring slots and flushes a whole burst with one
//! `send()`; with `PACKET_QDISC_BYPASS` the frames go straight to the driver.
//! `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` keeps our own transmissions out of
//! the receive rings (on kernels without it, the receive path drops frames
//! whose packet type is `PACKET_OUTGOING`).

pub mod config;
mod pool;
mod ring;
pub(crate) mod socket;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use pool::{AfPacketBuf, FramePool};
use ring::{tx_data_offset, RingLayout, Rings};

use crate::doorbell::Doorbell;
use crate::io::netdev;
use crate::io::port::{IoError, LinkStatus, PortMonitor, PortStats};
use crate::io::{IoStats, PacketBuf, PacketIo, PortQueue};
pub use config::{AfPacketConfig, AfPacketRing};

/// Transmit ring block size: 64 KiB holds 32 two-KiB slots.
const TX_BLOCK_SIZE: u32 = 1 << 16;

/// Counters of one queue, readable from the monitor's thread.
#[derive(Debug, Default)]
struct QueueCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    /// No pool buffer for a received frame.
    rx_nobuf: AtomicU64,
    /// Frames longer than a frame slot (truncated by the kernel).
    rx_truncated: AtomicU64,
    /// VLAN-tagged frames (the kernel stripped the tag; we drop them).
    rx_vlan: AtomicU64,
    /// Frames the ring dropped because it was full (kernel counter).
    rx_ring_drops: AtomicU64,
    /// Times the kernel froze the ring for want of a free block.
    rx_ring_freezes: AtomicU64,
    tx_dropped: AtomicU64,
    /// Failed transmit flushes (`send()` errors other than "try again").
    tx_errors: AtomicU64,
    /// Socket errors reported by poll() and cleared (link flaps).
    socket_errors: AtomicU64,
}

/// The port shared by every queue: monitor and kernel statistics.
struct AfPacketPort {
    iface: String,
    mac: [u8; 6],
    fanout_group: u16,
    fds: Vec<Arc<OwnedFd>>,
    queues: Vec<Arc<QueueCounters>>,
    /// Each queue's buffer pool (free buffers are reported as an xstat).
    pools: Vec<Arc<FramePool>>,
    /// Serialises PACKET_STATISTICS reads (each read resets the kernel's
    /// counters, so they are accumulated into `QueueCounters`).
    stats_lock: Mutex<()>,
    /// For the start-up log.
    notes: Vec<String>,
}

impl AfPacketPort {
    fn refresh_kernel_stats(&self, queue: usize) {
        let Ok(_guard) = self.stats_lock.lock() else {
            return;
        };
        if let (Some(fd), Some(c)) = (self.fds.get(queue), self.queues.get(queue)) {
            if let Some((_, drops, freezes)) = socket::take_stats(fd.as_raw_fd()) {
                c.rx_ring_drops.fetch_add(drops, Ordering::Relaxed);
                c.rx_ring_freezes.fetch_add(freezes, Ordering::Relaxed);
            }
        }
    }
}

impl PortMonitor for AfPacketPort {
    fn name(&self) -> String {
        format!("af_packet:{}", self.iface)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link(&self) -> LinkStatus {
        let Some(fd) = self.fds.first() else {
            return LinkStatus::default();
        };
        let flags = netdev::if_flags(fd.as_raw_fd(), &self.iface).unwrap_or(0);
        let up = flags & libc::IFF_UP as u32 != 0 && flags & libc::IFF_RUNNING as u32 != 0;
        LinkStatus {
            up,
            speed_mbps: netdev::link_speed(fd.as_raw_fd(), &self.iface),
            full_duplex: None,
        }
    }

    fn stats(&self) -> PortStats {
        let mut s = PortStats::default();
        for (i, c) in self.queues.iter().enumerate() {
            self.refresh_kernel_stats(i);
            s.rx_packets += c.rx_packets.load(Ordering::Relaxed);
            s.rx_bytes += c.rx_bytes.load(Ordering::Relaxed);
            s.tx_packets += c.tx_packets.load(Ordering::Relaxed);
            s.tx_bytes += c.tx_bytes.load(Ordering::Relaxed);
            s.rx_missed += c.rx_ring_drops.load(Ordering::Relaxed);
            s.rx_errors +=
                c.rx_truncated.load(Ordering::Relaxed) + c.rx_vlan.load(Ordering::Relaxed);
            s.tx_errors +=
                c.tx_errors.load(Ordering::Relaxed) + c.tx_dropped.load(Ordering::Relaxed);
            s.rx_nombuf += c.rx_nobuf.load(Ordering::Relaxed);
        }
        s
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut out = vec![("fanout_group".to_owned(), self.fanout_group as u64)];
        for (i, c) in self.queues.iter().enumerate() {
            self.refresh_kernel_stats(i);
            let fields: [(&str, &AtomicU64); 12] = [
                ("rx_packets", &c.rx_packets),
                ("rx_bytes", &c.rx_bytes),
                ("tx_packets", &c.tx_packets),
                ("tx_bytes", &c.tx_bytes),
                ("rx_nobuf", &c.rx_nobuf),
                ("rx_truncated", &c.rx_truncated),
                ("rx_vlan_dropped", &c.rx_vlan),
                ("rx_ring_drops", &c.rx_ring_drops),
                ("rx_ring_freezes", &c.rx_ring_freezes),
                ("tx_dropped", &c.tx_dropped),
                ("tx_flush_errors", &c.tx_errors),
                ("socket_errors", &c.socket_errors),
            ];
            for (name, v) in fields {
                out.push((format!("q{i}_{name}"), v.load(Ordering::Relaxed)));
            }
            if let Some(p) = self.pools.get(i) {
                out.push((format!("q{i}_pool_free"), p.available() as u64));
            }
        }
        out
    }

    fn steering(&self) -> &'static str {
        if self.fds.len() > 1 {
            "fanout-hash"
        } else {
            "single"
        }
    }
}

/// One worker's AF_PACKET socket with its rings and buffer pool.
pub struct AfPacketQueue {
    index: usize,
    fd: Arc<OwnedFd>,
    rings: Rings,
    pool: Arc<FramePool>,
    port: Arc<AfPacketPort>,
    counters: Arc<QueueCounters>,
    stats: IoStats,
    /// Frames written to the transmit ring but not yet flushed by `send()`.
    tx_unflushed: bool,
    /// Flushes have been failing (link down, interface gone) since the last
    /// success.
    tx_failing: bool,
    /// Scratch for [`crate::io::AnyQueue`]'s transmit path.
    pub(crate) any_scratch: Vec<AfPacketBuf>,
}

fn validate(cfg: &AfPacketConfig) -> Result<(), IoError> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
    let bad = |m: String| Err(IoError::Config(format!("af_packet on {}: {m}", cfg.iface)));
    let min_frame = (tx_data_offset(cfg.ring) + 64) as u32;
    if cfg.frame_size < min_frame
        || !cfg
            .frame_size
            .is_multiple_of(libc::TPACKET_ALIGNMENT as u32)
    {
        return bad(format!(
            "frame_size {} must be a multiple of 16 and at least {min_frame}",
            cfg.frame_size
        ));
    }
    if cfg.frame_size > TX_BLOCK_SIZE {
        return bad(format!(
            "frame_size {} above {TX_BLOCK_SIZE}",
            cfg.frame_size
        ));
    }
    if !cfg.block_size.is_multiple_of(page) || cfg.block_size < cfg.frame_size {
        return bad(format!(
            "block_size {} must be a multiple of the page size ({page}) and hold a frame",
            cfg.block_size
        ));
    }
    if cfg.block_count == 0 || cfg.tx_frames == 0 || cfg.pool_size == 0 {
        return bad("block_count, tx_frames and pool_size must be at least 1".into());
    }
    if cfg.block_timeout_ms == 0 {
        return bad("block_timeout_ms must be at least 1".into());
    }
    Ok(())
}

/// Creates one configured, bound socket with mapped rings.
fn open_one(
    cfg: &AfPacketConfig,
    ifindex: i32,
    layout: RingLayout,
) -> Result<(OwnedFd, Rings), IoError> {
    let iface = cfg.iface.as_str();
    let fd = socket::open_socket(iface)?;
    let raw = fd.as_raw_fd();
    let version = match layout.version {
        AfPacketRing::V3 => libc::tpacket_versions::TPACKET_V3,
        AfPacketRing::V2 => libc::tpacket_versions::TPACKET_V2,
    } as libc::c_int;
    socket::set_opt(
        raw,
        libc::PACKET_VERSION,
        &version,
        "setsockopt(PACKET_VERSION)",
        iface,
    )?;
    // Malformed transmit frames are skipped rather than stopping the ring.
    socket::set_opt(
        raw,
        libc::PACKET_LOSS,
        &1i32,
        "setsockopt(PACKET_LOSS)",
        iface,
    )?;
    if cfg.qdisc_bypass {
        socket::set_opt(
            raw,
            libc::PACKET_QDISC_BYPASS,
            &1i32,
            "setsockopt(PACKET_QDISC_BYPASS)",
            iface,
        )?;
    }
    let rx = libc::tpacket_req3 {
        tp_block_size: layout.rx_block_size,
        tp_block_nr: layout.rx_block_count,
        tp_frame_size: layout.frame_size,
        tp_frame_nr: layout.rx_frames(),
        // V2 reads only the first four fields.
        tp_retire_blk_tov: cfg.block_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    socket::set_opt(
        raw,
        libc::PACKET_RX_RING,
        &rx,
        "setsockopt(PACKET_RX_RING)",
        iface,
    )?;
    let tx = libc::tpacket_req3 {
        tp_block_size: layout.tx_block_size,
        tp_block_nr: layout.tx_block_count,
        tp_frame_size: layout.frame_size,
        tp_frame_nr: layout.tx_frames(),
        tp_retire_blk_tov: 0,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    socket::set_opt(
        raw,
        libc::PACKET_TX_RING,
        &tx,
        "setsockopt(PACKET_TX_RING)",
        iface,
    )?;
    let rings = Rings::map(raw, layout, iface)?;
    socket::bind(&fd, ifindex, iface)?;
    if cfg.promiscuous {
        socket::add_promiscuous(&fd, ifindex, iface)?;
    }
    socket::add_allmulti(&fd, ifindex, iface)?;
    Ok((fd, rings))
}

/// Joins the fanout group; with `id == None` asks the kernel for a fresh id.
/// Returns the group id. `ignore_outgoing` asks the group to skip frames this
/// host sends (newer kernels); every member must pass the same flags.
fn join_fanout(
    fd: &OwnedFd,
    id: Option<u16>,
    ignore_outgoing: bool,
    iface: &str,
) -> Result<u16, IoError> {
    let flags = libc::PACKET_FANOUT_HASH
        | if ignore_outgoing {
            libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING
        } else {
            0
        };
    let arg: u32 = match id {
        Some(id) => id as u32 | flags << 16,
        None => (flags | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
    };
    socket::set_opt(
        fd.as_raw_fd(),
        libc::PACKET_FANOUT,
        &arg,
        "setsockopt(PACKET_FANOUT)",
        iface,
    )?;
    let got = socket::get_opt_int(
        fd.as_raw_fd(),
        libc::PACKET_FANOUT,
        "getsockopt(PACKET_FANOUT)",
        iface,
    )?;
    Ok(got as u16)
}

/// Opens `workers` queues on `cfg.iface` (in the calling thread's network
/// namespace).
pub fn open(cfg: &AfPacketConfig, workers: usize) -> Result<Vec<AfPacketQueue>, IoError> {
    validate(cfg)?;
    let ifindex = netdev::ifindex(&cfg.iface)?;
    let per_block = TX_BLOCK_SIZE / cfg.frame_size;
    let layout = RingLayout {
        version: cfg.ring,
        rx_block_size: cfg.block_size,
        rx_block_count: cfg.block_count,
        frame_size: cfg.frame_size,
        // Whole 64 KiB blocks of slots (a block size must be a multiple of
        // the page size).
        tx_block_size: TX_BLOCK_SIZE,
        tx_block_count: cfg.tx_frames.div_ceil(per_block).max(1),
    };
    let mut socks = Vec::with_capacity(workers);
    for _ in 0..workers {
        socks.push(open_one(cfg, ifindex, layout)?);
    }
    let mac = netdev::hw_addr(&socks[0].0, &cfg.iface)?;
    // A frame sits in its slot after the kernel's header and address (the
    // MAC header starts at TPACKET_ALIGN(hdrlen + 16) - 14); a frame of the
    // full MTU must fit, or every large packet would be truncated.
    let mtu = netdev::mtu(socks[0].0.as_raw_fd(), &cfg.iface)?;
    let hdr = match cfg.ring {
        AfPacketRing::V3 => libc::TPACKET3_HDRLEN,
        AfPacketRing::V2 => libc::TPACKET2_HDRLEN,
    } as u32;
    let mac_off = ((hdr + 16 + 15) & !15) - 14;
    let largest = mtu + 14 + 4; // one VLAN tag
    if mac_off + largest > cfg.frame_size {
        return Err(IoError::Config(format!(
            "af_packet on {}: frame_size {} holds frames up to {} bytes, but the MTU {mtu} allows {largest}: \
             raise frame_size to at least {}",
            cfg.iface,
            cfg.frame_size,
            cfg.frame_size.saturating_sub(mac_off),
            (mac_off + largest).next_multiple_of(16)
        )));
    }
    // PACKET_FANOUT_FLAG_IGNORE_OUTGOING is recent (older kernels say
    // EINVAL); without it, the receive path drops our own frames itself.
    let mut group = cfg.fanout_group;
    let ignore_outgoing = match join_fanout(&socks[0].0, group, true, &cfg.iface) {
        Ok(id) => {
            group = Some(id);
            true
        }
        Err(_) => {
            group = Some(join_fanout(&socks[0].0, group, false, &cfg.iface)?);
            false
        }
    };
    for (fd, _) in socks.iter().skip(1) {
        group = Some(join_fanout(fd, group, ignore_outgoing, &cfg.iface)?);
    }
    let fanout_group = group.unwrap_or(0);
    // Frames that arrived while the group was filling were hashed over fewer
    // sockets; drop them so that no worker sees another's flow.
    for (_, rings) in &mut socks {
        rings.discard_rx();
    }
    let fds: Vec<Arc<OwnedFd>> = Vec::new();
    let mut port = AfPacketPort {
        iface: cfg.iface.clone(),
        mac,
        fanout_group,
        fds,
        queues: Vec::with_capacity(workers),
        pools: Vec::with_capacity(workers),
        stats_lock: Mutex::new(()),
        notes: crate::io::netdev::kernel_ipv6_note(&cfg.iface)
            .into_iter()
            .collect(),
    };
    let mut parts = Vec::with_capacity(workers);
    for (fd, rings) in socks {
        let fd = Arc::new(fd);
        let counters = Arc::new(QueueCounters::default());
        port.fds.push(Arc::clone(&fd));
        port.queues.push(Arc::clone(&counters));
        let pool = FramePool::new(cfg.pool_size, cfg.frame_size).ok_or_else(|| {
            IoError::Config(format!(
                "cannot allocate a pool of {} frames",
                cfg.pool_size
            ))
        })?;
        port.pools.push(Arc::clone(&pool));
        parts.push((fd, rings, counters, pool));
    }
    let port = Arc::new(port);
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(index, (fd, rings, counters, pool))| AfPacketQueue {
            index,
            fd,
            rings,
            pool,
            port: Arc::clone(&port),
            counters,
            stats: IoStats::default(),
            tx_unflushed: false,
            tx_failing: false,
            any_scratch: Vec::new(),
        })
        .collect())
}

impl AfPacketQueue {
    /// The port monitor shared by all queues.
    pub fn monitor(&self) -> Arc<dyn PortMonitor> {
        Arc::clone(&self.port) as Arc<dyn PortMonitor>
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.port.mac
    }

    /// This queue's worker index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The fanout group the sockets joined.
    pub fn fanout_group(&self) -> u16 {
        self.port.fanout_group
    }

    /// Hands up to `max` received frames to `push`; returns how many.
    pub fn rx_burst_with(&mut self, max: usize, mut push: impl FnMut(AfPacketBuf)) -> usize {
        if self.tx_unflushed {
            // A flush the driver refused earlier: retry it on every poll, so
            // frames never wait for the worker's next transmission.
            self.flush_tx();
        }
        let mut n = 0;
        let (mut bytes, mut nobuf, mut trunc, mut vlan) = (0u64, 0u64, 0u64, 0u64);
        while n < max {
            let Some(frame) = self.rings.next_rx() else {
                break;
            };
            if frame.outgoing {
                continue; // our own transmission, looped back to taps
            }
            if frame.status & libc::TP_STATUS_VLAN_VALID != 0 {
                vlan += 1;
                continue;
            }
            if (frame.data.len() as u32) < frame.wire_len
                || frame.data.len() > self.pool.frame_size()
            {
                trunc += 1;
                continue;
            }
            let Some(mut buf) = self.pool.alloc() else {
                nobuf += 1;
                continue;
            };
            buf.fill(frame.data);
            bytes += frame.data.len() as u64;
            push(buf);
            n += 1;
        }
        self.rings.rx_done();
        self.note_rx(n as u64, bytes, nobuf, trunc, vlan);
        n
    }

    fn note_rx(&mut self, n: u64, bytes: u64, nobuf: u64, trunc: u64, vlan: u64) {
        if n > 0 {
            self.stats.rx_packets += n;
            self.stats.rx_bytes += bytes;
            self.counters
                .rx_packets
                .store(self.stats.rx_packets, Ordering::Relaxed);
            self.counters
                .rx_bytes
                .store(self.stats.rx_bytes, Ordering::Relaxed);
        }
        if nobuf + trunc + vlan > 0 {
            self.stats.rx_dropped += nobuf + trunc + vlan;
            self.counters.rx_nobuf.fetch_add(nobuf, Ordering::Relaxed);
            self.counters
                .rx_truncated
                .fetch_add(trunc, Ordering::Relaxed);
            self.counters.rx_vlan.fetch_add(vlan, Ordering::Relaxed);
        }
    }

    /// Asks the kernel to send every frame marked in the transmit ring.
    fn flush_tx(&mut self) {
        // SAFETY: a zero-length send on our own socket; the kernel reads
        // only the ring.
        let rc =
            unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if rc >= 0 {
            self.tx_unflushed = false;
            self.tx_failing = false;
            return;
        }
        // The frames stay marked in the ring whatever went wrong (driver
        // busy, link down, interface gone): keep flushing on later polls, or
        // the ring would stay full for good. Count a failing streak once.
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {}
            _ if !self.tx_failing => {
                self.tx_failing = true;
                self.counters.tx_errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl PacketIo for AfPacketQueue {
    type Buf = AfPacketBuf;

    fn rx_burst(&mut self, out: &mut Vec<AfPacketBuf>, max: usize) -> usize {
        self.rx_burst_with(max, |b| out.push(b))
    }

    fn alloc(&mut self) -> Option<AfPacketBuf> {
        self.pool.alloc()
    }

    /// Copies frames into the transmit ring until it is full, then flushes
    /// them with one `send()`. Returns how many frames it took; an empty or
    /// oversized frame is taken and dropped (`tx_dropped`), not left to block
    /// the queue.
    fn tx_burst(&mut self, pkts: &mut Vec<AfPacketBuf>) -> usize {
        let cap = self.rings.tx_capacity();
        if self.tx_unflushed {
            // Slots still marked from an earlier refused flush: hand them to
            // the kernel first, so they leave before these and free room.
            self.flush_tx();
        }
        let (mut taken, mut sent, mut bytes, mut dropped) = (0usize, 0u64, 0u64, 0u64);
        for b in pkts.iter() {
            let data = b.data();
            if data.len() > cap || data.is_empty() {
                dropped += 1;
            } else if self.rings.push_tx(data) {
                sent += 1;
                bytes += data.len() as u64;
            } else {
                break; // ring full: the rest stay the caller's
            }
            taken += 1;
        }
        pkts.drain(..taken);
        if sent > 0 {
            self.tx_unflushed = true;
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
        if self.tx_unflushed {
            self.flush_tx();
        }
        taken
    }

    /// ppoll(2) on the packet socket and the doorbell together: a frame, a
    /// decision or a relayed reply ends the wait, whichever comes first.
    fn wait(&mut self, timeout: Duration, bell: &Doorbell) {
        if self.tx_unflushed {
            self.flush_tx();
        }
        if self.rings.rx_ready() {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let n = bell.poll(Some(&mut pfd), timeout);
        if n > 0 && pfd.revents & libc::POLLERR != 0 {
            // A pending socket error (ENETDOWN after a link flap) keeps
            // poll() returning at once; reading SO_ERROR clears it, or an
            // idle worker would spin from then on.
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: reads an int option into a live buffer of that size.
            unsafe {
                libc::getsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            self.counters.socket_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> IoStats {
        self.port.refresh_kernel_stats(self.index);
        let mut s = self.stats;
        s.rx_dropped += self.counters.rx_ring_drops.load(Ordering::Relaxed);
        s
    }
}

impl PortQueue for AfPacketQueue {
    fn monitor(&self) -> Arc<dyn PortMonitor> {
        AfPacketQueue::monitor(self)
    }
    fn mac(&self) -> [u8; 6] {
        AfPacketQueue::mac(self)
    }
    fn index(&self) -> usize {
        AfPacketQueue::index(self)
    }
    fn rx_burst_with(&mut self, max: usize, push: impl FnMut(AfPacketBuf)) -> usize {
        AfPacketQueue::rx_burst_with(self, max, push)
    }
    fn tx_scratch(&mut self) -> &mut Vec<AfPacketBuf> {
        &mut self.any_scratch
    }
}
