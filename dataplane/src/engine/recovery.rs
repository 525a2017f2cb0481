//! Recovering FORWARDING flows from the agents (`docs/thop.md` §9.4).
//!
//! After a restart the table is empty, but the clients of handed-off
//! connections keep sending and the agents still hold the sockets. A segment
//! (other than a SYN) of a flow the worker does not know is therefore not
//! dropped at once:
//!
//! 1. the worker claims the flow's record from the shared directory, filled
//!    by the FLOWS that agents send when they see this switch's new boot,
//!    and installs a FORWARDING entry towards that agent's backend;
//! 2. without a record it asks every agent with LOOKUP, holds the segment
//!    (one per flow, the latest) and installs the entry when an answer lands
//!    in the directory; after `lookup_tries` unanswered LOOKUPs the segment
//!    is dropped (`unresolved`), as a segment of an unknown flow always was.
//!
//! Lookups are bounded per second and in number outstanding, so spoofed
//! segments cost the agents a bounded rate of LOOKUPs and the worker a
//! bounded amount of memory. The other direction is watched too: an agent
//! whose boot changes restarted and lost its sockets, and every worker frees
//! its entries towards that agent's backend.
//!
//! Worker 0 also says HELLO to every agent at start and every
//! `hello_interval`: that is how an agent learns of this switch's boot even
//! when no connection is handed to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use handoff_proto::{Body, FlowRecord, Hello, Lookup, Records};

use crate::config::AgentPeer;
use crate::counters::{bump, DropReason};
use crate::dispatch::WorkerEvent;
use crate::engine::{dur_ms, Engine, Forwarder, Sink};
use crate::io::PacketBuf;
use crate::recovery::{BootSeen, FlowTuple, Found};
use crate::state::State;
use crate::table::{FlowKey, Slot};
use crate::wire::{self, flags::*, TcpSeg};

/// A lookup this worker has outstanding.
struct Pending<B> {
    tuple: FlowTuple,
    /// When to ask again or give up (ns).
    due: u64,
    tries: u32,
    /// The latest segment of the flow, relayed once the entry exists.
    held: Option<B>,
}

/// One worker's recovery state.
pub(crate) struct RecoveryState<B> {
    agents: Arc<Vec<AgentPeer>>,
    pending: HashMap<FlowKey, Pending<B>>,
    /// Earliest pending deadline or HELLO (ns).
    due: Option<u64>,
    next_hello: u64,
    /// Token bucket for new lookups: tokens and when it was last filled (ns).
    tokens: f64,
    filled: u64,
    seen_generation: u64,
    /// The last boot this worker saw from each agent (saves the shared lock).
    boots: Vec<(u32, u32)>,
    /// Entries installed from a record: slot → (agent node, conn_id).
    installed: HashMap<u32, (u32, u64)>,
}

impl<B> RecoveryState<B> {
    pub(crate) fn new(lookups_per_sec: u32) -> Self {
        RecoveryState {
            agents: Arc::new(Vec::new()),
            pending: HashMap::new(),
            due: None,
            next_hello: 0,
            tokens: lookups_per_sec as f64,
            filled: 0,
            seen_generation: 0,
            boots: Vec::new(),
            installed: HashMap::new(),
        }
    }

    /// When [`Engine::poll_recovery`] has timed work (ns).
    pub(crate) fn due(&self) -> Option<u64> {
        self.due
    }
}

impl<B: PacketBuf, F: Forwarder> Engine<B, F> {
    /// The agents of every configured backend (from the control plane, at
    /// start and after each reload).
    pub fn set_agents(&mut self, agents: Arc<Vec<AgentPeer>>) {
        self.rec.agents = agents;
        if self.index == 0 && self.cfg.recovery.enabled {
            // Say HELLO to the new set at once.
            self.rec.next_hello = self.now_ns;
            self.rec.due = Some(self.rec.due.map_or(self.now_ns, |d| d.min(self.now_ns)));
        }
    }

    /// True when unknown flows are looked up (recovery on, agents known).
    #[inline]
    pub(crate) fn recovering(&self) -> bool {
        self.cfg.recovery.enabled && !self.rec.agents.is_empty()
    }

    /// Lookups this worker has outstanding.
    pub fn recovery_pending(&self) -> usize {
        self.rec.pending.len()
    }

