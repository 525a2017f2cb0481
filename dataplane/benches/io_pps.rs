//! Packets per second through each packet I/O backend on a veth pair.
//!
//! `cargo bench -p dataplane --bench io_pps [--features dpdk] -- [--frames N] [--size B] [--json PATH]`
//!
//! Builds a namespace with a veth pair `io0` ↔ `peer0` (removed at the end),
//! opens the backend under test on `io0` and an AF_PACKET generator/sink on
//! `peer0`, and measures three paths, each bounded by a frame count and 5 s:
//! - rx: generator → backend `rx_burst` (frames counted and dropped);
//! - tx: backend `alloc` + `tx_burst` → sink;
//! - fwd: generator → backend, destination MAC rewritten in place, `tx_burst`
//!   back out → sink (the switch's FORWARDING path, zero copy on DPDK);
//! - rtt: one frame at a time from a plain raw socket, bounced by the backend
//!   (busy polling): the latency the backend adds at low load.
//!
//! With the `af_xdp` feature, three more rows: `af_xdp` (the AF_XDP sockets,
//! fast path off, on the four paths above); `af_xdp_fast` (no worker at all:
//! one flow inserted into the XDP program's flow table, TCP segments of that
//! flow sent from `peer0`, relayed by the program with their MACs rewritten
//! and counted back on `peer0`: the fwd and rtt paths of an offloaded
//! FORWARDING connection); and `xdp_drop` (an XDP program that drops
//! everything, counted in the kernel: the ceiling of any XDP receive path on
//! this veth).
//!
//! Both ends share the machine's cores, and veth is a software link, so the
//! figures compare backends on one host rather than predict NIC line rate.
//! DPDK runs in a child process (its EAL starts once per process).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::io::{
    open, AfPacketConfig, AnyBuf, AnyQueue, IoConfig, PacketBuf, PacketIo, PollMode,
};
use testkit::netns::{unique, Netns};
use testkit::raw_socket::{test_frame, test_seq, RawSock};

const LIMIT: Duration = Duration::from_secs(5);
const BURST: usize = 32;

struct Opts {
    frames: u64,
    size: usize,
    json: Option<String>,
    child: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        frames: 1_000_000,
        size: 64,
        json: None,
        child: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let val = args.get(i + 1).cloned();
        match args[i].as_str() {
            "--frames" => o.frames = val.and_then(|v| v.parse().ok()).expect("--frames N"),
            "--size" => o.size = val.and_then(|v| v.parse().ok()).expect("--size BYTES"),
            "--json" => o.json = val,
            "--child" => o.child = val,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o.size = o.size.clamp(60, 1514);
    o
}

#[derive(Debug, Clone, Copy, Default)]
struct Figure {
    sent: u64,
    received: u64,
    secs: f64,
}

impl Figure {
    fn mpps(&self) -> f64 {
        if self.secs > 0.0 {
            self.received as f64 / self.secs / 1e6
        } else {
            0.0
        }
    }
}

fn afpacket(ifc: &str) -> AnyQueue {
    afpacket_ring(ifc, dataplane::io::AfPacketRing::V3)
}

fn afpacket_ring(ifc: &str, ring: dataplane::io::AfPacketRing) -> AnyQueue {
    let mut c = AfPacketConfig::new(ifc);
    c.ring = ring;
    c.poll = PollMode::Busy;
    open(&IoConfig::AfPacket(c), 1)
        .expect("open AF_PACKET")
        .remove(0)
}

fn dpdk(ifc: &str, prefix: &str) -> AnyQueue {
    let args = [
        "--no-huge".to_string(),
        "--no-pci".into(),
        "-m".into(),
        "512".into(),
        "-l".into(),
        "0".into(),
        "--no-telemetry".into(),
        "--log-level=lib.eal:error".into(),
        format!("--vdev=net_af_packet0,iface={ifc},framecnt=4096,blocksz=4096,framesz=2048"),
        format!("--file-prefix={prefix}"),
    ];
    let mut c = dataplane::io::DpdkConfig::new(
        args.to_vec(),
        dataplane::io::DpdkPort::Name("net_af_packet0".into()),
    );
    c.poll = PollMode::Busy;
    open(&IoConfig::Dpdk(c), 1).expect("open DPDK").remove(0)
}

/// Sends `n` copies of `frame` (sequence-numbered) as fast as `q` takes them.
fn generate(q: &mut AnyQueue, frame: &[u8], n: u64, stop: &AtomicBool) -> u64 {
    let deadline = Instant::now() + LIMIT;
    let mut sent = 0u64;
    let mut batch: Vec<AnyBuf> = Vec::with_capacity(BURST);
    while sent < n && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        while batch.len() < BURST && sent + (batch.len() as u64) < n {
            let Some(mut b) = q.alloc() else { break };
            b.set_len(frame.len());
            b.data_mut().copy_from_slice(frame);
            batch.push(b);
        }
        sent += q.tx_burst(&mut batch) as u64;
    }
    sent
}

