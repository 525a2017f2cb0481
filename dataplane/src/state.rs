//! The switch's connection states and their declared transitions.
//!
//! States are named as in the seed paper (Andreolini, Colajanni, Nuccio,
//! WWW 2003, fig. 4): WAITHEADER is ESTABLISHED while the request is read and
//! parsed; FORWARDING means the connection was handed off and client packets
//! are relayed. DISPATCH (waiting for the control plane) and HANDOFF
//! (THOP_CREATE sent, waiting for THOP_ACK) split the paper's single handoff
//! step so that each wait has its own timer. CLOSING and TIME_WAIT are the
//! switch answering (400/408/431/503) and closing by itself.
//!
//! Every state change in the engine goes through [`transition`]; an event
//! the table does not list for a state is an [`IllegalTransition`].

use std::fmt;

use crate::counters::StateGauge;

/// A connection's state on the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Per service: no entry exists yet.
    Listen,
    SynRcvd,
    WaitHeader,
    Dispatch,
    Handoff,
    Forwarding,
    /// FORWARDING after the client's FIN (short timer).
    FinWait,
    /// The switch sent its own response and FIN.
    Closing,
    TimeWait,
    /// Entry freed.
    Closed,
}

impl State {
    /// Every state, in table order.
    pub const ALL: [State; 10] = [
        State::Listen,
        State::SynRcvd,
        State::WaitHeader,
        State::Dispatch,
        State::Handoff,
        State::Forwarding,
        State::FinWait,
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
            State::FinWait => "FORWARDING_FIN",
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
            State::FinWait => StateGauge::FinWait,
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
pub enum Event {
    /// Client SYN; entry created, SYN/ACK sent.
    Syn,
    /// ACK of our SYN/ACK (or a valid SYN cookie ACK from LISTEN).
    Ack,
    /// SYN/ACK retransmissions exhausted.
    SynAckTimeout,
    /// Request header complete and well formed: dispatch request queued.
    HeaderComplete,
    /// Malformed (400) or oversized (431) header, or premature client FIN.
    BadHeader,
    /// Header not complete in time (408).
    HeaderTimeout,
    /// Control plane chose a backend: THOP_CREATE sent.
    Decision,
    /// Control plane rejected (503 etc.), or no decision in time.
    Reject,
    /// THOP_ACK from the chosen agent.
    ThopAck,
    /// THOP_NACK or CREATE timeout with attempts left: ask again.
    Redispatch,
    /// THOP_NACK or CREATE timeout with no attempts left (503).
    HandoffFailed,
    /// Client FIN in FORWARDING.
    ClientFin,
    /// Client RST (forwarded in FORWARDING).
    ClientRst,
    /// THOP_CLOSE from the agent.
    ThopClose,
    /// FORWARDING idle or FIN timer.
    Expire,
    /// Our response and FIN acknowledged, the client's FIN received.
    Closed,
    /// Response never acknowledged (reset sent).
    ResponseTimeout,
    /// A client SYN reusing the 4-tuple of a finished connection.
    Reuse,
    /// Handshake completed by a client address over its session limit (reset).
    Refused,
}

impl Event {
    /// Every event, in table order.
    pub const ALL: [Event; 19] = [
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

/// An event the state does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {event:?} in {from}")]
pub struct IllegalTransition {
    pub from: State,
    pub event: Event,
}

/// The declared transition table.
pub fn transition(from: State, event: Event) -> Result<State, IllegalTransition> {
    use Event as E;
    use State as S;
    let to = match (from, event) {
        (S::Listen, E::Syn) => S::SynRcvd,
        (S::Listen, E::Ack) => S::WaitHeader, // SYN cookie
        (S::SynRcvd, E::Ack) => S::WaitHeader,
        (S::SynRcvd, E::SynAckTimeout | E::ClientRst | E::Refused) => S::Closed,
        (S::WaitHeader, E::HeaderComplete) => S::Dispatch,
        (S::WaitHeader, E::BadHeader | E::HeaderTimeout) => S::Closing,
        (S::WaitHeader, E::ClientRst) => S::Closed,
        (S::Dispatch, E::Decision) => S::Handoff,
        (S::Dispatch, E::Reject) => S::Closing,
        (S::Dispatch, E::ClientRst) => S::Closed,
        (S::Handoff, E::ThopAck) => S::Forwarding,
        (S::Handoff, E::Redispatch) => S::Dispatch,
        (S::Handoff, E::HandoffFailed) => S::Closing,
        (S::Handoff, E::ClientRst | E::ThopClose) => S::Closed,
        (S::Forwarding, E::ClientFin) => S::FinWait,
        (S::Forwarding | S::FinWait, E::ClientRst | E::ThopClose | E::Expire | E::Reuse) => {
            S::Closed
        }
        (S::Closing, E::Closed) => S::TimeWait,
        (S::Closing, E::ResponseTimeout | E::ClientRst | E::Expire) => S::Closed,
        (S::TimeWait, E::Expire | E::Reuse | E::ClientRst) => S::Closed,
        _ => return Err(IllegalTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints the whole FSM so a reviewer sees WAITHEADER and FORWARDING at a glance.
    #[test]
    fn print_transition_table() {
        let mut out = String::new();
        out.push_str(&format!("{:<16}{:<16}{}\n", "FROM", "EVENT", "TO"));
        for s in State::ALL {
            for e in Event::ALL {
                if let Ok(t) = transition(s, e) {
                    out.push_str(&format!(
                        "{:<16}{:<16}{}\n",
                        s.name(),
                        format!("{e:?}"),
                        t.name()
                    ));
                }
            }
        }
        println!("{out}");
        assert!(out.contains("SYN_RCVD        Ack             WAITHEADER"));
        assert!(out.contains("WAITHEADER      HeaderComplete  DISPATCH"));
        assert!(out.contains("HANDOFF         ThopAck         FORWARDING"));
        // Every state but CLOSED can be left; CLOSED is terminal.
        for s in State::ALL {
            let leaves = Event::ALL.iter().any(|e| transition(s, *e).is_ok());
            assert_eq!(leaves, s != State::Closed, "{s}");
        }
        assert!(transition(State::Forwarding, Event::HeaderComplete).is_err());
    }
}
