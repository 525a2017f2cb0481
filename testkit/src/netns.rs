//! Network namespaces for tests and the test bed: creating them (and veths,
//! bridges, addresses inside them), running commands and Rust code in them,
//! and removing them, with every process left inside, on drop.
//!
//! Namespaces are made with iproute2 (`ip netns add`), so `ip netns exec`
//! and operators see them. Rust code that must talk from inside one runs on
//! a thread switched there with `setns(2)`: the network namespace is a
//! per-thread attribute, so the rest of the process is unaffected.
//!
//! Two styles: [`Netns`] and the panicking helpers for tests (a failed setup
//! step fails the test with the command's output), and the fallible free
//! functions ([`run`], [`ip`], [`sysctl`], …) returning [`CmdError`] for the
//! test bed, which reports errors instead of panicking.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A command that could not run or exited unsuccessfully.
#[derive(Debug)]
pub enum CmdError {
    /// It could not be started (missing binary, permissions).
    Spawn { cmd: String, source: std::io::Error },
    /// It exited unsuccessfully.
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Spawn { cmd, source } => write!(f, "cannot start `{cmd}`: {source}"),
            CmdError::Failed {
                cmd,
                status,
                stderr,
            } => write!(f, "`{cmd}` failed ({status}): {stderr}"),
        }
    }
}

impl std::error::Error for CmdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CmdError::Spawn { source, .. } => Some(source),
            CmdError::Failed { .. } => None,
        }
    }
}

/// A name unique to this process and call: `<tag><pid>x<n>`.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}x{n}", std::process::id())
}

/// A `Command` for `prog args…` inside namespace `ns` (or the current one).
pub fn command(ns: Option<&str>, prog: &str, args: &[&str]) -> Command {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, prog]);
            c
        }
        None => Command::new(prog),
    };
    c.args(args);
    c
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

