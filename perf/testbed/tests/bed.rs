//! The bed itself and the peers of the benchmark, without Baton: addresses,
//! LVS-DR sysctls, real nginx per backend (plain HTTP and HTTPS), the L7
//! proxies and HAProxy's two HTTPS setups, the agents' profiles, the routed
//! bed's plumbing, and removal of every namespace afterwards.

use std::collections::BTreeSet;
use testbed::baton::{self, AgentRole};
use testbed::peers::{self, ProxyKind};
use testbed::tls::{self, HttpVersion, HttpsGet, PyTls, TlsVersion};
use testbed::{addr, content, netns, nginx, Bed, BedSpec};

fn curl(ns: &str, args: &[&str]) -> String {
    netns::run_stdout(Some(ns), "curl", args).expect("curl")
}

#[test]
fn bed_comes_up_serves_and_goes_away() {
    let spec = BedSpec {
        clients: 2,
        backends: 3,
        switches: 1,
        routed: false,
        proxy: true,
    };
    let bed = Bed::up(&spec).expect("bed up");
    let names: Vec<String> = bed.namespaces().to_vec();
    assert_eq!(
        names.len(),
        1 + 2 + 1 + 1 + 3,
        "hub, clients, switch, proxy, backends"
    );
    {
        let _nginx = nginx::start_all(&bed).expect("nginx");
        let c1 = &bed.clients[0].ns;
        for (i, b) in bed.backends.iter().enumerate() {
            // Each backend names itself in a header and in its page.
            let url = format!("http://{}:{}/", addr::backend_data(i), addr::WEB_PORT);
            let head = curl(c1, &["-s", "-D", "-", "-o", "/dev/null", &url]);
            assert!(head.contains(&format!("X-Backend: {}", b.name)), "{head}");
            // The VIP sits on lo, ARP for it is ignored (LVS-DR).
            let lo = b
                .run("ip", &["-4", "-o", "addr", "show", "dev", "lo"])
                .unwrap();
            assert!(lo.contains(&format!("{}/32", addr::VIP)), "{lo}");
            let ign = b
                .run("sysctl", &["-n", "net.ipv4.conf.all.arp_ignore"])
                .unwrap();
            assert_eq!(ign.trim(), "1");
            // Dual stack: the VIP's IPv6 address on lo too, nginx on the
            // backend's IPv6 data address.
            let lo6 = b
                .run("ip", &["-6", "-o", "addr", "show", "dev", "lo"])
                .unwrap();
            assert!(lo6.contains(&format!("{}/128", addr::VIP6)), "{lo6}");
            assert_eq!(b.data_ip6, Some(addr::backend_data6(i)));
            let url6 = format!("http://[{}]:{}/", addr::backend_data6(i), addr::WEB_PORT);
            let head = curl(c1, &["-6", "-s", "-D", "-", "-o", "/dev/null", &url6]);
            assert!(head.contains(&format!("X-Backend: {}", b.name)), "{head}");
        }
        // IPv6 on the data segment is quiet: no autoconfiguration, no
        // router solicitations, no DAD; and off on management.
        let c = &bed.clients[0];
        for (k, want) in [
            ("accept_ra", "0"),
            ("autoconf", "0"),
            ("accept_dad", "0"),
            ("disable_ipv6", "0"),
        ] {
            let v = c
                .run("sysctl", &["-n", &format!("net.ipv6.conf.data0.{k}")])
                .unwrap();
            assert_eq!(v.trim(), want, "c1 data0 {k}");
        }
        let addrs6 = c
            .run("ip", &["-6", "-o", "addr", "show", "dev", "data0"])
            .unwrap();
        assert!(
            addrs6.contains(&format!("{}/64", addr::client_data6(0)))
                && !addrs6.contains("tentative"),
            "{addrs6}"
        );
        // Objects are byte-identical everywhere and match the generator.
        let url = format!(
            "http://{}:{}{}",
            addr::backend_data(1),
            addr::WEB_PORT,
            content::OBJ_1M.path
        );
        let sum = netns::run_stdout(
            Some(c1),
            "sh",
            &["-c", &format!("curl -s {url} | sha256sum")],
        )
        .unwrap();
        assert!(
            sum.starts_with(&content::expected_sha256(content::OBJ_1M)),
            "{sum}"
        );
        // The switch's data port has no kernel address; its management port does.
        let sw = bed.switch().unwrap();
        let data = sw
            .run("ip", &["-4", "-o", "addr", "show", "dev", "data0"])
            .unwrap();
        assert!(
            data.trim().is_empty(),
            "switch data port must carry no IP: {data}"
        );
        let mgmt = sw
            .run("ip", &["-4", "-o", "addr", "show", "dev", "mgmt0"])
            .unwrap();
        assert!(mgmt.contains("198.19.0.2/24"), "{mgmt}");
        // Nor any IPv6 address, on either port: the dataplane answers
        // neighbour discovery for the switch.
        let v6 = sw.run("ip", &["-6", "-o", "addr", "show"]).unwrap();
        assert!(v6.trim().is_empty(), "the switch's kernel holds IPv6: {v6}");
        // Offloads are off on the veths.
        let k = sw.run("ethtool", &["-k", "data0"]).unwrap();
        assert!(k.contains("tx-checksumming: off"), "{k}");
        assert!(k.contains("generic-segmentation-offload: off"), "{k}");
    }
    drop(bed);
    let left: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn l7_proxies_balance_over_the_backends() {
    let spec = BedSpec {
        clients: 1,
        backends: 2,
        switches: 0,
        routed: false,
        proxy: true,
    };
    let bed = Bed::up(&spec).expect("bed up");
    let _nginx = nginx::start_all(&bed).expect("nginx");
    let ups: Vec<_> = bed.backends.iter().filter_map(|b| b.data_ip).collect();
    for kind in [ProxyKind::Nginx, ProxyKind::Haproxy] {
        let _p = peers::start(&bed, kind, &ups).expect("proxy");
        let url = format!("http://{}/api/who", peers::proxy_service());
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            let body = curl(&bed.clients[0].ns, &["-sf", &url]);
            let who = body.split('"').nth(3).unwrap_or_default().to_string();
            seen.insert(who);
        }
        assert_eq!(
            seen,
            BTreeSet::from(["b1".to_string(), "b2".to_string()]),
            "{} must use both backends",
            kind.as_str()
        );
    }
}

