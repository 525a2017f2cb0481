//! Relay throughput: bytes moved client → relay → server and back on
//! loopback with splice(2), against a direct loopback connection, and the
//! cost per connection of the relay's setup and teardown.
//!
//! `cargo bench -p agent --bench relay` (prints figures; no assertions).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use agent::relay::{ConnMeta, Relay, RelayEvent};
use mio::{Events, Poll};

const TOTAL: usize = 2 << 30; // 2 GiB per run
const CHUNK: usize = 256 * 1024;

fn meta(id: u64) -> ConnMeta {
    ConnMeta {
        switch: "127.0.0.1:9199".parse().unwrap(),
        sender: 1,
        conn_id: id,
        client: "127.0.0.1:1".parse().unwrap(),
    }
}

/// Streams TOTAL bytes from `src` to `dst` (read on another thread).
fn stream(mut src: TcpStream, mut dst: TcpStream) -> Duration {
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        while n < TOTAL {
            let k = dst.read(&mut buf).unwrap();
            assert!(k > 0);
            n += k;
        }
    });
    let buf = vec![0x5au8; CHUNK];
    let t = Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        src.write_all(&buf).unwrap();
        sent += CHUNK;
    }
    reader.join().unwrap();
    t.elapsed()
}

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (a, l.accept().unwrap().0)
}

fn gbit(d: Duration) -> f64 {
    TOTAL as f64 * 8.0 / d.as_secs_f64() / 1e9
}

fn main() {
    // Direct loopback: the upper bound.
    let (a, b) = pair();
    let direct = stream(a, b);

    // Through the relay: client ⇄ [adopted side | relay | upstream side] ⇄ server.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let (client, adopted) = pair();
    let mut poll = Poll::new().unwrap();
    let mut relay = Relay::new(Duration::from_secs(60));
    relay
        .add(
            poll.registry(),
            meta(1),
            adopted,
            upstream.local_addr().unwrap(),
        )
        .unwrap();
    let (server, _) = upstream.accept().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let looper = std::thread::spawn(move || {
        let mut events = Events::with_capacity(64);
        let mut out = Vec::new();
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for ev in events.iter() {
                relay.handle(poll.registry(), ev.token(), &mut out);
            }
            out.clear();
        }
    });
    let c2s = stream(client.try_clone().unwrap(), server.try_clone().unwrap());
    let s2c = stream(server, client);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    looper.join().unwrap();

    println!("relay throughput, 2 GiB per direction, loopback, one connection:");
    println!("  direct loopback       {:6.1} Gbit/s", gbit(direct));
    println!(
        "  relay client→server   {:6.1} Gbit/s ({:.0}% of direct)",
        gbit(c2s),
        100.0 * direct.as_secs_f64() / c2s.as_secs_f64()
    );
    println!(
        "  relay server→client   {:6.1} Gbit/s ({:.0}% of direct)",
        gbit(s2c),
        100.0 * direct.as_secs_f64() / s2c.as_secs_f64()
    );

    // Setup + teardown cost: N short connections (connect upstream, one
    // request byte each way, both FINs).
    const N: usize = 5000;
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..N {
            let (mut s, _) = upstream.accept().unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        }
    });
    let mut poll = Poll::new().unwrap();
    let mut relay = Relay::new(Duration::from_secs(60));
    let mut events = Events::with_capacity(256);
    let mut out = Vec::new();
    let t = Instant::now();
    for i in 0..N {
        let (mut client, adopted) = pair();
        relay
            .add(poll.registry(), meta(i as u64), adopted, up_addr)
            .unwrap();
        client.write_all(b"x").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        loop {
            poll.poll(&mut events, Some(Duration::from_millis(5)))
                .unwrap();
            for ev in events.iter() {
                relay.handle(poll.registry(), ev.token(), &mut out);
            }
            if out.iter().any(|e| matches!(e, RelayEvent::Finished { .. })) {
                break;
            }
        }
        out.clear();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"x");
    }
    let per = t.elapsed() / N as u32;
    server.join().unwrap();
    println!(
        "relay connection lifecycle (client+upstream connect, 1 byte each way, FINs), {N} runs:"
    );
    println!("  {:?} per connection, {:.0} connections/s on one loop (includes the test's own client/server work)", per, 1.0 / per.as_secs_f64());
}
