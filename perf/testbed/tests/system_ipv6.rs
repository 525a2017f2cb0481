//! IPv6 through Baton: the bed is dual-stack on its data segment, the
//! switch serves the same services on the VIP's IPv6 address (2001:2::10)
//! as on its IPv4 one, and the agents adopt IPv6 connections. Unmodified
//! clients (curl -6, wrk, Python's `socket.AF_INET6` and `http.client`,
//! headless Chromium), the TCP option matrix, headers dribbled and out of
//! order, a 10 MB download, routing by rule, an agent killed before
//! handoff, FIN and RST for no connection, both VIPs as one service, and
//! IPv6 frames no stack would send, counted and dropped.

use std::time::Duration;
use testbed::attack::packet::{self, flags, nh, FrameSender, TcpSeg, ETH_P_IPV6};
use testbed::baton::{AgentRole, BatonIo};
use testbed::client::{self, metric_sum};
use testbed::content::{self, OBJ_100K, OBJ_10M, OBJ_1K, OBJ_1M, PAGE, PAGE_IMAGES};
use testbed::scenario::{self, Running, APP_BACKEND, STATIC_POOL};
use testbed::topology::DATA_IF;
use testbed::wrk::WrkRun;
use testbed::{addr, netns};

testbed::both_backends!(
    curl_wrk_python_and_chromium_over_ipv6,
    tcp_option_matrix_over_ipv6,
    dribbled_and_out_of_order_headers_over_ipv6,
    ten_megabytes_intact_over_ipv6,
    rules_pick_the_pool_over_ipv6,
    agent_killed_before_handoff_ipv6_requests_are_redispatched,
    fin_and_rst_for_no_connection_as_over_ipv4,
    both_vips_are_one_service,
    bad_ipv6_frames_are_counted_and_dropped,
);

/// The VIP's HTTP service over IPv6.
fn vip6() -> std::net::SocketAddr {
    addr::vip6_service()
}

/// `http://[2001:2::10]<path>`.
fn url6(path: &str) -> String {
    format!("http://[{}]{path}", addr::VIP6)
}

/// The standard system with nginx under handover on every backend, ready
/// over IPv6 too: both static backends have answered through the IPv6 VIP
/// (neighbour discovery done everywhere).
fn up(io: BatonIo) -> Running {
    ready6(Running::up_with(io, |o| o.agents = vec![AgentRole::Handover; 3]).expect("system up"))
}

/// `sys` once both static backends have answered through the IPv6 VIP.
fn ready6(sys: Running) -> Running {
    scenario::wait_served_by(
        || sys.get_at(vip6(), OBJ_1K.path),
        &STATIC_POOL,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|seen| {
        panic!(
            "the static pool over IPv6: {seen}\nswitch log:\n{}",
            scenario::tail(&sys.stack.switch_log(), 3000)
        )
    });
    sys
}

/// curl -6 on a new connection: (status, X-Backend, body bytes).
fn curl6(ns: &str, url: &str) -> (u16, String, u64) {
    let out = netns::command(
        Some(ns),
        "curl",
        &[
            "-6",
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} [%header{x-backend}%header{x-served-by}]",
            url,
        ],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.splitn(3, ' ');
    let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let size = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let who = it
        .next()
        .unwrap_or("[]")
        .trim_matches(['[', ']'])
        .to_string();
    (code, who, size)
}

const PYTHON6: &str = r#"
import hashlib, http.client, socket, sys
vip = sys.argv[1]
# A plain AF_INET6 socket: one request, read to the close.
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(10)
s.connect((vip, 80, 0, 0))
s.sendall(("GET /static/100k.bin HTTP/1.1\r\nHost: [%s]\r\nConnection: close\r\n\r\n" % vip).encode())
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
head, _, body = data.partition(b"\r\n\r\n")
print("socket", s.family == socket.AF_INET6, head.split()[1].decode(), len(body), hashlib.sha256(body).hexdigest())
s.close()
# http.client: three requests on one keep-alive connection.
c = http.client.HTTPConnection(vip, 80, timeout=10)
for path in ["/static/1k.bin", "/static/100k.bin", "/index.html"]:
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    print(r.status, r.getheader("X-Backend"), len(body), hashlib.sha256(body).hexdigest())
c.close()
"#;

