//! Switch conformance over real packet I/O: the same scenarios, unchanged,
//! over AF_PACKET, AF_XDP (with the XDP fast path relaying FORWARDING
//! flows) and DPDK (the af_packet PMD), with real Linux TCP/IP stacks as the
//! client and the backend host.
//!
//! Topology (all in namespaces this test makes, removed on drop):
//!
//! ```text
//!  client ns  c0 198.18.0.101 ─┐
//!  agent ns   a0 198.18.0.11  ─┼─ br0 (hub ns) ─ data0 (switch ns, no IP)
//!                              │                  └ Worker over AF_PACKET/DPDK
//! ```
//!
//! The test is the control plane (answers dispatch requests) and a fake
//! agent (a UDP socket on 198.18.0.11:9199 that decodes THOP_CREATE with
//! `handoff-proto` and answers THOP_ACK). It checks: ARP for the VIP, ICMP
//! echo of the VIP, the handshake and request from a real kernel TCP client,
//! THOP_CREATE to the agent carrying that request and the client's endpoints,
//! and, after the ACK, client packets forwarded to the backend's MAC.
//!
//! The IPv6 scenario runs the same path on a dual-stack bed (client
//! 2001:2::101, agent 2001:2::11, switch 2001:2::2, VIP 2001:2::10): the
//! client's kernel resolves the VIP by neighbour discovery and pings it over
//! ICMPv6, the switch resolves the agent's MAC by soliciting it, THOP runs
//! over IPv6.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use dataplane::config::WorkerConfig;
use dataplane::dispatch::{
    channels, BackendTarget, ControlQueues, Decision, HandoffOutcome, Verdict, WorkerEvent,
};
use dataplane::io::{open, AfPacketConfig, AnyQueue, IoConfig, PollMode};
use dataplane::worker::Worker;
use handoff_proto::Key;
use testkit::fake_agent::FakeAgent;
use testkit::netns::{parse_mac, unique, Netns};
use testkit::raw_socket::{test_frame, RawSock};
use testkit::require_root;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const SWITCH_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const AGENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10);
const SWITCH_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const AGENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11);
const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x101);
const THOP_PORT: u16 = 9199;
const KEY: [u8; 32] = [0x5a; 32];
const DATA_IF: &str = "data0";

#[derive(Clone, Copy, Debug)]
enum Backend {
    AfPacket,
    /// AF_PACKET with the TPACKET_V2 (immediate) receive ring.
    AfPacketV2,
    #[allow(dead_code)]
    Dpdk,
    /// AF_XDP with the fast path: after the ACK, the client's ordinary
    /// segments are relayed by the XDP program, not the worker.
    #[allow(dead_code)]
    AfXdp,
}

/// The namespaces and links of one test.
struct Bed {
    // Dropped in this order: the hub (bridge) last.
    client: Netns,
    agent: Netns,
    switch: Netns,
    _hub: Netns,
    prefix: String,
    /// Client and agent have IPv6 addresses too; the switch serves VIP6.
    dual_stack: bool,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

impl Bed {
    /// The bed `backend` needs for `workers` workers: over AF_XDP the
    /// switch's veth has one queue per worker, and its hub end takes the
    /// frames the XDP program transmits (a veth accepts XDP_TX frames only
    /// when its peer runs NAPI: an XDP program turns it on).
    fn for_backend(backend: Backend, workers: usize) -> Bed {
        Bed::build(backend, workers, false)
    }

    /// The bed with IPv6 on the client and the agent host (addresses
    /// usable at once: no duplicate-address detection, no router
    /// solicitations). The switch's namespace keeps IPv6 off: its kernel
    /// must not answer for the port the switch owns.
    fn dual_stack(backend: Backend, workers: usize) -> Bed {
        Bed::build(backend, workers, true)
    }