/// Counts frames on `q` until `n` arrived or the line is quiet for 300 ms
/// after `done` is set; returns (count, seconds from first to last).
fn sink(q: &mut AnyQueue, n: u64, done: &AtomicBool) -> (u64, f64) {
    let mut got = 0u64;
    let mut buf = Vec::with_capacity(BURST);
    let (mut first, mut last) = (None, Instant::now());
    let deadline = Instant::now() + LIMIT + Duration::from_secs(1);
    while got < n && Instant::now() < deadline {
        let k = q.rx_burst(&mut buf, BURST);
        if k > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            got += buf
                .drain(..)
                .filter(|b| test_seq(b.data()).is_some())
                .count() as u64;
        } else if done.load(Ordering::Relaxed) && last.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    (got, secs)
}

/// DPDK's run-time folder of this run, removed even if the run panics.
struct RunDir(String);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The AF_XDP backend on `ifc` with the fast path off (every frame to the
/// socket), one queue, busy polling.
#[cfg(feature = "af_xdp")]
fn afxdp(ifc: &str) -> AnyQueue {
    let mut c = dataplane::io::AfXdpConfig::new(ifc);
    c.attach = dataplane::io::XdpAttach::Native;
    c.fast_path = dataplane::io::FastPath::Off;
    c.poll = PollMode::Busy;
    open(&IoConfig::AfXdp(c), 1).expect("open AF_XDP").remove(0)
}

fn measure(backend: &str, o: &Opts) -> Vec<(String, Figure)> {
    let ns = Netns::new("bpk-bn").no_ipv6();
    ns.veth("io0", &ns, "peer0");
    ns.enter();
    let prefix = unique("bpk-b");
    let _run_dir = RunDir(format!("/var/run/dpdk/{prefix}"));
    let (io_mac, peer_mac) = (ns.mac("io0"), ns.mac("peer0"));
    let mut dut = match backend {
        "dpdk" => dpdk("io0", &prefix),
        #[cfg(feature = "af_xdp")]
        "af_xdp" => afxdp("io0"),
        "af_packet_v2" => afpacket_ring("io0", dataplane::io::AfPacketRing::V2),
        _ => afpacket("io0"),
    };
    let mut peer = afpacket("peer0");
    let mut out = Vec::new();

    // rx: peer generates, the backend under test receives.
    let frame = test_frame(io_mac, peer_mac, 1, o.size);
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (d, s, f, n) = (done.clone(), sent.clone(), frame.clone(), o.frames);
    let gen = std::thread::spawn(move || {
        s.store(
            generate(&mut peer, &f, n, &AtomicBool::new(false)),
            Ordering::Relaxed,
        );
        d.store(true, Ordering::Relaxed);
        peer
    });
    let (received, secs) = sink(&mut dut, o.frames, &done);
    let mut peer = gen.join().unwrap();
    out.push((
        "rx".into(),
        Figure {
            sent: sent.load(Ordering::Relaxed),
            received,
            secs,
        },
    ));

    // tx: the backend under test generates, peer receives.
    let frame = test_frame(peer_mac, io_mac, 2, o.size);
    let done = Arc::new(AtomicBool::new(false));
    let (d, n) = (done.clone(), o.frames);
    let rx = std::thread::spawn(move || {
        let r = sink(&mut peer, n, &d);
        (r, peer)
    });
    std::thread::sleep(Duration::from_millis(50));
    let s = generate(&mut dut, &frame, o.frames, &AtomicBool::new(false));
    done.store(true, Ordering::Relaxed);
    let ((received, secs), mut peer) = rx.join().unwrap();
    out.push((
        "tx".into(),
        Figure {
            sent: s,
            received,
            secs,
        },
    ));

    // fwd: peer → backend (rewrite in place) → peer.
    let to_dut = test_frame(io_mac, peer_mac, 3, o.size);
    let stop = Arc::new(AtomicBool::new(false));
    let (st, n) = (stop.clone(), o.frames);
    let fwd = std::thread::spawn(move || {
        let mut buf: Vec<AnyBuf> = Vec::with_capacity(BURST);
        let mut forwarded = 0u64;
        let deadline = Instant::now() + LIMIT + Duration::from_secs(1);
        while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
            if dut.rx_burst(&mut buf, BURST) == 0 {
                continue;
            }
            for b in buf.iter_mut() {
                let d = b.data_mut();
                d[0..6].copy_from_slice(&peer_mac);
                d[6..12].copy_from_slice(&io_mac);
            }
            forwarded += buf.len() as u64;
            while !buf.is_empty() && !st.load(Ordering::Relaxed) {
                dut.tx_burst(&mut buf);
            }
            buf.clear();
            if forwarded >= n {
                break;
            }
        }
        (forwarded, dut)
    });
    // The peer both generates and counts; alternate bursts on one thread.
    let start = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    let mut batch: Vec<AnyBuf> = Vec::with_capacity(BURST);
    let mut rxb = Vec::with_capacity(BURST);
    let (mut first, mut last) = (None, Instant::now());
    while start.elapsed() < LIMIT {
        if sent < o.frames {
            while batch.len() < BURST {
                let Some(mut b) = peer.alloc() else { break };
                b.set_len(to_dut.len());
                b.data_mut().copy_from_slice(&to_dut);
                batch.push(b);
            }
            sent += peer.tx_burst(&mut batch) as u64;
        }
        if peer.rx_burst(&mut rxb, BURST) > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            got += rxb
                .drain(..)
                .filter(|b| test_seq(b.data()).is_some())
                .count() as u64;
        } else if sent >= o.frames && last.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    out.push((
        "fwd".into(),
        Figure {
            sent,
            received: got,
            secs,
        },
    ));
    let (_, mut dut) = fwd.join().expect("forwarder");
    drop(peer);

    // rtt: one frame at a time through the backend and back.
    let rtts = round_trips(&mut dut, io_mac, peer_mac, 2000);
    print_rtts(&rtts);
    out
}

