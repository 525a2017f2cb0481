//! The table of connections: duplicate CREATEs, the decisions before an
//! adoption, adoption outcomes, ABORT and the end of a connection, which
//! every switch that may forward the flow hears of (its origin and its
//! holders, `docs/thop.md` §9.4).

use std::net::SocketAddr;
use std::time::Instant;

use handoff_proto::{
    flags, Abort, Ack, Assembled, Body, Close, CloseReason, Header, Nack, NackReason, TcpState,
};

use super::recovery::flow_key;
use super::timers::CLOSE_RTO;
use super::{
    Action, AdoptFailure, AdoptOrder, Adoption, ConnKey, Core, Entry, Fingerprint, PendingClose,
    Phase,
};
use crate::config::Mode;
use crate::repair::AdoptError;

impl Core {
    /// A CREATE for a connection known already: ACK again, never adopt
    /// twice. Only the same client connection is the same connection: a
    /// first fragment whose client address or initial sequence number
    /// differs is another connection under a reused id. True when the
    /// CREATE was answered (or deliberately not) here.
    pub(super) fn duplicate(
        &mut self,
        key: ConnKey,
        h: &Header,
        from: SocketAddr,
        state: Option<&TcpState>,
    ) -> bool {
        let (known, live) = match (self.conns.get(&key), self.recent.get(&key)) {
            (Some(e), _) => (e.fp, matches!(e.phase, Phase::Live)),
            (None, Some((_, fp))) => (*fp, false),
            (None, None) => return false,
        };
        let open = self.conns.contains_key(&key);
        match state.map(Fingerprint::of) {
            Some(fp) if fp != known && !open => {
                // The connection once known by this id is closed: this one
                // is new.
                self.recent.remove(&key);
                return false;
            }
            Some(fp) if fp != known => {
                tracing::warn!(conn_id = h.conn_id, client = %fp.client, owner = %known.client,
                    "CREATE under the id of another client's open connection");
                self.nack_frame(
                    from,
                    h,
                    NackReason::BadState,
                    "the connection id names another client's open connection",
                );
                return true;
            }
            // A later fragment names no client: acknowledge only for an
            // open connection (a closed one's id may be a new connection's
            // whose first fragment is still on its way).
            None if !open => {
                self.metrics.duplicate_creates.inc();
                return true;
            }
            _ => {}
        }
        self.metrics.duplicate_creates.inc();
        if live || !open {
            self.ack(from, key, h.msg_seq, flags::DUPLICATE);
        }
        // Still being adopted or connecting upstream: the ACK follows.
        true
    }

    /// A complete CREATE: refuse it, or ask the loop to adopt it.
    pub(super) fn create(&mut self, asm: Assembled, h: &Header, from: SocketAddr) {
        self.metrics
            .reassembly_pending
            .set(self.reasm.pending() as i64);
        let vip = asm.state.vip();
        let Some(&(mode, upstream)) = self.services.get(&vip) else {
            return self.nack_frame(
                from,
                h,
                NackReason::NoSuchService,
                "no service for this VIP:port",
            );
        };
        if self.active() >= self.max_active {
            return self.nack_frame(from, h, NackReason::Overloaded, "limits.max_active reached");
        }
        let conn = ConnKey {
            sender: h.sender,
            conn_id: h.conn_id,
        };
        self.insert_conn(
            conn,
            Entry {
                switch: from,
                fp: Fingerprint::of(&asm.state),
                vip,
                mode,
                phase: Phase::Adopting {
                    echo_seq: h.msg_seq,
                    since: self.now,
                },
                request_len: asm.request.len() as u64,
                origin_boot: h.boot,
                holders: Vec::new(),
            },
        );
        self.out.push_back(Action::Adopt(Box::new(AdoptOrder {
            conn,
            switch: from,
            mode,
            upstream,
            state: asm.state,
            request: asm.request,
        })));
    }

