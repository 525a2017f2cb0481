//! IPv6 connections in every mode, like the IPv4 tests: a client at
//! 2001:2::101 connects to the IPv6 VIP 2001:2::10 held by the switch
//! namespace, which hands the connection off (THOP over IPv6 from
//! [2001:2::2]:9199 to the agent's [2001:2::11]:9199, or over IPv4) to
//! `baton-agent` on a backend holding the VIP on `lo`. Relay to a local
//! nginx (on [::1]), the `HandoffListener` API, handover to stock nginx
//! (the VIP itself, the IPv6 wildcard, a dual-stack listener) and lighttpd;
//! a stale IPv6 socket retired; CLOSE at every end; and the backend's
//! silence in neighbour discovery for its `lo` addresses.

mod common;

use agent::config::Config;
use agent::metrics::Metrics;
use common::agent_proc::{config_with, AgentProc};
use common::bed::{Bed, CLIENT_IP, CLIENT_IP6, VIP, VIP6};
use common::handoff::handoff;
use common::preloaded::{handover_config_with, library, Kind, Listen, Preloaded};
use common::serve::*;
use common::thop::{Rx, SwitchThop};
use common::upstream::{
    read_request, respond, sha256_hex, Nginx, Sha256Sink, Upstream, SINK_LOCATION,
};
use handoff_proto::{CloseReason, NackReason};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::http::sample as metric;
use testkit::temp_dir::TempDir;

/// 10 MB of deterministic bytes.
const BIG: usize = 10_000_000;

/// One handoff of a curl GET to the IPv6 VIP; asserts the ACK and the body
/// (byte for byte and by SHA-256).
fn get6(
    bed: &Bed,
    l: &std::net::TcpListener,
    thop: &mut SwitchThop,
    id: u64,
    path: &str,
    want: &[u8],
) {
    let client = curl6(bed, path, &[]);
    let (rx, st, _) = handoff(bed, l, thop, id);
    assert!(
        matches!(rx, Rx::Ack { conn_id, flags: 0, .. } if conn_id == id),
        "{rx:?}"
    );
    assert_eq!(st.client().ip().to_string(), CLIENT_IP6);
    let got = finish(client);
    assert_eq!(got.len(), want.len(), "conn {id}: whole body");
    assert_eq!(sha256_hex(&got), sha256_hex(want), "conn {id}: SHA-256");
    assert!(got == want, "conn {id}: bytes identical");
}

/// A 3 MB POST to the IPv6 VIP, its head and the start of its body in the
/// CREATE, the rest after the handoff; nginx proxies it to the SHA-256 sink,
/// whose answer must be the body's own digest.
fn post6(bed: &Bed, l: &std::net::TcpListener, thop: &mut SwitchThop, id: u64, tmp: &TempDir) {
    let data = body(3_000_000);
    let file = tmp.write(&format!("post-{id}.bin"), &data);
    let at = format!("@{}", file.display());
    let client = curl6(bed, "/post", &["--data-binary", &at, "-H", "Expect:"]);
    let (rx, _, req) = handoff(bed, l, thop, id);
    assert!(
        matches!(rx, Rx::Ack { conn_id, .. } if conn_id == id),
        "{rx:?}"
    );
    assert!(req.starts_with(b"POST /post HTTP/1.1\r\n"));
    let answer = String::from_utf8(finish(client)).unwrap();
    assert_eq!(
        answer.trim(),
        format!("{} {}", sha256_hex(&data), data.len()),
        "the body reached the server intact"
    );
}

