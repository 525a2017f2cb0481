//! Tests that need root.
//!
//! Namespace, veth, AF_PACKET and DPDK tests cannot run unprivileged. Such a
//! test must never pass without having run: it calls [`require_root`] first,
//! which fails it with a message saying why.

/// Bit of `CAP_NET_ADMIN` in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// True when this process may build namespaces and interfaces: effective uid
/// 0 with `CAP_NET_ADMIN` in its effective set.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let uid0 = unsafe { libc::geteuid() } == 0;
    uid0 && effective_caps().is_some_and(|c| c & (1 << CAP_NET_ADMIN) != 0)
}

/// The effective capability set (`CapEff` of `/proc/self/status`).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Fails the calling test unless it runs as root with `CAP_NET_ADMIN`.
#[track_caller]
pub fn require_root() {
    if !is_root() {
        panic!(
            "this test needs root (CAP_NET_ADMIN) for network namespaces and raw sockets; \
             run the suite as root (e.g. `sudo -E make test`). It fails rather than passing \
             without having run."
        );
    }
}