    /// The outcome of an [`Action::Adopt`], or of the wait that followed
    /// [`Adoption::Waiting`] (relay connect, server accept). Outcomes for a
    /// connection no longer waiting (aborted, ended, already
    /// acknowledged) are ignored.
    pub fn adopted(&mut self, now: Instant, conn: ConnKey, outcome: Adoption) {
        self.now = now;
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        let (echo_seq, since, first) = match entry.phase {
            Phase::Adopting { echo_seq, since } => (echo_seq, since, true),
            Phase::Waiting { echo_seq, since } => (echo_seq, since, false),
            Phase::Live => return,
        };
        let (switch, mode) = (entry.switch, entry.mode);
        match outcome {
            Adoption::Ready => {
                entry.phase = Phase::Live;
                self.count_adopted(mode, since);
                self.ack(switch, conn, echo_seq, 0);
                if first {
                    tracing::debug!(conn_id = conn.conn_id, ?mode, "adopted");
                }
            }
            Adoption::Waiting => {
                if first {
                    entry.phase = Phase::Waiting { echo_seq, since };
                    tracing::debug!(conn_id = conn.conn_id, ?mode, "adopted, waiting");
                }
            }
            Adoption::Failed(why) => {
                let fp = entry.fp;
                self.remove_conn(conn);
                self.metrics.active.set(self.active() as i64);
                self.out.push_back(Action::Forget { conn });
                let (reason, label) = match &why {
                    AdoptFailure::Repair(e) => {
                        tracing::warn!(client = %fp.client, error = %e, "adoption failed");
                        let reason = match e {
                            AdoptError::InvalidState(_) | AdoptError::Family => {
                                NackReason::BadState
                            }
                            AdoptError::Exists(_) => NackReason::AddressInUse,
                            AdoptError::Permission(_) | AdoptError::Sys { .. } => {
                                NackReason::RepairFailed
                            }
                        };
                        (reason, e.label())
                    }
                    AdoptFailure::BacklogFull(why) => (NackReason::BacklogFull, *why),
                    AdoptFailure::Internal(why) => (NackReason::Internal, *why),
                };
                self.nack(switch, conn, echo_seq, reason, label);
            }
        }
    }

    fn count_adopted(&mut self, mode: Mode, since: Instant) {
        let label = match mode {
            Mode::Relay => "relay",
            Mode::Listener => "listener",
            Mode::Handover => "handover",
        };
        self.metrics.adopted.with_label_values(&[label]).inc();
        self.metrics
            .adopt_seconds
            .observe(self.now.saturating_duration_since(since).as_secs_f64());
        self.metrics.active.set(self.active() as i64);
        self.adopted_in_period = self.adopted_in_period.saturating_add(1);
    }

    pub(super) fn abort(&mut self, a: Abort, h: &Header, from: SocketAddr) {
        let key = ConnKey {
            sender: h.sender,
            conn_id: h.conn_id,
        };
        if self.reasm.remove(h.sender, h.conn_id) {
            self.metrics
                .reassembly_pending
                .set(self.reasm.pending() as i64);
        }
        if let Some(entry) = self.remove_conn(key) {
            self.metrics.aborts.inc();
            tracing::info!(conn_id = h.conn_id, reason = %a.reason, "ABORT from switch");
            self.out.push_back(Action::Silence {
                conn: key,
                mode: entry.mode,
            });
            self.remember_recent(key, entry.fp);
            // The switch that aborted knows; the others that looked the
            // flow up would forward it until their idle timeout.
            let close = Close {
                reason: CloseReason::Aborted,
                bytes_from_client: 0,
                bytes_to_client: 0,
            };
            for holder in &entry.holders {
                self.send_close(holder.addr, holder.key(key.conn_id), close);
            }
            self.metrics
                .closed
                .with_label_values(&[CloseReason::Aborted.label()])
                .inc();
            self.metrics.active.set(self.active() as i64);
        }
        // ACK only once acted upon (spec §5.2), for unknown ids too.
        let mut rh = h.reply(self.seq.next(), self.stamp());
        rh.boot = self.boot;
        self.send(
            from,
            &rh,
            &Body::Ack(Ack {
                echo_seq: h.msg_seq,
            }),
        );
    }