fn wait_metric(agent: &AgentProc, bed: &Bed, sample: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = agent.metrics(bed);
        if metric(&m, sample) == want || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Relay mode, THOP over IPv6, the upstream nginx on [::1]:8080: a 10 MB
/// download and a 3 MB POST intact, CLOSE for each, LOAD over IPv6.
#[test]
fn relay_to_nginx_over_ipv6_thop() {
    let bed = Bed::new();
    let big = body(BIG);
    let _sink = Sha256Sink::start(&bed);
    let nginx = Nginx::start_with(&bed, &[("big.bin", &big)], "[::1]:8080", SINK_LOCATION);
    let services =
        format!("  - vip: \"[{VIP6}]:80\"\n    mode: relay\n    upstream: \"[::1]:8080\"\n");
    let agent = AgentProc::start(&bed, &config_with(true, &services, ""));
    let mut thop = SwitchThop::new_v6(&bed);
    let l = switch_listener_on(&bed, VIP6, None);
    let tmp = TempDir::new("post6");

    get6(&bed, &l, &mut thop, 601, "/big.bin", &big);
    let close = thop.wait_close(601);
    assert!(
        matches!(
            close.reason,
            CloseReason::ClientFin | CloseReason::ServerClose
        ),
        "{close:?}"
    );
    assert!(close.bytes_to_client > BIG as u64, "{close:?}");

    post6(&bed, &l, &mut thop, 602, &tmp);
    let close = thop.wait_close(602);
    assert!(
        close.bytes_from_client > 0,
        "the body came after the CREATE: {close:?}"
    );

    let load = thop.wait_for("LOAD", Duration::from_secs(5), |r| matches!(r, Rx::Load(_)));
    let Rx::Load(load) = load else { unreachable!() };
    assert!(load.capacity_hint > 0);

    let m = wait_metric(&agent, &bed, "baton_agent_active_connections", 0.0);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"relay\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "baton_agent_active_connections"), 0.0, "{m}");
    // The relay's own connection to nginx is IPv6 too (its upstream).
    let log = nginx.access_log();
    assert!(
        log.lines().count() == 2 && log.lines().all(|l| l.starts_with("::1 ")),
        "{log}"
    );
}

/// An IPv6 CREATE (over IPv4 THOP) whose 4-tuple an older socket still
/// holds: that socket is retired with SOCK_DESTROY (an AF_INET6 request),
/// its connection reported closed, and the new one adopted and serving the
/// client. The old socket's sequence numbers are another connection's, as
/// a stale socket's are: its reset on retirement is out of the client's
/// window.
#[test]
fn a_stale_ipv6_socket_is_retired_and_the_create_adopted() {
    let bed = Bed::new();
    let up = Upstream::start(&bed);
    let services =
        format!("  - vip: \"[{VIP6}]:80\"\n    mode: relay\n    upstream: 127.0.0.1:8080\n");
    let agent = AgentProc::start(&bed, &config_with(false, &services, ""));
    let mut thop = SwitchThop::new(&bed);
    let l = switch_listener_on(&bed, VIP6, None);
    let client = curl6(&bed, "/stale", &[]);
    let (st, req) = accept_and_freeze(&bed, &l, 0);
    assert!(st.client().is_ipv6());
    let mut old = st;
    old.server_isn = st.server_isn.wrapping_add(1_000_000);
    old.server_next = st.server_next.wrapping_add(1_000_000);
    thop.create(21, &old, &req);
    let rx = thop.wait_ack(21);
    assert!(
        matches!(rx, Rx::Ack { flags: 0, .. }),
        "{rx:?}\n{}",
        agent.log()
    );
    let _first = up.accept();
    bed.forward_flow(st.client());
    // The switch's new connection on the same 4-tuple.
    thop.create(22, &st, &req);
    let rx = thop.wait_ack(22);
    assert!(
        matches!(rx, Rx::Ack { flags: 0, .. }),
        "{rx:?}\n{}",
        agent.log()
    );
    let mut second = up.accept();
    assert_eq!(
        read_request(&mut second),
        req,
        "the new connection's request"
    );
    // The retired socket's relay ended: CLOSE for connection 21.
    thop.wait_close(21);
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_stale_sockets_retired_total"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"relay\"}"),
        2.0,
        "{m}"
    );
    respond(&mut second, b"second");
    drop(second);
    assert_eq!(finish(client), b"second");
    thop.wait_close(22);
}

