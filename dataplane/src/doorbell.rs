//! A worker's doorbell: how another thread wakes a worker that sleeps in
//! adaptive polling.
//!
//! A worker that found nothing to do for a while blocks in its backend's
//! [`crate::io::PacketIo::wait`] until a frame arrives or its next timer is
//! due. Work also reaches it from other threads: decisions and commands from
//! the control plane, THOP replies relayed by other workers. Without a
//! doorbell those waited for the next frame or timer (up to `max_wait`), which
//! put milliseconds into the dispatch path of an idle switch.
//!
//! The doorbell is an eventfd the backend polls beside its own descriptor
//! (the DPDK and in-memory backends poll it alone), plus an `asleep` flag, so
//! a producer pays a `write(2)` only when the worker is actually asleep: on a
//! busy worker ringing costs a fence and a load of a cache line that stays
//! shared.
//!
//! # No lost wake-up
//!
//! Worker, before blocking: (W1) `asleep = true`, (W2) SeqCst fence,
//! (W3) look at its queues, and block only if all are empty.
//! Producer: (P1) enqueue, (P2) SeqCst fence, (P3) read `asleep`, and if it
//! is set, take it (swap to false) and write the eventfd.
//!
//! The two fences are totally ordered. If W2 comes first, P3 sees W1's
//! `true` (a store sequenced before the first fence is visible to a load
//! sequenced after the second) and the producer writes the eventfd, which
//! stays readable until the worker reads it: the block returns at once. If P2
//! comes first, W3 sees P1's message and the worker does not block. Either
//! way a message enqueued before the worker sleeps is never left waiting for
//! a timer. The swap makes exactly one producer write per sleep.
//!
//! A producer may take the flag just as the worker wakes for another reason,
//! and write after the worker has looked: the eventfd then stays readable and
//! the worker's next sleep returns at once, reads it and sleeps again (one
//! spurious turn of the loop, never a lost wake-up and never a busy loop,
//! since every backend reads the eventfd whenever poll reports it readable).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::Duration;

/// One worker's doorbell (shared by the worker and its producers in an `Arc`).
///
/// Cache-line aligned: producers read `asleep` on every message, the worker
/// writes it only around a sleep, and nothing else shares the line.
#[derive(Debug)]
#[repr(align(64))]
pub struct Doorbell {
    asleep: AtomicBool,
    /// `None` when eventfd(2) failed (descriptor limit): the worker then
    /// sleeps out its timeout as before, and ringing does nothing.
    fd: Option<OwnedFd>,
}

impl Default for Doorbell {
    fn default() -> Self {
        Doorbell::new()
    }
}

