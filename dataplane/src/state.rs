//! The switch's connection states and the one table of their transitions.
//!
//! States are named as in the seed paper (Andreolini, Colajanni, Nuccio,
//! WWW 2003, fig. 4): WAITHEADER is ESTABLISHED while the request is read and
//! parsed; FORWARDING means the connection was handed off and client packets
//! are relayed. DISPATCH (waiting for the control plane) and HANDOFF
//! (THOP_CREATE sent, waiting for THOP_ACK) split the paper's single handoff
//! step so that each wait has its own timer. FORWARDING_FIN is FORWARDING
//! after the client's FIN (a shorter idle timer); FORWARDING_CLOSED is
//! FORWARDING after the backend's socket closed first (its agent's
//! THOP_CLOSE), while the client's FIN is still to come and must reach the
//! backend's TIME_WAIT. CLOSING and TIME_WAIT are
//! the switch answering (400/408/431/503) and closing by itself.
//!
//! Why one table: the engine keeps a connection's state in two shapes (the
//! table slot, and for WAITHEADER to CLOSING the session's phase), set in
//! several files. A hand-kept list of edges next to that code drifts from
//! it. So [`TABLE`] is the only list of edges: the engine asks it for every
//! state change (`Engine::apply`), stores the state it answers, and debug
//! builds check that what was stored is that state. An edge the table does
//! not list cannot be taken: the connection is left as it is and the
//! attempt is counted (`illegal_transitions`). The table printed in
//! `dataplane/README.md` is rendered from [`TABLE`] by a test.
//!
//! The lookup is a constant array indexed by (state, event), built from
//! [`TABLE`] at compile time (which also rejects two rows for one pair and
//! rows leaving CLOSED), so a transition costs two loads.

use std::fmt;

use crate::counters::StateGauge;

/// A connection's state on the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Per service: no entry exists yet.
    Listen,
    /// SYN/ACK sent, waiting for the client's ACK.
    SynRcvd,
    /// Reading and parsing the request head.
    WaitHeader,
    /// Request queued to the control plane, waiting for its decision.
    Dispatch,
    /// THOP_CREATE sent, waiting for THOP_ACK.
    Handoff,
    /// Handed off: client packets relayed to the backend.
    Forwarding,
    /// FORWARDING after the client's FIN (short idle timer).
    ForwardingFin,
    /// FORWARDING after the agent's THOP_CLOSE, before the client's FIN:
    /// the backend's socket is gone (its TIME_WAIT answers), the client's
    /// last segments are still relayed (short idle timer).
    ForwardingClosed,
    /// The switch sent its own response and FIN.
    Closing,
    /// The switch closed by itself; retransmitted FINs are re-ACKed.
    TimeWait,
    /// Entry freed.
    Closed,
}

impl State {
    /// Number of states.
    pub const COUNT: usize = 11;

    /// Every state, in table order.
    pub const ALL: [State; State::COUNT] = [
        State::Listen,
        State::SynRcvd,
        State::WaitHeader,
        State::Dispatch,
        State::Handoff,
        State::Forwarding,
        State::ForwardingFin,
        State::ForwardingClosed,
        State::Closing,
        State::TimeWait,
        State::Closed,
    ];

