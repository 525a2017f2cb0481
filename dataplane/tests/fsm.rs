//! The transition table: its shape (every state can be left, CLOSED is
//! terminal, every row can be reached from LISTEN), the copies printed in
//! `dataplane/README.md` and `docs/architecture.md`, and connections walked through it with the state
//! gauges checked at every step.

mod support;

use std::collections::BTreeSet;

use dataplane::config::{SynCookieMode, WorkerConfig};
use dataplane::counters::StateGauge;
use dataplane::state::{lookup, table_markdown, transition, Event, State, TABLE};
use support::{client_ip, test_config, Bed};

const BEGIN: &str = "<!-- BEGIN GENERATED STATE TABLE -->";
const END: &str = "<!-- END GENERATED STATE TABLE -->";

/// The copies of the table in `dataplane/README.md` and
/// `docs/architecture.md` are the one rendered from `TABLE`;
/// `BATON_BLESS=1 cargo test -p dataplane --test fsm` rewrites them.
#[test]
fn docs_print_the_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in [root.join("README.md"), root.join("../docs/architecture.md")] {
        let text = std::fs::read_to_string(&path).expect("a doc with the table");
        let shown = path.display();
        let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
            panic!("{shown} lacks the generated-table markers {BEGIN} … {END}");
        };
        let generated = format!("\n{}", table_markdown());
        let current = &text[b + BEGIN.len()..e];
        if std::env::var_os("BATON_BLESS").is_some() && current != generated {
            let new = format!("{}{BEGIN}{generated}{}", &text[..b], &text[e..]);
            std::fs::write(&path, new).expect("write the doc");
            continue;
        }
        assert!(
            current == generated,
            "the state table in {shown} is stale: run \
             `BATON_BLESS=1 cargo test -p dataplane --test fsm`"
        );
    }
}

/// The lookup the engine uses answers exactly the rows of `TABLE`.
#[test]
fn lookup_answers_the_rows_and_nothing_else() {
    for s in State::ALL {
        for e in Event::ALL {
            let rows: Vec<_> = TABLE
                .iter()
                .filter(|r| r.from == s && r.event == e)
                .collect();
            assert!(rows.len() <= 1, "{s} {e:?}: {} rows", rows.len());
            assert_eq!(lookup(s, e), rows.first().copied(), "{s} {e:?}");
            assert_eq!(transition(s, e).ok(), rows.first().map(|r| r.to));
        }
    }
    assert!(transition(State::Forwarding, Event::HeaderComplete).is_err());
}

#[test]
fn every_state_but_closed_can_be_left_and_closed_is_terminal() {
    for s in State::ALL {
        let leaves = TABLE.iter().any(|r| r.from == s);
        assert_eq!(leaves, s != State::Closed, "{s}");
    }
    // Nothing leads back to LISTEN: a new connection starts from no entry.
    assert!(TABLE.iter().all(|r| r.to != State::Listen));
}

/// Every row starts in a state reachable from LISTEN (so every row can be
/// taken), every state can reach CLOSED (no connection is stuck), and
/// every event is used by some row.
#[test]
fn every_row_is_reachable_and_every_state_can_close() {
    let mut seen = BTreeSet::from([State::Listen as u8]);
    let mut todo = vec![State::Listen];
    while let Some(s) = todo.pop() {
        for r in TABLE.iter().filter(|r| r.from == s) {
            if seen.insert(r.to as u8) {
                todo.push(r.to);
            }
        }
    }
    for r in TABLE {
        assert!(seen.contains(&(r.from as u8)), "{r:?} cannot be reached");
    }
    for s in State::ALL {
        assert!(seen.contains(&(s as u8)), "{s} cannot be reached");
        let mut at = BTreeSet::from([s as u8]);
        let mut todo = vec![s];
        while let Some(x) = todo.pop() {
            for r in TABLE.iter().filter(|r| r.from == x) {
                if at.insert(r.to as u8) {
                    todo.push(r.to);
                }
            }
        }
        assert!(at.contains(&(State::Closed as u8)), "{s} never closes");
    }
    for e in Event::ALL {
        assert!(TABLE.iter().any(|r| r.event == e), "{e:?} moves nothing");
    }
}

