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
use testbed::content::OBJ_1K;
use testbed::scenario::Running;
use testbed::wrk::WrkRun;

testbed::both_backends!(
    nginx_sees_the_client_and_receives_a_megabyte_intact,
    nginx_reload_under_load_fails_nothing,
    stopped_nginx_requests_are_redispatched
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
    // The whole nginx: its workers outlive a killed master.
    let master = sys.nginx[0].pid().expect("nginx pid");
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-P", &master.to_string()])
        .status();
    sys.nginx[0].kill_now();
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
