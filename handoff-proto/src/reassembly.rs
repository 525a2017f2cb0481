//! The agent side of CREATE fragmentation (spec §6.4): collects fragments per
//! (sender, connection id) until the request is complete. Bounded: a limit on
//! the request size, on partial requests and on total memory; partial state
//! not touched for `timeout_ms` is dropped by [`Reassembler::expire`]. Time is
//! an argument (no clock).
//!
//! Idempotence is the agent's job: it checks its table of adopted connection
//! ids *before* pushing, and answers a CREATE for an adopted id with ACK
//! again (flag DUPLICATE) instead of reassembling it a second time.

use core::fmt;
use std::collections::HashMap;

use crate::create::{CreateFragment, TcpState};
use crate::reasons::NackReason;

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Largest request accepted (the spec requires at least 64 KiB).
    pub max_request_len: u32,
    /// Most connections in reassembly at once.
    pub max_pending: usize,
    /// Most bytes held by partial requests together.
    pub memory_limit: usize,
    /// A partial request not advanced for this long is dropped.
    pub timeout_ms: u64,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_request_len: 1 << 20,
            max_pending: 4096,
            memory_limit: 64 << 20,
            timeout_ms: 5_000,
        }
    }
}

/// Most separate byte ranges one partial request may have (bounds the work
/// per fragment; a sane sender produces contiguous fragments).
pub const MAX_RANGES: usize = 1024;

/// Why a fragment was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassemblyError {
    /// The request is longer than `max_request_len`.
    TooLarge {
        /// The announced length.
        total_len: u32,
        /// The configured limit.
        limit: u32,
    },
    /// `max_pending` connections are in reassembly already.
    TooManyPending,
    /// Accepting the request would exceed `memory_limit`.
    NoMemory,
    /// The fragments of this connection left too many holes.
    TooFragmented,
}

impl ReassemblyError {
    /// Every value [`ReassemblyError::label`] can return.
    pub const LABELS: &'static [&'static str] = &[
        "request_too_large",
        "too_many_pending",
        "no_memory",
        "too_fragmented",
    ];

    /// A stable snake_case label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReassemblyError::TooLarge { .. } => "request_too_large",
            ReassemblyError::TooManyPending => "too_many_pending",
            ReassemblyError::NoMemory => "no_memory",
            ReassemblyError::TooFragmented => "too_fragmented",
        }
    }

    /// The NACK reason to answer the CREATE with.
    pub fn nack_reason(&self) -> NackReason {
        match self {
            ReassemblyError::TooLarge { .. } => NackReason::RequestTooLarge,
            ReassemblyError::TooManyPending => NackReason::BacklogFull,
            ReassemblyError::NoMemory => NackReason::NoMemory,
            ReassemblyError::TooFragmented => NackReason::BadState,
        }
    }
}

impl fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReassemblyError::TooLarge { total_len, limit } => {
                write!(f, "request of {total_len} bytes exceeds limit {limit}")
            }
            ReassemblyError::TooManyPending => f.write_str("too many partial requests"),
            ReassemblyError::NoMemory => f.write_str("reassembly memory limit reached"),
            ReassemblyError::TooFragmented => f.write_str("too many holes in partial request"),
        }
    }
}

impl std::error::Error for ReassemblyError {}

/// A complete CREATE: ready to adopt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// Node id of the switch that sent it.
    pub sender: u32,
    /// The connection id (echo it in ACK/NACK/CLOSE).
    pub conn_id: u64,
    /// The TCP state.
    pub state: TcpState,
    /// The request bytes, in order.
    pub request: Vec<u8>,
}

#[derive(Debug)]
struct Partial {
    total_len: u32,
    buf: Vec<u8>,
    /// Received half-open byte ranges, sorted and merged.
    ranges: Vec<(u32, u32)>,
    state: Option<TcpState>,
    last_ms: u64,
}

impl Partial {
    fn insert(&mut self, start: u32, end: u32) -> Result<(), ReassemblyError> {
        if start == end {
            return Ok(());
        }
        let mut merged = (start, end);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(s, e) in &self.ranges {
            if e < merged.0 {
                out.push((s, e));
            } else if s > merged.1 {
                if !placed {
                    out.push(merged);
                    placed = true;
                }
                out.push((s, e));
            } else {
                merged = (merged.0.min(s), merged.1.max(e));
            }
        }
        if !placed {
            out.push(merged);
        }
        if out.len() > MAX_RANGES {
            return Err(ReassemblyError::TooFragmented);
        }
        self.ranges = out;
        Ok(())
    }

    fn complete(&self) -> bool {
        self.state.is_some() && (self.total_len == 0 || self.ranges == [(0, self.total_len)])
    }

    fn received(&self) -> u32 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }
}

/// Per-connection reassembly of CREATE fragments, bounded in memory.
#[derive(Debug)]
pub struct Reassembler {
    cfg: ReassemblyConfig,
    pending: HashMap<(u32, u64), Partial>,
    memory: usize,
}

impl Reassembler {
    /// An empty reassembler with these limits.
    pub fn new(cfg: ReassemblyConfig) -> Reassembler {
        Reassembler {
            cfg,
            pending: HashMap::new(),
            memory: 0,
        }
    }

    /// The limits.
    pub fn config(&self) -> &ReassemblyConfig {
        &self.cfg
    }

