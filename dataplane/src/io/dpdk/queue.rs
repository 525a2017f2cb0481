//! One worker's queue pair on the DPDK port: receive and transmit bursts,
//! the adaptive wait, and opening the port's queues.

use std::sync::Arc;
use std::time::Duration;

use super::buf::DpdkBuf;
use super::eal;
use super::ffi;
use super::port::{self, MbufPtr, Port, Steering};

use super::config::DpdkConfig;
use crate::doorbell::Doorbell;
use crate::io::port::{IoError, PortMonitor};
use crate::io::{IoStats, PacketBuf, PacketIo, PortQueue};

/// Largest burst handed to the PMD in one call.
const BURST: usize = 64;
/// Transmit attempts without progress before frames are left to the caller.
const TX_DRAIN_TRIES: u32 = 4;
/// Longest sleep of an idle worker: there is no receive interrupt to end it.
const WAIT_SLICE: Duration = Duration::from_micros(500);

/// The DPDK version this build is bound to.
pub const DPDK_VERSION: &str = env!("BATON_DPDK_VERSION");

/// One worker's queue pair on the DPDK port.
pub struct DpdkQueue {
    index: usize,
    port: Arc<Port>,
    rxq: u16,
    txq: u16,
    rx_scratch: [*mut ffi::rte_mbuf; BURST],
    tx_scratch: [*mut ffi::rte_mbuf; BURST],
    stats: IoStats,
    /// Scratch for [`crate::io::AnyQueue`]'s transmit path.
    pub(crate) any_scratch: Vec<DpdkBuf>,
}

// SAFETY: the scratch arrays hold no live pointers between calls; the port is
// Sync; mbufs are thread-agnostic.
unsafe impl Send for DpdkQueue {}

/// Starts the EAL (once per process) and opens `workers` queues on the port.
pub fn open(cfg: &DpdkConfig, workers: usize) -> Result<Vec<DpdkQueue>, IoError> {
    eal::init(&cfg.eal_args)?;
    let port = Arc::new(port::setup(cfg, workers)?);
    Ok((0..workers)
        .map(|index| DpdkQueue {
            index,
            rxq: match port.steering {
                Steering::Rss | Steering::PmdFanout => index as u16,
                Steering::Single | Steering::Software => 0,
            },
            txq: (index % port.nb_txq as usize) as u16,
            port: Arc::clone(&port),
            rx_scratch: [std::ptr::null_mut(); BURST],
            tx_scratch: [std::ptr::null_mut(); BURST],
            stats: IoStats::default(),
            any_scratch: Vec::new(),
        })
        .collect())
}

impl DpdkQueue {
    /// The port monitor shared by all queues.
    pub fn monitor(&self) -> Arc<dyn PortMonitor> {
        Arc::clone(&self.port) as Arc<dyn PortMonitor>
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.port.mac
    }

    /// This queue's worker index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The port id in EAL's numbering.
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// Polls one burst from NIC queue `rxq` into `rx_scratch`.
    fn poll_nic(&mut self, n: usize) -> usize {
        // SAFETY: valid port/queue; the scratch array has room for `n ≤ BURST`.
        unsafe {
            ffi::baton_rx_burst(
                self.port.id,
                self.rxq,
                self.rx_scratch.as_mut_ptr(),
                n.min(BURST) as u16,
            ) as usize
        }
    }

    /// Takes ownership of scratch entry `i`.
    fn take_rx(&mut self, i: usize) -> Option<DpdkBuf> {
        let m = std::mem::replace(&mut self.rx_scratch[i], std::ptr::null_mut());
        // SAFETY: the PMD handed us this mbuf.
        let b = unsafe { DpdkBuf::from_raw(m) };
        if b.is_none() {
            self.port
                .rx_chained
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.stats.rx_dropped += 1;
        }
        b
    }

    /// Hands up to `max` received frames to `push`; returns how many.
    pub fn rx_burst_with(&mut self, max: usize, mut push: impl FnMut(DpdkBuf)) -> usize {
        eal::register_thread();
        let mut n = 0;
        let mut bytes = 0u64;
        if self.port.steering == Steering::Software {
            n += self.rx_software(max, &mut |b: DpdkBuf| {
                bytes += b.data().len() as u64;
                push(b)
            });
        } else {
            while n < max {
                let want = (max - n).min(BURST);
                let k = self.poll_nic(want);
                for i in 0..k {
                    if let Some(b) = self.take_rx(i) {
                        bytes += b.data().len() as u64;
                        push(b);
                        n += 1;
                    }
                }
                if k < want {
                    break; // the queue is empty
                }
            }
        }
        self.stats.rx_packets += n as u64;
        self.stats.rx_bytes += bytes;
        n
    }

