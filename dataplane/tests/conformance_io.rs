//! Backend-level conformance: the same scenarios over AF_PACKET and DPDK
//! (the af_packet PMD on a veth), through [`dataplane::io::open`] and
//! [`AnyQueue`], exactly as the `baton` binary opens the data port.
//!
//! Each test builds its own namespace with a veth pair `io0` ↔ `peer0`; the
//! backend opens `io0`, a raw socket on `peer0` plays the wire. DPDK's EAL
//! starts once per process, so every DPDK test runs in its own process
//! (nextest does this; under plain `cargo test` the test re-executes itself).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::doorbell::Doorbell;
use dataplane::io::{
    open, AfPacketConfig, AnyBuf, AnyQueue, IoConfig, IoError, PacketBuf, PacketIo,
};
use testkit::netns::{unique, Netns};
use testkit::raw_socket::{test_frame, test_seq, RawSock};
use testkit::require_root;

const IFC: &str = "io0";
const PEER: &str = "peer0";

/// One test's world: a namespace with the veth pair, entered by this thread.
struct Bed {
    ns: Netns,
    peer: RawSock,
    io_mac: [u8; 6],
    peer_mac: [u8; 6],
    /// DPDK `--file-prefix` of this test (its run-time folder is removed on drop).
    prefix: String,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

impl Bed {
    fn new() -> Bed {
        Self::with_queues(1)
    }