    fn build(backend: Backend, workers: usize, dual_stack: bool) -> Bed {
        let hub = Netns::new("bpk-h");
        if dual_stack {
            // MLD snooping with the bridge as querier, as on a datacenter
            // switch: a multicast group someone reported goes only to the
            // ports that reported it.
            hub.sysctl("net.ipv6.conf.all.accept_dad", "0");
            hub.sysctl("net.ipv6.conf.default.accept_dad", "0");
            hub.ip(&[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "1",
                "mcast_querier",
                "1",
            ]);
        } else {
            hub.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
            hub.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
            hub.ip(&["link", "add", "br0", "type", "bridge"]);
        }
        hub.ip(&["link", "set", "br0", "up"]);
        let host = |tag: &str| {
            let ns = Netns::new(tag);
            if dual_stack {
                for k in ["all", "default"] {
                    ns.sysctl(&format!("net.ipv6.conf.{k}.accept_dad"), "0");
                    ns.sysctl(&format!("net.ipv6.conf.{k}.router_solicitations"), "0");
                }
                ns
            } else {
                ns.no_ipv6()
            }
        };
        let (client, agent, switch) = (host("bpk-c"), host("bpk-a"), Netns::new("bpk-s").no_ipv6());
        for (ns, ifc, port) in [
            (&client, "c0", "pc"),
            (&agent, "a0", "pa"),
            (&switch, DATA_IF, "ps"),
        ] {
            if matches!(backend, Backend::AfXdp) && ifc == DATA_IF {
                ns.veth_queues(ifc, &hub, port, workers as u32);
                peer_napi(&hub, port);
            } else {
                ns.veth(ifc, &hub, port);
            }
            hub.ip(&["link", "set", port, "master", "br0"]);
        }
        client.ip(&["addr", "add", "198.18.0.101/24", "dev", "c0"]);
        agent.ip(&["addr", "add", "198.18.0.11/24", "dev", "a0"]);
        if dual_stack {
            let a = |ip: Ipv6Addr| format!("{ip}/64");
            client.ip(&["addr", "add", &a(CLIENT_IP6), "dev", "c0", "nodad"]);
            agent.ip(&["addr", "add", &a(AGENT_IP6), "dev", "a0", "nodad"]);
            // An address whose solicited-node group is the VIP's: the agent
            // host's kernel reports that group, so the snooping bridge sends
            // it only where it was reported — the switch must report it too.
            agent.ip(&["addr", "add", "2001:2:0:1::10/64", "dev", "a0", "nodad"]);
        }
        Bed {
            client,
            agent,
            switch,
            _hub: hub,
            prefix: unique("bpk-e"),
            dual_stack,
        }
    }