    /// The spelling used in the paper and in counters.
    pub fn name(self) -> &'static str {
        match self {
            State::Listen => "LISTEN",
            State::SynRcvd => "SYN_RCVD",
            State::WaitHeader => "WAITHEADER",
            State::Dispatch => "DISPATCH",
            State::Handoff => "HANDOFF",
            State::Forwarding => "FORWARDING",
            State::ForwardingFin => "FORWARDING_FIN",
            State::ForwardingClosed => "FORWARDING_CLOSED",
            State::Closing => "CLOSING",
            State::TimeWait => "TIME_WAIT",
            State::Closed => "CLOSED",
        }
    }

    /// The gauge counting connections in this state (none for LISTEN/CLOSED).
    pub fn gauge(self) -> Option<StateGauge> {
        Some(match self {
            State::SynRcvd => StateGauge::SynRcvd,
            State::WaitHeader => StateGauge::WaitHeader,
            State::Dispatch => StateGauge::Dispatch,
            State::Handoff => StateGauge::Handoff,
            State::Forwarding => StateGauge::Forwarding,
            State::ForwardingFin => StateGauge::ForwardingFin,
            State::ForwardingClosed => StateGauge::ForwardingClosed,
            State::Closing => StateGauge::Closing,
            State::TimeWait => StateGauge::TimeWait,
            State::Listen | State::Closed => return None,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What moves a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Event {
    /// Client SYN for a 4-tuple without an entry.
    Syn,
    /// The client's ACK completing the handshake: of our SYN/ACK from
    /// SYN_RCVD, or carrying a valid SYN cookie from LISTEN (no entry was
    /// kept for the SYN).
    Ack,
    /// SYN/ACK retransmissions exhausted.
    SynAckTimeout,
    /// Request head complete and well formed.
    HeaderComplete,
    /// Malformed (400) or oversized (431) head, or the client's FIN before a
    /// complete head.
    BadHeader,
    /// Head not complete in time (408).
    HeaderTimeout,
    /// A backend was chosen (by the control plane or the worker).
    Decision,
    /// Request rejected (503 or the policy's status), no decision in time,
    /// or the dispatch queue full.
    Reject,
    /// THOP_ACK from the chosen agent.
    ThopAck,
    /// THOP_NACK or CREATE timeout with attempts left.
    Redispatch,
    /// THOP_NACK or CREATE timeout with no attempts left (503).
    HandoffFailed,
    /// The client's in-order FIN in FORWARDING or FORWARDING_CLOSED.
    ClientFin,
    /// The client's RST at the expected sequence number.
    ClientRst,
    /// THOP_CLOSE from the agent the connection was handed to.
    ThopClose,
    /// A timer ran out: FORWARDING idle (or evicted from a full table),
    /// FORWARDING_FIN or FORWARDING_CLOSED idle, CLOSING after our FIN was
    /// acknowledged, TIME_WAIT.
    Expire,
    /// Our response and FIN acknowledged and the client's FIN received.
    Closed,
    /// Response never acknowledged (reset sent).
    ResponseTimeout,
    /// A client SYN reusing the 4-tuple of a finished connection.
    Reuse,
    /// Handshake completed by a client address over its session limit.
    Refused,
}

impl Event {
    /// Number of events.
    pub const COUNT: usize = 19;

    /// Every event, in table order.
    pub const ALL: [Event; Event::COUNT] = [
        Event::Syn,
        Event::Ack,
        Event::SynAckTimeout,
        Event::HeaderComplete,
        Event::BadHeader,
        Event::HeaderTimeout,
        Event::Decision,
        Event::Reject,
        Event::ThopAck,
        Event::Redispatch,
        Event::HandoffFailed,
        Event::ClientFin,
        Event::ClientRst,
        Event::ThopClose,
        Event::Expire,
        Event::Closed,
        Event::ResponseTimeout,
        Event::Reuse,
        Event::Refused,
    ];
}

/// What the engine does when it takes a row (beyond storing the new state
/// and moving the state gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Creates the entry and sends the SYN/ACK.
    SendSynAck,
    /// Takes a session and arms the header timer.
    OpenSession,
    /// Freezes the request and queues it for a decision.
    QueueDispatch,
    /// Sends THOP_CREATE to the chosen agent.
    SendCreate,
    /// Relays the held client packets and frees the session.
    RelayHeld,
    /// Asks for another backend.
    Redispatch,
    /// Sends the switch's own response and FIN.
    SendResponseFin,
    /// Relays the FIN and shortens the idle timer.
    ArmFinTimer,
    /// Frees the session and keeps the 4-tuple in TIME_WAIT.
    EnterTimeWait,
    /// Frees the entry.
    FreeEntry,
    /// Resets the client and frees the entry.
    ResetAndFree,
    /// Sends THOP_ABORT to the agent and frees the entry.
    AbortAndFree,
    /// Tells the control plane the connection closed and frees the entry.
    ReportCloseAndFree,
    /// Tells the control plane the connection closed; keeps relaying the
    /// client's last segments for `fin_timeout`.
    ReportCloseAndLinger,
    /// Relays the client's FIN or RST and frees the entry (the control
    /// plane was told at THOP_CLOSE).
    RelayAndFree,
    /// Relays the RST, tells the control plane and frees the entry.
    RelayRstAndFree,
    /// Frees the entry and opens a new connection for the SYN.
    Reopen,
}

impl Action {
    /// What the action does, in the words of the printed table.
    pub fn describe(self) -> &'static str {
        match self {
            Action::SendSynAck => {
                "entry created; SYN/ACK sent with the options the client offered, \
                 retransmitted with back-off (`synack_retries`)"
            }
            Action::OpenSession => {
                "session taken (request buffer); header timer armed; data on the ACK is read"
            }
            Action::QueueDispatch => {
                "request head frozen and ACKed; dispatch request queued to the control plane \
                 (or decided on the worker)"
            }
            Action::SendCreate => {
                "THOP_CREATE sent to the chosen agent, retransmitted until THOP_ACK \
                 (`handoff_retries`)"
            }
            Action::RelayHeld => {
                "held client packets relayed to the backend; session freed; idle timer armed"
            }
            Action::Redispatch => {
                "THOP_ABORT sent on a timeout (not after a NACK); dispatch request queued \
                 again without that backend"
            }
            Action::SendResponseFin => {
                "the switch's response (400/408/431/503, none for an early FIN) and FIN sent; \
                 held packets dropped"
            }
            Action::ArmFinTimer => {
                "FIN relayed; entry freed after `fin_timeout` without a client packet"
            }
            Action::EnterTimeWait => "session freed; retransmitted FINs re-ACKed until `time_wait`",
            Action::FreeEntry => "entry (and session) freed",
            Action::ResetAndFree => "RST sent to the client; entry freed",
            Action::AbortAndFree => {
                "THOP_ABORT sent to the agent (retransmitted until acknowledged); entry freed"
            }
            Action::ReportCloseAndFree => "control plane told the connection closed; entry freed",
            Action::ReportCloseAndLinger => {
                "control plane told the connection closed; the client's FIN, ACKs and RST still \
                 relayed to the backend's TIME_WAIT; entry freed after `fin_timeout` without a \
                 client packet"
            }
            Action::RelayAndFree => "the client's FIN or RST relayed to the backend; entry freed",
            Action::RelayRstAndFree => {
                "RST relayed to the backend; control plane told; entry freed"
            }
            Action::Reopen => "entry freed; the SYN is taken as a new connection from LISTEN",
        }
    }
}

/// One edge of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub from: State,
    pub event: Event,
    pub to: State,
    pub action: Action,
}

