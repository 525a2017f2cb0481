//! Adoption cost: `repair::adopt` (socket, TCP_REPAIR, bind, seqs, connect,
//! options, timestamp, request into the receive queue, window, repair off)
//! plus the silent close, in a private network namespace with the VIP on lo.
//!
//! `cargo bench -p agent --bench adopt` (as root; prints figures).

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::repair::adopt;
use handoff_proto::{Endpoints, TcpState, Timestamps, WindowScale};

const N: u32 = 20_000;

fn sh(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{args:?} failed");
}

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn main() {
    let ns = Ns(format!("agbench{}", std::process::id()));
    sh(&["ip", "netns", "add", &ns.0]);
    sh(&[
        "ip", "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "ip",
        "addr",
        "add",
        "198.18.0.10/32",
        "dev",
        "lo",
    ]);
    // A route to the (fictitious) clients: connect needs one even in repair
    // mode; a veth whose peer is down swallows the window probes (this
    // kernel has no dummy device).
    sh(&[
        "ip", "netns", "exec", &ns.0, "ip", "link", "add", "d0", "type", "veth", "peer", "name",
        "d1",
    ]);
    sh(&[
        "ip", "netns", "exec", &ns.0, "ip", "link", "set", "d0", "up",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "ip",
        "route",
        "add",
        "198.18.0.0/15",
        "dev",
        "d0",
    ]);
    let path = format!("/run/netns/{}", ns.0);
    let lat = std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: setns on this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let request = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
        let mut lat = Vec::with_capacity(N as usize);
        for i in 0..N {
            let client = format!("198.18.{}.{}:{}", 1 + (i / 250) % 200, 1 + i % 250, 10_000 + i % 50_000);
            let isn = i.wrapping_mul(2_654_435_761);
            let st = TcpState {
                endpoints: Endpoints::new(client.parse().unwrap(), "198.18.0.10:80".parse().unwrap()).unwrap(),
                client_isn: isn,
                client_next: isn.wrapping_add(1 + request.len() as u32),
                server_isn: !isn,
                server_next: (!isn).wrapping_add(1),
                client_window: 64_240 << 7,
                server_window: 65_535,
                mss: 1460,
                window_scale: Some(WindowScale { client: 7, server: 7 }),
                sack_permitted: true,
                timestamps: Some(Timestamps { recent: 1, next_val: isn }),
            };
            let t = Instant::now();
            let s = adopt(&st, request).expect("adopt");
            lat.push(t.elapsed());
            agent::relay::close_silently_for_bench(s.as_raw_fd());
        }
        lat
    })
    .join()
    .unwrap();
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
