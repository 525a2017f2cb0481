//! Blind RST and FIN spray: an off-path attacker who knows the legitimate
//! client's address sends RSTs and FINs "from" it to the VIP over the whole
//! client port range, with guessed sequence numbers, while that client runs
//! long downloads. Only a segment inside the receive window may end a
//! connection (RFC 5961); a switch that believes any RST or FIN for a known
//! 4-tuple lets the attacker cut every download. None may be cut.

use super::packet::{flags, Pacer, RawSender, TcpSeg};
use super::{Legit, LegitSpec, Outcome, Rng, Size, ATTACKER, LEGIT};
use crate::addr;
use crate::content::OBJ_1M;
use crate::error::Result;
use crate::scenario::Running;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Parameters of the spray.
#[derive(Debug, Clone, Copy)]
pub struct BlindReset {
    /// First and last client port sprayed (the bed's ephemeral range).
    pub ports: (u16, u16),
    /// Guesses per port and segment kind.
    pub guesses: u32,
    /// Segment kinds: RST, FIN+ACK, RST+ACK (the first `kinds` of them).
    pub kinds: usize,
    /// Segments per second.
    pub rate: u64,
    /// Concurrent legitimate downloads.
    pub downloads: usize,
}

impl BlindReset {
    /// The size's parameters.
    pub fn new(size: Size) -> BlindReset {
        match size {
            Size::Short => BlindReset {
                ports: (1024, 65000),
                guesses: 1,
                kinds: 2,
                rate: 40_000,
                downloads: 4,
            },
            Size::Full => BlindReset {
                ports: (1024, 65000),
                guesses: 4,
                kinds: 3,
                rate: 50_000,
                downloads: 8,
            },
        }
    }
}

const KINDS: [u8; 3] = [flags::RST, flags::FIN | flags::ACK, flags::RST | flags::ACK];

/// Sprays from the calling thread's namespace, spoofing `victim`; returns
/// the segments the kernel took.
pub fn spray(p: BlindReset, victim: std::net::Ipv4Addr, seed: u64) -> std::io::Result<u64> {
    let mut tx = RawSender::open()?;
    let mut rng = Rng::new(seed);
    let mut pace = Pacer::new(p.rate);
    let vip = SocketAddrV4::new(addr::VIP, addr::VIP_PORT);
    let mut sent = 0;
    for _ in 0..p.guesses {
        for &kind in &KINDS[..p.kinds.min(KINDS.len())] {
            for port in p.ports.0..=p.ports.1 {
                pace.tick();
                let s = TcpSeg::new(
                    SocketAddrV4::new(victim, port),
                    vip,
                    rng.next_u32(),
                    rng.next_u32(),
                    kind,
                );
                if tx.send(&s.build()) {
                    sent += 1;
                }
            }
        }
    }
    Ok(sent)
}

/// Runs the spray while the legitimate client downloads.
pub fn run(sys: &Running, p: BlindReset) -> Result<Outcome> {
    let mut o = Outcome::new("blind_rst_fin", super::synflood::sys_io(sys));
    let spec = LegitSpec {
        path: OBJ_1M.path.to_string(),
        expect: Some(OBJ_1M),
        threads: p.downloads,
        gap: Duration::from_millis(5),
        // 1 MiB read 16 KiB every 15 ms: about a second per download.
        pace: Some((16384, Duration::from_millis(15))),
        ..LegitSpec::small()
    };
    let m0 = sys.stack.metrics()?;
    let legit = Legit::start(sys.client(LEGIT), spec);
    // Let downloads be under way before the first guess lands.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let victim = addr::client_data(LEGIT);
    let sent = sys.in_client(ATTACKER, move || spray(p, victim, 0xb1d))?;
    o.seconds = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let r = legit.stop();
    o.sent = sent.unwrap_or(0);
    let cut = r.failed + r.hung + r.connect_failed;
    o.check(
        "0 legitimate downloads cut",
        cut == 0 && r.ok > 0,
        format!(
            "{} downloads of 1 MiB completed, {} cut: {:?}",
            r.ok, cut, r.errors
        ),
    );
    o.legit(r);
    let m1 = sys.stack.metrics()?;
    let closed = |m: &str| {
        crate::client::metric_sum(
            m,
            "baton_worker_closed_connections_total",
            &[("reason", "client_reset")],
        )
        .unwrap_or(0.0)
    };
    o.figure("closed_by_client_reset", closed(&m1) - closed(&m0));
    for reason in ["out_of_window", "no_flow", "bad_state"] {
        let d = crate::client::metric_sum(
            &m1,
            "baton_worker_dropped_packets_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
            - crate::client::metric_sum(
                &m0,
                "baton_worker_dropped_packets_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0);
        o.figure(format!("dropped_{reason}"), d);
    }
    Ok(o)
}
