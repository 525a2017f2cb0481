//! What the workers of one switch share to recover FORWARDING flows from the
//! agents (`docs/thop.md` §9.4).
//!
//! A restarted switch has an empty table while its clients keep sending on
//! connections the agents still hold. The agents tell it which: after a new
//! boot in bulk (FLOWS), or one flow at a time when asked (LOOKUP). Records
//! arrive at whichever worker the NIC hashed the agent's datagram to, but
//! the flow's segments reach the worker that RSS or the fanout picks for the
//! client's 4-tuple, which software cannot compute for every backend. So the
//! records wait here, in a directory keyed by the 4-tuple, and the worker
//! that gets a segment of an unknown flow claims its record.
//!
//! Three more things live here because every worker needs them:
//! - the ids of recovered connections, which the switch did not choose: a
//!   CLOSE naming one is routed to the worker that installed it;
//! - the boot each agent last reported: a new one means the agent restarted
//!   (reported once, by the worker that saw it first);
//! - a generation counter, bumped when records arrive, that tells a worker
//!   with lookups outstanding to look again.
//!
//! Everything here is on the cold path (segments of unknown flows, THOP
//! control frames); one mutex guards it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use handoff_proto::FlowRecord;

use crate::connid::ConnToken;

/// A flow as THOP names it: the client's and the virtual service's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub client: SocketAddr,
    pub vip: SocketAddr,
}

/// Who holds a flow, from an agent's FLOWS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The agent's THOP node id.
    pub node: u32,
    /// The id the connection was handed off under.
    pub conn_id: u64,
    /// The boot of the switch process that handed it off (0: unknown).
    pub origin_boot: u32,
}

/// How long a record waits for a segment of its flow (ms).
pub const RECORD_TTL_MS: u64 = 120_000;

/// What [`Recovery::agent_boot`] learnt from a frame's boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootSeen {
    /// The first boot heard from this agent, or the one known.
    Known,
    /// Another boot than the one known: the agent restarted.
    Changed { old: u32 },
}

#[derive(Debug, Default)]
struct Directory {
    records: HashMap<FlowTuple, (Found, u64)>,
    /// Records in arrival order (ms, tuple), for expiry.
    order: VecDeque<(u64, FlowTuple)>,
    /// Recovered connections: (agent node, conn_id) → the entry.
    installed: HashMap<(u32, u64), ConnToken>,
    /// The last non-zero boot of each agent.
    agent_boots: HashMap<u32, u32>,
}

/// The recovery state shared by the workers of one switch.
#[derive(Debug)]
pub struct Recovery {
    dir: Mutex<Directory>,
    capacity: usize,
    generation: AtomicU64,
    installed: AtomicUsize,
    /// Records waiting (read without the lock: a segment of an unknown flow
    /// takes the lock only when some record could be its).
    waiting: AtomicUsize,
}

/// Outcome of [`Recovery::offer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offered {
    pub stored: usize,
    /// Records refused because the directory was full.
    pub full: usize,
}

