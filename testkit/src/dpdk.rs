//! One process per DPDK test.
//!
//! DPDK's EAL starts once per process, so every test that opens a DPDK port
//! needs a process of its own. Under nextest (a process per test) that is
//! already so; under plain `cargo test` [`isolated`] re-executes the test
//! binary for just that test.

/// Runs `body` (the test named `name`, its exact path in the test binary) in
/// a process of its own. Needs root ([`crate::require_root`]). The
/// re-executed run must succeed and must have run exactly that one test: a
/// name that matches nothing fails instead of passing with zero tests.
#[track_caller]
pub fn isolated(name: &str, body: fn()) {
    crate::require_root();
    if std::env::var_os("NEXTEST").is_some() || std::env::var_os("BATON_ISOLATED").is_some() {
        return body();
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary path"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("BATON_ISOLATED", "1")
        .output()
        .expect("re-exec test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed (or did not run) in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
