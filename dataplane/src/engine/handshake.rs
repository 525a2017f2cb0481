//! LISTEN and SYN_RCVD: the three-way handshake, with SYN cookies.
//!
//! The SYN/ACK offers only options a stock Linux backend can continue with
//! through TCP_REPAIR (MSS, window scale, SACK permitted, timestamps), each
//! only when the client offered it (RFC 7323 §2.2, §3.2; RFC 2018 §2). It is
//! retransmitted with exponential backoff (RFC 6298 §5.5) up to
//! `synack_retries` times, as Linux's `tcp_synack_retries`.
//!
//! With SYN cookies the switch keeps nothing for the SYN: a valid cookie ACK
//! creates the entry directly in WAITHEADER (the table's LISTEN → WAITHEADER
//! row), so a SYN flood costs no table entries and no SYN_RCVD gauge.

use crate::config::SynCookieMode;
use crate::counters::{bump, AbortReason, DropReason};
use crate::engine::{dur_ms, Engine, Forwarder, Sink};
use crate::io::PacketBuf;
use crate::state::{Event, State};
use crate::syncookie;
use crate::table::{FlowKey, Slot};
use crate::wire::{flags::*, Mac, TcpOpts, TcpSeg};

const OPT_SACK: u8 = 1;
const OPT_TS: u8 = 2;
const NO_WS: u8 = 0xff;

/// Options agreed in the handshake.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Agreed {
    pub irs: u32,
    pub iss: u32,
    pub mss: u16,
    pub client_ws: Option<u8>,
    pub sack: bool,
    pub ts: bool,
    pub ts_recent: u32,
    pub mac: Mac,
}

impl<B: PacketBuf, F: Forwarder> Engine<B, F> {
    fn minute(&self, now: u64) -> u64 {
        now / 60_000_000_000
    }

    fn our_isn(&self, key: &FlowKey, irs: u32) -> u32 {
        let s = &self.svcs[key.service as usize];
        self.secrets.isn(key, &s.vip16, s.port, irs)
    }

    /// A segment for a 4-tuple with no entry: a SYN opens, an ACK may carry a
    /// SYN cookie, anything else is dropped (no RST: a lost entry must not
    /// reset a connection a backend may still hold).
    pub(crate) fn on_listen<S: Sink<B>>(
        &mut self,
        now: u64,
        key: FlowKey,
        h: u64,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        if seg.has(RST) && !self.cfg.recovery.enabled {
            return self.counters.count_drop(DropReason::NoFlow);
        }
        if !crate::wire::tcp_seg_checksum_ok(pkt.data(), &seg) {
            return self.counters.count_drop(DropReason::BadChecksum);
        }
        if seg.has(SYN) {
            if seg.has(ACK) || seg.has(RST) {
                return self.counters.count_drop(DropReason::NoFlow);
            }
            return self.on_syn(now, key, h, &pkt, seg, out);
        }
        if seg.has(ACK) && !seg.has(RST) && self.cookies_recent(now) {
            return self.on_cookie_ack(now, key, h, pkt, seg, out);
        }
        // Perhaps a connection handed off before this process started, or
        // by another switch: the agents know (recovery.rs).
        self.on_unknown_flow(now, key, h, pkt, seg, out)
    }

    fn cookies_recent(&self, now: u64) -> bool {
        match self.cfg.syncookie_mode {
            SynCookieMode::Off => false,
            SynCookieMode::Always => true,
            SynCookieMode::OnOverload => self
                .last_cookie_min
                .is_some_and(|m| self.minute(now).saturating_sub(m) <= syncookie::MAX_AGE as u64),
        }
    }