/// Listener mode: the `HandoffListener` yields the IPv6 connection as a
/// std stream (peer the client, local the VIP), THOP over IPv6.
#[test]
fn handoff_listener_yields_ipv6_streams() {
    let bed = Bed::new();
    let yaml = format!(
        "{}services:\n  - vip: \"[{VIP6}]:80\"\n    mode: listener\nload:\n  period_ms: 0\nmetrics:\n  listen: null\n",
        common::agent_proc::thop_yaml(true)
    );
    let cfg = Config::parse(&yaml).unwrap();
    let vip: std::net::SocketAddr = format!("[{VIP6}]:80").parse().unwrap();
    let (listener, handle, join) = bed.in_ns(&bed.backend, move || {
        let a = agent::Agent::new(cfg, Arc::new(Metrics::new())).unwrap();
        let l = a.listener(vip).unwrap();
        let h = a.handle();
        (l, h, a.spawn().unwrap())
    });
    let mut thop = SwitchThop::new_v6(&bed);
    let l = switch_listener_on(&bed, VIP6, None);
    let big = body(BIG);
    for id in [61, 62] {
        let client = curl6(&bed, "/via-listener", &[]);
        let (rx, _, req) = handoff(&bed, &l, &mut thop, id);
        assert!(
            matches!(rx, Rx::Ack { conn_id, .. } if conn_id == id),
            "{rx:?}"
        );
        let mut conn = listener
            .accept_timeout(Some(Duration::from_secs(5)))
            .unwrap()
            .expect("adopted connection");
        assert_eq!(conn.local, vip);
        assert_eq!(conn.peer.ip().to_string(), CLIENT_IP6);
        assert_eq!(conn.stream.peer_addr().unwrap(), conn.peer);
        let mut got = vec![0u8; req.len()];
        conn.stream.read_exact(&mut got).unwrap();
        assert_eq!(got, req, "the request is readable from the adopted stream");
        // Written from another thread: the client's output is read below.
        let body = big.clone();
        let writer = std::thread::spawn(move || {
            // The whole connection (its ticket too: dropping it sends CLOSE).
            let mut conn = conn;
            write!(
                conn.stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            conn.stream.write_all(&body).unwrap();
        });
        let out = finish(client);
        writer.join().unwrap();
        assert_eq!(sha256_hex(&out), sha256_hex(&big), "10 MB by SHA-256");
        let close = thop.wait_close(id);
        assert_eq!(close.reason, CloseReason::ServerClose);
    }
    handle.stop();
    join.join().unwrap().unwrap();
}

/// Handover to nginx listening on the IPv6 VIP itself (`listen
/// [2001:2::10]:80;`), THOP over IPv6: a 10 MB download, a POST, the
/// client's own IPv6 address in nginx's log, CLOSE from the kernel's
/// IPv6 socket-destroy notification.
#[test]
fn handover_to_nginx_on_the_ipv6_vip() {
    let bed = Bed::new();
    let dir = TempDir::new("ho6-sock");
    let sock = dir.0.join("handover.sock");
    let vip = format!("[{VIP6}]:80");
    let agent = AgentProc::start(
        &bed,
        &handover_config_with(true, &[&vip], &sock, &library(), ""),
    );
    let _sink = Sha256Sink::start(&bed);
    let big = body(BIG);
    let listen = Listen {
        lines: vec![vip.clone()],
        env: vip.clone(),
        server_extra: SINK_LOCATION.into(),
    };
    let nginx = Preloaded::start_with(
        &bed,
        Kind::Nginx(2),
        &sock,
        &[("big.bin", &big), ("index.html", b"hello over IPv6\n")],
        &listen,
    );
    let mut thop = SwitchThop::new_v6(&bed);
    let l = switch_listener_on(&bed, VIP6, None);
    let tmp = TempDir::new("post6");

    get6(&bed, &l, &mut thop, 701, "/big.bin", &big);
    let close = thop.wait_close(701);
    assert_eq!(close.reason, CloseReason::ServerClose, "{close:?}");
    post6(&bed, &l, &mut thop, 702, &tmp);
    thop.wait_close(702);
    let client = python_get_to(&bed, VIP6, "/index.html", None);
    let (rx, _, _) = handoff(&bed, &l, &mut thop, 703);
    assert!(matches!(rx, Rx::Ack { conn_id: 703, .. }), "{rx:?}");
    assert_eq!(finish(client), b"hello over IPv6\n");
    thop.wait_close(703);

    // nginx saw the IPv6 client itself ($remote_addr from accept/getpeername).
    let log = nginx.access_log();
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(
        log.lines()
            .all(|l| l.starts_with(&format!("{CLIENT_IP6} "))),
        "{log}"
    );
    let m = wait_metric(&agent, &bed, "baton_agent_active_connections", 0.0);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"handover\"}"),
        3.0,
        "{m}"
    );
    assert_eq!(metric(&m, "baton_agent_active_connections"), 0.0, "{m}");
    assert_eq!(metric(&m, "baton_agent_handover_listeners"), 1.0, "{m}");
}

