//! Adoption by `TCP_REPAIR` alone (no THOP): a real client connects to the
//! switch namespace, the switch kernel's socket is frozen, and the backend
//! namespace rebuilds it; the unmodified client must get the full response.
//! Covers the TCP option matrix: timestamps, SACK, window scale, MSS.

mod common;

use agent::repair::adopt;
use common::bed::{Bed, TcpKnobs};
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
        }
    }
}

fn run(case: Case) {
    let bed = Bed::new();
    for ns in [bed.client.clone(), bed.switch.clone(), bed.backend.clone()] {
        bed.knobs(&ns, &case.knobs);
    }
    if let Some(mss) = case.mss {
        bed.client_mss(mss);
    }
    let l = switch_listener(&bed, case.rcvbuf);
    let client = if case.python {
        python_get(&bed, "/x", case.rcvbuf)
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
    if let Some(mss) = case.mss {
        assert_eq!(st.mss, mss, "client MSS: {st:?}");
    }
    let port = st.client().port();
    let body = body(case.body_len);
    let want = body.clone();
    let backend = bed.backend.clone();
    let r = req.clone();
    let server = testkit::netns::spawn_in(&backend, move || adopt(&st, &r).expect("adopt"));
    let mut s = server.join().unwrap();
    // The adopted socket sends full-sized segments: the client's MSS less
    // the timestamp option when negotiated (not the 536-byte default).
    let ts_len = if st.timestamps.is_some() { 12 } else { 0 };
    assert_eq!(
        send_mss(&s),
        u32::from(st.mss) - ts_len,
        "send MSS of the adopted socket ({st:?})"
    );
    bed.forward_flow(port);
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
