//! A fixed pool of frame buffers for one AF_PACKET worker queue.
//!
//! Frames received from the TPACKET_V3 ring are copied into a pool buffer so
//! the ring block goes back to the kernel at once (a block holds hundreds of
//! frames; pinning it until the worker dropped every one would stall the
//! ring). Frames the worker originates come from the same pool. The pool is
//! allocated once at start-up: nothing on the packet path allocates.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::io::PacketBuf;

/// `count` buffers of `frame_size` bytes in one allocation, and the indices
/// of the free ones.
pub struct FramePool {
    mem: NonNull<u8>,
    layout: Layout,
    frame_size: usize,
    free: ArrayQueue<u32>,
}

// SAFETY: `mem` is a plain heap allocation owned by the pool. Each index is
// handed out to exactly one `AfPacketBuf` at a time (it leaves `free` on
// allocation and returns on drop), so no two owners ever touch the same frame.
unsafe impl Send for FramePool {}
// SAFETY: as above; shared access only goes through `free`, which is a
// lock-free queue.
unsafe impl Sync for FramePool {}

impl FramePool {
    /// Allocates `count` zeroed frames of `frame_size` bytes (`count` ≥ 1).
    pub fn new(count: u32, frame_size: u32) -> Option<Arc<FramePool>> {
        let count = count.max(1);
        let frame_size = frame_size as usize;
        let bytes = frame_size.checked_mul(count as usize)?;
        let layout = Layout::from_size_align(bytes.max(1), 64).ok()?;
        // SAFETY: the layout has a non-zero size.
        let mem = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        let free = ArrayQueue::new(count as usize);
        for i in 0..count {
            // Cannot fail: the queue holds exactly `count` entries.
            let _ = free.push(i);
        }
        Some(Arc::new(FramePool {
            mem,
            layout,
            frame_size,
            free,
        }))
    }

    /// Takes a free buffer, empty; `None` when all are in use.
    pub fn alloc(self: &Arc<Self>) -> Option<AfPacketBuf> {
        let idx = self.free.pop()?;
        Some(AfPacketBuf {
            pool: Arc::clone(self),
            idx,
            len: 0,
        })
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// The size of every buffer.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    fn frame_ptr(&self, idx: u32) -> *mut u8 {
        // SAFETY: `idx < count` (only indices from `free` exist), so the
        // offset stays inside the allocation.
        unsafe { self.mem.as_ptr().add(idx as usize * self.frame_size) }
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; every buffer holds an
        // `Arc` to the pool, so none outlives this.
        unsafe { dealloc(self.mem.as_ptr(), self.layout) }
    }
}

/// One frame buffer of an AF_PACKET queue; dropping it returns it to the pool.
pub struct AfPacketBuf {
    pool: Arc<FramePool>,
    idx: u32,
    len: u32,
}

impl AfPacketBuf {
    /// Copies `frame` into the buffer; false when it does not fit.
    pub fn fill(&mut self, frame: &[u8]) -> bool {
        if frame.len() > self.pool.frame_size {
            return false;
        }
        // SAFETY: this buffer owns frame `idx` exclusively and `frame` fits.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.pool.frame_ptr(self.idx),
                frame.len(),
            )
        };
        self.len = frame.len() as u32;
        true
    }
}

impl PacketBuf for AfPacketBuf {
    fn data(&self) -> &[u8] {
        // SAFETY: exclusive owner of frame `idx`; `len ≤ frame_size`.
        unsafe { std::slice::from_raw_parts(self.pool.frame_ptr(self.idx), self.len as usize) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.pool.frame_ptr(self.idx), self.len as usize) }
    }

    fn set_len(&mut self, len: usize) -> bool {
        if len > self.pool.frame_size {
            return false;
        }
        self.len = len as u32;
        true
    }

    fn capacity(&self) -> usize {
        self.pool.frame_size
    }
}

impl Drop for AfPacketBuf {
    fn drop(&mut self) {
        // Cannot fail: the queue has room for every index and this one is out.
        let _ = self.pool.free.push(self.idx);
    }
}

impl std::fmt::Debug for AfPacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketBuf")
            .field("idx", &self.idx)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_return_to_the_pool_on_drop() {
        let pool = FramePool::new(2, 128).unwrap();
        let a = pool.alloc().unwrap();
        let mut b = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        assert!(b.fill(&[1, 2, 3]));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(!b.fill(&[0; 129]));
        assert!(!b.set_len(129));
        assert!(b.set_len(128));
        assert_eq!(b.capacity(), 128);
        drop(a);
        assert_eq!(pool.available(), 1);
        drop(b);
        assert_eq!(pool.available(), 2);
    }
}
