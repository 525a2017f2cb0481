//! The admin endpoint under abuse from the management network: a request
//! header that never ends, a thousand connections that send a header line a
//! second, and cross-site POSTs (a browser on the management network made
//! to post by a page of `http://evil.example`) to the drain and reload
//! calls. `baton` must stay up with bounded memory, keep answering scrapes,
//! and change nothing for the cross-site calls.
//!
//! Everything runs from the hub, the management bridge's only other host.

use super::{rss_kib, Legit, LegitSpec, Outcome, Size, LEGIT};
use crate::error::Result;
use crate::scenario::Running;
use crate::{addr, client, netns};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Parameters of the abuse.
#[derive(Debug, Clone, Copy)]
pub struct AdminAbuse {
    /// Bytes of header line offered before giving up.
    pub endless_bytes: u64,
    /// Slow connections held at once.
    pub slow_conns: usize,
    /// Seconds they are held, one header line a second each.
    pub slow_secs: u64,
    /// Largest allowed growth of `baton`'s RSS over the whole attack, KiB.
    pub rss_kib: u64,
}

impl AdminAbuse {
    /// The size's parameters.
    pub fn new(size: Size) -> AdminAbuse {
        match size {
            Size::Short => AdminAbuse {
                endless_bytes: 8 << 20,
                slow_conns: 200,
                slow_secs: 3,
                rss_kib: 64 << 10,
            },
            Size::Full => AdminAbuse {
                endless_bytes: 256 << 20,
                slow_conns: 1_000,
                slow_secs: 10,
                rss_kib: 64 << 10,
            },
        }
    }
}

/// The cross-site origin.
pub const EVIL_ORIGIN: &str = "http://evil.example";

/// How the endless header ended.
#[derive(Debug, Clone)]
pub struct Endless {
    /// Bytes the server took.
    pub taken: u64,
    /// `closed`, `stalled` (the server stopped reading), `answered <status>`
    /// or `took everything`.
    pub ended: String,
}

/// Sends one header line of up to `max` bytes (from the hub's namespace).
pub fn endless_header(max: u64) -> std::io::Result<Endless> {
    let mut s = client::connect(addr::switch_metrics(), Duration::from_secs(5))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: baton\r\nX-Endless: ")?;
    let chunk = vec![b'a'; 65536];
    let mut taken = 0u64;
    let ended = loop {
        if taken >= max {
            break "took everything".to_string();
        }
        match s.write(&chunk) {
            Ok(0) => break "closed".into(),
            Ok(n) => taken += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break "stalled".into()
            }
            Err(_) => break "closed".into(),
        }
    };
    // An answer, if the server gave one before closing.
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 256];
    let ended = match s.read(&mut buf) {
        Ok(n) if n > 0 => {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            format!(
                "answered {} after {ended}",
                t.split_whitespace().nth(1).unwrap_or("?")
            )
        }
        _ => ended,
    };
    Ok(Endless { taken, ended })
}

/// A POST from a page of [`EVIL_ORIGIN`]; the status code (0: no answer).
pub fn cross_site_post(path: &str) -> u16 {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {EVIL_ORIGIN}\r\nReferer: {EVIL_ORIGIN}/\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        addr::switch_metrics()
    );
    let Ok(mut s) = client::connect(addr::switch_metrics(), Duration::from_secs(5)) else {
        return 0;
    };
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    client::read_response(&mut s, &mut Vec::new())
        .map(|r| r.status)
        .unwrap_or(0)
}

