//! WAITHEADER: reading the request (reassembly, ACKs, window), parsing its
//! head — or on a TLS service its ClientHello — and the switch's own answers
//! (400, 408, 431, 503; TLS alerts or a bare close on TLS services) with a
//! clean close (CLOSING → TIME_WAIT).
//!
//! Sequence space is the client's view from the SYN on; the switch only ever
//! sends its SYN/ACK, pure ACKs and, when it answers itself, one response
//! segment with FIN. Every data segment is ACKed at once (no delayed ACK:
//! the switch wants the header quickly, and the ACKs are tiny).

use crate::counters::{bump, AbortReason, DropReason};
use crate::dispatch::{DispatchRequest, LocalRequest, Verdict, WorkerEvent};
use crate::engine::session::Phase;
use crate::engine::{dur_ms, Engine, Forwarder, Sink};
use crate::http;
use crate::io::PacketBuf;
use crate::reassembly::Refused;
use crate::state::{Event, State};
use crate::table::{FlowKey, Slot};
use crate::tls::{self, TlsError};
use crate::wire::{flags::*, TcpOpts, TcpSeg};

/// Header fields parsed at most (stack array; `max_headers` may lower it).
const HEADER_ARRAY: usize = 128;

impl<B: PacketBuf, F: Forwarder> Engine<B, F> {
    /// A segment for a connection with a session (any phase).
    pub(crate) fn on_session<S: Sink<B>>(
        &mut self,
        now: u64,
        i: u32,
        s: u32,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        match self.sessions[s as usize].phase {
            Phase::WaitHeader => self.on_wait_header(now, i, s, pkt, seg, out),
            Phase::Dispatch | Phase::Handoff => self.on_pending(i, s, pkt, seg, out),
            Phase::Closing => self.on_closing(i, s, seg, out),
        }
    }

    /// Timestamp option for a segment we send on `sess`'s connection.
    fn ts_opt(&self, _key: &FlowKey, s: u32) -> TcpOpts {
        let sess = &self.sessions[s as usize];
        TcpOpts {
            timestamp: sess
                .ts
                .then(|| (self.now_ms.wrapping_add(sess.ts_off), sess.ts_recent)),
            ..TcpOpts::default()
        }
    }

    /// A pure ACK of everything received in order.
    pub(crate) fn send_ack<S: Sink<B>>(&self, out: &mut S, i: u32, s: u32) {
        let key = self.table.get(i).key;
        let sess = &self.sessions[s as usize];
        let ack = if sess.phase == Phase::Closing {
            sess.rcv_nxt
        } else {
            sess.rcv_nxt_reasm()
        };
        let seq = if sess.phase == Phase::Closing {
            sess.iss
                .wrapping_add(1)
                .wrapping_add(sess.response.len() as u32)
                .wrapping_add(1)
        } else {
            sess.iss.wrapping_add(1)
        };
        let win = self.adv_window(sess);
        let mut opts = self.ts_opt(&key, s);
        if sess.sack && sess.phase != Phase::Closing {
            // RFC 2018 §4: report the out-of-order data held (the first three
            // ranges; a request is small, so they are usually all of them).
            let base = sess.irs.wrapping_add(1);
            for &(l, r) in sess.reasm.ranges().iter().take(3) {
                opts.sack[opts.sack_count as usize] = (base.wrapping_add(l), base.wrapping_add(r));
                opts.sack_count += 1;
            }
        }
        self.send_tcp(out, &key, sess.mac, seq, ack, ACK, win, opts, &[]);
    }

