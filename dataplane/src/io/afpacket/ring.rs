//! The mmap'd rings of one AF_PACKET socket (TPACKET_V3, or TPACKET_V2 for
//! immediate delivery).
//!
//! Receive, V3: `block_count` blocks; the kernel fills a block with frames
//! and hands the whole block over (`TP_STATUS_USER`) when it is full or its
//! retire timer fires; we walk its frames by `tp_next_offset` and give it back
//! (`TP_STATUS_KERNEL`). Few status writes per frame, so the best throughput,
//! but at low rates a frame waits up to the retire timeout (≥ 1 ms).
//! Receive, V2: fixed frame slots, each handed over on its own the moment it
//! is written: no added latency, one status word per frame (what libpcap's
//! "immediate mode" picks for the same reason).
//!
//! Transmit (both): fixed slots of `frame_size` bytes; we write a frame, mark
//! it `TP_STATUS_SEND_REQUEST`, and one `send()` flushes every marked slot;
//! the kernel marks each `TP_STATUS_AVAILABLE` once the driver is done.
//! See Documentation/networking/packet_mmap.rst.
//!
//! Status words are shared with the kernel: they are read and written
//! volatile, with acquire/release fences around the frame data.

use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

use super::config::AfPacketRing;
use crate::io::port::IoError;

/// Where frame data starts in a transmit slot: after the version's header
/// (the kernel's `tp_hdrlen - sizeof(struct sockaddr_ll)`).
pub fn tx_data_offset(version: AfPacketRing) -> usize {
    let sll = std::mem::size_of::<libc::sockaddr_ll>();
    match version {
        AfPacketRing::V3 => libc::TPACKET3_HDRLEN - sll,
        AfPacketRing::V2 => libc::TPACKET2_HDRLEN - sll,
    }
}

/// Sizes of both rings, as given to `PACKET_RX_RING` / `PACKET_TX_RING`.
#[derive(Debug, Clone, Copy)]
pub struct RingLayout {
    pub version: AfPacketRing,
    pub rx_block_size: u32,
    pub rx_block_count: u32,
    pub frame_size: u32,
    pub tx_block_size: u32,
    pub tx_block_count: u32,
}

impl RingLayout {
    /// Bytes of the receive ring.
    pub fn rx_bytes(&self) -> usize {
        self.rx_block_size as usize * self.rx_block_count as usize
    }

    /// Bytes of the transmit ring.
    pub fn tx_bytes(&self) -> usize {
        self.tx_block_size as usize * self.tx_block_count as usize
    }

    /// Receive frame slots (V2; informational for V3).
    pub fn rx_frames(&self) -> u32 {
        (self.rx_block_size / self.frame_size) * self.rx_block_count
    }

    /// Transmit slots.
    pub fn tx_frames(&self) -> u32 {
        (self.tx_block_size / self.frame_size) * self.tx_block_count
    }
}

/// The shared memory of both rings (receive first, then transmit).
pub struct Rings {
    base: NonNull<u8>,
    len: usize,
    layout: RingLayout,
    // V3 receive cursor: block, frames left in it, offset of the next one.
    rx_block: u32,
    rx_open: bool,
    rx_left: u32,
    rx_off: u32,
    // V2 receive cursor: the slot to read next, and the one read last
    // (handed back on the next call, after the caller copied it).
    rx_slot: u32,
    rx_held: Option<u32>,
    // Transmit cursor.
    tx_next: u32,
}

// SAFETY: the mapping is owned by this value and only touched through
// `&mut self` (the kernel's side is synchronised by the status words).
unsafe impl Send for Rings {}

/// One received frame, borrowed from the ring until the next call.
pub struct RxFrame<'a> {
    pub data: &'a [u8],
    /// Original length on the wire (larger than `data` when truncated).
    pub wire_len: u32,
    pub status: u32,
    /// A frame this host sent (seen only on kernels without
    /// `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`).
    pub outgoing: bool,
}

