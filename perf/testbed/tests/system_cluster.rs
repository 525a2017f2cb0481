//! The routed cluster (docs/testbed.md): switches behind a router that
//! spreads the VIP's flows over them by ECMP, each announcing the VIP with
//! BGP from its own BIRD. What a site needs from it: new connections are
//! shared by every switch; a switch that dies, one that joins and a rolling
//! upgrade of all of them break no handed-off connection, because the
//! switches that get a flow they never saw recover it from the agents
//! (LOOKUP, `docs/thop.md` §9.4); new connections fail only until the
//! router withdraws a dead switch (BGP hold time, 3 s in the bed).
//!
//! Over AF_PACKET only: three switches, three agents and nginx share two
//! cores, and the other packet I/O backends are covered by the
//! single-switch tests. `BATON_CLUSTER_LONG=1` runs the long version of the
//! killed-switch test (60 s of load) and prints its figures.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testbed::baton::BatonIo;
use testbed::cluster::{Announce, Cluster, ClusterOptions};
use testbed::content::{self, OBJ_1K, OBJ_1M};
use testbed::{addr, client, netns};

const IO: BatonIo = BatonIo::AfPacket;
/// Slow downloads per client namespace (two namespaces).
const DOWNLOADS: usize = 10;
/// How long a new-connection GET may take before it counts as failed.
const NEW_CONN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often each client begins a new-connection GET.
const NEW_CONN_EVERY: Duration = Duration::from_millis(25);
/// Metrics of flows a switch learned from the agents.
const RECOVERED_LOOKUP: &str = "baton_worker_recovered_lookup_total";
const RECOVERED_RESYNC: &str = "baton_worker_recovered_resync_total";

/// One slow 1 MiB download: status and SHA-256, or the error; its length.
#[derive(Debug)]
struct Download {
    result: Result<(u16, String), String>,
    took: Duration,
}

/// 1 MiB read 8 KiB at a time every `pause` (128 reads): the connection
/// stays in FORWARDING for about 128 × `pause`.
fn download(pause: Duration) -> Download {
    let t0 = Instant::now();
    let r = client::slow_get(
        addr::vip_service(),
        OBJ_1M.path,
        16 * 1024,
        8 * 1024,
        pause,
        Duration::from_secs(30),
    );
    Download {
        result: r
            .map(|r| (r.status, content::sha256_hex(&r.body)))
            .map_err(|e| e.to_string()),
        took: t0.elapsed(),
    }
}

/// One new-connection GET of the loop: when it started (since the test's
/// start), how long it took, and its error if it failed.
#[derive(Debug, Clone)]
struct Attempt {
    at: Duration,
    took: Duration,
    error: Option<String>,
}

/// Short GETs on new connections until `stop`, one begun every
/// [`NEW_CONN_EVERY`] whatever the others do (so a connection stuck on a
/// dead switch delays none), each bounded by [`NEW_CONN_TIMEOUT`].
fn new_connections(t0: Instant, stop: Arc<AtomicBool>) -> Vec<Attempt> {
    let mut running = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        running.push(std::thread::spawn(move || {
            let at = t0.elapsed();
            let r = client::get(addr::vip_service(), OBJ_1K.path, &[], NEW_CONN_TIMEOUT);
            let error = match r {
                Ok(r) if r.status == 200 && r.body.len() == OBJ_1K.size => None,
                Ok(r) => Some(format!("status {}, {} bytes", r.status, r.body.len())),
                Err(e) => Some(e.to_string()),
            };
            Attempt {
                at,
                took: t0.elapsed() - at,
                error,
            }
        }));
        std::thread::sleep(NEW_CONN_EVERY);
    }
    running.into_iter().map(|t| t.join().unwrap()).collect()
}