/// The `RTT n p50 p99 max` line (µs) of round trips sorted ascending.
fn print_rtts(rtts: &[f64]) {
    let pct = |p: f64| {
        let i = ((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1));
        rtts.get(i).copied().unwrap_or(0.0)
    };
    println!(
        "RTT {} {:.1} {:.1} {:.1}",
        rtts.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

/// Round trips of single frames: a raw socket on `peer0` sends one frame,
/// the backend (busy polling) bounces it back rewritten, the socket receives
/// it. Returns sorted round-trip times in microseconds.
fn round_trips(dut: &mut AnyQueue, io_mac: [u8; 6], peer_mac: [u8; 6], n: usize) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let peer = RawSock::open("peer0");
    let mut rtts = Vec::with_capacity(n);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf: Vec<AnyBuf> = Vec::with_capacity(BURST);
            while !st.load(Ordering::Relaxed) {
                if dut.rx_burst(&mut buf, BURST) == 0 {
                    continue;
                }
                for b in buf.iter_mut() {
                    let d = b.data_mut();
                    d[0..6].copy_from_slice(&peer_mac);
                    d[6..12].copy_from_slice(&io_mac);
                }
                while !buf.is_empty() && !st.load(Ordering::Relaxed) {
                    dut.tx_burst(&mut buf);
                }
                buf.clear();
            }
        });
        let deadline = Instant::now() + LIMIT;
        for i in 0..n as u32 {
            if Instant::now() > deadline {
                break;
            }
            let f = test_frame(io_mac, peer_mac, 1_000_000 + i, 64);
            let t0 = Instant::now();
            peer.send(&f);
            while let Some(g) = peer.recv(Duration::from_millis(100)) {
                if test_seq(&g) == Some(1_000_000 + i) {
                    rtts.push(t0.elapsed().as_secs_f64() * 1e6);
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    rtts.sort_by(|a, b| a.total_cmp(b));
    rtts
}

fn main() {
    let o = opts();
    if !testkit::root::is_root() {
        eprintln!("io_pps: needs root (network namespaces); skipped");
        return;
    }
    if let Some(backend) = &o.child {
        // Child mode: one backend, results as lines on stdout.
        let results = match backend.as_str() {
            #[cfg(feature = "af_xdp")]
            "af_xdp_fast" => xdp::fast_path(&o),
            #[cfg(feature = "af_xdp")]
            "xdp_drop" => xdp::drop_baseline(&o),
            _ => measure(backend, &o),
        };
        for (path, f) in results {
            println!("RESULT {path} {} {} {}", f.sent, f.received, f.secs);
        }
        return;
    }
    let mut backends = vec!["af_packet", "af_packet_v2"];
    if cfg!(feature = "dpdk") {
        backends.push("dpdk");
    }
    if cfg!(feature = "af_xdp") {
        backends.extend(["af_xdp", "af_xdp_fast", "xdp_drop"]);
    }
    println!(
        "io_pps: {} frames of {} bytes per path, veth pair, ≤ {:?} each",
        o.frames, o.size, LIMIT
    );
    println!(
        "{:<12} {:<4} {:>10} {:>10} {:>8} {:>8}",
        "backend", "path", "sent", "received", "Mpps", "loss%"
    );
    let mut json = Vec::new();
    let mut rtt_lines = Vec::new();
    for b in backends {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--child",
                b,
                "--frames",
                &o.frames.to_string(),
                "--size",
                &o.size.to_string(),
            ])
            .output()
            .expect("run child");
        if !out.status.success() {
            eprintln!("{b}: failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // The XDP program's own counters, as a cross-check of a row.
            if line.starts_with("XDP ") {
                rtt_lines.push(format!("{b:<12} {line}"));
                continue;
            }
            let p: Vec<&str> = line.split_whitespace().collect();
            if p.len() == 5 && p[0] == "RTT" {
                rtt_lines.push(format!(
                    "{:<12} rtt  {} round trips of one 64-byte frame: median {} µs, p99 {} µs, max {} µs",
                    b, p[1], p[2], p[3], p[4]
                ));
                json.push(format!(
                    "{{\"backend\":\"{b}\",\"path\":\"rtt\",\"round_trips\":{},\"median_us\":{},\"p99_us\":{},\"max_us\":{}}}",
                    p[1], p[2], p[3], p[4]
                ));
                continue;
            }
            if p.len() != 5 || p[0] != "RESULT" {
                continue;
            }
            let f = Figure {
                sent: p[2].parse().unwrap_or(0),
                received: p[3].parse().unwrap_or(0),
                secs: p[4].parse().unwrap_or(0.0),
            };
            let loss = if f.sent > 0 {
                100.0 * (f.sent.saturating_sub(f.received)) as f64 / f.sent as f64
            } else {
                0.0
            };
            println!(
                "{:<12} {:<4} {:>10} {:>10} {:>8.3} {:>8.2}",
                b,
                p[1],
                f.sent,
                f.received,
                f.mpps(),
                loss
            );
            json.push(format!(
                "{{\"backend\":\"{b}\",\"path\":\"{}\",\"frame_bytes\":{},\"sent\":{},\"received\":{},\"seconds\":{:.6},\"mpps\":{:.4}}}",
                p[1], o.size, f.sent, f.received, f.secs, f.mpps()
            ));
        }
    }
    for l in rtt_lines {
        println!("{l}");
    }
    if let Some(path) = o.json {
        std::fs::write(&path, format!("[{}]\n", json.join(",\n"))).expect("write JSON");
        println!("wrote {path}");
    }
}

/// The rows that need the XDP program itself rather than a queue: the fast
/// path with no worker, and the XDP_DROP baseline.
#[cfg(feature = "af_xdp")]
mod xdp {
    use super::*;
    use dataplane::io::af_xdp::program::{DropBaseline, XdpProgram};
    use dataplane::io::{AfXdpConfig, FastPath, XdpAttach};
    use dataplane::offload::{FlowOffload, OffloadFlow, OffloadKey};

    const CLIENT: [u8; 4] = [198, 18, 0, 101];
    const VIP: [u8; 4] = [198, 18, 0, 10];
    const CLIENT_PORT: u16 = 40_000;
    const PORT: u16 = 80;
    /// The client's first sequence number of the offloaded flow.
    const ISN: u32 = 1_000_000;
    /// Ethernet + IPv4 + TCP headers (no options).
    const HEADERS: usize = 14 + 20 + 20;
    /// Offset of the TCP sequence number in a frame.
    const SEQ_AT: usize = 14 + 20 + 4;
    /// Offset of the TCP checksum in a frame.
    const CSUM_AT: usize = 14 + 20 + 16;

    /// A veth pair in a fresh namespace, entered, with the pass-everything
    /// XDP program on `peer0`: a veth takes frames an XDP program transmits
    /// (XDP_TX on `io0`) only when its peer runs NAPI (GRO would turn it on
    /// too, but merges the relayed segments).
    fn veth_pair() -> (Netns, u32, [u8; 6], [u8; 6]) {
        let ns = Netns::new("bpk-xd").no_ipv6();
        ns.veth("io0", &ns, "peer0");
        let obj = std::env::temp_dir().join(format!("{}.bpf.o", ns.name));
        std::fs::write(&obj, dataplane::io::af_xdp::program::pass_program_object()).unwrap();
        let obj_s = obj.to_string_lossy().to_string();
        let out = ns.exec(&[
            "ip", "link", "set", "dev", "peer0", "xdpdrv", "obj", &obj_s, "sec", "xdp",
        ]);
        let _ = std::fs::remove_file(&obj);
        assert!(out.status.success(), "the pass program on peer0: {out:?}");
        ns.enter();
        let name = std::ffi::CString::new("io0").unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(ifindex != 0, "no io0");
        let (io_mac, peer_mac) = (ns.mac("io0"), ns.mac("peer0"));
        (ns, ifindex, io_mac, peer_mac)
    }

    fn sum16(data: &[u8], mut acc: u32) -> u32 {
        for c in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        acc
    }

    fn fold(mut acc: u32) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    /// A frame of the offloaded flow, client → VIP, ACK with payload, `len`
    /// bytes in all; its sequence number is set by [`Segment::at`].
    struct Segment {
        frame: Vec<u8>,
        /// Sum of the TCP pseudo-header and segment with the sequence
        /// number zero, so each frame's checksum costs two additions.
        partial: u32,
    }

    impl Segment {
        fn new(dst: [u8; 6], src: [u8; 6], len: usize) -> Segment {
            let len = len.max(HEADERS + 1);
            let mut f = vec![0u8; len];
            f[0..6].copy_from_slice(&dst);
            f[6..12].copy_from_slice(&src);
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&CLIENT);
            ip[16..20].copy_from_slice(&VIP);
            let c = fold(sum16(ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let tcp = &mut f[34..54];
            tcp[0..2].copy_from_slice(&CLIENT_PORT.to_be_bytes());
            tcp[2..4].copy_from_slice(&PORT.to_be_bytes());
            tcp[8..12].copy_from_slice(&1u32.to_be_bytes()); // ack
            tcp[12] = 5 << 4;
            tcp[13] = 0x10; // ACK
            tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
            for (i, b) in f[HEADERS..].iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&CLIENT);
            pseudo.extend_from_slice(&VIP);
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&((len - 34) as u16).to_be_bytes());
            let partial = sum16(&f[34..], sum16(&pseudo, 0));
            Segment { frame: f, partial }
        }

        fn payload(&self) -> u32 {
            (self.frame.len() - HEADERS) as u32
        }

        /// Writes segment `i`'s frame (sequence ISN + i × payload) into `out`.
        fn at(&self, i: u64, out: &mut [u8]) {
            let seq = ISN.wrapping_add((i as u32).wrapping_mul(self.payload()));
            out.copy_from_slice(&self.frame);
            out[SEQ_AT..SEQ_AT + 4].copy_from_slice(&seq.to_be_bytes());
            let c = fold(self.partial + (seq >> 16) + (seq & 0xffff));
            out[CSUM_AT..CSUM_AT + 2].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// A frame relayed by the fast path: to `peer_mac`, of the flow.
    fn relayed(f: &[u8], peer_mac: [u8; 6]) -> Option<u32> {
        if f.len() < HEADERS || f[0..6] != peer_mac || f[12..14] != [0x08, 0x00] || f[23] != 6 {
            return None;
        }
        if f[36..38] != PORT.to_be_bytes() || f[34..36] != CLIENT_PORT.to_be_bytes() {
            return None;
        }
        Some(u32::from_be_bytes([f[38], f[39], f[40], f[41]]))
    }

    /// fwd and rtt of an offloaded flow: `peer0` sends its segments to
    /// `io0`, the XDP program relays them back to `peer0` (the flow's
    /// "backend") without any socket, `peer0` counts what arrives.
    pub fn fast_path(o: &Opts) -> Vec<(String, Figure)> {
        let (_ns, ifindex, io_mac, peer_mac) = veth_pair();
        let mut cfg = AfXdpConfig::new("io0");
        cfg.attach = XdpAttach::Native;
        cfg.fast_path = FastPath::Xdp;
        cfg.flow_capacity = 1024;
        let prog = XdpProgram::attach(&cfg, ifindex, 1, io_mac).expect("attach the XDP program");
        let mut flows = prog
            .flows()
            .expect("the flow map")
            .expect("the fast path is on");
        let key = OffloadKey {
            client: CLIENT,
            vip: VIP,
            client_port: CLIENT_PORT,
            port: PORT,
        };
        flows
            .insert(
                &key,
                &OffloadFlow {
                    backend_mac: peer_mac,
                    rcv_nxt: ISN,
                    wshift: 14,
                    owner: 0,
                },
            )
            .expect("insert the flow");
        let seg = Segment::new(io_mac, peer_mac, o.size);
        let mut peer = afpacket("peer0");
        let mut out = Vec::new();

        // fwd: generate and count on one thread, alternating bursts.
        let start = Instant::now();
        let (mut sent, mut got) = (0u64, 0u64);
        let mut batch: Vec<AnyBuf> = Vec::with_capacity(BURST);
        let mut rxb = Vec::with_capacity(BURST);
        let (mut first, mut last) = (None, Instant::now());
        while start.elapsed() < LIMIT {
            if sent < o.frames {
                let mut i = sent;
                while batch.len() < BURST && i < o.frames {
                    let Some(mut b) = peer.alloc() else { break };
                    b.set_len(seg.frame.len());
                    seg.at(i, b.data_mut());
                    batch.push(b);
                    i += 1;
                }
                let n = peer.tx_burst(&mut batch) as u64;
                sent += n;
                // Unsent frames are rebuilt with the right numbers next turn.
                batch.clear();
            }
            if peer.rx_burst(&mut rxb, BURST) > 0 {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                got += rxb
                    .drain(..)
                    .filter(|b| relayed(b.data(), peer_mac).is_some())
                    .count() as u64;
            } else if sent >= o.frames && last.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
        out.push((
            "fwd".into(),
            Figure {
                sent,
                received: got,
                secs,
            },
        ));
        drop(peer);
        let st = prog.stats();
        println!(
            "XDP forwarded {} to_worker {} passed {} dropped {} flows {} mode {}",
            st.forwarded_packets, st.to_worker, st.passed, st.dropped, st.flows, st.mode
        );

        // rtt: one segment at a time through the program and back.
        let raw = RawSock::open("peer0");
        let mut rtts = Vec::with_capacity(2000);
        let mut frame = seg.frame.clone();
        let deadline = Instant::now() + LIMIT;
        for i in sent..sent + 2000 {
            if Instant::now() > deadline {
                break;
            }
            seg.at(i, &mut frame);
            let want = u32::from_be_bytes([
                frame[SEQ_AT],
                frame[SEQ_AT + 1],
                frame[SEQ_AT + 2],
                frame[SEQ_AT + 3],
            ]);
            let t0 = Instant::now();
            raw.send(&frame);
            while let Some(g) = raw.recv(Duration::from_millis(100)) {
                if relayed(&g, peer_mac) == Some(want) {
                    rtts.push(t0.elapsed().as_secs_f64() * 1e6);
                    break;
                }
            }
        }
        rtts.sort_by(|a, b| a.total_cmp(b));
        print_rtts(&rtts);
        flows.remove(&key, 0);
        out
    }

    /// rx into an XDP program that drops every frame (native mode on
    /// `io0`), counted by the program.
    pub fn drop_baseline(o: &Opts) -> Vec<(String, Figure)> {
        let (_ns, ifindex, io_mac, peer_mac) = veth_pair();
        let base = DropBaseline::attach(ifindex, XdpAttach::Native).expect("attach XDP_DROP");
        let mut peer = afpacket("peer0");
        let frame = test_frame(io_mac, peer_mac, 1, o.size);
        let done = Arc::new(AtomicBool::new(false));
        let (d, n) = (done.clone(), o.frames);
        let gen = std::thread::spawn(move || {
            let s = generate(&mut peer, &frame, n, &AtomicBool::new(false));
            d.store(true, Ordering::Relaxed);
            s
        });
        // Poll the program's counter: first and last time it moved.
        let before = base.packets();
        let (mut seen, mut first, mut last) = (before, None, Instant::now());
        let deadline = Instant::now() + LIMIT + Duration::from_secs(1);
        while Instant::now() < deadline {
            let now_count = base.packets();
            if now_count != seen {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                seen = now_count;
            } else if done.load(Ordering::Relaxed) && last.elapsed() > Duration::from_millis(300) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let sent = gen.join().unwrap();
        let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
        vec![(
            "rx".into(),
            Figure {
                sent,
                received: seen - before,
                secs,
            },
        )]
    }
}