/// `sll_pkttype` of the `sockaddr_ll` the kernel writes after a frame
/// header (`hdr_len` = the aligned header size); `None` when out of bounds.
///
/// # Safety
/// `hdr..hdr + limit` must lie inside the mapping.
unsafe fn pkttype(hdr: *const u8, hdr_len: usize, limit: usize) -> Option<u8> {
    // family u16, protocol u16, ifindex i32, hatype u16, then pkttype.
    const AT: usize = 10;
    (hdr_len + AT < limit).then(|| hdr.add(hdr_len + AT).read_volatile())
}

const V3_HDR: usize = (std::mem::size_of::<libc::tpacket3_hdr>() + 15) & !15;
const V2_HDR: usize = (std::mem::size_of::<libc::tpacket2_hdr>() + 15) & !15;

/// Reads a kernel-shared `u32` at `p`.
///
/// # Safety
/// `p` must point into the mapping.
unsafe fn load(p: *const u32) -> u32 {
    p.read_volatile()
}

/// Writes a kernel-shared `u32` at `p`.
///
/// # Safety
/// `p` must point into the mapping, at a word we own.
unsafe fn store(p: *mut u32, v: u32) {
    p.write_volatile(v)
}

impl Rings {
    /// Maps both rings of `fd` (already configured with `layout`).
    pub fn map(fd: RawFd, layout: RingLayout, iface: &str) -> Result<Rings, IoError> {
        let len = layout.rx_bytes() + layout.tx_bytes();
        let map = |flags| {
            // SAFETY: mapping the packet socket's rings; the result is checked.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE | flags,
                    fd,
                    0,
                )
            }
        };
        let mut p = map(libc::MAP_LOCKED);
        if p == libc::MAP_FAILED {
            // MAP_LOCKED fails under a low RLIMIT_MEMLOCK; the rings still
            // work unlocked.
            p = map(0);
        }
        if p == libc::MAP_FAILED {
            return Err(IoError::Os {
                call: "mmap(PACKET rings)",
                iface: iface.to_owned(),
                err: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(p.cast()).ok_or_else(|| IoError::Os {
            call: "mmap(PACKET rings)",
            iface: iface.to_owned(),
            err: std::io::Error::other("mapped at NULL"),
        })?;
        Ok(Rings {
            base,
            len,
            layout,
            rx_block: 0,
            rx_open: false,
            rx_left: 0,
            rx_off: 0,
            rx_slot: 0,
            rx_held: None,
            tx_next: 0,
        })
    }

    /// Start of fixed slot `i` in a ring of `block_size` blocks at `ring_off`.
    fn slot(&self, ring_off: usize, block_size: u32, i: u32) -> *mut u8 {
        let fs = self.layout.frame_size as usize;
        let per_block = (block_size / self.layout.frame_size) as usize;
        let (b, f) = (i as usize / per_block, i as usize % per_block);
        // SAFETY: callers pass i < the ring's slot count, so the slot lies
        // inside the mapping.
        unsafe {
            self.base
                .as_ptr()
                .add(ring_off + b * block_size as usize + f * fs)
        }
    }

    // ---- receive, V3 ----

    fn block(&self, i: u32) -> *mut libc::tpacket_block_desc {
        // SAFETY: i < rx_block_count, so inside the receive ring.
        unsafe {
            self.base
                .as_ptr()
                .add(i as usize * self.layout.rx_block_size as usize)
        }
        .cast()
    }

    fn block_status(&self, i: u32) -> u32 {
        let bd = self.block(i);
        // SAFETY: the block header is inside the mapping.
        unsafe { load(std::ptr::addr_of!((*bd).hdr.bh1.block_status)) }
    }

    fn release_block(&mut self) {
        if !self.rx_open {
            return;
        }
        let bd = self.block(self.rx_block);
        // Our reads of the block's frames happen before the kernel reuses it.
        fence(Ordering::Release);
        // SAFETY: inside the mapping; we own the block until this store.
        unsafe {
            store(
                std::ptr::addr_of_mut!((*bd).hdr.bh1.block_status),
                libc::TP_STATUS_KERNEL,
            )
        };
        self.rx_open = false;
        self.rx_left = 0;
        self.rx_block = (self.rx_block + 1) % self.layout.rx_block_count;
    }

    fn next_rx_v3(&mut self) -> Option<RxFrame<'_>> {
        loop {
            if self.rx_left == 0 {
                self.release_block();
                if self.block_status(self.rx_block) & libc::TP_STATUS_USER == 0 {
                    return None;
                }
                // The frames were written before the status we just read.
                fence(Ordering::Acquire);
                let bd = self.block(self.rx_block);
                // SAFETY: the block is ours (TP_STATUS_USER) and in the mapping.
                let (n, first) =
                    unsafe { ((*bd).hdr.bh1.num_pkts, (*bd).hdr.bh1.offset_to_first_pkt) };
                self.rx_open = true;
                self.rx_left = n;
                self.rx_off = first;
                continue;
            }
            let bs = self.layout.rx_block_size as usize;
            let off = self.rx_off as usize;
            let hdr_len = std::mem::size_of::<libc::tpacket3_hdr>();
            if off.checked_add(hdr_len).is_none_or(|end| end > bs) {
                // A corrupt offset: give the block back rather than read
                // outside it.
                self.rx_left = 0;
                continue;
            }
            let block = self.rx_block as usize * bs;
            // SAFETY: `off + hdr_len ≤ block size`, inside the block we own.
            let h = unsafe { &*(self.base.as_ptr().add(block + off) as *const libc::tpacket3_hdr) };
            let (mac, snap, next) = (h.tp_mac as usize, h.tp_snaplen as usize, h.tp_next_offset);
            let (wire_len, status) = (h.tp_len, h.tp_status);
            self.rx_left -= 1;
            if next == 0 && self.rx_left > 0 {
                self.rx_left = 0;
            }
            self.rx_off = self.rx_off.wrapping_add(next);
            if off + mac + snap > bs {
                continue;
            }
            // SAFETY: the frame lies inside the block we own (checked
            // above); the borrow ends before the block is released.
            let data = unsafe {
                std::slice::from_raw_parts(self.base.as_ptr().add(block + off + mac), snap)
            };
            // SAFETY: the header and its sockaddr_ll precede the frame data
            // (`mac` bytes from `off`), inside the block.
            let kind = unsafe { pkttype(self.base.as_ptr().add(block + off), V3_HDR, mac) };
            return Some(RxFrame {
                data,
                wire_len,
                status,
                outgoing: kind == Some(libc::PACKET_OUTGOING),
            });
        }
    }

    // ---- receive, V2 ----

    fn rx_slot_hdr(&self, i: u32) -> *mut libc::tpacket2_hdr {
        self.slot(0, self.layout.rx_block_size, i).cast()
    }

    fn release_slot(&mut self) {
        if let Some(i) = self.rx_held.take() {
            let h = self.rx_slot_hdr(i);
            fence(Ordering::Release);
            // SAFETY: the slot is ours until this store hands it back.
            unsafe {
                store(
                    std::ptr::addr_of_mut!((*h).tp_status),
                    libc::TP_STATUS_KERNEL,
                )
            };
        }
    }

    fn next_rx_v2(&mut self) -> Option<RxFrame<'_>> {
        self.release_slot();
        let i = self.rx_slot;
        let h = self.rx_slot_hdr(i);
        // SAFETY: slot header inside the mapping.
        let status = unsafe { load(std::ptr::addr_of!((*h).tp_status)) };
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        fence(Ordering::Acquire);
        self.rx_held = Some(i);
        self.rx_slot = (i + 1) % self.layout.rx_frames();
        // SAFETY: the slot is ours (TP_STATUS_USER).
        let (mac, snap, wire_len) =
            unsafe { ((*h).tp_mac as usize, (*h).tp_snaplen as usize, (*h).tp_len) };
        if mac + snap > self.layout.frame_size as usize {
            return Some(RxFrame {
                data: &[],
                wire_len: u32::MAX,
                status,
                outgoing: false,
            });
        }
        // SAFETY: inside the slot we own; handed back on the next call.
        let data = unsafe { std::slice::from_raw_parts(h.cast::<u8>().add(mac), snap) };
        // SAFETY: the sockaddr_ll lies between the header and the data.
        let kind = unsafe { pkttype(h.cast::<u8>(), V2_HDR, mac) };
        Some(RxFrame {
            data,
            wire_len,
            status,
            outgoing: kind == Some(libc::PACKET_OUTGOING),
        })
    }

    // ---- receive, both ----

    /// True when a received frame is ready.
    pub fn rx_ready(&self) -> bool {
        match self.layout.version {
            AfPacketRing::V3 => {
                self.rx_left > 0 || self.block_status(self.rx_block) & libc::TP_STATUS_USER != 0
            }
            AfPacketRing::V2 => {
                let h = self.rx_slot_hdr(self.rx_slot);
                // SAFETY: slot header inside the mapping.
                unsafe { load(std::ptr::addr_of!((*h).tp_status)) & libc::TP_STATUS_USER != 0 }
            }
        }
    }

    /// The next received frame, or `None` when the ring is empty. The frame
    /// borrows the ring: copy it before the next call.
    pub fn next_rx(&mut self) -> Option<RxFrame<'_>> {
        match self.layout.version {
            AfPacketRing::V3 => self.next_rx_v3(),
            AfPacketRing::V2 => self.next_rx_v2(),
        }
    }

    /// Hands the last frame's slot or block back to the kernel now (after a
    /// burst) instead of at the next call.
    pub fn rx_done(&mut self) {
        match self.layout.version {
            AfPacketRing::V3 if self.rx_left == 0 => self.release_block(),
            AfPacketRing::V3 => {}
            AfPacketRing::V2 => self.release_slot(),
        }
    }

    /// Gives every received frame back to the kernel unread; returns how
    /// many. Used once after the fanout group is complete, so that no worker
    /// keeps frames the group's final hash assigns to another.
    pub fn discard_rx(&mut self) -> u64 {
        let mut n = 0;
        while self.next_rx().is_some() {
            n += 1;
        }
        self.rx_done();
        n
    }

    // ---- transmit ----

    /// Largest frame a transmit slot holds.
    pub fn tx_capacity(&self) -> usize {
        self.layout.frame_size as usize - tx_data_offset(self.layout.version)
    }

    /// Copies `frame` into the next free transmit slot and marks it for
    /// sending. Returns false when the ring is full (or the frame too big:
    /// the caller checks `tx_capacity` first).
    pub fn push_tx(&mut self, frame: &[u8]) -> bool {
        if frame.len() > self.tx_capacity() {
            return false;
        }
        let slot = self.slot(
            self.layout.rx_bytes(),
            self.layout.tx_block_size,
            self.tx_next,
        );
        // The status word and length fields of either header version.
        let (status_p, len_p, snap_p, next_p): (*mut u32, *mut u32, *mut u32, Option<*mut u32>) =
            match self.layout.version {
                AfPacketRing::V3 => {
                    let h = slot.cast::<libc::tpacket3_hdr>();
                    // SAFETY: field addresses inside the slot.
                    unsafe {
                        (
                            std::ptr::addr_of_mut!((*h).tp_status),
                            std::ptr::addr_of_mut!((*h).tp_len),
                            std::ptr::addr_of_mut!((*h).tp_snaplen),
                            Some(std::ptr::addr_of_mut!((*h).tp_next_offset)),
                        )
                    }
                }
                AfPacketRing::V2 => {
                    let h = slot.cast::<libc::tpacket2_hdr>();
                    // SAFETY: field addresses inside the slot.
                    unsafe {
                        (
                            std::ptr::addr_of_mut!((*h).tp_status),
                            std::ptr::addr_of_mut!((*h).tp_len),
                            std::ptr::addr_of_mut!((*h).tp_snaplen),
                            None,
                        )
                    }
                }
            };
        // SAFETY: the status word is inside the slot.
        let status = unsafe { load(status_p) };
        if status & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
            return false;
        }
        fence(Ordering::Acquire);
        // SAFETY: the slot is ours (AVAILABLE or WRONG_FORMAT); the data fits
        // after the header.
        unsafe {
            let off = tx_data_offset(self.layout.version);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(off), frame.len());
            store(len_p, frame.len() as u32);
            store(snap_p, frame.len() as u32);
            if let Some(p) = next_p {
                store(p, 0);
            }
        }
        fence(Ordering::Release);
        // SAFETY: as above; this store hands the slot to the kernel.
        unsafe { store(status_p, libc::TP_STATUS_SEND_REQUEST) };
        self.tx_next = (self.tx_next + 1) % self.layout.tx_frames();
        true
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
