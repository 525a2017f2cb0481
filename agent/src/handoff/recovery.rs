//! Giving a switch its flows back (`docs/thop.md` §9.4).
//!
//! Every connection a switch forwards also lives here, on the agent that
//! holds its socket. A switch that restarted lost its table, and a switch to
//! which routers moved a flow never had it; without help both would drop the
//! client's segments. The agent is the one place that still knows the flow,
//! so it tells:
//!
//! - a switch whose boot identity is new to the agent (§4.3) gets FLOWS
//!   listing every live connection it handed off or looked up, paced
//!   ([`RESYNC_BURST`] frames per [`RESYNC_PACE`]) so a table of tens of
//!   thousands of connections does not overflow a socket buffer on either
//!   side, and never retransmitted (a lost record is found by LOOKUP);
//! - a LOOKUP is answered with FLOWS (ANSWER) for the flows held here, and
//!   the asking switch becomes a **holder** of each: it now forwards the
//!   flow, so it must hear the CLOSE too (`conns.rs`).
//!
//! Only live connections (acknowledged, not ended) are listed: one still
//! being adopted may yet be refused, and the switch that handed it off
//! learns its fate from the ACK or NACK.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use handoff_proto::{
    Body, FlowRecord, Flows, Header, Lookup, Records, MAX_FRAME_LEN_V4, MAX_FRAME_LEN_V6,
};

use super::{ConnKey, Core, Phase};

/// The most switches besides its origin that a connection remembers as
/// holders: a flow is forwarded by one switch at a time, a few more cover
/// routers moving it back and forth; beyond, a holder's idle timeout frees
/// its entry.
pub const MAX_HOLDERS: usize = 8;
/// FLOWS frames of resynchronisations sent at most per [`RESYNC_PACE`].
pub const RESYNC_BURST: usize = 64;
/// See [`RESYNC_BURST`].
pub const RESYNC_PACE: Duration = Duration::from_millis(1);

/// A switch, other than the origin, that asked for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Holder {
    /// Its node id.
    pub(super) node: u32,
    /// Where its LOOKUP came from: where its CLOSE goes.
    pub(super) addr: SocketAddr,
}

impl Holder {
    /// The key of this holder's copy of a connection's CLOSE.
    pub(super) fn key(&self, conn_id: u64) -> ConnKey {
        ConnKey {
            sender: self.node,
            conn_id,
        }
    }
}

/// What the core knows of a switch's process.
pub(super) struct SwitchBoot {
    /// Its boot identity (non-zero).
    boot: u32,
    /// The highest `msg_seq` seen from it.
    top_seq: u64,
}

/// A resynchronisation under way.
pub(super) struct Resync {
    /// The switch's address.
    to: SocketAddr,
    /// The connections still to list, last first (popped from the end).
    left: Vec<ConnKey>,
    /// When the next frames may go.
    due: Instant,
}

/// A random non-zero boot identity (`docs/thop.md` §4.3).
pub(super) fn draw_boot() -> u32 {
    let mut b = [0u8; 4];
    for _ in 0..8 {
        // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let boot = u32::from_ne_bytes(b);
        if n == b.len() as isize && boot != 0 {
            return boot;
        }
    }
    // No getrandom: std's hasher keys are random per process.
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    (h as u32).max(1)
}

/// The key of a flow in `Core::by_flow`: as FLOWS and LOOKUP carry it, an
/// IPv4-mapped IPv6 address is the IPv4 address.
pub(super) fn flow_key(client: SocketAddr, vip: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    (canonical(client), canonical(vip))
}

/// Records per FLOWS frame to `to` without IP fragmentation (§3).
fn capacity(to: SocketAddr) -> usize {
    let max_frame_len = if to.ip().to_canonical().is_ipv4() {
        MAX_FRAME_LEN_V4
    } else {
        MAX_FRAME_LEN_V6
    };
    Flows::capacity(max_frame_len).max(1)
}

