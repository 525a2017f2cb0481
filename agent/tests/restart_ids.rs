//! A restarted switch may hand over a connection under an id the agent
//! still remembers from the switch's previous run: the agent must adopt it,
//! not take it for a retransmission of the old one (which would acknowledge
//! it without a socket and leave the client hanging). Real `baton-agent`,
//! real Linux TCP clients in namespaces.

mod common;

use common::agent_proc::{config, AgentProc};
use common::bed::Bed;
use common::handoff::handoff;
use common::serve::*;
use common::thop::{Rx, SwitchThop};
use common::upstream::{read_request, respond, Upstream};
use handoff_proto::flags;
use testkit::http::sample as metric;

/// A backend namespace with a real agent, its upstream, and the switch's
/// listener the test accepts clients on.
fn start() -> (Bed, Upstream, AgentProc, std::net::TcpListener) {
    let bed = Bed::new();
    let up = Upstream::start(&bed);
    let agent = AgentProc::start(&bed, &config(""));
    let l = switch_listener(&bed, None);
    (bed, up, agent, l)
}

#[test]
fn a_reused_id_from_a_restarted_switch_is_a_new_connection() {
    let (bed, up, agent, l) = start();

    // The switch's first run hands over connection 21; it is served and closed.
    let mut thop = SwitchThop::new(&bed);
    let first = curl(&bed, "/first", &[]);
    let (rx, _, req) = handoff(&bed, &l, &mut thop, 21);
    assert!(matches!(rx, Rx::Ack { flags: 0, .. }), "{rx:?}");
    let mut s = up.accept();
    assert_eq!(read_request(&mut s), req);
    respond(&mut s, b"first");
    drop(s);
    assert_eq!(finish(first), b"first");
    thop.wait_close(21);
    drop(thop);

    // The switch restarts and numbers connections from scratch: another
    // client's connection arrives under the same id, well within the time
    // the agent remembers closed ids.
    let mut thop = SwitchThop::new(&bed);
    let second = curl(&bed, "/second", &[]);
    let (rx, _, req) = handoff(&bed, &l, &mut thop, 21);
    assert!(
        matches!(rx, Rx::Ack { flags, .. } if flags & flags::DUPLICATE == 0),
        "a new client's connection is not a duplicate: {rx:?}\n{}",
        agent.log()
    );
    let mut s = up
        .conns
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the second connection reaches the server");
    assert_eq!(read_request(&mut s), req);
    respond(&mut s, b"second");
    drop(s);
    assert_eq!(finish(second), b"second", "the second client is answered");
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_duplicate_creates_total"),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"relay\"}"),
        2.0,
        "{m}"
    );
}

#[test]
fn an_id_naming_another_clients_open_connection_is_refused() {
    let (bed, up, agent, l) = start();
    let mut thop = SwitchThop::new(&bed);
    let first = curl(&bed, "/first", &[]);
    let (rx, _, req) = handoff(&bed, &l, &mut thop, 22);
    assert!(matches!(rx, Rx::Ack { flags: 0, .. }), "{rx:?}");
    let mut s = up.accept();
    assert_eq!(read_request(&mut s), req);

    // While the first is open, another client's connection under its id:
    // refused (the switch tries elsewhere), the first one is untouched.
    let mut second = curl(&bed, "/second", &["--max-time", "2"]);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 22);
    assert!(
        matches!(
            rx,
            Rx::Nack {
                reason: handoff_proto::NackReason::BadState,
                ..
            }
        ),
        "{rx:?}\n{}",
        agent.log()
    );
    respond(&mut s, b"first");
    drop(s);
    assert_eq!(finish(first), b"first");
    let _ = second.kill();
    let _ = second.wait();
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_duplicate_creates_total"),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "baton_agent_refused_total{reason=\"bad_state\"}"),
        1.0,
        "{m}"
    );
}