/// What to run from each client.
#[derive(Debug, Clone, Copy)]
struct LoadSpec {
    /// Pause between the downloads' reads.
    pause: Duration,
    /// A loop of new connections.
    new_connections: bool,
    /// A keep-alive request loop.
    keep_alive: bool,
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientLoad {
    downloads: Vec<Download>,
    attempts: Vec<Attempt>,
    keep_alive_ok: usize,
    keep_alive_failed: Vec<String>,
}

/// The load running on the clients.
struct Load {
    clients: Vec<JoinHandle<ClientLoad>>,
    /// Downloads not yet ended.
    left: Arc<AtomicUsize>,
    /// Ends the loops.
    stop: Arc<AtomicBool>,
}

/// Starts the load on every client of `c`: [`DOWNLOADS`] slow downloads
/// and the loops of `spec`, which run until [`finish_load`].
fn start_load(c: &Cluster, spec: LoadSpec, t0: Instant) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let left = Arc::new(AtomicUsize::new(DOWNLOADS * c.bed.clients.len()));
    let clients = (0..c.bed.clients.len())
        .map(|k| {
            let ns = c.client(k).to_string();
            let stop = stop.clone();
            let left = left.clone();
            std::thread::spawn(move || {
                netns::in_ns(&ns, move || {
                    let nc = spec.new_connections.then(|| {
                        let stop = stop.clone();
                        std::thread::spawn(move || new_connections(t0, stop))
                    });
                    let ka = spec.keep_alive.then(|| {
                        let stop = stop.clone();
                        std::thread::spawn(move || {
                            client::keep_alive_until(
                                addr::vip_service(),
                                OBJ_1K.path,
                                &stop,
                                Duration::from_millis(50),
                            )
                        })
                    });
                    let dl: Vec<_> = (0..DOWNLOADS)
                        .map(|_| {
                            let left = left.clone();
                            std::thread::spawn(move || {
                                let d = download(spec.pause);
                                left.fetch_sub(1, Ordering::Relaxed);
                                d
                            })
                        })
                        .collect();
                    let mut out = ClientLoad {
                        downloads: dl.into_iter().map(|t| t.join().unwrap()).collect(),
                        ..ClientLoad::default()
                    };
                    // The loops run until the test says stop.
                    if let Some(t) = nc {
                        out.attempts = t.join().unwrap();
                    }
                    if let Some(t) = ka {
                        (out.keep_alive_ok, out.keep_alive_failed) = t.join().unwrap();
                    }
                    out
                })
                .expect("client namespace")
            })
        })
        .collect();
    Load {
        clients,
        left,
        stop,
    }
}

/// Waits until every download has ended and `not_before` has passed,
/// stops the loops and gathers what every client saw.
fn finish_load(load: Load, not_before: Instant) -> ClientLoad {
    // Each download is bounded by its reads' timeouts; this bounds the wait.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (load.left.load(Ordering::Relaxed) > 0 || Instant::now() < not_before)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    load.stop.store(true, Ordering::Relaxed);
    let mut all = ClientLoad::default();
    for h in load.clients {
        let l = h.join().expect("client thread");
        all.downloads.extend(l.downloads);
        all.attempts.extend(l.attempts);
        all.keep_alive_ok += l.keep_alive_ok;
        all.keep_alive_failed.extend(l.keep_alive_failed);
    }
    all
}

/// Downloads that did not bring back the whole object.
fn broken_downloads(l: &ClientLoad) -> Vec<String> {
    let want = content::expected_sha256(OBJ_1M);
    l.downloads
        .iter()
        .filter_map(|d| match &d.result {
            Ok((200, sum)) if *sum == want => None,
            other => Some(format!("{other:?} after {:?}", d.took)),
        })
        .collect()
}

/// A metric summed over switches `which`.
fn metric_over(c: &Cluster, which: &[usize], name: &str) -> f64 {
    which
        .iter()
        .map(|&i| {
            c.metric(i, name, &[])
                .unwrap_or_else(|e| panic!("switch {}: {e}", i + 1))
        })
        .sum()
}

