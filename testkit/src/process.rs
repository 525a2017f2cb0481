//! Child processes of tests and the test bed (nginx, HAProxy, `baton`,
//! `baton-agent`): started in a namespace in their own process group with
//! stdout and stderr appended to one log file, stopped when their handle
//! drops (SIGTERM first, so `baton` and the agents exercise their graceful
//! stop, then SIGKILL to the whole group after a grace period), and waited
//! on for a listening port or a log line, failing with the log's tail.

use crate::netns;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Why a process could not be started or did not become ready.
#[derive(Debug)]
pub enum ProcError {
    /// Its log file could not be opened.
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    /// It could not be started.
    Spawn { cmd: String, source: std::io::Error },
    /// It exited; the message carries its log's tail.
    Exited(String),
    /// What it was waited for did not happen in time (with its log's tail).
    Timeout(String),
    /// Entering its namespace failed.
    Netns { ns: String, source: std::io::Error },
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcError::Log { path, source } => write!(f, "{}: {source}", path.display()),
            ProcError::Spawn { cmd, source } => write!(f, "cannot start `{cmd}`: {source}"),
            ProcError::Exited(m) => write!(f, "{m}"),
            ProcError::Timeout(m) => write!(f, "timed out waiting for {m}"),
            ProcError::Netns { ns, source } => write!(f, "setns into {ns}: {source}"),
        }
    }
}

impl std::error::Error for ProcError {}

type Result<T> = std::result::Result<T, ProcError>;

/// A process running in a namespace; killed on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    ns: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `prog args…` in `ns`, logging to `log` (appended).
    pub fn spawn(name: &str, ns: &str, prog: &str, args: &[&str], log: &Path) -> Result<Proc> {
        Self::spawn_env(name, ns, prog, args, &[], log)
    }

    /// Like [`Proc::spawn`] with extra environment variables.
    pub fn spawn_env(
        name: &str,
        ns: &str,
        prog: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Proc> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ProcError::Log {
                path: log.to_path_buf(),
                source,
            })?;
        let err = file.try_clone().map_err(|source| ProcError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let mut cmd = netns::command(Some(ns), prog, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its own process group, so a kill reaches a master and the workers
        // it forks in one signal (no window in which a master respawns a
        // worker that outlives it).
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|source| ProcError::Spawn {
                cmd: format!("[{ns}] {prog} {}", args.join(" ")),
                source,
            })?;
        Ok(Proc {
            name: name.to_string(),
            ns: ns.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id (`ip netns exec` execs the program, so this is its pid).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The name given at start (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace it runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal (e.g. `libc::SIGHUP` to reload).
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// Kills it at once (SIGKILL) and reaps it: the "agent dies" fault.
    pub fn kill_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL to the whole process group (a server's master and every
    /// worker at once), then reaps the leader.
    pub fn kill_group_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the process group our own child leads.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status text.
    pub fn stop(&mut self, grace: Duration) -> Option<String> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        // Whatever of its group outlives it (a worker it did not reap) goes
        // too, so no server keeps a test's listener after its handle drops.
        // SAFETY: kill(2) on the process group our own child led.
        let sweep = |pgid: u32| unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
        let pgid = c.id();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                sweep(pgid);
                return Some(st.to_string());
            }
            if Instant::now() >= deadline {
                sweep(pgid);
                return c.wait().ok().map(|s| format!("{s} (killed after grace)"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit
    /// code (`None`: still running, or killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The whole log ("" when unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `max` bytes of the log, for failure messages.
    pub fn log_tail(&self, max: u64) -> String {
        log_tail(&self.log, max)
    }

    /// Fails with the log tail if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        Err(ProcError::Exited(format!(
            "{} exited; log {}:\n{}",
            self.name,
            self.log.display(),
            self.log_tail(4000)
        )))
    }

    /// Waits until a TCP connect to `addr` from inside the process's namespace
    /// succeeds (the server is listening), or the process dies, or `timeout`.
    pub fn wait_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if tcp_ready(&self.ns, addr)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProcError::Timeout(format!(
                    "{} to listen on {addr}; log:\n{}",
                    self.name,
                    self.log_tail(4000)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `needle` appears in the log (or the process dies / timeout).
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if log_tail(&self.log, 1 << 20).contains(needle) {
                return Ok(());
            }
            self.ensure_running()?;
            if Instant::now() >= deadline {
                return Err(ProcError::Timeout(format!(
                    "`{needle}` in the log of {}:\n{}",
                    self.name,
                    self.log_tail(4000)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// One connect attempt from inside `ns`.
pub fn tcp_ready(ns: &str, addr: SocketAddr) -> Result<bool> {
    netns::in_ns(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    })
    .map_err(|source| ProcError::Netns {
        ns: ns.to_string(),
        source,
    })
}

/// The last `max` bytes of a file ("" when unreadable).
pub fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// This process's resident set size in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}