    fn agent_by_node(&self, node: u32) -> Option<&AgentPeer> {
        self.rec
            .agents
            .iter()
            .find(|a| handoff_proto::node_id(a.thop.ip()) == node)
    }

    fn tuple_of(&self, key: &FlowKey) -> FlowTuple {
        let s = &self.svcs[key.service as usize];
        FlowTuple {
            client: SocketAddr::new(key.client_ip(), key.client_port),
            vip: SocketAddr::new(s.vip, s.port),
        }
    }

    /// A segment other than a SYN for a flow the table does not hold (and
    /// not a valid SYN cookie's ACK).
    pub(crate) fn on_unknown_flow<S: Sink<B>>(
        &mut self,
        now: u64,
        key: FlowKey,
        h: u64,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        if !self.recovering() {
            return self.counters.count_drop(DropReason::NoFlow);
        }
        let tuple = self.tuple_of(&key);
        if let Some(found) = self.shared.recovery.take(&tuple) {
            if let Some(i) = self.install_recovered(key, h, found, &seg, out) {
                bump(&self.counters.recovered_resync, 1);
                return self.on_forwarding(i, pkt, seg, out);
            }
            return;
        }
        if let Some(p) = self.rec.pending.get_mut(&key) {
            // The lookup runs: keep the latest segment (a cumulative ACK
            // says more than the one before it).
            let old = p.held.replace(pkt);
            if old.is_some() {
                self.counters.count_drop(DropReason::Recovering);
            } else {
                self.held_total += 1;
            }
            return;
        }
        let cfg = self.cfg.recovery;
        if self.rec.pending.len() >= cfg.max_pending || !self.take_token(now) {
            return self.counters.count_drop(DropReason::LookupLimited);
        }
        let held = if self.held_total < self.cfg.held_capacity {
            self.held_total += 1;
            Some(pkt)
        } else {
            self.counters.count_drop(DropReason::Recovering);
            None
        };
        let due = now + cfg.lookup_timeout.as_nanos() as u64;
        self.rec.pending.insert(
            key,
            Pending {
                tuple,
                due,
                tries: 1,
                held,
            },
        );
        self.rec.due = Some(self.rec.due.map_or(due, |d| d.min(due)));
        self.send_lookup(tuple, out);
    }