/// The switches' logs, for failure messages.
fn logs(c: &Cluster) -> String {
    (0..c.switches.len())
        .map(|i| {
            format!(
                "--- switch {} ---\n{}",
                i + 1,
                testbed::scenario::tail(&c.switch_log(i), 2500)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn three_switches_behind_ecmp_share_new_connections() {
    let c = Cluster::up(&ClusterOptions::new(IO, 3)).expect("cluster up");
    let hops = c.ecmp_nexthops().unwrap();
    let want: Vec<_> = (0..3).map(addr::switch_data).collect();
    assert_eq!(hops, want, "one next hop per switch");
    if c.announce() == Announce::Switch {
        for i in 0..3 {
            let v = c
                .metric(i, "baton_vip_announced", &[("protocol", "vip")])
                .unwrap();
            assert_eq!(v, 1.0, "switch {} reports the VIP announced", i + 1);
        }
    }
    let counters = |c: &Cluster| -> Vec<f64> {
        (0..3)
            .map(|i| {
                c.metric(i, "baton_worker_new_connections_total", &[])
                    .unwrap()
            })
            .collect()
    };
    let before = counters(&c);
    const PER_CLIENT: usize = 60;
    let clients: Vec<_> = (0..2)
        .map(|k| {
            let ns = c.client(k).to_string();
            std::thread::spawn(move || {
                netns::in_ns(&ns, || {
                    (0..PER_CLIENT)
                        .filter_map(|_| {
                            match client::get(
                                addr::vip_service(),
                                OBJ_1K.path,
                                &[],
                                Duration::from_secs(5),
                            ) {
                                Ok(r) if r.status == 200 => None,
                                Ok(r) => Some(format!("status {}", r.status)),
                                Err(e) => Some(e.to_string()),
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .expect("client namespace")
            })
        })
        .collect();
    let failed: Vec<String> = clients
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let after = counters(&c);
    let shares: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!(
        "{} new connections from 2 clients over 3 switches: {shares:?} each, {} failed",
        2 * PER_CLIENT,
        failed.len()
    );
    assert!(failed.is_empty(), "failed GETs: {failed:#?}\n{}", logs(&c));
    for (i, n) in shares.iter().enumerate() {
        assert!(
            *n > 0.0,
            "switch {} completed no handshake: {shares:?}",
            i + 1
        );
    }
}

#[test]
fn a_switch_killed_under_load_breaks_no_forwarding_connection() {
    let long = std::env::var("BATON_CLUSTER_LONG").is_ok_and(|v| v == "1");
    // Load for `load`; the switch dies at `kill_at`.
    let (load, kill_at) = if long {
        (Duration::from_secs(60), Duration::from_secs(20))
    } else {
        (Duration::from_secs(15), Duration::from_secs(3))
    };
    let mut c = Cluster::up(&ClusterOptions::new(IO, 3)).expect("cluster up");
    let t0 = Instant::now();
    let spec = LoadSpec {
        // 128 reads spread over the load.
        pause: load / 128,
        new_connections: true,
        keep_alive: false,
    };
    let load_run = start_load(&c, spec, t0);
    std::thread::sleep(kill_at);
    let killed_at = t0.elapsed();
    const VICTIM: usize = 1;
    c.kill_switch(VICTIM).expect("kill switch 2");
    let withdrawn = c.wait_nexthops(2, Duration::from_secs(15));
    let load_out = finish_load(load_run, t0 + load);
    let withdrawn = withdrawn.expect("the router withdraws the dead switch");
    let survivors = c.running();
    assert_eq!(survivors, vec![0, 2], "switches 1 and 3 run on");
    let lookups = metric_over(&c, &survivors, RECOVERED_LOOKUP);
    let resyncs = metric_over(&c, &survivors, RECOVERED_RESYNC);

    let attempts = &load_out.attempts;
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.error.is_some()).collect();
    // New connections fail when begun up to this long after the kill.
    let last_failed = failed.iter().map(|a| a.at.saturating_sub(killed_at)).max();
    let retried = attempts
        .iter()
        .filter(|a| a.error.is_none() && a.took > Duration::from_millis(500))
        .count();
    let broken = broken_downloads(&load_out);
    if std::env::var_os("BATON_CLUSTER_TRACE").is_some() {
        for a in attempts {
            eprintln!("  {:.3?} {:.3?} {:?}", a.at, a.took, a.error);
        }
    }
    eprintln!(
        "{} version: switch 2 of 3 killed at {killed_at:.1?} of {load:?} of load; the router \
         had 2 next hops {withdrawn:.2?} after the kill; {} of {} new connections failed \
         (timeout {NEW_CONN_TIMEOUT:?}, one begun every {NEW_CONN_EVERY:?} per client), the last \
         failed one begun {} after the kill; {retried} more succeeded only with a SYN \
         retransmission; {} downloads, {} broken; flows recovered by the survivors: {lookups} by \
         LOOKUP, {resyncs} by resync",
        if long { "long" } else { "short" },
        failed.len(),
        attempts.len(),
        last_failed.map_or("none".into(), |s| format!("{s:.2?}")),
        load_out.downloads.len(),
        broken.len(),
    );
    for a in failed.iter().filter(|a| a.at < killed_at) {
        eprintln!(
            "  failed, begun before the kill: at {:.2?} ({:.2?}): {}",
            a.at,
            a.took,
            a.error.as_deref().unwrap_or("")
        );
    }
    assert_eq!(load_out.downloads.len(), 2 * DOWNLOADS);
    assert!(
        broken.is_empty(),
        "downloads broken by the dead switch: {broken:#?}\n{}",
        logs(&c)
    );
    assert!(
        lookups > 0.0,
        "the surviving switches recovered the dead switch's flows by LOOKUP\n{}",
        logs(&c)
    );
    // Only connections under way while the router still sent some to the
    // dead switch (begun before it was withdrawn, or a moment after, for
    // the route change to take; ended after the kill) may fail.
    let cutoff = killed_at + withdrawn + Duration::from_secs(1);
    let stray: Vec<&&Attempt> = failed
        .iter()
        .filter(|a| a.at + a.took < killed_at || a.at > cutoff)
        .collect();
    assert!(
        stray.is_empty(),
        "new connections failed outside the outage {killed_at:.2?}..{cutoff:.2?}: {stray:#?}"
    );
    let after_ok = attempts
        .iter()
        .filter(|a| a.at > cutoff && a.error.is_none())
        .count();
    assert!(
        after_ok > 0,
        "new connections succeeded after the withdrawal"
    );
}

#[test]
fn adding_a_switch_under_load_breaks_nothing() {
    let mut opts = ClusterOptions::new(IO, 3);
    opts.running = 2;
    let mut c = Cluster::up(&opts).expect("cluster up");
    assert_eq!(c.ecmp_nexthops().unwrap().len(), 2);
    let t0 = Instant::now();
    let spec = LoadSpec {
        // About 15 s.
        pause: Duration::from_millis(120),
        new_connections: false,
        keep_alive: true,
    };
    let load_run = start_load(&c, spec, t0);
    std::thread::sleep(Duration::from_secs(3));
    let t_start = Instant::now();
    c.start_switch(2).expect("start switch 3");
    let started = t_start.elapsed();
    let joined = c.wait_nexthops(3, Duration::from_secs(15));
    let load_out = finish_load(load_run, t0);
    let joined = joined.expect("the router adds the new switch");
    let lookups_new = c.metric(2, RECOVERED_LOOKUP, &[]).unwrap();
    let lookups_all = metric_over(&c, &[0, 1, 2], RECOVERED_LOOKUP);
    let broken = broken_downloads(&load_out);
    eprintln!(
        "switch 3 joined under load: started in {started:.2?}, a next hop after {joined:.2?} more; \
         {} downloads, {} broken; {} keep-alive requests, {} failed; flows recovered by LOOKUP: \
         {lookups_new} by the new switch, {lookups_all} by all",
        load_out.downloads.len(),
        broken.len(),
        load_out.keep_alive_ok,
        load_out.keep_alive_failed.len(),
    );
    assert_eq!(load_out.downloads.len(), 2 * DOWNLOADS);
    assert!(broken.is_empty(), "broken: {broken:#?}\n{}", logs(&c));
    assert!(
        load_out.keep_alive_failed.is_empty(),
        "keep-alive failures: {:#?}\n{}",
        load_out.keep_alive_failed,
        logs(&c)
    );
    assert!(load_out.keep_alive_ok > 0, "the keep-alive loops ran");
    assert!(
        lookups_new > 0.0,
        "flows that moved to the new switch were learned by LOOKUP\n{}",
        logs(&c)
    );
}

#[test]
fn a_rolling_upgrade_of_the_cluster_breaks_nothing() {
    let mut c = Cluster::up(&ClusterOptions::new(IO, 3)).expect("cluster up");
    let t0 = Instant::now();
    let spec = LoadSpec {
        // About 20 s: three restarts (a few seconds each) long.
        pause: Duration::from_millis(160),
        new_connections: false,
        keep_alive: true,
    };
    let load_run = start_load(&c, spec, t0);
    std::thread::sleep(Duration::from_secs(2));
    let mut steps = Vec::new();
    for i in 0..3 {
        let (stopped, gone) = c
            .restart_switch(i)
            .unwrap_or_else(|e| panic!("restart switch {}: {e}", i + 1));
        let back = c
            .wait_nexthops(3, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("switch {} announced again: {e}", i + 1));
        // The switch withdrew the VIP before it stopped forwarding.
        let withdrawn = stopped.withdrawn.unwrap_or_else(|| {
            panic!(
                "switch {} exited after {:.2?} still routed to\n{}",
                i + 1,
                stopped.exited,
                logs(&c)
            )
        });
        steps.push(format!(
            "sw{}: withdrawn {withdrawn:.2?}, exited {:.2?}, serving again {gone:.2?}, \
             announced again {back:.2?} later",
            i + 1,
            stopped.exited
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
    let upgraded = t0.elapsed();
    let load_out = finish_load(load_run, t0);
    let lookups: Vec<f64> = (0..3)
        .map(|i| c.metric(i, RECOVERED_LOOKUP, &[]).unwrap())
        .collect();
    let resyncs: Vec<f64> = (0..3)
        .map(|i| c.metric(i, RECOVERED_RESYNC, &[]).unwrap())
        .collect();
    let broken = broken_downloads(&load_out);
    eprintln!(
        "rolling upgrade of 3 switches ({:?} announces) done at {upgraded:.1?}, from SIGTERM: \
         {}; {} downloads, {} broken; {} keep-alive requests, {} failed; flows recovered per \
         switch: {lookups:?} by LOOKUP, {resyncs:?} by resync",
        c.announce(),
        steps.join("; "),
        load_out.downloads.len(),
        broken.len(),
        load_out.keep_alive_ok,
        load_out.keep_alive_failed.len(),
    );
    assert_eq!(load_out.downloads.len(), 2 * DOWNLOADS);
    assert!(
        load_out
            .downloads
            .iter()
            .all(|d| d.took > upgraded.saturating_sub(Duration::from_secs(3))),
        "the downloads lasted through the upgrade"
    );
    assert!(broken.is_empty(), "broken: {broken:#?}\n{}", logs(&c));
    assert!(
        load_out.keep_alive_failed.is_empty(),
        "keep-alive failures: {:#?}\n{}",
        load_out.keep_alive_failed,
        logs(&c)
    );
    assert!(load_out.keep_alive_ok > 0, "the keep-alive loops ran");
}
