//! Replay protection (spec §7.4): a receiver accepts an authenticated frame
//! only if its timestamp is within a window of the receiver's clock and its
//! message sequence number was not seen before. Sequence numbers are tracked
//! with a sliding bitmap, as IPsec's anti-replay window (RFC 4303 §3.4.3,
//! implemented in the ring form of RFC 6479).
//!
//! Check replay only *after* the tag verified, so forged frames cannot move
//! the window.

use core::fmt;
use std::collections::HashMap;

use crate::header::Header;

/// Sequence numbers remembered behind the highest one seen.
pub const REPLAY_WINDOW: u64 = 1024;
/// Default accepted clock difference between sender and receiver.
pub const DEFAULT_MAX_SKEW_MS: u64 = 30_000;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Why a frame was refused as a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayError {
    /// The timestamp is older than `now − max_skew`.
    TooOld {
        /// How far behind `now` the timestamp is, in ms.
        behind_ms: u64,
    },
    /// The timestamp is later than `now + max_skew`.
    TooNew {
        /// How far ahead of `now` the timestamp is, in ms.
        ahead_ms: u64,
    },
    /// This sequence number was accepted before.
    Duplicate(u64),
    /// The sequence number is older than the window remembers.
    BehindWindow(u64),
    /// A new sender, but the table of senders is full.
    TooManyPeers,
}

impl ReplayError {
    /// Every value [`ReplayError::label`] can return.
    pub const LABELS: &'static [&'static str] = &[
        "timestamp_too_old",
        "timestamp_too_new",
        "duplicate_seq",
        "seq_behind_window",
        "too_many_peers",
    ];

    /// A stable snake_case label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReplayError::TooOld { .. } => "timestamp_too_old",
            ReplayError::TooNew { .. } => "timestamp_too_new",
            ReplayError::Duplicate(_) => "duplicate_seq",
            ReplayError::BehindWindow(_) => "seq_behind_window",
            ReplayError::TooManyPeers => "too_many_peers",
        }
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::TooOld { behind_ms } => write!(f, "timestamp {behind_ms} ms in the past"),
            ReplayError::TooNew { ahead_ms } => write!(f, "timestamp {ahead_ms} ms in the future"),
            ReplayError::Duplicate(s) => write!(f, "message sequence {s} already seen"),
            ReplayError::BehindWindow(s) => {
                write!(f, "message sequence {s} behind the replay window")
            }
            ReplayError::TooManyPeers => f.write_str("too many senders"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Anti-replay state for one sender (one node id).
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    max_skew_ms: u64,
    /// Highest sequence number accepted; `None` before the first frame.
    highest: Option<u64>,
    /// Bit `s % REPLAY_WINDOW` is set when `s` (within the window) was seen.
    bitmap: [u64; WORDS],
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_MAX_SKEW_MS)
    }
}

impl ReplayGuard {
    /// A guard accepting timestamps within ±`max_skew_ms` of the receiver's clock.
    pub fn new(max_skew_ms: u64) -> ReplayGuard {
        ReplayGuard {
            max_skew_ms,
            highest: None,
            bitmap: [0; WORDS],
        }
    }

    /// The highest sequence number accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = (seq % REPLAY_WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// Checks without recording.
    pub fn check(&self, msg_seq: u64, timestamp_ms: u64, now_ms: u64) -> Result<(), ReplayError> {
        if timestamp_ms < now_ms && now_ms - timestamp_ms > self.max_skew_ms {
            return Err(ReplayError::TooOld {
                behind_ms: now_ms - timestamp_ms,
            });
        }
        if timestamp_ms > now_ms && timestamp_ms - now_ms > self.max_skew_ms {
            return Err(ReplayError::TooNew {
                ahead_ms: timestamp_ms - now_ms,
            });
        }
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if msg_seq > highest {
            return Ok(());
        }
        if highest - msg_seq >= REPLAY_WINDOW {
            return Err(ReplayError::BehindWindow(msg_seq));
        }
        let (w, m) = Self::bit(msg_seq);
        if self.bitmap[w] & m != 0 {
            return Err(ReplayError::Duplicate(msg_seq));
        }
        Ok(())
    }

    /// Checks and, if acceptable, records the frame as seen.
    pub fn accept(
        &mut self,
        msg_seq: u64,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), ReplayError> {
        self.check(msg_seq, timestamp_ms, now_ms)?;
        match self.highest {
            Some(h) if msg_seq <= h => {}
            Some(h) => {
                // Slide: forget the slots that now fall out of the window.
                let advance = msg_seq - h;
                if advance >= REPLAY_WINDOW {
                    self.bitmap = [0; WORDS];
                } else {
                    for s in h + 1..=msg_seq {
                        let (w, m) = Self::bit(s);
                        self.bitmap[w] &= !m;
                    }
                }
                self.highest = Some(msg_seq);
            }
            None => self.highest = Some(msg_seq),
        }
        let (w, m) = Self::bit(msg_seq);
        self.bitmap[w] |= m;
        Ok(())
    }
}

/// One [`ReplayGuard`] per sender node id, with a bound on how many senders
/// are tracked (only authenticated frames reach it, so the bound is against
/// misconfiguration, not attackers).
#[derive(Debug, Clone)]
pub struct ReplayGuards {
    max_skew_ms: u64,
    max_peers: usize,
    not_before_ms: u64,
    peers: HashMap<u32, ReplayGuard>,
}

impl Default for ReplayGuards {
    fn default() -> Self {
        ReplayGuards::new(DEFAULT_MAX_SKEW_MS, 1024)
    }
}

impl ReplayGuards {
    /// A table for at most `max_peers` senders.
    pub fn new(max_skew_ms: u64, max_peers: usize) -> ReplayGuards {
        ReplayGuards {
            max_skew_ms,
            max_peers,
            not_before_ms: 0,
            peers: HashMap::new(),
        }
    }

    /// Also refuses frames stamped before `start_ms` (the receiver's start
    /// time): a restarted receiver has lost its sequence windows, and this
    /// keeps frames captured before the restart from being replayed to it
    /// (spec §11).
    pub fn with_not_before(mut self, start_ms: u64) -> ReplayGuards {
        self.not_before_ms = start_ms;
        self
    }

    /// Checks and records an authenticated frame's header.
    pub fn accept(&mut self, header: &Header, now_ms: u64) -> Result<(), ReplayError> {
        if header.timestamp_ms < self.not_before_ms {
            return Err(ReplayError::TooOld {
                behind_ms: now_ms.saturating_sub(header.timestamp_ms),
            });
        }
        let n = self.peers.len();
        let guard = match self.peers.get_mut(&header.sender) {
            Some(g) => g,
            None if n >= self.max_peers => return Err(ReplayError::TooManyPeers),
            None => self
                .peers
                .entry(header.sender)
                .or_insert_with(|| ReplayGuard::new(self.max_skew_ms)),
        };
        guard.accept(header.msg_seq, header.timestamp_ms, now_ms)
    }

    /// Forgets a sender (e.g. removed from configuration).
    pub fn forget(&mut self, sender: u32) {
        self.peers.remove(&sender);
    }

    /// Number of senders tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}
