//! The mmap'd TPACKET_V3 rings of one AF_PACKET socket.
//!
//! Receive: `block_count` blocks; the kernel fills a block with frames and
//! hands the whole block over (`TP_STATUS_USER`) when it is full or its
//! retire timer fires; we walk its frames by `tp_next_offset` and give it back
//! (`TP_STATUS_KERNEL`). Transmit: fixed slots of `frame_size` bytes; we write
//! a frame, mark it `TP_STATUS_SEND_REQUEST`, and one `send()` flushes every
//! marked slot; the kernel marks each `TP_STATUS_AVAILABLE` once the driver
//! is done with it. See Documentation/networking/packet_mmap.rst.
//!
//! Status words are shared with the kernel: they are read and written
//! volatile, with acquire/release fences around the frame data.

use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

use crate::io::any::IoError;

/// Frame data of a transmit slot starts after the V3 header (the kernel's
/// `tp_hdrlen - sizeof(struct sockaddr_ll)`).
pub const TX_DATA_OFFSET: usize = libc::TPACKET3_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();

/// Sizes of both rings, as given to `PACKET_RX_RING` / `PACKET_TX_RING`.
#[derive(Debug, Clone, Copy)]
pub struct RingLayout {
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
    // Receive cursor.
    rx_block: u32,
    rx_open: bool,
    rx_left: u32,
    rx_off: u32,
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
}

impl Rings {
    /// Maps both rings of `fd` (already configured with `layout`).
    pub fn map(fd: RawFd, layout: RingLayout, iface: &str) -> Result<Rings, IoError> {
        let len = layout.rx_bytes() + layout.tx_bytes();
        // SAFETY: mapping the packet socket's rings; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        let p = if p == libc::MAP_FAILED {
            // MAP_LOCKED fails under a low RLIMIT_MEMLOCK; the rings still
            // work unlocked.
            // SAFETY: as above, without MAP_LOCKED.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    0,
                )
            }
        } else {
            p
        };
        if p == libc::MAP_FAILED {
            return Err(IoError::Os {
                call: "mmap(PACKET rings)",
                iface: iface.to_owned(),
                err: std::io::Error::last_os_error(),
            });
        }
        Ok(Rings {
            base: NonNull::new(p.cast()).expect("mmap succeeded, so not null"),
            len,
            layout,
            rx_block: 0,
            rx_open: false,
            rx_left: 0,
            rx_off: 0,
            tx_next: 0,
        })
    }

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
        // SAFETY: the block header is inside the mapping; the kernel writes
        // the status concurrently, hence volatile.
        unsafe { std::ptr::addr_of!((*bd).hdr.bh1.block_status).read_volatile() }
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
            std::ptr::addr_of_mut!((*bd).hdr.bh1.block_status)
                .write_volatile(libc::TP_STATUS_KERNEL)
        };
        self.rx_open = false;
        self.rx_left = 0;
        self.rx_block = (self.rx_block + 1) % self.layout.rx_block_count;
    }

    /// True when a received frame is ready (an open block has frames left or
    /// the next block is ours).
    pub fn rx_ready(&self) -> bool {
        self.rx_left > 0 || self.block_status(self.rx_block) & libc::TP_STATUS_USER != 0
    }

    /// The next received frame, or `None` when the ring is empty. The frame
    /// borrows the ring: copy it before the next call.
    pub fn next_rx(&mut self) -> Option<RxFrame<'_>> {
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
            // SAFETY: `off + hdr_len ≤ block size`, inside the block we own.
            let h = unsafe {
                &*(self.base.as_ptr().add(self.rx_block as usize * bs + off)
                    as *const libc::tpacket3_hdr)
            };
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
            // SAFETY: the frame lies inside the block we own (checked above);
            // the borrow ends before the block is released.
            let data = unsafe {
                std::slice::from_raw_parts(
                    self.base
                        .as_ptr()
                        .add(self.rx_block as usize * bs + off + mac),
                    snap,
                )
            };
            return Some(RxFrame {
                data,
                wire_len,
                status,
            });
        }
    }

    /// Gives every received block back to the kernel unread; returns frames
    /// dropped. Used once after the fanout group is complete, so that no
    /// worker keeps frames the group's final hash assigns to another.
    pub fn discard_rx(&mut self) -> u64 {
        let mut n = 0;
        while self.next_rx().is_some() {
            n += 1;
        }
        n
    }

    fn tx_slot(&self, i: u32) -> *mut u8 {
        let fs = self.layout.frame_size as usize;
        let per_block = (self.layout.tx_block_size / self.layout.frame_size) as usize;
        let (b, f) = (i as usize / per_block, i as usize % per_block);
        // SAFETY: i < tx_frames, so the slot is inside the transmit ring.
        unsafe {
            self.base
                .as_ptr()
                .add(self.layout.rx_bytes() + b * self.layout.tx_block_size as usize + f * fs)
        }
    }

    /// Largest frame a transmit slot holds.
    pub fn tx_capacity(&self) -> usize {
        self.layout.frame_size as usize - TX_DATA_OFFSET
    }

    /// Copies `frame` into the next free transmit slot and marks it for
    /// sending. Returns false when the ring is full (or the frame too big:
    /// the caller checks `tx_capacity` first).
    pub fn push_tx(&mut self, frame: &[u8]) -> bool {
        if frame.len() > self.tx_capacity() {
            return false;
        }
        let slot = self.tx_slot(self.tx_next);
        let h = slot.cast::<libc::tpacket3_hdr>();
        // SAFETY: the slot is inside the mapping; status is kernel-shared.
        let status = unsafe { std::ptr::addr_of!((*h).tp_status).read_volatile() };
        if status & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
            return false;
        }
        fence(Ordering::Acquire);
        // SAFETY: the slot is ours (AVAILABLE or WRONG_FORMAT); the data fits
        // after the header.
        unsafe {
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(TX_DATA_OFFSET), frame.len());
            std::ptr::addr_of_mut!((*h).tp_len).write_volatile(frame.len() as u32);
            std::ptr::addr_of_mut!((*h).tp_snaplen).write_volatile(frame.len() as u32);
            std::ptr::addr_of_mut!((*h).tp_next_offset).write_volatile(0);
        }
        fence(Ordering::Release);
        // SAFETY: as above; this store hands the slot to the kernel.
        unsafe {
            std::ptr::addr_of_mut!((*h).tp_status).write_volatile(libc::TP_STATUS_SEND_REQUEST)
        };
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
