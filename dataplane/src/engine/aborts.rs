//! ABORTs waiting for the agent's ACK.
//!
//! An ABORT tells an agent to drop a connection it may have adopted (its ACK
//! was lost, or came too late). If the ABORT were lost too, that agent would
//! keep a socket for a client connection the switch has handed to another
//! backend: two servers answering one client. So, like a CREATE, an ABORT is
//! sent again with back-off until the agent acknowledges it (agents answer
//! ABORT with ACK even for a connection they do not know), and given up only
//! after the last try, counted.
//!
//! The list is small (an ABORT is rare: a handoff timed out or a client left
//! during one) and bounded; when it is full the oldest entry is given up.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::wire::Mac;

/// One ABORT to retransmit until acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingAbort {
    pub to: SocketAddr,
    pub mac: Mac,
    /// THOP node id of the agent (answers are matched on it).
    pub node: u32,
    pub conn_id: u64,
    pub reason: handoff_proto::AbortReason,
    /// `msg_seq` of the first transmission: an ACK echoing this or a later
    /// one answers the ABORT (the CREATE's ACK echoes an earlier one).
    pub first_seq: u64,
    /// Transmissions so far.
    pub sent: u32,
    /// When to send it again (worker clock, ns).
    pub due_ns: u64,
}

/// The pending ABORTs of one worker, in order of their next transmission.
#[derive(Debug)]
pub(crate) struct PendingAborts {
    list: VecDeque<PendingAbort>,
    cap: usize,
}

impl PendingAborts {
    pub fn new(cap: usize) -> PendingAborts {
        PendingAborts {
            list: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Adds one; returns the entry given up to make room, if any.
    pub fn push(&mut self, a: PendingAbort) -> Option<PendingAbort> {
        let evicted = (self.list.len() >= self.cap)
            .then(|| self.list.pop_front())
            .flatten();
        let at = self.list.partition_point(|p| p.due_ns <= a.due_ns);
        self.list.insert(at, a);
        evicted
    }

    /// An ACK from `node` for `conn_id` echoing `echo_seq`: removes the ABORT
    /// it answers, if any.
    pub fn acked(&mut self, node: u32, conn_id: u64, echo_seq: u64) -> bool {
        match self
            .list
            .iter()
            .position(|p| p.node == node && p.conn_id == conn_id && echo_seq >= p.first_seq)
        {
            Some(i) => {
                self.list.remove(i);
                true
            }
            None => false,
        }
    }

    /// The earliest retransmission time.
    pub fn next_due(&self) -> Option<u64> {
        self.list.front().map(|p| p.due_ns)
    }

    /// Takes the first entry due at `now`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<PendingAbort> {
        if self.list.front()?.due_ns <= now_ns {
            self.list.pop_front()
        } else {
            None
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(conn_id: u64, due_ns: u64) -> PendingAbort {
        PendingAbort {
            to: "198.18.0.20:9199".parse().unwrap(),
            mac: [2, 0, 0, 0, 0, 1],
            node: 7,
            conn_id,
            reason: handoff_proto::AbortReason::HandoffTimeout,
            first_seq: 100,
            sent: 1,
            due_ns,
        }
    }

    #[test]
    fn kept_in_due_order_bounded_and_matched_by_node_id_and_seq() {
        let mut a = PendingAborts::new(3);
        assert_eq!(a.push(p(1, 30)), None);
        assert_eq!(a.push(p(2, 10)), None);
        assert_eq!(a.push(p(3, 20)), None);
        assert_eq!(a.next_due(), Some(10));
        // Full: the oldest-due one is given up.
        assert_eq!(a.push(p(4, 40)).map(|x| x.conn_id), Some(2));
        // The CREATE's late ACK (earlier seq) or another node's ACK: no match.
        assert!(!a.acked(7, 3, 99));
        assert!(!a.acked(8, 3, 100));
        assert!(a.acked(7, 3, 101));
        assert_eq!(a.len(), 2);
        assert_eq!(a.pop_due(29), None);
        assert_eq!(a.pop_due(30).map(|x| x.conn_id), Some(1));
    }
}
