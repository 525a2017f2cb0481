//! THOP replies relayed between workers.
//!
//! THOP replies (ACK, NACK, CLOSE) arrive at whichever worker the NIC or the
//! fanout chose for the UDP flow; the connection id names the owning worker.
//! The receiving worker decodes and authenticates the frame and pushes a small
//! [`PeerMsg`] on the owner's lock-free queue; the owner applies it on its
//! next poll. A full queue drops the reply (counted): the agent's or the
//! switch's retransmission recovers it.

use crossbeam_queue::ArrayQueue;

use crate::dispatch::ConnToken;

/// What a THOP reply asks the owning worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerReply {
    /// THOP_ACK: the agent adopted the connection.
    Ack,
    /// THOP_NACK with its reason code.
    Nack(u16),
    /// THOP_CLOSE: the backend socket closed.
    Close,
}

/// One relayed reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMsg {
    pub token: ConnToken,
    pub reply: PeerReply,
    /// THOP node id of the agent that sent it.
    pub sender: u32,
    /// For ACK/NACK: the `msg_seq` of the CREATE fragment answered.
    pub echo_seq: u64,
}

/// One bounded queue per worker.
#[derive(Debug)]
pub struct PeerQueues {
    queues: Vec<ArrayQueue<PeerMsg>>,
}

impl PeerQueues {
    /// Queues for `n` workers, `capacity` replies each.
    pub fn new(n: usize, capacity: usize) -> Self {
        PeerQueues {
            queues: (0..n).map(|_| ArrayQueue::new(capacity.max(1))).collect(),
        }
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// True when there are no workers.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Pushes to `worker`'s queue; false when it is full or does not exist.
    pub fn push(&self, worker: u16, msg: PeerMsg) -> bool {
        match self.queues.get(worker as usize) {
            Some(q) => q.push(msg).is_ok(),
            None => false,
        }
    }

    /// Takes the next reply for `worker`.
    pub fn pop(&self, worker: u16) -> Option<PeerMsg> {
        self.queues.get(worker as usize)?.pop()
    }
}
