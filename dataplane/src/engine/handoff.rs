//! DISPATCH and HANDOFF: waiting for the control plane's decision, sending
//! THOP_CREATE (`docs/thop.md` §6) to the chosen agent until THOP_ACK, and
//! asking for another backend on THOP_NACK (the paper's THOP_NOTIFYDROP) or
//! timeout. The request bytes stay in the session until the ACK, so no
//! accepted request is lost before handoff.
//!
//! Client packets arriving meanwhile are held (at most `handoff_hold`) and
//! relayed after the ACK, so none reaches the backend before its socket
//! exists; beyond that they are dropped and the client retransmits.
//!
//! Held packets are buffers of the worker's packet pool (on DPDK, of the
//! mempool all workers share), so only segments that bring something new
//! (data beyond what the switch acknowledged and not held yet, or a FIN) are
//! held, and a worker holds at most `held_capacity` in all (`hold_worker_full`
//! beyond): pure ACKs and retransmissions, which a client can send at line
//! rate, never pin a buffer.

use std::net::{IpAddr, SocketAddr};

use handoff_proto::{
    Body, CreateSplitter, DecodeError, Endpoints, Header, Now, TcpState, Timestamps, WindowScale,
};

use super::aborts::PendingAbort;
use crate::arp::Lookup;
use crate::counters::{bump, AbortReason, CloseReason, DropReason};
use crate::dispatch::{
    BackendTarget, ConnToken, Decision, HandoffOutcome, LoadReport, Verdict, WorkerEvent,
};
use crate::engine::session::Phase;
use crate::engine::{dur_ms, Engine, Forwarder, Sink};
use crate::io::PacketBuf;
use crate::peer::{PeerMsg, PeerReply};
use crate::state::{Event, State};
use crate::table::Slot;
use crate::wire::{self, flags::*, Mac, TcpSeg, UdpDgram};

/// ARP retry while a backend MAC is unknown.
const ARP_RETRY_MS: u64 = 100;

impl<B: PacketBuf, F: Forwarder> Engine<B, F> {
    pub(crate) fn token(&self, i: u32) -> ConnToken {
        ConnToken {
            worker: self.index,
            slot: i,
            generation: self.table.get(i).generation(),
        }
    }

    fn unix_ms(&self) -> u64 {
        self.shared.epoch_unix_ms + self.now_ns / 1_000_000
    }

    /// The agent node id of a backend, as the last decision for it said.
    fn backend_node(&self, id: u32) -> Option<u32> {
        self.backend_nodes
            .get(id as usize)
            .copied()
            .filter(|n| *n != 0)
    }

