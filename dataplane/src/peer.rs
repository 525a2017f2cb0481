//! THOP replies relayed between workers.
//!
//! THOP replies (ACK, NACK, CLOSE) arrive at whichever worker the NIC or the
//! fanout chose for the UDP flow; the connection id names the owning worker.
//! The receiving worker decodes and authenticates the frame and pushes a small
//! [`PeerMsg`] on the owner's lock-free queue and rings the owner's
//! [`Doorbell`] (a write only when the owner sleeps in adaptive polling); the
//! owner applies it on its next poll. A full queue drops the reply (counted):
//! the agent's or the switch's retransmission recovers it.
//!
//! The doorbells of all workers live here, one per queue, because every
//! producer of a worker's work (this relay, the control plane's decisions
//! and commands) reaches them through the queue set.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::connid::ConnToken;
use crate::doorbell::Doorbell;

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

/// One bounded queue and one doorbell per worker.
#[derive(Debug)]
pub struct PeerQueues {
    queues: Vec<ArrayQueue<PeerMsg>>,
    bells: Vec<Arc<Doorbell>>,
}

impl PeerQueues {
    /// Queues for `n` workers, `capacity` replies each.
    pub fn new(n: usize, capacity: usize) -> Self {
        PeerQueues {
            queues: (0..n).map(|_| ArrayQueue::new(capacity.max(1))).collect(),
            bells: (0..n).map(|_| Arc::new(Doorbell::new())).collect(),
        }
    }

    /// `worker`'s doorbell.
    pub fn doorbell(&self, worker: u16) -> Option<&Arc<Doorbell>> {
        self.bells.get(worker as usize)
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// True when there are no workers.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Pushes to `worker`'s queue and wakes it if it sleeps; false when the
    /// queue is full or does not exist.
    pub fn push(&self, worker: u16, msg: PeerMsg) -> bool {
        let i = worker as usize;
        match self.queues.get(i) {
            Some(q) if q.push(msg).is_ok() => {
                self.bells[i].ring();
                true
            }
            _ => false,
        }
    }

    /// Takes the next reply for `worker`.
    pub fn pop(&self, worker: u16) -> Option<PeerMsg> {
        self.queues.get(worker as usize)?.pop()
    }

    /// True when nothing waits for `worker`.
    pub fn is_empty_for(&self, worker: u16) -> bool {
        self.queues
            .get(worker as usize)
            .is_none_or(|q| q.is_empty())
    }
}
