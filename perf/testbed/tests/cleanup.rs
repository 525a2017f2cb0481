//! The bed goes away on Ctrl-C, and a bed whose process was SIGKILLed is
//! swept by `baton-testbed cleanup`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testbed::netns;

/// Starts `baton-testbed up --no-baton` and returns it with its bed id,
/// read from the first line it prints.
fn start_bed() -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton-testbed"))
        .args(["up", "--no-baton", "--clients", "1", "--backends", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn baton-testbed");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let id = first
        .split_whitespace()
        .find(|w| w.starts_with("tbed-"))
        .unwrap_or_else(|| panic!("no bed id in `{first}`"))
        .to_string();
    (child, id)
}

fn namespaces_of(id: &str) -> Vec<String> {
    netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{id}-")))
        .collect()
}

fn wait_gone(id: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !namespaces_of(id).is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    namespaces_of(id)
}

#[test]
fn ctrl_c_removes_the_bed() {
    let (mut child, id) = start_bed();
    assert!(namespaces_of(&id).len() >= 4, "bed {id} not up");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert!(!st.success(), "exits with the signal's status");
    assert_eq!(wait_gone(&id), Vec::<String>::new());
}

#[test]
fn a_killed_bed_is_swept() {
    let (mut child, id) = start_bed();
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    assert!(
        !namespaces_of(&id).is_empty(),
        "SIGKILL leaves the namespaces"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_baton-testbed"))
        .arg("cleanup")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(wait_gone(&id), Vec::<String>::new());
    // The killed bed's directory is this test's to remove.
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&id));
}
