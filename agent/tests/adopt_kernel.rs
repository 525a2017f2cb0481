//! Adoption by `TCP_REPAIR` alone (no THOP): a real client connects to the
//! switch namespace, the switch kernel's socket is frozen, and the backend
//! namespace rebuilds it; the unmodified client must get the full response.
//! Covers the TCP option matrix: timestamps, SACK, window scale, MSS, over
//! IPv4 and IPv6 (an `AF_INET6` socket bound to the IPv6 VIP on `lo`, whose
//! send MSS is the IPv6 one: 20 bytes less than IPv4's on the same MTU).

mod common;

use agent::repair::adopt;
use common::bed::{Bed, TcpKnobs, CLIENT_IP6, VIP, VIP6};
use common::serve::*;
use std::io::{Read, Write};

struct Case {
    knobs: TcpKnobs,
    mss: Option<u16>,
    python: bool,
    rcvbuf: Option<u32>,
    body_len: usize,
    expect_ts: bool,
    expect_sack: bool,
    expect_wscale: Option<u8>,
    /// The connection is IPv6 (client 2001:2::101 → VIP 2001:2::10).
    v6: bool,
    /// The client's MSS the switch must have seen.
    expect_mss: Option<u16>,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            knobs: TcpKnobs::default(),
            mss: None,
            python: false,
            rcvbuf: None,
            body_len: 200_000,
            expect_ts: true,
            expect_sack: true,
            expect_wscale: None,
            v6: false,
            expect_mss: None,
        }
    }
}

fn run(case: Case) {
    let bed = Bed::new();
    for ns in [bed.client.clone(), bed.switch.clone(), bed.backend.clone()] {
        bed.knobs(&ns, &case.knobs);
    }
    let vip = if case.v6 { VIP6 } else { VIP };
    if let Some(mss) = case.mss {
        if case.v6 {
            bed.client_mss6(mss);
        } else {
            bed.client_mss(mss);
        }
    }
    let l = switch_listener_on(&bed, vip, case.rcvbuf);
    let client = if case.python {
        python_get_to(&bed, vip, "/x", case.rcvbuf)
    } else if case.v6 {
        curl6(&bed, "/x", &[])
    } else {
        curl(&bed, "/x", &[])
    };
    let (st, req) = accept_and_freeze(&bed, &l, 0);
    assert_eq!(
        st.timestamps.is_some(),
        case.expect_ts,
        "timestamps negotiated: {st:?}"
    );
    assert_eq!(
        st.sack_permitted, case.expect_sack,
        "sack negotiated: {st:?}"
    );
    if let Some(ws) = case.expect_wscale {
        let got = st.window_scale.expect("window scaling negotiated");
        assert_eq!((got.client, got.server), (ws, ws), "window scales: {st:?}");
    }
    if let Some(mss) = case.mss.or(case.expect_mss) {
        assert_eq!(st.mss, mss, "client MSS: {st:?}");
    }
    if case.v6 {
        assert_eq!(st.client().ip().to_string(), CLIENT_IP6, "{st:?}");
        assert_eq!(st.vip().ip().to_string(), VIP6, "{st:?}");
    }
    let client_addr = st.client();
    let body = body(case.body_len);
    let want = body.clone();
    let backend = bed.backend.clone();
    let r = req.clone();
    let server = testkit::netns::spawn_in(&backend, move || adopt(&st, &r).expect("adopt"));
    let mut s = server.join().unwrap();
    assert_eq!(s.peer_addr().unwrap(), client_addr, "peer is the client");
    assert_eq!(s.local_addr().unwrap(), st.vip(), "bound to the VIP");
    // The adopted socket sends full-sized segments: the client's MSS less
    // the timestamp option when negotiated (not the 536-byte default).
    let ts_len = if st.timestamps.is_some() { 12 } else { 0 };
    assert_eq!(
        send_mss(&s),
        u32::from(st.mss) - ts_len,
        "send MSS of the adopted socket ({st:?})"
    );
    bed.forward_flow(client_addr);
    let mut got = vec![0u8; req.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, req, "request bytes are in the adopted receive queue");
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    drop(s);
    assert_eq!(finish(client), want);
}

#[test]
fn curl_defaults_ts_sack_wscale7() {
    run(Case {
        expect_wscale: Some(7),
        ..Default::default()
    });
}

#[test]
fn python_http_client() {
    run(Case {
        python: true,
        ..Default::default()
    });
}

#[test]
fn timestamps_off() {
    run(Case {
        knobs: TcpKnobs {
            timestamps: false,
            ..Default::default()
        },
        expect_ts: false,
        ..Default::default()
    });
}

#[test]
fn sack_off() {
    run(Case {
        knobs: TcpKnobs {
            sack: false,
            ..Default::default()
        },
        expect_sack: false,
        ..Default::default()
    });
}

#[test]
fn window_scale_0() {
    // The announced shift follows max(tcp_rmem, net.core.rmem_max) unless the
    // socket's buffer is locked: lock it small on both ends.
    run(Case {
        python: true,
        rcvbuf: Some(8192),
        expect_wscale: Some(0),
        ..Default::default()
    });
}

#[test]
fn window_scale_14() {
    run(Case {
        knobs: TcpKnobs {
            rmem_max: 1 << 30,
            ..Default::default()
        },
        expect_wscale: Some(14),
        ..Default::default()
    });
}

#[test]
fn mss_536() {
    run(Case {
        mss: Some(536),
        ..Default::default()
    });
}

#[test]
fn mss_1460_no_options() {
    run(Case {
        mss: Some(1460),
        knobs: TcpKnobs {
            timestamps: false,
            sack: false,
            rmem_max: 65535,
        },
        expect_ts: false,
        expect_sack: false,
        ..Default::default()
    });
}

/// IPv6, curl's defaults: the client announces 1440 (1500 − 40 − 20), the
/// adopted socket sends 1428-byte segments (1440 less timestamps).
#[test]
fn ipv6_curl_defaults_ts_sack_wscale7_mss1440() {
    run(Case {
        v6: true,
        expect_wscale: Some(7),
        expect_mss: Some(1440),
        ..Default::default()
    });
}

#[test]
fn ipv6_python_http_client_window_scale_0() {
    run(Case {
        v6: true,
        python: true,
        rcvbuf: Some(8192),
        expect_wscale: Some(0),
        ..Default::default()
    });
}

#[test]
fn ipv6_timestamps_and_sack_off() {
    run(Case {
        v6: true,
        knobs: TcpKnobs {
            timestamps: false,
            sack: false,
            ..Default::default()
        },
        expect_ts: false,
        expect_sack: false,
        ..Default::default()
    });
}

/// The IPv6 minimum link MTU's MSS (1280 − 60) and a scale of 14.
#[test]
fn ipv6_mss_1220_window_scale_14() {
    run(Case {
        v6: true,
        mss: Some(1220),
        knobs: TcpKnobs {
            rmem_max: 1 << 30,
            ..Default::default()
        },
        expect_wscale: Some(14),
        ..Default::default()
    });
}

/// The socket's current send MSS (`TCP_MAXSEG` on an established socket).
fn send_mss(s: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads an int option into a live int.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    v as u32
}
