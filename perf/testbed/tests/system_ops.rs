//! Operations: a reload under load fails no request, every connection
//! entry is freed again, whether it ended with FIN or RST (over AF_XDP, its
//! flow in the kernel's fast path too), and a switch that stops or dies
//! leaves nothing attached to its interface.

use std::io::Write;
use std::time::Duration;
use testbed::addr;
use testbed::baton::BatonIo;
use testbed::client;
use testbed::content::OBJ_1K;
use testbed::scenario::Running;
use testbed::wrk::WrkRun;

testbed::both_backends!(
    reload_under_load_fails_nothing,
    fin_and_rst_free_every_entry,
    a_stopped_or_killed_switch_leaves_nothing_attached,
);

fn reload_under_load_fails_nothing(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let gen0 = sys.stack.metric("baton_config_generation", &[]).unwrap();
    let url = format!("http://{}{}", addr::vip_service(), OBJ_1K.path);
    let loads: Vec<_> = [(0, false), (1, true)]
        .into_iter()
        .map(|(c, close)| {
            let mut w = WrkRun::new(&url, 8, Duration::from_secs(5));
            w.close = close;
            let ns = sys.client(c).to_string();
            std::thread::spawn(move || w.run_in(&ns))
        })
        .collect();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        sys.stack.reload();
    }
    for l in loads {
        let r = l.join().unwrap().expect("wrk");
        assert!(r.requests > 0);
        assert_eq!(r.failures(), 0, "failed requests during reloads: {r:?}");
    }
    let gen1 = sys.stack.metric("baton_config_generation", &[]).unwrap();
    assert!(gen1 >= gen0 + 3.0, "config generation {gen0} → {gen1}");
    let ok = sys.stack.metric("baton_config_reloads_total", &[]).unwrap();
    assert!(ok >= 3.0, "reloads counted: {ok}");
}

fn fin_and_rst_free_every_entry(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    sys.in_client(0, || {
        let vip = addr::vip_service();
        let req = client::get_request("198.18.0.10", OBJ_1K.path, false, &[]);
        for i in 0..30 {
            let mut s = client::connect(vip, Duration::from_secs(5)).expect("connect");
            match i % 3 {
                // FIN after a complete exchange.
                0 => {
                    s.write_all(&req).unwrap();
                    client::read_response(&mut s, &mut Vec::new()).expect("response");
                }
                // RST in WAITHEADER: half a request, then an abortive close.
                1 => {
                    s.write_all(&req[..10]).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    rst_close(s);
                }
                // RST in FORWARDING: after the response header arrived.
                _ => {
                    s.write_all(&req).unwrap();
                    client::read_response(&mut s, &mut Vec::new()).expect("response");
                    rst_close(s);
                }
            }
        }
    })
    .unwrap();
    sys.wait_until(
        "the connection table to empty",
        Duration::from_secs(40),
        || Ok(sys.table_size()? == 0.0),
    )
    .unwrap_or_else(|e| panic!("{e}: {} entries left", sys.table_size().unwrap_or(-1.0)));
    // Over AF_XDP the in-kernel fast path lets go of every flow too: the
    // switch's count and the kernel's map (with the fast path off, nothing
    // was ever in it).
    if let Some(f) = sys.fast_path_flows().expect("the fast path's flows") {
        assert_eq!(
            (f.metric, f.map),
            (0.0, 0),
            "flows left in the XDP fast path after the table emptied: {f:?}"
        );
        let inserted = sys
            .stack
            .metric("baton_worker_offload_inserted_total", &[])
            .unwrap();
        let removed = sys
            .stack
            .metric("baton_worker_offload_removed_total", &[])
            .unwrap();
        if io == (BatonIo::AfXdp { fast_path: true }) {
            // Twenty of the thirty connections reached FORWARDING.
            assert!(inserted > 0.0, "no flow was offloaded");
        } else {
            assert_eq!(inserted, 0.0, "flows offloaded with the fast path off");
        }
        assert_eq!(inserted, removed, "offloaded flows not taken back");
    }
}

/// Closes with SO_LINGER {on, 0}: the kernel sends RST instead of FIN.
fn rst_close(s: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    drop(s);
}

/// The data interface carries no XDP program once the switch has stopped
/// (SIGTERM) or died (SIGKILL: the kernel detaches a program attached
/// through a BPF link when its last holder goes), and a switch started
/// after a crash attaches and serves at once. Over AF_PACKET and DPDK the
/// interface never carries one.
fn a_stopped_or_killed_switch_leaves_nothing_attached(io: BatonIo) {
    use testbed::topology::DATA_IF;
    let mut sys = Running::up(io).expect("system up");
    let ns = sys.bed.switch().unwrap().ns.clone();
    let attached = || testbed::xdp::attached(&ns, DATA_IF).expect("bpftool");
    assert_eq!(
        attached().is_some(),
        matches!(io, BatonIo::AfXdp { .. }),
        "an XDP program on {DATA_IF} exactly when the switch runs over AF_XDP"
    );
    // A graceful stop, then a crash, each followed by a new switch.
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        assert_eq!(sys.get(OBJ_1K.path).expect("served").status, 200);
        let mut old = sys.stack.switch.take().expect("the switch runs");
        if sig == libc::SIGTERM {
            old.stop(Duration::from_secs(15));
        } else {
            old.kill_now();
        }
        sys.wait_until(
            "the XDP program to be detached",
            Duration::from_secs(5),
            || Ok(attached().is_none()),
        )
        .unwrap_or_else(|e| panic!("after signal {sig}: {e}: {:?}", attached()));
        testbed::attack::restart::start_switch(&mut sys, io).expect("a new switch starts");
    }
    assert_eq!(sys.get(OBJ_1K.path).expect("served").status, 200);
}
