//! An owned mbuf: the DPDK backend's packet buffer.
//!
//! The data pointer, length and capacity are cached at creation so `data()`
//! needs no FFI call; `set_len` writes through to the mbuf's `data_len` and
//! `pkt_len`. Received frames are rewritten in place and transmitted in the
//! same mbuf (zero copy); dropping the buffer frees the mbuf to its pool
//! (through the thread's lcore cache when the thread is registered).

use std::ptr::NonNull;

use super::ffi;
use crate::io::PacketBuf;

/// One single-segment mbuf owned by the worker.
pub struct DpdkBuf {
    m: NonNull<ffi::rte_mbuf>,
    data: *mut u8,
    len: u16,
    cap: u16,
}

// SAFETY: an mbuf is owned by exactly one `DpdkBuf`; mempools are
// thread-safe, so it may be freed or transmitted from any thread.
unsafe impl Send for DpdkBuf {}

impl DpdkBuf {
    /// Takes ownership of `m`; `None` (and the mbuf freed) for chained
    /// mbufs, which the workers do not handle.
    ///
    /// # Safety
    /// `m` must be a valid mbuf the caller owns.
    pub unsafe fn from_raw(m: *mut ffi::rte_mbuf) -> Option<DpdkBuf> {
        let m = NonNull::new(m)?;
        if ffi::baton_mbuf_nb_segs(m.as_ptr()) != 1 {
            ffi::baton_mbuf_free(m.as_ptr());
            return None;
        }
        Some(DpdkBuf {
            m,
            data: ffi::baton_mbuf_data(m.as_ptr()),
            len: ffi::baton_mbuf_data_len(m.as_ptr()),
            cap: ffi::baton_mbuf_capacity(m.as_ptr()),
        })
    }

    /// Gives the mbuf up (to a transmit queue) without freeing it.
    pub fn into_raw(self) -> *mut ffi::rte_mbuf {
        let m = self.m.as_ptr();
        std::mem::forget(self);
        m
    }

    /// The mbuf, still owned by `self`.
    pub fn as_raw(&self) -> *mut ffi::rte_mbuf {
        self.m.as_ptr()
    }
}

impl PacketBuf for DpdkBuf {
    fn data(&self) -> &[u8] {
        // SAFETY: `data` points at `len` initialised bytes of the mbuf we own.
        unsafe { std::slice::from_raw_parts(self.data, self.len as usize) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len as usize) }
    }

    fn set_len(&mut self, len: usize) -> bool {
        if len > self.cap as usize {
            return false;
        }
        // SAFETY: we own the mbuf; the shim re-checks the bound.
        if unsafe { ffi::baton_mbuf_set_len(self.m.as_ptr(), len as u16) } == 0 {
            return false;
        }
        self.len = len as u16;
        true
    }

    fn capacity(&self) -> usize {
        self.cap as usize
    }
}

impl Drop for DpdkBuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and drop it exactly once.
        unsafe { ffi::baton_mbuf_free(self.m.as_ptr()) }
    }
}

impl std::fmt::Debug for DpdkBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}
