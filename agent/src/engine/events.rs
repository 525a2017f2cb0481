//! What the sockets report back to the core: relay connects and ends,
//! servers accepting handed-over sockets (or not in time), the kernel's
//! socket-destroy notifications, applications closing listener-mode
//! connections, stop requests.

use std::time::{Duration, Instant};

use handoff_proto::CloseReason;

use crate::config::Mode;
use crate::handoff::{AdoptFailure, Adoption, ConnKey};
use crate::handover::HandoverEvent;
use crate::listener::LoopMsg;
use crate::relay::{ConnMeta, End, RelayEvent};

use super::Agent;

/// How often "no server has registered for a handover service" is repeated.
const NO_SERVER_WARN: Duration = Duration::from_secs(10);

fn key_of(meta: &ConnMeta) -> ConnKey {
    ConnKey {
        sender: meta.sender,
        conn_id: meta.conn_id,
    }
}

impl Agent {
    pub(super) fn messages(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            let now = Instant::now();
            match msg {
                LoopMsg::Closed {
                    sender, conn_id, ..
                } => {
                    let conn = ConnKey { sender, conn_id };
                    self.core.ended(now, conn, CloseReason::ServerClose, 0, 0);
                }
                LoopMsg::Stop { now: immediate } => self.core.stop(now, immediate),
            }
            self.perform(now);
        }
    }

    pub(super) fn relay_events(&mut self, events: &mut Vec<RelayEvent>) {
        for ev in events.drain(..) {
            let now = Instant::now();
            self.relay_event(now, ev);
            self.perform(now);
        }
    }

    fn relay_event(&mut self, now: Instant, ev: RelayEvent) {
        match ev {
            RelayEvent::Connected(meta) => self.core.adopted(now, key_of(&meta), Adoption::Ready),
            RelayEvent::ConnectFailed(meta, why) => {
                let conn = key_of(&meta);
                if self.core.mode_of(conn).is_some() {
                    tracing::warn!(conn_id = conn.conn_id, error = %why, "upstream connect failed: NACK");
                }
                let failure = AdoptFailure::Internal("upstream connect failed");
                self.core.adopted(now, conn, Adoption::Failed(failure));
            }
            RelayEvent::Finished {
                meta,
                end,
                from_client,
                to_client,
            } => {
                let reason = match end {
                    End::ClientFin => CloseReason::ClientFin,
                    End::ServerClose => CloseReason::ServerClose,
                    End::ClientReset => CloseReason::ClientReset,
                    End::ServerReset => CloseReason::ServerReset,
                    End::IdleTimeout => CloseReason::IdleTimeout,
                    End::Aborted => CloseReason::Aborted,
                    End::Shutdown => CloseReason::Shutdown,
                };
                if self
                    .core
                    .ended(now, key_of(&meta), reason, from_client, to_client)
                {
                    self.metrics
                        .relayed_bytes
                        .with_label_values(&["from_client"])
                        .inc_by(from_client);
                    self.metrics
                        .relayed_bytes
                        .with_label_values(&["to_client"])
                        .inc_by(to_client);
                }
            }
        }
    }

    pub(super) fn handover_event(&mut self, ev: HandoverEvent) {
        let now = Instant::now();
        match ev {
            HandoverEvent::Registered { vip, pid } => {
                self.metrics
                    .handover_listeners
                    .set(self.handover.as_ref().map_or(0, |h| h.servers()) as i64);
                tracing::info!(%vip, pid, "handover listener announced");
            }
            HandoverEvent::Malformed(why) => {
                self.metrics
                    .handover_dropped
                    .with_label_values(&[why])
                    .inc();
            }
            HandoverEvent::Taken { token, pid, fd } => {
                self.set_pending_gauge();
                let Some(conn) = self.offered.remove(&token) else {
                    return;
                };
                if let Some(held) = self.held.get_mut(&conn) {
                    held.token = None;
                    held.owner = Some((pid, fd));
                    if let Some(c) = held.cookie {
                        self.by_cookie.insert(c, conn);
                    }
                }
                self.core.adopted(now, conn, Adoption::Ready);
            }
            HandoverEvent::Expired { token } => {
                self.set_pending_gauge();
                let Some(conn) = self.offered.remove(&token) else {
                    return;
                };
                if let Some(held) = self.held.get_mut(&conn) {
                    held.token = None;
                }
                if self.core.mode_of(conn).is_none() {
                    return;
                }
                self.metrics
                    .handover_refused
                    .with_label_values(&["not_accepted"])
                    .inc();
                tracing::warn!(
                    conn_id = conn.conn_id,
                    "server did not accept the connection in time: silenced, NACK"
                );
                let failure = AdoptFailure::BacklogFull("server did not accept in time");
                self.core.adopted(now, conn, Adoption::Failed(failure));
            }
        }
        self.perform(now);
    }

    pub(super) fn set_pending_gauge(&self) {
        if let Some(h) = &self.handover {
            self.metrics.handover_pending.set(h.pending() as i64);
        }
    }

    /// Handed-over sockets the kernel freed: their connections ended.
    pub(super) fn destroyed(&mut self) {
        let Some(w) = self.destroy.as_mut() else {
            return;
        };
        let d = w.read();
        if d.overflowed {
            self.metrics
                .handover_dropped
                .with_label_values(&["destroy_notifications_lost"])
                .inc();
            tracing::warn!("socket-destroy notifications were lost (netlink buffer full)");
        }
        let now = Instant::now();
        for cookie in d.cookies {
            let Some(conn) = self.by_cookie.remove(&cookie) else {
                continue;
            };
            self.core.ended(now, conn, CloseReason::ServerClose, 0, 0);
        }
        self.perform(now);
    }

    /// Warns, every so often, about handover services no server announced.
    pub(super) fn warn_unserved(&mut self, now: Instant) {
        let Some(ho) = self.handover.as_ref() else {
            return;
        };
        if self
            .last_unserved_warn
            .is_some_and(|t| now < t + NO_SERVER_WARN)
        {
            return;
        }
        for s in &self.cfg.services {
            if s.mode == Mode::Handover && ho.servers_for(s.vip) == 0 {
                self.last_unserved_warn = Some(now);
                tracing::warn!(
                    vip = %s.vip,
                    socket = %ho.path().display(),
                    "no server has announced a handover listener for this service: start it with \
                     LD_PRELOAD={} BATON_HANDOVER_LISTEN={} BATON_HANDOVER_SOCKET={}; CREATEs are refused",
                    self.cfg.handover.library.display(),
                    s.vip,
                    ho.path().display()
                );
            }
        }
    }
}
