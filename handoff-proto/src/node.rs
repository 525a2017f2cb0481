//! Node ids and message sequence numbers (spec §4.2): the two header fields a
//! sender keeps state for.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The default node id of a THOP endpoint: its IPv4 address as a big-endian
/// u32, or for IPv6 the first 4 bytes of BLAKE3 of the 16 address bytes.
/// Both ends know each other's THOP addresses from configuration, so node ids
/// need no configuration of their own.
pub fn node_id(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let h = blake3::hash(&a.octets());
            let b = h.as_bytes();
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        }
    }
}

/// The first message sequence number of a sender started at `now_ms`: the
/// clock in the high bits, so a restarted sender continues above everything
/// it sent before and receivers' replay windows accept it (spec §7.4).
pub fn initial_msg_seq(now_ms: u64) -> u64 {
    now_ms.saturating_mul(1 << 20)
}

/// A message sequence counter shared by the threads of one sender (one
/// atomic add per frame; frames are per connection, not per packet).
#[derive(Debug)]
pub struct SeqCounter(AtomicU64);

impl SeqCounter {
    /// A counter for a sender started at `now_ms` (see [`initial_msg_seq`]).
    pub fn new(now_ms: u64) -> SeqCounter {
        SeqCounter(AtomicU64::new(initial_msg_seq(now_ms)))
    }

    /// A counter starting at an explicit value (tests).
    pub fn starting_at(first: u64) -> SeqCounter {
        SeqCounter(AtomicU64::new(first))
    }

    /// The next sequence number; never the same twice.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}
