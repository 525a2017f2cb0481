//! What the core's actions do to sockets: send a frame, adopt a connection
//! and give it to its service, silence an aborted one, forget one.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Mode;
use crate::handoff::{Action, AdoptFailure, AdoptOrder, Adoption, ConnKey};
use crate::relay::{self, ConnMeta};
use crate::repair::{adopt, AdoptError};

use super::{Agent, Held, Target};

impl Agent {
    /// Performs every action the core queued (adoption outcomes reported
    /// on the way may queue more).
    pub(super) fn perform(&mut self, now: Instant) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { to, opcode, frame } => match self.udp.send_to(&frame, to) {
                    Ok(_) => self
                        .metrics
                        .thop_tx
                        .with_label_values(&[opcode.name()])
                        .inc(),
                    Err(e) => {
                        tracing::warn!(%to, error = %e, opcode = opcode.name(), "THOP send failed")
                    }
                },
                Action::Adopt(order) => {
                    let outcome = self.adopt(now, &order);
                    self.core.adopted(now, order.conn, outcome);
                }
                Action::Silence { conn, mode } => self.silence(conn, mode),
                Action::Forget { conn } => self.forget(conn),
                Action::ResetAll => {
                    self.stop_now = true;
                    self.close_listeners();
                }
                Action::Stopped => self.stopped = true,
            }
        }
    }

    /// Adopts the connection and gives it to its service.
    fn adopt(&mut self, now: Instant, o: &AdoptOrder) -> Adoption {
        let vip = o.state.vip();
        let shared = match self.services.get(&vip) {
            Some(Target::Listener(s)) => Some(Arc::clone(s)),
            _ => None,
        };
        if let Some(s) = &shared {
            if !s.has_room() {
                return Adoption::Failed(AdoptFailure::BacklogFull("listener backlog full"));
            }
        }
        if o.mode == Mode::Handover {
            // Refuse before adopting when no server could take it.
            let servers = self.handover.as_ref().map_or(0, |ho| ho.servers_for(vip));
            if servers == 0 {
                self.metrics
                    .handover_refused
                    .with_label_values(&["no_server"])
                    .inc();
                return Adoption::Failed(AdoptFailure::BacklogFull(
                    "no server has announced a handover listener for this VIP:port",
                ));
            }
        }
        let stream = match adopt(&o.state, &o.request) {
            Ok(s) => s,
            Err(AdoptError::Exists(e)) => match self.retire_stale(&o.state) {
                // Once: a second failure is not a stale socket.
                true => match adopt(&o.state, &o.request) {
                    Ok(s) => s,
                    Err(e) => return Adoption::Failed(AdoptFailure::Repair(e)),
                },
                false => return Adoption::Failed(AdoptFailure::Repair(AdoptError::Exists(e))),
            },
            Err(e) => return Adoption::Failed(AdoptFailure::Repair(e)),
        };
        let client = o.state.client();
        match (o.mode, o.upstream, shared) {
            (Mode::Relay, Some(up), _) => {
                let meta = ConnMeta {
                    switch: o.switch,
                    sender: o.conn.sender,
                    conn_id: o.conn.conn_id,
                    client,
                };
                if let Err(e) = self.relay.add(self.poll.registry(), meta, stream, up) {
                    tracing::warn!(upstream = %up, error = %e, "upstream unavailable");
                    return Adoption::Failed(AdoptFailure::Internal("upstream connect failed"));
                }
                Adoption::Waiting
            }
            (Mode::Listener, _, Some(shared)) => {
                let hold = stream.try_clone().ok().map(|s| Arc::new(OwnedFd::from(s)));
                let (sender, conn_id) = (o.conn.sender, o.conn.conn_id);
                if let Err(stream) =
                    shared.push(stream, client, self.tx.clone(), o.switch, sender, conn_id)
                {
                    relay::close_silently(stream.as_raw_fd());
                    return Adoption::Failed(AdoptFailure::BacklogFull("listener backlog full"));
                }
                self.held.insert(
                    o.conn,
                    Held {
                        hold,
                        ..Held::default()
                    },
                );
                Adoption::Ready
            }
            (Mode::Handover, _, _) => self.offer(now, stream, vip, o.conn),
            _ => {
                relay::close_silently(stream.as_raw_fd());
                Adoption::Failed(AdoptFailure::Internal("service not set up"))
            }
        }
    }

    /// Handover mode: offers the adopted socket to a server; the ACK waits
    /// for TAKEN.
    fn offer(
        &mut self,
        now: Instant,
        stream: std::net::TcpStream,
        vip: SocketAddr,
        conn: ConnKey,
    ) -> Adoption {
        let fd = OwnedFd::from(stream);
        let cookie = crate::handover::socket_cookie(fd.as_raw_fd());
        let Some(ho) = self.handover.as_mut() else {
            relay::close_silently(fd.as_raw_fd());
            return Adoption::Failed(AdoptFailure::Internal("handover not set up"));
        };
        match ho.offer(vip, fd, now) {
            Ok(token) => {
                self.offered.insert(token, conn);
                self.metrics.handover_pending.set(ho.pending() as i64);
                self.held.insert(
                    conn,
                    Held {
                        cookie,
                        token: Some(token),
                        ..Held::default()
                    },
                );
                Adoption::Waiting
            }
            Err((why, fd)) => {
                relay::close_silently(fd.as_raw_fd());
                self.metrics
                    .handover_refused
                    .with_label_values(&[why.label()])
                    .inc();
                Adoption::Failed(AdoptFailure::BacklogFull(why.label()))
            }
        }
    }

    /// ABORT: nothing more may reach the client.
    fn silence(&mut self, conn: ConnKey, mode: Mode) {
        let held = self.held.remove(&conn).unwrap_or_default();
        match mode {
            Mode::Relay => {
                self.relay
                    .abort(self.poll.registry(), conn.sender, conn.conn_id);
            }
            // The application owns the socket: put it back into repair
            // mode through our duplicate. Nothing more reaches the client,
            // the application's next read or write fails, its close is silent.
            Mode::Listener => {
                if let Some(fd) = &held.hold {
                    relay::close_silently(fd.as_raw_fd());
                }
            }
            // Not yet accepted: silence it through our copy. Accepted
            // (our ACK was lost): reach into the server for its copy.
            Mode::Handover => match held.token {
                Some(token) => {
                    self.offered.remove(&token);
                    if let Some(ho) = self.handover.as_mut() {
                        ho.cancel(token);
                    }
                    self.set_pending_gauge();
                }
                None => {
                    if let Some(c) = held.cookie {
                        self.by_cookie.remove(&c);
                    }
                    if let Some((pid, fd)) = held.owner {
                        if let Err(e) = crate::handover::silence_remote(pid, fd, held.cookie) {
                            tracing::warn!(conn_id = conn.conn_id, pid, fd, error = %e,
                                "ABORT after the server accepted: cannot silence its socket");
                        }
                    }
                }
            },
        }
    }

    /// The 4-tuple of a CREATE is held by a socket of an earlier connection
    /// (its client's last segments never arrived, so it lingers in
    /// FIN_WAIT or LAST_ACK, or sits in TIME_WAIT without timestamps, which
    /// a repair-mode connect cannot reuse). The switch just completed a new
    /// handshake on that 4-tuple, so the client is done with the old one:
    /// end it, as a SYN to a TIME_WAIT socket would. True when one was
    /// ended and the adoption may be tried again.
    fn retire_stale(&mut self, st: &handoff_proto::TcpState) -> bool {
        match crate::sockdiag::destroy(st.vip(), st.client()) {
            Ok(true) => {
                self.metrics.stale_retired.inc();
                tracing::debug!(client = %st.client(), "retired a stale socket of the 4-tuple");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(client = %st.client(), error = %e,
                    "cannot retire the stale socket of a 4-tuple (SOCK_DESTROY)");
                false
            }
        }
    }

    /// Drops what is held for a connection the core no longer tracks.
    fn forget(&mut self, conn: ConnKey) {
        if let Some(held) = self.held.remove(&conn) {
            if let Some(c) = held.cookie {
                self.by_cookie.remove(&c);
            }
            if let Some(t) = held.token {
                self.offered.remove(&t);
            }
        }
    }
}
