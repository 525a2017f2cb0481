//! Faults: a lossy client link, reordered and duplicated client packets, and
//! agents that die before and after a handoff.

use std::io::Write;
use std::time::Duration;
use testbed::baton::{AgentRole, BatonIo, FAULTS_ENV};
use testbed::client;
use testbed::content::{self, OBJ_100K, OBJ_1K, OBJ_1M};
use testbed::scenario::Running;
use testbed::tls::{self, HelloCut};
use testbed::{addr, netns};

testbed::both_backends!(
    five_percent_loss_both_ways_bodies_intact,
    reordered_and_duplicated_client_packets_bodies_intact,
    agent_killed_before_handoff_requests_are_redispatched,
    agent_killed_after_handoff_handed_over_connections_live_on,
    relay_agent_killed_after_handoff_only_its_connections_fail,
);

/// Fetches objects through the VIP from client 0 and checks every SHA-256.
fn fetch_and_verify(sys: &Running, rounds: usize) {
    let objs = [OBJ_1K, OBJ_100K, OBJ_1M];
    let want: Vec<String> = objs.iter().map(|o| content::expected_sha256(*o)).collect();
    let failures = sys
        .in_client(0, move || {
            let mut failures = Vec::new();
            for round in 0..rounds {
                for (o, sum) in objs.iter().zip(&want) {
                    match client::get(addr::vip_service(), o.path, &[], Duration::from_secs(30)) {
                        Ok(r) if r.status == 200 && content::sha256_hex(&r.body) == *sum => {}
                        Ok(r) => failures.push(format!(
                            "round {round} {}: status {} len {}",
                            o.path,
                            r.status,
                            r.body.len()
                        )),
                        Err(e) => failures.push(format!("round {round} {}: {e}", o.path)),
                    }
                }
            }
            failures
        })
        .unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}

fn five_percent_loss_both_ways_bodies_intact(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let ns = sys.client(0).to_string();
    // This kernel has no netem: drop 5% of the client's packets each way.
    for chain in ["INPUT", "OUTPUT"] {
        netns::run(
            Some(&ns),
            "iptables",
            &[
                "-A",
                chain,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.05",
                "-j",
                "DROP",
            ],
        )
        .expect("iptables");
    }
    fetch_and_verify(&sys, 6);
    let rules = netns::run_stdout(Some(&ns), "iptables", &["-L", "-v", "-n"]).unwrap();
    assert!(rules.contains("statistic mode random"), "{rules}");
}