fn curl_wrk_python_and_chromium_over_ipv6(io: BatonIo) {
    let sys = up(io);

    // curl -6: several URL classes, a new connection each.
    for path in ["/static/1k.bin", "/index.html", "/api/items", "/"] {
        let (code, who, _) = curl6(sys.client(1), &url6(path));
        assert_eq!(code, 200, "curl -6 {path} (served by `{who}`)");
    }

    // wrk: keep-alive and a new connection per request, no failures.
    for close in [false, true] {
        let mut w = WrkRun::new(url6(OBJ_1K.path), 8, Duration::from_secs(2));
        w.close = close;
        let r = w.run_in(sys.client(0)).expect("wrk");
        assert!(r.requests > 0, "{r:?}");
        assert_eq!(r.failures(), 0, "wrk over IPv6 (close: {close}): {r:?}");
    }

    // Python: a raw AF_INET6 socket, then http.client keep-alive.
    let out = netns::run_stdout(
        Some(sys.client(0)),
        "python3",
        &["-c", PYTHON6, &addr::VIP6.to_string()],
    )
    .expect("python");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0][..3], ["socket", "True", "200"], "{out}");
    assert_eq!(lines[0][3], OBJ_100K.size.to_string(), "{out}");
    assert_eq!(lines[0][4], content::expected_sha256(OBJ_100K), "{out}");
    let ka = &lines[1..];
    assert!(ka.iter().all(|l| l[0] == "200"), "{out}");
    assert_eq!(ka[0][3], content::expected_sha256(OBJ_1K), "{out}");
    assert_eq!(ka[1][3], content::expected_sha256(OBJ_100K), "{out}");
    assert!(
        ka.iter().all(|l| l[1] == ka[0][1]),
        "one connection, one backend: {out}"
    );

    // Headless Chromium: the page and all its objects over IPv6.
    let profile = sys.bed.path("chromium6");
    let dump =
        testbed::chromium::dump_dom(sys.client(1), &profile, &url6(PAGE), &[]).expect("chromium");
    let want = format!("data-images-ok=\"{PAGE_IMAGES}\"");
    assert!(
        dump.contains(&want),
        "chromium did not load all {PAGE_IMAGES} images over IPv6:\n{}",
        scenario::tail(&dump, 2000)
    );
}

/// One case of the TCP option matrix: what the client's kernel offers.
#[derive(Debug, Clone, Copy)]
struct Options {
    timestamps: bool,
    sack: bool,
    window_scaling: bool,
    /// The MSS the client announces (`TCP_MAXSEG` before the handshake);
    /// None: from the link (1500 − 60 = 1440).
    mss: Option<u16>,
}

/// What the client's socket negotiated, from `TCP_INFO`.
#[derive(Debug, Clone, Copy)]
struct Negotiated {
    timestamps: bool,
    sack: bool,
    window_scaling: bool,
    /// The largest segment the client may send (the switch's MSS, less
    /// 12 bytes with timestamps).
    snd_mss: u32,
}

fn tcp_info(s: &std::net::TcpStream) -> Negotiated {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero tcp_info is a valid out-parameter.
    let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt into a tcp_info of the length given.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut ti as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    Negotiated {
        timestamps: ti.tcpi_options & 1 != 0,
        sack: ti.tcpi_options & 2 != 0,
        window_scaling: ti.tcpi_options & 4 != 0,
        snd_mss: ti.tcpi_snd_mss,
    }
}

/// The switch's MSS over IPv6: the profile's 1460 (configs/base.yaml) less
/// the 20 bytes IPv6's header takes beyond IPv4's.
const SWITCH_MSS6: u32 = 1440;