#[test]
fn haproxy_routes_tls_by_sni_and_terminates_it() {
    let spec = BedSpec {
        clients: 1,
        backends: 2,
        switches: 0,
        routed: false,
        proxy: true,
    };
    let bed = Bed::up(&spec).expect("bed up");
    let _nginx = nginx::start_all(&bed).expect("nginx");
    let ups: Vec<_> = bed.backends.iter().filter_map(|b| b.data_ip).collect();
    let c1 = bed.clients[0].ns.clone();
    for kind in [ProxyKind::HaproxyTcp, ProxyKind::HaproxyTls] {
        let _p = peers::start(&bed, kind, &ups).expect("proxy");
        let mut seen = BTreeSet::new();
        // The static name (HAProxy's SNI rule), another one (its default
        // backend) and none at all: all served, by both backends.
        for req in [
            HttpsGet::new(tls::STATIC, content::OBJ_1K.path),
            HttpsGet::new(tls::WWW, content::OBJ_1K.path),
            HttpsGet::no_sni(content::OBJ_1K.path),
        ] {
            for _ in 0..2 {
                let r = tls::curl(&bed, &c1, &req.clone().to(peers::proxy_tls_service()))
                    .expect("curl");
                assert!(r.ok() && r.error.is_none(), "{}: {r:?}", kind.as_str());
                assert_eq!(r.sha256(), content::expected_sha256(content::OBJ_1K));
                assert_eq!(r.alpn.as_deref(), Some("h2"), "{}: {r:?}", kind.as_str());
                seen.insert(r.backend.clone());
            }
        }
        assert_eq!(
            seen,
            BTreeSet::from(["b1".to_string(), "b2".to_string()]),
            "{} must use both backends",
            kind.as_str()
        );
    }
}