    fn on_syn<S: Sink<B>>(
        &mut self,
        now: u64,
        key: FlowKey,
        h: u64,
        pkt: &B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        bump(&self.counters.syn_received, 1);
        if self.draining {
            self.counters.count_drop(DropReason::Draining);
            return self.send_reset_for(out, &key, &seg);
        }
        let opts = match seg.opts(pkt.data()) {
            Ok(o) => o,
            Err(r) => return self.counters.count_drop(r),
        };
        let max = self.cfg.client_max_connections;
        if max > 0 && self.clients.load(&key.client).conns as usize >= max {
            // One address may not take the table: its next SYN is dropped.
            return self.counters.count_drop(DropReason::ClientLimit);
        }
        let mut table_full = self.table.len() >= self.table.capacity();
        if table_full && self.cfg.syncookie_mode == SynCookieMode::Off {
            // Without cookies the entry is needed now. (With cookies the
            // eviction waits for the cookie's ACK, so a spoofed SYN flood
            // cannot flush idle connections.)
            table_full = !self.evict_idle(out);
        }
        let over = self.syn_rcvd >= self.cfg.syncookie_threshold;
        let cookie = match self.cfg.syncookie_mode {
            SynCookieMode::Always => true,
            SynCookieMode::OnOverload => over || table_full,
            SynCookieMode::Off => {
                if table_full {
                    return self.counters.count_drop(DropReason::TableFull);
                }
                if over {
                    return self.counters.count_drop(DropReason::SynBacklog);
                }
                false
            }
        };
        // Without the option: RFC 9293 §3.7.1's defaults, 536 over IPv4 and
        // 1,220 over IPv6.
        let default_mss = if key.client_ip().is_ipv6() { 1220 } else { 536 };
        let mss = opts.mss.unwrap_or(default_mss).max(handoff_proto::MIN_MSS);
        let ts_ok = self.cfg.tcp.timestamps && opts.timestamp.is_some();
        let ts_recent = opts.timestamp.map_or(0, |t| t.0);
        if cookie {
            // Without timestamps a cookie cannot carry window scale and SACK:
            // offer neither (Linux clears them too).
            let (ws, sack) = if ts_ok {
                (opts.window_scale, opts.sack_permitted && self.cfg.tcp.sack)
            } else {
                (None, false)
            };
            let svc = self.svcs[key.service as usize];
            let iss = self.secrets.cookie(
                &key,
                &svc.vip16,
                svc.port,
                seg.seq,
                mss,
                self.minute(now) as u32,
            );
            let tsval = syncookie::cookie_tsval(self.tsval(&key), ws, sack);
            let a = Agreed {
                irs: seg.seq,
                iss,
                mss,
                client_ws: ws,
                sack,
                ts: ts_ok,
                ts_recent,
                mac: seg.src_mac,
            };
            self.send_synack(out, &key, &a, Some(tsval));
            self.last_cookie_min = Some(self.minute(now));
            bump(&self.counters.syncookies_sent, 1);
            return;
        }
        let ws = if opts.window_scale.is_some() {
            opts.window_scale
        } else {
            None
        };
        let sack = opts.sack_permitted && self.cfg.tcp.sack;
        let slot = Slot::SynRcvd {
            irs: seg.seq,
            ts_recent,
            mss,
            wscale: ws.unwrap_or(NO_WS),
            opts: if sack { OPT_SACK } else { 0 } | if ts_ok { OPT_TS } else { 0 },
            mac: seg.src_mac,
        };
        let Ok(i) = self.table.insert(key, h, slot) else {
            return self.counters.count_drop(DropReason::TableFull);
        };
        self.clients.add(&key.client, 1, 0);
        let Some(to) = self.apply(i, State::Listen, Event::Syn) else {
            return self.forget_entry(i);
        };
        self.stored(i, to);
        self.syn_rcvd += 1;
        let a = self
            .agreed_from_slot(i)
            .expect("slot was just set to SynRcvd");
        self.send_synack(out, &key, &a, None);
        self.table
            .arm(i, self.now_ms.wrapping_add(dur_ms(self.cfg.synack_rto)));
    }

    /// The handshake parameters stored in a SYN_RCVD slot.
    pub(crate) fn agreed_from_slot(&self, i: u32) -> Option<Agreed> {
        let e = self.table.get(i);
        let Slot::SynRcvd {
            irs,
            ts_recent,
            mss,
            wscale,
            opts,
            mac,
        } = e.slot
        else {
            return None;
        };
        Some(Agreed {
            irs,
            iss: self.our_isn(&e.key, irs),
            mss,
            client_ws: (wscale != NO_WS).then_some(wscale),
            sack: opts & OPT_SACK != 0,
            ts: opts & OPT_TS != 0,
            ts_recent,
            mac,
        })
    }

    fn send_synack<S: Sink<B>>(&self, out: &mut S, key: &FlowKey, a: &Agreed, tsval: Option<u32>) {
        let opts = TcpOpts {
            mss: Some(self.adv_mss(key)),
            window_scale: a.client_ws.map(|_| self.cfg.tcp.window_scale),
            sack_permitted: a.sack,
            timestamp: a
                .ts
                .then(|| (tsval.unwrap_or_else(|| self.tsval(key)), a.ts_recent)),
            ..Default::default()
        };
        // RFC 7323 §2.2: the window in a SYN segment is never scaled.
        let window = self.cfg.request_buffer.min(65535) as u16;
        if self.send_tcp(
            out,
            key,
            a.mac,
            a.iss,
            a.irs.wrapping_add(1),
            SYN | ACK,
            window,
            opts,
            &[],
        ) {
            bump(&self.counters.synack_sent, 1);
        }
    }