/// nginx's usual pair, `listen 80;` and `listen [::]:80 ipv6only=on;`,
/// converted with `*:80`: each wildcard listener gets its family's VIP.
#[test]
fn handover_wildcard_listeners_serve_the_vip_of_their_family() {
    let bed = Bed::new();
    let dir = TempDir::new("ho6-sock");
    let sock = dir.0.join("handover.sock");
    let (vip4, vip6) = (format!("{VIP}:80"), format!("[{VIP6}]:80"));
    let agent = AgentProc::start(
        &bed,
        &handover_config_with(false, &[&vip4, &vip6], &sock, &library(), ""),
    );
    let listen = Listen {
        lines: vec!["80".into(), "[::]:80 ipv6only=on".into()],
        env: "*:80".into(),
        server_extra: String::new(),
    };
    let nginx = Preloaded::start_with(
        &bed,
        Kind::Nginx(1),
        &sock,
        &[("a.html", b"either\n")],
        &listen,
    );
    let m = wait_metric(&agent, &bed, "baton_agent_handover_listeners", 2.0);
    assert_eq!(metric(&m, "baton_agent_handover_listeners"), 2.0, "{m}");
    let mut thop = SwitchThop::new(&bed);
    let l6 = switch_listener_on(&bed, VIP6, None);
    let l4 = switch_listener(&bed, None);

    get6(&bed, &l6, &mut thop, 801, "/a.html", b"either\n");
    thop.wait_close(801);
    let client = curl(&bed, "/a.html", &[]);
    let (rx, _, _) = handoff(&bed, &l4, &mut thop, 802);
    assert!(matches!(rx, Rx::Ack { conn_id: 802, .. }), "{rx:?}");
    assert_eq!(finish(client), b"either\n");
    thop.wait_close(802);

    let log = nginx.access_log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with(&format!("{CLIENT_IP6} ")), "{log}");
    assert!(lines[1].starts_with(&format!("{CLIENT_IP} ")), "{log}");
}

/// A dual-stack `[::]:80` listener (`ipv6only=off`) gets the IPv6 VIP's
/// connections; an IPv4 VIP's are not handed to it (refused, `no_server`),
/// and the library says so when it converts the listener.
#[test]
fn handover_dual_stack_listener_gets_ipv6_connections_only() {
    let bed = Bed::new();
    let dir = TempDir::new("ho6-sock");
    let sock = dir.0.join("handover.sock");
    let (vip4, vip6) = (format!("{VIP}:80"), format!("[{VIP6}]:80"));
    let agent = AgentProc::start(
        &bed,
        &handover_config_with(true, &[&vip4, &vip6], &sock, &library(), ""),
    );
    let listen = Listen {
        lines: vec!["[::]:80 ipv6only=off".into()],
        env: "*:80".into(),
        server_extra: String::new(),
    };
    let nginx = Preloaded::start_with(&bed, Kind::Nginx(1), &sock, &[("a.html", b"v6\n")], &listen);
    // The library's warning reaches the log file when nginx's worker
    // converts the listener, which may be after start-up returns.
    let log = nginx.dir.0.join("stderr.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut stderr = String::new();
    while !stderr.contains("dual-stack") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        stderr = std::fs::read_to_string(&log).unwrap_or_default();
    }
    assert!(stderr.contains("dual-stack"), "{stderr}");
    let mut thop = SwitchThop::new_v6(&bed);
    let l6 = switch_listener_on(&bed, VIP6, None);
    let l4 = switch_listener(&bed, None);

    get6(&bed, &l6, &mut thop, 901, "/a.html", b"v6\n");
    thop.wait_close(901);
    let mut client = curl(&bed, "/a.html", &["--max-time", "3"]);
    let (rx, _, _) = handoff(&bed, &l4, &mut thop, 902);
    assert!(
        matches!(
            rx,
            Rx::Nack {
                conn_id: 902,
                reason: NackReason::BacklogFull,
                ..
            }
        ),
        "{rx:?}"
    );
    let _ = client.kill();
    let _ = client.wait();
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(
            &m,
            "baton_agent_handover_refused_total{reason=\"no_server\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        nginx.access_log().lines().count(),
        1,
        "{}",
        nginx.access_log()
    );
}