    /// Connections in reassembly.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held by partial requests.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Bytes received so far for a connection in reassembly, and its total.
    pub fn progress(&self, sender: u32, conn_id: u64) -> Option<(u32, u32)> {
        self.pending
            .get(&(sender, conn_id))
            .map(|p| (p.received(), p.total_len))
    }

    /// Adds one authenticated, replay-checked fragment (as returned by
    /// [`CreateFragment::decode`]; a hand-built one whose data runs past
    /// `total_len` is ignored). Returns the whole
    /// CREATE when this fragment completes it. Duplicate and overlapping
    /// fragments are harmless (first bytes win). A fragment announcing a
    /// larger `total_len` than the partial state (the switch acknowledged more
    /// bytes and resent) restarts the reassembly; a smaller one is stale and
    /// ignored.
    pub fn push(
        &mut self,
        sender: u32,
        conn_id: u64,
        frag: &CreateFragment<'_>,
        now_ms: u64,
    ) -> Result<Option<Assembled>, ReassemblyError> {
        if frag.total_len > self.cfg.max_request_len {
            self.remove(sender, conn_id);
            return Err(ReassemblyError::TooLarge {
                total_len: frag.total_len,
                limit: self.cfg.max_request_len,
            });
        }
        let key = (sender, conn_id);
        if let Some(p) = self.pending.get(&key) {
            if frag.total_len < p.total_len {
                return Ok(None);
            }
            if frag.total_len > p.total_len {
                self.remove(sender, conn_id);
            }
        }
        if !self.pending.contains_key(&key) {
            // Fast path: a single-fragment CREATE never enters the table.
            if let (true, Some(state)) = (frag.is_whole(), frag.state) {
                return Ok(Some(Assembled {
                    sender,
                    conn_id,
                    state,
                    request: frag.data.to_vec(),
                }));
            }
            self.make_room(frag.total_len as usize, now_ms)?;
            self.memory += frag.total_len as usize;
            self.pending.insert(
                key,
                Partial {
                    total_len: frag.total_len,
                    buf: vec![0; frag.total_len as usize],
                    ranges: Vec::new(),
                    state: None,
                    last_ms: now_ms,
                },
            );
        }
        // Invariant: the entry exists (found or inserted just above).
        let Some(p) = self.pending.get_mut(&key) else {
            return Ok(None);
        };
        let start = frag.offset;
        // Decoding guarantees offset + data.len() <= total_len; a hand-built
        // fragment that breaks it is ignored rather than trusted.
        let end = match u32::try_from(frag.data.len())
            .ok()
            .and_then(|n| start.checked_add(n))
        {
            Some(end) if end <= p.total_len => end,
            _ => return Ok(None),
        };
        let before = p.ranges.clone();
        if let Err(e) = p.insert(start, end) {
            self.remove(sender, conn_id);
            return Err(e);
        }
        // Copy only the bytes that were holes before (first bytes win).
        let mut cursor = start;
        for &(s, e) in before.iter().chain(std::iter::once(&(u32::MAX, u32::MAX))) {
            if cursor >= end {
                break;
            }
            if e <= cursor {
                continue;
            }
            let hole_end = s.min(end);
            if hole_end > cursor {
                let (a, b) = ((cursor - start) as usize, (hole_end - start) as usize);
                p.buf[cursor as usize..hole_end as usize].copy_from_slice(&frag.data[a..b]);
            }
            cursor = cursor.max(e);
        }
        if let Some(state) = frag.state {
            // A retransmission may carry fresher window/timestamp state.
            p.state = Some(state);
        }
        p.last_ms = now_ms;
        if !p.complete() {
            return Ok(None);
        }
        // complete() implies the state is present.
        let Some(state) = p.state else {
            return Ok(None);
        };
        let Some(p) = self.pending.remove(&key) else {
            return Ok(None);
        };
        self.memory -= p.total_len as usize;
        Ok(Some(Assembled {
            sender,
            conn_id,
            state,
            request: p.buf,
        }))
    }

    fn make_room(&mut self, need: usize, now_ms: u64) -> Result<(), ReassemblyError> {
        if self.pending.len() >= self.cfg.max_pending || self.memory + need > self.cfg.memory_limit
        {
            self.expire(now_ms);
        }
        if self.pending.len() >= self.cfg.max_pending {
            return Err(ReassemblyError::TooManyPending);
        }
        if self.memory + need > self.cfg.memory_limit {
            return Err(ReassemblyError::NoMemory);
        }
        Ok(())
    }

    /// Drops the partial state of a connection (ABORT); true if there was some.
    pub fn remove(&mut self, sender: u32, conn_id: u64) -> bool {
        match self.pending.remove(&(sender, conn_id)) {
            Some(p) => {
                self.memory -= p.total_len as usize;
                true
            }
            None => false,
        }
    }

    /// Drops partial requests idle for `timeout_ms` or longer; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let timeout = self.cfg.timeout_ms;
        let before = self.pending.len();
        let mut freed = 0usize;
        self.pending.retain(|_, p| {
            let keep = now_ms.saturating_sub(p.last_ms) < timeout;
            if !keep {
                freed += p.total_len as usize;
            }
            keep
        });
        self.memory -= freed;
        before - self.pending.len()
    }

    /// When [`Self::expire`] next has something to drop (ms), if anything is pending.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|p| p.last_ms.saturating_add(self.cfg.timeout_ms))
            .min()
    }
}
