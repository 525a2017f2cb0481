//! Packet capture of the data port, from inside the workers.
//!
//! A DPDK port is invisible to tcpdump (the kernel never sees its frames),
//! and on AF_PACKET or AF_XDP a tcpdump on the interface shows neither which
//! worker handled a frame nor what the switch itself sent. So the workers
//! copy what they receive and send, when a capture is armed, into a bounded
//! queue that the admin endpoint drains into a pcapng file (see
//! [`crate::capture::pcapng`]).
//!
//! Cost when off: one relaxed load of [`Tap::armed`] per loop turn. When on,
//! each frame is matched against the [`Filter`] (a few compares on fixed
//! offsets) and a matching one is copied (up to the snap length) into a
//! lock-free queue; a full queue drops the copy and counts it, never the
//! frame. A capture ends by itself at its packet, byte or time bound.
//!
//! What it cannot see: frames the AF_XDP fast path relays in the kernel
//! (established connections' client segments) never reach a worker.

pub mod filter;
pub mod pcapng;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;

pub use filter::{Filter, FilterError};

/// Frames queued between the workers and the writer.
const QUEUE: usize = 16 * 1024;

/// Which way a frame went through the data port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received by a worker.
    In,
    /// Sent by a worker.
    Out,
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Record {
    /// Wall-clock time, ns since the Unix epoch.
    pub unix_ns: u64,
    pub worker: u16,
    pub dir: Direction,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Its first `snaplen` bytes.
    pub data: Vec<u8>,
}

/// The bounds of one capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub packets: u64,
    pub bytes: u64,
    /// Deadline on the workers' clock (ns since the shared epoch).
    pub until_ns: u64,
    pub snaplen: u32,
}

/// A capture under way.
#[derive(Debug)]
pub struct Session {
    filter: Filter,
    bounds: Bounds,
    /// The workers' clock zero, as Unix ns (for the records' timestamps).
    epoch_unix_ns: u64,
    queue: ArrayQueue<Record>,
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    done: AtomicBool,
}

impl Session {
    /// A capture of what matches `filter` within `bounds`.
    pub fn new(filter: Filter, bounds: Bounds, epoch_unix_ns: u64) -> Session {
        Session {
            filter,
            bounds,
            epoch_unix_ns,
            queue: ArrayQueue::new(QUEUE),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }

    /// Offers one frame seen by `worker` at `now_ns` (workers' clock).
    pub fn offer(&self, worker: u16, dir: Direction, now_ns: u64, frame: &[u8]) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        if now_ns >= self.bounds.until_ns {
            self.done.store(true, Ordering::Relaxed);
            return;
        }
        if !self.filter.matches(frame) {
            return;
        }
        // Claim a place within the bounds first, so concurrent workers never
        // exceed them together.
        let n = self.packets.fetch_add(1, Ordering::Relaxed);
        let len = frame.len() as u64;
        let b = self.bytes.fetch_add(len, Ordering::Relaxed);
        if n >= self.bounds.packets || b + len > self.bounds.bytes {
            self.packets.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            self.done.store(true, Ordering::Relaxed);
            return;
        }
        let keep = frame.len().min(self.bounds.snaplen as usize);
        let rec = Record {
            unix_ns: self.epoch_unix_ns + now_ns,
            worker,
            dir,
            orig_len: frame.len() as u32,
            data: frame[..keep].to_vec(),
        };
        if self.queue.push(rec).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        if n + 1 >= self.bounds.packets {
            self.done.store(true, Ordering::Relaxed);
        }
    }

    /// The next queued frame.
    pub fn pop(&self) -> Option<Record> {
        self.queue.pop()
    }

    /// True once a bound was reached (or the deadline passed while frames
    /// were seen; the reader also checks the time itself).
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// Frames captured, bytes captured, copies lost to a full queue.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        )
    }

    /// The bounds it was started with.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
}

/// Where workers find the capture under way, if any (one at a time).
#[derive(Default, Debug)]
pub struct Tap {
    armed: AtomicBool,
    session: Mutex<Option<Arc<Session>>>,
}

/// Why a capture could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    #[error("a capture is already running")]
    Busy,
}

impl Tap {
    /// Arms the workers with `s`; refused while another capture runs.
    pub fn start(&self, s: Arc<Session>) -> Result<(), TapError> {
        let mut cur = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if cur.is_some() {
            return Err(TapError::Busy);
        }
        *cur = Some(s);
        self.armed.store(true, Ordering::Release);
        Ok(())
    }

    /// Disarms the workers (the session keeps what it queued).
    pub fn stop(&self) {
        self.armed.store(false, Ordering::Release);
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The capture under way: one relaxed load when there is none.
    #[inline]
    pub fn current(&self) -> Option<Arc<Session>> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(packets: u64) -> Bounds {
        Bounds {
            packets,
            bytes: u64::MAX,
            until_ns: 1_000,
            snaplen: 64,
        }
    }

    #[test]
    fn a_session_stops_at_its_bounds() {
        let s = Session::new(Filter::any(), bounds(2), 0);
        let frame = [0u8; 100];
        for _ in 0..5 {
            s.offer(0, Direction::In, 10, &frame);
        }
        assert!(s.done());
        assert_eq!(s.totals(), (2, 200, 0));
        let r = s.pop().unwrap();
        assert_eq!((r.orig_len, r.data.len()), (100, 64));
        assert!(s.pop().is_some() && s.pop().is_none());
        let late = Session::new(Filter::any(), bounds(10), 0);
        late.offer(0, Direction::In, 1_000, &frame);
        assert!(late.done());
        assert_eq!(late.totals().0, 0);
    }

    #[test]
    fn one_capture_at_a_time() {
        let tap = Tap::default();
        assert!(tap.current().is_none());
        let s = Arc::new(Session::new(Filter::any(), bounds(1), 0));
        tap.start(s.clone()).unwrap();
        assert_eq!(tap.start(s), Err(TapError::Busy));
        assert!(tap.current().is_some());
        tap.stop();
        assert!(tap.current().is_none());
    }
}
