//! The AF_XDP backend's XDP program: its decisions on crafted frames (run in
//! the kernel with `BPF_PROG_TEST_RUN`, no traffic needed), the flow map as
//! the engine's `FlowOffload`, and its lifetime on a veth pair: attach in
//! native mode, one switch per interface, detach on drop and when the
//! holding process is killed.
//!
//! Every test builds its own namespace with a veth pair (`x0`, where the
//! program goes, and its peer `x1`); the namespace and everything in it go
//! when the test ends. Needs root (CAP_NET_ADMIN, CAP_BPF): fails without.
#![cfg(feature = "af_xdp")]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::io::af_xdp::flows::FlowTable;
use dataplane::io::af_xdp::program::{action, DropBaseline, XdpProgram};
use dataplane::io::af_xdp::{AfXdpConfig, FastPath, XdpAttach};
use dataplane::io::port::IoError;
use dataplane::offload::{FlowOffload, OffloadError, OffloadFlow, OffloadKey, Removal};
use testkit::netns::Netns;
use testkit::raw_socket::RawSock;
use testkit::require_root;

const SWITCH_MAC: [u8; 6] = [0x02, 0xba, 0x70, 0x00, 0x00, 0x01];
const BACKEND_MAC: [u8; 6] = [0x02, 0xba, 0x70, 0x00, 0x00, 0xbe];
const CLIENT_MAC: [u8; 6] = [0x02, 0xba, 0x70, 0x00, 0x00, 0xc1];
const CLIENT: [u8; 4] = [198, 18, 0, 10];
const VIP: [u8; 4] = [198, 19, 0, 1];
const CLIENT_PORT: u16 = 40000;
const PORT: u16 = 80;
const ISN: u32 = 0x1000_0000;
/// The owner tag of the tests' flows (worker 0's connection with serial 7).
const OWNER: u32 = 7;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// The environment variable that turns this test binary into a child
/// process of a test (see [`child_process`]): `<mode>:<namespace>`.
const CHILD_ENV: &str = "BATON_XDP_TEST_CHILD";
/// What the holding child prints once it holds the program.
const CHILD_READY: &str = "baton-xdp-child-attached";
/// What the child without capabilities prints before the error it got.
const CHILD_ERROR: &str = "baton-xdp-child-error: ";

/// A namespace with a veth pair `x0` (the switch side) ↔ `x1`.
struct Bed {
    ns: Netns,
}

impl Bed {
    fn new() -> Bed {
        require_root();
        let ns = Netns::new("bx").no_ipv6();
        ns.veth("x0", &ns, "x1");
        ns.addr("x1", "198.18.0.10/15");
        Bed { ns }
    }

    fn ifindex(&self, ifc: &str) -> u32 {
        let ifc = ifc.to_string();
        self.ns.run(move || {
            let name = std::ffi::CString::new(ifc).unwrap();
            // SAFETY: a valid C string.
            unsafe { libc::if_nametoindex(name.as_ptr()) }
        })
    }

    fn cfg(&self, fast_path: FastPath, attach: XdpAttach, flows: u32) -> AfXdpConfig {
        let mut cfg = AfXdpConfig::new("x0");
        cfg.fast_path = fast_path;
        cfg.attach = attach;
        cfg.flow_capacity = flows;
        cfg
    }

    /// Attaches the program to `x0` from a thread inside the namespace.
    fn try_attach(&self, cfg: AfXdpConfig) -> Result<XdpProgram, IoError> {
        let ifindex = self.ifindex("x0");
        self.ns
            .run(move || XdpProgram::attach(&cfg, ifindex, 2, SWITCH_MAC))
    }

    fn attach(&self, fast_path: FastPath, flows: u32) -> XdpProgram {
        self.try_attach(self.cfg(fast_path, XdpAttach::Native, flows))
            .unwrap_or_else(|e| panic!("attach: {e}"))
    }