    /// `qpairs`: queue pairs of the af_packet PMD (DPDK only).
    fn io_config(&self, backend: Backend, workers: usize, qpairs: usize) -> IoConfig {
        let _ = workers;
        match backend {
            Backend::AfPacket | Backend::AfPacketV2 => {
                let mut c = AfPacketConfig::new(DATA_IF);
                c.poll = PollMode::ADAPTIVE;
                if matches!(backend, Backend::AfPacketV2) {
                    c.ring = dataplane::io::AfPacketRing::V2;
                }
                IoConfig::AfPacket(c)
            }
            Backend::Dpdk => {
                let mut vdev = format!(
                    "--vdev=net_af_packet0,iface={DATA_IF},framecnt=512,blocksz=4096,framesz=2048"
                );
                if qpairs > 1 {
                    vdev.push_str(&format!(",qpairs={qpairs}"));
                }
                let args = [
                    "--no-huge".to_string(),
                    "--no-pci".into(),
                    "-m".into(),
                    "512".into(),
                    "-l".into(),
                    "0".into(),
                    "--no-telemetry".into(),
                    "--log-level=lib.eal:error".into(),
                    vdev,
                    format!("--file-prefix={}", self.prefix),
                ];
                let mut c = dataplane::io::DpdkConfig::new(
                    args.to_vec(),
                    dataplane::io::DpdkPort::Name("net_af_packet0".into()),
                );
                c.rx_ring_size = 512;
                c.tx_ring_size = 512;
                c.poll = PollMode::ADAPTIVE;
                IoConfig::Dpdk(c)
            }
            Backend::AfXdp => {
                let mut c = dataplane::io::AfXdpConfig::new(DATA_IF);
                c.frame_count = 2048;
                c.ring_size = 512;
                c.poll = PollMode::ADAPTIVE;
                IoConfig::AfXdp(c)
            }
        }
    }
}

/// Attaches the pass-everything XDP program to `port` (in `ns`), so that
/// the veth accepts the frames its peer's XDP program transmits.
#[cfg(feature = "af_xdp")]
fn peer_napi(ns: &Netns, port: &str) {
    let path = std::env::temp_dir().join(format!("{}-pass.bpf.o", unique("bpk-x")));
    std::fs::write(&path, dataplane::io::af_xdp::program::pass_program_object()).unwrap();
    let obj = path.to_string_lossy().to_string();
    ns.ip(&[
        "link", "set", "dev", port, "xdpdrv", "obj", &obj, "sec", "xdp",
    ]);
    let _ = std::fs::remove_file(&path);
}

#[cfg(not(feature = "af_xdp"))]
fn peer_napi(_: &Netns, _: &str) {
    unreachable!("AF_XDP beds exist only with the af_xdp feature")
}

/// The running switch: workers on their threads.
struct Switch {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    control: ControlQueues,
    mac: [u8; 6],
    steering: &'static str,
    counters: Vec<Arc<dataplane::counters::Counters>>,
    monitor: Arc<dyn dataplane::io::PortMonitor>,
}

impl Switch {
    /// Opens the data port in the switch namespace (this thread enters it)
    /// and starts `workers` workers.
    fn start(bed: &Bed, backend: Backend, workers: usize, qpairs: usize) -> Switch {
        bed.switch.enter();
        let queues: Vec<AnyQueue> =
            open(&bed.io_config(backend, workers, qpairs), workers).expect("open the data port");
        let mac = queues[0].mac();
        let monitor = queues[0].monitor();
        let steering = monitor.steering();
        let mut services = WorkerConfig::default().services;
        if bed.dual_stack {
            services.push(dataplane::config::Service {
                vip: IpAddr::V6(VIP6),
                port: 80,
                protocol: dataplane::config::Protocol::Http,
            });
        }
        let cfg = WorkerConfig {
            services,
            mac,
            ip: IpAddr::V4(SWITCH_IP),
            ip6: bed.dual_stack.then_some(SWITCH_IP6),
            thop: dataplane::config::ThopConfig {
                port: THOP_PORT,
                key_id: 1,
                keys: vec![(1, KEY)],
                peers: Vec::new(),
            },
            table_capacity: 1024,
            pending_capacity: 64,
            poll: PollMode::ADAPTIVE,
            ..WorkerConfig::default()
        };
        let (wqs, control) = channels(workers, 256);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut counters = Vec::new();
        for (i, (q, wq)) in queues.into_iter().zip(wqs).enumerate() {
            let mut w = Worker::new(i as u16, &cfg, q, wq).expect("worker config");
            counters.push(w.counters());
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || w.run(&stop)));
        }
        Switch {
            stop,
            threads,
            control,
            mac,
            steering,
            counters,
            monitor,
        }
    }

    /// A worker counter summed over workers.
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .map(|c| {
                c.snapshot()
                    .scalars
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, v)| *v)
            })
            .sum()
    }

    /// Frames all workers dropped for `reason`.
    fn dropped(&self, reason: dataplane::counters::DropReason) -> u64 {
        self.counters.iter().map(|c| c.dropped(reason)).sum()
    }

    /// Answers every dispatch request with `target` until `n` were answered
    /// and `n` handoffs were acknowledged, or 20 s passed.
    fn serve(
        &self,
        target: &BackendTarget,
        n: usize,
    ) -> (Vec<dataplane::dispatch::DispatchRequest>, usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut reqs, mut acked) = (Vec::new(), 0);
        while (reqs.len() < n || acked < n) && Instant::now() < deadline {
            if let Ok(r) = self
                .control
                .requests
                .recv_timeout(Duration::from_millis(20))
            {
                let d = Decision {
                    token: r.token,
                    verdict: Verdict::Backend(target.clone()),
                    pool: 0,
                    header: r.header.clone(),
                };
                assert!(self.control.decide(d).is_ok(), "decision queue full");
                reqs.push(r);
            }
            while let Ok(ev) = self.control.events.try_recv() {
                if let WorkerEvent::Handoff { outcome, .. } = ev {
                    assert_eq!(outcome, HandoffOutcome::Acked, "handoff outcome");
                    acked += 1;
                }
            }
        }
        (reqs, acked)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.control.commander().wake_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One ICMP echo to `dst` from the calling thread's namespace; true when the
