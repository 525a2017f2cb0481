//! The poll-mode worker loop, generic over the packet I/O backend.
//!
//! One worker = one core = one queue pair = one shard of the connection
//! table. Each turn of the loop takes control-plane commands and decisions,
//! THOP replies relayed by other workers, a burst of received frames, then
//! due timers, and flushes what the engine transmitted. Nothing on this path
//! takes a lock or allocates once pools are warm; the only shared writes are
//! the lock-free queues.
//!
//! An idle worker in adaptive polling arms its doorbell before it blocks (see
//! [`crate::doorbell`]): whoever queues work for it rings, and the block ends
//! at once instead of at the next frame or timer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::{Direction, Session};
use crate::config::{ConfigError, WorkerConfig};
use crate::counters::{bump, Counters, DropReason};
use crate::dispatch::{DispatchRequest, WorkerCommand, WorkerEvent, WorkerQueues};
use crate::engine::{Engine, Sink};
use crate::io::poll::{Idle, Poller};
use crate::io::{PacketBuf, PacketIo};
use crate::peer::PeerMsg;

/// Adapts the worker's I/O and queues to the engine's [`Sink`].
struct LoopSink<'a, Io: PacketIo> {
    io: &'a mut Io,
    tx: &'a mut Vec<Io::Buf>,
    q: &'a WorkerQueues,
    counters: &'a Counters,
    burst: usize,
    /// The packet capture under way (see [`crate::capture`]), and now.
    capture: Option<(Arc<Session>, u64)>,
}

impl<Io: PacketIo> LoopSink<'_, Io> {
    fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        if let Some((s, now)) = &self.capture {
            for p in self.tx.iter() {
                s.offer(self.q.index, Direction::Out, *now, p.data());
            }
        }
        self.io.tx_burst(self.tx);
        // One retry: a ring that was momentarily full often has room now.
        if !self.tx.is_empty() {
            self.io.tx_burst(self.tx);
        }
        for _ in self.tx.drain(..) {
            self.counters.count_drop(DropReason::TxFull);
        }
    }
}

impl<Io: PacketIo> Sink<Io::Buf> for LoopSink<'_, Io> {
    fn alloc(&mut self) -> Option<Io::Buf> {
        self.io.alloc()
    }
    fn send(&mut self, pkt: Io::Buf) {
        self.tx.push(pkt);
        if self.tx.len() >= self.burst {
            self.flush();
        }
    }
    fn dispatch(&mut self, req: DispatchRequest) -> Result<(), DispatchRequest> {
        self.q.requests.try_send(req).map_err(|e| e.into_inner())
    }
    fn event(&mut self, ev: WorkerEvent) -> bool {
        self.q.events.try_send(ev).is_ok()
    }
    fn relay(&mut self, worker: u16, msg: PeerMsg) -> bool {
        self.q.shared.peers.push(worker, msg)
    }
}

/// One poll-mode worker.
pub struct Worker<Io: PacketIo> {
    engine: Engine<Io::Buf>,
    io: Io,
    queues: WorkerQueues,
    rx: Vec<Io::Buf>,
    tx: Vec<Io::Buf>,
    poller: Poller,
    burst: usize,
    stop: Option<bool>,
    counters: Arc<Counters>,
}

impl<Io: PacketIo> Worker<Io> {
    /// Worker `index` (must equal `queues.index`) over `io`.
    pub fn new(
        index: u16,
        cfg: &WorkerConfig,
        mut io: Io,
        queues: WorkerQueues,
    ) -> Result<Self, ConfigError> {
        // The queues decide which worker this is (THOP replies are relayed by
        // that index); a different `index` is a wiring bug.
        debug_assert_eq!(
            index, queues.index,
            "Worker::new index differs from its queues"
        );
        let counters = Arc::new(Counters::default());
        let mut engine = Engine::new(queues.index, cfg, counters.clone(), queues.shared.clone())?;
        if let Some(o) = io.take_offload() {
            engine.set_offload(o);
        }
        Ok(Worker {
            engine,
            io,
            rx: Vec::with_capacity(cfg.burst),
            tx: Vec::with_capacity(cfg.burst * 4),
            poller: Poller::new(cfg.poll),
            burst: cfg.burst,
            queues,
            stop: None,
            counters,
        })
    }