    pub(crate) fn on_syn_rcvd<S: Sink<B>>(
        &mut self,
        now: u64,
        i: u32,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        let Some(a) = self.agreed_from_slot(i) else {
            return;
        };
        let key = self.table.get(i).key;
        if seg.has(RST) {
            // RFC 5961 §3.2: only an in-window RST counts.
            if seg.seq == a.irs.wrapping_add(1) {
                if self.free_entry(i, Event::ClientRst) {
                    self.counters.abort(AbortReason::ClientReset);
                }
            } else {
                self.counters.count_drop(DropReason::OutOfWindow);
            }
            return;
        }
        if seg.has(SYN) {
            if seg.seq == a.irs && !seg.has(ACK) {
                // The client lost our SYN/ACK: answer again (no backoff change).
                bump(&self.counters.synack_retransmits, 1);
                self.send_synack(out, &key, &a, None);
            } else {
                self.counters.count_drop(DropReason::BadState);
            }
            return;
        }
        if !seg.has(ACK) || seg.ack != a.iss.wrapping_add(1) {
            // RFC 9293 §3.10.7.4: an unacceptable ACK in SYN-RECEIVED gets a RST.
            self.counters.count_drop(DropReason::OutOfWindow);
            if seg.has(ACK) {
                self.send_tcp(
                    out,
                    &key,
                    seg.src_mac,
                    seg.ack,
                    0,
                    RST,
                    0,
                    TcpOpts::default(),
                    &[],
                );
            }
            return;
        }
        if seg.seq != a.irs.wrapping_add(1) {
            return self.counters.count_drop(DropReason::OutOfWindow);
        }
        if self.pending_limited(&key) {
            if self.free_entry(i, Event::Refused) {
                self.send_reset_for(out, &key, &seg);
            }
            return;
        }
        let Some(s) = self.take_session(i) else {
            // The ACK is dropped; the client's next segment retries.
            return self.counters.count_drop(DropReason::PendingFull);
        };
        self.establish(now, i, s, a, State::SynRcvd, pkt, seg, out);
    }

    fn on_cookie_ack<S: Sink<B>>(
        &mut self,
        now: u64,
        key: FlowKey,
        h: u64,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        let svc = self.svcs[key.service as usize];
        let irs = seg.seq.wrapping_sub(1);
        let iss = seg.ack.wrapping_sub(1);
        let Some(mss) = self.secrets.check_cookie(
            &key,
            &svc.vip16,
            svc.port,
            iss,
            irs,
            self.minute(now) as u32,
        ) else {
            bump(&self.counters.syncookies_failed, 1);
            if self.recovering() {
                // Not one of our cookies: perhaps a recovered flow's ACK.
                return self.on_unknown_flow(now, key, h, pkt, seg, out);
            }
            return self.counters.count_drop(DropReason::BadCookie);
        };
        let opts = match seg.opts(pkt.data()) {
            Ok(o) => o,
            Err(r) => return self.counters.count_drop(r),
        };
        let (client_ws, sack, ts, ts_recent) = match opts.timestamp {
            Some((tsval, tsecr)) if self.cfg.tcp.timestamps => match syncookie::decode_tsecr(tsecr)
            {
                Some((ws, sack)) => (ws, sack && self.cfg.tcp.sack, true, tsval),
                None => {
                    bump(&self.counters.syncookies_failed, 1);
                    return self.counters.count_drop(DropReason::BadCookie);
                }
            },
            _ => (None, false, false, 0),
        };
        if seg.has(FIN) || seg.has(RST) {
            return self.counters.count_drop(DropReason::BadState);
        }
        // The client believes it is connected: a refusal is a RST.
        let max = self.cfg.client_max_connections;
        if max > 0 && self.clients.load(&key.client).conns as usize >= max {
            self.counters.count_drop(DropReason::ClientLimit);
            return self.send_reset_for(out, &key, &seg);
        }
        if self.pending_limited(&key) {
            return self.send_reset_for(out, &key, &seg);
        }
        // The entry is created in WAITHEADER, so it needs a session now; with
        // none free no entry is made and the client's retransmission retries.
        let Some(s) = self.alloc_session() else {
            return self.counters.count_drop(DropReason::PendingFull);
        };
        if self.table.len() >= self.table.capacity() {
            self.evict_idle(out);
        }
        let Ok(i) = self.table.insert(key, h, Slot::Session(s)) else {
            self.free_sessions.push(s);
            return self.counters.count_drop(DropReason::TableFull);
        };
        self.clients.add(&key.client, 1, 0);
        self.bind_session(s, i);
        bump(&self.counters.syncookies_validated, 1);
        let a = Agreed {
            irs,
            iss,
            mss,
            client_ws,
            sack,
            ts,
            ts_recent,
            mac: seg.src_mac,
        };
        // The cookie stands for the SYN_RCVD entry the switch did not keep:
        // the connection goes from LISTEN straight to WAITHEADER.
        self.establish(now, i, s, a, State::Listen, pkt, seg, out);
    }