/// The gauges are labelled with the states' printed names, one gauge per
/// state with an entry.
#[test]
fn gauges_are_named_as_the_states_print() {
    let mut gauges = vec![];
    for s in State::ALL {
        match s.gauge() {
            Some(g) => {
                assert_eq!(g.as_str(), s.name(), "{s:?}");
                gauges.push(g);
            }
            None => assert!(matches!(s, State::Listen | State::Closed), "{s:?}"),
        }
    }
    assert_eq!(gauges, StateGauge::ALL);
}

/// Exactly one connection, in `want` (none for CLOSED): the engine's view
/// and every state gauge agree, and no transition was refused.
fn expect(bed: &Bed, want: State) {
    let got = bed.engine.state_of(client_ip(), bed.client_port, 0);
    let want_entry = (want != State::Closed).then_some(want);
    assert_eq!(got, want_entry, "state");
    for g in StateGauge::ALL {
        let n = u64::from(want.gauge() == Some(*g));
        assert_eq!(bed.counters.in_state(*g), n, "{want}: gauge {}", g.as_str());
    }
    assert_eq!(bed.counters.snapshot().get("illegal_transitions"), 0);
}

const REQUEST: &str = r#"GET / HTTP/1.1\r\nHost: h\r\n\r\n"#;

/// SYN_RCVD → WAITHEADER → DISPATCH → HANDOFF → FORWARDING →
/// FORWARDING_FIN → CLOSED.
#[test]
fn walk_handshake_to_fin() {
    let mut bed = Bed::new(test_config());
    expect(&bed, State::Closed);
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>",
    );
    expect(&bed, State::SynRcvd);
    bed.run_script("0.010 < . 1:1(0) ack 1 win 65535");
    expect(&bed, State::WaitHeader);
    bed.run_script(&format!(
        "0.000 < P. 1:28(27) ack 1 win 65535 \"{REQUEST}\"
0.000 > . 1:1(0) ack 28
0.000 > dispatch \"GET /\""
    ));
    expect(&bed, State::Dispatch);
    bed.run_script("0.001 decide 1\n0.001 > create 1 len 27");
    expect(&bed, State::Handoff);
    bed.run_script("0.001 < ack 1");
    expect(&bed, State::Forwarding);
    bed.run_script(
        "0.010 < P. 28:38(10) ack 1 win 65535
0.010 > fwd 1 P. 28:38(10) ack 1
0.020 < F. 38:38(0) ack 1 win 65535
0.020 > fwd 1 F. 38:38(0) ack 1",
    );
    expect(&bed, State::ForwardingFin);
    bed.advance_to(bed.now + bed.cfg.fin_timeout.as_nanos() as u64 + 1_000_000_000);
    expect(&bed, State::Closed);
    assert_eq!(bed.counters.snapshot().get("new_connections"), 1);
}

/// A SYN cookie: nothing is kept for the SYN, and the cookie's ACK takes
/// LISTEN → WAITHEADER (the SYN_RCVD gauge never moves); then through
/// handoff to a THOP_CLOSE.
#[test]
fn walk_syn_cookie_connection() {
    let mut cfg: WorkerConfig = test_config();
    cfg.syncookie_mode = SynCookieMode::Always;
    let mut bed = Bed::new(cfg);
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 7>
0.000 counter syncookies_sent 1",
    );
    expect(&bed, State::Closed);
    bed.run_script(
        "0.010 < . 1:1(0) ack 1 win 502 <nop,nop,TS val 110 ecr 23>
0.010 counter syncookies_validated 1",
    );
    expect(&bed, State::WaitHeader);
    bed.run_script(&format!(
        "0.000 < P. 1:28(27) ack 1 win 502 \"{REQUEST}\"
0.000 > . 1:1(0) ack 28
0.000 > dispatch \"GET /\""
    ));
    expect(&bed, State::Dispatch);
    bed.run_script("0.001 decide 2\n0.001 > create 2 len 27");
    expect(&bed, State::Handoff);
    bed.run_script("0.001 < ack 2");
    expect(&bed, State::Forwarding);
    bed.run_script("0.100 < close 2\n0.100 > thopack 2");
    // The backend closed first: the client's FIN is still to come.
    expect(&bed, State::ForwardingClosed);
    bed.run_script(
        "0.110 < F. 28:28(0) ack 1 win 502 <nop,nop,TS val 120 ecr 24>
0.110 > fwd 2 F. 28:28(0) ack 1
0.110 counter fins_after_close 1",
    );
    expect(&bed, State::Closed);
    let s = bed.counters.snapshot();
    assert_eq!(s.get("new_connections"), 1);
    assert_eq!(s.get("syncookies_validated"), 1);
}

