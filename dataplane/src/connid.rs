//! THOP connection ids: what a switch calls a connection in every frame.
//!
//! An id must never name two connections within the THOP window (an agent
//! remembers closed ids for two minutes to recognize retransmitted CREATEs,
//! and a late CLOSE or ACK must not land on a newer connection). So an id is
//! built from parts that do not repeat in that time:
//!
//! ```text
//!  63   62..55   54..47   46..23   22..0
//!  1  | boot   | worker | serial | slot
//! ```
//!
//! - the top bit is always set, so no id is 0;
//! - `boot` is random per start of the switch: a restarted switch does not
//!   take its predecessor's ids (whose connections the agents still serve),
//!   and replies about the old instance's ids are told apart;
//! - `worker` routes a reply to the worker owning the connection;
//! - `serial` is the worker's connection counter, starting at a random value
//!   and stored in the table entry (its generation): it repeats only after
//!   2^24 connections on one worker — 120 s at 140,000 new connections per
//!   second on every worker, about twenty times what one worker does;
//! - `slot` is the table slot (tables hold at most 2^23 slots per worker).
//!
//! Agents also compare a retransmitted CREATE's client address and initial
//! sequence number with the connection they know under that id, so even a
//! repeated id cannot make an agent take a new connection for an old one.

use crate::table::SERIAL_MASK;

/// Identifies one connection of one worker; opaque to the control plane,
/// echoed back in the decision. Carries a generation so a stale decision for a
/// reused table slot is recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnToken {
    pub worker: u16,
    pub slot: u32,
    pub generation: u32,
}

const SLOT_BITS: u32 = 23;
const SERIAL_SHIFT: u32 = SLOT_BITS;
const WORKER_SHIFT: u32 = 47;
const BOOT_SHIFT: u32 = 55;
/// Largest table (slots per worker) an id can name.
pub const MAX_TABLE_SLOTS: usize = 1 << SLOT_BITS;

/// How one switch instance lays out its connection ids; identical for all
/// its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdLayout {
    boot: u8,
}

impl IdLayout {
    /// The layout of the switch instance `boot`.
    pub fn new(boot: u8) -> IdLayout {
        IdLayout { boot }
    }

    /// The id of a connection.
    #[inline]
    pub fn conn_id(&self, t: ConnToken) -> u64 {
        (1 << 63)
            | ((self.boot as u64) << BOOT_SHIFT)
            | (((t.worker & 0xff) as u64) << WORKER_SHIFT)
            | (((t.generation & SERIAL_MASK) as u64) << SERIAL_SHIFT)
            | (t.slot as u64 & (MAX_TABLE_SLOTS as u64 - 1))
    }

    /// The connection an id names, or `None` when it is not one of this
    /// switch instance's ids (another instance's, or not an id at all).
    #[inline]
    pub fn token_of(&self, id: u64) -> Option<ConnToken> {
        if id >> 63 != 1 || ((id >> BOOT_SHIFT) & 0xff) as u8 != self.boot {
            return None;
        }
        Some(ConnToken {
            worker: ((id >> WORKER_SHIFT) & 0xff) as u16,
            generation: (id >> SERIAL_SHIFT) as u32 & SERIAL_MASK,
            slot: (id & (MAX_TABLE_SLOTS as u64 - 1)) as u32,
        })
    }
}

/// A random, non-zero boot identity for a new switch instance.
pub fn random_boot() -> u32 {
    let b = crate::entropy::random_secret();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(worker: u16, slot: u32, generation: u32) -> ConnToken {
        ConnToken {
            worker,
            slot,
            generation,
        }
    }

    #[test]
    fn ids_round_trip_and_are_never_zero() {
        let l = IdLayout::new(0xa5);
        for tok in [
            t(0, 0, 0),
            t(7, MAX_TABLE_SLOTS as u32 - 1, SERIAL_MASK),
            t(255, 3, 1),
        ] {
            let id = l.conn_id(tok);
            assert_ne!(id, 0);
            assert_eq!(l.token_of(id), Some(tok));
        }
        assert_eq!(l.token_of(42), None);
    }

    #[test]
    fn another_boot_does_not_recognize_the_id() {
        let a = IdLayout::new(1);
        let b = IdLayout::new(2);
        let id = a.conn_id(t(0, 5, 9));
        assert_eq!(b.token_of(id), None);
        assert_ne!(b.conn_id(t(0, 5, 9)), id);
    }

    #[test]
    fn serials_leave_two_minutes_between_repeats() {
        // 2^24 connections at 140,000/s on one worker: 120 s.
        assert!((SERIAL_MASK as u64 + 1) / 140_000 >= 119);
    }
}
