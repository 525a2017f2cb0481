//! The handover path end to end, through the real switch: the backends'
//! stock nginx (started with the agent's preload library) accepts the
//! client's own socket. It sees the client's address, receives a 1 MB POST
//! body intact, keeps serving through `nginx -s reload` under load, and a
//! stopped nginx costs no request (its agent refuses, the switch
//! re-dispatches).

use sha2::{Digest, Sha256};
use std::io::Write;
use std::time::Duration;
use testbed::addr;
use testbed::baton::BatonIo;
use testbed::client;
use testbed::content::{self, OBJ_100K, OBJ_1K};
use testbed::scenario::{Running, STATIC_POOL};
use testbed::wrk::WrkRun;

testbed::both_backends!(
    nginx_sees_the_client_and_receives_a_megabyte_intact,
    nginx_reload_under_load_fails_nothing,
    stopped_nginx_requests_are_redispatched,
    four_worker_nginx_and_lighttpd_take_the_socket
);

fn nginx_sees_the_client_and_receives_a_megabyte_intact(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    for _ in 0..4 {
        let r = sys.get("/whoami").expect("whoami");
        assert_eq!(r.status, 200);
        assert_eq!(r.text().trim(), addr::client_data(0).to_string(), "{r:?}");
    }
    let body: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let want = Sha256::digest(&body);
    let b = body.clone();
    let r = sys
        .in_client(0, move || -> std::io::Result<client::Response> {
            let mut s = client::connect(addr::vip_service(), Duration::from_secs(10))?;
            write!(
                s,
                "POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                addr::VIP,
                b.len()
            )?;
            s.write_all(&b)?;
            client::read_response(&mut s, &mut Vec::new())
        })
        .unwrap()
        .expect("POST through the VIP");
    assert_eq!(r.status, 200, "{r:?}");
    let file = r
        .header("X-Body-File")
        .expect("nginx names the stored body")
        .to_string();
    let stored = std::fs::read(&file).expect("stored body file");
    assert_eq!(stored.len(), body.len());
    assert_eq!(Sha256::digest(&stored), want, "body bytes differ");
    let handed = sys
        .stack
        .metric("baton_handoffs_total", &[("outcome", "acked")])
        .unwrap();
    assert!(handed >= 5.0, "handoffs acked: {handed}");
}

fn nginx_reload_under_load_fails_nothing(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let url = format!("http://{}{}", addr::vip_service(), OBJ_1K.path);
    let mut w = WrkRun::new(&url, 8, Duration::from_secs(5));
    w.close = true;
    let ns = sys.client(0).to_string();
    let load = std::thread::spawn(move || w.run_in(&ns));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        for n in &sys.nginx[..2] {
            n.signal(libc::SIGHUP);
        }
    }
    let r = load.join().unwrap().expect("wrk");
    assert!(r.requests > 0);
    assert_eq!(
        r.failures(),
        0,
        "failed requests during nginx reloads: {r:?}"
    );
}

fn stopped_nginx_requests_are_redispatched(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
    kill_nginx(&mut sys, 0);
    let mut served_by = std::collections::BTreeSet::new();
    for i in 0..40 {
        let r = sys
            .get(OBJ_1K.path)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.body.len(), OBJ_1K.size);
        served_by.insert(r.backend().unwrap_or("?").to_string());
    }
    assert_eq!(
        served_by.into_iter().collect::<Vec<_>>(),
        vec!["b2".to_string()],
        "only the backend whose nginx runs serves"
    );
}

/// Kills backend `i`'s nginx with its workers.
fn kill_nginx(sys: &mut Running, i: usize) {
    sys.nginx[i].kill_group_now();
    // Gone once no process holds its converted listener any more (SIGKILL
    // is delivered asynchronously; a worker may still accept meanwhile).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while testbed::nginx::converted_listener(&sys.bed.backends[i]).unwrap_or(false) {
        assert!(
            std::time::Instant::now() < deadline,
            "nginx on backend {i} did not die"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Not nginx-specific, not single-process: b1 runs nginx with 4 workers, b2
/// runs lighttpd, both started with the preload library; every response is
/// whole and both serve.
fn four_worker_nginx_and_lighttpd_take_the_socket(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
    kill_nginx(&mut sys, 0);
    kill_nginx(&mut sys, 1);
    sys.nginx[0] = testbed::nginx::start_backend_workers(&sys.bed, &sys.bed.backends[0], 4)
        .expect("nginx with 4 workers");
    sys.nginx[1] =
        testbed::lighttpd::start_backend(&sys.bed, &sys.bed.backends[1]).expect("lighttpd");
    sys.wait_backends(OBJ_1K.path, &STATIC_POOL, Duration::from_secs(30))
        .expect("both new servers serve");
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..40 {
        let obj = if i % 2 == 0 { OBJ_1K } else { OBJ_100K };
        let r = sys
            .get(obj.path)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(
            content::sha256_hex(&r.body),
            content::expected_sha256(obj),
            "request {i}: body of {}",
            obj.path
        );
        *seen
            .entry(r.backend().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        vec!["b1", "b2"],
        "{seen:?}"
    );
}