/// matching reply arrived.
fn ping(dst: Ipv4Addr, id: u16) -> bool {
    // SAFETY: plain syscalls on a socket we own; results checked.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        );
        assert!(fd >= 0);
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            16,
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from(dst).to_be();
        let mut ok = false;
        for seq in 1..=10u16 {
            let mut pkt = [
                8u8, 0, 0, 0, 0, 0, 0, 0, b'b', b'a', b't', b'o', b'n', 0, 0, 0,
            ];
            pkt[4..6].copy_from_slice(&id.to_be_bytes());
            pkt[6..8].copy_from_slice(&seq.to_be_bytes());
            let ck = checksum(&pkt);
            pkt[2..4].copy_from_slice(&ck.to_be_bytes());
            libc::sendto(
                fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                16,
            );
            let mut buf = [0u8; 1500];
            let end = Instant::now() + Duration::from_millis(500);
            while Instant::now() < end {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                if n < 28 {
                    continue;
                }
                let ihl = (buf[0] & 0xf) as usize * 4;
                let icmp = &buf[ihl..n as usize];
                let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                if src == dst
                    && icmp[0] == 0
                    && icmp[4..6] == id.to_be_bytes()
                    && icmp[6..8] == seq.to_be_bytes()
                {
                    ok = icmp[8..] == pkt[8..] && checksum(icmp) == 0;
                    break;
                }
            }
            if ok {
                break;
            }
        }
        libc::close(fd);
        ok
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The MAC the namespace's kernel resolved `ip` to (ARP or neighbour
/// discovery).
fn neighbour_mac(ns: &Netns, ip: impl Into<IpAddr>) -> Option<[u8; 6]> {
    let ip: IpAddr = ip.into();
    let out = ns
        .command("ip")
        .args(["neigh", "show", &ip.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)?;
    Some(parse_mac(mac))
}

/// A TCP segment to the VIP (IPv4) or VIP6 (IPv6) the capture saw:
/// (dst MAC, src port, flags, payload).
fn tcp_to_vip(f: &[u8]) -> Option<([u8; 6], u16, u8, Vec<u8>)> {
    if f.len() >= 74 && f[12..14] == [0x86, 0xdd] {
        if f[20] != 6 || f[38..54] != VIP6.octets() {
            return None;
        }
        let plen = u16::from_be_bytes([f[18], f[19]]) as usize;
        let tcp = f.get(54..54 + plen)?;
        let doff = (tcp[12] >> 4) as usize * 4;
        let payload = tcp.get(doff..)?.to_vec();
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&f[0..6]);
        return Some((mac, u16::from_be_bytes([tcp[0], tcp[1]]), tcp[13], payload));
    }
    if f.len() < 54 || f[12..14] != [8, 0] || f[23] != 6 || f[30..34] != VIP.octets() {
        return None;
    }
    let ihl = (f[14] & 0xf) as usize * 4;
    let tcp = f.get(14 + ihl..)?;
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    let doff = (tcp[12] >> 4) as usize * 4;
    let payload = f.get(14 + ihl + doff..14 + total)?.to_vec();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[0..6]);
    Some((mac, u16::from_be_bytes([tcp[0], tcp[1]]), tcp[13], payload))
}

/// The fake agent on `ip`:THOP_PORT in the agent namespace, collecting
/// `conns` CREATEs on its thread, and a capture of the agent host's port.
fn fake_agent(
    bed: &Bed,
    ip: IpAddr,
    conns: usize,
) -> (
    std::thread::JoinHandle<Vec<testkit::fake_agent::Adopted>>,
    RawSock,
) {
    let sock = bed
        .agent
        .spawn(move || UdpSocket::bind((ip, THOP_PORT)).unwrap())
        .join()
        .unwrap();
    let agent = std::thread::spawn(move || {
        FakeAgent::new(sock, ip, Key::new(1, KEY))
            .strict()
            .collect(conns, Duration::from_secs(20))
    });
    let capture = bed.agent.spawn(|| RawSock::open("a0")).join().unwrap();
    (agent, capture)
}

