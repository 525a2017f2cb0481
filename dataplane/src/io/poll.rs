//! Polling modes: how a worker waits for packets.
//!
//! `busy` spins on the queue (one dedicated core per worker, the lowest
//! latency; the appliance profile). `adaptive` spins for a while after the
//! last packet, then blocks in the backend's [`PacketIo::wait`] (poll(2) on
//! AF_PACKET, a short sleep on DPDK) for at most `max_wait` or until the
//! worker's next timer, so an idle test bed does not burn a core.

use std::time::Duration;

use crate::io::config::PollMode;
use crate::io::PacketIo;

/// Tracks idle polls of one worker and decides when to back off.
#[derive(Debug, Clone)]
pub struct Poller {
    mode: PollMode,
    idle: u32,
    sleeps: u64,
}

impl Poller {
    /// A poller for `mode`.
    pub fn new(mode: PollMode) -> Self {
        Poller {
            mode,
            idle: 0,
            sleeps: 0,
        }
    }

    /// The mode this poller runs.
    pub fn mode(&self) -> PollMode {
        self.mode
    }

    /// Times the worker blocked (for a counter).
    pub fn sleeps(&self) -> u64 {
        self.sleeps
    }

    /// Call after every loop iteration with whether it did any work (packets
    /// received, commands handled). `next_timer` is how long until the
    /// worker's earliest timer (`None`: no timer). May block in `io.wait`.
    pub fn idle<I: PacketIo>(&mut self, io: &mut I, did_work: bool, next_timer: Option<Duration>) {
        if did_work {
            self.idle = 0;
            return;
        }
        match self.mode {
            PollMode::Busy => std::hint::spin_loop(),
            PollMode::Adaptive {
                spin_polls,
                max_wait,
            } => {
                self.idle = self.idle.saturating_add(1);
                if self.idle < spin_polls {
                    std::hint::spin_loop();
                    return;
                }
                let wait = next_timer.map_or(max_wait, |t| t.min(max_wait));
                if wait.is_zero() {
                    return;
                }
                self.sleeps += 1;
                io.wait(wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{IoStats, PacketBuf};

    struct NoBuf;
    impl PacketBuf for NoBuf {
        fn data(&self) -> &[u8] {
            &[]
        }
        fn data_mut(&mut self) -> &mut [u8] {
            &mut []
        }
        fn set_len(&mut self, _: usize) -> bool {
            false
        }
        fn capacity(&self) -> usize {
            0
        }
    }

    /// Records the waits it is asked for instead of sleeping.
    #[derive(Default)]
    struct Idle {
        waits: Vec<Duration>,
    }
    impl PacketIo for Idle {
        type Buf = NoBuf;
        fn rx_burst(&mut self, _: &mut Vec<NoBuf>, _: usize) -> usize {
            0
        }
        fn alloc(&mut self) -> Option<NoBuf> {
            None
        }
        fn tx_burst(&mut self, _: &mut Vec<NoBuf>) -> usize {
            0
        }
        fn wait(&mut self, t: Duration) {
            self.waits.push(t);
        }
        fn stats(&self) -> IoStats {
            IoStats::default()
        }
    }

    #[test]
    fn busy_never_waits() {
        let mut io = Idle::default();
        let mut p = Poller::new(PollMode::Busy);
        for _ in 0..10_000 {
            p.idle(&mut io, false, None);
        }
        assert!(io.waits.is_empty());
        assert_eq!(p.sleeps(), 0);
    }

    #[test]
    fn adaptive_spins_then_waits_bounded_by_timer_and_max() {
        let max_wait = Duration::from_millis(10);
        let mut io = Idle::default();
        let mut p = Poller::new(PollMode::Adaptive {
            spin_polls: 3,
            max_wait,
        });
        p.idle(&mut io, false, None);
        p.idle(&mut io, false, None);
        assert!(io.waits.is_empty(), "still spinning");
        p.idle(&mut io, false, None);
        p.idle(&mut io, false, Some(Duration::from_millis(2)));
        p.idle(&mut io, false, Some(Duration::from_secs(5)));
        assert_eq!(io.waits, vec![max_wait, Duration::from_millis(2), max_wait]);
        // Work resets the spin phase.
        p.idle(&mut io, true, None);
        p.idle(&mut io, false, None);
        p.idle(&mut io, false, None);
        assert_eq!(io.waits.len(), 3, "spinning again after work");
        // A timer already due: no sleep at all.
        p.idle(&mut io, false, Some(Duration::ZERO));
        assert_eq!(io.waits.len(), 3);
        p.idle(&mut io, false, None);
        assert_eq!(io.waits.len(), 4);
    }
}