    /// A client segment while DISPATCH or HANDOFF is pending.
    pub(crate) fn on_pending<S: Sink<B>>(
        &mut self,
        i: u32,
        s: u32,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        if seg.has(RST) {
            let sess = &self.sessions[s as usize];
            let (rcv_nxt, wnd) = (sess.rcv_nxt_reasm(), sess.reasm.window() as u32);
            return self.on_owned_rst(i, s, rcv_nxt, wnd, &seg, out);
        }
        if seg.has(SYN) {
            // RFC 5961 §4: a SYN on a synchronized connection gets a challenge ACK.
            self.counters.count_drop(DropReason::BadState);
            return self.send_ack(out, i, s);
        }
        let sess = &mut self.sessions[s as usize];
        let rcv_nxt = sess.rcv_nxt_reasm();
        let wnd = sess.reasm.window() as u32;
        if seg.has(ACK) && seg.ack == sess.iss.wrapping_add(1) {
            sess.client_window = (seg.window as u32) << sess.client_ws.unwrap_or(0);
        }
        let len = seg.len() as u32;
        let fin = seg.has(FIN) as u32;
        if len + fin == 0 {
            // A pure ACK. Before HANDOFF it brings the backend nothing. In
            // HANDOFF, one acknowledging bytes beyond our SYN/ACK means the
            // backend has adopted the socket and is already answering (its
            // THOP_ACK is still on the way): keep the latest, relayed when
            // FORWARDING starts, or the backend would wait out a
            // retransmission timeout for the ACKs of its first window.
            let beyond = seg.ack.wrapping_sub(sess.iss.wrapping_add(1)) as i32;
            if sess.phase == Phase::Handoff && seg.has(ACK) && beyond > 0 {
                if sess.held_ack.is_none() {
                    if self.held_total >= self.cfg.held_capacity {
                        return self.counters.count_drop(DropReason::HoldWorkerFull);
                    }
                    self.held_total += 1;
                }
                sess.held_ack = Some(pkt);
                bump(&self.counters.held_packets, 1);
                return;
            }
            return self.counters.count_drop(DropReason::NotHeld);
        }
        let start = seg.seq;
        let end = start.wrapping_add(len + fin);
        let ahead = end.wrapping_sub(rcv_nxt);
        if ahead == 0 || (ahead as i32) < 0 {
            // Only bytes already acknowledged: our ACK was lost.
            self.counters.count_drop(DropReason::NotHeld);
            return self.send_ack(out, i, s);
        }
        if ahead > wnd.saturating_add(fin) {
            return self.counters.count_drop(DropReason::OutOfWindow);
        }
        let dup = sess.held_ranges.iter().any(|&(a, b)| {
            (start.wrapping_sub(a) as i32) >= 0 && (b.wrapping_sub(end) as i32) >= 0
        });
        if dup {
            return self.counters.count_drop(DropReason::NotHeld);
        }
        if sess.held.len() >= self.cfg.handoff_hold {
            return self.counters.count_drop(DropReason::HoldFull);
        }
        if self.held_total >= self.cfg.held_capacity {
            return self.counters.count_drop(DropReason::HoldWorkerFull);
        }
        sess.held.push(pkt);
        sess.held_ranges.push((start, end));
        self.held_total += 1;
        bump(&self.counters.held_packets, 1);
    }

