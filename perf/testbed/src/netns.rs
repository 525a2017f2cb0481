//! Network namespaces of the bed: `testkit::netns` (shared with every test
//! suite) with its errors as [`BedError`], plus interface counters.
//!
//! Namespaces are created with iproute2 (`ip netns add`), so they are visible
//! to operators (`ip netns list`) and to every tool started with
//! `ip netns exec`. Rust code that must itself talk from inside a namespace
//! (a test's TCP client) runs in a thread switched there with `setns(2)`.

use crate::error::{BedError, Result};
use std::process::Output;

pub use testkit::netns::{command, delete, list, pids};

/// Runs `prog args…` (in namespace `ns` when given) and returns its output,
/// or an error carrying stderr when it exits unsuccessfully.
pub fn run(ns: Option<&str>, prog: &str, args: &[&str]) -> Result<Output> {
    Ok(testkit::netns::run(ns, prog, args)?)
}

/// Like [`run`], returning stdout as text.
pub fn run_stdout(ns: Option<&str>, prog: &str, args: &[&str]) -> Result<String> {
    Ok(testkit::netns::run_stdout(ns, prog, args)?)
}

/// Runs `ip args…` in the namespace (`ip -n ns …`).
pub fn ip(ns: &str, args: &[&str]) -> Result<()> {
    Ok(testkit::netns::ip(ns, args)?)
}

/// Sets a sysctl inside the namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    Ok(testkit::netns::sysctl(ns, key, value)?)
}

/// Turns off checksum and segmentation offloads on an interface.
pub fn offloads_off(ns: &str, iface: &str) -> Result<()> {
    Ok(testkit::netns::offloads_off(ns, iface)?)
}

/// Creates a namespace with its loopback up.
pub fn add(ns: &str) -> Result<()> {
    Ok(testkit::netns::add(ns)?)
}

/// Runs `f` on a new thread that has joined namespace `ns`, and returns its
/// result. Sockets created inside `f` belong to that namespace for life.
pub fn in_ns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    testkit::netns::in_ns(ns, f).map_err(|e| BedError::io(format!("setns into {ns}"), e))
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
