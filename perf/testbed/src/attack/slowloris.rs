//! Slowloris: thousands of real TCP connections that send the start of a
//! request header and then nothing. Each holds a switch connection in
//! WAITHEADER; the header timeout must reap every one of them with a 408
//! while legitimate requests go on, and the switch's connection gauges must
//! come back to zero.
//!
//! The connections come from several addresses added to the attacker's
//! interface (a per-client limit may refuse some of them: a refused connect
//! is counted, not failed; a connection that was accepted must get its 408).
//! Run it against a switch started with [`profile_yaml`] (a short header
//! timeout).

use super::{ensure_nofile, Legit, LegitSpec, Outcome, Size, ATTACKER, LEGIT};
use crate::error::Result;
use crate::scenario::Running;
use crate::topology::DATA_IF;
use crate::{addr, netns};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// Parameters of the attack.
#[derive(Debug, Clone, Copy)]
pub struct Slowloris {
    /// Connections opened.
    pub conns: usize,
    /// Source addresses they are spread over (198.18.0.150, .151, …).
    pub sources: usize,
    /// The switch's header timeout ([`profile_yaml`]).
    pub header_timeout: Duration,
    /// Connecting threads.
    pub threads: usize,
}

impl Slowloris {
    /// The size's parameters.
    pub fn new(size: Size) -> Slowloris {
        match size {
            Size::Short => Slowloris {
                conns: 1_000,
                sources: 4,
                header_timeout: Duration::from_secs(2),
                threads: 4,
            },
            Size::Full => Slowloris {
                conns: 10_000,
                sources: 16,
                header_timeout: Duration::from_secs(2),
                threads: 8,
            },
        }
    }
}

/// Profile overrides for the attack: the header timeout.
pub fn profile_yaml(p: &Slowloris) -> String {
    format!(
        "timeouts:\n  <<: !include base.yaml#timeouts\n  header: {}ms\n",
        p.header_timeout.as_millis()
    )
}

/// The partial request each connection sends before it stalls.
pub const PARTIAL: &[u8] = b"GET /static/1k.bin HTTP/1.1\r\nHost: 198.18.0.10\r\nX-Slow: ";

/// How one slow connection ended.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    connected: u64,
    refused: u64,
    reaped_408: u64,
    other_status: u64,
    closed_silently: u64,
    not_reaped: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.connected += o.connected;
        self.refused += o.refused;
        self.reaped_408 += o.reaped_408;
        self.other_status += o.other_status;
        self.closed_silently += o.closed_silently;
        self.not_reaped += o.not_reaped;
    }
}

/// The attacker's extra source addresses.
pub fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 150 + (i % 100) as u8)
}

fn connect_from(src: Ipv4Addr, timeout: Duration) -> std::io::Result<TcpStream> {
    // SAFETY: socket(2) with constant arguments; ownership goes to TcpStream.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let sa = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let one: libc::c_int = 1;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    let local = sa(src, 0);
    let vip = sa(addr::VIP, addr::VIP_PORT);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: setsockopt/bind/connect on our socket with pointers to locals.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::connect(fd, (&vip as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(s)
}

/// One thread's share: connect `n` from `sources`, send the partial header,
/// then wait for each to be reaped.
fn thread_share(n: usize, first: usize, p: Slowloris) -> Tally {
    let mut t = Tally::default();
    let mut held: Vec<(TcpStream, Instant)> = Vec::with_capacity(n);
    for k in 0..n {
        let src = source((first + k) % p.sources.max(1));
        match connect_from(src, Duration::from_secs(5)) {
            Ok(mut s) => {
                let at = Instant::now();
                if s.write_all(PARTIAL).is_ok() {
                    t.connected += 1;
                    held.push((s, at));
                } else {
                    t.refused += 1;
                }
            }
            Err(_) => t.refused += 1,
        }
    }
    let grace = Duration::from_secs(5);
    for (mut s, at) in held {
        let deadline = at + p.header_timeout + grace;
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(10))));
            match s.read(&mut buf) {
                Ok(0) => break "eof",
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(2).any(|w| w == b"\r\n") {
                        break "status";
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break "timeout"
                }
                Err(_) => break "eof",
            }
        };
        let status = String::from_utf8_lossy(&got);
        let code = status.split_whitespace().nth(1).unwrap_or("");
        match (end, code) {
            (_, "408") => t.reaped_408 += 1,
            (_, c) if !c.is_empty() => t.other_status += 1,
            ("timeout", _) => t.not_reaped += 1,
            _ => t.closed_silently += 1,
        }
    }
    t
}

