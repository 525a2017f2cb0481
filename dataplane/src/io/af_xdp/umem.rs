//! One worker queue's UMEM: the frame area shared with the kernel, and the
//! indices of the frames user space owns.
//!
//! A frame is always in exactly one place: the fill ring (lent to the kernel
//! for reception), the RX ring (received, not yet taken), an [`AfXdpBuf`]
//! (the worker's: held, rewritten, or built), the TX ring (lent to the
//! kernel for transmission, back through the completion ring), or the free
//! list. Received frames are handed to the worker in place (zero copy); a
//! forwarded frame goes back out from the very same frame.

use std::ptr::NonNull;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::io::PacketBuf;

/// The mmap'd frame area of one queue, and its free frames.
pub struct Umem {
    area: NonNull<u8>,
    len: usize,
    frame_size: u32,
    frames: u32,
    free: ArrayQueue<u32>,
}

// SAFETY: `area` is an anonymous mapping owned by this struct. Each frame
// index is owned by exactly one party at a time (see the module doc); user
// space touches a frame only through the `AfXdpBuf` that owns its index.
unsafe impl Send for Umem {}
// SAFETY: as above; shared access goes through `free`, a lock-free queue.
unsafe impl Sync for Umem {}

impl Umem {
    /// Maps `frames` frames of `frame_size` bytes (page-aligned, populated);
    /// every frame starts free.
    pub fn new(frames: u32, frame_size: u32) -> std::io::Result<Arc<Umem>> {
        let len = frames as usize * frame_size as usize;
        // SAFETY: an anonymous private mapping with no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let free = ArrayQueue::new(frames as usize);
        for i in 0..frames {
            // Cannot fail: the queue holds exactly `frames` entries.
            let _ = free.push(i);
        }
        Ok(Arc::new(Umem {
            // SAFETY: mmap succeeded, so `p` is not null.
            area: unsafe { NonNull::new_unchecked(p.cast()) },
            len,
            frame_size,
            frames,
            free,
        }))
    }

    /// The area, for `XDP_UMEM_REG`.
    pub fn area(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.area, self.len)
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Frames user space holds free now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Takes a free frame's index.
    pub fn take(&self) -> Option<u32> {
        self.free.pop()
    }

    /// Returns a frame the kernel gave back (completion ring) or never used.
    pub fn give(&self, idx: u32) {
        debug_assert!(idx < self.frames);
        // Cannot overflow: the queue holds every frame and each index is in
        // one place only.
        let _ = self.free.push(idx);
    }

    /// The frame index and offset of a ring address.
    pub fn split(&self, addr: u64) -> Option<(u32, u32)> {
        let fs = u64::from(self.frame_size);
        let idx = addr / fs;
        (idx < u64::from(self.frames)).then_some((idx as u32, (addr % fs) as u32))
    }

    /// The ring address of offset `off` in frame `idx`.
    pub fn addr(&self, idx: u32, off: u32) -> u64 {
        u64::from(idx) * u64::from(self.frame_size) + u64::from(off)
    }

    fn frame_ptr(&self, idx: u32) -> *mut u8 {
        // SAFETY: `idx < frames` (only such indices exist), so the offset
        // stays inside the mapping.
        unsafe {
            self.area
                .as_ptr()
                .add(idx as usize * self.frame_size as usize)
        }
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; every buffer holds an
        // `Arc` to the area and the queue's sockets are closed before the last
        // one goes (the kernel keeps its own pin on the pages meanwhile).
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len) };
    }
}

/// One UMEM frame the worker owns; dropping it returns the frame to the
/// queue's free list.
#[derive(Debug)]
pub struct AfXdpBuf {
    umem: Arc<Umem>,
    idx: u32,
    /// Where the frame's data starts inside it (the kernel's headroom for a
    /// received frame).
    off: u32,
    len: u32,
}

impl std::fmt::Debug for Umem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Umem")
            .field("frames", &self.frames)
            .field("frame_size", &self.frame_size)
            .finish()
    }
}

impl AfXdpBuf {
    /// Wraps frame `idx` holding `len` bytes at `off` (a received frame, or
    /// a free one with `len` 0).
    pub(crate) fn new(umem: Arc<Umem>, idx: u32, off: u32, len: u32) -> AfXdpBuf {
        AfXdpBuf {
            umem,
            idx,
            off,
            len,
        }
    }

    /// Gives up ownership without returning the frame to the free list (it
    /// is going to the TX ring): the ring address and length.
    pub(crate) fn into_desc(self) -> (u64, u32) {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: moves the `Arc` out of `me`, which is never used or
        // dropped again (so the frame is not given back to the free list).
        let umem = unsafe { std::ptr::read(&me.umem) };
        (umem.addr(me.idx, me.off), me.len)
    }
}

impl Drop for AfXdpBuf {
    fn drop(&mut self) {
        self.umem.give(self.idx);
    }
}

impl PacketBuf for AfXdpBuf {
    fn data(&self) -> &[u8] {
        // SAFETY: exclusive owner of frame `idx`; `off + len ≤ frame_size`.
        unsafe {
            std::slice::from_raw_parts(
                self.umem.frame_ptr(self.idx).add(self.off as usize),
                self.len as usize,
            )
        }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the access unique.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.umem.frame_ptr(self.idx).add(self.off as usize),
                self.len as usize,
            )
        }
    }

    fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        self.len = len as u32;
        true
    }

    fn capacity(&self) -> usize {
        (self.umem.frame_size - self.off) as usize
    }
}
