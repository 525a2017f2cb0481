//! Spoofed SYN flood: SYNs to the VIP from random addresses of 198.18.0.0/15
//! (never a host of the bed), at a bounded rate. A switch that keeps state
//! for every SYN runs out of table or memory; Baton must keep serving the
//! legitimate client and keep its memory flat (SYN cookies past the
//! threshold, a fixed-size table below it).
//!
//! "Flat" is measured as the growth of `baton`'s resident set during the
//! second half of the flood: the first half may still touch preallocated
//! pages for the first time, the second must not need new memory.

use super::packet::{flags, Pacer, RawSender, TcpSeg};
use super::{Legit, LegitSpec, Outcome, Rng, Size, ATTACKER, LEGIT};
use crate::addr;
use crate::error::Result;
use crate::scenario::Running;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Parameters of the flood.
#[derive(Debug, Clone, Copy)]
pub struct SynFlood {
    /// SYNs sent in all.
    pub count: u64,
    /// SYNs per second.
    pub rate: u64,
    /// Largest allowed RSS growth of `baton` over the second half, KiB.
    pub flat_kib: u64,
}

impl SynFlood {
    /// The size's parameters.
    pub fn new(size: Size) -> SynFlood {
        match size {
            Size::Short => SynFlood {
                count: 20_000,
                rate: 10_000,
                flat_kib: 4096,
            },
            Size::Full => SynFlood {
                count: 200_000,
                rate: 20_000,
                flat_kib: 4096,
            },
        }
    }
}

/// A random spoofed source: 198.18.1.0–198.19.255.255 without the
/// management segment 198.19.0.0/24 and the bed's own hosts (198.18.0.0/24).
pub fn spoofed_source(rng: &mut Rng) -> SocketAddrV4 {
    loop {
        let r = rng.next_u32();
        let ip = Ipv4Addr::from(0xc612_0000 | (r & 0x1_ffff));
        let o = ip.octets();
        if ((o[1] == 18 || o[1] == 19) && o[2] == 0) || o[3] == 0 || o[3] == 255 {
            continue;
        }
        let port = 1024 + (rng.next_u32() % 64000) as u16;
        return SocketAddrV4::new(ip, port);
    }
}

/// Sends `n` spoofed SYNs from the calling thread's namespace; returns the
/// number the kernel took.
pub fn send_syns(n: u64, rate: u64, seed: u64) -> std::io::Result<u64> {
    let mut tx = RawSender::open()?;
    let mut rng = Rng::new(seed);
    let mut pace = Pacer::new(rate);
    let vip = SocketAddrV4::new(addr::VIP, addr::VIP_PORT);
    let mut sent = 0;
    for _ in 0..n {
        pace.tick();
        let mut s = TcpSeg::new(spoofed_source(&mut rng), vip, rng.next_u32(), 0, flags::SYN);
        // MSS 1460, SACK permitted, window scale 7: an ordinary SYN.
        s.options = vec![2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7];
        if tx.send(&s.build()) {
            sent += 1;
        }
    }
    Ok(sent)
}

/// Runs the flood against a running system.
pub fn run(sys: &Running, p: SynFlood) -> Result<Outcome> {
    let mut o = Outcome::new("syn_flood", sys_io(sys));
    let pid = sys.stack.switch.as_ref().and_then(|s| s.pid()).unwrap_or(0);
    let legit = Legit::start(sys.client(LEGIT), LegitSpec::small());
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = super::rss_kib(pid).unwrap_or(0);
    let t0 = Instant::now();
    let half = p.count / 2;
    let a = sys.in_client(ATTACKER, move || send_syns(half, p.rate, 0x5eed))?;
    let rss1 = super::rss_kib(pid).unwrap_or(0);
    let b = sys.in_client(ATTACKER, move || send_syns(p.count - half, p.rate, 0xf1a7))?;
    o.seconds = t0.elapsed().as_secs_f64();
    let rss2 = super::rss_kib(pid).unwrap_or(0);
    // Legitimate traffic goes on a moment after the flood ends.
    std::thread::sleep(Duration::from_millis(500));
    o.legit(legit.stop());
    o.sent = a.unwrap_or(0) + b.unwrap_or(0);
    o.check(
        "every SYN sent",
        o.sent == p.count,
        format!("{} of {}", o.sent, p.count),
    );
    let second_half = rss2.saturating_sub(rss1);
    o.check(
        format!("baton RSS flat (second half grows <= {} KiB)", p.flat_kib),
        rss0 > 0 && second_half <= p.flat_kib,
        format!("RSS {rss0} -> {rss1} -> {rss2} KiB"),
    );
    let running = sys
        .stack
        .switch
        .as_ref()
        .is_some_and(|s| s.pid().is_some_and(|pid| super::rss_kib(pid).is_some()));
    o.check("baton still running", running, "");
    let m = sys.stack.metrics().unwrap_or_default();
    for (k, r) in [
        ("sent", "sent"),
        ("validated", "validated"),
        ("failed", "failed"),
    ] {
        let v = crate::client::metric_sum(&m, "baton_worker_syn_cookies_total", &[("result", r)]);
        o.figure(format!("syn_cookies_{k}"), v.unwrap_or(0.0));
    }
    for r in ["table_full", "syn_backlog", "arp_unresolved", "tx_full"] {
        let v =
            crate::client::metric_sum(&m, "baton_worker_dropped_packets_total", &[("reason", r)]);
        o.figure(format!("dropped_{r}"), v.unwrap_or(0.0));
    }
    o.figure("rss_kib", format!("{rss0}/{rss1}/{rss2}"));
    Ok(o)
}

pub(crate) fn sys_io(sys: &Running) -> crate::baton::BatonIo {
    sys.stack.io
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofed_sources_avoid_the_bed() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let s = spoofed_source(&mut rng);
            let o = s.ip().octets();
            assert_eq!(o[0], 198);
            assert!(o[1] == 18 || o[1] == 19);
            assert_ne!((o[1], o[2]), (18, 0));
            assert_ne!((o[1], o[2]), (19, 0));
            assert!(s.port() >= 1024);
        }
    }
}
