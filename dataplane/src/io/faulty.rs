//! A seeded fault-injecting wrapper around any packet I/O backend (tests and
//! the end-to-end bed; this kernel has no netem): drops, duplicates and
//! reorders frames on receive and/or transmit, repeatably for a seed.

use crate::io::{IoStats, PacketBuf, PacketIo};

/// Which direction faults apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultDirection {
    /// Frames the worker receives.
    #[default]
    Rx,
    /// Frames the worker transmits.
    Tx,
    Both,
}

/// Fault probabilities (0.0 ..= 1.0) and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    pub seed: u64,
    pub drop: f64,
    pub duplicate: f64,
    /// A frame is held back and delivered after the next one.
    pub reorder: f64,
    pub direction: FaultDirection,
}

/// What the wrapper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

/// `Io` with faults.
pub struct FaultyIo<Io: PacketIo> {
    inner: Io,
    cfg: FaultConfig,
    rng: u64,
    held_rx: Option<Io::Buf>,
    held_tx: Option<Io::Buf>,
    scratch: Vec<Io::Buf>,
    stats: FaultStats,
}

impl<Io: PacketIo> FaultyIo<Io> {
    /// Wraps `inner`.
    pub fn new(inner: Io, cfg: FaultConfig) -> Self {
        FaultyIo {
            inner,
            cfg,
            rng: cfg.seed ^ 0x9e37_79b9_7f4a_7c15,
            held_rx: None,
            held_tx: None,
            scratch: Vec::new(),
            stats: FaultStats::default(),
        }
    }

    /// The wrapped backend.
    pub fn inner_mut(&mut self) -> &mut Io {
        &mut self.inner
    }

    /// What was injected so far.
    pub fn fault_stats(&self) -> FaultStats {
        self.stats
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // xorshift64*: tiny, seeded, good enough for fault patterns.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Applies faults to `pkts` in place (one reorder slot per direction).
    fn mangle(&mut self, pkts: &mut Vec<Io::Buf>, rx: bool) {
        let mut input = std::mem::take(&mut self.scratch);
        input.append(pkts);
        for p in input.drain(..) {
            if self.chance(self.cfg.drop) {
                self.stats.dropped += 1;
                continue;
            }
            if self.chance(self.cfg.duplicate) {
                if let Some(mut d) = self.inner.alloc() {
                    if d.set_len(p.data().len()) {
                        d.data_mut().copy_from_slice(p.data());
                        pkts.push(d);
                        self.stats.duplicated += 1;
                    }
                }
            }
            let free = if rx {
                self.held_rx.is_none()
            } else {
                self.held_tx.is_none()
            };
            if free && self.chance(self.cfg.reorder) {
                self.stats.reordered += 1;
                if rx {
                    self.held_rx = Some(p);
                } else {
                    self.held_tx = Some(p);
                }
                continue;
            }
            pkts.push(p);
            let held = if rx {
                self.held_rx.take()
            } else {
                self.held_tx.take()
            };
            pkts.extend(held);
        }
        self.scratch = input;
    }
}

impl<Io: PacketIo> PacketIo for FaultyIo<Io> {
    type Buf = Io::Buf;

    fn rx_burst(&mut self, out: &mut Vec<Self::Buf>, max: usize) -> usize {
        let start = out.len();
        let mut got = Vec::new();
        self.inner.rx_burst(&mut got, max);
        if matches!(
            self.cfg.direction,
            FaultDirection::Rx | FaultDirection::Both
        ) {
            self.mangle(&mut got, true);
            if got.is_empty() {
                // Do not sit on a reordered frame forever when traffic stops.
                if let Some(h) = self.held_rx.take() {
                    got.push(h);
                }
            }
        }
        out.append(&mut got);
        out.len() - start
    }

    fn alloc(&mut self) -> Option<Self::Buf> {
        self.inner.alloc()
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Self::Buf>) -> usize {
        if matches!(
            self.cfg.direction,
            FaultDirection::Tx | FaultDirection::Both
        ) {
            let n = pkts.len();
            self.mangle(pkts, false);
            if pkts.is_empty() {
                if let Some(h) = self.held_tx.take() {
                    pkts.push(h);
                }
            }
            self.inner.tx_burst(pkts);
            // Frames dropped by the fault count as sent for the caller.
            return n - pkts.len().min(n);
        }
        self.inner.tx_burst(pkts)
    }

    fn wait(&mut self, timeout: std::time::Duration, bell: &crate::doorbell::Doorbell) {
        self.inner.wait(timeout, bell)
    }

    fn stats(&self) -> IoStats {
        self.inner.stats()
    }

    /// No fast path under faults: frames an in-kernel fast path relays never
    /// reach user space, so they would escape the injector and a test could
    /// not know which segments it reordered. Every frame passes the worker.
    fn take_offload(&mut self) -> Option<Box<dyn crate::offload::FlowOffload>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::memory::MemoryIo;

    fn run(cfg: FaultConfig) -> (Vec<u8>, FaultStats) {
        let mut io = FaultyIo::new(MemoryIo::new(256), cfg);
        for i in 0..100u8 {
            io.inner_mut().inject(&[i]);
        }
        let mut got = Vec::new();
        let mut v = Vec::new();
        for _ in 0..200 {
            io.rx_burst(&mut v, 7);
            got.extend(v.drain(..).map(|b| b.data()[0]));
        }
        (got, io.fault_stats())
    }

    #[test]
    fn seeded_faults_are_repeatable_and_bounded() {
        let cfg = FaultConfig {
            seed: 42,
            drop: 0.1,
            duplicate: 0.1,
            reorder: 0.1,
            direction: FaultDirection::Rx,
        };
        let (a, sa) = run(cfg);
        let (b, sb) = run(cfg);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert!(sa.dropped > 0 && sa.duplicated > 0 && sa.reordered > 0);
        assert_eq!(a.len() as u64, 100 - sa.dropped + sa.duplicated);
        let (clean, s) = run(FaultConfig::default());
        assert_eq!(clean, (0..100).collect::<Vec<u8>>());
        assert_eq!(s, FaultStats::default());
    }
}