const fn row(from: State, event: Event, to: State, action: Action) -> Row {
    Row {
        from,
        event,
        to,
        action,
    }
}

/// Every transition the engine may take, grouped by state.
pub const TABLE: &[Row] = {
    use Action as A;
    use Event as E;
    use State as S;
    &[
        row(S::Listen, E::Syn, S::SynRcvd, A::SendSynAck),
        row(S::Listen, E::Ack, S::WaitHeader, A::OpenSession),
        row(S::SynRcvd, E::Ack, S::WaitHeader, A::OpenSession),
        row(S::SynRcvd, E::SynAckTimeout, S::Closed, A::FreeEntry),
        row(S::SynRcvd, E::ClientRst, S::Closed, A::FreeEntry),
        row(S::SynRcvd, E::Refused, S::Closed, A::ResetAndFree),
        row(
            S::WaitHeader,
            E::HeaderComplete,
            S::Dispatch,
            A::QueueDispatch,
        ),
        row(S::WaitHeader, E::BadHeader, S::Closing, A::SendResponseFin),
        row(
            S::WaitHeader,
            E::HeaderTimeout,
            S::Closing,
            A::SendResponseFin,
        ),
        row(S::WaitHeader, E::ClientRst, S::Closed, A::FreeEntry),
        row(S::Dispatch, E::Decision, S::Handoff, A::SendCreate),
        row(S::Dispatch, E::Reject, S::Closing, A::SendResponseFin),
        row(S::Dispatch, E::ClientRst, S::Closed, A::FreeEntry),
        row(S::Handoff, E::ThopAck, S::Forwarding, A::RelayHeld),
        row(S::Handoff, E::Redispatch, S::Dispatch, A::Redispatch),
        row(S::Handoff, E::HandoffFailed, S::Closing, A::SendResponseFin),
        row(S::Handoff, E::ClientRst, S::Closed, A::AbortAndFree),
        row(S::Handoff, E::ThopClose, S::Closed, A::ReportCloseAndFree),
        row(
            S::Forwarding,
            E::ClientFin,
            S::ForwardingFin,
            A::ArmFinTimer,
        ),
        row(S::Forwarding, E::ClientRst, S::Closed, A::RelayRstAndFree),
        row(
            S::Forwarding,
            E::ThopClose,
            S::ForwardingClosed,
            A::ReportCloseAndLinger,
        ),
        row(S::Forwarding, E::Expire, S::Closed, A::ReportCloseAndFree),
        row(
            S::ForwardingFin,
            E::ClientRst,
            S::Closed,
            A::RelayRstAndFree,
        ),
        row(
            S::ForwardingFin,
            E::ThopClose,
            S::Closed,
            A::ReportCloseAndFree,
        ),
        row(
            S::ForwardingFin,
            E::Expire,
            S::Closed,
            A::ReportCloseAndFree,
        ),
        row(S::ForwardingFin, E::Reuse, S::Closed, A::Reopen),
        row(
            S::ForwardingClosed,
            E::ClientFin,
            S::Closed,
            A::RelayAndFree,
        ),
        row(
            S::ForwardingClosed,
            E::ClientRst,
            S::Closed,
            A::RelayAndFree,
        ),
        row(S::ForwardingClosed, E::Expire, S::Closed, A::FreeEntry),
        row(S::ForwardingClosed, E::Reuse, S::Closed, A::Reopen),
        row(S::Closing, E::Closed, S::TimeWait, A::EnterTimeWait),
        row(S::Closing, E::ResponseTimeout, S::Closed, A::ResetAndFree),
        row(S::Closing, E::ClientRst, S::Closed, A::FreeEntry),
        row(S::Closing, E::Expire, S::Closed, A::FreeEntry),
        row(S::TimeWait, E::Expire, S::Closed, A::FreeEntry),
        row(S::TimeWait, E::Reuse, S::Closed, A::Reopen),
        row(S::TimeWait, E::ClientRst, S::Closed, A::FreeEntry),
    ]
};

