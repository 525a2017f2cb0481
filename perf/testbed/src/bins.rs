//! Finding the workspace and the binaries a build made, for the bed, the
//! demo, the benchmark and the attack suite.

use std::path::PathBuf;

use crate::error::{BedError, Result};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&p).unwrap_or(p)
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
