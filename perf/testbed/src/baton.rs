//! Baton in the bed: the `baton` switch in the switch host and `baton-agent`
//! on the backends (relay mode in front of nginx, or the agent's listener
//! example), started from generated profiles that use the shared addresses.

use crate::error::{BedError, Result};
use crate::process::Proc;
use crate::topology::Bed;
use std::path::PathBuf;

/// The switch's packet I/O backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatonIo {
    /// TPACKET_V3 on the data veth.
    AfPacket,
    /// DPDK with the af_packet PMD on the data veth (`--no-huge --no-pci`).
    Dpdk,
}

impl BatonIo {
    /// `afpacket` / `dpdk`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatonIo::AfPacket => "afpacket",
            BatonIo::Dpdk => "dpdk",
        }
    }
}

/// The workers' polling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polling {
    /// Spin on the queues: peak rate, one core at 100 % by design.
    Busy,
    /// Spin, then block when idle: fair CPU-per-request figures.
    Adaptive,
}

impl Polling {
    /// `busy` / `adaptive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Polling::Busy => "busy",
            Polling::Adaptive => "adaptive",
        }
    }
}

/// How to start the switch.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// Packet I/O backend.
    pub io: BatonIo,
    /// Polling mode.
    pub polling: Polling,
    /// Worker threads.
    pub workers: u16,
}

impl SwitchOptions {
    /// The benchmark's switch: one worker, adaptive polling, AF_PACKET.
    pub fn bench() -> Self {
        SwitchOptions {
            io: BatonIo::AfPacket,
            polling: Polling::Adaptive,
            workers: 1,
        }
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds a workspace binary: `$BATON_BIN_DIR`, then the target dir
/// (`$CARGO_TARGET_DIR` or `<workspace>/target`) of this build's profile,
/// then of the other profile.
pub fn find_bin(name: &str) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("BATON_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let (first, second) = if cfg!(debug_assertions) {
        ("debug", "release")
    } else {
        ("release", "debug")
    };
    dirs.push(target.join(first));
    dirs.push(target.join(second));
    // A binary next to the running one (e.g. target/release/baton-demo).
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(p) = d.parent() {
                dirs.push(p.to_path_buf());
            }
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            BedError::Setup(format!(
                "`{name}` not found in {}: build it first (`cargo build --release --workspace --features dpdk --bins --examples`)",
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// Starts the agents on the backends and the switch; returns the processes
/// (switch last, so it stops first).
pub fn start_stack(bed: &Bed, opts: &SwitchOptions) -> Result<Vec<Proc>> {
    let _ = (bed, opts);
    let baton = find_bin("baton")?;
    let agent = find_bin("baton-agent")?;
    Err(BedError::Setup(format!(
        "{} and {} found, but the test bed does not start them yet",
        baton.display(),
        agent.display()
    )))
}
