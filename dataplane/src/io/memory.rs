//! The in-memory packet I/O backend: frames go in with [`MemoryIo::inject`]
//! and come out with [`MemoryIo::take_tx`]. Used by scenario tests, the fuzz
//! target and the benchmarks, so the worker loop runs unchanged without a
//! NIC.
//!
//! Buffers come from a fixed pool (a lock-free queue of 2 KiB vectors) and go
//! back to it when dropped, like mbufs; a benchmark that re-injects the
//! buffers it took from the transmit side runs without any allocation.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::doorbell::Doorbell;
use crate::io::{IoStats, PacketBuf, PacketIo};

/// Bytes per buffer (a 1514-byte frame plus headroom, like an mbuf).
pub const BUF_SIZE: usize = 2048;

type Pool = Arc<ArrayQueue<Vec<u8>>>;

/// A buffer of the in-memory backend.
#[derive(Debug)]
pub struct MemBuf {
    data: Vec<u8>,
    pool: Option<Pool>,
}

impl MemBuf {
    /// A buffer holding `frame` outside any pool (tests).
    pub fn from_frame(frame: &[u8]) -> MemBuf {
        let mut data = Vec::with_capacity(BUF_SIZE.max(frame.len()));
        data.extend_from_slice(frame);
        MemBuf { data, pool: None }
    }
}

impl Drop for MemBuf {
    fn drop(&mut self) {
        if let Some(p) = self.pool.take() {
            let v = std::mem::take(&mut self.data);
            let _ = p.push(v);
        }
    }
}

impl PacketBuf for MemBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.data
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        self.data.resize(len, 0);
        true
    }
    fn capacity(&self) -> usize {
        self.data.capacity().max(BUF_SIZE)
    }
}

/// One in-memory queue pair.
#[derive(Debug)]
pub struct MemoryIo {
    pool: Pool,
    rx: VecDeque<MemBuf>,
    tx: Vec<MemBuf>,
    /// Most frames the transmit side holds before `tx_burst` refuses more.
    tx_limit: usize,
    stats: IoStats,
}

impl MemoryIo {
    /// A backend with `buffers` pooled buffers.
    pub fn new(buffers: usize) -> MemoryIo {
        let pool = Arc::new(ArrayQueue::new(buffers.max(1)));
        for _ in 0..buffers {
            let _ = pool.push(Vec::with_capacity(BUF_SIZE));
        }
        MemoryIo {
            pool,
            rx: VecDeque::new(),
            tx: Vec::new(),
            tx_limit: usize::MAX,
            stats: IoStats::default(),
        }
    }

    /// Limits the frames held on the transmit side (to test a full queue).
    pub fn set_tx_limit(&mut self, n: usize) {
        self.tx_limit = n;
    }

    /// Queues `frame` for the worker, copied into a pooled buffer; false (and
    /// counted as `rx_dropped`) when the pool is empty.
    pub fn inject(&mut self, frame: &[u8]) -> bool {
        match self.alloc() {
            Some(mut b) if frame.len() <= BUF_SIZE => {
                b.data.extend_from_slice(frame);
                self.rx.push_back(b);
                true
            }
            _ => {
                self.stats.rx_dropped += 1;
                false
            }
        }
    }

    /// Queues a buffer the caller already holds (zero copy: benchmarks
    /// re-inject what the worker transmitted).
    pub fn inject_buf(&mut self, b: MemBuf) {
        self.rx.push_back(b);
    }

    /// Frames waiting for the worker.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }

    /// Takes every frame the worker transmitted so far.
    pub fn take_tx(&mut self) -> Vec<MemBuf> {
        std::mem::take(&mut self.tx)
    }

    /// Moves the transmitted frames into `out` (keeps both allocations).
    pub fn drain_tx_into(&mut self, out: &mut Vec<MemBuf>) {
        out.append(&mut self.tx);
    }

    /// Buffers left in the pool.
    pub fn pool_free(&self) -> usize {
        self.pool.len()
    }
}

impl PacketIo for MemoryIo {
    type Buf = MemBuf;

    fn rx_burst(&mut self, out: &mut Vec<MemBuf>, max: usize) -> usize {
        let n = max.min(self.rx.len());
        for b in self.rx.drain(..n) {
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += b.data.len() as u64;
            out.push(b);
        }
        n
    }

    fn alloc(&mut self) -> Option<MemBuf> {
        let mut data = self.pool.pop()?;
        data.clear();
        Some(MemBuf {
            data,
            pool: Some(self.pool.clone()),
        })
    }

    fn tx_burst(&mut self, pkts: &mut Vec<MemBuf>) -> usize {
        let room = self.tx_limit.saturating_sub(self.tx.len());
        let n = room.min(pkts.len());
        for b in pkts.drain(..n) {
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += b.data.len() as u64;
            self.tx.push(b);
        }
        n
    }

    /// Frames are injected by the thread that owns the queue, so nothing can
    /// arrive during the wait but a doorbell ring (or the timeout).
    fn wait(&mut self, timeout: std::time::Duration, bell: &Doorbell) {
        if self.rx.is_empty() {
            bell.poll(None, timeout);
        }
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_return_to_the_pool() {
        let mut io = MemoryIo::new(4);
        assert!(io.inject(b"abc"));
        assert_eq!(io.pool_free(), 3);
        let mut v = Vec::new();
        assert_eq!(io.rx_burst(&mut v, 8), 1);
        assert_eq!(v[0].data(), b"abc");
        io.tx_burst(&mut v);
        assert!(v.is_empty());
        drop(io.take_tx());
        assert_eq!(io.pool_free(), 4);
        let bufs: Vec<_> = (0..4).map(|_| io.alloc().unwrap()).collect();
        assert!(io.alloc().is_none());
        drop(bufs);
        assert_eq!(io.pool_free(), 4);
    }
}