fn tcp_option_matrix_over_ipv6(io: BatonIo) {
    let sys = up(io);
    let ns = sys.client(0).to_string();
    let cases = [
        (true, true, true, None),
        (false, true, true, None),
        (true, false, true, None),
        (true, true, false, None),
        (false, false, false, None),
        (true, true, true, Some(536)),
        (false, false, false, Some(1220)),
    ];
    let sum = content::expected_sha256(OBJ_1M);
    for (timestamps, sack, window_scaling, mss) in cases {
        let o = Options {
            timestamps,
            sack,
            window_scaling,
            mss,
        };
        let on = |b: bool| if b { "1" } else { "0" };
        for (k, v) in [
            ("net.ipv4.tcp_timestamps", on(o.timestamps)),
            ("net.ipv4.tcp_sack", on(o.sack)),
            ("net.ipv4.tcp_window_scaling", on(o.window_scaling)),
        ] {
            netns::sysctl(&ns, k, v).expect("sysctl");
        }
        let (resp, got) = sys
            .in_client(0, move || -> std::io::Result<_> {
                let mut s = client::socket_with(vip6(), |fd| match o.mss {
                    Some(m) => {
                        let m = libc::c_int::from(m);
                        // SAFETY: setsockopt with a c_int of the right size.
                        unsafe {
                            libc::setsockopt(
                                fd,
                                libc::IPPROTO_TCP,
                                libc::TCP_MAXSEG,
                                (&m as *const libc::c_int).cast(),
                                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                            )
                        }
                    }
                    None => 0,
                })?;
                s.set_read_timeout(Some(Duration::from_secs(20)))?;
                use std::io::Write as _;
                let host = client::host_of(vip6());
                s.write_all(&client::get_request(&host, OBJ_1M.path, false, &[]))?;
                let got = tcp_info(&s);
                Ok((client::read_response(&mut s, &mut Vec::new())?, got))
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("{o:?}: {e}"));
        assert_eq!(resp.status, 200, "{o:?}");
        assert_eq!(content::sha256_hex(&resp.body), sum, "{o:?}: body");
        // The switch took what the client offered, and no more.
        assert_eq!(got.timestamps, o.timestamps, "{o:?}: {got:?}");
        assert_eq!(got.sack, o.sack, "{o:?}: {got:?}");
        assert_eq!(got.window_scaling, o.window_scaling, "{o:?}: {got:?}");
        assert!(
            got.snd_mss <= SWITCH_MSS6,
            "{o:?}: the client may send {} bytes a segment, more than the switch's IPv6 MSS",
            got.snd_mss
        );
    }
    for k in [
        "net.ipv4.tcp_timestamps",
        "net.ipv4.tcp_sack",
        "net.ipv4.tcp_window_scaling",
    ] {
        netns::sysctl(&ns, k, "1").expect("sysctl");
    }
}

fn dribbled_and_out_of_order_headers_over_ipv6(io: BatonIo) {
    let sys = up(io);
    let host = client::host_of(vip6());
    // Dribbled: 7-byte segments, 3 ms apart.
    let req = client::get_request(&host, OBJ_1K.path, false, &[("X-Filler", &"f".repeat(300))]);
    let r = sys
        .in_client(0, move || {
            client::dribble(
                vip6(),
                &req,
                7,
                Duration::from_millis(3),
                Duration::from_secs(20),
            )
        })
        .unwrap()
        .expect("dribbled request");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), OBJ_1K.size);
    assert!(STATIC_POOL.contains(&r.backend().unwrap_or("")), "{r:?}");

    // Out of order: the header's second half arrives before its first, for
    // a short header and one over several segments' worth.
    for pad in [40, 3000] {
        let req = client::get_request(&host, OBJ_1K.path, false, &[("X-Pad", &"p".repeat(pad))]);
        let cut = req.len() / 2;
        let (r, dropped) =
            client::out_of_order(sys.client(1), vip6(), &req, cut, Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("out-of-order header ({pad} bytes of padding): {e}"));
        assert_eq!(dropped, 1, "the first half was not held back");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body.len(), OBJ_1K.size);
    }
}

fn ten_megabytes_intact_over_ipv6(io: BatonIo) {
    up(io).ten_megabytes_bypass_the_switch("-6", &url6(OBJ_10M.path));
}