/// `conns` real kernel TCP clients of `vip` in the client namespace, each
/// sending `GET /<path>/<i>`; once told to go they send more data and their
/// FIN. The thread returns the clients' ports.
fn clients(
    bed: &Bed,
    vip: SocketAddr,
    path: &'static str,
    conns: usize,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<Vec<u16>>) {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = bed.client.spawn(move || {
        let mut streams = Vec::new();
        for i in 0..conns {
            let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("TCP handshake with the switch at {vip}: {e}"));
            let req = format!("GET /{path}/{i} HTTP/1.1\r\nHost: vip.test\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            streams.push(s);
        }
        let ports: Vec<u16> = streams
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        go_rx.recv_timeout(Duration::from_secs(30)).expect("go");
        for s in &mut streams {
            s.write_all(b"after-ack").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Keep the sockets until the capture saw the packets; no response
        // comes (the agent is fake), so a short read with timeout.
        for s in &mut streams {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let _ = s.read(&mut [0u8; 16]);
        }
        ports
    });
    (go_tx, client)
}

/// Client ports whose data (`after-ack`) and whose FIN the capture saw
/// forwarded (to `backend_mac`, from `switch_mac`), until all `conns` or 15 s.
fn forwarded(
    capture: &RawSock,
    conns: usize,
    backend_mac: [u8; 6],
    switch_mac: [u8; 6],
) -> (HashSet<u16>, HashSet<u16>) {
    let (mut data_seen, mut fin_seen) = (HashSet::new(), HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    while (data_seen.len() < conns || fin_seen.len() < conns) && Instant::now() < deadline {
        let Some(f) = capture.recv(Duration::from_millis(200)) else {
            continue;
        };
        if let Some((dst, sport, flags, payload)) = tcp_to_vip(&f) {
            assert_eq!(dst, backend_mac, "forwarded to the backend MAC");
            assert_eq!(&f[6..12], &switch_mac, "source MAC is the switch");
            if payload.ends_with(b"after-ack") {
                data_seen.insert(sport);
            }
            if flags & 0x01 != 0 {
                fin_seen.insert(sport);
            }
        }
    }
    (data_seen, fin_seen)
}

/// The whole path for `conns` connections through `workers` workers.
fn handoff_scenario(backend: Backend, workers: usize, conns: usize) {
    handoff_scenario_with(backend, workers, workers, conns)
}

fn handoff_scenario_with(backend: Backend, workers: usize, qpairs: usize, conns: usize) {
    let bed = Bed::for_backend(backend, workers);
    let agent_mac = bed.agent.mac("a0");
    let sw = Switch::start(&bed, backend, workers, qpairs);
    assert_eq!(sw.steering, expected_steering(backend, workers, qpairs));

    // ARP and ICMP for the VIP, from the client's kernel.
    let pinged = bed.client.spawn(|| ping(VIP, 0xba70)).join().unwrap();
    assert!(pinged, "ICMP echo to the VIP answered");
    assert_eq!(
        neighbour_mac(&bed.client, VIP),
        Some(sw.mac),
        "the VIP resolves to the switch's MAC"
    );

    // Fake agent and a capture of what reaches the backend host; real
    // kernel TCP clients: handshake, request; more data and FIN once the
    // handoff is acknowledged.
    let (agent, capture) = fake_agent(&bed, IpAddr::V4(AGENT_IP), conns);
    let (go_tx, client) = clients(&bed, SocketAddr::new(VIP.into(), 80), "conformance", conns);

    let target = BackendTarget {
        id: 7,
        ip: IpAddr::V4(AGENT_IP),
        mac: None, // resolved by the switch's ARP
        thop: SocketAddr::new(AGENT_IP.into(), THOP_PORT),
    };
    let (reqs, acked) = sw.serve(&target, conns);
    assert_eq!(reqs.len(), conns, "dispatch requests");
    assert_eq!(acked, conns, "handoffs acknowledged");
    let adopted = agent.join().unwrap();
    assert_eq!(adopted.len(), conns, "THOP_CREATE reached the agent");
    for a in &adopted {
        assert_eq!(a.vip, SocketAddr::new(VIP.into(), 80));
        assert_eq!(a.client.ip(), IpAddr::V4(CLIENT_IP));
        assert_eq!(
            a.from,
            SocketAddr::new(SWITCH_IP.into(), THOP_PORT),
            "THOP from the data address"
        );
        let text = String::from_utf8_lossy(&a.request);
        assert!(
            text.starts_with("GET /conformance/") && text.ends_with("\r\n\r\n"),
            "{text:?}"
        );
    }
    for r in &reqs {
        assert!(r.header.starts_with(b"GET /conformance/"));
    }

    go_tx.send(()).unwrap();
    // After the ACK: the client's data and FIN arrive at the backend's MAC.
    let (data_seen, fin_seen) = forwarded(&capture, conns, agent_mac, sw.mac);
    let ports = client.join().unwrap();
    for p in &ports {
        assert!(
            data_seen.contains(p),
            "data of client port {p} forwarded: {data_seen:?}"
        );
        assert!(
            fin_seen.contains(p),
            "FIN of client port {p} forwarded: {fin_seen:?}"
        );
    }
    for a in &adopted {
        assert!(
            ports.contains(&a.client.port()),
            "CREATE names a real client port"
        );
    }
    if matches!(backend, Backend::AfXdp) {
        // Every connection was offered to the kernel, and the kernel relayed
        // (at least) each client's data segment; the FINs went through the
        // workers, which judged them.
        assert_eq!(sw.counter("offload_inserted"), conns as u64);
        let fp = sw
            .monitor
            .fast_path()
            .expect("AF_XDP reports its fast path");
        assert!(
            fp.forwarded_packets >= conns as u64,
            "the XDP program relayed the data segments: {fp:?}"
        );
        assert_eq!(fp.flows, conns as u64, "flows stay until their entries go");
        assert_eq!(fp.mode, "native");
    }

    // Frames that are not for the switch are dropped and counted: IPv4 to an
    // address it does not serve, and an EtherType it does not speak.
    use dataplane::counters::DropReason;
    let not_for_us = sw.dropped(DropReason::NotForUs);
    let unsupported = sw.dropped(DropReason::Unsupported);
    let client_mac = bed.client.mac("c0");
    let stray = bed.client.spawn(|| RawSock::open("c0")).join().unwrap();
    // A TCP SYN to 198.18.0.99:80 (an address the switch does not serve).
    let mut other_ip = Vec::with_capacity(60);
    other_ip.extend_from_slice(&sw.mac);
    other_ip.extend_from_slice(&client_mac);
    other_ip.extend_from_slice(&[0x08, 0x00]);
    let mut ip_hdr = [
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 101, 198, 18, 0, 99,
    ];
    let ck = checksum(&ip_hdr);
    ip_hdr[10..12].copy_from_slice(&ck.to_be_bytes());
    other_ip.extend_from_slice(&ip_hdr);
    other_ip.extend_from_slice(&[
        0x04, 0xd2, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    other_ip.resize(60, 0);
    let odd_type = test_frame(sw.mac, client_mac, 2, 60);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && (sw.dropped(DropReason::NotForUs) == not_for_us
            || sw.dropped(DropReason::Unsupported) == unsupported)
    {
        stray.send(&other_ip);
        stray.send(&odd_type);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sw.dropped(DropReason::NotForUs) > not_for_us,
        "IPv4 to 198.18.0.99 counted not_for_us"
    );
    assert!(
        sw.dropped(DropReason::Unsupported) > unsupported,
        "EtherType 0x88b5 counted unsupported"
    );

    // Garbage on the wire never stops a worker: seeded random frames (runts,
    // random EtherTypes, IPv4 headers with random fields) to the switch's
    // MAC and to broadcast, then the VIP still answers.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..600u32 {
        let len = 14 + (rnd() % 1500) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        f[0..6].copy_from_slice(if i % 5 == 0 { &[0xff; 6] } else { &sw.mac });
        f[6..12].copy_from_slice(&client_mac);
        match i % 3 {
            0 => f[12..14].copy_from_slice(&[0x08, 0x00]),
            1 => f[12..14].copy_from_slice(&[0x08, 0x06]),
            _ => {}
        }
        if i % 3 == 0 && f.len() > 34 {
            f[14] = 0x45;
            f[30..34].copy_from_slice(&VIP.octets());
        }
        stray.send(&f);
    }
    let alive = bed.client.spawn(|| ping(VIP, 0xba71)).join().unwrap();
    assert!(alive, "the switch still answers after garbage");
    assert!(
        sw.threads.iter().all(|t| !t.is_finished()),
        "no worker stopped"
    );
    drop(sw);
    drop(bed);
}

/// One ICMPv6 echo to `dst` from the calling thread's namespace; true when
/// the matching reply arrived (the kernel fills in ICMPv6 checksums).
fn ping6(dst: Ipv6Addr, id: u16) -> bool {
    // SAFETY: plain syscalls on a socket we own; results checked.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        );
        assert!(fd >= 0);
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            16,
        );
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as u16;
        sa.sin6_addr.s6_addr = dst.octets();
        let salen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        let mut ok = false;
        for seq in 1..=10u16 {
            let mut pkt = [128u8, 0, 0, 0, 0, 0, 0, 0, b'b', b'a', b't', b'o', b'n', 6];
            pkt[4..6].copy_from_slice(&id.to_be_bytes());
            pkt[6..8].copy_from_slice(&seq.to_be_bytes());
            libc::sendto(
                fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in6).cast(),
                salen,
            );
            let mut buf = [0u8; 1500];
            let end = Instant::now() + Duration::from_millis(500);
            while Instant::now() < end {
                let mut from: libc::sockaddr_in6 = std::mem::zeroed();
                let mut flen = salen;
                let n = libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_in6).cast(),
                    &mut flen,
                );
                if n < 8 {
                    continue;
                }
                let icmp = &buf[..n as usize];
                if Ipv6Addr::from(from.sin6_addr.s6_addr) == dst
                    && icmp[0] == 129
                    && icmp[4..6] == id.to_be_bytes()
                    && icmp[6..8] == seq.to_be_bytes()
                {
                    ok = icmp[8..] == pkt[8..];
                    break;
                }
            }
            if ok {
                break;
            }
        }
        libc::close(fd);
        ok
    }
}