/// Out-of-order and duplicate segments the backends' kernels saw
/// (`TcpExtTCPOFOQueue` + `TcpExtTCPDSACKOldSent`, /proc/net/netstat).
fn backend_reorder_evidence(sys: &Running) -> u64 {
    sys.bed
        .backends
        .iter()
        .map(|b| {
            let t = b.run("cat", &["/proc/net/netstat"]).unwrap_or_default();
            let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("TcpExt:")).collect();
            let (Some(names), Some(vals)) = (lines.first(), lines.get(1)) else {
                return 0;
            };
            names
                .split_whitespace()
                .zip(vals.split_whitespace())
                .filter(|(n, _)| {
                    matches!(*n, "TCPOFOQueue" | "TCPDSACKOldSent" | "TCPDSACKOfoSent")
                })
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Fails (never passes vacuously) when `baton` ignored [`FAULTS_ENV`]: the
/// injector exists only in builds with the controlplane `testing` feature.
fn assert_fault_injection_on(sys: &Running) {
    let log = || {
        sys.stack
            .switch
            .as_ref()
            .map(|s| s.log())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !log().contains("TEST-ONLY fault injection") {
        assert!(
            std::time::Instant::now() < deadline,
            "`baton` did not turn on fault injection for {FAULTS_ENV}: it was built without \
             the controlplane `testing` feature. Build it as `make test` does \
             (`cargo build --workspace --release --bins --examples`, or \
             `cargo build --release -p controlplane --features testing`). Switch log:\n{}",
            testbed::scenario::tail(&log(), 2000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reordered_and_duplicated_client_packets_bodies_intact(io: BatonIo) {
    // The switch's test-only fault injector: seeded reordering and
    // duplication of every frame the switch receives, so the backends get
    // client segments out of order and twice.
    let sys = Running::up_with(io, |o| {
        o.env.push((
            FAULTS_ENV.into(),
            "seed=7,reorder=0.05,duplicate=0.05,drop=0".into(),
        ));
    })
    .expect("system up with faults");
    assert_fault_injection_on(&sys);
    let before = backend_reorder_evidence(&sys);
    fetch_and_verify(&sys, 6);
    // Larger requests give the injector client data segments to reorder.
    let big = sys
        .in_client(1, || {
            let mut errs = Vec::new();
            for i in 0..20 {
                let pad = "x".repeat(6000);
                let req =
                    client::get_request("198.18.0.10", OBJ_1K.path, false, &[("X-Pad", &pad)]);
                match client::dribble(
                    addr::vip_service(),
                    &req,
                    1400,
                    Duration::from_millis(0),
                    Duration::from_secs(20),
                ) {
                    Ok(r) if r.status == 200 && r.body.len() == OBJ_1K.size => {}
                    Ok(r) => errs.push(format!("{i}: status {}", r.status)),
                    Err(e) => errs.push(format!("{i}: {e}")),
                }
            }
            errs
        })
        .unwrap();
    assert!(big.is_empty(), "{big:#?}");
    // Requests after the first on a keep-alive connection are client data in
    // FORWARDING: their duplicates and reorderings reach the backend.
    let ka = sys
        .in_client(0, || {
            (0..10)
                .map(|_| {
                    client::keep_alive(
                        addr::vip_service(),
                        OBJ_1K.path,
                        30,
                        Duration::from_secs(20),
                    )
                })
                .map(|r| {
                    r.map(|v| {
                        v.iter()
                            .filter(|x| x.status == 200 && x.body.len() == OBJ_1K.size)
                            .count()
                    })
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    for r in &ka {
        assert!(matches!(r, Ok(30)), "keep-alive under faults: {ka:?}");
    }
    // HTTPS: ClientHellos one byte per segment, reordered and duplicated
    // by the injector before WAITHEADER reassembles them.
    for i in 0..5 {
        let r = tls::cut_hello_get(
            &sys.bed,
            sys.client(0),
            tls::WWW,
            HelloCut::OneByteSegments,
            OBJ_1K.path,
        )
        .unwrap_or_else(|e| panic!("hello {i}: {e}"));
        assert_eq!(r.status, 200, "hello {i}: {r:?}");
    }
    let seen = backend_reorder_evidence(&sys) - before;
    assert!(
        seen > 0,
        "no out-of-order or duplicate segment reached a backend: is {FAULTS_ENV} honoured by `baton run`?\n{}",
        testbed::scenario::tail(&sys.stack.switch_log(), 2000)
    );
}

fn agent_killed_before_handoff_requests_are_redispatched(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
    sys.stack.kill_agent(0);
    // Until health checks mark b1 down, the switch still picks it; its
    // CREATE goes unanswered and the request must move to b2, not be lost.
    let mut served = Vec::new();
    for i in 0..20 {
        let r = sys
            .get(OBJ_1K.path)
            .unwrap_or_else(|e| panic!("request {i} lost: {e}"));
        assert_eq!(r.status, 200, "request {i}");
        served.push(r.backend().unwrap_or("?").to_string());
    }
    assert!(served.iter().all(|b| b == "b2"), "served by {served:?}");
    let redispatched = sys
        .stack
        .metric("baton_worker_handoffs_total", &[("outcome", "timed_out")])
        .unwrap()
        + sys
            .stack
            .metric("baton_worker_handoffs_total", &[("outcome", "nacked")])
            .unwrap();
    assert!(
        redispatched >= 1.0,
        "no handoff to the dead agent was retried elsewhere"
    );
}

/// Handover: the agent is off the data path once nginx holds the socket, so
/// killing it breaks no established connection.
fn agent_killed_after_handoff_handed_over_connections_live_on(io: BatonIo) {
    agent_killed_after_handoff(io, AgentRole::Handover);
}

/// Relay: the agent carries the bytes, so its connections die with it and
/// only its.
fn relay_agent_killed_after_handoff_only_its_connections_fail(io: BatonIo) {
    agent_killed_after_handoff(io, AgentRole::Relay);
}

fn agent_killed_after_handoff(io: BatonIo, role: AgentRole) {
    let mut sys = Running::up_with(io, |o| {
        o.agents = vec![role, role, AgentRole::Listener];
    })
    .expect("system up");
    // Hold keep-alive connections until we have one on each static backend.
    let conns = sys
        .in_client(0, || {
            let mut by_backend: Vec<(String, std::net::TcpStream)> = Vec::new();
            for _ in 0..20 {
                let mut s = client::connect(addr::vip_service(), Duration::from_secs(5)).ok()?;
                s.write_all(&client::get_request("198.18.0.10", OBJ_1K.path, true, &[]))
                    .ok()?;
                let r = client::read_response(&mut s, &mut Vec::new()).ok()?;
                let b = r.backend()?.to_string();
                if !by_backend.iter().any(|(x, _)| *x == b) {
                    by_backend.push((b, s));
                }
                if by_backend.len() == 2 {
                    break;
                }
            }
            Some(by_backend)
        })
        .unwrap()
        .expect("keep-alive connections");
    assert_eq!(conns.len(), 2, "need a connection on b1 and one on b2");
    sys.stack.kill_agent(0);
    std::thread::sleep(Duration::from_millis(300));
    for (b, mut s) in conns {
        let again = s
            .write_all(&client::get_request("198.18.0.10", OBJ_1K.path, true, &[]))
            .and_then(|_| client::read_response(&mut s, &mut Vec::new()));
        match (b.as_str(), again) {
            ("b1", Ok(r)) if role == AgentRole::Handover => assert_eq!(r.status, 200),
            ("b1", Err(e)) if role == AgentRole::Handover => {
                panic!("b1's connection (held by nginx) failed with its agent: {e}")
            }
            ("b1", Ok(r)) => panic!("b1's relayed connection survived its agent: {}", r.status),
            ("b2", Err(e)) => panic!("b2's connection failed with b1's agent: {e}"),
            ("b2", Ok(r)) => assert_eq!(r.status, 200),
            _ => {}
        }
    }
    // Health marks static-1 down, and new traffic moves to b2.
    sys.wait_until("static-1 marked down", Duration::from_secs(20), || {
        Ok(sys
            .stack
            .metric("baton_backend_up", &[("backend", "static-1")])?
            == 0.0)
    })
    .expect("health");
    for i in 0..10 {
        let r = sys
            .get(OBJ_1K.path)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!((r.status, r.backend()), (200, Some("b2")), "request {i}");
    }
}
