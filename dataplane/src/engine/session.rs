//! Per-connection state of the phases that need more than a table entry:
//! WAITHEADER (reassembly), DISPATCH, HANDOFF (request kept until THOP_ACK,
//! client packets held) and CLOSING (the switch's own response).
//!
//! Sessions come from a pool sized at start-up (`pending_capacity`); their
//! request buffers are allocated on first use of a pool slot and reused.

use crate::dispatch::{BackendId, BackendTarget};
use crate::http::HeaderScanner;
use crate::reassembly::Reassembly;
use crate::state::State;
use crate::tls::HelloScanner;
use crate::wire::Mac;

/// Which phase a session is in: how the states WAITHEADER, DISPATCH,
/// HANDOFF and CLOSING are stored (the table slot holds only the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    WaitHeader,
    Dispatch,
    Handoff,
    Closing,
}

impl Phase {
    /// The phase that stores `state`, if a session stores it.
    pub fn of(state: State) -> Option<Phase> {
        Some(match state {
            State::WaitHeader => Phase::WaitHeader,
            State::Dispatch => Phase::Dispatch,
            State::Handoff => Phase::Handoff,
            State::Closing => Phase::Closing,
            _ => return None,
        })
    }
}

/// One connection between the handshake and FORWARDING (or its close).
pub struct Session<B> {
    /// The table slot that owns this session.
    pub entry: u32,
    pub phase: Phase,
    pub iss: u32,
    pub irs: u32,
    /// The client's MSS (what the backend may send per segment).
    pub mss: u16,
    /// The client's window scale, when window scaling was negotiated.
    pub client_ws: Option<u8>,
    pub sack: bool,
    pub ts: bool,
    pub ts_recent: u32,
    /// Our TSval offset for this connection (computed once at establishment).
    pub ts_off: u32,
    /// The client's receive window in bytes (scaled).
    pub client_window: u32,
    /// The MAC the client's frames come from (router or client).
    pub mac: Mac,
    pub reasm: Reassembly,
    pub scanner: HeaderScanner,
    /// The ClientHello's end search (TLS services).
    pub hello: HelloScanner,
    /// Request bytes handed off (all in-order bytes when the header completed).
    pub frozen: usize,
    /// Length of the request head.
    pub header_len: usize,
    /// When the header became complete (ns).
    pub header_done_ns: u64,
    /// Backends that refused or timed out.
    pub exclude: Vec<BackendId>,
    /// Dispatch requests made.
    pub attempts: u32,
    pub target: Option<BackendTarget>,
    pub target_mac: Option<Mac>,
    /// First THOP msg_seq of the current CREATE attempt (older ACKs are stale).
    pub create_seq_lo: u64,
    /// CREATE transmissions in the current attempt.
    pub creates_sent: u32,
    /// Client packets held during DISPATCH/HANDOFF.
    pub held: Vec<B>,
    /// Sequence ranges (start, end including a FIN) of the `held` packets,
    /// so a retransmission of one is not held twice.
    pub held_ranges: Vec<(u32, u32)>,
    /// HANDOFF: the client's latest pure ACK of data the backend already
    /// sent (the backend may answer before its THOP_ACK reaches the switch;
    /// dropping these ACKs would cost it a retransmission timeout). Only
    /// the latest is kept: ACKs are cumulative.
    pub held_ack: Option<B>,
    /// CLOSING: our response (sent with FIN).
    pub response: &'static [u8],
    /// CLOSING: next byte expected from the client.
    pub rcv_nxt: u32,
    /// CLOSING: the client's FIN was received.
    pub fin_rcvd: bool,
    /// CLOSING: our FIN was acknowledged.
    pub fin_acked: bool,
    /// CLOSING: response bytes the client acknowledged.
    pub resp_acked: u32,
    /// CLOSING: response bytes sent (the client's window and MSS limit it).
    pub resp_sent: u32,
    /// CLOSING: our FIN was sent.
    pub fin_sent: bool,
    /// CLOSING: our FIN was acknowledged and the wait for the client's FIN
    /// is armed.
    pub lingering: bool,
}

impl<B> Session<B> {
    /// A fresh pool slot with a `buffer`-byte request buffer.
    pub fn new(buffer: usize, hold: usize, attempts: usize) -> Self {
        Session {
            entry: 0,
            phase: Phase::WaitHeader,
            iss: 0,
            irs: 0,
            mss: 536,
            client_ws: None,
            sack: false,
            ts: false,
            ts_recent: 0,
            ts_off: 0,
            client_window: 0,
            mac: [0; 6],
            reasm: Reassembly::new(buffer),
            scanner: HeaderScanner::new(),
            hello: HelloScanner::new(),
            frozen: 0,
            header_len: 0,
            header_done_ns: 0,
            exclude: Vec::with_capacity(attempts),
            attempts: 0,
            target: None,
            target_mac: None,
            create_seq_lo: 0,
            creates_sent: 0,
            held: Vec::with_capacity(hold),
            held_ranges: Vec::with_capacity(hold),
            held_ack: None,
            response: b"",
            rcv_nxt: 0,
            fin_rcvd: false,
            fin_acked: false,
            resp_acked: 0,
            resp_sent: 0,
            fin_sent: false,
            lingering: false,
        }
    }

    /// Resets for a new connection owned by `entry` (keeps allocations).
    pub fn reset(&mut self, entry: u32) {
        self.entry = entry;
        self.phase = Phase::WaitHeader;
        self.reasm.reset();
        self.scanner = HeaderScanner::new();
        self.hello = HelloScanner::new();
        self.frozen = 0;
        self.header_len = 0;
        self.header_done_ns = 0;
        self.exclude.clear();
        self.attempts = 0;
        self.target = None;
        self.target_mac = None;
        self.create_seq_lo = 0;
        self.creates_sent = 0;
        self.held.clear();
        self.held_ranges.clear();
        self.held_ack = None;
        self.response = b"";
        self.fin_rcvd = false;
        self.fin_acked = false;
        self.resp_acked = 0;
        self.resp_sent = 0;
        self.fin_sent = false;
        self.lingering = false;
    }

    /// Next sequence number expected from the client in WAITHEADER.
    pub fn rcv_nxt_reasm(&self) -> u32 {
        self.irs
            .wrapping_add(1)
            .wrapping_add(self.reasm.contiguous() as u32)
    }
}