    fn on_wait_header<S: Sink<B>>(
        &mut self,
        now: u64,
        i: u32,
        s: u32,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        let (irs, iss, contig) = {
            let sess = &self.sessions[s as usize];
            (sess.irs, sess.iss, sess.reasm.contiguous())
        };
        let rcv_nxt = irs.wrapping_add(1).wrapping_add(contig as u32);
        let wnd = self.sessions[s as usize].reasm.window() as u32;
        if seg.has(RST) {
            return self.on_owned_rst(i, s, rcv_nxt, wnd, &seg, out);
        }
        if seg.has(SYN) {
            // A SYN on an established connection: challenge ACK (RFC 5961 §4).
            self.counters.count_drop(DropReason::BadState);
            return self.send_ack(out, i, s);
        }
        if !seg.has(ACK) {
            return self.counters.count_drop(DropReason::BadState);
        }
        if seg.ack != iss.wrapping_add(1) {
            // Nothing but the SYN was ever sent: this acknowledges the future.
            self.counters.count_drop(DropReason::OutOfWindow);
            return self.send_ack(out, i, s);
        }
        // Timestamps (RFC 7323 §4.3): remember the newest TSval from a
        // segment that is not beyond what we acknowledged.
        if self.sessions[s as usize].ts {
            if let Ok(o) = seg.opts(pkt.data()) {
                if let Some((val, _)) = o.timestamp {
                    let sess = &mut self.sessions[s as usize];
                    if (seg.seq.wrapping_sub(rcv_nxt) as i32) <= 0
                        && (val.wrapping_sub(sess.ts_recent) as i32) >= 0
                    {
                        sess.ts_recent = val;
                    }
                }
            }
        }
        {
            let sess = &mut self.sessions[s as usize];
            sess.client_window = (seg.window as u32) << sess.client_ws.unwrap_or(0);
        }
        let off = seg.seq.wrapping_sub(irs.wrapping_add(1));
        let payload = seg.payload(pkt.data());
        if !payload.is_empty() {
            // Offsets are relative to the first data byte; anything more than
            // the buffer away (before or after) is outside the window.
            let (off, data) = if (off as i32) < 0 {
                let skip = off.wrapping_neg() as usize;
                if skip >= payload.len() {
                    self.counters.count_drop(DropReason::OutOfWindow);
                    return self.send_ack(out, i, s);
                }
                (0usize, &payload[skip..])
            } else {
                (off as usize, payload)
            };
            let cap = self.sessions[s as usize].reasm.capacity();
            if off >= cap {
                self.counters.count_drop(DropReason::OutOfWindow);
                return self.send_ack(out, i, s);
            }
            if let Err(Refused::TooManyHoles) = self.sessions[s as usize].reasm.insert(off, data) {
                self.counters.count_drop(DropReason::OutOfWindow);
            }
        }
        let fin_in_order = seg.has(FIN)
            && seg.seq.wrapping_add(seg.len() as u32) == self.sessions[s as usize].rcv_nxt_reasm();
        let contig_now = self.sessions[s as usize].reasm.contiguous();
        if contig_now > contig || fin_in_order {
            if self.check_header(now, i, s, out) {
                return;
            }
            if fin_in_order {
                // The client closed before sending a whole request head.
                self.counters.abort(AbortReason::ClientClosed);
                let sess = &mut self.sessions[s as usize];
                sess.fin_rcvd = true;
                return self.respond(i, s, 0, Event::BadHeader, out);
            }
        }
        if !payload.is_empty() || seg.has(FIN) {
            self.send_ack(out, i, s);
        }
    }

    /// A RST on a connection the switch still terminates (WAITHEADER,
    /// DISPATCH, HANDOFF, CLOSING), RFC 5961 §3.2: exactly at `rcv_nxt` it
    /// ends the connection; elsewhere in the window it gets a challenge ACK
    /// (a real client answers with a RST at the number the ACK names);
    /// outside it is dropped.
    pub(crate) fn on_owned_rst<S: Sink<B>>(
        &mut self,
        i: u32,
        s: u32,
        rcv_nxt: u32,
        wnd: u32,
        seg: &TcpSeg,
        out: &mut S,
    ) {
        let off = seg.seq.wrapping_sub(rcv_nxt);
        if off == 0 {
            if self.sessions[s as usize].phase != Phase::Closing {
                self.counters.abort(AbortReason::ClientReset);
            }
            self.on_client_reset(i, s, out);
        } else if off < wnd.max(1) {
            bump(&self.counters.challenge_acks, 1);
            self.send_ack(out, i, s);
        } else {
            self.counters.count_drop(DropReason::OutOfWindow);
        }
    }

