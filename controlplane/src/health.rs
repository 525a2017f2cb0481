//! Active health checks over the kernel's TCP/IP stack (the management
//! network): an HTTP/1.1 GET of a path, or a TCP connect.
//!
//! One small thread per backend runs its checks on the configured interval
//! and sends each result to the control-plane loop, which owns the health
//! state (rise/fall in [`crate::registry`]). Checks never touch the data
//! port. A checker stops when its [`Checker`] handle is dropped.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use dataplane::dispatch::BackendId;

use crate::config::{Check, Health, HttpCheck};

/// One check's outcome, sent to the control loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub backend: BackendId,
    /// `Err` carries a short reason (`connect: Connection refused`, `status 500`).
    pub result: Result<(), String>,
    /// Identifies the checker, so results of a replaced checker are ignored.
    pub epoch: u64,
}

/// Runs one check now.
pub fn check_once(check: &Check, addr: IpAddr, timeout: Duration) -> Result<(), String> {
    match check {
        Check::None(_) => Ok(()),
        Check::Tcp(t) => {
            TcpStream::connect_timeout(&SocketAddr::new(addr, t.port), timeout)
                .map_err(|e| format!("connect: {e}"))?;
            Ok(())
        }
        Check::Http(h) => http_check(h, addr, timeout),
    }
}

fn http_check(h: &HttpCheck, addr: IpAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let sa = SocketAddr::new(addr, h.port);
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect: {e}"))?;
    let left = |d: Instant| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left(deadline)))
        .map_err(|e| e.to_string())?;
    let host = h.host.clone().unwrap_or_else(|| match addr {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    });
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: baton-health\r\nConnection: close\r\n\r\n",
        h.path
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        s.set_read_timeout(Some(left(deadline)))
            .map_err(|e| e.to_string())?;
        if Instant::now() >= deadline {
            return Err("timeout".into());
        }
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before a status line".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timeout".into())
            }
            Err(e) => return Err(format!("receive: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let code = resp.code.unwrap_or(0);
                let ok = if h.expect_status.is_empty() {
                    (200..400).contains(&code)
                } else {
                    h.expect_status.contains(&code)
                };
                return if ok {
                    Ok(())
                } else {
                    Err(format!("status {code}"))
                };
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => continue,
            Ok(httparse::Status::Partial) => return Err("response header too large".into()),
            Err(e) => return Err(format!("bad response: {e}")),
        }
    }
}

/// A running checker thread; stops (promptly) when dropped.
#[derive(Debug)]
pub struct Checker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// The configuration it runs, to know when a reload must replace it.
    pub config: (Health, IpAddr),
    /// Tag of its results (a replaced checker's late results are ignored).
    pub epoch: u64,
}

impl Checker {
    /// Starts checking `addr` with `health` every interval, sending results to `out`.
    pub fn start(
        backend: BackendId,
        name: &str,
        health: Health,
        addr: IpAddr,
        epoch: u64,
        out: Sender<CheckResult>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let cfg = health.clone();
        let handle = std::thread::Builder::new()
            .name(format!("check-{name}"))
            .spawn(move || {
                if matches!(cfg.check, Check::None(_)) {
                    return;
                }
                while !flag.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = check_once(&cfg.check, addr, cfg.timeout.0);
                    if out
                        .send(CheckResult {
                            backend,
                            result,
                            epoch,
                        })
                        .is_err()
                    {
                        return;
                    }
                    let next = started + cfg.interval.0;
                    while !flag.load(Ordering::Relaxed) && Instant::now() < next {
                        std::thread::sleep(
                            next.saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(50)),
                        );
                    }
                }
            })
            .ok();
        Self {
            stop,
            handle,
            config: (health, addr),
            epoch,
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Not joined: a check in flight ends within its timeout and its result
        // is ignored (stale epoch); joining here would stall the control loop.
        drop(self.handle.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DurationStr, NoCheck, Passive, TcpCheck};
    use std::net::TcpListener;

    /// A one-thread HTTP server on loopback answering every request with `status`.
    fn server(status: u16, delay: Duration) -> (SocketAddr, Arc<AtomicBool>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let mut b = [0u8; 1024];
                        let _ = s.read(&mut b);
                        std::thread::sleep(delay);
                        let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        (addr, stop)
    }

    fn http(port: u16, path: &str) -> Check {
        Check::Http(HttpCheck {
            port,
            path: path.into(),
            host: None,
            expect_status: vec![],
        })
    }

    #[test]
    fn http_check_against_a_real_server() {
        let (ok, s1) = server(200, Duration::ZERO);
        let (bad, s2) = server(503, Duration::ZERO);
        let lo = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(
            check_once(&http(ok.port(), "/healthz"), lo, Duration::from_secs(2)),
            Ok(())
        );
        assert_eq!(
            check_once(&http(bad.port(), "/healthz"), lo, Duration::from_secs(2)),
            Err("status 503".into())
        );
        let only_204 = Check::Http(HttpCheck {
            port: ok.port(),
            path: "/".into(),
            host: Some("h".into()),
            expect_status: vec![204],
        });
        assert_eq!(
            check_once(&only_204, lo, Duration::from_secs(2)),
            Err("status 200".into())
        );
        s1.store(true, Ordering::Relaxed);
        s2.store(true, Ordering::Relaxed);
    }

    #[test]
    fn http_check_times_out_on_a_slow_server() {
        let (slow, s) = server(200, Duration::from_millis(800));
        let lo = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(
            check_once(&http(slow.port(), "/"), lo, Duration::from_millis(200)),
            Err("timeout".into())
        );
        s.store(true, Ordering::Relaxed);
    }

    #[test]
    fn tcp_check_connects_or_reports_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let lo = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(
            check_once(&Check::Tcp(TcpCheck { port }), lo, Duration::from_secs(1)),
            Ok(())
        );
        drop(l);
        let e = check_once(&Check::Tcp(TcpCheck { port }), lo, Duration::from_secs(1)).unwrap_err();
        assert!(e.starts_with("connect:"), "{e}");
        assert_eq!(
            check_once(&Check::None(NoCheck {}), lo, Duration::from_secs(1)),
            Ok(())
        );
    }

    #[test]
    fn checker_thread_reports_on_its_interval_and_stops_when_dropped() {
        let (ok, s) = server(200, Duration::ZERO);
        let (tx, rx) = crossbeam_channel::unbounded();
        let h = Health {
            check: http(ok.port(), "/"),
            interval: DurationStr::millis(50),
            timeout: DurationStr::millis(50),
            rise: 1,
            fall: 1,
            passive: Passive::default(),
        };
        let c = Checker::start(7, "t", h, IpAddr::from([127, 0, 0, 1]), 3, tx);
        for _ in 0..3 {
            let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(
                r,
                CheckResult {
                    backend: 7,
                    result: Ok(()),
                    epoch: 3
                }
            );
        }
        drop(c);
        // The thread ends: after at most the result in flight, the channel
        // disconnects (its sender was the thread's).
        let mut late = 0;
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(_) => late += 1,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("checker did not stop: {e}"),
            }
        }
        assert!(late <= 1, "{late} results after the stop");
        s.store(true, Ordering::Relaxed);
    }
}