    /// SYN_RCVD (or LISTEN, for a SYN cookie) → WAITHEADER in slot `i` with
    /// session `s` (bound to it), then handles any data the ACK carries.
    #[allow(clippy::too_many_arguments)]
    fn establish<S: Sink<B>>(
        &mut self,
        now: u64,
        i: u32,
        s: u32,
        a: Agreed,
        from: State,
        pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        let Some(to) = self.apply(i, from, Event::Ack) else {
            // Left as before the ACK: a cookie's entry goes, SYN_RCVD stays.
            if from == State::Listen {
                self.forget_entry(i);
            } else {
                self.release_session(s);
            }
            return;
        };
        if from == State::SynRcvd {
            self.syn_rcvd = self.syn_rcvd.saturating_sub(1);
        }
        bump(&self.counters.new_connections, 1);
        let ts_off = {
            let key = self.table.get(i).key;
            let svc = &self.svcs[key.service as usize];
            self.secrets.ts_offset(&key, &svc.vip16, svc.port)
        };
        // RFC 7323 §4.3: the handshake's ACK carries the TSval to echo next.
        let mut ts_recent = a.ts_recent;
        if a.ts {
            if let Ok(Some((val, _))) = seg.opts(pkt.data()).map(|o| o.timestamp) {
                ts_recent = val;
            }
        }
        {
            let sess = &mut self.sessions[s as usize];
            sess.iss = a.iss;
            sess.irs = a.irs;
            sess.mss = a.mss;
            sess.client_ws = a.client_ws;
            sess.sack = a.sack;
            sess.ts = a.ts;
            sess.ts_recent = ts_recent;
            sess.ts_off = ts_off;
            sess.mac = a.mac;
            sess.client_window = (seg.window as u32) << a.client_ws.unwrap_or(0);
        }
        let e = self.table.get_mut(i);
        e.slot = Slot::Session(s);
        e.retries = 0;
        self.set_phase(i, s, to);
        // Under pressure a slow header may hold a session for less time.
        let limit = self.hold_for(self.cfg.header_timeout, self.cfg.pressure_header_timeout);
        self.table.arm(i, self.now_ms.wrapping_add(dur_ms(limit)));
        if !seg.is_empty() || seg.has(FIN) {
            self.on_session(now, i, s, pkt, seg, out);
        }
    }

    /// True (and counted) when `key`'s address already has
    /// `client_max_pending` sessions: its next handshake is refused.
    fn pending_limited(&self, key: &FlowKey) -> bool {
        let max = self.cfg.client_max_pending;
        let over = max > 0 && self.clients.load(&key.client).pending as usize >= max;
        if over {
            self.counters.count_drop(DropReason::ClientLimit);
        }
        over
    }

    pub(crate) fn synack_timer<S: Sink<B>>(&mut self, i: u32, out: &mut S) {
        let retries = self.table.get(i).retries;
        if crate::engine::retries_exhausted(retries, self.cfg.synack_retries) {
            if self.free_entry(i, Event::SynAckTimeout) {
                self.counters.abort(AbortReason::SynAckTimeout);
            }
            return;
        }
        let Some(a) = self.agreed_from_slot(i) else {
            return;
        };
        let key = self.table.get(i).key;
        self.table.get_mut(i).retries = retries.saturating_add(1);
        bump(&self.counters.synack_retransmits, 1);
        self.send_synack(out, &key, &a, None);
        let rto = dur_ms(self.cfg.synack_rto).saturating_mul(1 << (retries as u32 + 1).min(10));
        self.table.arm(i, self.now_ms.wrapping_add(rto));
    }
}
