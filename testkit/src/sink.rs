//! A recording [`Sink`] for the dataplane engine: the engine's scenario,
//! hardening and THOP tests and its benches drive one `Engine` directly on a
//! virtual clock and need to see everything it emits (frames, dispatch
//! requests, events, relays to other workers).

use dataplane::dispatch::{DispatchRequest, WorkerEvent};
use dataplane::engine::Sink;
use dataplane::io::memory::{MemBuf, MemoryIo};
use dataplane::io::PacketIo;
use dataplane::peer::PeerMsg;

/// Records the engine's outputs; buffers come from an in-memory pool.
pub struct RecordingSink {
    pub io: MemoryIo,
    /// Frames sent, in order.
    pub out: Vec<MemBuf>,
    /// Dispatch requests queued to the control plane.
    pub requests: Vec<DispatchRequest>,
    /// Events reported to the control plane.
    pub events: Vec<WorkerEvent>,
    /// Messages relayed to other workers: (worker, message).
    pub relays: Vec<(u16, PeerMsg)>,
    /// When set, the dispatch queue is full: requests are refused.
    pub dispatch_full: bool,
}

impl RecordingSink {
    /// A sink with a pool of `buffers` packet buffers.
    pub fn new(buffers: usize) -> RecordingSink {
        RecordingSink {
            io: MemoryIo::new(buffers),
            out: Vec::new(),
            requests: Vec::new(),
            events: Vec::new(),
            relays: Vec::new(),
            dispatch_full: false,
        }
    }
}

impl Sink<MemBuf> for RecordingSink {
    fn alloc(&mut self) -> Option<MemBuf> {
        self.io.alloc()
    }
    #[inline]
    fn send(&mut self, pkt: MemBuf) {
        self.out.push(pkt);
    }
    fn dispatch(&mut self, req: DispatchRequest) -> Result<(), DispatchRequest> {
        if self.dispatch_full {
            return Err(req);
        }
        self.requests.push(req);
        Ok(())
    }
    fn event(&mut self, ev: WorkerEvent) -> bool {
        self.events.push(ev);
        true
    }
    fn relay(&mut self, worker: u16, msg: PeerMsg) -> bool {
        self.relays.push((worker, msg));
        true
    }
}