    /// A bed whose veth ends have `queues` receive/transmit queues each
    /// (AF_XDP serves one queue per worker).
    fn with_queues(queues: u32) -> Bed {
        let ns = Netns::new("bpk-io").no_ipv6();
        if queues == 1 {
            ns.veth(IFC, &ns, PEER);
        } else {
            ns.veth_queues(IFC, &ns, PEER, queues);
        }
        ns.enter();
        let peer = RawSock::open(PEER);
        let (io_mac, peer_mac) = (ns.mac(IFC), ns.mac(PEER));
        Bed {
            ns,
            peer,
            io_mac,
            peer_mac,
            prefix: unique("bpk-e"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    AfPacket,
    /// AF_PACKET with the TPACKET_V2 (immediate) receive ring.
    AfPacketV2,
    #[allow(dead_code)]
    Dpdk,
    /// AF_XDP sockets with the XDP program (fast path on, no flows offered:
    /// every frame reaches the queue).
    #[allow(dead_code)]
    AfXdp,
}

/// The bed a backend needs for `workers` workers.
fn bed_for(backend: Backend, workers: usize) -> Bed {
    match backend {
        Backend::AfXdp => Bed::with_queues(workers as u32),
        _ => Bed::new(),
    }
}

fn config(backend: Backend, bed: &Bed, workers: usize) -> IoConfig {
    config_with(backend, bed, workers, workers)
}

/// `qpairs`: the af_packet PMD's queue pairs (DPDK only).
fn config_with(backend: Backend, bed: &Bed, workers: usize, qpairs: usize) -> IoConfig {
    let _ = workers;
    match backend {
        Backend::AfPacket => IoConfig::AfPacket(AfPacketConfig::new(IFC)),
        Backend::AfPacketV2 => IoConfig::AfPacket(AfPacketConfig {
            ring: dataplane::io::AfPacketRing::V2,
            ..AfPacketConfig::new(IFC)
        }),
        Backend::Dpdk => {
            let mut vdev =
                format!("--vdev=net_af_packet0,iface={IFC},framecnt=512,blocksz=4096,framesz=2048");
            if qpairs > 1 {
                vdev.push_str(&format!(",qpairs={qpairs}"));
            }
            let prefix = format!("--file-prefix={}", bed.prefix);
            let args = [
                "--no-huge",
                "--no-pci",
                "-m",
                "512",
                "-l",
                "0",
                "--no-telemetry",
                "--log-level=lib.eal:error",
                &vdev,
                &prefix,
            ];
            let mut c = dataplane::io::DpdkConfig::new(
                args.iter().map(|s| s.to_string()).collect(),
                dataplane::io::DpdkPort::Name("net_af_packet0".into()),
            );
            c.rx_ring_size = 512;
            c.tx_ring_size = 512;
            IoConfig::Dpdk(c)
        }
        Backend::AfXdp => IoConfig::AfXdp(dataplane::io::AfXdpConfig {
            frame_count: 2048,
            ring_size: 512,
            ..dataplane::io::AfXdpConfig::new(IFC)
        }),
    }
}

/// Polls `q` until `want` frames matching `keep` arrived or 5 s passed.
fn receive(q: &mut AnyQueue, want: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<AnyBuf> {
    receive_for(q, want, keep, Duration::from_secs(5))
}

fn receive_for(
    q: &mut AnyQueue,
    want: usize,
    keep: impl Fn(&[u8]) -> bool,
    window: Duration,
) -> Vec<AnyBuf> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    let mut burst = Vec::with_capacity(64);
    let bell = Doorbell::new();
    while got.len() < want && Instant::now() < deadline {
        if q.rx_burst(&mut burst, 64) == 0 {
            q.wait(Duration::from_millis(5), &bell);
        }
        got.extend(burst.drain(..).filter(|b| keep(b.data())));
    }
    got
}

/// Sends everything in `pkts`, retrying while the ring is full.
fn send_all(q: &mut AnyQueue, mut pkts: Vec<AnyBuf>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pkts.is_empty() && Instant::now() < deadline {
        if q.tx_burst(&mut pkts) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(pkts.is_empty(), "{} frames never left", pkts.len());
}

fn is_test(f: &[u8]) -> bool {
    test_seq(f).is_some()
}

/// Frames from the wire reach the worker intact and in order, at every size
/// up to a full 1,514-byte Ethernet frame.
fn rx_intact(backend: Backend) {
    let bed = bed_for(backend, 1);
    let mut qs = open(&config(backend, &bed, 1), 1).expect("open");
    let q = &mut qs[0];
    assert_eq!(q.mac(), bed.io_mac);
    let sizes = [60usize, 64, 128, 500, 1000, 1514];
    let frames: Vec<Vec<u8>> = (0..300u32)
        .map(|i| test_frame(bed.io_mac, bed.peer_mac, i, sizes[i as usize % sizes.len()]))
        .collect();
    for f in &frames {
        assert!(bed.peer.send(f));
    }
    let got = receive(q, frames.len(), is_test);
    assert_eq!(got.len(), frames.len(), "all frames received");
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(g.data(), &f[..], "frame {:?} intact", test_seq(f));
    }
    let s = q.stats();
    assert!(s.rx_packets >= frames.len() as u64, "{s:?}");
}

/// Frames the worker originates reach the wire intact, and the worker does
/// not see its own transmissions.
fn tx_intact(backend: Backend) {
    let bed = bed_for(backend, 1);
    let mut qs = open(&config(backend, &bed, 1), 1).expect("open");
    let q = &mut qs[0];
    let mut pkts = Vec::new();
    for i in 0..300u32 {
        let f = test_frame(bed.peer_mac, bed.io_mac, i, 60 + (i as usize * 37) % 1454);
        let mut b = q.alloc().expect("a buffer");
        assert!(b.capacity() >= 1514);
        assert!(b.set_len(f.len()));
        b.data_mut().copy_from_slice(&f);
        pkts.push((b, f));
    }
    let (bufs, frames): (Vec<AnyBuf>, Vec<Vec<u8>>) = pkts.into_iter().unzip();
    send_all(q, bufs);
    for f in &frames {
        let g = loop {
            let g = bed
                .peer
                .recv(Duration::from_secs(5))
                .expect("frame on the wire");
            if is_test(&g) {
                break g;
            }
        };
        assert_eq!(&g, f);
    }
    assert_eq!(q.stats().tx_packets, frames.len() as u64);
    // Our own frames must not come back to us.
    let echo = receive_for(q, 1, is_test, Duration::from_millis(300));
    assert!(echo.is_empty(), "saw {} of our own frames", echo.len());
}

/// The forwarding path: a received buffer rewritten in place (new
/// destination MAC) and sent back out, without a copy by the worker.
/// Free buffers in the backend's pool, from the monitor's xstats.
fn pool_free(q: &AnyQueue) -> u64 {
    q.monitor()
        .xstats()
        .into_iter()
        .find(|(n, _)| {
            n == "q0_pool_free" || n == "baton_mempool_available" || n == "q0_umem_free_frames"
        })
        .map(|(_, v)| v)
        .expect("a pool xstat")
}

fn forward_in_place(backend: Backend) {
    let bed = bed_for(backend, 1);
    let mut qs = open(&config(backend, &bed, 1), 1).expect("open");
    let free_at_start = pool_free(&qs[0]);
    let q = &mut qs[0];
    let target = [0x02, 0, 0, 0, 0, 0x42];
    for i in 0..100u32 {
        assert!(bed.peer.send(&test_frame(bed.io_mac, bed.peer_mac, i, 200)));
    }
    let mut got = receive(q, 100, is_test);
    assert_eq!(got.len(), 100);
    for b in &mut got {
        let d = b.data_mut();
        d[0..6].copy_from_slice(&target);
        d[6..12].copy_from_slice(&bed.io_mac);
    }
    send_all(q, got);
    let mut seen = 0;
    while seen < 100 {
        let g = bed
            .peer
            .recv(Duration::from_secs(5))
            .expect("forwarded frame");
        if test_seq(&g) == Some(seen) {
            assert_eq!(&g[0..6], &target);
            assert_eq!(g.len(), 200);
            seen += 1;
        }
    }
    // Every buffer went back to its pool: none leaked, none freed twice.
    // (Waiting through the queue lets a backend reap its completions.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let bell = Doorbell::new();
    while pool_free(&qs[0]) != free_at_start && Instant::now() < deadline {
        qs[0].wait(Duration::from_millis(10), &bell);
    }
    assert_eq!(pool_free(&qs[0]), free_at_start, "buffers back in the pool");
}

/// An IPv4/UDP frame of the flow `src:sport → dst:dport`.
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = 20 + 8 + 18u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let ck = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + 18u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(b"baton-fanout-probe");
    f
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn flow_of(f: &[u8]) -> Option<(u16, u16)> {
    if f.len() < 42 || f[12..14] != [8, 0] || f[23] != 17 {
        return None;
    }
    Some((
        u16::from_be_bytes([f[34], f[35]]),
        u16::from_be_bytes([f[36], f[37]]),
    ))
}

/// With two workers every packet of a flow, in both directions, reaches one
/// worker, and flows are spread over both.
fn flows_stay_on_one_worker(backend: Backend) {
    flows_stay_on_one_worker_with(backend, 2);
}

fn flows_stay_on_one_worker_with(backend: Backend, qpairs: usize) {
    let bed = bed_for(backend, 2);
    let mut qs = open(&config_with(backend, &bed, 2, qpairs), 2).expect("open");
    assert_eq!(qs.len(), 2);
    let (a, b) = ([198, 18, 0, 101], [198, 18, 0, 10]);
    let flows: Vec<u16> = (0..64).map(|i| 20_000 + i * 7).collect();
    for round in 0..3 {
        for &p in &flows {
            // Alternate directions: (a:p → b:80) and (b:80 → a:p).
            let f = if round % 2 == 0 {
                udp_frame(bed.io_mac, bed.peer_mac, a, p, b, 80)
            } else {
                udp_frame(bed.io_mac, bed.peer_mac, b, 80, a, p)
            };
            assert!(bed.peer.send(&f));
        }
    }
    let want = flows.len() * 3;
    let mut owner: HashMap<u16, HashSet<usize>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut total = 0;
    let mut burst = Vec::new();
    while total < want && Instant::now() < deadline {
        let mut idle = true;
        for (i, q) in qs.iter_mut().enumerate() {
            if q.rx_burst(&mut burst, 64) > 0 {
                idle = false;
            }
            for buf in burst.drain(..) {
                if let Some((s, d)) = flow_of(buf.data()) {
                    let port = if s == 80 { d } else { s };
                    owner.entry(port).or_default().insert(i);
                    total += 1;
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(total, want, "every probe received once");
    for (p, w) in &owner {
        assert_eq!(w.len(), 1, "flow {p} reached workers {w:?}");
    }
    let used: HashSet<usize> = owner.values().flat_map(|w| w.iter().copied()).collect();
    assert_eq!(used.len(), 2, "64 flows spread over both workers");
    let mon = qs[0].monitor();
    assert_ne!(mon.steering(), "single");
}

/// `wait()` returns when a frame arrives instead of sleeping out its
/// timeout (the adaptive polling mode relies on it).
fn wait_wakes_on_arrival(backend: Backend) {
    let bed = bed_for(backend, 1);
    let mut qs = open(&config(backend, &bed, 1), 1).expect("open");
    let frame = test_frame(bed.io_mac, bed.peer_mac, 7, 100);
    let peer = RawSock::open(PEER);
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        assert!(peer.send(&frame));
    });
    let t0 = Instant::now();
    let mut got = Vec::new();
    let bell = Doorbell::new();
    while got.is_empty() && t0.elapsed() < Duration::from_secs(60) {
        qs[0].wait(Duration::from_secs(30), &bell);
        got = receive_for(&mut qs[0], 1, is_test, Duration::from_millis(1));
    }
    sender.join().unwrap();
    assert_eq!(got.len(), 1, "the frame arrived");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "wait() woke on arrival, not at its 30 s timeout"
    );
}

/// `wait()` polls the worker's doorbell: a ring before the wait makes it
/// return at once and consume the eventfd; a ring from another thread ends
/// a wait whose timeout (30 s) is far away. This is what wakes an idle worker
/// for a decision instead of its next frame or timer.
fn wait_wakes_on_doorbell(backend: Backend) {
    let bed = bed_for(backend, 1);
    let mut qs = open(&config(backend, &bed, 1), 1).expect("open");
    let bell = Arc::new(Doorbell::new());
    assert!(bell.arm(|| false));
    assert!(bell.ring(), "armed: the ring writes the eventfd");
    let t0 = Instant::now();
    qs[0].wait(Duration::from_secs(30), &bell);
    assert!(t0.elapsed() < Duration::from_secs(20), "returned at once");
    assert!(bell.disarm(), "rung while asleep");
    assert_eq!(
        bell.poll(None, Duration::ZERO),
        0,
        "the backend read the eventfd back to zero"
    );

    let b2 = bell.clone();
    let ringer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        while !b2.ring() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let t0 = Instant::now();
    let mut rung = false;
    // A stray frame (IPv6 neighbour discovery on the veth) or DPDK's short
    // slices may end a wait early: wait again, as the worker loop does.
    while !rung && t0.elapsed() < Duration::from_secs(60) {
        assert!(bell.arm(|| false));
        qs[0].wait(Duration::from_secs(30), &bell);
        rung = bell.disarm();
    }
    ringer.join().unwrap();
    assert!(rung, "the doorbell ended the wait");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "woken by the doorbell, not at the 30 s timeout"
    );
}

/// The monitor reports the port: MAC, link up, counters, extended stats.
fn monitor_reports_port(backend: Backend) {
    let bed = bed_for(backend, 1);
    let mut qs = open(&config(backend, &bed, 1), 1).expect("open");
    let mon = qs[0].monitor();
    assert_eq!(mon.mac(), bed.io_mac);
    assert!(mon.link().up, "{:?}", mon.link());
    for i in 0..10 {
        assert!(bed.peer.send(&test_frame(bed.io_mac, bed.peer_mac, i, 100)));
    }
    assert_eq!(receive(&mut qs[0], 10, is_test).len(), 10);
    let s = mon.stats();
    assert!(s.rx_packets >= 10, "{s:?}");
    assert!(s.rx_bytes >= 1000, "{s:?}");
    assert!(!mon.xstats().is_empty());
    assert!(
        mon.name().contains(IFC) || mon.name().contains("net_af_packet0"),
        "{}",
        mon.name()
    );
}

// ---- AF_PACKET ----

#[test]
fn afpacket_rx_intact() {
    require_root();
    rx_intact(Backend::AfPacket);
}

#[test]
fn afpacket_tx_intact() {
    require_root();
    tx_intact(Backend::AfPacket);
}

#[test]
fn afpacket_forward_in_place() {
    require_root();
    forward_in_place(Backend::AfPacket);
}

#[test]
fn afpacket_flows_stay_on_one_worker() {
    require_root();
    flows_stay_on_one_worker(Backend::AfPacket);
}

#[test]
fn afpacket_monitor_reports_port() {
    require_root();
    monitor_reports_port(Backend::AfPacket);
}

#[test]
fn afpacket_v2_rx_intact() {
    require_root();
    rx_intact(Backend::AfPacketV2);
}

#[test]
fn afpacket_v2_tx_intact() {
    require_root();
    tx_intact(Backend::AfPacketV2);
}

#[test]
fn afpacket_v2_forward_in_place() {
    require_root();
    forward_in_place(Backend::AfPacketV2);
}

#[test]
fn afpacket_v2_flows_stay_on_one_worker() {
    require_root();
    flows_stay_on_one_worker(Backend::AfPacketV2);
}

#[test]
fn afpacket_wait_wakes_on_arrival() {
    require_root();
    wait_wakes_on_arrival(Backend::AfPacket);
}

#[test]
fn afpacket_v2_wait_wakes_on_arrival() {
    require_root();
    wait_wakes_on_arrival(Backend::AfPacketV2);
}

#[test]
fn afpacket_wait_wakes_on_doorbell() {
    require_root();
    wait_wakes_on_doorbell(Backend::AfPacket);
}

#[test]
fn afpacket_v2_wait_wakes_on_doorbell() {
    require_root();
    wait_wakes_on_doorbell(Backend::AfPacketV2);
}

/// A full transmit ring takes what fits and leaves the rest with the caller,
/// in order (the `PacketIo::tx_burst` contract, through `AnyQueue`); once the
/// link is back, everything reaches the wire in order.
#[test]
fn afpacket_full_tx_ring_leaves_the_rest_in_order() {
    require_root();
    let bed = Bed::new();
    let cfg = AfPacketConfig {
        tx_frames: 32, // one 64 KiB block of 2 KiB slots
        ..AfPacketConfig::new(IFC)
    };
    let mut qs = open(&IoConfig::AfPacket(cfg), 1).expect("open");
    let q = &mut qs[0];
    // With the link down the kernel sends nothing: the ring fills up.
    bed.ns.ip(&["link", "set", IFC, "down"]);
    let mut pkts = Vec::new();
    for i in 0..100u32 {
        let f = test_frame(bed.peer_mac, bed.io_mac, i, 100);
        let mut b = q.alloc().expect("buffer");
        b.set_len(f.len());
        b.data_mut().copy_from_slice(&f);
        pkts.push(b);
    }
    let taken = q.tx_burst(&mut pkts);
    assert_eq!(taken, 32, "the ring holds 32 frames");
    assert_eq!(pkts.len(), 68);
    assert_eq!(test_seq(pkts[0].data()), Some(32), "the rest, in order");
    assert_eq!(q.tx_burst(&mut pkts), 0, "still full");
    bed.ns.ip(&["link", "set", IFC, "up"]);
    // Wait for the link (veth carrier) before sending the rest.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !q.monitor().link().up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    send_all(q, pkts);
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while next < 100 && Instant::now() < deadline {
        let Some(g) = bed.peer.recv(Duration::from_millis(500)) else {
            continue;
        };
        if let Some(seq) = test_seq(&g) {
            assert_eq!(seq, next, "frames leave in order");
            next += 1;
        }
    }
    assert_eq!(next, 100, "all frames sent once the link is up");
}

/// After the link goes down and up, frames flow again, and the socket error
/// the flap left behind is cleared (so `wait()` blocks again when idle).
#[test]
fn afpacket_survives_a_link_flap() {
    require_root();
    survives_a_link_flap(Backend::AfPacket);
}

fn survives_a_link_flap(backend: Backend) {
    let bed = bed_for(backend, 2);
    let mut qs = open(&config(backend, &bed, 2), 2).expect("open");
    bed.ns.ip(&["link", "set", IFC, "down"]);
    bed.ns.ip(&["link", "set", IFC, "up"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !qs[0].monitor().link().up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let bell = Doorbell::new();
    for q in qs.iter_mut() {
        q.wait(Duration::from_millis(50), &bell);
    }
    let errors: u64 = qs[0]
        .monitor()
        .xstats()
        .iter()
        .filter(|(n, _)| n.ends_with("_socket_errors"))
        .map(|(_, v)| v)
        .sum();
    if matches!(backend, Backend::AfPacket) {
        assert!(errors >= 1, "the flap's ENETDOWN was seen and cleared");
    }
    for i in 0..50 {
        assert!(bed.peer.send(&test_frame(bed.io_mac, bed.peer_mac, i, 100)));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = 0;
    let mut burst = Vec::new();
    while got < 50 && Instant::now() < deadline {
        for q in qs.iter_mut() {
            q.rx_burst(&mut burst, 64);
            got += burst.drain(..).filter(|b| is_test(b.data())).count();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got, 50, "frames flow after the flap");
}

/// The data interface disappearing under a running queue is survivable:
/// every call still returns and nothing panics; AF_PACKET reads the link
/// as down.
fn survives_interface_removal(backend: Backend) {
    let bed = bed_for(backend, 1);
    let mut qs = open(&config(backend, &bed, 1), 1).expect("open");
    let mon = qs[0].monitor();
    bed.ns.ip(&["link", "del", IFC]);
    let q = &mut qs[0];
    let mut rx = Vec::new();
    let bell = Doorbell::new();
    for i in 0..200u32 {
        q.rx_burst(&mut rx, 32);
        let mut tx = Vec::new();
        if let Some(mut b) = q.alloc() {
            let f = test_frame([0xff; 6], bed.io_mac, i, 64);
            b.set_len(f.len());
            b.data_mut().copy_from_slice(&f);
            tx.push(b);
        }
        q.tx_burst(&mut tx);
        q.wait(Duration::from_millis(1), &bell);
    }
    if matches!(backend, Backend::AfPacket) {
        // (DPDK's af_packet PMD reports a fixed link state.)
        assert!(!mon.link().up, "{:?}", mon.link());
    }
    let _ = (mon.stats(), mon.xstats(), q.stats());
}

#[test]
fn afpacket_survives_interface_removal() {
    require_root();
    survives_interface_removal(Backend::AfPacket);
}

#[test]
fn afpacket_frame_size_must_hold_the_mtu() {
    require_root();
    let ns = Netns::new("bpk-mtu").no_ipv6();
    ns.veth(IFC, &ns, PEER);
    ns.ip(&["link", "set", IFC, "mtu", "9000"]);
    ns.enter();
    let e = open(&IoConfig::AfPacket(AfPacketConfig::new(IFC)), 1)
        .err()
        .expect("2 KiB frames cannot hold a 9000-byte MTU");
    assert!(
        matches!(e, IoError::Config(ref m) if m.contains("raise frame_size")),
        "{e}"
    );
    let jumbo = AfPacketConfig {
        frame_size: 9216 + 128,
        block_size: 1 << 16,
        block_count: 8,
        tx_frames: 64,
        pool_size: 64,
        ..AfPacketConfig::new(IFC)
    };
    let qs = open(&IoConfig::AfPacket(jumbo), 1).expect("jumbo frames fit");
    assert!(qs[0].monitor().link().up);
}

#[test]
fn afpacket_without_cap_net_raw_is_a_permission_error() {
    require_root();
    let e = std::thread::spawn(|| {
        testkit::caps::drop_effective(&[testkit::caps::NET_RAW]);
        open(&IoConfig::AfPacket(AfPacketConfig::new("lo")), 1).err()
    })
    .join()
    .unwrap()
    .expect("no AF_PACKET socket without CAP_NET_RAW");
    assert!(matches!(e, IoError::Permission { .. }), "{e}");
    assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
}

#[test]
fn afpacket_missing_interface_is_a_clear_error() {
    let e = open(&IoConfig::AfPacket(AfPacketConfig::new("bpk-nope0")), 1)
        .err()
        .expect("must fail");
    assert!(
        matches!(e, IoError::NoSuchInterface(ref n) if n == "bpk-nope0"),
        "{e}"
    );
    let mut bad = AfPacketConfig::new("lo");
    bad.frame_size = 1000;
    let e = open(&IoConfig::AfPacket(bad), 1).err().expect("must fail");
    assert!(matches!(e, IoError::Config(_)), "{e}");
    let e = open(&IoConfig::AfPacket(AfPacketConfig::new("lo")), 0)
        .err()
        .expect("must fail");
    assert!(matches!(e, IoError::Config(_)), "{e}");
}

// ---- DPDK (the af_packet PMD on the veth) ----

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_rx_intact() {
    testkit::dpdk::isolated("dpdk_rx_intact", || rx_intact(Backend::Dpdk));
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_wait_wakes_on_doorbell() {
    testkit::dpdk::isolated("dpdk_wait_wakes_on_doorbell", || {
        wait_wakes_on_doorbell(Backend::Dpdk)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_tx_intact() {
    testkit::dpdk::isolated("dpdk_tx_intact", || tx_intact(Backend::Dpdk));
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_forward_in_place() {
    testkit::dpdk::isolated("dpdk_forward_in_place", || forward_in_place(Backend::Dpdk));
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_flows_stay_on_one_worker_pmd_fanout() {
    testkit::dpdk::isolated("dpdk_flows_stay_on_one_worker_pmd_fanout", || {
        flows_stay_on_one_worker_with(Backend::Dpdk, 2)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_flows_stay_on_one_worker_software_steering() {
    // One PMD queue pair for two workers: the backend steers in software.
    testkit::dpdk::isolated("dpdk_flows_stay_on_one_worker_software_steering", || {
        flows_stay_on_one_worker_with(Backend::Dpdk, 1)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_worker_threads_get_an_lcore_cache() {
    // A worker is a plain Rust thread; its first poll registers it with the
    // EAL so that it has an lcore id (and with it a mempool cache).
    testkit::dpdk::isolated("dpdk_worker_threads_get_an_lcore_cache", || {
        let bed = Bed::new();
        let mut qs = open(&config(Backend::Dpdk, &bed, 2), 2).expect("open");
        let q1 = qs.pop().unwrap();
        let q0 = qs.pop().unwrap();
        // Both threads alive at once (an exiting thread frees its lcore id).
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = [q0, q1]
            .into_iter()
            .map(|mut q| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    assert_eq!(dataplane::io::dpdk::eal::current_lcore(), None);
                    q.rx_burst(&mut Vec::new(), 8);
                    let id = dataplane::io::dpdk::eal::current_lcore().expect("registered");
                    barrier.wait();
                    id
                })
            })
            .collect();
        let lcores: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_ne!(lcores[0], lcores[1]);
        let _ = bed;
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_survives_a_link_flap() {
    testkit::dpdk::isolated("dpdk_survives_a_link_flap", || {
        survives_a_link_flap(Backend::Dpdk)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_survives_interface_removal() {
    testkit::dpdk::isolated("dpdk_survives_interface_removal", || {
        survives_interface_removal(Backend::Dpdk)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_monitor_reports_port() {
    testkit::dpdk::isolated("dpdk_monitor_reports_port", || {
        monitor_reports_port(Backend::Dpdk)
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_errors_are_clear_and_eal_starts_once() {
    testkit::dpdk::isolated("dpdk_errors_are_clear_and_eal_starts_once", || {
        let bed = Bed::new();
        let IoConfig::Dpdk(good) = config(Backend::Dpdk, &bed, 1) else {
            unreachable!()
        };
        // A port EAL does not know.
        let mut bad_port = good.clone();
        bad_port.port = dataplane::io::DpdkPort::Name("net_nonexistent9".into());
        let e = open(&IoConfig::Dpdk(bad_port), 1)
            .err()
            .expect("unknown port");
        assert!(matches!(e, IoError::Dpdk { .. }), "{e}");
        // EAL is up now; other arguments cannot restart it.
        let mut other = good.clone();
        other.eal_args.push("--log-level=lib.eal:debug".into());
        let e = open(&IoConfig::Dpdk(other), 1).err().expect("second EAL");
        assert!(matches!(e, IoError::EalAlreadyInitialised), "{e}");
        // A pool too small for the rings is refused before DPDK sees it.
        let mut small = good.clone();
        small.mempool_size = 100;
        let e = open(&IoConfig::Dpdk(small), 1).err().expect("small pool");
        assert!(e.to_string().contains("mempool_size"), "{e}");
        // The same arguments share the running EAL.
        let qs = open(&IoConfig::Dpdk(good), 1).expect("open with the same EAL arguments");
        assert_eq!(qs[0].mac(), bed.io_mac);
    });
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_bad_eal_arguments_are_a_clear_error() {
    testkit::dpdk::isolated("dpdk_bad_eal_arguments_are_a_clear_error", || {
        let args = ["--no-huge", "--no-pci", "-m", "512", "--no-such-eal-option"];
        let c = dataplane::io::DpdkConfig::new(
            args.iter().map(|s| s.to_string()).collect(),
            dataplane::io::DpdkPort::Id(0),
        );
        let e = open(&IoConfig::Dpdk(c.clone()), 1)
            .err()
            .expect("EAL refuses");
        assert!(
            matches!(e, IoError::EalInit(ref m) if m.contains("--no-such-eal-option")),
            "{e}"
        );
        // EAL cannot be retried in one process: the same error, no crash.
        let again = open(&IoConfig::Dpdk(c), 1).err().expect("still refused");
        assert!(matches!(again, IoError::EalInit(_)), "{again}");
    });
}

#[cfg(not(feature = "dpdk"))]
#[test]
fn dpdk_without_the_feature_is_a_clear_error() {
    let c = dataplane::io::DpdkConfig::new(vec![], dataplane::io::DpdkPort::Id(0));
    let e = open(&IoConfig::Dpdk(c), 1)
        .err()
        .expect("no DPDK in this build");
    assert!(matches!(e, IoError::NotBuilt("dpdk")), "{e}");
}

// ---- AF_XDP (XDP program in native mode on the veth, copy-mode sockets) ----

#[cfg(feature = "af_xdp")]
mod af_xdp {
    use super::*;
    use dataplane::io::AfXdpConfig;

    #[test]
    fn afxdp_rx_intact() {
        require_root();
        rx_intact(Backend::AfXdp);
    }

    #[test]
    fn afxdp_tx_intact() {
        require_root();
        tx_intact(Backend::AfXdp);
    }

    #[test]
    fn afxdp_forward_in_place() {
        require_root();
        forward_in_place(Backend::AfXdp);
    }

    #[test]
    fn afxdp_flows_stay_on_one_worker() {
        require_root();
        flows_stay_on_one_worker(Backend::AfXdp);
    }

    #[test]
    fn afxdp_wait_wakes_on_arrival() {
        require_root();
        wait_wakes_on_arrival(Backend::AfXdp);
    }

    #[test]
    fn afxdp_wait_wakes_on_doorbell() {
        require_root();
        wait_wakes_on_doorbell(Backend::AfXdp);
    }

    #[test]
    fn afxdp_monitor_reports_port() {
        require_root();
        monitor_reports_port(Backend::AfXdp);
    }

    #[test]
    fn afxdp_survives_a_link_flap() {
        require_root();
        survives_a_link_flap(Backend::AfXdp);
    }

    #[test]
    fn afxdp_survives_interface_removal() {
        require_root();
        survives_interface_removal(Backend::AfXdp);
    }

    /// Every receive queue needs a worker (frames on a queue without a
    /// socket would never reach one), and every worker a queue: a mismatch
    /// is refused with the fix in the message.
    #[test]
    fn afxdp_queue_count_must_match_the_workers() {
        require_root();
        let bed = Bed::with_queues(2);
        let e = open(&IoConfig::AfXdp(AfXdpConfig::new(IFC)), 1)
            .err()
            .expect("2 queues, 1 worker");
        assert!(
            matches!(e, IoError::Config(ref m) if m.contains("2 receive queues") && m.contains("ethtool -L")),
            "{e}"
        );
        drop(bed);
        let _bed = Bed::with_queues(1);
        let e = open(&IoConfig::AfXdp(AfXdpConfig::new(IFC)), 2)
            .err()
            .expect("1 queue, 2 workers");
        assert!(matches!(e, IoError::Config(_)), "{e}");
    }

    /// Bad settings and a missing interface are clear errors, before
    /// anything is attached.
    #[test]
    fn afxdp_bad_settings_are_clear_errors() {
        let e = open(&IoConfig::AfXdp(AfXdpConfig::new("bpk-nope0")), 1)
            .err()
            .expect("must fail");
        assert!(
            matches!(e, IoError::NoSuchInterface(ref n) if n == "bpk-nope0"),
            "{e}"
        );
        for (cfg, what) in [
            (
                AfXdpConfig {
                    frame_size: 3000,
                    ..AfXdpConfig::new("lo")
                },
                "frame_size",
            ),
            (
                AfXdpConfig {
                    ring_size: 1000,
                    ..AfXdpConfig::new("lo")
                },
                "ring_size",
            ),
            (
                AfXdpConfig {
                    frame_count: 100,
                    ..AfXdpConfig::new("lo")
                },
                "frame_count",
            ),
        ] {
            let e = open(&IoConfig::AfXdp(cfg), 1).err().expect("must fail");
            assert!(
                matches!(e, IoError::Config(ref m) if m.contains(what)),
                "{what}: {e}"
            );
        }
    }
}
