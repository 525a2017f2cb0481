//! Everything the core does because time passed: LOAD reports, reassembly
//! expiry, forgetting recently ended ids, CLOSE retransmission, the paced
//! FLOWS of a resynchronisation and the graceful drain.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use handoff_proto::{node_id, Body, Load};

use super::{Action, ConnKey, Core, Fingerprint};

/// A closed connection id is remembered this long, so a late duplicate CREATE
/// is acknowledged again instead of adopted a second time.
pub const RECENT_TTL: Duration = Duration::from_secs(120);
/// CLOSE is retransmitted until ACKed, at most this many times.
pub const CLOSE_TRIES: u32 = 6;
/// First CLOSE retransmission timeout; it doubles with each try.
pub const CLOSE_RTO: Duration = Duration::from_millis(200);
/// On stop, how long unacknowledged CLOSEs may hold the exit once nothing is open.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Core {
    /// When [`Core::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(Reverse((t, _))) = self.close_timers.peek() {
            at(*t);
        }
        if let Some((t, _)) = self.recent_order.front() {
            at(*t + RECENT_TTL);
        }
        if let Some(ms) = self.reasm.poll_timeout() {
            at(self.instant_of_stamp(ms));
        }
        if let Some(t) = self.next_load {
            at(t);
        }
        if let Some(t) = self.resync_due() {
            at(t);
        }
        if let Some(deadline) = self.draining {
            if !self.reset_sent {
                at(deadline);
            }
            match self.drained_at {
                Some(since) => at(since + CLOSE_GRACE),
                None if self.active() == 0 => at(self.now),
                None => {}
            }
        }
        next
    }

    /// Does what is due at `now`. Calling it early does no harm.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        self.now = now;
        if self.next_load.is_some_and(|t| now >= t) {
            self.send_load();
            self.next_load = Some(now + self.load_period);
        }
        let stamp = self.stamp();
        if self.reasm.poll_timeout().is_some_and(|t| t <= stamp) {
            self.reasm.expire(stamp);
            self.metrics
                .reassembly_pending
                .set(self.reasm.pending() as i64);
        }
        self.expire_recent(now);
        self.retransmit_closes(now);
        self.resync_step(now);
        self.drain(now);
    }

    /// Remembers a connection id that ended (see [`RECENT_TTL`]).
    pub(super) fn remember_recent(&mut self, key: ConnKey, fp: Fingerprint) {
        self.recent.insert(key, (self.now, fp));
        self.recent_order.push_back((self.now, key));
    }

    /// Forgets ended connection ids older than [`RECENT_TTL`]: only the due
    /// front of the queue is looked at.
    fn expire_recent(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.recent_order.front() {
            if now.saturating_duration_since(at) < RECENT_TTL {
                break;
            }
            self.recent_order.pop_front();
            // Remembered again later: that younger entry decides.
            if self.recent.get(&key).is_some_and(|(t, _)| *t == at) {
                self.recent.remove(&key);
            }
        }
    }

    /// Sends again the CLOSEs not acknowledged in time (fresh `msg_seq`,
    /// doubling timeout), gives up after [`CLOSE_TRIES`].
    fn retransmit_closes(&mut self, now: Instant) {
        while let Some(&Reverse((due, key))) = self.close_timers.peek() {
            if due > now {
                break;
            }
            self.close_timers.pop();
            let Some(mut p) = self.pending_close.remove(&key) else {
                continue;
            };
            if p.next != due {
                // A stale timer: the CLOSE was sent again since.
                self.pending_close.insert(key, p);
                continue;
            }
            if p.tries >= CLOSE_TRIES {
                tracing::debug!(conn_id = key.conn_id, "CLOSE never acknowledged");
                continue;
            }
            p.tries += 1;
            p.next = now + CLOSE_RTO * (1 << p.tries.min(5));
            p.header.msg_seq = self.seq.next();
            p.header.timestamp_ms = self.stamp();
            self.metrics.close_retransmits.inc();
            self.send(p.to, &p.header, &Body::Close(p.close));
            self.close_timers.push(Reverse((p.next, key)));
            self.pending_close.insert(key, p);
        }
    }

    fn send_load(&mut self) {
        let period = self.load_period;
        let per_sec =
            (u64::from(self.adopted_in_period) * 1000 / (period.as_millis().max(1) as u64)) as u32;
        self.adopted_in_period = 0;
        let cap = if self.draining.is_some() {
            0
        } else {
            self.max_active.saturating_sub(self.active()) as u32
        };
        let load = Load {
            active_conns: self.active() as u32,
            adopted_per_sec: per_sec,
            capacity_hint: cap,
            interval_ms: period.as_millis().min(u32::MAX as u128) as u32,
        };
        for to in self.load_targets.clone() {
            let h = self.header(node_id(to.ip()), 0, 0);
            self.send(to, &h, &Body::Load(load));
        }
    }

    /// The graceful stop: once nothing is open, wait briefly for the switch
    /// to ACK the last CLOSEs (they free its entries at once), no longer;
    /// at the deadline, reset what is left.
    fn drain(&mut self, now: Instant) {
        let Some(deadline) = self.draining else {
            return;
        };
        if self.active() == 0 {
            let pending = self.pending_close.values().any(|p| p.tries < CLOSE_TRIES);
            let since = *self.drained_at.get_or_insert(now);
            if !pending || now >= deadline || now >= since + CLOSE_GRACE {
                self.stopped = true;
                self.out.push_back(Action::Stopped);
            }
            return;
        }
        if now >= deadline && !self.reset_sent {
            tracing::warn!(
                open = self.active(),
                "drain timeout: resetting what is left"
            );
            self.reset_sent = true;
            // Listener and handover connections belong to the application
            // now: forget them, they go on without us.
            let gone: Vec<ConnKey> = self
                .conns
                .iter()
                .filter(|(_, e)| e.mode != crate::config::Mode::Relay)
                .map(|(k, _)| *k)
                .collect();
            for conn in gone {
                self.remove_conn(conn);
                self.out.push_back(Action::Forget { conn });
            }
            self.metrics.active.set(self.active() as i64);
            self.out.push_back(Action::ResetAll);
            if self.active() == 0 {
                self.drain(now);
            }
        }
    }
}