impl Core {
    /// An accepted frame `msg_seq` from the switch `node` at `from` carried
    /// `boot`: a boot not seen before means the switch lost its table, so
    /// its connections are listed to it again (any resynchronisation to it
    /// under way starts over). 0 is "not reported" and changes nothing.
    ///
    /// A restarted switch numbers its frames above everything it sent
    /// before (§4.2), so a frame of another boot numbered below the current
    /// boot's highest is a straggler of the previous process, still in
    /// flight: it does not flip the boot back.
    pub(super) fn switch_boot(&mut self, node: u32, boot: u32, msg_seq: u64, from: SocketAddr) {
        if boot == 0 {
            return;
        }
        let old = match self.switch_boots.get_mut(&node) {
            Some(known) if known.boot == boot => {
                known.top_seq = known.top_seq.max(msg_seq);
                return;
            }
            Some(known) if msg_seq < known.top_seq => return,
            Some(known) => Some(known.boot),
            None => None,
        };
        self.switch_boots.insert(
            node,
            SwitchBoot {
                boot,
                top_seq: msg_seq,
            },
        );
        let mut left: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(k, e)| {
                matches!(e.phase, Phase::Live)
                    && (k.sender == node || e.holders.iter().any(|h| h.node == node))
            })
            .map(|(k, _)| *k)
            .collect();
        // Listed in key order (popped from the end).
        left.sort_unstable_by(|a, b| b.cmp(a));
        match old {
            Some(old) => {
                self.metrics.switch_restarts.inc();
                tracing::info!(switch = %from, node = format_args!("{node:#010x}"),
                    old_boot = format_args!("{old:#010x}"), boot = format_args!("{boot:#010x}"),
                    flows = left.len(), "switch restarted: listing its flows to it");
            }
            None => {
                tracing::info!(switch = %from, node = format_args!("{node:#010x}"),
                    boot = format_args!("{boot:#010x}"), flows = left.len(),
                    "first boot seen from this switch: listing its flows to it");
            }
        }
        self.metrics.resyncs.inc();
        self.resyncs.insert(
            node,
            Resync {
                to: from,
                left,
                due: self.now,
            },
        );
    }

    /// When the next frames of a resynchronisation may go.
    pub(super) fn resync_due(&self) -> Option<Instant> {
        self.resyncs.values().map(|r| r.due).min()
    }

    /// Sends what is due of the resynchronisations under way: at most
    /// [`RESYNC_BURST`] frames in all, the rest [`RESYNC_PACE`] later.
    pub(super) fn resync_step(&mut self, now: Instant) {
        let mut budget = RESYNC_BURST;
        let due: Vec<u32> = self
            .resyncs
            .iter()
            .filter(|(_, r)| r.due <= now)
            .map(|(node, _)| *node)
            .collect();
        for node in due {
            let Some(mut r) = self.resyncs.remove(&node) else {
                continue;
            };
            let cap = capacity(r.to);
            let mut records = Vec::with_capacity(cap);
            let mut done = false;
            while budget > 0 && !done {
                records.clear();
                while records.len() < cap {
                    let Some(key) = r.left.pop() else {
                        break;
                    };
                    // Ended since the list was made: not listed.
                    if let Some(rec) = self.live_record(key) {
                        records.push(rec);
                    }
                }
                done = r.left.is_empty();
                let flags = if done { Flows::LAST } else { 0 };
                self.send_flows(r.to, node, flags, &records);
                self.metrics.resync_flows.inc_by(records.len() as u64);
                budget -= 1;
            }
            if !done {
                r.due = now + RESYNC_PACE;
                self.resyncs.insert(node, r);
            }
        }
    }

    /// A LOOKUP from a switch: FLOWS (ANSWER) with the flows held here, and
    /// the switch is a holder of each from now on. Nothing is sent when no
    /// flow is found.
    pub(super) fn lookup(&mut self, l: &Lookup<'_>, h: &Header, from: SocketAddr) {
        let node = h.sender;
        let mut found: Vec<FlowRecord> = Vec::new();
        let mut listed: HashSet<ConnKey> = HashSet::new();
        for asked in l.records.iter() {
            let hit = self
                .by_flow
                .get(&flow_key(asked.client, asked.vip))
                .copied()
                .and_then(|key| Some((key, self.live_record(key)?)));
            let Some((key, rec)) = hit else {
                self.metrics.lookups.with_label_values(&["unknown"]).inc();
                continue;
            };
            self.metrics.lookups.with_label_values(&["found"]).inc();
            if listed.insert(key) {
                found.push(rec);
                self.add_holder(key, node, from);
            }
        }
        if found.is_empty() {
            return;
        }
        tracing::debug!(switch = %from, flows = found.len(), "LOOKUP answered");
        for chunk in found.chunks(capacity(from)) {
            self.send_flows(from, node, Flows::ANSWER, chunk);
        }
    }

    /// Remembers the switch `node` at `addr` as a holder of `key` (not its
    /// origin, which hears of the end anyway).
    fn add_holder(&mut self, key: ConnKey, node: u32, addr: SocketAddr) {
        if key.sender == node {
            return;
        }
        let Some(e) = self.conns.get_mut(&key) else {
            return;
        };
        if let Some(h) = e.holders.iter_mut().find(|h| h.node == node) {
            h.addr = addr;
            return;
        }
        if e.holders.len() >= MAX_HOLDERS {
            tracing::debug!(conn_id = key.conn_id, switch = %addr,
                "connection has the most holders already: this switch gets no CLOSE");
            return;
        }
        e.holders.push(Holder { node, addr });
        self.metrics.holders.inc();
    }

    /// The flow record of a live connection.
    fn live_record(&self, key: ConnKey) -> Option<FlowRecord> {
        let e = self.conns.get(&key)?;
        matches!(e.phase, Phase::Live).then_some(FlowRecord {
            conn_id: key.conn_id,
            origin_boot: e.origin_boot,
            client: e.fp.client,
            vip: e.vip,
        })
    }

    fn send_flows(&mut self, to: SocketAddr, node: u32, flags: u16, records: &[FlowRecord]) {
        let h = self.header(node, 0, 0);
        let body = Body::Flows(Flows {
            flags,
            records: Records::List(records),
        });
        self.send(to, &h, &body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_are_random_and_never_zero() {
        let boots: HashSet<u32> = (0..16).map(|_| draw_boot()).collect();
        assert!(!boots.contains(&0));
        assert!(boots.len() > 1, "{boots:?}");
    }

    #[test]
    fn a_frame_fits_the_path_of_its_family() {
        assert_eq!(capacity("198.18.0.2:9199".parse().unwrap()), 29);
        assert_eq!(capacity("[::ffff:198.18.0.2]:9199".parse().unwrap()), 29);
        assert_eq!(capacity("[2001:db8::2]:9199".parse().unwrap()), 28);
    }
}