/// A forged cookie makes no entry and moves no gauge.
#[test]
fn forged_cookie_moves_nothing() {
    let mut cfg: WorkerConfig = test_config();
    cfg.syncookie_mode = SynCookieMode::Always;
    let mut bed = Bed::new(cfg);
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < . 1:1(0) ack 7 win 65535
0.010 counter drop.bad_cookie 1",
    );
    expect(&bed, State::Closed);
}

/// Where each row is taken, by test (`file::name`). Every row has one, so a
/// new row comes with a test that takes it. The rows no other test takes
/// are taken by the tests below, which check the gauges around them.
const TAKEN_BY: &[(State, Event, &str)] = {
    use Event as E;
    use State as S;
    &[
        (S::Listen, E::Syn, "fsm::walk_handshake_to_fin"),
        (S::Listen, E::Ack, "fsm::walk_syn_cookie_connection"),
        (S::SynRcvd, E::Ack, "fsm::walk_handshake_to_fin"),
        (S::SynRcvd, E::SynAckTimeout, "scenarios::synack_backoff"),
        (
            S::SynRcvd,
            E::ClientRst,
            "hardening_clients::one_address_is_refused_its_n_plus_first_connection_while_another_connects",
        ),
        (
            S::SynRcvd,
            E::Refused,
            "hardening_clients::one_address_cannot_take_every_session",
        ),
        (S::WaitHeader, E::HeaderComplete, "fsm::walk_handshake_to_fin"),
        (S::WaitHeader, E::BadHeader, "scenarios::malformed_400_and_clean_close"),
        (S::WaitHeader, E::HeaderTimeout, "scenarios::slow_header_408"),
        (
            S::WaitHeader,
            E::ClientRst,
            "scenarios::client_reset_and_fin_in_waitheader",
        ),
        (S::Dispatch, E::Decision, "fsm::walk_handshake_to_fin"),
        (S::Dispatch, E::Reject, "scenarios::decision_timeout_503"),
        (
            S::Dispatch,
            E::ClientRst,
            "hardening_rst_fin::pending_handoff_ignores_blind_rst",
        ),
        (S::Handoff, E::ThopAck, "fsm::walk_handshake_to_fin"),
        (S::Handoff, E::Redispatch, "scenarios::handoff_nack_redispatch"),
        (S::Handoff, E::HandoffFailed, "scenarios::handoff_exhausted_503"),
        (S::Handoff, E::ClientRst, "fsm::handoff_client_rst"),
        (S::Handoff, E::ThopClose, "fsm::handoff_thop_close"),
        (S::Forwarding, E::ClientFin, "fsm::walk_handshake_to_fin"),
        (
            S::Forwarding,
            E::ClientRst,
            "scenarios::forwarding_rst_and_thop_close",
        ),
        (S::Forwarding, E::ThopClose, "fsm::walk_syn_cookie_connection"),
        (
            S::ForwardingClosed,
            E::ClientFin,
            "fsm::walk_syn_cookie_connection",
        ),
        (
            S::ForwardingClosed,
            E::ClientRst,
            "fsm::forwarding_closed_client_rst",
        ),
        (S::ForwardingClosed, E::Expire, "fsm::forwarding_closed_expire"),
        (S::ForwardingClosed, E::Reuse, "fsm::forwarding_closed_reuse"),
        (S::Forwarding, E::Expire, "scenarios::forwarding_idle_timeout"),
        (S::ForwardingFin, E::ClientRst, "fsm::forwarding_fin_client_rst"),
        (S::ForwardingFin, E::ThopClose, "fsm::forwarding_fin_thop_close"),
        (S::ForwardingFin, E::Expire, "fsm::walk_handshake_to_fin"),
        (S::ForwardingFin, E::Reuse, "fsm::forwarding_fin_reuse"),
        (S::Closing, E::Closed, "fsm::time_wait_client_rst"),
        (
            S::Closing,
            E::ResponseTimeout,
            "scenarios::response_retransmitted_then_reset",
        ),
        (S::Closing, E::ClientRst, "fsm::closing_client_rst"),
        (S::Closing, E::Expire, "fsm::closing_expire"),
        (S::TimeWait, E::Expire, "scenarios::malformed_400_and_clean_close"),
        (S::TimeWait, E::Reuse, "fsm::time_wait_reuse"),
        (S::TimeWait, E::ClientRst, "fsm::time_wait_client_rst"),
    ]
};