    /// `ip -d link show dev <ifc>`.
    fn link(&self, ifc: &str) -> String {
        let out = self.ns.exec(&["ip", "-d", "link", "show", "dev", ifc]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn has_xdp(&self, ifc: &str) -> bool {
        self.link(ifc).contains("prog/xdp")
    }

    /// Waits up to `within` for `x0` to carry no XDP program.
    fn wait_detached(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        loop {
            if !self.has_xdp("x0") {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn key() -> OffloadKey {
    OffloadKey {
        client: CLIENT,
        vip: VIP,
        client_port: CLIENT_PORT,
        port: PORT,
    }
}

fn flow(wshift: u8) -> OffloadFlow {
    OffloadFlow {
        backend_mac: BACKEND_MAC,
        rcv_nxt: ISN,
        wshift,
        owner: OWNER,
    }
}

/// A frame to describe: every field of the segment the tests vary.
#[derive(Clone)]
struct Seg {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: usize,
    proto: u8,
    frag: u16,
    options: bool,
    bad_csum: bool,
}

impl Seg {
    fn data(seq: u32, payload: usize) -> Seg {
        Seg {
            src: CLIENT,
            dst: VIP,
            sport: CLIENT_PORT,
            dport: PORT,
            seq,
            flags: TCP_ACK | TCP_PSH,
            payload,
            proto: 6,
            frag: 0x4000, // DF
            options: false,
            bad_csum: false,
        }
    }

    fn frame(&self) -> Vec<u8> {
        let ihl = if self.options { 24 } else { 20 };
        let l4 = if self.proto == 6 { 20 } else { 8 };
        let total = ihl + l4 + self.payload;
        let mut f = Vec::with_capacity(14 + total);
        f.extend_from_slice(&SWITCH_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let ip = f.len();
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&0x1234u16.to_be_bytes());
        f.extend_from_slice(&self.frag.to_be_bytes());
        f.push(64);
        f.push(self.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.src);
        f.extend_from_slice(&self.dst);
        if self.options {
            f.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        }
        let mut sum = 0u32;
        for w in f[ip..ip + ihl].chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let mut csum = !(sum as u16);
        if self.bad_csum {
            csum ^= 0x0101;
        }
        f[ip + 10..ip + 12].copy_from_slice(&csum.to_be_bytes());
        f.extend_from_slice(&self.sport.to_be_bytes());
        f.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == 6 {
            f.extend_from_slice(&self.seq.to_be_bytes());
            f.extend_from_slice(&0x2000_0000u32.to_be_bytes()); // ack
            f.push(5 << 4);
            f.push(self.flags);
            f.extend_from_slice(&65535u16.to_be_bytes());
            f.extend_from_slice(&[0xab, 0xcd, 0, 0]); // checksum (unchecked), urgent
        } else {
            f.extend_from_slice(&((8 + self.payload) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        for i in 0..self.payload {
            f.push((i % 251) as u8);
        }
        f
    }
}

fn arp_frame() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&VIP);
    f.resize(60, 0);
    f
}

/// The relayed copy of `orig`: MACs rewritten, nothing else.
fn relayed(orig: &[u8]) -> Vec<u8> {
    let mut f = orig.to_vec();
    f[0..6].copy_from_slice(&BACKEND_MAC);
    f[6..12].copy_from_slice(&SWITCH_MAC);
    f
}

fn table(prog: &XdpProgram) -> FlowTable {
    prog.flows().expect("flows").expect("the fast path is on")
}

#[test]
fn relays_an_offloaded_flow_and_moves_its_state() {
    let bed = Bed::new();
    let prog = bed.attach(FastPath::Xdp, 64);
    assert_eq!(prog.mode(), "native");
    let mut flows = table(&prog);
    flows.insert(&key(), &flow(0)).expect("insert");
    let before = flows.read(&key(), OWNER).expect("inserted");
    assert_eq!((before.rcv_nxt, before.packets), (ISN, 0));

    // New data: relayed, rcv_nxt to its end.
    let f = Seg::data(ISN, 100).frame();
    let (act, out) = prog.test_run(&f).expect("test run");
    assert_eq!(act, action::TX);
    assert_eq!(out, relayed(&f), "only the MACs change");
    let v = flows.read(&key(), OWNER).unwrap();
    assert_eq!(v.rcv_nxt, ISN + 100);
    assert_eq!(v.packets, 1);
    assert!(
        v.idle < Duration::from_secs(1),
        "last_seen moved: {:?}",
        v.idle
    );

    // A retransmission: relayed, rcv_nxt stays.
    let (act, out) = prog.test_run(&f).unwrap();
    assert_eq!((act, out), (action::TX, relayed(&f)));
    let v = flows.read(&key(), OWNER).unwrap();
    assert_eq!((v.rcv_nxt, v.packets), (ISN + 100, 2));

    // An old segment and one far beyond the window (65535 << 0): relayed
    // (the backend judges them), rcv_nxt stays.
    for seq in [ISN - 5000, ISN + 100 + 70_000] {
        let (act, _) = prog.test_run(&Seg::data(seq, 10).frame()).unwrap();
        assert_eq!(act, action::TX);
        assert_eq!(
            flows.read(&key(), OWNER).unwrap().rcv_nxt,
            ISN + 100,
            "seq {seq:#x}"
        );
    }
    // A pure ACK moves nothing; data at the edge of the window moves it.
    prog.test_run(&Seg::data(ISN + 100, 0).frame()).unwrap();
    assert_eq!(flows.read(&key(), OWNER).unwrap().rcv_nxt, ISN + 100);
    prog.test_run(&Seg::data(ISN + 100 + 65535 - 10, 10).frame())
        .unwrap();
    assert_eq!(
        flows.read(&key(), OWNER).unwrap().rcv_nxt,
        ISN + 100 + 65535
    );

    let v = flows.read(&key(), OWNER).unwrap();
    assert_eq!(v.packets, 6);
    let s = prog.stats();
    assert_eq!(s.forwarded_packets, 6);
    let bytes = 2 * f.len() as u64
        + 3 * Seg::data(0, 10).frame().len() as u64
        + Seg::data(0, 0).frame().len() as u64;
    assert_eq!(s.forwarded_bytes, bytes);
    assert_eq!((s.to_worker, s.passed, s.dropped), (0, 0, 0));
    assert_eq!((s.flows, s.mode), (1, "native"));
}

#[test]
fn window_scale_bounds_how_far_rcv_nxt_moves() {
    let bed = Bed::new();
    let prog = bed.attach(FastPath::Xdp, 64);
    let mut flows = table(&prog);
    // wshift 7: the window reaches 65535 << 7; beyond 14 it is capped.
    flows.insert(&key(), &flow(7)).unwrap();
    let far = (65535u32 << 7) - 100;
    prog.test_run(&Seg::data(ISN + far, 100).frame()).unwrap();
    assert_eq!(flows.read(&key(), OWNER).unwrap().rcv_nxt, ISN + far + 100);
    let next = ISN + far + 100;
    prog.test_run(&Seg::data(next + (65535u32 << 7), 1).frame())
        .unwrap();
    assert_eq!(
        flows.read(&key(), OWNER).unwrap().rcv_nxt,
        next,
        "beyond the window"
    );

    flows.insert(&key(), &flow(200)).unwrap();
    let cap = (65535u32 << 14) - 1;
    prog.test_run(&Seg::data(ISN + cap, 1).frame()).unwrap();
    assert_eq!(flows.read(&key(), OWNER).unwrap().rcv_nxt, ISN + cap + 1);
    prog.test_run(&Seg::data(ISN + cap + 1 + (65535u32 << 14), 1).frame())
        .unwrap();
    assert_eq!(flows.read(&key(), OWNER).unwrap().rcv_nxt, ISN + cap + 1);
}

/// Frames the program must leave to the worker (or the kernel), untouched.
fn not_relayed() -> Vec<(&'static str, Vec<u8>)> {
    let data = Seg::data(ISN, 100);
    let with = |f: &dyn Fn(&mut Seg)| {
        let mut s = data.clone();
        f(&mut s);
        s.frame()
    };
    let mut short_total = data.frame();
    short_total[16..18].copy_from_slice(&2000u16.to_be_bytes()); // longer than the frame
    let mut vlan = data.frame();
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let mut bad_doff = data.frame();
    bad_doff[46] = 4 << 4; // 16-byte TCP header
    vec![
        (
            "SYN of another flow",
            with(&|s| {
                s.flags = TCP_SYN;
                s.sport = CLIENT_PORT + 2;
            }),
        ),
        ("FIN", with(&|s| s.flags = TCP_FIN | TCP_ACK)),
        ("RST", with(&|s| s.flags = TCP_RST)),
        ("RST-ACK", with(&|s| s.flags = TCP_RST | TCP_ACK)),
        ("bad IP checksum", with(&|s| s.bad_csum = true)),
        ("IP options", with(&|s| s.options = true)),
        ("first fragment (MF)", with(&|s| s.frag = 0x2000)),
        ("later fragment", with(&|s| s.frag = 0x0010)),
        ("UDP", with(&|s| s.proto = 17)),
        ("unknown client port", with(&|s| s.sport = CLIENT_PORT + 1)),
        ("unknown client", with(&|s| s.src = [198, 18, 0, 11])),
        ("other VIP", with(&|s| s.dst = [198, 19, 0, 2])),
        ("other port", with(&|s| s.dport = 443)),
        ("IP length beyond the frame", short_total),
        ("TCP header length 16", bad_doff),
        ("VLAN tag", vlan),
        ("ARP", arp_frame()),
        ("Ethernet header only", data.frame()[..14].to_vec()),
        ("truncated TCP header", data.frame()[..50].to_vec()),
    ]
}

#[test]
fn leaves_everything_else_to_the_worker_untouched() {
    let bed = Bed::new();
    let mut prog = bed.attach(FastPath::Xdp, 64);
    let mut flows = table(&prog);
    flows.insert(&key(), &flow(0)).unwrap();
    let frames = not_relayed();

    // No socket on queue 0: the kernel stack gets them.
    for (what, f) in &frames {
        let (act, out) = prog.test_run(f).unwrap();
        assert_eq!(act, action::PASS, "{what}");
        assert_eq!(&out, f, "{what}: frame untouched");
    }
    let n = frames.len() as u64;
    let s = prog.stats();
    assert_eq!((s.passed, s.to_worker, s.forwarded_packets), (n, 0, 0));
    assert_eq!(flows.read(&key(), OWNER).unwrap().packets, 0);
    assert_eq!(flows.read(&key(), OWNER).unwrap().rcv_nxt, ISN);

    // With a socket on queue 0, they go to it.
    let xsk = bed.ns.run(xsk_socket);
    prog.register_socket(0, xsk.as_raw_fd()).expect("register");
    for (what, f) in &frames {
        let (act, out) = prog.test_run(f).unwrap();
        assert_eq!(act, action::REDIRECT, "{what}");
        assert_eq!(&out, f, "{what}: frame untouched");
    }
    let s = prog.stats();
    assert_eq!((s.passed, s.to_worker, s.forwarded_packets), (n, n, 0));
    // The fast path still relays its own.
    let (act, _) = prog.test_run(&Seg::data(ISN, 1).frame()).unwrap();
    assert_eq!(act, action::TX);

    prog.unregister_socket(0).unwrap();
    let (act, _) = prog.test_run(&arp_frame()).unwrap();
    assert_eq!(act, action::PASS);
    assert!(
        prog.register_socket(2, xsk.as_raw_fd()).is_err(),
        "queue beyond the map"
    );
    assert_eq!(prog.stats().dropped, 0);
}

/// A client reusing its 4-tuple: the SYN retires the old flow (its segments
/// reach a worker again), the worker that answers the SYN offloads the new
/// connection under its own owner tag, and the old connection's worker can
/// then neither read nor remove what is no longer its own.
#[test]
fn a_syn_retires_the_flow_and_a_new_connection_takes_the_key_over() {
    let bed = Bed::new();
    let prog = bed.attach(FastPath::Xdp, 64);
    let mut old = table(&prog);
    let mut new = table(&prog);
    old.insert(&key(), &flow(0)).unwrap();
    let (act, _) = prog.test_run(&Seg::data(ISN, 10).frame()).unwrap();
    assert_eq!(act, action::TX);

    for flags in [TCP_SYN, TCP_SYN | TCP_ACK, TCP_SYN] {
        let mut syn = Seg::data(ISN + 70_000, 0);
        syn.flags = flags;
        let f = syn.frame();
        let (act, out) = prog.test_run(&f).unwrap();
        assert_eq!(
            (act, out),
            (action::PASS, f),
            "flags {flags:#x}: to the worker"
        );
    }
    assert_eq!(prog.stats().retired, 1, "retired once");
    let seen = old.read(&key(), OWNER).expect("still there");
    assert!(seen.retired);
    assert_eq!((seen.rcv_nxt, seen.packets), (ISN + 10, 1));
    // Retired: the old flow's segments go to the worker, untouched.
    let f = Seg::data(ISN + 10, 10).frame();
    let (act, out) = prog.test_run(&f).unwrap();
    assert_eq!((act, out), (action::PASS, f));
    assert_eq!(prog.stats().forwarded_packets, 1);

    // The new connection, on another worker, takes the key over.
    let taker = dataplane::offload::owner_tag(1, 9);
    assert_ne!(taker, OWNER);
    let mut f2 = flow(0);
    f2.owner = taker;
    f2.rcv_nxt = ISN + 70_001;
    new.insert(&key(), &f2).expect("replaces the retired flow");
    assert_eq!(prog.stats().flows, 1);
    let (act, _) = prog.test_run(&Seg::data(ISN + 70_001, 5).frame()).unwrap();
    assert_eq!(act, action::TX, "relayed for the new connection");
    assert!(old.read(&key(), OWNER).is_none(), "not the old one's");
    let seen = new.read(&key(), taker).unwrap();
    assert!(!seen.retired);
    assert_eq!((seen.rcv_nxt, seen.packets), (ISN + 70_006, 1));

    // The old connection's entry ends: the new flow stays.
    assert_eq!(old.remove(&key(), OWNER), Removal::TakenOver);
    assert_eq!(prog.stats().flows, 1);
    let (act, _) = prog.test_run(&Seg::data(ISN + 70_006, 5).frame()).unwrap();
    assert_eq!(act, action::TX);
    assert_eq!(new.remove(&key(), taker), Removal::Removed);
    assert_eq!(prog.stats().flows, 0);
    assert_eq!(new.remove(&key(), taker), Removal::Failed);
}

#[test]
fn fast_path_off_relays_nothing() {
    let bed = Bed::new();
    let prog = bed.attach(FastPath::Off, 64);
    assert!(prog.flows().unwrap().is_none());
    assert!(!prog.fast_path());
    let f = Seg::data(ISN, 100).frame();
    let (act, out) = prog.test_run(&f).unwrap();
    assert_eq!((act, out), (action::PASS, f));
    let s = prog.stats();
    assert_eq!((s.passed, s.forwarded_packets, s.flows), (1, 0, 0));
}

#[test]
fn flow_table_counts_and_refuses_when_full() {
    let bed = Bed::new();
    let prog = bed.attach(FastPath::Xdp, 4);
    let mut a = table(&prog);
    let mut b = table(&prog);
    let k = |port: u16| OffloadKey {
        client_port: port,
        ..key()
    };
    for p in 0..4 {
        a.insert(&k(1000 + p), &flow(0)).expect("room");
    }
    assert_eq!(prog.stats().flows, 4);
    assert!(matches!(
        b.insert(&k(2000), &flow(0)),
        Err(OffloadError::Full)
    ));
    // An update of a present flow is no new flow.
    let mut moved = flow(3);
    moved.rcv_nxt = ISN + 7;
    b.insert(&k(1001), &moved).expect("update");
    assert_eq!((prog.stats().flows, a.len()), (4, 4));
    let seen = a.read(&k(1001), OWNER).unwrap();
    assert_eq!((seen.rcv_nxt, seen.packets), (ISN + 7, 0));
    assert!(seen.idle < Duration::from_secs(1));

    assert_eq!(b.remove(&k(1002), OWNER), Removal::Removed);
    assert_eq!(a.remove(&k(1002), OWNER), Removal::Failed, "already gone");
    assert!(a.read(&k(1002), OWNER).is_none());
    assert_eq!(prog.stats().flows, 3);
    a.insert(&k(2000), &flow(0)).expect("room again");
    assert_eq!(prog.stats().flows, 4);

    // Handles work from other threads (one per worker).
    let mut c = table(&prog);
    let h = std::thread::spawn(move || c.remove(&k(2000), OWNER));
    assert_eq!(h.join().unwrap(), Removal::Removed);
    assert_eq!(prog.stats().flows, 3);

    // Ports are stored as on the wire: a relayed frame finds the flow.
    let (act, _) = prog
        .test_run(
            &Seg {
                sport: 1001,
                ..Seg::data(ISN + 7, 1)
            }
            .frame(),
        )
        .unwrap();
    assert_eq!(act, action::TX);
    assert_eq!(a.read(&k(1001), OWNER).unwrap().packets, 1);
}

#[test]
fn one_switch_per_interface_and_drop_detaches() {
    let bed = Bed::new();
    let prog = bed.attach(FastPath::Xdp, 64);
    let link = bed.link("x0");
    assert!(link.contains("prog/xdp"), "{link}");
    assert!(link.contains("name baton_fastpath"), "{link}");
    assert!(!link.contains("xdpgeneric"), "native mode: {link}");
    assert!(prog.notes().is_empty(), "{:?}", prog.notes());

    let err = bed
        .try_attach(bed.cfg(FastPath::Xdp, XdpAttach::Auto, 64))
        .expect_err("a second switch on x0");
    let msg = err.to_string();
    let me = format!(
        "interface x0 is already served by baton (pid {})",
        std::process::id()
    );
    assert!(msg.contains(&me), "{msg}");
    assert!(bed.has_xdp("x0"), "the first one's program stays");

    drop(prog);
    assert!(
        bed.wait_detached(Duration::from_secs(2)),
        "{}",
        bed.link("x0")
    );
    // Free again.
    let again = bed.attach(FastPath::Xdp, 64);
    assert!(bed.has_xdp("x0"));
    drop(again);
    assert!(bed.wait_detached(Duration::from_secs(2)));
}

#[test]
fn generic_mode_and_auto() {
    let bed = Bed::new();
    let prog = bed
        .try_attach(bed.cfg(FastPath::Xdp, XdpAttach::Generic, 64))
        .unwrap();
    assert_eq!((prog.mode(), prog.stats().mode), ("generic", "generic"));
    assert!(bed.link("x0").contains("xdpgeneric"), "{}", bed.link("x0"));
    drop(prog);
    assert!(bed.wait_detached(Duration::from_secs(2)));
    // veth has native XDP: auto takes it.
    let prog = bed
        .try_attach(bed.cfg(FastPath::Xdp, XdpAttach::Auto, 64))
        .unwrap();
    assert_eq!(prog.mode(), "native");
}

#[test]
fn native_mode_needs_a_driver_that_has_it() {
    // The loopback has no native XDP: native fails clearly, auto falls back.
    let bed = Bed::new();
    let lo = bed.ifindex("lo");
    let mut cfg = bed.cfg(FastPath::Xdp, XdpAttach::Native, 64);
    cfg.iface = "lo".into();
    let native = cfg.clone();
    let msg = bed
        .ns
        .run(move || XdpProgram::attach(&native, lo, 1, SWITCH_MAC))
        .expect_err("lo has no native XDP")
        .to_string();
    assert!(
        msg.contains("the driver of lo has no native XDP mode"),
        "{msg}"
    );
    assert!(!bed.has_xdp("lo"));
    cfg.attach = XdpAttach::Auto;
    let prog = bed
        .ns
        .run(move || XdpProgram::attach(&cfg, lo, 1, SWITCH_MAC))
        .expect("auto on lo");
    assert_eq!(prog.mode(), "generic");
    assert!(bed.link("lo").contains("xdpgeneric"));
}

#[test]
fn missing_capabilities_are_named() {
    // In a child process: aya probes the kernel's BPF features once per
    // process, and a probe without CAP_BPF would spoil every later load.
    let bed = Bed::new();
    let out = child(&bed, "nocaps")
        .stdout(Stdio::piped())
        .output()
        .expect("run the child");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = text
        .lines()
        .find_map(|l| l.split_once(CHILD_ERROR).map(|(_, e)| e.to_string()))
        .unwrap_or_else(|| panic!("no error from the child: {text}"));
    assert!(err.starts_with("Permission"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
    assert!(!bed.has_xdp("x0"));
    bed.attach(FastPath::Xdp, 64);
}

/// This test binary, run as a child process in `mode` for `bed`.
fn child(bed: &Bed, mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, format!("{mode}:{}", bed.ns.name))
    .stdin(Stdio::null())
    .stderr(Stdio::inherit());
    c
}

#[test]
fn refuses_an_interface_with_another_program() {
    let bed = Bed::new();
    let ifindex = bed.ifindex("x0");
    let other = bed
        .ns
        .run(move || DropBaseline::attach(ifindex, XdpAttach::Native))
        .expect("baseline");
    let msg = bed
        .try_attach(bed.cfg(FastPath::Xdp, XdpAttach::Auto, 64))
        .expect_err("x0 is taken")
        .to_string();
    assert!(msg.contains("already has an XDP program attached"), "{msg}");
    assert!(msg.contains("baton_drop"), "{msg}");
    assert!(msg.contains("ip link set dev x0 xdp off"), "{msg}");
    drop(other);
    assert!(bed.wait_detached(Duration::from_secs(2)));
    bed.attach(FastPath::Xdp, 64);
}

#[test]
fn removes_a_stale_program_attached_the_legacy_way() {
    let bed = Bed::new();
    // What an earlier run on a kernel without XDP links leaves behind: the
    // program attached through netlink, which outlives its process.
    let obj = concat!(env!("OUT_DIR"), "/fastpath.bpf.o");
    bed.ns.exec(&[
        "ip", "link", "set", "dev", "x0", "xdpdrv", "obj", obj, "sec", "xdp",
    ]);
    assert!(bed.link("x0").contains("name baton_fastpath"));
    let prog = bed.attach(FastPath::Xdp, 64);
    assert_eq!(prog.notes().len(), 1, "{:?}", prog.notes());
    assert!(
        prog.notes()[0].contains("stale baton_fastpath"),
        "{:?}",
        prog.notes()
    );
    let id = prog.program_id().expect("program id");
    assert!(
        bed.link("x0").contains(&format!("prog/xdp id {id} ")),
        "ours now"
    );
    drop(prog);
    assert!(bed.wait_detached(Duration::from_secs(2)));
}

#[test]
fn sigkilled_holder_leaves_nothing_attached() {
    let bed = Bed::new();
    let mut child = child(&bed, "hold")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let attached = lines
        .by_ref()
        .map_while(Result::ok)
        // libtest prints "test <name> ... " on the same line first.
        .any(|l| l.contains(CHILD_READY));
    if !attached {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child did not attach");
    }
    assert!(bed.has_xdp("x0"), "the child's program is attached");
    let msg = bed
        .try_attach(bed.cfg(FastPath::Xdp, XdpAttach::Native, 64))
        .expect_err("the child serves x0")
        .to_string();
    assert!(
        msg.contains(&format!("already served by baton (pid {})", child.id())),
        "{msg}"
    );

    // SIGKILL: no destructor runs; the kernel closes the link and the lock.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        bed.wait_detached(Duration::from_secs(5)),
        "still attached after the holder died: {}",
        bed.link("x0")
    );
    let prog = bed.attach(FastPath::Xdp, 64);
    assert!(prog.notes().is_empty(), "nothing stale: {:?}", prog.notes());
}

/// Not a test on its own: the child process of a test (this binary, run
/// with `BATON_XDP_TEST_CHILD=<mode>:<namespace>`); without the variable it
/// does nothing. Modes:
/// * `hold` (`sigkilled_holder_leaves_nothing_attached`): attaches to `x0`,
///   says so, and waits to be killed;
/// * `nocaps` (`missing_capabilities_are_named`): drops CAP_BPF and its
///   kin, attaches, and prints the error it got.
#[test]
fn child_process() {
    let Ok(var) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (mode, ns) = var.split_once(':').expect("<mode>:<namespace>");
    testkit::netns::enter(ns);
    let name = std::ffi::CString::new("x0").unwrap();
    // SAFETY: a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    let mut cfg = AfXdpConfig::new("x0");
    cfg.flow_capacity = 64;
    match mode {
        "hold" => {
            let prog = XdpProgram::attach(&cfg, ifindex, 1, SWITCH_MAC)
                .unwrap_or_else(|e| panic!("child attach: {e}"));
            println!("{CHILD_READY}");
            loop {
                std::thread::sleep(Duration::from_secs(60));
                let _ = prog.stats();
            }
        }
        "nocaps" => {
            testkit::caps::drop_effective(&[
                testkit::caps::SYS_ADMIN,
                testkit::caps::NET_ADMIN,
                testkit::caps::BPF,
                testkit::caps::PERFMON,
            ]);
            match XdpProgram::attach(&cfg, ifindex, 1, SWITCH_MAC) {
                Ok(_) => println!("{CHILD_ERROR}none: attached"),
                Err(e) => println!("{CHILD_ERROR}{e:?} / {e}"),
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn relays_live_frames_on_the_veth() {
    let bed = Bed::new();
    let x0 = bed.ns.mac("x0");
    let prog = bed.attach(FastPath::Xdp, 64);
    // veth delivers XDP_TX frames into the peer's XDP ring and wakes the
    // peer's NAPI only when the peer runs an XDP program itself (GRO on the
    // peer is not enough: the frames are queued but nobody polls them). A
    // second switch program with the fast path off passes them on to x1's
    // stack, where the raw socket sees them.
    let x1 = bed.ifindex("x1");
    let mut peer_cfg = bed.cfg(FastPath::Off, XdpAttach::Native, 1);
    peer_cfg.iface = "x1".into();
    let _peer = bed
        .ns
        .run(move || XdpProgram::attach(&peer_cfg, x1, 1, CLIENT_MAC))
        .expect("attach to x1");
    let mut flows = table(&prog);
    flows.insert(&key(), &flow(0)).unwrap();
    let mut f = Seg::data(ISN, 200).frame();
    f[0..6].copy_from_slice(&x0);
    let got = bed.ns.run(move || {
        let sock = RawSock::open("x1");
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert!(sock.send(&f));
            while let Some(r) = sock.recv(Duration::from_millis(200)) {
                if r[0..6] == BACKEND_MAC {
                    return Some((f, r));
                }
            }
        }
        None
    });
    let (sent, back) = got.unwrap_or_else(|| {
        let stats = |i: &str| {
            String::from_utf8_lossy(&bed.ns.exec(&["ethtool", "-S", i]).stdout).into_owned()
        };
        panic!(
            "the relayed frame did not come back to x1: {:?}\nx0: {}\nx1: {}\n{}",
            prog.stats(),
            stats("x0"),
            stats("x1"),
            bed.link("x1")
        )
    });
    assert_eq!(&back[6..12], &SWITCH_MAC);
    assert_eq!(&back[12..sent.len()], &sent[12..], "IP and TCP untouched");
    assert!(prog.stats().forwarded_packets >= 1);
    assert!(flows.read(&key(), OWNER).unwrap().packets >= 1);
    assert_eq!(flows.read(&key(), OWNER).unwrap().rcv_nxt, ISN + 200);
}

#[test]
fn drop_baseline_counts_what_it_drops() {
    let bed = Bed::new();
    let ifindex = bed.ifindex("x0");
    let base = bed
        .ns
        .run(move || DropBaseline::attach(ifindex, XdpAttach::Native))
        .expect("baseline");
    assert_eq!(base.mode(), "native");
    let x0 = bed.ns.mac("x0");
    bed.ns.run(move || {
        let sock = RawSock::open("x1");
        for i in 0..100 {
            sock.send(&testkit::raw_socket::test_frame(x0, CLIENT_MAC, i, 64));
        }
    });
    let until = Instant::now() + Duration::from_secs(2);
    while base.packets() < 100 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(base.packets(), 100);
    drop(base);
    assert!(bed.wait_detached(Duration::from_secs(2)));
}

/// An AF_XDP socket with its UMEM and rings set up (unbound): enough for
/// the program's socket map to accept it.
fn xsk_socket() -> OwnedFd {
    const FRAMES: usize = 16;
    const FRAME: usize = 4096;
    // SAFETY: plain syscalls on memory and fds this function owns; results
    // checked.
    unsafe {
        let fd = libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        assert!(
            fd >= 0,
            "AF_XDP socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = OwnedFd::from_raw_fd(fd);
        let area = libc::mmap(
            std::ptr::null_mut(),
            FRAMES * FRAME,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(area, libc::MAP_FAILED);
        // Leaked on purpose: the UMEM must outlive the socket.
        let mut reg: libc::xdp_umem_reg = std::mem::zeroed();
        reg.addr = area as u64;
        reg.len = (FRAMES * FRAME) as u64;
        reg.chunk_size = FRAME as u32;
        let set = |opt: libc::c_int, val: *const libc::c_void, len: usize| {
            let rc = libc::setsockopt(fd.as_raw_fd(), libc::SOL_XDP, opt, val, len as u32);
            assert_eq!(
                rc,
                0,
                "setsockopt {opt}: {}",
                std::io::Error::last_os_error()
            );
        };
        set(
            libc::XDP_UMEM_REG,
            (&reg as *const libc::xdp_umem_reg).cast(),
            std::mem::size_of::<libc::xdp_umem_reg>(),
        );
        let n: libc::c_int = FRAMES as libc::c_int;
        let pn = (&n as *const libc::c_int).cast();
        let sz = std::mem::size_of::<libc::c_int>();
        set(libc::XDP_UMEM_FILL_RING, pn, sz);
        set(libc::XDP_UMEM_COMPLETION_RING, pn, sz);
        set(libc::XDP_RX_RING, pn, sz);
        fd
    }
}