/// Runs `prog args…` (in namespace `ns` when given) and returns its output,
/// or an error carrying stderr when it exits unsuccessfully.
pub fn run(ns: Option<&str>, prog: &str, args: &[&str]) -> Result<Output, CmdError> {
    let shown = describe(ns, prog, args);
    let out = command(ns, prog, args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CmdError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(CmdError::Failed {
            cmd: shown,
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(out)
}

/// Like [`run`], returning stdout as text.
pub fn run_stdout(ns: Option<&str>, prog: &str, args: &[&str]) -> Result<String, CmdError> {
    let out = run(ns, prog, args)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `args[0] args[1..]` in the current namespace; panics with its output
/// when it fails (test setup).
#[track_caller]
pub fn sh(args: &[&str]) -> Output {
    run(None, args[0], &args[1..]).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command, ignoring failure (cleanup paths).
pub fn sh_quiet(args: &[&str]) {
    let _ = run(None, args[0], &args[1..]);
}

/// Runs `args` inside namespace `ns`; panics with its output when it fails.
#[track_caller]
pub fn exec(ns: &str, args: &[&str]) -> Output {
    run(Some(ns), args[0], &args[1..]).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip -n <ns> <args>`.
pub fn ip(ns: &str, args: &[&str]) -> Result<(), CmdError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run(None, "ip", &all).map(|_| ())
}

/// Sets a sysctl inside the namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    let kv = format!("{key}={value}");
    run(Some(ns), "sysctl", &["-q", "-w", &kv]).map(|_| ())
}

/// Turns off checksum and segmentation offloads on an interface, so frames
/// seen by AF_PACKET or DPDK's af_packet PMD carry finished checksums.
pub fn offloads_off(ns: &str, iface: &str) -> Result<(), CmdError> {
    let args = [
        "-K", iface, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
    ];
    run(Some(ns), "ethtool", &args).map(|_| ())
}

/// Creates a namespace with its loopback up.
pub fn add(ns: &str) -> Result<(), CmdError> {
    run(None, "ip", &["netns", "add", ns])?;
    ip(ns, &["link", "set", "lo", "up"])
}

/// Kills every process left in the namespace (they would keep it alive),
/// then deletes it. Never fails: this is the cleanup path. The calling
/// process is spared: a test whose main thread entered the namespace is
/// listed in it too.
pub fn delete(ns: &str) {
    let me = std::process::id() as i32;
    for _ in 0..3 {
        let mut pids = pids(ns);
        pids.retain(|&p| p != me);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on a pid inside a namespace we made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
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

/// Moves the calling thread into namespace `ns`: sockets it opens from now
/// on, and threads it spawns, live there.
pub fn try_enter(ns: &str) -> std::io::Result<()> {
    let file = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns(2) on a namespace fd we hold open; it changes only this
    // thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// [`try_enter`], panicking on failure.
#[track_caller]
pub fn enter(ns: &str) {
    try_enter(ns).unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
}

/// Spawns a thread inside namespace `ns`.
pub fn spawn_in<R: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
}

/// Runs `f` on a new thread that has joined namespace `ns` and returns its
/// result; a panic in `f` is resumed here, a failed `setns` is an error.
pub fn in_ns<T, F>(ns: &str, f: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_string();
    let handle = std::thread::spawn(move || try_enter(&ns).map(|()| f()));
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC {s:?}"));
    }
    m
}

/// A network namespace of one test, deleted (with every interface, route
/// and process in it) on drop. Its methods panic on failure: test setup.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a namespace named [`unique`]`(tag)` with its loopback up.
    #[track_caller]
    pub fn new(tag: &str) -> Netns {
        Netns::named(&unique(tag))
    }

    /// Creates the namespace `name` with its loopback up.
    #[track_caller]
    pub fn named(name: &str) -> Netns {
        add(name).unwrap_or_else(|e| panic!("{e}"));
        Netns {
            name: name.to_string(),
        }
    }

    /// Turns IPv6 off (no autoconfiguration traffic on the test's links).
    pub fn no_ipv6(self) -> Netns {
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        self
    }

    /// `ip -n <ns> <args>`.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) {
        ip(&self.name, args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `args` inside the namespace.
    #[track_caller]
    pub fn exec(&self, args: &[&str]) -> Output {
        exec(&self.name, args)
    }

    /// A `Command` that runs `prog` inside the namespace.
    pub fn command(&self, prog: &str) -> Command {
        command(Some(&self.name), prog, &[])
    }

    /// Sets a sysctl inside the namespace.
    #[track_caller]
    pub fn sysctl(&self, key: &str, val: &str) {
        sysctl(&self.name, key, val).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Turns offloads off on `ifc` (see [`offloads_off`]).
    #[track_caller]
    pub fn offloads_off(&self, ifc: &str) {
        offloads_off(&self.name, ifc).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Adds address `cidr` (e.g. `198.18.0.2/24`) to `ifc`.
    #[track_caller]
    pub fn addr(&self, ifc: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", ifc]);
    }

    /// Creates bridge `br`, up.
    #[track_caller]
    pub fn bridge(&self, br: &str) {
        self.ip(&["link", "add", br, "type", "bridge"]);
        self.ip(&["link", "set", br, "up"]);
    }

    /// Creates a veth pair `a` (here) ↔ `b` (in `peer`, which may be this
    /// namespace), both up, offloads off.
    #[track_caller]
    pub fn veth(&self, a: &str, peer: &Netns, b: &str) {
        self.ip(&[
            "link", "add", a, "type", "veth", "peer", "name", b, "netns", &peer.name,
        ]);
        for (ns, ifc) in [(self, a), (peer, b)] {
            ns.offloads_off(ifc);
            ns.ip(&["link", "set", ifc, "up"]);
        }
    }

    /// A veth pair like [`Self::veth`] whose ends have `queues` receive and
    /// transmit queues each (AF_XDP binds one socket per receive queue; a
    /// veth takes XDP only with at least as many receive queues as its peer
    /// has transmit queues).
    #[track_caller]
    pub fn veth_queues(&self, a: &str, peer: &Netns, b: &str, queues: u32) {
        let q = queues.to_string();
        self.ip(&[
            "link",
            "add",
            a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &peer.name,
        ]);
        for (ns, ifc) in [(self, a), (peer, b)] {
            ns.offloads_off(ifc);
            ns.ip(&["link", "set", ifc, "up"]);
        }
    }

    /// The MAC address of `ifc` in this namespace.
    #[track_caller]
    pub fn mac(&self, ifc: &str) -> [u8; 6] {
        let out = self.exec(&["cat", &format!("/sys/class/net/{ifc}/address")]);
        parse_mac(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// Moves the calling thread into this namespace.
    #[track_caller]
    pub fn enter(&self) {
        enter(&self.name);
    }

    /// Spawns a thread inside this namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> JoinHandle<R> {
        spawn_in(&self.name, f)
    }

    /// Runs `f` on a thread inside this namespace and returns its result.
    #[track_caller]
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        in_ns(&self.name, f).unwrap_or_else(|e| panic!("setns into {}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_macs_parse() {
        assert_ne!(super::unique("t"), super::unique("t"));
        assert_eq!(
            super::parse_mac("02:ba:70:00:00:0a"),
            [2, 0xba, 0x70, 0, 0, 10]
        );
    }
}