/// lighttpd bound to the IPv6 VIP takes the socket too.
#[test]
fn handover_to_lighttpd_on_the_ipv6_vip() {
    let bed = Bed::new();
    let dir = TempDir::new("ho6-sock");
    let sock = dir.0.join("handover.sock");
    let vip = format!("[{VIP6}]:80");
    let agent = AgentProc::start(
        &bed,
        &handover_config_with(true, &[&vip], &sock, &library(), ""),
    );
    let big = body(BIG);
    let listen = Listen {
        lines: vec![vip.clone()],
        env: vip.clone(),
        server_extra: String::new(),
    };
    let server = Preloaded::start_with(&bed, Kind::Lighttpd, &sock, &[("x.bin", &big)], &listen);
    let mut thop = SwitchThop::new_v6(&bed);
    let l = switch_listener_on(&bed, VIP6, None);
    for id in 1..=2 {
        get6(&bed, &l, &mut thop, id, "/x.bin", &big);
        assert_eq!(thop.wait_close(id).reason, CloseReason::ServerClose);
    }
    let log = server.access_log_lines(2);
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(
        log.lines()
            .all(|l| l.starts_with(&format!("{CLIENT_IP6} "))),
        "{log}"
    );
    let m = agent.metrics(&bed);
    assert_eq!(
        metric(&m, "baton_agent_adopted_total{mode=\"handover\"}"),
        2.0,
        "{m}"
    );
}

/// The neighbour state the client's kernel reaches for `ip` after a
/// datagram to it (a solicitation goes out first).
fn neighbour_state(bed: &Bed, ip: &str) -> String {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.sendto(b'x',('{ip}',9))\n"
    );
    bed.exec(&bed.client, &["python3", "-c", &script]);
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let out = bed.exec(
            &bed.client,
            &["ip", "-6", "neigh", "show", ip, "dev", "eth0"],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let settled = ["REACHABLE", "STALE", "DELAY", "FAILED"]
            .iter()
            .any(|s| text.contains(s));
        if settled || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Linux answers a neighbour solicitation only for an address of the
/// interface it arrived on: an address on the backend's `lo` (as the IPv6
/// VIP is) is not advertised on the segment, with no sysctl set. Its
/// address on eth0 is (the control).
#[test]
fn the_backend_does_not_answer_neighbour_solicitations_for_lo_addresses() {
    let bed = Bed::new();
    bed.exec(
        &bed.backend,
        &["ip", "-6", "addr", "add", "2001:2::77/128", "dev", "lo"],
    );
    let on_lo = neighbour_state(&bed, "2001:2::77");
    assert!(
        on_lo.contains("FAILED") || on_lo.contains("INCOMPLETE"),
        "{on_lo}"
    );
    assert!(!on_lo.contains("lladdr"), "{on_lo}");
    let on_eth0 = neighbour_state(&bed, common::bed::BACKEND_IP6);
    assert!(on_eth0.contains("lladdr"), "{on_eth0}");
}