    /// An adopted connection ended (`from_client` counts every byte read
    /// from the client, the request included): count it and tell the switch
    /// that handed it off and every holder (CLOSE, each retransmitted until
    /// that switch's ACK). False when the connection is not tracked
    /// (aborted, or refused meanwhile).
    pub fn ended(
        &mut self,
        now: Instant,
        conn: ConnKey,
        reason: CloseReason,
        from_client: u64,
        to_client: u64,
    ) -> bool {
        self.now = now;
        let Some(entry) = self.remove_conn(conn) else {
            return false;
        };
        self.out.push_back(Action::Forget { conn });
        self.metrics
            .closed
            .with_label_values(&[reason.label()])
            .inc();
        self.metrics.active.set(self.active() as i64);
        self.remember_recent(conn, entry.fp);
        let close = Close {
            reason,
            bytes_from_client: from_client.saturating_sub(entry.request_len),
            bytes_to_client: to_client,
        };
        self.send_close(entry.switch, conn, close);
        for holder in &entry.holders {
            self.send_close(holder.addr, holder.key(conn.conn_id), close);
        }
        true
    }

    /// Sends CLOSE about `key.conn_id` to the switch `key.sender` at `to`
    /// and retransmits it until that switch's ACK (`pending_close` is keyed
    /// by the receiving switch, so each copy is acknowledged on its own).
    fn send_close(&mut self, to: SocketAddr, key: ConnKey, close: Close) {
        let header = self.header(key.sender, key.conn_id, 0);
        self.send(to, &header, &Body::Close(close));
        let next = self.now + CLOSE_RTO;
        self.pending_close.insert(
            key,
            PendingClose {
                to,
                header,
                close,
                tries: 0,
                next,
            },
        );
        self.close_timers.push(std::cmp::Reverse((next, key)));
    }

    /// Tracks a new connection, findable by its flow. A flow already
    /// tracked under another id keeps that one: the host has one socket per
    /// 4-tuple, so the newcomer's adoption fails (`ADDRESS_IN_USE`).
    fn insert_conn(&mut self, key: ConnKey, entry: Entry) {
        let flow = flow_key(entry.fp.client, entry.vip);
        if let Some(old) = self.conns.insert(key, entry) {
            // Not reached (a known id is a duplicate), but keep the indexes
            // true if it were.
            self.unindex(key, &old);
        }
        self.by_flow.entry(flow).or_insert(key);
    }

    /// Stops tracking a connection; its entry.
    pub(super) fn remove_conn(&mut self, key: ConnKey) -> Option<Entry> {
        let entry = self.conns.remove(&key)?;
        self.unindex(key, &entry);
        Some(entry)
    }

    fn unindex(&mut self, key: ConnKey, entry: &Entry) {
        let flow = flow_key(entry.fp.client, entry.vip);
        if self.by_flow.get(&flow) == Some(&key) {
            self.by_flow.remove(&flow);
        }
        if !entry.holders.is_empty() {
            self.metrics.holders.sub(entry.holders.len() as i64);
        }
    }

    /// The switch acknowledged a frame of ours about `conn`: a CLOSE needs
    /// no more retransmission.
    pub(super) fn acked(&mut self, echo_seq: u64, conn: ConnKey) {
        if self
            .pending_close
            .get(&conn)
            .is_some_and(|p| p.header.msg_seq == echo_seq || p.tries > 0)
        {
            self.pending_close.remove(&conn);
        }
    }

    /// ACKs a CREATE (`echo_seq`) of `conn`.
    fn ack(&mut self, to: SocketAddr, conn: ConnKey, echo_seq: u64, flags: u16) {
        let h = self.header(conn.sender, conn.conn_id, flags);
        self.send(to, &h, &Body::Ack(Ack { echo_seq }));
    }

    /// NACKs the CREATE `echo_seq` of `conn`.
    fn nack(
        &mut self,
        to: SocketAddr,
        conn: ConnKey,
        echo_seq: u64,
        reason: NackReason,
        why: &str,
    ) {
        self.metrics
            .refused
            .with_label_values(&[reason.label()])
            .inc();
        tracing::info!(conn_id = conn.conn_id, %reason, why, "CREATE refused");
        let h = self.header(conn.sender, conn.conn_id, 0);
        self.send(
            to,
            &h,
            &Body::Nack(Nack {
                echo_seq,
                reason,
                versions: &[],
            }),
        );
    }

    /// NACKs the CREATE frame with header `h`.
    pub(super) fn nack_frame(&mut self, to: SocketAddr, h: &Header, reason: NackReason, why: &str) {
        let conn = ConnKey {
            sender: h.sender,
            conn_id: h.conn_id,
        };
        self.nack(to, conn, h.msg_seq, reason, why);
    }
}