/// HTTPS straight to the backends' nginx (no switch): TLS 1.2 and 1.3,
/// ALPN h2 and http/1.1, no SNI (the certificate's IP address SAN), the
/// relay's loopback listener, and a session resumed on the other backend
/// (the shared ticket key). nginx converted the VIP listeners of both
/// families.
#[test]
fn backends_terminate_https_and_resume_sessions_across_each_other() {
    let spec = BedSpec {
        clients: 1,
        backends: 2,
        switches: 0,
        routed: false,
        proxy: false,
    };
    let bed = Bed::up(&spec).expect("bed up");
    // The bed's certificate: signed by its CA, the CA's key gone.
    for f in [
        tls::ca_file(&bed),
        tls::cert_file(&bed),
        tls::key_file(&bed),
        tls::ticket_key_file(&bed),
    ] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls::key_file(&bed))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "server.key readable by others: {mode:o}");
    assert_eq!(std::fs::read(tls::ticket_key_file(&bed)).unwrap().len(), 80);
    let ca = tls::ca_file(&bed).display().to_string();
    let cert = tls::cert_file(&bed).display().to_string();
    let v = netns::run_stdout(None, "openssl", &["verify", "-CAfile", &ca, &cert]).unwrap();
    assert!(v.trim().ends_with("OK"), "{v}");
    let leftovers: Vec<_> = std::fs::read_dir(bed.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ca.key") || n.starts_with("tls-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let _nginx = nginx::start_all(&bed).expect("nginx");
    let c1 = bed.clients[0].ns.clone();
    for (i, b) in bed.backends.iter().enumerate() {
        assert_eq!(
            nginx::converted_listeners(b).unwrap(),
            4,
            "nginx on {} converts the VIP's :80 and :443 over IPv4 and IPv6",
            b.name
        );
        let to = addr::backend_tls(i);
        let cases = [
            (
                TlsVersion::V12,
                HttpVersion::Http11,
                "TLSv1.2",
                "http/1.1",
                "1.1",
            ),
            (TlsVersion::V12, HttpVersion::H2, "TLSv1.2", "h2", "2"),
            (
                TlsVersion::V13,
                HttpVersion::Http11,
                "TLSv1.3",
                "http/1.1",
                "1.1",
            ),
            (TlsVersion::V13, HttpVersion::H2, "TLSv1.3", "h2", "2"),
        ];
        for (tv, hv, tls_name, alpn, http) in cases {
            let req = HttpsGet::new(tls::WWW, content::OBJ_1M.path)
                .to(to)
                .tls(tv)
                .http(hv);
            let r = tls::curl(&bed, &c1, &req).expect("curl");
            assert!(r.ok() && r.error.is_none(), "{req:?}: {r:?}");
            assert_eq!(r.sha256(), content::expected_sha256(content::OBJ_1M));
            assert_eq!(r.backend, b.name);
            assert_eq!(r.tls_version, tls_name, "{req:?}");
            assert_eq!(r.alpn.as_deref(), Some(alpn), "{req:?}");
            assert_eq!(r.http_version, http, "{req:?}");
        }
        // No SNI: the URL names the VIP's address, which the certificate has.
        let r = tls::curl(&bed, &c1, &HttpsGet::no_sni("/healthz").to(to)).unwrap();
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            String::from_utf8_lossy(&r.body).trim(),
            format!("ok {}", b.name)
        );
        // The relay's upstream, on the backend's loopback.
        let lo = std::net::SocketAddr::from(([127, 0, 0, 1], addr::WEB_TLS_PORT));
        let r = tls::curl(&bed, &b.ns, &HttpsGet::new(tls::APP, "/api/x").to(lo)).unwrap();
        assert!(r.ok() && r.backend == b.name, "{r:?}");
    }
    // Resumption: the second connection offers the first one's session to
    // the other backend, which takes it (same ticket key).
    for tv in [TlsVersion::V12, TlsVersion::V13] {
        let mut req = PyTls::new(
            &[addr::backend_tls(0), addr::backend_tls(1)],
            content::OBJ_100K.path,
        );
        req.tls = tv;
        let conns = tls::python(&bed, &c1, &req).expect("python");
        assert_eq!(conns.len(), 2, "{conns:?}");
        for (c, b) in conns.iter().zip(["b1", "b2"]) {
            assert!(c.error.is_none() && c.status == 200, "{c:?}");
            assert_eq!(c.backend, b);
            assert_eq!(c.version, tv.name().unwrap());
            assert_eq!(c.alpn.as_deref(), Some("http/1.1"));
            assert_eq!(c.sha256, content::expected_sha256(content::OBJ_100K));
        }
        assert!(!conns[0].reused && conns[1].offered, "{conns:?}");
        assert!(
            conns[1].reused,
            "{tv:?}: session not resumed on b2: {conns:?}"
        );
    }
}

