//! The relay mode end to end: an unmodified nginx in a backend namespace
//! serves a client whose connection was opened with another host (the switch
//! namespace), through `baton-agent` in relay mode; the response bytes are
//! verified, and the agent reports CLOSE and LOAD to the switch.

mod common;

use common::agent_proc::{config, AgentProc};
use common::bed::Bed;
use common::handoff::handoff;
use common::serve::*;
use common::thop::{Rx, SwitchThop};
use common::upstream::Nginx;
use handoff_proto::CloseReason;
use std::time::Duration;
use testkit::http::sample as metric;

#[test]
fn nginx_serves_a_handed_off_connection() {
    let bed = Bed::new();
    let big = body(1_500_000);
    let nginx = Nginx::start(
        &bed,
        &[("index.html", b"hello from nginx\n"), ("big.bin", &big)],
    );
    let agent = AgentProc::start(&bed, &config(""));
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);

    // curl, 1.5 MB file.
    let client = curl(&bed, "/big.bin", &["-D", "/dev/stderr"]);
    let (rx, _, req) = handoff(&bed, &l, &mut thop, 101);
    assert!(
        matches!(
            rx,
            Rx::Ack {
                conn_id: 101,
                flags: 0,
                ..
            }
        ),
        "{rx:?}\n{}",
        agent.log()
    );
    assert!(req.starts_with(b"GET /big.bin HTTP/1.1\r\n"));
    let got = finish(client);
    assert_eq!(got.len(), big.len(), "whole body");
    assert!(got == big, "body bytes identical");
    let close = thop.wait_close(101);
    assert!(
        matches!(
            close.reason,
            CloseReason::ClientFin | CloseReason::ServerClose
        ),
        "{close:?}"
    );
    assert_eq!(close.bytes_from_client, 0, "nothing after the request");
    assert!(
        close.bytes_to_client > big.len() as u64,
        "headers + body: {close:?}"
    );

    // Python http.client, small file.
    let client = python_get(&bed, "/index.html", None);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 102);
    assert!(matches!(rx, Rx::Ack { conn_id: 102, .. }), "{rx:?}");
    assert_eq!(finish(client), b"hello from nginx\n");
    thop.wait_close(102);

    // LOAD arrives on its period and counts what happened.
    let load = thop.wait_for("LOAD", Duration::from_secs(5), |r| matches!(r, Rx::Load(_)));
    let Rx::Load(load) = load else { unreachable!() };
    assert_eq!(load.interval_ms, 200);
    assert!(load.capacity_hint > 0);

    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"relay\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "baton_agent_active_connections"), 0.0, "{m}");
    assert!(
        metric(
            &m,
            "baton_agent_relayed_bytes_total{direction=\"to_client\"}"
        ) > 1_500_000.0,
        "{m}"
    );
    let log = nginx.access_log();
    assert!(
        log.contains("GET /big.bin") && log.contains("GET /index.html"),
        "nginx served both: {log}"
    );
}
