//! The real `baton-agent` binary, started in the backend namespace with a
//! generated configuration; killed on drop.

use super::netns::{Bed, BACKEND_IP, SWITCH_IP, VIP};
use super::thop::{key_hex, KEY_ID};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_baton-agent")
}

/// A configuration for the test bed: relay VIP:80 to 127.0.0.1:8080.
pub fn config(extra: &str) -> String {
    let key = key_hex();
    format!(
        "name: test-backend\nthop:\n  listen: {BACKEND_IP}:9199\n  switches: [{SWITCH_IP}]\n  keys:\n    - id: {KEY_ID}\n      key: \"{key}\"\nservices:\n  - vip: {VIP}:80\n    mode: relay\n    upstream: 127.0.0.1:8080\nload:\n  period_ms: 200\nmetrics:\n  listen: 127.0.0.1:9101\nlog:\n  level: debug\n{extra}"
    )
}

pub struct AgentProc {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("baton-agent-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl AgentProc {
    /// Starts the agent and waits until its loop runs.
    pub fn start(bed: &Bed, yaml: &str) -> AgentProc {
        let dir = TempDir::new("agent");
        let cfg = dir.0.join("agent.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &bed.backend,
                bin(),
                "run",
                "--config",
                cfg.to_str().unwrap(),
            ])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("agent running") {
                    let _ = tx.send(());
                }
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "baton-agent exited at start ({st}):\n{}",
                    log.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "baton-agent did not start:\n{}",
                log.lock().unwrap()
            );
        }
        AgentProc {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Waits (bounded) for exit; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The agent's /metrics text (from inside the backend namespace).
    pub fn metrics(&self, bed: &Bed) -> String {
        bed.in_ns(&bed.backend, || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9101").expect("metrics endpoint");
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    }
}

/// The value of one sample line (`name{labels} value`) in a metrics text.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
