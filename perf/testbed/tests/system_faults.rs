//! Faults: a lossy client link, reordered and duplicated client packets, and
//! agents that die before and after a handoff.

use std::io::Write;
use std::time::Duration;
use testbed::baton::BatonIo;
use testbed::client;
use testbed::content::{self, OBJ_100K, OBJ_1K, OBJ_1M};
use testbed::scenario::Running;
use testbed::{addr, netns};

testbed::both_backends!(
    five_percent_loss_both_ways_bodies_intact,
    reordered_and_duplicated_client_packets_bodies_intact,
    agent_killed_before_handoff_requests_are_redispatched,
    agent_killed_after_handoff_only_its_connections_fail,
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

/// The test-only fault injector around the switch's packet I/O: seeded
/// reordering and duplication of what the switch receives.
const FAULTS_YAML: &str =
    "testing:\n  faults:\n    seed: 7\n    reorder: 0.05\n    duplicate: 0.05\n    drop: 0.0\n";

fn reordered_and_duplicated_client_packets_bodies_intact(io: BatonIo) {
    let sys = Running::up_with(io, |o| o.extra_yaml.push_str(FAULTS_YAML))
        .expect("system up with faults");
    fetch_and_verify(&sys, 6);
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

fn agent_killed_after_handoff_only_its_connections_fail(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
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
            ("b1", Ok(r)) => panic!("b1's connection survived its agent: {}", r.status),
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