/// "No row" in [`INDEX`].
const NO_ROW: u8 = u8::MAX;

/// Row number in [`TABLE`] by (state, event), or [`NO_ROW`].
const INDEX: [[u8; Event::COUNT]; State::COUNT] = {
    assert!(TABLE.len() < NO_ROW as usize);
    let mut idx = [[NO_ROW; Event::COUNT]; State::COUNT];
    let mut k = 0;
    while k < TABLE.len() {
        let (f, e) = (TABLE[k].from as usize, TABLE[k].event as usize);
        assert!(idx[f][e] == NO_ROW, "two rows for one (state, event)");
        assert!(
            !matches!(TABLE[k].from, State::Closed),
            "CLOSED is terminal"
        );
        idx[f][e] = k as u8;
        k += 1;
    }
    idx
};

/// The row for `event` in `from`, if the table has one.
#[inline]
pub fn lookup(from: State, event: Event) -> Option<&'static Row> {
    TABLE.get(INDEX[from as usize][event as usize] as usize)
}

/// An event the state does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {event:?} in {from}")]
pub struct IllegalTransition {
    pub from: State,
    pub event: Event,
}

/// The state `event` moves a connection in `from` to.
#[inline]
pub fn transition(from: State, event: Event) -> Result<State, IllegalTransition> {
    lookup(from, event)
        .map(|r| r.to)
        .ok_or(IllegalTransition { from, event })
}

/// [`TABLE`] as a markdown table (the one in `dataplane/README.md`).
pub fn table_markdown() -> String {
    let mut out = String::from("| from | event | to | action | what the engine does |\n");
    out.push_str("|---|---|---|---|---|\n");
    for r in TABLE {
        out.push_str(&format!(
            "| {} | `{:?}` | {} | `{:?}` | {} |\n",
            r.from,
            r.event,
            r.to,
            r.action,
            r.action.describe()
        ));
    }
    out
}