fn rules_pick_the_pool_over_ipv6(io: BatonIo) {
    // The standard agents: the app backend runs the agent's listener
    // example, which serves its profile's IPv6 VIP as well.
    let sys = ready6(Running::up(io).expect("system up"));
    let app0 = sys
        .stack
        .metric("baton_dispatch_decisions_total", &[("pool", "app")])
        .unwrap();
    for path in ["/static/1k.bin", "/index.html", "/static/img/3.svg"] {
        for _ in 0..4 {
            let r = sys.get_at(vip6(), path).expect("GET");
            assert_eq!(r.status, 200, "{path}");
            let who = r.backend().unwrap_or("none");
            assert!(STATIC_POOL.contains(&who), "{path} went to {who}");
        }
    }
    // /api/ picks the other pool: the app backend.
    for _ in 0..5 {
        let r = sys.get_at(vip6(), "/api/items").expect("GET /api/");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend(), Some(APP_BACKEND), "{r:?}");
    }
    let app1 = sys
        .stack
        .metric("baton_dispatch_decisions_total", &[("pool", "app")])
        .unwrap();
    assert!(app1 - app0 >= 5.0, "app-pool decisions {app0} → {app1}");
}

fn agent_killed_before_handoff_ipv6_requests_are_redispatched(io: BatonIo) {
    let mut sys = up(io);
    sys.stack.kill_agent(0);
    let mut served = Vec::new();
    for i in 0..20 {
        let r = sys
            .get_at(vip6(), OBJ_1K.path)
            .unwrap_or_else(|e| panic!("request {i} lost: {e}"));
        assert_eq!(r.status, 200, "request {i}");
        served.push(r.backend().unwrap_or("?").to_string());
    }
    assert!(served.iter().all(|b| b == "b2"), "served by {served:?}");
    let retried = ["timed_out", "nacked"]
        .iter()
        .map(|o| {
            sys.stack
                .metric("baton_worker_handoffs_total", &[("outcome", o)])
                .unwrap()
        })
        .sum::<f64>();
    assert!(retried >= 1.0, "no handoff to the dead agent was retried");
}

/// Every drop reason's count and the switch's lookups, summed over workers.
fn drops_and_lookups(sys: &Running) -> std::collections::BTreeMap<String, f64> {
    let m = sys.stack.metrics().expect("metrics");
    let mut out = std::collections::BTreeMap::new();
    for (labels, v) in testbed::promtext::series(&m, "baton_worker_dropped_packets_total") {
        if let Some((_, r)) = labels.iter().find(|(k, _)| k == "reason") {
            // The bed's own chatter (an ARP for another host, a multicast
            // frame) lands in these two at any moment: not the test's.
            if r == "ignored" || r == "not_for_us" {
                continue;
            }
            *out.entry(format!("drop {r}")).or_default() += v;
        }
    }
    for name in [
        "baton_worker_recovery_lookups_sent_total",
        "baton_worker_connections",
    ] {
        out.insert(name.to_string(), metric_sum(&m, name, &[]).unwrap_or(0.0));
    }
    out
}

