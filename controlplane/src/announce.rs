//! Announcing the VIPs to the routers through the host's BGP daemon.
//!
//! Several switches behind routers that spread the VIPs' flows over them
//! (ECMP) each announce the VIPs with BGP; a switch that is not healthy, is
//! drained or stops withdraws them, and the routers move its flows to the
//! others, which recover them from the agents. Baton does not speak BGP
//! itself: the host runs BIRD 2, configured with a protocol (say a `static`
//! one with the VIPs' routes, exported by its BGP sessions) that starts
//! `disabled`, and the switch enables and disables that protocol through
//! BIRD's control socket — the interface `birdc` uses. A host that boots
//! without `baton`, or whose `baton` never became healthy, announces nothing.
//!
//! The socket work runs on a thread of its own, so a stalled daemon never
//! stalls the control plane: callers state what they want
//! ([`Announcer::want`]) and the thread makes it so, retrying every second
//! while the daemon is away and repeating the command every few seconds (a
//! restarted BIRD reads its configuration again, with the protocol
//! disabled).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::config::BirdAnnounce;
use crate::metrics::Metrics;

/// Time allowed for one exchange with the daemon.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// While the daemon does not answer: try again this often.
const RETRY: Duration = Duration::from_secs(1);
/// While it does: state the wanted state again this often.
const REFRESH: Duration = Duration::from_secs(5);

enum Msg {
    Want(bool),
    /// Withdraw and stay withdrawn; answer once the daemon confirmed (or
    /// could not be reached).
    Stop(Sender<bool>),
}

/// The switch's side of the announcement.
pub struct Announcer {
    tx: Sender<Msg>,
    stopping: AtomicBool,
    /// Set once the workers run: nothing is announced before.
    ready: AtomicBool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Announcer {
    /// Starts the announcing thread (nothing is announced until
    /// [`Self::want`] says so).
    pub fn start(cfg: &BirdAnnounce, metrics: Arc<Metrics>) -> std::io::Result<Announcer> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let socket = PathBuf::from(&cfg.socket);
        let protocol = cfg.protocol.clone();
        let thread = std::thread::Builder::new()
            .name("announce".into())
            .spawn(move || run(&socket, &protocol, &rx, &metrics))?;
        Ok(Announcer {
            tx,
            stopping: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            thread: Some(thread),
        })
    }

    /// Announce (`true`) or withdraw the VIPs; ignored once stopping, and
    /// a withdrawal until [`Self::set_ready`].
    pub fn want(&self, announce: bool) {
        if !self.stopping.load(Ordering::Relaxed) {
            let announce = announce && self.ready.load(Ordering::Relaxed);
            let _ = self.tx.send(Msg::Want(announce));
        }
    }