impl Recovery {
    /// A directory of at most `capacity` records.
    pub fn new(capacity: usize) -> Recovery {
        Recovery {
            dir: Mutex::new(Directory::default()),
            capacity: capacity.max(1),
            generation: AtomicU64::new(0),
            installed: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.dir.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bumped each time records were stored.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores what agent `node` says it holds, at `now_ms`.
    pub fn offer(
        &self,
        node: u32,
        records: impl Iterator<Item = FlowRecord>,
        now_ms: u64,
    ) -> Offered {
        let mut d = self.lock();
        expire(&mut d, now_ms);
        let mut out = Offered::default();
        for r in records {
            let t = FlowTuple {
                client: r.client,
                vip: r.vip,
            };
            let found = Found {
                node,
                conn_id: r.conn_id,
                origin_boot: r.origin_boot,
            };
            if d.records.len() >= self.capacity && !d.records.contains_key(&t) {
                out.full += 1;
                continue;
            }
            if d.records.insert(t, (found, now_ms)).is_none() {
                d.order.push_back((now_ms, t));
            }
            out.stored += 1;
        }
        self.waiting.store(d.records.len(), Ordering::Relaxed);
        drop(d);
        if out.stored > 0 {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        out
    }

    /// Takes the record of `t`, if an agent reported one.
    pub fn take(&self, t: &FlowTuple) -> Option<Found> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut d = self.lock();
        let f = d.records.remove(t).map(|(f, _)| f);
        self.waiting.store(d.records.len(), Ordering::Relaxed);
        f
    }

    /// Records waiting to be claimed.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A recovered connection was installed at `token`.
    pub fn install(&self, node: u32, conn_id: u64, token: ConnToken) {
        let mut d = self.lock();
        if d.installed.insert((node, conn_id), token).is_none() {
            self.installed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A recovered connection's entry was freed.
    pub fn uninstall(&self, node: u32, conn_id: u64) {
        let mut d = self.lock();
        if d.installed.remove(&(node, conn_id)).is_some() {
            self.installed.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The entry of a recovered connection (a CLOSE from `node` naming
    /// `conn_id`); free when none was ever installed.
    #[inline]
    pub fn route(&self, node: u32, conn_id: u64) -> Option<ConnToken> {
        if self.installed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.lock().installed.get(&(node, conn_id)).copied()
    }

    /// Notes the boot an authenticated frame of agent `node` carried.
    pub fn agent_boot(&self, node: u32, boot: u32) -> BootSeen {
        if boot == 0 {
            return BootSeen::Known;
        }
        let mut d = self.lock();
        match d.agent_boots.insert(node, boot) {
            Some(old) if old != boot => BootSeen::Changed { old },
            _ => BootSeen::Known,
        }
    }
}

fn expire(d: &mut Directory, now_ms: u64) {
    while let Some(&(at, t)) = d.order.front() {
        if now_ms.saturating_sub(at) < RECORD_TTL_MS {
            break;
        }
        d.order.pop_front();
        if d.records.get(&t).is_some_and(|(_, when)| *when == at) {
            d.records.remove(&t);
        }
    }
    // Claimed records leave stale order entries; keep the queue bounded.
    if d.order.len() > 2 * d.records.len() + 1024 {
        let records = &d.records;
        d.order
            .retain(|(at, t)| records.get(t).is_some_and(|(_, when)| when == at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, port: u16) -> FlowRecord {
        FlowRecord {
            conn_id: id,
            origin_boot: 0,
            client: SocketAddr::from(([198, 18, 0, 101], port)),
            vip: SocketAddr::from(([198, 18, 0, 10], 80)),
        }
    }

    fn tuple(port: u16) -> FlowTuple {
        let r = rec(0, port);
        FlowTuple {
            client: r.client,
            vip: r.vip,
        }
    }

    #[test]
    fn records_are_claimed_once_and_expire() {
        let r = Recovery::new(2);
        let g = r.generation();
        let o = r.offer(7, [rec(1, 1000), rec(2, 1001), rec(3, 1002)].into_iter(), 0);
        assert_eq!(o, Offered { stored: 2, full: 1 });
        assert!(r.generation() > g);
        assert_eq!(
            r.take(&tuple(1000)),
            Some(Found {
                node: 7,
                conn_id: 1,
                origin_boot: 0
            })
        );
        assert_eq!(r.take(&tuple(1000)), None);
        r.offer(7, [rec(4, 1003)].into_iter(), 1);
        // Two minutes later the rest is gone.
        r.offer(7, std::iter::empty(), RECORD_TTL_MS + 2);
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn recovered_ids_route_until_uninstalled() {
        let r = Recovery::new(8);
        let tok = ConnToken {
            worker: 1,
            slot: 5,
            generation: 9,
        };
        assert_eq!(r.route(7, 42), None);
        r.install(7, 42, tok);
        assert_eq!(r.route(7, 42), Some(tok));
        assert_eq!(r.route(8, 42), None);
        r.uninstall(7, 42);
        assert_eq!(r.route(7, 42), None);
    }

    #[test]
    fn a_new_agent_boot_is_a_restart() {
        let r = Recovery::new(8);
        assert_eq!(r.agent_boot(7, 0), BootSeen::Known);
        assert_eq!(r.agent_boot(7, 11), BootSeen::Known);
        assert_eq!(r.agent_boot(7, 11), BootSeen::Known);
        assert_eq!(r.agent_boot(7, 12), BootSeen::Changed { old: 11 });
        assert_eq!(r.agent_boot(7, 12), BootSeen::Known);
        assert_eq!(r.agent_boot(8, 12), BootSeen::Known);
    }
}