#[test]
fn every_row_names_the_test_that_takes_it() {
    for r in TABLE {
        let n = TAKEN_BY
            .iter()
            .filter(|(s, e, _)| *s == r.from && *e == r.event)
            .count();
        assert_eq!(
            n, 1,
            "{} {:?}: name the test that takes it",
            r.from, r.event
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for (s, e, by) in TAKEN_BY {
        assert!(lookup(*s, *e).is_some(), "{s} {e:?} is not a row");
        let (file, name) = by.split_once("::").expect("file::name");
        let src = std::fs::read_to_string(dir.join(format!("{file}.rs"))).unwrap_or_default();
        let named = src.contains(&format!("fn {name}()"))
            || src.contains(&format!("script!({name},"))
            || src.contains(&format!("script!(\n    {name},"));
        assert!(named, "{s} {e:?}: no test {by}");
    }
}

fn to_handoff(bed: &mut Bed) {
    bed.run_script(&format!(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < P. 1:28(27) ack 1 win 65535 \"{REQUEST}\"
0.010 > . 1:1(0) ack 28
0.010 > dispatch \"GET /\"
0.011 decide 1
0.011 > create 1 len 27"
    ));
    expect(bed, State::Handoff);
}

fn to_forwarding_fin(bed: &mut Bed) {
    to_handoff(bed);
    bed.run_script(
        "0.001 < ack 1
0.010 < F. 28:28(0) ack 1 win 65535
0.010 > fwd 1 F. 28:28(0) ack 1",
    );
    expect(bed, State::ForwardingFin);
}

/// FORWARDING, then the agent's CLOSE before the client's FIN: the close
/// is reported and counted at once.
fn to_forwarding_closed(bed: &mut Bed) {
    to_handoff(bed);
    bed.run_script("0.001 < ack 1");
    expect(bed, State::Forwarding);
    bed.sink.events.clear();
    bed.run_script("0.010 < close 1\n0.010 > thopack 1\n0.010 counter close.thop_close 1");
    expect(bed, State::ForwardingClosed);
    assert_eq!(closed_events(bed), 1, "reported at THOP_CLOSE");
}

fn closed_events(bed: &Bed) -> usize {
    bed.sink
        .events
        .iter()
        .filter(|e| matches!(e, dataplane::dispatch::WorkerEvent::Closed { .. }))
        .count()
}

/// A malformed head: 400 and FIN (109 bytes of response, FIN at 110).
fn to_closing(bed: &mut Bed) {
    bed.run_script(
        "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.010 < P. 1:31(30) ack 1 win 65535 \"GET / HTTP/1.1\\r\\nBad Header\\r\\n\\r\\n\"
0.010 > FP. 1:110(109) ack 31",
    );
    expect(bed, State::Closing);
}

fn to_time_wait(bed: &mut Bed) {
    to_closing(bed);
    bed.run_script(
        "0.010 < . 31:31(0) ack 111 win 65535
0.010 > none
0.011 < F. 31:31(0) ack 111 win 65535
0.011 > . 111:111(0) ack 32",
    );
    expect(bed, State::TimeWait);
}

/// A SYN from the same port, far beyond the old sequence space: the old
/// entry goes and a new connection is in SYN_RCVD.
fn reuse_port(bed: &mut Bed) {
    use dataplane::io::PacketBuf;
    use dataplane::wire::{flags, parse, Frame, TcpOpts, Verify};
    let syn = bed.client_frame(
        flags::SYN,
        bed.client_isn.wrapping_add(1_000_000),
        0,
        65535,
        TcpOpts::default(),
        &[],
    );
    bed.inject(&syn);
    let out = std::mem::take(&mut bed.sink.out);
    assert_eq!(out.len(), 1, "one SYN/ACK");
    let Ok(Frame::Tcp(s)) = parse(out[0].data(), Verify::Full) else {
        panic!("not TCP")
    };
    assert_eq!(s.flags, flags::SYN | flags::ACK);
    expect(bed, State::SynRcvd);
}

#[test]
fn handoff_client_rst() {
    let mut bed = Bed::new(test_config());
    to_handoff(&mut bed);
    bed.run_script(
        "0.020 < R. 28:28(0) ack 1 win 0
0.020 > abort 1
0.020 counter abort.client_reset 1",
    );
    expect(&bed, State::Closed);
}

#[test]
fn handoff_thop_close() {
    let mut bed = Bed::new(test_config());
    to_handoff(&mut bed);
    bed.run_script("0.020 < close 1\n0.020 > thopack 1\n0.020 counter close.thop_close 1");
    expect(&bed, State::Closed);
}

#[test]
fn forwarding_fin_client_rst() {
    let mut bed = Bed::new(test_config());
    to_forwarding_fin(&mut bed);
    bed.run_script(
        "0.020 < R. 29:29(0) ack 1 win 0
0.020 > fwd 1 R. 29:29(0) ack 1
0.020 counter close.client_reset 1",
    );
    expect(&bed, State::Closed);
}

#[test]
fn forwarding_fin_thop_close() {
    let mut bed = Bed::new(test_config());
    to_forwarding_fin(&mut bed);
    bed.run_script("0.020 < close 1\n0.020 > thopack 1\n0.020 counter close.thop_close 1");
    expect(&bed, State::Closed);
}

/// A retransmitted CLOSE changes nothing; the client's ACKs are still
/// relayed; its RST ends the entry without a second report.
#[test]
fn forwarding_closed_client_rst() {
    let mut bed = Bed::new(test_config());
    to_forwarding_closed(&mut bed);
    bed.run_script(
        "0.011 < close 1
0.011 > thopack 1
0.012 < . 28:28(0) ack 1 win 65535
0.012 > fwd 1 . 28:28(0) ack 1",
    );
    expect(&bed, State::ForwardingClosed);
    bed.run_script(
        "0.020 < R. 28:28(0) ack 1 win 0
0.020 > fwd 1 R. 28:28(0) ack 1
0.020 counter close.client_reset 0
0.020 counter close.thop_close 1",
    );
    expect(&bed, State::Closed);
    assert_eq!(closed_events(&bed), 1, "reported once");
}

/// A client that never closes its side: freed after `fin_timeout`.
#[test]
fn forwarding_closed_expire() {
    let mut bed = Bed::new(test_config());
    to_forwarding_closed(&mut bed);
    bed.advance_to(bed.now + bed.cfg.fin_timeout.as_nanos() as u64 + 1_000_000_000);
    expect(&bed, State::Closed);
    assert_eq!(closed_events(&bed), 1, "reported once");
    bed.run_script("0.000 counter close.fin_timeout 0");
}

/// A new SYN on the 4-tuple (the client gave up on its FIN).
#[test]
fn forwarding_closed_reuse() {
    let mut bed = Bed::new(test_config());
    to_forwarding_closed(&mut bed);
    reuse_port(&mut bed);
    assert_eq!(closed_events(&bed), 1, "reported once");
    bed.run_script("0.020 counter close.reused 0");
}

#[test]
fn forwarding_fin_reuse() {
    let mut bed = Bed::new(test_config());
    to_forwarding_fin(&mut bed);
    bed.sink.events.clear();
    reuse_port(&mut bed);
    // The old connection is over: the control plane hears of it (the
    // backend's active count falls) and the close is counted.
    assert!(bed
        .sink
        .events
        .iter()
        .any(|e| matches!(e, dataplane::dispatch::WorkerEvent::Closed { .. })));
    bed.run_script("0.020 counter close.reused 1");
}

#[test]
fn closing_client_rst() {
    let mut bed = Bed::new(test_config());
    to_closing(&mut bed);
    bed.run_script("0.020 < R. 31:31(0) ack 110 win 0\n0.020 > none");
    expect(&bed, State::Closed);
}

/// Our response and FIN acknowledged, the client never closes its side.
#[test]
fn closing_expire() {
    let mut bed = Bed::new(test_config());
    to_closing(&mut bed);
    bed.run_script("0.010 < . 31:31(0) ack 111 win 65535\n0.010 > none");
    expect(&bed, State::Closing);
    bed.advance_to(bed.now + bed.cfg.fin_timeout.as_nanos() as u64 + 1_000_000_000);
    assert!(
        bed.sink.out.is_empty(),
        "no reset: the response was received"
    );
    expect(&bed, State::Closed);
}

#[test]
fn time_wait_client_rst() {
    let mut bed = Bed::new(test_config());
    to_time_wait(&mut bed);
    bed.run_script("0.020 < R. 32:32(0) ack 111 win 0\n0.020 > none");
    expect(&bed, State::Closed);
}

#[test]
fn time_wait_reuse() {
    let mut bed = Bed::new(test_config());
    to_time_wait(&mut bed);
    reuse_port(&mut bed);
}