    /// The packet path runs: the VIPs may be announced from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Withdraws for good and waits (at most `timeout`) for the daemon to
    /// confirm; false when it did not.
    pub fn withdraw_for_stop(&self, timeout: Duration) -> bool {
        self.stopping.store(true, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Msg::Stop(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).unwrap_or(false)
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        // Closing the channel ends the thread.
        let (tx, _) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(socket: &Path, protocol: &str, rx: &Receiver<Msg>, metrics: &Metrics) {
    let gauge = metrics.vip_announced.with_label_values(&[protocol]);
    let errors = metrics.announce_errors.with_label_values(&[protocol]);
    let mut wanted: Option<bool> = None;
    // What the daemon last confirmed, and when to state it again.
    let mut applied: Option<bool> = None;
    let mut next = Instant::now();
    let mut reported_error = false;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        let msg = match rx.recv_timeout(if wanted.is_some() { wait } else { REFRESH }) {
            Ok(m) => Some(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let mut reply = None;
        match msg {
            Some(Msg::Want(w)) => {
                if wanted == Some(w) && applied == Some(w) {
                    continue;
                }
                wanted = Some(w);
            }
            Some(Msg::Stop(tx)) => {
                wanted = Some(false);
                reply = Some(tx);
            }
            None => {}
        }
        let Some(w) = wanted else { continue };
        let cmd = if w { "enable" } else { "disable" };
        match command(socket, &format!("{cmd} {protocol}")) {
            Ok(text) => {
                if applied != Some(w) {
                    tracing::info!(protocol, announced = w, daemon = %text.trim(),
                        "{}", if w { "VIPs announced" } else { "VIPs withdrawn" });
                }
                applied = Some(w);
                gauge.set(i64::from(w));
                reported_error = false;
                next = Instant::now() + REFRESH;
                if let Some(tx) = reply {
                    let _ = tx.send(true);
                }
            }
            Err(e) => {
                errors.inc();
                if !reported_error {
                    tracing::warn!(socket = %socket.display(), protocol, error = %e,
                        "cannot {cmd} the VIP announcement (retrying every second)");
                    reported_error = true;
                }
                applied = None;
                next = Instant::now() + RETRY;
                if let Some(tx) = reply {
                    let _ = tx.send(false);
                }
            }
        }
    }
}

/// One command on BIRD's control socket; its reply text, or why not.
///
/// The protocol (BIRD's `doc/reply_codes`): the daemon greets with `0001
/// BIRD … ready.`; every reply line starts with a four-digit code followed
/// by `-` (more lines follow) or a space (the last line); lines starting
/// with a space continue the previous code; codes from 8000 up are errors
/// (8xxx run-time, 9xxx parse).
pub fn command(socket: &Path, cmd: &str) -> Result<String, String> {
    let s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    read_reply(&mut r).map_err(|e| format!("greeting: {e}"))?;
    (&s).write_all(format!("{cmd}\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    read_reply(&mut r)
}

/// Reads one reply (up to its last line); `Err` for an error code.
fn read_reply(r: &mut impl BufRead) -> Result<String, String> {
    let mut text = String::new();
    let mut error = None;
    for _ in 0..10_000 {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Err("the daemon closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (code, sep, rest) = match (line.get(..4), line.get(4..5), line.get(5..)) {
            (Some(c), Some(sep), Some(rest)) if c.bytes().all(|b| b.is_ascii_digit()) => {
                (c.parse::<u32>().unwrap_or(0), sep, rest)
            }
            _ => {
                // A continuation line (" text") or an asynchronous one.
                text.push_str(line.trim_start());
                text.push('\n');
                continue;
            }
        };
        text.push_str(rest);
        text.push('\n');
        if code >= 8000 {
            error = Some(code);
        }
        if sep == " " {
            return match error {
                Some(c) => Err(format!("BIRD error {c}: {}", text.trim())),
                None => Ok(text),
            };
        }
    }
    Err("reply too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(s: &str) -> Result<String, String> {
        read_reply(&mut std::io::Cursor::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn replies_are_read_to_their_last_line() {
        assert_eq!(
            reply("0001 BIRD 2.0.12 ready.\n").unwrap(),
            "BIRD 2.0.12 ready.\n"
        );
        assert_eq!(
            reply("0011-vip: enabled\n0000 \n").unwrap(),
            "vip: enabled\n\n"
        );
        assert_eq!(
            reply("0010 vip: already enabled\n").unwrap(),
            "vip: already enabled\n"
        );
        let e = reply("8003 No protocols match\n").unwrap_err();
        assert!(e.contains("8003"), "{e}");
        assert!(reply("9001 syntax error\n").is_err());
        assert!(reply("0011-vip: enabled\n").is_err(), "cut short");
    }

    #[test]
    fn a_scripted_daemon_is_driven() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("baton-announce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bird.ctl");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            (&s).write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
            let mut cmd = String::new();
            r.read_line(&mut cmd).unwrap();
            (&s).write_all(b"0011 vip: enabled\n").unwrap();
            cmd
        });
        assert_eq!(command(&path, "enable vip").unwrap(), "vip: enabled\n");
        assert_eq!(t.join().unwrap(), "enable vip\n");
        assert!(command(&dir.join("absent.ctl"), "enable vip").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
