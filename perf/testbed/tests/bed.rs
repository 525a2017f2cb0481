//! The bed itself and the peers of the benchmark, without Baton: addresses,
//! LVS-DR sysctls, real nginx per backend, the two L7 proxies, the routed
//! bed's plumbing, and removal of every namespace afterwards.

use std::collections::BTreeSet;
use testbed::peers::{self, ProxyKind};
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
        }
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
