//! Network namespaces and the commands run in them.
//!
//! Namespaces are created with iproute2 (`ip netns add`), so they are visible
//! to operators (`ip netns list`) and to every tool started with
//! `ip netns exec`. Rust code that must itself talk from inside a namespace
//! (a test's TCP client) runs in a thread switched there with `setns(2)`:
//! the network namespace is a per-thread attribute, so the rest of the
//! process is unaffected.

use crate::error::{BedError, Result};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};

/// Runs `prog args…` (in namespace `ns` when given) and returns its output,
/// or an error carrying stderr when it exits unsuccessfully.
pub fn run(ns: Option<&str>, prog: &str, args: &[&str]) -> Result<Output> {
    let mut cmd = command(ns, prog, args);
    let shown = describe(ns, prog, args);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BedError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(BedError::Command {
            cmd: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Like [`run`], returning stdout as text.
pub fn run_stdout(ns: Option<&str>, prog: &str, args: &[&str]) -> Result<String> {
    let out = run(ns, prog, args)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `Command` for `prog args…` inside namespace `ns` (or the current one).
pub fn command(ns: Option<&str>, prog: &str, args: &[&str]) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, prog]).args(args);
            c
        }
        None => {
            let mut c = Command::new(prog);
            c.args(args);
            c
        }
    }
}

fn describe(ns: Option<&str>, prog: &str, args: &[&str]) -> String {
    let mut s = match ns {
        Some(ns) => format!("[{ns}] {prog}"),
        None => prog.to_string(),
    };
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs `ip args…` in the namespace (`ip -n ns …`).
pub fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run(None, "ip", &all).map(|_| ())
}

/// Sets a sysctl inside the namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let kv = format!("{key}={value}");
    run(Some(ns), "sysctl", &["-q", "-w", &kv]).map(|_| ())
}

/// Turns off checksum and segmentation offloads on an interface, so frames
/// seen by AF_PACKET or DPDK's af_packet PMD carry finished checksums.
pub fn offloads_off(ns: &str, iface: &str) -> Result<()> {
    run(
        Some(ns),
        "ethtool",
        &[
            "-K", iface, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
        ],
    )
    .map(|_| ())
}

/// Creates a namespace with its loopback up.
pub fn add(ns: &str) -> Result<()> {
    run(None, "ip", &["netns", "add", ns])?;
    ip(ns, &["link", "set", "lo", "up"])
}

/// Kills every process left in the namespace, then deletes it. Never fails:
/// this is the cleanup path, and it must go on with the next namespace.
pub fn delete(ns: &str) {
    for _ in 0..3 {
        let pids = pids(ns);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on a pid that lives in a namespace this bed made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = run(None, "ip", &["netns", "del", ns]);
}

/// The processes inside a namespace (`ip netns pids`).
pub fn pids(ns: &str) -> Vec<i32> {
    run_stdout(None, "ip", &["netns", "pids", ns])
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every namespace name on the machine.
pub fn list() -> Vec<String> {
    run_stdout(None, "ip", &["netns", "list"])
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `f` on a new thread that has joined namespace `ns`, and returns its
/// result. Sockets created inside `f` belong to that namespace for life.
pub fn in_ns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| BedError::file(&path, e))?;
    let handle = std::thread::spawn(move || {
        // SAFETY: setns(2) on a namespace fd we hold open; it changes only
        // this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f())
    });
    match handle.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BedError::io(format!("setns into {ns}"), e)),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Byte and packet counters of one interface, read with `ip -s -j link`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IfCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

impl IfCounters {
    /// Counter increase from `earlier` to `self` (saturating).
    pub fn since(&self, earlier: &IfCounters) -> IfCounters {
        IfCounters {
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
        }
    }
}

/// Reads an interface's counters inside a namespace.
pub fn if_counters(ns: &str, iface: &str) -> Result<IfCounters> {
    let out = run_stdout(
        None,
        "ip",
        &["-n", ns, "-s", "-j", "link", "show", "dev", iface],
    )?;
    parse_if_counters(&out)
}

fn parse_if_counters(json: &str) -> Result<IfCounters> {
    let bad = |d: &str| BedError::Parse {
        what: "ip -s -j link output",
        detail: d.to_string(),
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let s = v
        .get(0)
        .and_then(|l| l.get("stats64"))
        .ok_or_else(|| bad("no stats64"))?;
    let get = |dir: &str, what: &str| {
        s.get(dir)
            .and_then(|d| d.get(what))
            .and_then(|n| n.as_u64())
            .ok_or_else(|| bad(&format!("no stats64.{dir}.{what}")))
    };
    Ok(IfCounters {
        rx_bytes: get("rx", "bytes")?,
        rx_packets: get("rx", "packets")?,
        tx_bytes: get("tx", "bytes")?,
        tx_packets: get("tx", "packets")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_link_statistics() {
        let j = r#"[{"ifindex":2,"ifname":"data0","stats64":{"rx":{"bytes":1234,"packets":10,"errors":0},"tx":{"bytes":99,"packets":3,"errors":0}}}]"#;
        let c = parse_if_counters(j).unwrap();
        assert_eq!(
            c,
            IfCounters {
                rx_bytes: 1234,
                rx_packets: 10,
                tx_bytes: 99,
                tx_packets: 3
            }
        );
        assert!(parse_if_counters("[]").is_err());
        assert!(parse_if_counters("not json").is_err());
    }
}
