//! Adoption cost: `repair::adopt` (socket, TCP_REPAIR, bind, seqs, connect,
//! options, timestamp, request into the receive queue, window, repair off)
//! plus the silent close, in a private network namespace with the VIP on lo.
//!
//! `cargo bench -p agent --bench adopt` (as root; prints figures).

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use agent::repair::adopt;
use testkit::netns::Netns;
use testkit::tcp_state;

const N: u32 = 20_000;

fn main() {
    let ns = Netns::new("agbench");
    ns.addr("lo", "198.18.0.10/32");
    // A route to the (fictitious) clients: connect needs one even in repair
    // mode; a veth whose peer is down swallows the window probes (this
    // kernel has no dummy device).
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["link", "set", "d0", "up"]);
    ns.ip(&["route", "add", "198.18.0.0/15", "dev", "d0"]);
    let lat = ns.run(move || {
        let request = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
        let mut lat = Vec::with_capacity(N as usize);
        for i in 0..N {
            let client = format!("198.18.{}.{}:{}", 1 + (i / 250) % 200, 1 + i % 250, 10_000 + i % 50_000);
            let isn = i.wrapping_mul(2_654_435_761);
            let vip = "198.18.0.10:80".parse().unwrap();
            let st = tcp_state::between(client.parse().unwrap(), vip, isn, request.len() as u32);
            let t = Instant::now();
            let s = adopt(&st, request).expect("adopt");
            lat.push(t.elapsed());
            agent::relay::close_silently_for_bench(s.as_raw_fd());
        }
        lat
    });
    let mut sorted = lat.clone();
    sorted.sort();
    let total: Duration = lat.iter().sum();
    let pct = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p) as usize];
    println!(
        "adoption with TCP_REPAIR, {N} connections (IPv4, MSS/wscale/SACK/TS, 80-byte request):"
    );
    println!(
        "  mean {:?}  p50 {:?}  p99 {:?}  max {:?}",
        total / N,
        pct(0.5),
        pct(0.99),
        sorted[sorted.len() - 1]
    );
    println!(
        "  {:.0} adoptions/s on one core",
        N as f64 / total.as_secs_f64()
    );
}