    /// Looks for a complete head; true when the connection left WAITHEADER.
    fn check_header<S: Sink<B>>(&mut self, now: u64, i: u32, s: u32, out: &mut S) -> bool {
        let service = self.table.get(i).key.service as usize;
        if self.svcs[service].tls {
            return self.check_hello(now, i, s, out);
        }
        let header_max = self.cfg.header_max;
        let end = {
            let sess = &mut self.sessions[s as usize];
            let (scanner, reasm) = (&mut sess.scanner, &sess.reasm);
            scanner.find_end(reasm.data())
        };
        let Some(len) = end else {
            if self.sessions[s as usize].reasm.contiguous() > header_max {
                self.counters.abort(AbortReason::HeaderTooLarge);
                self.respond(i, s, 431, Event::BadHeader, out);
                return true;
            }
            return false;
        };
        if len > header_max {
            self.counters.abort(AbortReason::HeaderTooLarge);
            self.respond(i, s, 431, Event::BadHeader, out);
            return true;
        }
        let max_headers = self.cfg.max_headers.min(HEADER_ARRAY);
        let verdict = {
            let mut fields = [httparse::EMPTY_HEADER; HEADER_ARRAY];
            let data = &self.sessions[s as usize].reasm.data()[..len];
            http::parse_request(data, &mut fields[..max_headers]).map(|_| ())
        };
        if let Err(e) = verdict {
            let reason = if e.status() == 431 {
                AbortReason::HeaderTooLarge
            } else {
                AbortReason::BadRequest
            };
            self.counters.abort(reason);
            self.respond(i, s, e.status(), Event::BadHeader, out);
            return true;
        }
        self.header_complete(now, i, s, len, out)
    }

    /// TLS services: looks for a complete ClientHello (across segments and
    /// records); true when the connection left WAITHEADER. The hello is
    /// parsed here so that a bad one is refused with its alert before any
    /// decision; the decision parses it again from the bytes.
    fn check_hello<S: Sink<B>>(&mut self, now: u64, i: u32, s: u32, out: &mut S) -> bool {
        let max = self.cfg.client_hello_max;
        let found = {
            let sess = &mut self.sessions[s as usize];
            let (scanner, reasm) = (&mut sess.hello, &sess.reasm);
            scanner.find_end(reasm.data(), max)
        };
        let parsed = match found {
            Ok(Some(len)) => {
                tls::parse_client_hello(&self.sessions[s as usize].reasm.data()[..len], max)
                    .map(|ch| (len, ch))
            }
            Ok(None) => {
                let sess = &self.sessions[s as usize];
                if sess.reasm.contiguous() < sess.reasm.capacity() {
                    return false;
                }
                // The buffer is full and the hello is not: records cut so
                // small that their headers outgrow the buffer.
                Err(TlsError::TooLarge)
            }
            Err(e) => Err(e),
        };
        let (len, hello) = match parsed {
            Ok(x) => x,
            Err(e) => {
                self.counters.abort(match e {
                    TlsError::NotTls => AbortReason::TlsNotTls,
                    TlsError::Sslv2 => AbortReason::TlsSslv2,
                    TlsError::TooLarge | TlsError::RecordOverflow => AbortReason::TlsTooLarge,
                    TlsError::Malformed(_) | TlsError::Unexpected => AbortReason::TlsMalformed,
                });
                self.respond_tls(i, s, e.alert(), Event::BadHeader, out);
                return true;
            }
        };
        let c = &self.counters;
        bump(
            match hello.alpn.first().map(String::as_str) {
                Some("h2") => &c.tls_hellos_h2,
                Some("http/1.1") => &c.tls_hellos_http11,
                Some(_) => &c.tls_hellos_other_alpn,
                None => &c.tls_hellos_no_alpn,
            },
            1,
        );
        if hello.version >= tls::TLS13 {
            bump(&c.tls_hellos_tls13, 1);
        }
        self.header_complete(now, i, s, len, out)
    }