    /// The client reset a connection the switch still terminates.
    pub(crate) fn on_client_reset<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) {
        if self.sessions[s as usize].phase == Phase::Handoff {
            self.abort_handoff(
                i,
                s,
                HandoffOutcome::Aborted,
                handoff_proto::AbortReason::ClientReset,
                out,
            );
        }
        self.free_entry(i, Event::ClientRst);
    }

    /// Takes the control plane's answer for one of this worker's connections.
    pub fn handle_decision<S: Sink<B>>(&mut self, now: u64, d: Decision, out: &mut S) {
        self.set_now(now);
        bump(&self.counters.decisions, 1);
        let Decision {
            token,
            verdict,
            header,
            ..
        } = d;
        self.recycle_header(header);
        let live = token.worker == self.index
            && self
                .table
                .get_checked(token.slot, token.generation)
                .is_some();
        let s = match live.then(|| self.table.get(token.slot).slot) {
            Some(Slot::Session(s)) if self.sessions[s as usize].phase == Phase::Dispatch => s,
            _ => return self.counters.count_drop(DropReason::StaleDecision),
        };
        self.apply_verdict(token.slot, s, verdict, out);
    }

    /// Carries out a decision (the control plane's or the worker's own) for
    /// session `s` in DISPATCH: hand off or answer the client.
    pub(crate) fn apply_verdict<S: Sink<B>>(
        &mut self,
        i: u32,
        s: u32,
        verdict: Verdict,
        out: &mut S,
    ) {
        match verdict {
            Verdict::Reject(status) => {
                let reason = if status == 503 {
                    AbortReason::NoBackend
                } else {
                    AbortReason::BadRequest
                };
                self.counters.abort(reason);
                self.respond(i, s, status, Event::Reject, out);
            }
            Verdict::Backend(t) => {
                let Some(to) = self.apply(i, State::Dispatch, Event::Decision) else {
                    return;
                };
                let at = t.id as usize;
                if at < 1 << 16 {
                    if self.backend_nodes.len() <= at {
                        self.backend_nodes.resize(at + 1, 0);
                    }
                    self.backend_nodes[at] = handoff_proto::node_id(t.thop.ip());
                }
                let mac = self.resolve(t.mac, t.ip, out);
                let sess = &mut self.sessions[s as usize];
                sess.target = Some(t);
                sess.target_mac = mac;
                sess.creates_sent = 0;
                self.set_phase(i, s, to);
                self.table.get_mut(i).retries = 0;
                if mac.is_some() {
                    self.send_create(i, s, out);
                    self.table
                        .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.handoff_rto)));
                } else {
                    self.table
                        .arm(i, self.now_ms.wrapping_add(ARP_RETRY_MS as u32));
                }
            }
        }
    }

    /// A backend's MAC: given, cached, or asked for (None until it answers).
    pub(crate) fn resolve<S: Sink<B>>(
        &self,
        given: Option<Mac>,
        ip: IpAddr,
        out: &mut S,
    ) -> Option<Mac> {
        if given.is_some() {
            return given;
        }
        let now = self.now_ns / 1_000_000;
        let cfg_refresh = self.cfg.arp_refresh.as_millis() as u64;
        let cfg_timeout = self.cfg.arp_timeout.as_millis() as u64;
        match self.shared.arp.lookup(ip, now, cfg_refresh, cfg_timeout) {
            Lookup::Fresh(m) => Some(m),
            Lookup::Stale(m) => {
                if self.shared.arp.want(ip, now, ARP_RETRY_MS) {
                    self.ask_neighbour(ip, out);
                }
                Some(m)
            }
            Lookup::Missing => {
                if self.shared.arp.want(ip, now, ARP_RETRY_MS) {
                    self.ask_neighbour(ip, out);
                }
                None
            }
        }
    }

    /// An ARP request (IPv4) or a neighbour solicitation (IPv6) for `a`,
    /// from the switch's data address of that family (for IPv6 the
    /// link-local one when it has no other).
    fn ask_neighbour<S: Sink<B>>(&self, a: IpAddr, out: &mut S) {
        match (a, self.cfg.ip) {
            (IpAddr::V4(a), IpAddr::V4(src)) => self.send_arp(out, true, [0; 6], src, a),
            (IpAddr::V6(a), _) => {
                let src = self.cfg.data_ip6().unwrap_or(self.link_local);
                self.send_nd(out, src, crate::wire::nd::Out::Solicit { target: a });
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => {}
        }
    }

    /// A MAC became known: send the CREATEs that waited for it.
    pub(crate) fn arp_learned<S: Sink<B>>(&mut self, ip: IpAddr, mac: Mac, out: &mut S) {
        for s in 0..self.sessions.len() as u32 {
            let sess = &mut self.sessions[s as usize];
            let waiting = sess.phase == Phase::Handoff
                && sess.target_mac.is_none()
                && sess.target.as_ref().is_some_and(|t| t.ip == ip);
            if !waiting {
                continue;
            }
            let i = sess.entry;
            if !matches!(self.table.get(i).slot, Slot::Session(x) if x == s) {
                continue;
            }
            self.sessions[s as usize].target_mac = Some(mac);
            self.send_create(i, s, out);
            self.table
                .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.handoff_rto)));
        }
    }

    /// The TCP state the backend continues from.
    fn tcp_state(&self, i: u32, s: u32) -> Option<TcpState> {
        let e = self.table.get(i);
        let svc = self.svcs[e.key.service as usize];
        let sess = &self.sessions[s as usize];
        let endpoints = Endpoints::new(
            SocketAddr::new(e.key.client_ip(), e.key.client_port),
            SocketAddr::new(svc.vip, svc.port),
        )?;
        let ours = self.cfg.tcp.window_scale;
        let adv = self.adv_window(sess) as u32;
        Some(TcpState {
            endpoints,
            client_isn: sess.irs,
            client_next: sess.irs.wrapping_add(1).wrapping_add(sess.frozen as u32),
            server_isn: sess.iss,
            server_next: sess.iss.wrapping_add(1),
            client_window: sess.client_window,
            server_window: if sess.client_ws.is_some() {
                adv << ours
            } else {
                adv
            },
            mss: sess.mss,
            window_scale: sess.client_ws.map(|c| WindowScale {
                client: c,
                server: ours,
            }),
            sack_permitted: sess.sack,
            timestamps: sess.ts.then(|| Timestamps {
                recent: sess.ts_recent,
                next_val: self.now_ms.wrapping_add(sess.ts_off),
            }),
        })
    }

    /// Sends (or resends) every CREATE fragment of session `s`.
    pub(crate) fn send_create<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) {
        let Some(target) = self.sessions[s as usize].target.clone() else {
            return;
        };
        let Some(state) = self.tcp_state(i, s) else {
            return self.counters.count_drop(DropReason::Unsupported);
        };
        let agent_mac = if target.thop.ip() == target.ip {
            self.sessions[s as usize].target_mac
        } else {
            self.resolve(None, target.thop.ip(), out)
        };
        let Some(agent_mac) = agent_mac else {
            return self.counters.count_drop(DropReason::ArpUnresolved);
        };
        let frozen = self.sessions[s as usize].frozen;
        let retransmit = self.sessions[s as usize].creates_sent > 0;
        let Some((src, sender)) = self.own_addr_for(target.thop.ip()) else {
            return self.counters.count_drop(DropReason::Unsupported);
        };
        let max_frame = if target.thop.is_ipv6() {
            handoff_proto::MAX_FRAME_LEN_V6
        } else {
            handoff_proto::MAX_FRAME_LEN_V4
        };
        let split = match CreateSplitter::new(
            state,
            &self.sessions[s as usize].reasm.data()[..frozen],
            max_frame,
        ) {
            Ok(x) => x,
            Err(_) => return self.counters.count_drop(DropReason::Unsupported),
        };
        let cid = self.ids.conn_id(self.token(i));
        let receiver = handoff_proto::node_id(target.thop.ip());
        let mut first_seq = None;
        for k in 0..split.fragment_count() {
            let msg_seq = self.shared.thop_seq.next();
            first_seq.get_or_insert(msg_seq);
            let hdr = Header {
                flags: if retransmit {
                    handoff_proto::flags::RETRANSMIT
                } else {
                    0
                },
                sender,
                receiver,
                boot: self.cfg.boot,
                conn_id: cid,
                msg_seq,
                timestamp_ms: self.unix_ms(),
            };
            let Some(mut b) = out.alloc() else {
                return self.counters.count_drop(DropReason::NoBuffer);
            };
            let flen = split.frame_len(k);
            let at = wire::udp_payload_offset_to(target.thop.ip());
            let total = at + flen;
            if !b.set_len(total) {
                return self.counters.count_drop(DropReason::NoBuffer);
            }
            split.write(
                k,
                &hdr,
                self.keys.for_peer(receiver),
                &mut b.data_mut()[at..total],
            );
            let port = self.cfg.thop.port;
            if wire::emit_udp(
                b.data_mut(),
                self.cfg.mac,
                agent_mac,
                src,
                target.thop.ip(),
                port,
                target.thop.port(),
                flen,
            )
            .is_none()
            {
                return self.counters.count_drop(DropReason::NoBuffer);
            }
            self.transmit(out, b);
        }
        let sess = &mut self.sessions[s as usize];
        if sess.creates_sent == 0 {
            sess.create_seq_lo = first_seq.unwrap_or(0);
            bump(&self.counters.thop_create_sent, 1);
        } else {
            bump(&self.counters.thop_retransmits, 1);
        }
        sess.creates_sent += 1;
    }

    /// Sends a small THOP frame (ABORT, ACK of CLOSE) to `to`; returns its
    /// `msg_seq`.
    pub(crate) fn send_thop<S: Sink<B>>(
        &self,
        out: &mut S,
        to: SocketAddr,
        mac: Mac,
        cid: u64,
        body: Body<'_>,
    ) -> u64 {
        let Some((src, sender)) = self.own_addr_for(to.ip()) else {
            self.counters.count_drop(DropReason::Unsupported);
            return 0;
        };
        let hdr = Header {
            flags: 0,
            sender,
            receiver: handoff_proto::node_id(to.ip()),
            boot: self.cfg.boot,
            conn_id: cid,
            msg_seq: self.shared.thop_seq.next(),
            timestamp_ms: self.unix_ms(),
        };
        let Some(mut b) = out.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return hdr.msg_seq;
        };
        let flen = handoff_proto::frame_len(&body);
        let at = wire::udp_payload_offset_to(to.ip());
        let total = at + flen;
        if !b.set_len(total) {
            self.counters.count_drop(DropReason::NoBuffer);
            return hdr.msg_seq;
        }
        handoff_proto::seal(
            &hdr,
            &body,
            self.keys.for_peer(hdr.receiver),
            &mut b.data_mut()[at..total],
        );
        if wire::emit_udp(
            b.data_mut(),
            self.cfg.mac,
            mac,
            src,
            to.ip(),
            self.cfg.thop.port,
            to.port(),
            flen,
        )
        .is_some()
        {
            self.transmit(out, b);
        }
        hdr.msg_seq
    }

    /// Tells the agent to forget a CREATE (sent again until it answers) and
    /// reports the outcome.
    fn abort_handoff<S: Sink<B>>(
        &mut self,
        i: u32,
        s: u32,
        outcome: HandoffOutcome,
        why: handoff_proto::AbortReason,
        out: &mut S,
    ) {
        let sess = &self.sessions[s as usize];
        let Some(t) = sess.target.clone() else { return };
        let latency = self.now_ns.saturating_sub(sess.header_done_ns);
        if let Some(mac) = sess.target_mac {
            let cid = self.ids.conn_id(self.token(i));
            let seq = self.send_thop(
                out,
                t.thop,
                mac,
                cid,
                Body::Abort(handoff_proto::Abort { reason: why }),
            );
            let given_up = self.aborts.push(PendingAbort {
                to: t.thop,
                mac,
                node: handoff_proto::node_id(t.thop.ip()),
                conn_id: cid,
                reason: why,
                first_seq: seq,
                sent: 1,
                due_ns: self.now_ns + self.cfg.handoff_rto.as_nanos() as u64,
            });
            if given_up.is_some() {
                bump(&self.counters.thop_aborts_unacknowledged, 1);
            }
        }
        match outcome {
            HandoffOutcome::TimedOut => bump(&self.counters.handoff_timed_out, 1),
            HandoffOutcome::Aborted => bump(&self.counters.handoff_aborted, 1),
            HandoffOutcome::Nacked(_) => bump(&self.counters.handoff_nacked, 1),
            HandoffOutcome::Acked => {}
        }
        if !out.event(WorkerEvent::Handoff {
            backend: t.id,
            outcome,
            latency_ns: latency,
        }) {
            self.counters.count_drop(DropReason::QueueFull);
        }
    }

    /// Sends the ABORTs due again (back-off doubling, as many transmissions
    /// as a CREATE gets); gives up on those without an answer after the last.
    pub(crate) fn retransmit_aborts<S: Sink<B>>(&mut self, out: &mut S) {
        while let Some(mut a) = self.aborts.pop_due(self.now_ns) {
            if a.sent > self.cfg.handoff_retries {
                bump(&self.counters.thop_aborts_unacknowledged, 1);
                continue;
            }
            self.send_thop(
                out,
                a.to,
                a.mac,
                a.conn_id,
                Body::Abort(handoff_proto::Abort { reason: a.reason }),
            );
            bump(&self.counters.thop_abort_retransmits, 1);
            let rto = self.cfg.handoff_rto.as_nanos() as u64;
            a.due_ns = self.now_ns + rto.saturating_mul(1 << a.sent.min(10));
            a.sent += 1;
            self.aborts.push(a);
        }
    }

    /// NACK or timeout: ask for another backend, or answer 503.
    fn redispatch_or_fail<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) {
        let sess = &mut self.sessions[s as usize];
        if let Some(t) = sess.target.take() {
            sess.exclude.push(t.id);
        }
        sess.target_mac = None;
        // An ACK of the refused backend's data means nothing to the next.
        if sess.held_ack.take().is_some() {
            self.held_total = self.held_total.saturating_sub(1);
        }
        if sess.attempts < self.cfg.dispatch_attempts {
            let Some(to) = self.apply(i, State::Handoff, Event::Redispatch) else {
                return;
            };
            self.set_phase(i, s, to);
            bump(&self.counters.redispatches, 1);
            self.request_dispatch(i, s, out);
        } else {
            self.counters.abort(AbortReason::HandoffFailed);
            self.respond(i, s, 503, Event::HandoffFailed, out);
        }
    }

    pub(crate) fn decision_timer<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) {
        self.counters.abort(AbortReason::DecisionTimeout);
        self.respond(i, s, 503, Event::Reject, out);
    }

    pub(crate) fn handoff_timer<S: Sink<B>>(&mut self, _now: u64, i: u32, s: u32, out: &mut S) {
        let retries = self.table.get(i).retries;
        if !crate::engine::retries_exhausted(retries, self.cfg.handoff_retries) {
            self.table.get_mut(i).retries = retries.saturating_add(1);
            let retries = retries as u32;
            let sess = &self.sessions[s as usize];
            if sess.target_mac.is_none() {
                // Still resolving: ask again.
                let t = sess.target.clone();
                if let Some(t) = t {
                    let mac = self.resolve(t.mac, t.ip, out);
                    self.sessions[s as usize].target_mac = mac;
                }
            }
            if self.sessions[s as usize].target_mac.is_some() {
                self.send_create(i, s, out);
            }
            let rto = dur_ms(self.cfg.handoff_rto).saturating_mul(1 << (retries + 1).min(10));
            self.table.arm(i, self.now_ms.wrapping_add(rto));
            return;
        }
        self.abort_handoff(
            i,
            s,
            HandoffOutcome::TimedOut,
            handoff_proto::AbortReason::HandoffTimeout,
            out,
        );
        self.redispatch_or_fail(i, s, out);
    }

    /// A UDP datagram: THOP from an agent, or not for us.
    pub(crate) fn on_udp<S: Sink<B>>(&mut self, now: u64, pkt: B, d: UdpDgram, out: &mut S) {
        let node = match self.own_addr_for(d.dst) {
            Some((own, node)) if own == d.dst && d.dst_port == self.cfg.thop.port => node,
            _ => return self.counters.count_drop(DropReason::NotForUs),
        };
        if !wire::udp_dgram_checksum_ok(pkt.data(), &d) {
            return self.counters.count_drop(DropReason::BadChecksum);
        }
        let data = pkt.data();
        let Some(payload) = data.get(d.payload.0..d.payload.0 + d.payload.1) else {
            return self.counters.count_drop(DropReason::Malformed);
        };
        let (frame, _) = match handoff_proto::open(&self.keys, node, payload) {
            Ok(f) => f,
            Err(DecodeError::KeyNotForSender { .. }) => {
                return self.counters.count_drop(DropReason::ThopKeyNotForSender)
            }
            Err(_) => return self.counters.count_drop(DropReason::ThopInvalid),
        };
        // One window per sender for all workers (docs/thop.md §7.4).
        let clock = Now {
            wall_ms: self.unix_ms(),
            mono_ms: self.now_ns / 1_000_000,
        };
        let fresh = self
            .shared
            .thop_replay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .accept_at(&frame.header, clock);
        if fresh.is_err() {
            return self.counters.count_drop(DropReason::ThopReplay);
        }
        let h = frame.header;
        self.note_agent_boot(h.sender, h.boot, out);
        let (reply, echo) = match frame.body {
            Body::Ack(a) => (PeerReply::Ack, a.echo_seq),
            Body::Nack(n) => (PeerReply::Nack(n.reason.to_u16()), n.echo_seq),
            Body::Close(_) => {
                let from = SocketAddr::new(d.src, d.src_port);
                self.send_thop(
                    out,
                    from,
                    d.src_mac,
                    h.conn_id,
                    Body::Ack(handoff_proto::Ack {
                        echo_seq: h.msg_seq,
                    }),
                );
                (PeerReply::Close, 0)
            }
            Body::Load(l) => {
                bump(&self.counters.load_reports, 1);
                let ev = WorkerEvent::Load {
                    from: SocketAddr::new(d.src, d.src_port),
                    sender: h.sender,
                    report: LoadReport {
                        active: l.active_conns,
                        adopted_per_sec: l.adopted_per_sec,
                        capacity_hint: l.capacity_hint,
                    },
                };
                if !out.event(ev) {
                    self.counters.count_drop(DropReason::QueueFull);
                }
                return;
            }
            Body::Flows(f) => return self.on_flows(h.sender, f.records),
            Body::Create(_) | Body::Abort(_) | Body::Hello(_) | Body::Lookup(_) => {
                return self.counters.count_drop(DropReason::Ignored)
            }
        };
        // A recovered connection keeps the id it was handed off under,
        // which another switch (or process) chose.
        let token = match self.shared.recovery.route(h.sender, h.conn_id) {
            Some(t) => t,
            None => match self.ids.token_of(h.conn_id) {
                Some(t) => t,
                None => return self.counters.count_drop(DropReason::ThopStale),
            },
        };
        let msg = PeerMsg {
            token,
            reply,
            sender: h.sender,
            echo_seq: echo,
        };
        if token.worker == self.index {
            self.handle_peer(now, msg, out);
        } else if out.relay(token.worker, msg) {
            bump(&self.counters.thop_peer_relayed, 1);
        } else {
            self.counters.count_drop(DropReason::QueueFull);
        }
    }

    /// Applies a THOP reply for one of this worker's connections.
    pub fn handle_peer<S: Sink<B>>(&mut self, now: u64, msg: PeerMsg, out: &mut S) {
        self.set_now(now);
        if msg.reply == PeerReply::Ack
            && self.aborts.len() > 0
            && self
                .aborts
                .acked(msg.sender, self.ids.conn_id(msg.token), msg.echo_seq)
        {
            return;
        }
        let i = msg.token.slot;
        if self.table.get_checked(i, msg.token.generation).is_none() {
            return self.counters.count_drop(DropReason::ThopStale);
        }
        match (self.table.get(i).slot, msg.reply) {
            (Slot::Session(s), reply) if self.sessions[s as usize].phase == Phase::Handoff => {
                let sess = &self.sessions[s as usize];
                let from_target = sess
                    .target
                    .as_ref()
                    .is_some_and(|t| handoff_proto::node_id(t.thop.ip()) == msg.sender);
                if !from_target {
                    return self.counters.count_drop(DropReason::ThopStale);
                }
                match reply {
                    PeerReply::Ack
                        if msg.echo_seq >= sess.create_seq_lo && sess.creates_sent > 0 =>
                    {
                        self.enter_forwarding(now, i, s, out)
                    }
                    PeerReply::Ack => self.counters.count_drop(DropReason::ThopStale),
                    PeerReply::Nack(code) => {
                        if msg.echo_seq < sess.create_seq_lo {
                            return self.counters.count_drop(DropReason::ThopStale);
                        }
                        self.abort_handoff_nack(i, s, code, out);
                        self.redispatch_or_fail(i, s, out);
                    }
                    PeerReply::Close => {
                        // Adopted and already closed (our ACK was lost): done.
                        let backend = sess.target.as_ref().map_or(0, |t| t.id);
                        if self.free_entry(i, Event::ThopClose) {
                            bump(&self.counters.closes[CloseReason::ThopClose as usize], 1);
                            let _ = out.event(WorkerEvent::Closed { backend });
                        }
                    }
                }
            }
            (
                Slot::Forwarding {
                    backend,
                    fin,
                    closed,
                    ..
                },
                PeerReply::Close,
            ) => {
                if self.backend_node(backend) != Some(msg.sender) {
                    // Another agent (or one the switch never handed this
                    // connection to) may not end it.
                    return self.counters.count_drop(DropReason::ThopNotOwner);
                }
                if closed {
                    // A retransmitted CLOSE (our ACK was lost): acknowledged
                    // again, nothing more to do.
                    return;
                }
                let done = if fin {
                    self.free_entry(i, Event::ThopClose)
                } else {
                    self.linger_closed(i)
                };
                if !done {
                    return;
                }
                bump(&self.counters.closes[CloseReason::ThopClose as usize], 1);
                if !out.event(WorkerEvent::Closed { backend }) {
                    self.counters.count_drop(DropReason::QueueFull);
                }
            }
            _ => self.counters.count_drop(DropReason::ThopStale),
        }
    }

    fn abort_handoff_nack<S: Sink<B>>(&mut self, _i: u32, s: u32, code: u16, out: &mut S) {
        let sess = &self.sessions[s as usize];
        let Some(t) = sess.target.as_ref() else {
            return;
        };
        let latency = self.now_ns.saturating_sub(sess.header_done_ns);
        bump(&self.counters.handoff_nacked, 1);
        if !out.event(WorkerEvent::Handoff {
            backend: t.id,
            outcome: HandoffOutcome::Nacked(code),
            latency_ns: latency,
        }) {
            self.counters.count_drop(DropReason::QueueFull);
        }
    }

    /// HANDOFF → FORWARDING: relay the held packets, free the session.
    fn enter_forwarding<S: Sink<B>>(&mut self, now: u64, i: u32, s: u32, out: &mut S) {
        let sess = &self.sessions[s as usize];
        let (Some(t), Some(mac)) = (sess.target.clone(), sess.target_mac) else {
            return;
        };
        let Some(to) = self.apply(i, State::Handoff, Event::ThopAck) else {
            return;
        };
        let sess = &mut self.sessions[s as usize];
        let mut held = std::mem::take(&mut sess.held);
        sess.held_ranges.clear();
        let held_ack = sess.held_ack.take();
        self.held_total = self
            .held_total
            .saturating_sub(held.len() + usize::from(held_ack.is_some()));
        let latency = now.saturating_sub(sess.header_done_ns);
        bump(&self.counters.handoff_acked, 1);
        if !out.event(WorkerEvent::Handoff {
            backend: t.id,
            outcome: HandoffOutcome::Acked,
            latency_ns: latency,
        }) {
            self.counters.count_drop(DropReason::QueueFull);
        }
        let BackendTarget { id, .. } = t;
        let sess = &self.sessions[s as usize];
        // The backend's window scale is ours when the client agreed to
        // scaling (it continues with the options of our SYN/ACK).
        let wshift = if sess.client_ws.is_some() {
            self.cfg.tcp.window_scale
        } else {
            0
        };
        let mut rcv_nxt = sess.rcv_nxt_reasm();
        let mut fin = false;
        // The latest acknowledgment a held segment carries.
        let mut acked: Option<u32> = None;
        for mut p in held.drain(..) {
            if let Ok(wire::Frame::Tcp(seg)) = wire::parse(p.data(), wire::Verify::Header) {
                if seg.has(ACK) && acked.is_none_or(|a| (seg.ack.wrapping_sub(a) as i32) > 0) {
                    acked = Some(seg.ack);
                }
                let end = seg.seq.wrapping_add(seg.len() as u32);
                let covers = (seg.seq.wrapping_sub(rcv_nxt) as i32) <= 0
                    && (end.wrapping_sub(rcv_nxt) as i32) >= 0;
                if seg.has(FIN) && covers {
                    fin = true;
                    rcv_nxt = end.wrapping_add(1);
                } else {
                    rcv_nxt = super::forward::advance(rcv_nxt, end, wshift);
                }
            }
            if self.fwd.forward(&mut p, mac) {
                bump(&self.counters.forwarded, 1);
                self.transmit(out, p);
            }
        }
        // The latest ACK of the backend's first bytes goes last: it is
        // cumulative, and the data held before it is older. Unless a held
        // segment (typically the client's FIN, sent after it) acknowledges
        // as much: then the pure ACK is older than that segment, and sent
        // after it the backend would take it for a duplicate and answer it
        // (from TIME_WAIT, an ACK the client's closed socket resets).
        let superseded = held_ack.as_ref().is_some_and(|p| {
            match (wire::parse(p.data(), wire::Verify::Header), acked) {
                (Ok(wire::Frame::Tcp(a)), Some(held)) => (a.ack.wrapping_sub(held) as i32) <= 0,
                _ => false,
            }
        });
        if superseded {
            bump(&self.counters.held_acks_superseded, 1);
        } else if let Some(mut p) = held_ack {
            if self.fwd.forward(&mut p, mac) {
                bump(&self.counters.forwarded, 1);
                self.transmit(out, p);
            }
        }
        self.sessions[s as usize].held = held;
        self.release_session(s);
        let e = self.table.get_mut(i);
        e.slot = Slot::Forwarding {
            mac,
            backend: id,
            fin: false,
            closed: false,
            rcv_nxt,
            wshift,
            offloaded: false,
        };
        e.last_seen = self.now_ms;
        e.retries = 0;
        self.stored(i, to);
        self.table
            .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.idle_timeout)));
        // The held packets went out first; from here on the kernel may relay
        // the client's ordinary segments itself.
        self.offload_insert(i);
        if fin {
            self.mark_fin(i);
        }
    }
}
