//! Replay protection (spec §7.4): a receiver accepts an authenticated frame
//! only if its timestamp is within a window of the receiver's clock and its
//! message sequence number was not seen before. Sequence numbers are tracked
//! with a sliding bitmap, as IPsec's anti-replay window (RFC 4303 §3.4.3,
//! implemented in the ring form of RFC 6479).
//!
//! Check replay only *after* the tag verified, so forged frames cannot move
//! the window.
//!
//! Time comes in two readings ([`Now`]): the wall clock, which may be stepped
//! (NTP, an operator) and is only used for a sender's first frame, and a
//! monotonic clock, which never steps. Once a sender's frame was accepted,
//! its next timestamps are compared with that frame's timestamp plus the
//! monotonic time elapsed since, so a step of either host's wall clock does
//! not cut THOP off (spec §7.4).

use core::fmt;
use std::collections::HashMap;

use crate::header::Header;

/// Sequence numbers remembered behind the highest one seen.
pub const REPLAY_WINDOW: u64 = 1024;
/// Default accepted clock difference between sender and receiver.
pub const DEFAULT_MAX_SKEW_MS: u64 = 30_000;
/// How far before a receiver's start a frame may be stamped and still be
/// accepted (clock difference between two NTP-synchronised hosts, plus
/// transit); see [`ReplayGuards::with_start`].
pub const NOT_BEFORE_SLACK_MS: u64 = 1_000;

/// A receiver's reading of its clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, ms since the Unix epoch (may step).
    pub wall_ms: u64,
    /// Monotonic clock, ms since any fixed origin (never steps).
    pub mono_ms: u64,
}

impl Now {
    /// Both readings from one wall-clock value (tests and callers without
    /// a monotonic clock: then wall-clock steps are not tolerated).
    pub fn wall(ms: u64) -> Now {
        Now {
            wall_ms: ms,
            mono_ms: ms,
        }
    }
}

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
    /// Stamped before this receiver started (a frame captured before a
    /// restart, replayed to the new process).
    BeforeStart {
        /// How far before the receiver's start, in ms.
        early_ms: u64,
    },
}