/// The whole path over IPv6 for `conns` connections through `workers`
/// workers, on a dual-stack bed: neighbour discovery both ways (the
/// client's kernel resolves the VIP, the switch solicits the agent host),
/// ICMPv6 echo, real IPv6 TCP clients, THOP over IPv6, forwarding to the
/// backend's MAC; then an IPv4 connection on the same switch, and IPv6
/// garbage that must not stop a worker.
fn ipv6_scenario(backend: Backend, workers: usize, conns: usize) {
    let bed = Bed::dual_stack(backend, workers);
    let agent_mac = bed.agent.mac("a0");
    let sw = Switch::start(&bed, backend, workers, workers);

    // The switch reported the VIP's solicited-node group on its port.
    let group = "ff02::1:ff00:10";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mdb = || {
        let out = bed
            ._hub
            .command("bridge")
            .args(["mdb", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    while !mdb()
        .lines()
        .any(|l| l.contains("port ps ") && l.contains(group))
    {
        assert!(
            Instant::now() < deadline,
            "the bridge learnt no listener of {group} on the switch's port:\n{}",
            mdb()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sw.counter("mld_reports_sent") >= 1);

    let pinged = bed.client.spawn(|| ping6(VIP6, 0xba76)).join().unwrap();
    assert!(pinged, "ICMPv6 echo to the IPv6 VIP answered");
    assert_eq!(
        neighbour_mac(&bed.client, VIP6),
        Some(sw.mac),
        "the IPv6 VIP resolves to the switch's MAC by neighbour discovery"
    );
    assert!(sw.counter("nd_adverts_sent") >= 1);

    let (agent, capture) = fake_agent(&bed, IpAddr::V6(AGENT_IP6), conns);
    let (go_tx, client) = clients(&bed, SocketAddr::new(VIP6.into(), 80), "v6", conns);

    // No MAC given: the switch solicits the agent host's address.
    let target = BackendTarget {
        id: 7,
        ip: IpAddr::V6(AGENT_IP6),
        mac: None,
        thop: SocketAddr::new(AGENT_IP6.into(), THOP_PORT),
    };
    let (reqs, acked) = sw.serve(&target, conns);
    assert_eq!(
        (reqs.len(), acked),
        (conns, conns),
        "dispatched and acknowledged"
    );
    assert!(
        sw.counter("nd_solicits_sent") >= 1,
        "the agent host was solicited"
    );
    let adopted = agent.join().unwrap();
    assert_eq!(
        adopted.len(),
        conns,
        "THOP_CREATE over IPv6 reached the agent"
    );
    for a in &adopted {
        assert_eq!(a.vip, SocketAddr::new(VIP6.into(), 80));
        assert_eq!(a.client.ip(), IpAddr::V6(CLIENT_IP6));
        assert_eq!(
            a.from,
            SocketAddr::new(SWITCH_IP6.into(), THOP_PORT),
            "THOP from the switch's IPv6 data address"
        );
        assert!(String::from_utf8_lossy(&a.request).starts_with("GET /v6/"));
    }

    go_tx.send(()).unwrap();
    let (data_seen, fin_seen) = forwarded(&capture, conns, agent_mac, sw.mac);
    let ports = client.join().unwrap();
    for p in &ports {
        assert!(
            data_seen.contains(p),
            "data of [{CLIENT_IP6}]:{p} forwarded"
        );
        assert!(fin_seen.contains(p), "FIN of [{CLIENT_IP6}]:{p} forwarded");
    }

    // The same switch still serves IPv4: a handshake to the IPv4 VIP.
    let v4 = bed
        .client
        .spawn(|| {
            TcpStream::connect_timeout(&SocketAddr::new(VIP.into(), 80), Duration::from_secs(10))
        })
        .join()
        .unwrap();
    assert!(v4.is_ok(), "IPv4 handshake on the dual-stack switch");

    // IPv6 garbage: truncated headers, random next headers and extension
    // chains, to the switch's MAC and to the all-nodes group.
    use dataplane::counters::DropReason;
    let client_mac = bed.client.mac("c0");
    let stray = bed.client.spawn(|| RawSock::open("c0")).join().unwrap();
    let before = sw.dropped(DropReason::Malformed) + sw.dropped(DropReason::Ipv6ExtChain);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..600u32 {
        let len = 14 + (rnd() % 400) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        let all_nodes = [0x33, 0x33, 0, 0, 0, 1];
        f[0..6].copy_from_slice(if i % 5 == 0 { &all_nodes } else { &sw.mac });
        f[6..12].copy_from_slice(&client_mac);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        if f.len() > 54 {
            f[14] = 0x60;
            // Payload length within the frame half the time; a chain of
            // Destination Options headers a third of the time.
            if i % 2 == 0 {
                f[18..20].copy_from_slice(&((len - 54) as u16).to_be_bytes());
            }
            if i % 3 == 0 {
                f[20] = 60;
                f[38..54].copy_from_slice(&VIP6.octets());
            }
        }
        stray.send(&f);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sw.dropped(DropReason::Malformed) + sw.dropped(DropReason::Ipv6ExtChain) == before
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sw.dropped(DropReason::Malformed) + sw.dropped(DropReason::Ipv6ExtChain) > before,
        "IPv6 garbage counted"
    );
    let alive = bed.client.spawn(|| ping6(VIP6, 0xba77)).join().unwrap();
    assert!(alive, "the switch still answers ICMPv6 after garbage");
    assert!(
        sw.threads.iter().all(|t| !t.is_finished()),
        "no worker stopped"
    );
    drop(sw);
    drop(bed);
}

fn expected_steering(backend: Backend, workers: usize, qpairs: usize) -> &'static str {
    match (backend, workers, qpairs) {
        (_, 1, _) => "single",
        (Backend::AfPacket | Backend::AfPacketV2, _, _) => "fanout-hash",
        (Backend::Dpdk, w, q) if q >= w => "pmd-fanout",
        (Backend::Dpdk, _, _) => "software",
        (Backend::AfXdp, _, _) => "rss",
    }
}

// ---- AF_XDP (native XDP on the veth, the fast path on) ----

#[cfg(feature = "af_xdp")]
#[test]
fn afxdp_handoff_one_worker_fast_path() {
    require_root();
    handoff_scenario(Backend::AfXdp, 1, 1);
}

#[cfg(feature = "af_xdp")]
#[test]
fn afxdp_ipv6_one_worker() {
    require_root();
    ipv6_scenario(Backend::AfXdp, 1, 2);
}

#[cfg(feature = "af_xdp")]
#[test]
fn afxdp_handoff_two_workers_fast_path() {
    require_root();
    handoff_scenario(Backend::AfXdp, 2, 6);
}

// ---- AF_PACKET ----

#[test]
fn afpacket_handoff_one_worker() {
    require_root();
    handoff_scenario(Backend::AfPacket, 1, 1);
}

#[test]
fn afpacket_handoff_two_workers_fanout() {
    require_root();
    handoff_scenario(Backend::AfPacket, 2, 6);
}

#[test]
fn afpacket_ipv6_one_worker() {
    require_root();
    ipv6_scenario(Backend::AfPacket, 1, 1);
}

#[test]
fn afpacket_ipv6_two_workers_fanout() {
    require_root();
    ipv6_scenario(Backend::AfPacket, 2, 6);
}

#[test]
fn afpacket_v2_handoff_two_workers_fanout() {
    require_root();
    handoff_scenario(Backend::AfPacketV2, 2, 6);
}

// ---- DPDK ----

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_handoff_one_worker() {
    testkit::dpdk::isolated("dpdk_handoff_one_worker", || {
        handoff_scenario(Backend::Dpdk, 1, 1)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_handoff_two_workers_pmd_fanout() {
    testkit::dpdk::isolated("dpdk_handoff_two_workers_pmd_fanout", || {
        handoff_scenario(Backend::Dpdk, 2, 6)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_handoff_two_workers_software_steering() {
    // One PMD queue pair for two workers: frames are steered in software.
    testkit::dpdk::isolated("dpdk_handoff_two_workers_software_steering", || {
        handoff_scenario_with(Backend::Dpdk, 2, 1, 6)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_ipv6_one_worker() {
    testkit::dpdk::isolated("dpdk_ipv6_one_worker", || {
        ipv6_scenario(Backend::Dpdk, 1, 1)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_ipv6_two_workers_pmd_fanout() {
    testkit::dpdk::isolated("dpdk_ipv6_two_workers_pmd_fanout", || {
        ipv6_scenario(Backend::Dpdk, 2, 6)
    });
}