    /// Software steering: drain this worker's ring, then (if nobody else is)
    /// poll the shared NIC queue and hand each frame to its owner.
    fn rx_software(&mut self, max: usize, push: &mut dyn FnMut(DpdkBuf)) -> usize {
        use std::sync::atomic::Ordering;
        let mut n = 0;
        while n < max {
            let Some(m) = self.port.steer_rings[self.index].pop() else {
                break;
            };
            // SAFETY: frames in the ring are owned by the ring.
            if let Some(b) = unsafe { DpdkBuf::from_raw(m.0) } {
                push(b);
                n += 1;
            }
        }
        if n >= max
            || self
                .port
                .rx_lock
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return n;
        }
        let k = self.poll_nic(BURST);
        let workers = self.port.workers;
        for i in 0..k {
            let Some(b) = self.take_rx(i) else { continue };
            let owner = crate::steer::worker_for(b.data(), workers);
            if owner == self.index && n < max {
                push(b);
                n += 1;
                continue;
            }
            if let Err(m) = self.port.steer_rings[owner].push(MbufPtr(b.into_raw())) {
                // SAFETY: the ring refused it, so we still own it.
                unsafe { ffi::baton_mbuf_free(m.0) };
                self.port.steer_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.port.rx_lock.store(false, Ordering::Release);
        n
    }

    /// Sends `pkts[..]` in bursts; returns how many the PMD took.
    fn tx_raw(&mut self, pkts: &[DpdkBuf]) -> usize {
        let mut done = 0;
        let mut stalls = 0;
        let _guard = self.port.tx_locks.as_ref().map(|l| {
            l[self.txq as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        });
        while done < pkts.len() && stalls < TX_DRAIN_TRIES {
            let chunk = &pkts[done..pkts.len().min(done + BURST)];
            for (slot, b) in self.tx_scratch.iter_mut().zip(chunk) {
                *slot = b.as_raw();
            }
            // SAFETY: valid port/queue; `chunk.len()` valid mbufs in scratch.
            let sent = unsafe {
                ffi::baton_tx_burst(
                    self.port.id,
                    self.txq,
                    self.tx_scratch.as_mut_ptr(),
                    chunk.len() as u16,
                )
            } as usize;
            if sent == 0 {
                stalls += 1;
            } else {
                stalls = 0;
            }
            done += sent;
        }
        done
    }
}

impl PacketIo for DpdkQueue {
    type Buf = DpdkBuf;

    fn rx_burst(&mut self, out: &mut Vec<DpdkBuf>, max: usize) -> usize {
        self.rx_burst_with(max, |b| out.push(b))
    }

    fn alloc(&mut self) -> Option<DpdkBuf> {
        eal::register_thread();
        // SAFETY: the pool lives for the process.
        let m = unsafe { ffi::baton_mbuf_alloc(self.port.pool) };
        // SAFETY: a fresh mbuf we own (or NULL).
        unsafe { DpdkBuf::from_raw(m) }
    }

    fn tx_burst(&mut self, pkts: &mut Vec<DpdkBuf>) -> usize {
        eal::register_thread();
        let sent = self.tx_raw(pkts);
        let mut bytes = 0u64;
        for b in pkts.drain(..sent) {
            bytes += b.data().len() as u64;
            // The PMD owns it now.
            let _ = b.into_raw();
        }
        self.stats.tx_packets += sent as u64;
        self.stats.tx_bytes += bytes;
        sent
    }

    fn wait(&mut self, timeout: Duration, bell: &Doorbell) {
        // The af_packet and most PMDs have no receive interrupt here: sleep in
        // short slices so an idle worker costs little and notices frames
        // soon. The slice is spent in ppoll(2) on the doorbell, so a decision,
        // command or relayed reply ends it at once.
        if self.port.steering == Steering::Software && !self.port.steer_rings[self.index].is_empty()
        {
            return;
        }
        bell.poll(None, timeout.min(WAIT_SLICE));
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

impl PortQueue for DpdkQueue {
    fn monitor(&self) -> Arc<dyn PortMonitor> {
        DpdkQueue::monitor(self)
    }
    fn mac(&self) -> [u8; 6] {
        DpdkQueue::mac(self)
    }
    fn index(&self) -> usize {
        DpdkQueue::index(self)
    }
    fn rx_burst_with(&mut self, max: usize, push: impl FnMut(DpdkBuf)) -> usize {
        DpdkQueue::rx_burst_with(self, max, push)
    }
    fn tx_scratch(&mut self) -> &mut Vec<DpdkBuf> {
        &mut self.any_scratch
    }
}