impl ReplayError {
    /// Every value [`ReplayError::label`] can return.
    pub const LABELS: &'static [&'static str] = &[
        "timestamp_too_old",
        "timestamp_too_new",
        "duplicate_seq",
        "seq_behind_window",
        "too_many_peers",
        "before_receiver_start",
    ];

    /// A stable snake_case label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReplayError::TooOld { .. } => "timestamp_too_old",
            ReplayError::TooNew { .. } => "timestamp_too_new",
            ReplayError::Duplicate(_) => "duplicate_seq",
            ReplayError::BehindWindow(_) => "seq_behind_window",
            ReplayError::TooManyPeers => "too_many_peers",
            ReplayError::BeforeStart { .. } => "before_receiver_start",
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
            ReplayError::BeforeStart { early_ms } => {
                write!(f, "timestamp {early_ms} ms before this receiver started")
            }
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
    /// The last accepted frame's timestamp and the receiver's monotonic
    /// time then: where the sender's clock is expected to be now.
    anchor: Option<(u64, u64)>,
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
            anchor: None,
        }
    }

    /// A guard that resumes a previous receiver process's window: every
    /// sequence number up to `highest` counts as seen (the previous process
    /// may have accepted any of them), so a frame it accepted cannot be
    /// replayed to this one. The timestamp anchor starts empty.
    pub fn resumed(max_skew_ms: u64, highest: u64) -> ReplayGuard {
        ReplayGuard {
            max_skew_ms,
            highest: Some(highest),
            bitmap: [u64::MAX; WORDS],
            anchor: None,
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

    /// Checks without recording (wall clock only, see [`Now::wall`]).
    pub fn check(&self, msg_seq: u64, timestamp_ms: u64, now_ms: u64) -> Result<(), ReplayError> {
        self.check_at(msg_seq, timestamp_ms, Now::wall(now_ms))
    }

    /// Where the sender's clock should be now, from the last accepted frame.
    fn expected(&self, now: Now) -> Option<u64> {
        self.anchor
            .map(|(ts, mono)| ts.saturating_add(now.mono_ms.saturating_sub(mono)))
    }

    /// The timestamp's distance from `reference`, as an error when beyond
    /// the skew.
    fn window(&self, timestamp_ms: u64, reference: u64) -> Result<(), ReplayError> {
        if timestamp_ms < reference && reference - timestamp_ms > self.max_skew_ms {
            return Err(ReplayError::TooOld {
                behind_ms: reference - timestamp_ms,
            });
        }
        if timestamp_ms > reference && timestamp_ms - reference > self.max_skew_ms {
            return Err(ReplayError::TooNew {
                ahead_ms: timestamp_ms - reference,
            });
        }
        Ok(())
    }

    /// Checks without recording. The timestamp must be within the skew of
    /// the sender's expected clock (last accepted timestamp plus monotonic
    /// time elapsed) or, failing that, of the receiver's wall clock (a first
    /// frame, or a sender that restarted after its clock was corrected).
    pub fn check_at(&self, msg_seq: u64, timestamp_ms: u64, now: Now) -> Result<(), ReplayError> {
        let by_wall = self.window(timestamp_ms, now.wall_ms);
        match self.expected(now) {
            Some(exp) => {
                let by_anchor = self.window(timestamp_ms, exp);
                if by_anchor.is_err() && by_wall.is_err() {
                    return by_anchor;
                }
            }
            None => by_wall?,
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

    /// Checks and, if acceptable, records the frame as seen (wall clock only).
    pub fn accept(
        &mut self,
        msg_seq: u64,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), ReplayError> {
        self.accept_at(msg_seq, timestamp_ms, Now::wall(now_ms))
    }

    /// Checks and, if acceptable, records the frame as seen and re-anchors
    /// the sender's expected clock on it.
    pub fn accept_at(
        &mut self,
        msg_seq: u64,
        timestamp_ms: u64,
        now: Now,
    ) -> Result<(), ReplayError> {
        self.check_at(msg_seq, timestamp_ms, now)?;
        // Frames of one sender may arrive slightly out of order: only a
        // later timestamp than expected moves the anchor forward, an earlier
        // one (within the skew) re-anchors only when the sender's clock was
        // evidently reset (it failed the anchor window and passed the wall's).
        let reanchor = match self.expected(now) {
            None => true,
            Some(exp) => timestamp_ms >= exp || self.window(timestamp_ms, exp).is_err(),
        };
        if reanchor {
            self.anchor = Some((timestamp_ms, now.mono_ms));
        }
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
    /// The receiver's start on its monotonic clock, and the slack allowed.
    start: Option<(u64, u64)>,
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
            start: None,
            peers: HashMap::new(),
        }
    }

    /// Also refuses frames stamped more than `slack_ms` before the
    /// receiver's start (`started`, read when it started): a restarted
    /// receiver has lost its sequence windows, and this keeps frames captured
    /// before the restart from being replayed to it (spec §11). The start is
    /// kept on the monotonic clock and turned into wall time at each check,
    /// so a later step of the wall clock moves it along.
    pub fn with_start(mut self, started: Now, slack_ms: u64) -> ReplayGuards {
        self.start = Some((started.mono_ms, slack_ms));
        self
    }

    /// The earliest acceptable timestamp on the wall clock of `now`.
    pub fn not_before(&self, now: Now) -> u64 {
        match self.start {
            None => 0,
            Some((mono, slack)) => now
                .wall_ms
                .saturating_sub(now.mono_ms.saturating_sub(mono))
                .saturating_sub(slack),
        }
    }

    /// Checks and records an authenticated frame's header (wall clock only).
    pub fn accept(&mut self, header: &Header, now_ms: u64) -> Result<(), ReplayError> {
        self.accept_at(header, Now::wall(now_ms))
    }

    /// Checks and records an authenticated frame's header.
    pub fn accept_at(&mut self, header: &Header, now: Now) -> Result<(), ReplayError> {
        let n = self.peers.len();
        let known = self.peers.contains_key(&header.sender);
        // A sender already heard from since the start is checked against its
        // own timeline; the first frame, or one that fails it, must also be
        // stamped after the start.
        let nb = self.not_before(now);
        let anchored_ok = known
            && self.peers[&header.sender].expected(now).is_some_and(|exp| {
                self.peers[&header.sender]
                    .window(header.timestamp_ms, exp)
                    .is_ok()
            });
        if !anchored_ok && header.timestamp_ms < nb {
            return Err(ReplayError::BeforeStart {
                early_ms: nb.saturating_add(self.start.map_or(0, |s| s.1)) - header.timestamp_ms,
            });
        }
        let guard = match self.peers.get_mut(&header.sender) {
            Some(g) => g,
            None if n >= self.max_peers => return Err(ReplayError::TooManyPeers),
            None => self
                .peers
                .entry(header.sender)
                .or_insert_with(|| ReplayGuard::new(self.max_skew_ms)),
        };
        guard.accept_at(header.msg_seq, header.timestamp_ms, now)
    }

    /// Resumes `sender`'s window where a previous receiver process left it
    /// (see [`ReplayGuard::resumed`]): the receiver's persisted state, which
    /// closes the gap the start slack leaves (frames stamped just before a
    /// restart). A sender already heard from keeps its window.
    pub fn resume(&mut self, sender: u32, highest: u64) {
        self.peers
            .entry(sender)
            .or_insert_with(|| ReplayGuard::resumed(self.max_skew_ms, highest));
    }

    /// The highest sequence number accepted from `sender`.
    pub fn highest(&self, sender: u32) -> Option<u64> {
        self.peers.get(&sender).and_then(ReplayGuard::highest)
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
