//! The real `baton-agent` binary, started in the backend namespace with a
//! generated configuration; killed on drop (`testkit::process::Proc`).

use super::bed::{Bed, BACKEND_IP, BACKEND_IP6, SWITCH_IP, SWITCH_IP6, VIP};
use super::thop::{key_hex, KEY_ID};
use std::time::Duration;
use testkit::process::Proc;
use testkit::temp_dir::TempDir;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_baton-agent")
}

/// A configuration for the test bed: relay VIP:80 to 127.0.0.1:8080.
pub fn config(extra: &str) -> String {
    config_with(
        false,
        &format!("  - vip: {VIP}:80\n    mode: relay\n    upstream: 127.0.0.1:8080\n"),
        extra,
    )
}

/// The `thop` section: the backend's data address, the switch's, the key;
/// IPv6 addresses (quoted: `[` would start a YAML sequence) when `v6`.
pub fn thop_yaml(v6: bool) -> String {
    let key = key_hex();
    let (listen, switch) = if v6 {
        (
            format!("\"[{BACKEND_IP6}]:9199\""),
            format!("\"{SWITCH_IP6}\""),
        )
    } else {
        (format!("{BACKEND_IP}:9199"), SWITCH_IP.to_string())
    };
    format!(
        "thop:\n  listen: {listen}\n  switches: [{switch}]\n  keys:\n    - id: {KEY_ID}\n      key: \"{key}\"\n"
    )
}

/// A configuration with THOP over IPv6 or IPv4 and the `services` list
/// items given (YAML, each starting `  - `).
pub fn config_with(thop_v6: bool, services: &str, extra: &str) -> String {
    format!(
        "name: test-backend\n{}services:\n{services}load:\n  period_ms: 200\nmetrics:\n  listen: 127.0.0.1:9101\nlog:\n  level: debug\n{extra}",
        thop_yaml(thop_v6)
    )
}

/// The agent process (stdout and stderr in its log file); killed on drop.
pub struct AgentProc {
    pub proc: Proc,
    _dir: TempDir,
}

impl AgentProc {
    /// Starts the agent and waits until its loop runs.
    pub fn start(bed: &Bed, yaml: &str) -> AgentProc {
        let dir = TempDir::new("agent");
        let cfg = dir.write("agent.yaml", yaml);
        let mut proc = Proc::spawn_env(
            "baton-agent",
            &bed.backend,
            bin(),
            &["run", "--config", cfg.to_str().unwrap()],
            &[("RUST_LOG", "debug")],
            &dir.join("agent.log"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        proc.wait_log("agent running", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("baton-agent did not start: {e}"));
        AgentProc { proc, _dir: dir }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// True while it has not exited.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.proc.signal(libc::SIGTERM);
    }

    /// Waits (bounded) for exit; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.proc.wait_exit(timeout)
    }

    /// The agent's /metrics text (from inside the backend namespace).
    pub fn metrics(&self, bed: &Bed) -> String {
        bed.in_ns(&bed.backend, || {
            let (status, body) = testkit::http::get("127.0.0.1:9101".parse().unwrap(), "/metrics");
            assert_eq!(status, 200, "metrics endpoint: {body}");
            body
        })
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.proc.kill_group_now();
    }
}
