//! Restarting the switch while clients download: every handed-off
//! connection continues, because the new process recovers its flows from
//! the agents (`docs/thop.md` §9.4). Five restarts — crashes (`SIGKILL`) and
//! graceful stops (`SIGTERM`) in turn — during 20 rate-limited 1 MiB
//! downloads and two keep-alive request loops: every body arrives whole
//! (SHA-256) and no keep-alive request fails. An agent that restarts is
//! noticed by its new THOP boot; the connections it had handed over to
//! nginx do not depend on it and carry on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed::baton::{AgentRole, BatonIo};
use testbed::content::{self, OBJ_1K, OBJ_1M};
use testbed::scenario::Running;
use testbed::{addr, client, netns};

testbed::both_backends!(
    a_restarted_switch_keeps_every_handed_off_connection,
    an_agent_restart_is_noticed_and_handed_over_connections_live_on,
);

/// Downloads per client namespace (two namespaces).
const DOWNLOADS: usize = 10;
const RESTARTS: usize = 5;

/// One slow download: what came back and the longest wait for a read.
#[derive(Debug)]
struct Download {
    result: Result<(u16, String), String>,
    took: Duration,
    /// Times the transfer stood still (each restart makes one).
    stalls: Vec<Duration>,
}

fn download() -> Download {
    let t0 = Instant::now();
    // 1 MiB at 8 KiB every 150 ms: about 20 s, several restarts long.
    let r = client::slow_get_stalls(
        addr::vip_service(),
        OBJ_1M.path,
        16 * 1024,
        8 * 1024,
        Duration::from_millis(150),
        Duration::from_secs(30),
    );
    let (result, stalls) = match r {
        Ok((r, stalls)) => (Ok((r.status, content::sha256_hex(&r.body))), stalls),
        Err(e) => (Err(e.to_string()), Vec::new()),
    };
    Download {
        result,
        took: t0.elapsed(),
        stalls,
    }
}

fn a_restarted_switch_keeps_every_handed_off_connection(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
    let want = content::expected_sha256(OBJ_1M);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..2 {
        let ns = sys.client(c).to_string();
        let stop = stop.clone();
        clients.push(std::thread::spawn(move || {
            netns::in_ns(&ns, move || {
                let ka = std::thread::spawn(move || {
                    client::keep_alive_until(
                        addr::vip_service(),
                        OBJ_1K.path,
                        &stop,
                        Duration::from_millis(50),
                    )
                });
                let dl: Vec<_> = (0..DOWNLOADS)
                    .map(|_| std::thread::spawn(download))
                    .collect();
                let dl: Vec<Download> = dl.into_iter().map(|t| t.join().unwrap()).collect();
                (dl, ka)
            })
            .expect("client namespace")
        }));
    }
    // Let every download be handed off, then restart again and again.
    std::thread::sleep(Duration::from_secs(2));
    let mut gone = Vec::new();
    for k in 0..RESTARTS {
        let crash = k % 2 == 0;
        let t = sys
            .stack
            .restart_switch(&sys.bed, crash, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("restart {k}: {e}"));
        gone.push(t);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let recovered = sys
        .stack
        .metric("baton_worker_recovered_resync_total", &[])
        .unwrap()
        + sys
            .stack
            .metric("baton_worker_recovered_lookup_total", &[])
            .unwrap();
    let mut broken = Vec::new();
    let mut keep_alive_ok = 0;
    let mut slowest = Duration::ZERO;
    let mut stalls = Vec::new();
    for c in clients {
        let (dl, ka) = c.join().expect("client thread");
        for d in dl {
            slowest = slowest.max(d.took);
            stalls.extend(d.stalls);
            match d.result {
                Ok((200, sum)) if sum == want => {}
                other => broken.push(format!("{other:?} after {:?}", d.took)),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let (ok, failed) = ka.join().expect("keep-alive thread");
        keep_alive_ok += ok;
        broken.extend(failed.into_iter().map(|f| format!("keep-alive: {f}")));
    }
    stalls.sort();
    let pct = |p: usize| stalls.get((stalls.len() * p / 100).min(stalls.len().saturating_sub(1)));
    eprintln!(
        "{}: {RESTARTS} restarts, switch gone {gone:?}; downloads stood still {} times, \
         resumed after p50 {:?} p99 {:?} max {:?}; slowest download {slowest:?}; \
         {keep_alive_ok} keep-alive requests; {recovered} flows recovered by the last process",
        io.as_str(),
        stalls.len(),
        pct(50),
        pct(99),
        stalls.last(),
    );
    assert!(
        broken.is_empty(),
        "broken across restarts: {broken:#?}\n{}",
        sys.stack.switch_log()
    );
    assert!(keep_alive_ok > 0, "the keep-alive loops ran");
    assert!(
        recovered > 0.0,
        "the last process recovered the downloads' flows"
    );
}

fn an_agent_restart_is_noticed_and_handed_over_connections_live_on(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
    // A keep-alive connection served by b1 (handover: nginx holds it).
    let conn = sys
        .in_client(0, || {
            for _ in 0..20 {
                let mut s = client::connect(addr::vip_service(), Duration::from_secs(5)).ok()?;
                s.write_all(&client::get_request("198.18.0.10", OBJ_1K.path, true, &[]))
                    .ok()?;
                let r = client::read_response(&mut s, &mut Vec::new()).ok()?;
                if r.backend() == Some("b1") {
                    return Some(s);
                }
            }
            None
        })
        .unwrap()
        .expect("a keep-alive connection on b1");
    sys.stack
        .restart_agent(&sys.bed, 0, AgentRole::Handover)
        .expect("agent restarted");
    sys.wait_until(
        "the switch noticed the restart",
        Duration::from_secs(10),
        || {
            Ok(sys.stack.metric(
                "baton_backend_agent_restarts_total",
                &[("backend", "static-1")],
            )? == 1.0)
        },
    )
    .expect("restart noticed");
    let mut s = conn;
    for i in 0..3 {
        let r = s
            .write_all(&client::get_request("198.18.0.10", OBJ_1K.path, true, &[]))
            .and_then(|_| client::read_response(&mut s, &mut Vec::new()))
            .unwrap_or_else(|e| panic!("request {i} after the agent's restart: {e}"));
        assert_eq!((r.status, r.backend()), (200, Some("b1")));
    }
    // And new connections reach the new agent.
    sys.wait_backends(OBJ_1K.path, &["b1", "b2"], Duration::from_secs(20))
        .expect("both backends serve");
}