    fn take_token(&mut self, now: u64) -> bool {
        let rate = self.cfg.recovery.lookups_per_sec as f64;
        let r = &mut self.rec;
        let dt = now.saturating_sub(r.filled) as f64 / 1e9;
        r.filled = now;
        r.tokens = (r.tokens + dt * rate).min(rate.max(1.0));
        if r.tokens >= 1.0 {
            r.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn send_lookup<S: Sink<B>>(&mut self, tuple: FlowTuple, out: &mut S) {
        let rec = [FlowRecord {
            conn_id: 0,
            origin_boot: 0,
            client: tuple.client,
            vip: tuple.vip,
        }];
        let agents = self.rec.agents.clone();
        for a in agents.iter() {
            let Some(mac) = self.agent_mac(a, out) else {
                continue;
            };
            let body = Body::Lookup(Lookup {
                records: Records::List(&rec),
            });
            self.send_thop(out, a.thop, mac, 0, body);
            bump(&self.counters.recovery_lookups_sent, 1);
        }
    }

    /// The MAC THOP frames to agent `a` go to (ARP asked when unknown).
    fn agent_mac<S: Sink<B>>(&self, a: &AgentPeer, out: &mut S) -> Option<wire::Mac> {
        let given = if a.thop.ip() == a.ip { a.mac } else { None };
        self.resolve(given, a.thop.ip(), out)
    }

    /// Installs a FORWARDING entry for `key` from an agent's record; the
    /// caller relays `seg` through it. `None` (counted) when the agent is
    /// not a configured backend's or its MAC is not known yet (then the
    /// record goes back for the flow's next segment).
    fn install_recovered<S: Sink<B>>(
        &mut self,
        key: FlowKey,
        h: u64,
        found: Found,
        seg: &TcpSeg,
        out: &mut S,
    ) -> Option<u32> {
        if found.origin_boot == self.cfg.boot {
            // This process handed the connection off, so another of its
            // workers holds it: the NIC's queue choice for the flow changed
            // (a veth picks it from a hash TCP redraws on retransmissions).
            // A second entry would split the flow; the client's next
            // retransmission usually reaches the right worker.
            self.counters.count_drop(DropReason::OtherWorker);
            return None;
        }
        let Some(agent) = self.agent_by_node(found.node).cloned() else {
            self.counters.count_drop(DropReason::Unresolved);
            return None;
        };
        let Some(mac) = self.resolve(agent.mac, agent.ip, out) else {
            let tuple = self.tuple_of(&key);
            let rec = FlowRecord {
                conn_id: found.conn_id,
                origin_boot: found.origin_boot,
                client: tuple.client,
                vip: tuple.vip,
            };
            self.shared
                .recovery
                .offer(found.node, std::iter::once(rec), self.now_ns / 1_000_000);
            self.counters.count_drop(DropReason::ArpUnresolved);
            return None;
        };
        if self.table.len() >= self.table.capacity() {
            self.evict_idle(out);
        }
        // The client's next sequence number is where this segment starts
        // (a RST one before it: relayed for the backend's kernel to judge,
        // never believed by the switch on the first segment it sees).
        let rcv_nxt = if seg.has(RST) {
            seg.seq.wrapping_sub(1)
        } else {
            seg.seq
        };
        let Ok(i) = self.table.insert(
            key,
            h,
            Slot::Forwarding {
                mac,
                backend: agent.backend,
                fin: false,
                closed: false,
                rcv_nxt,
                wshift: self.cfg.tcp.window_scale,
                offloaded: false,
            },
        ) else {
            self.counters.count_drop(DropReason::TableFull);
            return None;
        };
        self.clients.add(&key.client, 1, 0);
        // Not a transition: the connection went through its handshake on
        // another switch process; it is placed in FORWARDING.
        self.counters.transition(None, State::Forwarding.gauge());
        self.stored(i, State::Forwarding);
        let b = agent.backend as usize;
        if self.backend_nodes.len() <= b {
            self.backend_nodes.resize(b + 1, 0);
        }
        self.backend_nodes[b] = found.node;
        let e = self.table.get_mut(i);
        e.last_seen = self.now_ms;
        e.retries = 0;
        self.table
            .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.idle_timeout)));
        self.offload_insert(i);
        let token = self.token(i);
        self.shared
            .recovery
            .install(found.node, found.conn_id, token);
        self.rec.installed.insert(i, (found.node, found.conn_id));
        Some(i)
    }

    /// Forgets that slot `i` was installed from a record (its entry is
    /// being freed).
    #[inline]
    pub(crate) fn recovery_forget(&mut self, i: u32) {
        if self.rec.installed.is_empty() {
            return;
        }
        if let Some((node, id)) = self.rec.installed.remove(&i) {
            self.shared.recovery.uninstall(node, id);
        }
    }

    /// FLOWS from agent `node`: its records go to the directory, and every
    /// worker with lookups outstanding looks again.
    pub(crate) fn on_flows(&mut self, node: u32, records: Records<'_>) {
        if self.agent_by_node(node).is_none() {
            return self.counters.count_drop(DropReason::ThopNotOwner);
        }
        let o = self
            .shared
            .recovery
            .offer(node, records.iter(), self.now_ns / 1_000_000);
        bump(&self.counters.recovery_records, o.stored as u64);
        bump(&self.counters.recovery_records_refused, o.full as u64);
        if o.stored > 0 {
            self.shared.wake_all();
        }
    }

    /// Notes the boot an authenticated frame of agent `node` carried; a
    /// changed one means the agent restarted. Its entries stay: what the
    /// agent relayed itself died with it (the backend's kernel resets those
    /// clients, and their entries end with the client's RST or the idle
    /// timeout), but what it handed over to the server process lives on.
    pub(crate) fn note_agent_boot<S: Sink<B>>(&mut self, node: u32, boot: u32, out: &mut S) {
        if boot == 0 {
            return;
        }
        match self.rec.boots.iter_mut().find(|(n, _)| *n == node) {
            Some((_, b)) if *b == boot => return,
            Some((_, b)) => *b = boot,
            None => self.rec.boots.push((node, boot)),
        }
        if let BootSeen::Changed { old } = self.shared.recovery.agent_boot(node, boot) {
            bump(&self.counters.agent_restarts, 1);
            let _ = out.event(WorkerEvent::AgentRestarted {
                node,
                old,
                new: boot,
            });
        }
    }

    /// Timed and shared recovery work: HELLO, lookups answered or due, and
    /// agent restarts. Cheap when there is none (call it every loop turn).
    pub fn poll_recovery<S: Sink<B>>(&mut self, now: u64, out: &mut S) {
        if self.rec.pending.is_empty() && self.rec.due.is_none_or(|d| d > now) {
            return;
        }
        self.set_now(now);
        let generation = self.shared.recovery.generation();
        let answered = generation != self.rec.seen_generation;
        self.rec.seen_generation = generation;
        let timed = self.rec.due.is_some_and(|d| d <= now);
        if !answered && !timed {
            return;
        }
        if self.index == 0 && self.cfg.recovery.enabled && self.rec.next_hello <= now {
            self.send_hellos(out);
            self.rec.next_hello = now + self.cfg.recovery.hello_interval.as_nanos() as u64;
        }
        let keys: Vec<FlowKey> = self.rec.pending.keys().copied().collect();
        let mut next =
            (self.index == 0 && self.cfg.recovery.enabled).then_some(self.rec.next_hello);
        for key in keys {
            let Some(p) = self.rec.pending.get(&key) else {
                continue;
            };
            let tuple = p.tuple;
            if answered {
                if let Some(found) = self.shared.recovery.take(&tuple) {
                    self.claim(key, found, out);
                    continue;
                }
            }
            let Some(p) = self.rec.pending.get_mut(&key) else {
                continue;
            };
            if p.due <= now {
                if p.tries >= self.cfg.recovery.lookup_tries {
                    let p = self.rec.pending.remove(&key);
                    if p.is_some_and(|p| p.held.is_some()) {
                        self.held_total = self.held_total.saturating_sub(1);
                    }
                    self.counters.count_drop(DropReason::Unresolved);
                    continue;
                }
                p.tries += 1;
                p.due = now + self.cfg.recovery.lookup_timeout.as_nanos() as u64;
                let due = p.due;
                next = Some(next.map_or(due, |n| n.min(due)));
                self.send_lookup(tuple, out);
            } else {
                let due = p.due;
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        self.rec.due = next;
    }

    /// Installs the entry of a pending lookup that an agent answered and
    /// relays its held segment.
    fn claim<S: Sink<B>>(&mut self, key: FlowKey, found: Found, out: &mut S) {
        let Some(p) = self.rec.pending.remove(&key) else {
            return;
        };
        let Some(pkt) = p.held else {
            // Nothing held to start from: the record waits for the next
            // segment of the flow, which will find it at once.
            let rec = FlowRecord {
                conn_id: found.conn_id,
                origin_boot: found.origin_boot,
                client: p.tuple.client,
                vip: p.tuple.vip,
            };
            self.shared
                .recovery
                .offer(found.node, std::iter::once(rec), self.now_ns / 1_000_000);
            return;
        };
        self.held_total = self.held_total.saturating_sub(1);
        let Ok(wire::Frame::Tcp(seg)) = wire::parse(pkt.data(), wire::Verify::Header) else {
            return self.counters.count_drop(DropReason::Malformed);
        };
        let h = self.table.hash(&key);
        if self.table.lookup(&key, h).is_some() {
            // The flow got an entry meanwhile (a SYN of a new connection).
            return self.counters.count_drop(DropReason::Recovering);
        }
        if let Some(i) = self.install_recovered(key, h, found, &seg, out) {
            bump(&self.counters.recovered_lookup, 1);
            self.on_forwarding(i, pkt, seg, out);
        }
    }

    fn send_hellos<S: Sink<B>>(&mut self, out: &mut S) {
        let agents = self.rec.agents.clone();
        let hello = Hello {
            interval_ms: dur_ms(self.cfg.recovery.hello_interval),
            flags: if self.draining { Hello::DRAINING } else { 0 },
        };
        for a in agents.iter() {
            let Some(mac) = self.agent_mac(a, out) else {
                continue;
            };
            self.send_thop(out, a.thop, mac, 0, Body::Hello(hello));
            bump(&self.counters.recovery_hellos_sent, 1);
        }
    }
}
