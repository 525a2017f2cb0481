//! The legitimate traffic every attack runs beside: a few client threads in
//! their own namespace, each fetching an object on a new connection in a
//! loop until stopped, classifying every request as served, failed, hung
//! (connected, then no answer within the timeout) or never connected.
//!
//! Bodies of the seeded objects are checked by SHA-256, so a download cut or
//! corrupted by an attack counts as a failure, not a success. A paced read
//! stretches a download over seconds (the "long download" a blind reset
//! aims at).

use crate::content::{self, Object};
use crate::{addr, netns};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the legitimate clients do.
#[derive(Debug, Clone)]
pub struct LegitSpec {
    /// URL path fetched.
    pub path: String,
    /// When set, the body must be this seeded object (length and SHA-256).
    pub expect: Option<Object>,
    /// Client threads.
    pub threads: usize,
    /// Pause between one thread's requests.
    pub gap: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for the answer: beyond it, a hang.
    pub timeout: Duration,
    /// Read the body `chunk` bytes at a time with this pause between reads.
    pub pace: Option<(usize, Duration)>,
    /// Safety bound on the run, whoever forgets to stop it.
    pub max_run: Duration,
}

impl LegitSpec {
    /// Small GETs of the 1 KiB object, two threads, 10 ms apart.
    pub fn small() -> LegitSpec {
        LegitSpec {
            path: content::OBJ_1K.path.to_string(),
            expect: Some(content::OBJ_1K),
            threads: 2,
            gap: Duration::from_millis(10),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            pace: None,
            max_run: Duration::from_secs(900),
        }
    }

    /// The app pool's `/api/items` (served by the third backend only).
    pub fn api() -> LegitSpec {
        LegitSpec {
            path: "/api/items".to_string(),
            expect: None,
            ..LegitSpec::small()
        }
    }
}

/// What the legitimate clients saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LegitReport {
    /// Requests served completely (status 200, body verified).
    pub ok: u64,
    /// Requests that failed otherwise (reset, wrong status, cut body).
    pub failed: u64,
    /// Requests connected but left without an answer past the timeout.
    pub hung: u64,
    /// Connections that could not be opened.
    pub connect_failed: u64,
    /// Of those, the connects that timed out (nothing answered the SYN).
    pub connect_timeouts: u64,
    /// Failures that came within a second (refused, reset, 503).
    pub failed_fast: u64,
    /// The first few errors, for the report.
    pub errors: Vec<String>,
    /// Seconds the traffic ran.
    pub seconds: f64,
}

impl LegitReport {
    /// Every request attempted.
    pub fn total(&self) -> u64 {
        self.ok + self.failed + self.hung + self.connect_failed
    }

    /// Share of requests served (0 when none was attempted).
    pub fn success_rate(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.ok as f64 / self.total() as f64
        }
    }
}

/// Legitimate traffic running in the background.
pub struct Legit {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<LegitReport>>,
}

impl Legit {
    /// Starts the clients in namespace `ns` against the VIP.
    pub fn start(ns: &str, spec: LegitSpec) -> Legit {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let ns = ns.to_string();
        let handle = std::thread::spawn(move || match netns::in_ns(&ns, move || run(spec, s2)) {
            Ok(r) => r,
            Err(e) => LegitReport {
                failed: 1,
                errors: vec![e.to_string()],
                ..LegitReport::default()
            },
        });
        Legit {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the clients (each finishes its request) and returns the report.
    pub fn stop(mut self) -> LegitReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Legit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(spec: LegitSpec, stop: Arc<AtomicBool>) -> LegitReport {
    let report = Arc::new(Mutex::new(LegitReport::default()));
    let start = Instant::now();
    let want = spec.expect.map(content::expected_sha256);
    // Threads spawned here inherit this thread's network namespace.
    let threads: Vec<_> = (0..spec.threads.max(1))
        .map(|_| {
            let (spec, stop, report, want) =
                (spec.clone(), stop.clone(), report.clone(), want.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && start.elapsed() < spec.max_run {
                    let t0 = Instant::now();
                    let r = fetch(&spec, want.as_deref());
                    let mut rep = report.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(()) => rep.ok += 1,
                        Err(Failure::Connect(e)) => {
                            rep.connect_failed += 1;
                            if timed_out(&e) {
                                rep.connect_timeouts += 1;
                            }
                            note(&mut rep, format!("connect: {e}"));
                        }
                        Err(Failure::Hung(e)) => {
                            rep.hung += 1;
                            note(&mut rep, format!("hung: {e}"));
                        }
                        Err(Failure::Other(e)) => {
                            rep.failed += 1;
                            if t0.elapsed() < Duration::from_secs(1) {
                                rep.failed_fast += 1;
                            }
                            note(&mut rep, e);
                        }
                    }
                    drop(rep);
                    std::thread::sleep(spec.gap);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let mut r = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
    r.seconds = start.elapsed().as_secs_f64();
    r
}

fn note(r: &mut LegitReport, e: String) {
    if r.errors.len() < 8 {
        r.errors.push(e);
    }
}

enum Failure {
    Connect(io::Error),
    Hung(String),
    Other(String),
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One GET on a new connection, body read (paced if asked) and verified.
fn fetch(spec: &LegitSpec, want: Option<&str>) -> Result<(), Failure> {
    let vip: SocketAddr = addr::vip_service();
    let mut s = TcpStream::connect_timeout(&vip, spec.connect_timeout).map_err(Failure::Connect)?;
    let local = s.local_addr().map(|a| a.port()).unwrap_or(0);
    let io = |what: &str, e: io::Error| {
        let m = format!("port {local}: {what}: {e}");
        if timed_out(&e) {
            Failure::Hung(m)
        } else {
            Failure::Other(m)
        }
    };
    s.set_read_timeout(Some(spec.timeout))
        .map_err(|e| io("timeout", e))?;
    s.set_write_timeout(Some(spec.timeout))
        .map_err(|e| io("timeout", e))?;
    if let Some((chunk, _)) = spec.pace {
        // A small receive buffer makes the server wait for the reader.
        let v = chunk.max(4096) as libc::c_int;
        // SAFETY: setsockopt with a pointer to a local int.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let req = crate::client::get_request(&addr::VIP.to_string(), &spec.path, false, &[]);
    s.write_all(&req).map_err(|e| io("send", e))?;
    let (chunk, pause) = spec.pace.unwrap_or((65536, Duration::ZERO));
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; chunk.max(1)];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut tmp).map_err(|e| io("response header", e))?;
        if n == 0 {
            return Err(Failure::Other(format!(
                "port {local}: closed before a response"
            )));
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(Failure::Other(format!(
            "port {local}: status {status}: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .ok_or_else(|| Failure::Other(format!("port {local}: no content-length")))?;
    let mut body = buf.split_off(head_end);
    while body.len() < len {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let n = s.read(&mut tmp).map_err(|e| io("body", e))?;
        if n == 0 {
            return Err(Failure::Other(format!(
                "port {local}: body cut at {} of {len}",
                body.len()
            )));
        }
        body.extend_from_slice(&tmp[..n]);
    }
    if let (Some(obj), Some(sum)) = (spec.expect, want) {
        if body.len() != obj.size || content::sha256_hex(&body[..len.min(body.len())]) != sum {
            return Err(Failure::Other(format!(
                "port {local}: body of {} bytes does not match {}",
                body.len(),
                obj.path
            )));
        }
    }
    Ok(())
}