/// The agents' generated profiles pass `baton-agent check-config`:
/// handover and relay serve the VIP's :80 and :443 on its IPv4 and IPv6
/// addresses, the listener example only 198.18.0.10:80.
#[test]
fn agent_profiles_serve_both_vip_ports() {
    let bed = Bed::up(&BedSpec {
        clients: 1,
        backends: 1,
        switches: 1,
        routed: false,
        proxy: false,
    })
    .expect("bed up");
    let agent = baton::find_bin("baton-agent").expect("baton-agent built");
    for role in [AgentRole::Handover, AgentRole::Relay, AgentRole::Listener] {
        let text = baton::agent_config(&bed, 0, role).expect("profile");
        let f = bed.path(&format!("agent-{role:?}.yaml"));
        std::fs::write(&f, &text).unwrap();
        let out = std::process::Command::new(&agent)
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{role:?}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Each service on both of the VIP's addresses (the listener
        // example: plain HTTP alone).
        for (http, https) in [
            (addr::vip_service(), addr::vip_tls_service()),
            (addr::vip6_service(), addr::vip6_tls_service()),
        ] {
            assert!(
                text.contains(&format!("vip: \"{http}\"")),
                "{role:?}:\n{text}"
            );
            assert_eq!(
                text.contains(&format!("vip: \"{https}\"")),
                role != AgentRole::Listener,
                "{role:?}:\n{text}"
            );
        }
        if role == AgentRole::Relay {
            assert!(text.contains(&format!("upstream: 127.0.0.1:{}", addr::WEB_TLS_PORT)));
        }
    }
}

#[test]
fn a_routed_bed_reaches_the_backends_through_its_router() {
    let bed = Bed::up(&BedSpec::cluster(3)).expect("routed bed up");
    let names: Vec<String> = bed.namespaces().to_vec();
    assert_eq!(
        names.len(),
        1 + 1 + 2 + 3 + 3,
        "hub, router, clients, switches, backends"
    );
    {
        let _nginx = nginx::start_all(&bed).expect("nginx");
        let rt = bed.router().unwrap();
        for (key, want) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.fib_multipath_hash_policy", "3"),
            ("net.ipv4.fib_multipath_hash_fields", "55"), // 0x0037
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.cl0.rp_filter", "0"),
        ] {
            let v = rt.run("sysctl", &["-n", key]).unwrap();
            assert_eq!(v.trim(), want, "{key} on the router");
        }
        // The clients sit behind the router, on their own segment.
        let c1 = &bed.clients[0];
        assert_eq!(c1.data_ip, Some(addr::routed_client(0)));
        let routes = c1.run("ip", &["-4", "route"]).unwrap();
        assert!(routes.contains("default via 198.18.1.1"), "{routes}");
        // Switches: .2, .4, .5 on management, no kernel address on data.
        for (i, sw) in bed.switches.iter().enumerate() {
            assert_eq!(sw.name, format!("sw{}", i + 1));
            let mgmt = sw
                .run("ip", &["-4", "-o", "addr", "show", "dev", "mgmt0"])
                .unwrap();
            assert!(
                mgmt.contains(&format!("{}/24", addr::switch_mgmt(i))),
                "{mgmt}"
            );
            let data = sw
                .run("ip", &["-4", "-o", "addr", "show", "dev", "data0"])
                .unwrap();
            assert!(data.trim().is_empty(), "{data}");
        }
        // Both ways through the router: a client fetches from a backend's
        // own address, and the backend answers via 198.18.0.1.
        for (i, b) in bed.backends.iter().enumerate() {
            let url = format!("http://{}:{}/", addr::backend_data(i), addr::WEB_PORT);
            let head = curl(
                &c1.ns,
                &["-s", "-m", "5", "-D", "-", "-o", "/dev/null", &url],
            );
            assert!(head.contains(&format!("X-Backend: {}", b.name)), "{head}");
            let r = b
                .run("ip", &["-4", "route", "get", "198.18.1.101"])
                .unwrap();
            assert!(r.contains("via 198.18.0.1"), "{r}");
        }
    }
    drop(bed);
    let left: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn a_bed_refuses_switches_it_cannot_route() {
    for spec in [
        BedSpec {
            switches: 2,
            ..BedSpec::default()
        },
        BedSpec {
            switches: 0,
            routed: true,
            ..BedSpec::default()
        },
        BedSpec::cluster(addr::MAX_SWITCHES + 1),
    ] {
        assert!(spec.check().is_err(), "{spec:?}");
    }
    assert!(BedSpec::default().check().is_ok());
    assert!(BedSpec::cluster(3).check().is_ok());
}