/// Runs the abuse.
pub fn run(sys: &mut Running, p: AdminAbuse) -> Result<Outcome> {
    let mut o = Outcome::new("admin_abuse", super::synflood::sys_io(sys));
    let pid = sys.stack.switch.as_ref().and_then(|s| s.pid()).unwrap_or(0);
    let hub = sys.bed.hub().to_string();
    let legit = Legit::start(sys.client(LEGIT), LegitSpec::small());
    let m0 = sys.stack.metrics()?;
    let rss0 = rss_kib(pid).unwrap_or(0);
    let t0 = Instant::now();

    // 1. A header that never ends.
    let e = netns::in_ns(&hub, move || endless_header(p.endless_bytes))?
        .map_err(|e| crate::error::BedError::io("endless header", e))?;
    let rss1 = rss_kib(pid).unwrap_or(0);
    // Depends on: an admin header size limit (the server ends the request).
    o.check(
        "endless header cut off by the server",
        e.ended != "took everything",
        format!("{} bytes taken, then {}", e.taken, e.ended),
    );

    // 2. Slow connections, one header line a second each, while scraping.
    let (n, secs) = (p.slow_conns, p.slow_secs);
    let slow = std::thread::spawn({
        let hub = hub.clone();
        move || {
            netns::in_ns(&hub, move || {
                super::ensure_nofile(n as u64 + 4096);
                let mut conns: Vec<TcpStream> = (0..n)
                    .filter_map(|_| {
                        client::connect(addr::switch_metrics(), Duration::from_secs(5)).ok()
                    })
                    .collect();
                let opened = conns.len();
                for c in conns.iter_mut() {
                    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\n");
                }
                for k in 0..secs {
                    std::thread::sleep(Duration::from_secs(1));
                    let line = format!("X-Slow-{k}: 1\r\n");
                    conns.retain_mut(|c| c.write_all(line.as_bytes()).is_ok());
                }
                (opened, conns.len())
            })
        }
    });
    let mut scrapes = (0u32, 0u32);
    let mut slowest = Duration::ZERO;
    std::thread::sleep(Duration::from_millis(500));
    while !slow.is_finished() {
        let t = Instant::now();
        match sys.stack.metrics() {
            Ok(m) if m.contains("baton_build_info") => scrapes.0 += 1,
            _ => scrapes.1 += 1,
        }
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    let (opened, still) = slow.join().ok().and_then(|r| r.ok()).unwrap_or((0, 0));
    let rss2 = rss_kib(pid).unwrap_or(0);
    o.check(
        "scrapes answered during the slow connections",
        scrapes.1 == 0 && scrapes.0 > 0,
        format!(
            "{} ok, {} failed (slowest {:?}); {opened} slow connections opened, {still} still open at the end",
            scrapes.0, scrapes.1, slowest
        ),
    );

    // 3. Cross-site POSTs to drain and reload.
    let drain = netns::in_ns(&hub, || cross_site_post("/backends/static-1/drain"))?;
    let reload = netns::in_ns(&hub, || cross_site_post("/reload"))?;
    std::thread::sleep(Duration::from_millis(300));
    let m1 = sys.stack.metrics()?;
    let g = |m: &str, name: &str, l: &[(&str, &str)]| client::metric_sum(m, name, l).unwrap_or(0.0);
    let drained = g(&m1, "baton_backend_draining", &[("backend", "static-1")]);
    let reloads =
        g(&m1, "baton_config_reloads_total", &[]) - g(&m0, "baton_config_reloads_total", &[]);
    let generation = (
        g(&m0, "baton_config_generation", &[]),
        g(&m1, "baton_config_generation", &[]),
    );
    // Depends on: the admin endpoint refusing cross-site calls (403, or 401 without a token).
    o.check(
        "cross-site POSTs refused (401/403)",
        matches!(drain, 401 | 403) && matches!(reload, 401 | 403),
        format!("drain answered {drain}, reload answered {reload}"),
    );
    o.check(
        "cross-site POSTs changed nothing",
        drained == 0.0 && reloads == 0.0 && generation.0 == generation.1,
        format!(
            "static-1 draining {drained}; reloads {reloads}; generation {} -> {}",
            generation.0, generation.1
        ),
    );
    if drained != 0.0 {
        // Put the bed back for whatever runs next.
        let _ = netns::in_ns(&hub, || {
            let mut s = client::connect(addr::switch_metrics(), Duration::from_secs(5)).ok()?;
            s.write_all(b"POST /backends/static-1/undrain HTTP/1.1\r\nHost: baton\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
            client::read_response(&mut s, &mut Vec::new()).ok()
        });
    }
    o.seconds = t0.elapsed().as_secs_f64();
    o.sent = e.taken + opened as u64 + 2;
    let up = sys.stack.ensure_running().is_ok() && sys.admin("/healthz").is_ok();
    o.check("baton up and healthy", up, "");
    let peak = rss1.max(rss2);
    o.check(
        format!("baton RSS bounded (grows <= {} KiB)", p.rss_kib),
        rss0 > 0 && peak.saturating_sub(rss0) <= p.rss_kib,
        format!("RSS {rss0} -> {rss1} (endless header) -> {rss2} (slow connections) KiB"),
    );
    o.legit(legit.stop());
    Ok(o)
}