    /// The request (head or ClientHello, `len` bytes) is complete: freeze
    /// it and decide. True when the connection left WAITHEADER.
    fn header_complete<S: Sink<B>>(
        &mut self,
        now: u64,
        i: u32,
        s: u32,
        len: usize,
        out: &mut S,
    ) -> bool {
        let Some(to) = self.apply(i, State::WaitHeader, Event::HeaderComplete) else {
            return false;
        };
        // Freeze: everything in order so far is the request handed off.
        {
            let sess = &mut self.sessions[s as usize];
            sess.header_len = len;
            sess.frozen = sess.reasm.contiguous();
            sess.header_done_ns = now;
        }
        self.send_ack(out, i, s);
        self.set_phase(i, s, to);
        if !self.decide_locally(i, s, out) {
            self.request_dispatch(i, s, out);
        }
        true
    }

    /// Decides a first dispatch on this thread when the decider can (no
    /// exclusions, a stateless pool); false: send it to the control plane.
    /// The header is read in place; a copy is made only when the decider
    /// samples it for the access log (from the header pool).
    fn decide_locally<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) -> bool {
        let Some(decider) = self.decider.as_mut() else {
            return false;
        };
        let e = *self.table.get(i);
        let svc = self.svcs[e.key.service as usize];
        let sess = &mut self.sessions[s as usize];
        if !sess.exclude.is_empty() {
            return false;
        }
        let header = &sess.reasm.data()[..sess.header_len];
        let client = std::net::SocketAddr::new(e.key.client_ip(), e.key.client_port);
        let vip = std::net::SocketAddr::new(svc.vip, svc.port);
        let Some(d) = decider.decide(&LocalRequest {
            client,
            vip,
            header,
        }) else {
            return false;
        };
        sess.attempts += 1;
        let logged = if d.log {
            let mut h = self.header_pool.pop().unwrap_or_default();
            h.clear();
            h.extend_from_slice(header);
            h
        } else {
            Vec::new()
        };
        bump(&self.counters.local_decisions, 1);
        let ev = WorkerEvent::Decided {
            worker: self.index,
            pool: d.pool,
            member: d.member,
            service: d.service,
            rule: d.rule,
            backend: match &d.verdict {
                Verdict::Backend(t) => Some(t.id),
                Verdict::Reject(_) => None,
            },
            client,
            vip,
            header: logged,
        };
        if !out.event(ev) {
            self.counters.count_drop(DropReason::QueueFull);
        }
        self.apply_verdict(i, s, d.verdict, out);
        true
    }

    /// Queues a dispatch request for session `s` (first try or after a NACK).
    pub(crate) fn request_dispatch<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) {
        let e = *self.table.get(i);
        let svc = self.svcs[e.key.service as usize];
        let mut header = self.header_pool.pop().unwrap_or_default();
        header.clear();
        let (client_port, len) = (e.key.client_port, self.sessions[s as usize].header_len);
        header.extend_from_slice(&self.sessions[s as usize].reasm.data()[..len]);
        let sess = &mut self.sessions[s as usize];
        sess.attempts += 1;
        let req = DispatchRequest {
            token: crate::dispatch::ConnToken {
                worker: self.index,
                slot: i,
                generation: e.generation(),
            },
            client: std::net::SocketAddr::new(e.key.client_ip(), client_port),
            vip: std::net::SocketAddr::new(svc.vip, svc.port),
            header,
            exclude: sess.exclude.clone(),
            header_complete_ns: sess.header_done_ns,
        };
        match out.dispatch(req) {
            Ok(()) => {
                bump(&self.counters.requests_dispatched, 1);
                self.table.arm(
                    i,
                    self.now_ms.wrapping_add(dur_ms(self.cfg.decision_timeout)),
                );
            }
            Err(req) => {
                self.recycle_header(req.header);
                self.counters.count_drop(DropReason::QueueFull);
                self.counters.abort(AbortReason::NoBackend);
                self.respond(i, s, 503, Event::Reject, out);
            }
        }
    }

    /// Keeps a header buffer for the next dispatch (up to `pending_capacity`).
    pub fn recycle_header(&mut self, mut h: Vec<u8>) {
        if self.header_pool.len() < self.cfg.pending_capacity {
            h.clear();
            self.header_pool.push(h);
        }
    }

    /// Answers the client with `status` (0: no body, just close) and FIN;
    /// the connection moves to CLOSING by `ev`. On a TLS service the
    /// answer is the alert that stands for `status`, or a bare close.
    pub(crate) fn respond<S: Sink<B>>(
        &mut self,
        i: u32,
        s: u32,
        status: u16,
        ev: Event,
        out: &mut S,
    ) {
        let service = self.table.get(i).key.service as usize;
        if self.svcs[service].tls {
            return self.respond_tls(i, s, tls::Alert::for_status(status), ev, out);
        }
        let response: &'static [u8] = if status == 0 {
            b""
        } else {
            http::response(status)
        };
        if !self.respond_with(i, s, response, ev, out) {
            return;
        }
        if (400..500).contains(&status) {
            bump(&self.counters.responses_4xx, 1);
        } else if status >= 500 {
            bump(&self.counters.responses_5xx, 1);
        }
    }

    /// A TLS service's refusal: a fatal alert record, or (`None`) nothing
    /// before the FIN.
    pub(crate) fn respond_tls<S: Sink<B>>(
        &mut self,
        i: u32,
        s: u32,
        alert: Option<tls::Alert>,
        ev: Event,
        out: &mut S,
    ) {
        let record = alert.map(tls::Alert::record).unwrap_or(b"");
        if self.respond_with(i, s, record, ev, out) && alert.is_some() {
            bump(&self.counters.tls_alerts, 1);
        }
    }

    /// Sends `response` (may be empty) and FIN; the connection moves to
    /// CLOSING by `ev`. False when the state machine refused `ev` (nothing
    /// was sent).
    fn respond_with<S: Sink<B>>(
        &mut self,
        i: u32,
        s: u32,
        response: &'static [u8],
        ev: Event,
        out: &mut S,
    ) -> bool {
        let from = self.state_at(i);
        let Some(to) = self.apply(i, from, ev) else {
            return false;
        };
        let sess = &mut self.sessions[s as usize];
        let fin = sess.fin_rcvd as u32;
        sess.rcv_nxt = sess.rcv_nxt_reasm().wrapping_add(fin);
        sess.response = response;
        sess.resp_acked = 0;
        sess.resp_sent = 0;
        sess.fin_sent = false;
        sess.lingering = false;
        self.set_phase(i, s, to);
        // Held packets would have gone to a backend; nobody takes them now.
        self.drop_held(s);
        self.table.get_mut(i).retries = 0;
        self.send_response(i, s, false, out);
        self.table
            .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.response_rto)));
        true
    }

    /// Sends what the client's window and MSS allow of our response, then
    /// the FIN. With a zero window and `probe`, one byte goes out as a
    /// window probe (RFC 9293 §3.8.6.1), so a zero window is honoured, not
    /// waited on forever.
    fn send_response<S: Sink<B>>(&mut self, i: u32, s: u32, probe: bool, out: &mut S) {
        // As many segments as the window allows (a response is a few hundred bytes).
        for _ in 0..64 {
            let before = (
                self.sessions[s as usize].resp_sent,
                self.sessions[s as usize].fin_sent,
            );
            self.send_response_segment(i, s, probe, out);
            let sess = &self.sessions[s as usize];
            if probe || (sess.resp_sent, sess.fin_sent) == before || sess.fin_sent {
                break;
            }
        }
    }

    fn send_response_segment<S: Sink<B>>(&mut self, i: u32, s: u32, probe: bool, out: &mut S) {
        let key = self.table.get(i).key;
        let sess = &self.sessions[s as usize];
        let rlen = sess.response.len() as u32;
        let limit = sess.resp_acked.saturating_add(sess.client_window);
        let start = sess.resp_sent;
        let end = rlen.min(limit).min(start.saturating_add(sess.mss as u32));
        let (from, to, fin) = if end > start {
            (start, end, end == rlen)
        } else if start == rlen && !sess.fin_sent {
            (start, start, true)
        } else if probe && start < rlen {
            (start, start + 1, false)
        } else {
            return;
        };
        let mut flags = ACK;
        if to > from {
            flags |= PSH;
        }
        if fin {
            flags |= FIN;
        }
        let win = self.adv_window(sess);
        let payload = &sess.response[from as usize..to as usize];
        let seq = sess.iss.wrapping_add(1).wrapping_add(from);
        self.send_tcp(
            out,
            &key,
            sess.mac,
            seq,
            sess.rcv_nxt,
            flags,
            win,
            self.ts_opt(&key, s),
            payload,
        );
        let probe_only = probe && end <= start && start < rlen;
        let sess = &mut self.sessions[s as usize];
        if !probe_only {
            sess.resp_sent = to;
            sess.fin_sent |= fin;
        }
    }

    fn on_closing<S: Sink<B>>(&mut self, i: u32, s: u32, seg: TcpSeg, out: &mut S) {
        let (iss, rcv_nxt, rlen) = {
            let sess = &self.sessions[s as usize];
            (sess.iss, sess.rcv_nxt, sess.response.len() as u32)
        };
        if seg.has(RST) {
            let wnd = self.sessions[s as usize].reasm.window() as u32;
            return self.on_owned_rst(i, s, rcv_nxt, wnd.max(1), &seg, out);
        }
        let mut progressed = false;
        if seg.has(ACK) {
            let sess = &mut self.sessions[s as usize];
            sess.client_window = (seg.window as u32) << sess.client_ws.unwrap_or(0);
            let acked = seg.ack.wrapping_sub(iss.wrapping_add(1));
            if acked <= rlen + 1 && acked > sess.resp_acked.min(rlen) {
                progressed = true;
                sess.resp_acked = acked.min(rlen);
                sess.resp_sent = sess.resp_sent.max(sess.resp_acked);
                if acked == rlen + 1 && sess.fin_sent {
                    sess.fin_acked = true;
                }
            }
            // A window update may let more of the response out.
            progressed |= sess.resp_sent < rlen || !sess.fin_sent;
        }
        if progressed && !self.sessions[s as usize].fin_acked {
            self.send_response(i, s, false, out);
        }
        // Data after the refused head is read and discarded (like a server's
        // lingering close), so the client is not reset while it still sends.
        let mut advance = 0u32;
        if seg.seq == rcv_nxt {
            advance = seg.len() as u32;
            if seg.has(FIN) {
                advance += 1;
                self.sessions[s as usize].fin_rcvd = true;
            }
        }
        if advance > 0 {
            let sess = &mut self.sessions[s as usize];
            sess.rcv_nxt = sess.rcv_nxt.wrapping_add(advance);
        }
        if advance > 0 || seg.has(FIN) {
            self.send_ack(out, i, s);
        }
        let (fin_rcvd, fin_acked) = {
            let sess = &self.sessions[s as usize];
            (sess.fin_rcvd, sess.fin_acked)
        };
        if fin_rcvd && fin_acked {
            self.enter_time_wait(i, s);
        } else if fin_acked && !self.sessions[s as usize].lingering {
            // Our side is done; give the client `fin_timeout` to close its side.
            self.sessions[s as usize].lingering = true;
            let limit = self.hold_for(self.cfg.fin_timeout, self.cfg.pressure_fin_timeout);
            self.table.arm(i, self.now_ms.wrapping_add(dur_ms(limit)));
        }
    }

    fn enter_time_wait(&mut self, i: u32, s: u32) {
        let sess = &self.sessions[s as usize];
        let snd_nxt = sess
            .iss
            .wrapping_add(2)
            .wrapping_add(sess.response.len() as u32);
        let (rcv_nxt, mac, ts) = (sess.rcv_nxt, sess.mac, sess.ts.then_some(sess.ts_recent));
        let Some(to) = self.apply(i, State::Closing, Event::Closed) else {
            return;
        };
        self.release_session(s);
        let e = self.table.get_mut(i);
        e.slot = Slot::TimeWait {
            snd_nxt,
            rcv_nxt,
            ts_recent: ts.unwrap_or(0),
            ts: ts.is_some(),
            mac,
        };
        self.stored(i, to);
        self.table
            .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.time_wait)));
    }

    /// TIME_WAIT: re-ACK a retransmitted FIN; a new SYN reuses the 4-tuple.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_time_wait<S: Sink<B>>(
        &mut self,
        now: u64,
        i: u32,
        key: FlowKey,
        h: u64,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        let Slot::TimeWait {
            snd_nxt,
            rcv_nxt,
            ts_recent,
            ts,
            mac,
        } = self.table.get(i).slot
        else {
            return;
        };
        if seg.has(SYN) && !seg.has(ACK) {
            if self.free_entry(i, Event::Reuse) {
                self.on_listen(now, key, h, pkt, seg, out);
            }
            return;
        }
        if seg.has(RST) {
            self.free_entry(i, Event::ClientRst);
            return;
        }
        if seg.has(FIN) {
            let opts = TcpOpts {
                timestamp: ts.then(|| (self.tsval(&key), ts_recent)),
                ..TcpOpts::default()
            };
            self.send_tcp(out, &key, mac, snd_nxt, rcv_nxt, ACK, 0, opts, &[]);
            return;
        }
        self.counters.count_drop(DropReason::BadState);
    }

    pub(crate) fn header_timer<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) {
        let service = self.table.get(i).key.service as usize;
        self.counters.abort(if self.svcs[service].tls {
            AbortReason::TlsHelloTimeout
        } else {
            AbortReason::HeaderTimeout
        });
        self.respond(i, s, 408, Event::HeaderTimeout, out);
    }

    pub(crate) fn closing_timer<S: Sink<B>>(&mut self, i: u32, s: u32, out: &mut S) {
        let retries = self.table.get(i).retries;
        let fin_acked = self.sessions[s as usize].fin_acked;
        let limit = if self.under_pressure() {
            self.cfg
                .response_retries
                .min(self.cfg.pressure_response_retries)
        } else {
            self.cfg.response_retries
        };
        if fin_acked || crate::engine::retries_exhausted(retries, limit) {
            if !fin_acked {
                let key = self.table.get(i).key;
                let sess = &self.sessions[s as usize];
                let (mac, seq) = (
                    sess.mac,
                    sess.iss
                        .wrapping_add(2)
                        .wrapping_add(sess.response.len() as u32),
                );
                if self.free_entry(i, Event::ResponseTimeout) {
                    self.counters.abort(AbortReason::ResponseTimeout);
                    self.send_tcp(out, &key, mac, seq, 0, RST, 0, TcpOpts::default(), &[]);
                }
                return;
            }
            // Our FIN was acknowledged; the client never closed its side.
            self.free_entry(i, Event::Expire);
            return;
        }
        self.table.get_mut(i).retries = retries.saturating_add(1);
        // Go back to the first unacknowledged byte (retransmission or probe).
        let sess = &mut self.sessions[s as usize];
        sess.resp_sent = sess.resp_acked;
        sess.fin_sent = false;
        self.send_response(i, s, true, out);
        let rto = dur_ms(self.cfg.response_rto).saturating_mul(1 << (retries as u32 + 1).min(10));
        self.table.arm(i, self.now_ms.wrapping_add(rto));
    }
}
