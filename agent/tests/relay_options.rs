//! The TCP option matrix (timestamps, SACK, window scale, MSS) through the whole backend path:
//! THOP_CREATE to the real `baton-agent`, adoption, splice relay to a real
//! nginx, response straight to an unmodified client. Also many connections
//! open at once on the agent's single event loop.

mod common;

use common::agent_proc::{config, AgentProc};
use common::bed::{Bed, TcpKnobs, VIP};
use common::handoff::handoff;
use common::serve::*;
use common::thop::{Rx, SwitchThop};
use common::upstream::Nginx;
use std::io::{Read, Write};
use testkit::http::sample as metric;

struct Case {
    knobs: TcpKnobs,
    mss: Option<u16>,
    rcvbuf: Option<u32>,
}

fn run(case: Case) -> handoff_proto::TcpState {
    let bed = Bed::new();
    for ns in [bed.client.clone(), bed.switch.clone(), bed.backend.clone()] {
        bed.knobs(&ns, &case.knobs);
    }
    if let Some(mss) = case.mss {
        bed.client_mss(mss);
    }
    let page = body(400_000);
    let _nginx = Nginx::start(&bed, &[("page.bin", &page)]);
    let agent = AgentProc::start(&bed, &config(""));
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, case.rcvbuf);
    let client = python_get(&bed, "/page.bin", case.rcvbuf);
    let (rx, st, _) = handoff(&bed, &l, &mut thop, 1);
    assert!(matches!(rx, Rx::Ack { .. }), "{rx:?}\n{}", agent.log());
    assert!(finish(client) == page, "400 kB body intact for {st:?}");
    thop.wait_close(1);
    st
}

#[test]
fn timestamps_off() {
    let st = run(Case {
        knobs: TcpKnobs {
            timestamps: false,
            ..Default::default()
        },
        mss: None,
        rcvbuf: None,
    });
    assert!(st.timestamps.is_none());
}

#[test]
fn sack_off() {
    let st = run(Case {
        knobs: TcpKnobs {
            sack: false,
            ..Default::default()
        },
        mss: None,
        rcvbuf: None,
    });
    assert!(!st.sack_permitted);
}

#[test]
fn window_scale_0() {
    let st = run(Case {
        knobs: TcpKnobs::default(),
        mss: None,
        rcvbuf: Some(8192),
    });
    assert_eq!(st.window_scale.map(|w| (w.client, w.server)), Some((0, 0)));
}

#[test]
fn window_scale_7_timestamps_sack() {
    let st = run(Case {
        knobs: TcpKnobs::default(),
        mss: None,
        rcvbuf: None,
    });
    assert_eq!(st.window_scale.map(|w| (w.client, w.server)), Some((7, 7)));
    assert!(st.timestamps.is_some() && st.sack_permitted);
}

#[test]
fn window_scale_14() {
    let st = run(Case {
        knobs: TcpKnobs {
            rmem_max: 1 << 30,
            ..Default::default()
        },
        mss: None,
        rcvbuf: None,
    });
    assert_eq!(
        st.window_scale.map(|w| (w.client, w.server)),
        Some((14, 14))
    );
}

#[test]
fn mss_536() {
    let st = run(Case {
        knobs: TcpKnobs::default(),
        mss: Some(536),
        rcvbuf: None,
    });
    assert_eq!(st.mss, 536);
}

#[test]
fn mss_1460() {
    let st = run(Case {
        knobs: TcpKnobs::default(),
        mss: Some(1460),
        rcvbuf: None,
    });
    assert_eq!(st.mss, 1460);
}

/// 200 connections adopted and open at the same time on the one relay loop,
/// then all answered.
#[test]
fn many_connections_on_one_loop() {
    const N: usize = 200;
    let bed = Bed::new();
    let _nginx = Nginx::start(&bed, &[("i.txt", b"one of many\n")]);
    let agent = AgentProc::start(&bed, &config(""));
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener(&bed, None);
    // The clients: plain kernel sockets in the client namespace, each sends
    // its request and waits (connecting while the switch hands them off).
    let clients = testkit::netns::spawn_in(&bed.client, || {
        (0..N)
            .map(|_| {
                let mut s = std::net::TcpStream::connect((VIP, 80)).unwrap();
                s.write_all(b"GET /i.txt HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
                    .unwrap();
                s
            })
            .collect::<Vec<std::net::TcpStream>>()
    });
    for i in 0..N {
        let (rx, _, _) = handoff(&bed, &l, &mut thop, 1000 + i as u64);
        assert!(
            matches!(rx, Rx::Ack { .. }),
            "connection {i}: {rx:?}\n{}",
            agent.log()
        );
    }
    let clients = clients.join().unwrap();
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_active_connections"),
        N as f64,
        "all open at once: {m}"
    );
    for (i, mut s) in clients.into_iter().enumerate() {
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        assert!(resp.starts_with(b"HTTP/1.1 200 OK"), "connection {i}");
        assert!(resp.ends_with(b"one of many\n"), "connection {i}");
    }
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"relay\"}"),
        N as f64,
        "{m}"
    );
}
