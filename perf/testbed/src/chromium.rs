//! Headless Chromium in a client namespace: loads a page with a fresh
//! profile and returns the DOM after its scripts ran (the test pages mark
//! how many of their objects loaded).

use std::path::Path;

use crate::error::Result;
use crate::netns;

/// Loads `url` from namespace `ns` with the user profile in `profile`
/// (a directory of the bed), `extra` flags added; the DOM as
/// `--dump-dom` prints it. Bounded to 60 s.
pub fn dump_dom(ns: &str, profile: &Path, url: &str, extra: &[&str]) -> Result<String> {
    let user = format!("--user-data-dir={}", profile.display());
    let mut args = vec![
        "60",
        "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        &user,
        "--virtual-time-budget=10000",
        "--dump-dom",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    netns::run_stdout(Some(ns), "timeout", &args)
}