/// Runs the attack against a system started with [`profile_yaml`].
pub fn run(sys: &Running, p: Slowloris) -> Result<Outcome> {
    let mut o = Outcome::new("slowloris", super::synflood::sys_io(sys));
    ensure_nofile(p.conns as u64 + 8192);
    let ns = sys.client(ATTACKER).to_string();
    for i in 0..p.sources {
        let a = format!("{}/{}", source(i), addr::PREFIX);
        netns::ip(&ns, &["addr", "add", &a, "dev", DATA_IF])?;
    }
    let aborted = |sys: &Running| {
        sys.stack
            .metric(
                "baton_worker_aborted_connections_total",
                &[("reason", "header_timeout_408")],
            )
            .unwrap_or(0.0)
    };
    let before = aborted(sys);
    let legit = Legit::start(sys.client(LEGIT), LegitSpec::small());
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let tally = sys.in_client(ATTACKER, move || {
        let per = p.conns / p.threads.max(1);
        let hs: Vec<_> = (0..p.threads.max(1))
            .map(|i| {
                let n = if i + 1 == p.threads.max(1) {
                    p.conns - per * i
                } else {
                    per
                };
                std::thread::spawn(move || thread_share(n, i * per, p))
            })
            .collect();
        let mut t = Tally::default();
        for h in hs {
            if let Ok(x) = h.join() {
                t.add(&x);
            }
        }
        t
    })?;
    o.seconds = t0.elapsed().as_secs_f64();
    o.legit(legit.stop());
    o.sent = p.conns as u64;
    o.check(
        "connections established",
        tally.connected > 0,
        format!("{} connected, {} refused", tally.connected, tally.refused),
    );
    o.check(
        "every stalled connection reaped with 408",
        tally.reaped_408 == tally.connected,
        format!(
            "{} of {} got 408; {} another status, {} closed without a response, {} still open {} s after the header timeout",
            tally.reaped_408,
            tally.connected,
            tally.other_status,
            tally.closed_silently,
            tally.not_reaped,
            5
        ),
    );
    let counted = aborted(sys) - before;
    o.check(
        "each 408 counted (aborted_connections{reason=header_timeout_408})",
        counted >= tally.reaped_408 as f64,
        format!("{counted} counted, {} seen", tally.reaped_408),
    );
    let waitheader = sys.wait_until("WAITHEADER gauge at 0", Duration::from_secs(10), || {
        Ok(sys
            .stack
            .metric("baton_worker_connections", &[("state", "WAITHEADER")])?
            == 0.0)
    });
    o.check(
        "WAITHEADER gauge back to 0",
        waitheader.is_ok(),
        format!(
            "{} after 10 s",
            sys.stack
                .metric("baton_worker_connections", &[("state", "WAITHEADER")])
                .unwrap_or(-1.0)
        ),
    );
    let all = sys.wait_until("connection gauge at 0", Duration::from_secs(30), || {
        Ok(sys.table_size()? == 0.0)
    });
    o.check(
        "connection gauge (all states) back to 0",
        all.is_ok(),
        format!(
            "{} after 30 s ({})",
            sys.table_size().unwrap_or(-1.0),
            by_state(sys)
        ),
    );
    o.figure("refused_at_connect", tally.refused);
    o.figure("reaped_408", tally.reaped_408);
    Ok(o)
}

/// The switch's non-empty connection states, e.g. `FORWARDING 3`.
fn by_state(sys: &Running) -> String {
    let states = [
        "SYN_RCVD",
        "WAITHEADER",
        "DISPATCH",
        "HANDOFF",
        "FORWARDING",
        "FORWARDING_FIN",
        "FORWARDING_CLOSED",
        "CLOSING",
        "TIME_WAIT",
    ];
    let Ok(text) = sys.stack.metrics() else {
        return "metrics unreadable".into();
    };
    let busy: Vec<String> = states
        .iter()
        .filter_map(|s| {
            let n = crate::client::metric_sum(&text, "baton_worker_connections", &[("state", s)])?;
            (n > 0.0).then(|| format!("{s} {n}"))
        })
        .collect();
    busy.join(", ")
}
