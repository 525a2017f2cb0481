//! Fixed arrays on transparent huge pages, for the connection table.
//!
//! A million-entry table is 64 MiB: on 4 KiB pages every random lookup also
//! misses the TLB and walks page tables that are not cached either. The array
//! is allocated 2 MiB-aligned and marked `MADV_HUGEPAGE` before it is first
//! touched, so Linux backs it with 2 MiB pages where it can (THP in `madvise`
//! or `always` mode); elsewhere it is an ordinary allocation.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE: usize = 2 << 20;

/// A fixed-length array of `Copy` values, huge-page backed when large.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
}

// SAFETY: HugeSlice owns its elements exclusively, like Box<[T]>.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: shared access only hands out &[T], like Box<[T]>.
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> Self {
        let len = len.max(1);
        let size = std::mem::size_of::<T>()
            .max(1)
            .checked_mul(len)
            .expect("table size overflows");
        let align = if size >= HUGE {
            HUGE
        } else {
            std::mem::align_of::<T>().max(64)
        };
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) } as *mut T;
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if align == HUGE {
            // SAFETY: the range is exactly our fresh allocation; the advice
            // only changes how the kernel backs it. Failure is harmless.
            unsafe {
                libc::madvise(raw as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            }
        }
        for i in 0..len {
            // SAFETY: i < len, inside the allocation; T is Copy (no drop).
            unsafe { raw.add(i).write(fill) };
        }
        HugeSlice { ptr, len, layout }
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: ptr points at len initialised elements owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout; T needs no drop.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_arrays_hold_their_values() {
        let mut a = HugeSlice::new(10, 7u32);
        a[3] = 9;
        assert_eq!(a.iter().sum::<u32>(), 7 * 9 + 9);
        let b = HugeSlice::new(3 << 20, 1u8);
        assert_eq!(b.len(), 3 << 20);
        assert_eq!(b.as_ptr() as usize % HUGE, 0);
        assert!(b.iter().all(|x| *x == 1));
    }
}
