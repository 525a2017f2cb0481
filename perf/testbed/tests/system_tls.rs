//! HTTPS through Baton: the switch reads the ClientHello, routes by SNI and
//! ALPN (the test-bed profile's `web-tls` service on the VIP's port 443),
//! and hands the connection off; the backends' nginx terminates TLS and
//! answers the clients directly. Real clients: curl (TLS 1.2 and 1.3, h2
//! and HTTP/1.1), Python `ssl` (resumption, hellos cut into one-byte
//! segments and across records), headless Chromium; and bad first bytes on
//! the TLS port.

use testbed::baton::BatonIo;
use testbed::content::{self, OBJ_10M, OBJ_1K, PAGE, PAGE_IMAGES};
use testbed::scenario::{Running, STATIC_POOL};
use testbed::tls::{self, HelloCut, HttpVersion, HttpsGet, PyTls, TlsVersion, APP, STATIC, WWW};
use testbed::{addr, netns};

testbed::both_backends!(https_routes_by_sni_and_alpn, chromium_loads_the_https_page);

/// nginx's name for itself (`X-Backend`) on the backend of each TLS pool:
/// `tls-www` is static-1 (b1), `tls-app` static-2 (b2).
const TLS_WWW: &str = "b1";
const TLS_APP: &str = "b2";

/// Sends `hex` bytes to the VIP's port 443 and prints what came back (hex)
/// before the switch closed.
const PY_RAW: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], 443), timeout=10)
s.sendall(bytes.fromhex(sys.argv[2]))
got = b""
while True:
    try:
        d = s.recv(4096)
    except ConnectionResetError:
        break
    if not d:
        break
    got += d
print(got.hex() or "-")
"#;

