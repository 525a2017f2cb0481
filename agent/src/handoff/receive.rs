//! One received datagram: source check, authentication, receiver, sender and
//! replay checks in that order, then the sender's boot (a switch that
//! restarted gets its flows back, `recovery.rs`) and dispatch by opcode.
//! Nothing is answered before the tag verified; every drop is counted by
//! reason and logged at most once a second per reason.

use std::net::SocketAddr;
use std::time::Instant;

use handoff_proto::{open, Body, DecodeError, FrameView, Opcode};

use super::{ConnKey, Core};

impl Core {
    /// Handles one datagram received from `from` at `now` (monotonic);
    /// `wall_ms` is the wall clock then (ms since the Unix epoch), which the
    /// replay window uses for a sender's first frame. Any bytes are
    /// acceptable input: what is not a valid frame is counted and dropped.
    pub fn handle_frame(&mut self, now: Instant, wall_ms: u64, dgram: &[u8], from: SocketAddr) {
        self.now = now;
        if !self.switches.iter().any(|s| s.matches(from)) {
            return self.drop_frame("source_not_allowed", from);
        }
        let frame = match open(&self.keys, self.local_node, dgram) {
            Ok((f, _)) => f,
            Err(DecodeError::UnsupportedVersion(v)) => {
                self.drop_frame("unsupported_version", from);
                // Authenticated (open verifies the tag first): answer with our
                // versions, unless it is a NACK itself.
                if let Ok((view, _)) = FrameView::parse(dgram) {
                    if view.opcode_raw() != Opcode::Nack as u8 {
                        let (mut h, nack) = view.version_nack(self.seq.next(), self.stamp());
                        h.boot = self.boot;
                        tracing::info!(%from, version = v, "THOP version not supported");
                        self.send(from, &h, &Body::Nack(nack));
                    }
                }
                return;
            }
            Err(e) => {
                if !e.is_auth_failure() {
                    return self.drop_frame(e.label(), from);
                }
                if let Some(n) = self.rejects.allow(e.label(), now) {
                    tracing::warn!(%from, reason = e.reason(), suppressed = n,
                        "THOP frame failed authentication (one line per reason and second; \
                         `suppressed` were not logged)");
                }
                return self.count_drop(e.label());
            }
        };
        if !self.switch_nodes.contains(&frame.header.sender) {
            if let Some(n) = self.rejects.allow("unknown_sender", now) {
                tracing::warn!(%from, sender = format_args!("{:#010x}", frame.header.sender),
                    suppressed = n, "THOP frame from a node that is not a configured switch");
            }
            return self.count_drop("unknown_sender");
        }
        if let Err(e) = self
            .replay
            .accept_at(&frame.header, self.replay_now(wall_ms))
        {
            if let Some(n) = self.rejects.allow(e.label(), now) {
                tracing::info!(%from, error = %e, suppressed = n, "THOP replay check failed");
            }
            return self.count_drop(e.label());
        }
        // Kept before the frame is acted on: a process that dies while
        // acting has still remembered it.
        self.remember_accepted(frame.header.sender);
        self.metrics
            .thop_rx
            .with_label_values(&[frame.body.opcode().name()])
            .inc();
        let h = frame.header;
        // Before acting on the frame: whatever it is, a new boot means the
        // switch lost its table (`docs/thop.md` §9.4).
        self.switch_boot(h.sender, h.boot, h.msg_seq, from);
        let key = ConnKey {
            sender: h.sender,
            conn_id: h.conn_id,
        };
        match frame.body {
            Body::Create(frag) => {
                if self.duplicate(key, &h, from, frag.state.as_ref()) {
                    return;
                }
                if self.draining.is_some() {
                    return self.nack_frame(
                        from,
                        &h,
                        handoff_proto::NackReason::ShuttingDown,
                        "draining",
                    );
                }
                let stamp = self.stamp();
                match self.reasm.push(h.sender, h.conn_id, &frag, stamp) {
                    Ok(None) => self
                        .metrics
                        .reassembly_pending
                        .set(self.reasm.pending() as i64),
                    Ok(Some(asm)) => self.create(asm, &h, from),
                    Err(e) => self.nack_frame(from, &h, e.nack_reason(), e.label()),
                }
            }
            Body::Abort(a) => self.abort(a, &h, from),
            // Its boot was all a HELLO had to say.
            Body::Hello(_) => {}
            Body::Lookup(l) => self.lookup(&l, &h, from),
            Body::Ack(a) => self.acked(a.echo_seq, key),
            Body::Nack(_) | Body::Close(_) | Body::Load(_) | Body::Flows(_) => {
                self.drop_frame("unexpected_opcode", from)
            }
        }
    }

    /// Counts a dropped datagram; logs it (debug) at most once per reason
    /// and second. Reasons that deserve an operator's attention are logged
    /// where they are found, through the same limiter.
    fn drop_frame(&mut self, reason: &'static str, from: SocketAddr) {
        self.metrics.thop_dropped.with_label_values(&[reason]).inc();
        if let Some(n) = self.rejects.allow(reason, self.now) {
            tracing::debug!(%from, reason, suppressed = n, "THOP frame dropped");
        }
    }

    /// Counts a dropped datagram without logging (the caller did).
    fn count_drop(&self, reason: &'static str) {
        self.metrics.thop_dropped.with_label_values(&[reason]).inc();
    }
}
