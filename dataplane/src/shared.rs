//! State shared by all workers of one switch: the inter-worker THOP reply
//! queues, the ARP cache, the THOP message sequence counter, the THOP replay
//! windows, the flow-recovery directory, the boot and the clock epoch. Created once by [`crate::dispatch::channels`] and handed to every
//! worker inside its [`crate::dispatch::WorkerQueues`].

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use handoff_proto::{Now, ReplayGuards, SeqCounter, DEFAULT_MAX_SKEW_MS, NOT_BEFORE_SLACK_MS};

use crate::arp::ArpCache;
use crate::peer::PeerQueues;
use crate::recovery::Recovery;

/// Most flow records waiting to be claimed after a resync (memory grows
/// with what agents report, about 100 bytes a record, not with this bound).
pub const DIRECTORY_CAPACITY: usize = 1 << 20;

/// Everything workers share (read-mostly; no lock on the packet path).
#[derive(Debug)]
pub struct Shared {
    /// THOP replies relayed to the owning worker.
    pub peers: PeerQueues,
    /// Backend MACs.
    pub arp: ArpCache,
    /// THOP `msg_seq` of this switch (one sender node, many threads).
    pub thop_seq: SeqCounter,
    /// Replay windows per authenticated sender node, one for all workers:
    /// an agent's frame is accepted once by the switch, whichever worker the
    /// NIC's hash (e.g. a changed UDP source port) delivers it to. THOP
    /// frames come a few per connection, so the lock is cold.
    pub thop_replay: Mutex<ReplayGuards>,
    /// Flows recovered from the agents (`docs/thop.md` §9.4).
    pub recovery: Recovery,
    /// Zero of the workers' monotonic clock.
    pub epoch: Instant,
    /// Wall-clock milliseconds at `epoch` (THOP timestamps are wall-clock).
    pub epoch_unix_ms: u64,
    /// The packet capture under way, if any.
    pub capture: crate::capture::Tap,
}

impl Shared {
    /// Shared state for `n` workers with peer queues of `capacity`.
    pub fn new(n: usize, capacity: usize) -> Shared {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Shared {
            peers: PeerQueues::new(n, capacity),
            arp: ArpCache::new(),
            thop_seq: SeqCounter::new(unix),
            thop_replay: Mutex::new(ReplayGuards::new(DEFAULT_MAX_SKEW_MS, 4096).with_start(
                Now {
                    wall_ms: unix,
                    mono_ms: 0,
                },
                NOT_BEFORE_SLACK_MS,
            )),
            recovery: Recovery::new(DIRECTORY_CAPACITY),
            epoch: Instant::now(),
            epoch_unix_ms: unix,
            capture: Default::default(),
        }
    }

    /// Nanoseconds since the epoch (the `now` workers pass to the engine).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Wakes every worker (records for their outstanding lookups arrived,
    /// or an agent restarted).
    pub fn wake_all(&self) {
        for w in 0..self.peers.len() {
            if let Some(b) = self.peers.doorbell(w as u16) {
                b.ring();
            }
        }
    }
}