fn https_routes_by_sni_and_alpn(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let ns = sys.client(0).to_string();
    let get = |req: HttpsGet| {
        let r = tls::curl(&sys.bed, &ns, &req).expect("curl");
        assert!(r.ok(), "{req:?}: {r:?}");
        assert_eq!(r.body.len(), OBJ_1K.size, "{req:?}");
        r
    };

    // Each pool by SNI, TLS 1.2 and 1.3.
    for v in [TlsVersion::V12, TlsVersion::V13] {
        for _ in 0..2 {
            let r = get(HttpsGet::new(STATIC, OBJ_1K.path).tls(v));
            assert!(STATIC_POOL.contains(&r.backend.as_str()), "{r:?}");
            assert_eq!(Some(r.tls_version.as_str()), v.name(), "{r:?}");
        }
        let r = get(HttpsGet::new(APP, OBJ_1K.path).tls(v));
        assert_eq!(r.backend, TLS_APP, "app.baton.test → tls-app: {r:?}");
        assert_eq!(Some(r.tls_version.as_str()), v.name());
    }
    // ALPN: www.baton.test offering h2 → tls-www; HTTP/1.1 only → tls-app.
    let r = get(HttpsGet::new(WWW, OBJ_1K.path).http(HttpVersion::H2));
    assert_eq!(
        (r.backend.as_str(), r.alpn.as_deref()),
        (TLS_WWW, Some("h2")),
        "{r:?}"
    );
    let r = get(HttpsGet::new(WWW, OBJ_1K.path).http(HttpVersion::Http11));
    assert_eq!(
        (r.backend.as_str(), r.alpn.as_deref()),
        (TLS_APP, Some("http/1.1")),
        "{r:?}"
    );
    // No SNI: the default pool.
    let r = get(HttpsGet::no_sni(OBJ_1K.path));
    assert!(STATIC_POOL.contains(&r.backend.as_str()), "{r:?}");

    // 10 MB over h2, checked by SHA-256.
    let r = tls::curl(&sys.bed, &ns, &HttpsGet::new(STATIC, OBJ_10M.path)).expect("curl");
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.sha256(), content::expected_sha256(OBJ_10M));

    // Python ssl: a second connection offers the first one's session. It
    // may land on the other backend of the pool; the pool shares a ticket
    // key, so it resumes either way.
    let vip = addr::vip_tls_service();
    for v in [TlsVersion::V12, TlsVersion::V13] {
        let mut req = PyTls::new(&[vip, vip, vip], OBJ_1K.path);
        req.sni = Some(STATIC.to_string());
        req.tls = v;
        let conns = tls::python(&sys.bed, &ns, &req).expect("python");
        assert_eq!(conns.len(), 3, "{conns:?}");
        for c in &conns {
            assert_eq!(c.error, None, "{conns:?}");
            assert_eq!(c.status, 200, "{conns:?}");
            assert_eq!(c.sha256, content::expected_sha256(OBJ_1K), "{conns:?}");
        }
        assert!(
            conns[1..].iter().all(|c| c.offered && c.reused),
            "{v:?}: sessions resumed through the switch: {conns:?}"
        );
    }

    // A ClientHello in one-byte segments, and one cut across two records.
    for mode in [
        HelloCut::OneByteSegments,
        HelloCut::TwoRecords,
        HelloCut::Whole,
    ] {
        let out = tls::cut_hello_get(&sys.bed, &ns, WWW, mode, OBJ_1K.path)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(out.status, 200, "{mode:?}: {out:?}");
        assert_eq!(out.backend, TLS_APP, "{mode:?}: {out:?}");
    }

    // Bad first bytes: never an HTTP answer on the TLS port.
    let raw = |hex: &str| {
        netns::run_stdout(
            Some(&ns),
            "python3",
            &["-c", PY_RAW, &addr::VIP.to_string(), hex],
        )
        .expect("raw client")
        .trim()
        .to_string()
    };
    let plain = hex(b"GET / HTTP/1.1\r\nHost: www.baton.test\r\n\r\n");
    assert_eq!(raw(&plain), "-", "plaintext HTTP on 443: closed, no answer");
    // A handshake record whose first message is not a ClientHello.
    assert_eq!(raw("160301000402000000"), "1503030002020a");
    // A ClientHello claiming 64 KiB (over max_client_hello_bytes).
    assert_eq!(raw("160301000401010000"), "1503030002022f");
    let aborted = |reason: &str| {
        sys.stack
            .metric(
                "baton_worker_aborted_connections_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0)
    };
    assert!(aborted("tls_not_tls") >= 1.0);
    assert!(aborted("tls_malformed") >= 1.0);
    assert!(aborted("tls_too_large") >= 1.0);
    assert_eq!(
        sys.stack
            .metric("baton_worker_local_responses_total", &[])
            .unwrap_or(0.0),
        0.0,
        "no HTTP response was sent"
    );

    // Metrics and the access log name what the hellos said.
    let m = |name: &str, labels: &[(&str, &str)]| sys.stack.metric(name, labels).unwrap_or(0.0);
    assert!(m("baton_worker_tls_hellos_total", &[("alpn", "h2")]) >= 1.0);
    assert!(m("baton_worker_tls_hellos_total", &[("alpn", "http/1.1")]) >= 1.0);
    assert!(
        m(
            "baton_dispatch_rule_matches_total",
            &[("service", "web-tls"), ("rule", "tls-www-h2")]
        ) >= 1.0
    );
    assert!(
        m(
            "baton_dispatch_rule_matches_total",
            &[("service", "web-tls"), ("rule", "default")]
        ) >= 1.0
    );
    let log = sys.stack.switch_log();
    assert!(
        log.contains("sni=app.baton.test alpn=h2,http/1.1 tls=tls1.3"),
        "access log: {}",
        testbed::scenario::tail(&log, 2000)
    );
}

fn chromium_loads_the_https_page(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let h2_before = alpn_hellos(&sys, "h2");
    let h1_before = alpn_hellos(&sys, "http/1.1");
    for (http2, want) in [(true, "h2"), (false, "http/1.1")] {
        let profile = sys
            .bed
            .path(&format!("chromium-{}", if http2 { "h2" } else { "h1" }));
        let rules = format!("--host-resolver-rules=MAP {WWW} {}", addr::VIP);
        // The bed's CA is not in Chromium's store; curl and Python above
        // check the certificate against it.
        let mut extra = vec!["--ignore-certificate-errors", rules.as_str()];
        if !http2 {
            extra.push("--disable-http2");
        }
        let dump = testbed::chromium::dump_dom(
            sys.client(1),
            &profile,
            &format!("https://{WWW}{PAGE}"),
            &extra,
        )
        .expect("chromium");
        let ok = format!("data-images-ok=\"{PAGE_IMAGES}\"");
        assert!(
            dump.contains(&ok),
            "chromium ({want}) did not load all {PAGE_IMAGES} images:\n{}",
            testbed::scenario::tail(&dump, 2000)
        );
    }
    // Each run's hellos offered what it was told to: h2 first, then only
    // HTTP/1.1 (routed by the ALPN rule to the other pool).
    assert!(alpn_hellos(&sys, "h2") > h2_before);
    assert!(alpn_hellos(&sys, "http/1.1") > h1_before);
}

fn alpn_hellos(sys: &Running, alpn: &str) -> f64 {
    sys.stack
        .metric("baton_worker_tls_hellos_total", &[("alpn", alpn)])
        .unwrap_or(0.0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