impl Doorbell {
    /// A doorbell with a fresh eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`).
    pub fn new() -> Doorbell {
        // SAFETY: eventfd has no memory preconditions; a valid descriptor is
        // owned from here on.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        Doorbell {
            asleep: AtomicBool::new(false),
            // SAFETY: `raw` is a descriptor we just opened and own alone.
            fd: (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) }),
        }
    }

    /// False when the eventfd could not be created (the worker then wakes
    /// only on frames and timers).
    pub fn is_wired(&self) -> bool {
        self.fd.is_some()
    }

    /// True while the worker is marked asleep (for tests and diagnostics;
    /// producers use [`Doorbell::ring`]).
    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Ordering::Relaxed)
    }

    /// The eventfd to poll for `POLLIN`, or -1 (which poll(2) ignores).
    pub fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Producer side, called after the message is enqueued: wakes the worker
    /// if it is asleep. Returns true when this call wrote the eventfd.
    #[inline]
    pub fn ring(&self) -> bool {
        fence(Ordering::SeqCst);
        // The plain load keeps the common case (worker awake) free of a
        // locked instruction and of a write to the shared line.
        if !self.asleep.load(Ordering::Relaxed) || !self.asleep.swap(false, Ordering::SeqCst) {
            return false;
        }
        if let Some(fd) = &self.fd {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd. It
            // cannot block (EFD_NONBLOCK) and cannot fail short of a counter
            // at u64::MAX - 1, which is still readable, so still a wake-up.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
        true
    }

    /// Worker side, before blocking: marks the worker asleep, then asks
    /// `pending` whether anything arrived meanwhile (see the module docs for
    /// why this order loses no wake-up). Returns false, and the worker must
    /// not block, when something is pending.
    #[inline]
    pub fn arm(&self, pending: impl FnOnce() -> bool) -> bool {
        self.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if pending() {
            self.asleep.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Worker side, after the block returned: the worker is awake again.
    /// Returns true when a producer rang while it slept.
    #[inline]
    pub fn disarm(&self) -> bool {
        !self.asleep.swap(false, Ordering::SeqCst)
    }

    /// Reads the eventfd back to zero (a no-op when it is not readable).
    pub fn clear(&self) {
        if let Some(fd) = &self.fd {
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64; non-blocking.
            unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
    }

    /// Blocks for at most `timeout` until the doorbell rings or `other` (a
    /// backend's own descriptor, if any) is ready; clears the eventfd when it
    /// was readable. Returns ppoll(2)'s result; `other.revents` is filled in.
    pub fn poll(&self, other: Option<&mut libc::pollfd>, timeout: Duration) -> libc::c_int {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        let bell = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut pfds = [bell, bell];
        let (n, bell_at) = match &other {
            Some(o) => {
                pfds[0] = **o;
                (2, 1)
            }
            None => (1, 0),
        };
        // SAFETY: `n` valid pollfds on the stack, a valid timespec, no signal
        // mask. A negative fd (no eventfd) is ignored by the kernel.
        let rc = unsafe { libc::ppoll(pfds.as_mut_ptr(), n, &ts, std::ptr::null()) };
        if rc > 0 && pfds[bell_at].revents & libc::POLLIN != 0 {
            self.clear();
        }
        if let Some(o) = other {
            o.revents = pfds[0].revents;
        }
        rc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn ringing_an_awake_worker_writes_nothing() {
        let b = Doorbell::new();
        assert!(b.is_wired());
        assert!(!b.ring());
        // Nothing to read: a poll times out.
        assert_eq!(b.poll(None, Duration::ZERO), 0);
    }

    #[test]
    fn one_write_per_sleep_and_the_worker_sees_it() {
        let b = Doorbell::new();
        assert!(b.arm(|| false));
        assert!(b.ring());
        assert!(!b.ring(), "the first producer took the flag");
        assert_eq!(b.poll(None, Duration::from_secs(10)), 1);
        assert!(b.disarm(), "rung while asleep");
        // The poll read the eventfd: the next sleep blocks again.
        assert!(b.arm(|| false));
        assert_eq!(b.poll(None, Duration::from_millis(1)), 0);
        assert!(!b.disarm(), "timed out, not rung");
    }

    #[test]
    fn pending_work_cancels_the_sleep() {
        let b = Doorbell::new();
        assert!(!b.arm(|| true));
        assert!(!b.ring(), "not asleep");
    }

    #[test]
    fn a_late_write_costs_one_spurious_wake_up_only() {
        let b = Doorbell::new();
        assert!(b.arm(|| false));
        // The worker wakes by itself just as a producer takes the flag…
        assert!(b.ring());
        assert!(b.disarm());
        // …and the write is still there at the next sleep: one wake, cleared.
        assert!(b.arm(|| false));
        assert_eq!(b.poll(None, Duration::from_secs(10)), 1);
        assert_eq!(b.poll(None, Duration::ZERO), 0, "cleared");
    }

    #[test]
    fn a_sleeping_thread_is_woken_by_another() {
        let b = Arc::new(Doorbell::new());
        let b2 = b.clone();
        let sleeper = std::thread::spawn(move || {
            assert!(b2.arm(|| false));
            let t = Instant::now();
            b2.poll(None, Duration::from_secs(30));
            (b2.disarm(), t.elapsed())
        });
        // Ring until the sleeper has armed (it may not have yet).
        while !b.ring() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (rung, slept) = sleeper.join().unwrap();
        assert!(rung);
        assert!(slept < Duration::from_secs(20), "woken, not timed out");
    }
}
