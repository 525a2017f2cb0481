//! Removal of the bed's namespaces on every way out: normal drop, panic
//! (unwinding runs `Drop`), Ctrl-C and SIGTERM (a signal thread), and a
//! previous run that was SIGKILLed (a sweep of namespaces whose owning process
//! is gone, done before each new bed comes up).

use crate::netns;
use std::sync::{Mutex, Once};

/// Prefix of every namespace the bed creates: `tbed-<pid>-<counter>-<role>`.
pub const NS_PREFIX: &str = "tbed-";

static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Records a namespace so that a signal removes it.
pub fn register(ns: &str) {
    install_signal_handler();
    lock().push(ns.to_string());
}

/// Forgets a namespace (it was removed normally).
pub fn unregister(ns: &str) {
    lock().retain(|n| n != ns);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<String>> {
    // A panic while holding the lock leaves a list that is still valid.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a bed's working directory, removed with the namespaces on a
/// signal (unless `TESTBED_KEEP_LOGS` is set).
pub fn register_dir(dir: &std::path::Path) {
    dirs().push(dir.to_path_buf());
}

/// Forgets a working directory (its bed removed or kept it).
pub fn unregister_dir(dir: &std::path::Path) {
    dirs().retain(|d| d != dir);
}

fn dirs() -> std::sync::MutexGuard<'static, Vec<std::path::PathBuf>> {
    DIRS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes every registered namespace (reverse order: hosts before the hub)
/// and working directory.
pub fn remove_all() {
    let names: Vec<String> = lock().drain(..).collect();
    for ns in names.iter().rev() {
        netns::delete(ns);
    }
    let keep = std::env::var_os("TESTBED_KEEP_LOGS").is_some();
    for d in dirs().drain(..) {
        if !keep {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

/// Removes working directories (`$TMPDIR/tbed-<pid>-<n>`) of bed processes
/// that no longer exist, including logs kept after failures: the manual
/// `baton-testbed cleanup` only, never done automatically.
pub fn sweep_stale_dirs() -> Vec<std::path::PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

fn install_signal_handler() {
    INSTALL.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            eprintln!("testbed: cannot install the signal handler; Ctrl-C will leave namespaces");
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("testbed: signal {sig}: removing the test bed");
                remove_all();
                std::process::exit(128 + sig);
            }
        });
    });
}

/// Deletes namespaces left by bed processes that no longer exist (a run that
/// was SIGKILLed). Namespaces of live processes are never touched.
pub fn sweep_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in netns::list() {
        let Some(rest) = ns.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        netns::delete(&ns);
        removed.push(ns);
    }
    removed
}
