//! Polling modes: how a worker waits for packets.
//!
//! `busy` spins on the queue (one dedicated core per worker, the lowest
//! latency; the appliance profile). `adaptive` spins for a while after the
//! last packet, then blocks in the backend's [`PacketIo::wait`] (ppoll(2) on
//! the AF_PACKET socket and the worker's doorbell, the doorbell alone with
//! 500 µs slices on DPDK) for at most `max_wait` or until the worker's next
//! timer, so an idle test bed does not burn a core. The worker's
//! [`Doorbell`] is armed around the block, so work queued by another thread
//! (a decision, a command, a relayed THOP reply) ends it at once.

use std::time::Duration;

use crate::doorbell::Doorbell;
use crate::io::config::PollMode;
use crate::io::PacketIo;

/// Tracks idle polls of one worker and decides when to back off.
#[derive(Debug, Clone)]
pub struct Poller {
    mode: PollMode,
    idle: u32,
    sleeps: u64,
}

/// What one idle turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Did not block (work was done, still spinning, a timer is due, or
    /// work arrived while the doorbell was being armed).
    Spun,
    /// Blocked and woke on a frame or the timeout.
    Slept,
    /// Blocked and was woken by the doorbell.
    Rung,
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
    /// worker's earliest timer (`None`: no timer). May block in `io.wait`,
    /// with `bell` armed; `pending` says whether work for the worker arrived
    /// from another thread (checked after arming, see [`Doorbell::arm`]).
    pub fn idle<I: PacketIo>(
        &mut self,
        io: &mut I,
        bell: &Doorbell,
        did_work: bool,
        next_timer: Option<Duration>,
        pending: impl FnOnce() -> bool,
    ) -> Idle {
        if did_work {
            self.idle = 0;
            return Idle::Spun;
        }
        match self.mode {
            PollMode::Busy => {
                std::hint::spin_loop();
                Idle::Spun
            }
            PollMode::Adaptive {
                spin_polls,
                max_wait,
            } => {
                self.idle = self.idle.saturating_add(1);
                if self.idle < spin_polls {
                    std::hint::spin_loop();
                    return Idle::Spun;
                }
                let wait = next_timer.map_or(max_wait, |t| t.min(max_wait));
                if wait.is_zero() || !bell.arm(pending) {
                    return Idle::Spun;
                }
                self.sleeps += 1;
                io.wait(wait, bell);
                if bell.disarm() {
                    Idle::Rung
                } else {
                    Idle::Slept
                }
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

    /// Records the waits it is asked for instead of sleeping; rings the
    /// doorbell from inside the wait when `ring_in_wait` is set (a producer
    /// on another thread, as far as the poller can tell).
    #[derive(Default)]
    struct Recorder {
        waits: Vec<Duration>,
        ring_in_wait: bool,
    }
    impl PacketIo for Recorder {
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
        fn wait(&mut self, t: Duration, bell: &Doorbell) {
            self.waits.push(t);
            if self.ring_in_wait {
                assert!(bell.ring(), "the worker is marked asleep during the wait");
            }
        }
        fn stats(&self) -> IoStats {
            IoStats::default()
        }
    }

    #[test]
    fn busy_never_waits() {
        let mut io = Recorder::default();
        let bell = Doorbell::new();
        let mut p = Poller::new(PollMode::Busy);
        for _ in 0..10_000 {
            p.idle(&mut io, &bell, false, None, || false);
        }
        assert!(io.waits.is_empty());
        assert_eq!(p.sleeps(), 0);
    }

    #[test]
    fn adaptive_spins_then_waits_bounded_by_timer_and_max() {
        let max_wait = Duration::from_millis(10);
        let mut io = Recorder::default();
        let bell = Doorbell::new();
        let mut p = Poller::new(PollMode::Adaptive {
            spin_polls: 3,
            max_wait,
        });
        p.idle(&mut io, &bell, false, None, || false);
        p.idle(&mut io, &bell, false, None, || false);
        assert!(io.waits.is_empty(), "still spinning");
        p.idle(&mut io, &bell, false, None, || false);
        p.idle(
            &mut io,
            &bell,
            false,
            Some(Duration::from_millis(2)),
            || false,
        );
        p.idle(&mut io, &bell, false, Some(Duration::from_secs(5)), || {
            false
        });
        assert_eq!(io.waits, vec![max_wait, Duration::from_millis(2), max_wait]);
        // Work resets the spin phase.
        p.idle(&mut io, &bell, true, None, || false);
        p.idle(&mut io, &bell, false, None, || false);
        p.idle(&mut io, &bell, false, None, || false);
        assert_eq!(io.waits.len(), 3, "spinning again after work");
        // A timer already due: no sleep at all.
        p.idle(&mut io, &bell, false, Some(Duration::ZERO), || false);
        assert_eq!(io.waits.len(), 3);
        p.idle(&mut io, &bell, false, None, || false);
        assert_eq!(io.waits.len(), 4);
    }

    #[test]
    fn work_queued_while_arming_cancels_the_sleep() {
        let mut io = Recorder::default();
        let bell = Doorbell::new();
        let mut p = Poller::new(PollMode::Adaptive {
            spin_polls: 0,
            max_wait: Duration::from_secs(10),
        });
        assert_eq!(p.idle(&mut io, &bell, false, None, || true), Idle::Spun);
        assert!(io.waits.is_empty(), "pending work: no sleep");
        assert!(!bell.ring(), "and the doorbell is not left armed");
        assert_eq!(p.idle(&mut io, &bell, false, None, || false), Idle::Slept);
        assert_eq!(io.waits.len(), 1);
    }

    #[test]
    fn a_ring_during_the_wait_is_reported() {
        let mut io = Recorder {
            ring_in_wait: true,
            ..Recorder::default()
        };
        let bell = Doorbell::new();
        let mut p = Poller::new(PollMode::Adaptive {
            spin_polls: 0,
            max_wait: Duration::from_secs(10),
        });
        assert_eq!(p.idle(&mut io, &bell, false, None, || false), Idle::Rung);
        assert!(!bell.ring(), "awake again");
    }
}