/// What changed between two looks, leaving out what did not.
fn delta(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

/// FIN and RST for a connection the switch never had: sent raw from
/// client 0 (the port no socket holds) to each VIP. Over IPv6 the switch
/// does what it does over IPv4: the same counters move by the same
/// amounts, no entry is made, and nothing the switch sends reaches the
/// client (it neither answers nor resets a connection it does not know).
fn fin_and_rst_for_no_connection_as_over_ipv4(io: BatonIo) {
    let sys = up(io);
    let sw_mac = packet::parse_mac(&sys.bed.switch().unwrap().data_mac().unwrap()).unwrap();
    let c = 0;
    let mut seen = Vec::new();
    for (family, (src, dst)) in [
        (
            "IPv4",
            (
                std::net::SocketAddr::from((addr::client_data(c), 40999)),
                addr::vip_service(),
            ),
        ),
        (
            "IPv6",
            (
                std::net::SocketAddr::from((addr::client_data6(c), 40999)),
                vip6(),
            ),
        ),
    ] {
        let before = drops_and_lookups(&sys);
        let replies = sys
            .in_client(c, move || -> std::io::Result<usize> {
                let tx = FrameSender::open(DATA_IF)?;
                let cap = packet::Capture::open(DATA_IF, Duration::from_millis(50))?;
                let base = TcpSeg::new(
                    "0.0.0.0:0".parse().unwrap(),
                    "0.0.0.0:0".parse().unwrap(),
                    0x1234_5678,
                    0x0abc_def0,
                    0,
                );
                for (i, fl) in [flags::FIN | flags::ACK, flags::RST, flags::RST | flags::ACK]
                    .into_iter()
                    .enumerate()
                {
                    let mut s = base.clone();
                    s.flags = fl;
                    s.seq += i as u32;
                    let pkt = s.build_for(src, dst);
                    let et = if src.is_ipv6() {
                        ETH_P_IPV6
                    } else {
                        packet::ETH_P_IPV4
                    };
                    tx.send(sw_mac, et, &pkt)?;
                }
                // Whatever comes back to that port within two seconds.
                let et = if src.is_ipv6() {
                    ETH_P_IPV6
                } else {
                    packet::ETH_P_IPV4
                };
                let deadline = std::time::Instant::now() + Duration::from_secs(2);
                let mut n = 0;
                while std::time::Instant::now() < deadline {
                    let Some((packet::Direction::In, p)) = cap.next_of(et) else {
                        continue;
                    };
                    let l4 = if src.is_ipv6() {
                        packet::parse_ipv6(&p)
                            .filter(|x| x.2 == nh::TCP)
                            .map(|x| x.3)
                    } else {
                        packet::parse_ipv4(&p)
                            .filter(|x| x.proto == 6)
                            .map(|x| x.payload)
                    };
                    if l4
                        .and_then(packet::parse_tcp)
                        .is_some_and(|t| t.dport == src.port())
                    {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .unwrap()
            .expect("raw FIN and RST");
        // Lookups at the agents take their time out before counting.
        std::thread::sleep(Duration::from_secs(2));
        let after = drops_and_lookups(&sys);
        assert_eq!(
            after["baton_worker_connections"], 0.0,
            "{family}: an entry for no connection"
        );
        assert_eq!(replies, 0, "{family}: the switch answered a FIN or RST");
        seen.push((family, delta(&before, &after)));
    }
    assert_eq!(
        seen[0].1, seen[1].1,
        "the switch handles FIN and RST for no connection differently by family: {seen:?}"
    );
    assert!(!seen[0].1.is_empty(), "nothing counted: {seen:?}");
    // And it serves on.
    assert_eq!(sys.get_at(vip6(), OBJ_1K.path).expect("GET").status, 200);
}

/// The same service answers on 198.18.0.10 and 2001:2::10, and `/metrics`
/// counts both under its one name.
fn both_vips_are_one_service(io: BatonIo) {
    let sys = up(io);
    let rule_matches = |sys: &Running| {
        let m = sys.stack.metrics().expect("metrics");
        let mut services = std::collections::BTreeSet::new();
        for (labels, _) in testbed::promtext::series(&m, "baton_dispatch_rule_matches_total") {
            if let Some((_, s)) = labels.iter().find(|(k, _)| k == "service") {
                services.insert(s.clone());
            }
        }
        let web = metric_sum(
            &m,
            "baton_dispatch_rule_matches_total",
            &[("service", "web")],
        )
        .unwrap_or(0.0);
        (services, web)
    };
    let (_, web0) = rule_matches(&sys);
    const N: usize = 6;
    let mut by_family = Vec::new();
    for svc in [addr::vip_service(), vip6()] {
        let mut bodies = Vec::new();
        for _ in 0..N {
            let r = sys.get_at(svc, OBJ_1K.path).expect("GET");
            assert_eq!(r.status, 200, "{svc}");
            bodies.push(content::sha256_hex(&r.body));
        }
        let api = sys.get_at(svc, "/api/items").expect("GET /api/");
        assert_eq!(api.backend(), Some(APP_BACKEND), "{svc}: {api:?}");
        by_family.push(bodies);
    }
    assert_eq!(by_family[0], by_family[1], "the same objects on both VIPs");
    let (services, web1) = rule_matches(&sys);
    assert_eq!(
        services,
        ["web", "web-tls"].map(String::from).into_iter().collect(),
        "one series per service, whatever the family"
    );
    assert!(
        web1 - web0 >= (2 * (N + 1)) as f64,
        "requests on both VIPs under service `web`: {web0} → {web1}"
    );
}

/// IPv6 frames no stack would send, straight to the switch's port: each
/// is dropped under its reason and the switch serves on.
fn bad_ipv6_frames_are_counted_and_dropped(io: BatonIo) {
    let mut sys = up(io);
    let sw_mac = packet::parse_mac(&sys.bed.switch().unwrap().data_mac().unwrap()).unwrap();
    let (src, dst) = (addr::client_data6(0), addr::VIP6);
    let seg = TcpSeg::new(
        "0.0.0.0:41000".parse().unwrap(),
        "0.0.0.0:80".parse().unwrap(),
        1,
        0,
        flags::SYN,
    );
    let syn = |first: u8, ext: &[u8]| seg.build6(src, dst, first, ext);
    let chain = |kinds: &[u8]| -> Vec<u8> {
        let mut v = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            let next = kinds.get(i + 1).copied().unwrap_or(nh::TCP);
            v.extend_from_slice(&packet::ext_header(*k, next));
        }
        v
    };
    let whole = syn(nh::TCP, &[]);
    // (reason, frames)
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "ipv6_ext_chain",
            vec![
                // Hop-by-Hop after another header.
                syn(nh::DEST_OPTS, &chain(&[nh::DEST_OPTS, nh::HOP_BY_HOP])),
                // Nine extension headers.
                syn(nh::DEST_OPTS, &chain(&[nh::DEST_OPTS; 9])),
                // 520 bytes of them (one Destination Options header of 65 × 8).
                {
                    let mut big = vec![nh::TCP, 64, 1, 254];
                    big.resize(65 * 8, 0);
                    syn(nh::DEST_OPTS, &big)
                },
            ],
        ),
        (
            "fragment",
            vec![
                syn(nh::FRAGMENT, &packet::fragment_header(nh::TCP)),
                syn(nh::DEST_OPTS, &{
                    let mut v = packet::ext_header(nh::DEST_OPTS, nh::FRAGMENT).to_vec();
                    v.extend_from_slice(&packet::fragment_header(nh::TCP));
                    v
                }),
            ],
        ),
        (
            "malformed",
            vec![
                // The fixed header cut short.
                whole[..30].to_vec(),
                // A payload length beyond the frame.
                {
                    let mut p = whole.clone();
                    p[4..6].copy_from_slice(&2000u16.to_be_bytes());
                    p
                },
                // A TCP header of 12 bytes.
                {
                    let mut p = whole[..40 + 12].to_vec();
                    p[4..6].copy_from_slice(&12u16.to_be_bytes());
                    p
                },
                // An extension header running past the packet.
                {
                    let mut p =
                        packet::ipv6(src, dst, nh::ROUTING, &[nh::TCP, 8, 0, 0, 0, 0, 0, 0]);
                    p.truncate(48);
                    p
                },
                // A TCP data offset beyond the segment.
                {
                    let mut p = whole.clone();
                    p[40 + 12] = 0xf0;
                    p
                },
            ],
        ),
    ];
    const ROUNDS: usize = 5;
    let drops = |sys: &Running, r: &str| {
        sys.stack
            .metric("baton_worker_dropped_packets_total", &[("reason", r)])
            .unwrap()
    };
    // Frame by frame, so a miss names the frame and where it was counted.
    for (reason, frames) in &cases {
        for (i, f) in frames.iter().enumerate() {
            let all0 = drops_and_lookups(&sys);
            let before = drops(&sys, reason);
            let f = f.clone();
            sys.in_client(0, move || -> std::io::Result<()> {
                let tx = FrameSender::open(DATA_IF)?;
                for _ in 0..ROUNDS {
                    tx.send(sw_mac, ETH_P_IPV6, &f)?;
                }
                Ok(())
            })
            .unwrap()
            .expect("raw frames");
            let want = before + ROUNDS as f64;
            sys.wait_until(
                &format!("{ROUNDS} drops of {reason} frame {i} counted"),
                Duration::from_secs(5),
                || Ok(drops(&sys, reason) >= want),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "{e}; counted instead: {:?}",
                    delta(&all0, &drops_and_lookups(&sys))
                )
            });
        }
    }
    sys.stack.ensure_running().expect("the switch survived");
    assert_eq!(sys.get_at(vip6(), OBJ_1K.path).expect("GET").status, 200);
    assert_eq!(sys.get(OBJ_1K.path).expect("GET").status, 200);
}