    /// Lets the worker decide requests itself where `d` can (see
    /// [`crate::dispatch::LocalDecider`]); without one every request goes to
    /// the control plane.
    pub fn set_decider(&mut self, d: Box<dyn crate::dispatch::LocalDecider>) {
        self.engine.set_decider(d);
    }

    /// The worker's counters (hand a clone to the exporter).
    pub fn counters(&self) -> Arc<Counters> {
        self.engine.counters().clone()
    }

    /// The state machine.
    pub fn engine(&self) -> &Engine<Io::Buf> {
        &self.engine
    }

    /// The packet I/O backend.
    pub fn io_mut(&mut self) -> &mut Io {
        &mut self.io
    }

    /// True once a Stop command ends the loop: at once, or after a graceful
    /// stop when nothing is left that only this process could finish (with
    /// flow recovery on, FORWARDING connections live on the agents and the
    /// next switch process takes them up).
    pub fn stopped(&self) -> bool {
        match self.stop {
            Some(true) => true,
            Some(false) => self.engine.unfinished() == 0,
            None => false,
        }
    }

    /// One turn of the loop at `now` (ns on the shared clock); returns the
    /// work done (frames, decisions, replies, commands).
    pub fn poll_once(&mut self, now: u64) -> usize {
        let Worker {
            engine,
            io,
            queues,
            rx,
            tx,
            burst,
            stop,
            counters,
            ..
        } = self;
        // One relaxed load when no capture runs.
        let capture = queues.shared.capture.current().map(|s| (s, now));
        let mut sink = LoopSink {
            io,
            tx,
            q: queues,
            counters,
            burst: *burst,
            capture,
        };
        let mut work = 0;
        while let Ok(c) = sink.q.commands.try_recv() {
            work += 1;
            match c {
                WorkerCommand::Drain => engine.drain(),
                WorkerCommand::Routing(u) => engine.install_routing(u),
                WorkerCommand::Recycle(h) => engine.recycle_header(h),
                WorkerCommand::Agents(a) => engine.set_agents(a),
                WorkerCommand::Stop { now } => {
                    engine.drain();
                    *stop = Some(now);
                }
            }
        }
        engine.start(now, &mut sink);
        for _ in 0..*burst {
            let Ok(d) = sink.q.decisions.try_recv() else {
                break;
            };
            work += 1;
            engine.handle_decision(now, d, &mut sink);
        }
        let me = sink.q.index;
        for _ in 0..*burst {
            let Some(m) = sink.q.shared.peers.pop(me) else {
                break;
            };
            work += 1;
            engine.handle_peer(now, m, &mut sink);
        }
        let n = sink.io.rx_burst(rx, *burst);
        work += n;
        if let Some((s, now)) = &sink.capture {
            for p in rx.iter() {
                s.offer(me, Direction::In, *now, p.data());
            }
        }
        engine.handle_burst(now, rx, &mut sink);
        engine.poll_recovery(now, &mut sink);
        if engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now, &mut sink);
        }
        sink.flush();
        work
    }

    /// Runs until `stop` is set or a Stop command ends it. Whoever sets
    /// `stop` should then ring the worker's doorbell (e.g.
    /// [`crate::dispatch::Commander::wake_all`]), or an idle worker notices
    /// only at the end of its current sleep (at most `max_wait`).
    pub fn run(&mut self, stop: &AtomicBool) {
        let shared = self.queues.shared.clone();
        let bell = self.queues.doorbell.clone();
        while !stop.load(Ordering::Relaxed) && !self.stopped() {
            let now = shared.now_ns();
            let work = self.poll_once(now);
            let next = self
                .engine
                .poll_timeout()
                .map(|t| Duration::from_nanos(t.saturating_sub(now)));
            let queues = &self.queues;
            let pending = || queues.pending() || stop.load(Ordering::Relaxed);
            match self
                .poller
                .idle(&mut self.io, &bell, work > 0, next, pending)
            {
                Idle::Spun => {}
                Idle::Slept => bump(&self.counters.idle_sleeps, 1),
                Idle::Rung => {
                    bump(&self.counters.idle_sleeps, 1);
                    bump(&self.counters.doorbell_wakeups, 1);
                }
            }
        }
        self.engine.count_abandoned();
    }
}
