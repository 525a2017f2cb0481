//! Network namespaces for tests: a client, a "switch" and a backend host on one
//! L2 segment (a bridge inside the switch namespace), removed on drop.
//!
//! The switch namespace's kernel plays the switch: it owns the VIP, accepts the
//! client's connection, and after the handoff forwards that flow's packets to
//! the backend unchanged (policy routing + ip_forward): the same L2 direct
//! routing the real dataplane does with a MAC rewrite.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const VIP: &str = "198.18.0.10";
pub const SWITCH_IP: &str = "198.18.0.2";
pub const BACKEND_IP: &str = "198.18.0.11";
pub const CLIENT_IP: &str = "198.18.0.101";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command, ignoring failure (cleanup).
pub fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// The three hosts of one test. Dropping it deletes the namespaces (and with
/// them every interface, route and rule the test made).
pub struct Bed {
    pub client: String,
    pub switch: String,
    pub backend: String,
}

/// Per-host knobs for the TCP options a test wants negotiated.
#[derive(Clone, Debug)]
pub struct TcpKnobs {
    pub timestamps: bool,
    pub sack: bool,
    /// `tcp_rmem` max: decides the window scale Linux announces
    /// (65535 → 0; 6 MiB → 7; 1 GiB → 14).
    pub rmem_max: u64,
}

impl Default for TcpKnobs {
    fn default() -> Self {
        TcpKnobs {
            timestamps: true,
            sack: true,
            rmem_max: 6 * 1024 * 1024,
        }
    }
}

impl Bed {
    /// Builds the three namespaces and the segment.
    pub fn new() -> Bed {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("ag{}x{}", std::process::id(), n);
        let bed = Bed {
            client: format!("{tag}c"),
            switch: format!("{tag}s"),
            backend: format!("{tag}b"),
        };
        for ns in [&bed.client, &bed.switch, &bed.backend] {
            sh(&["ip", "netns", "add", ns]);
            bed.exec(ns, &["ip", "link", "set", "lo", "up"]);
            for k in ["all", "default"] {
                bed.sysctl(ns, &format!("net.ipv4.conf.{k}.rp_filter"), "0");
            }
        }
        let s = bed.switch.clone();
        bed.exec(&s, &["ip", "link", "add", "br0", "type", "bridge"]);
        for (peer, port) in [(&bed.client, "pc"), (&bed.backend, "pb")] {
            sh(&[
                "ip", "-n", peer, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                "netns", &s,
            ]);
            bed.exec(&s, &["ip", "link", "set", port, "master", "br0", "up"]);
            bed.exec(peer, &["ip", "link", "set", "eth0", "up"]);
            bed.offloads_off(peer, "eth0");
            bed.offloads_off(&s, port);
        }
        bed.exec(&s, &["ip", "link", "set", "br0", "up"]);
        bed.exec(
            &s,
            &[
                "ip",
                "addr",
                "add",
                &format!("{SWITCH_IP}/24"),
                "dev",
                "br0",
            ],
        );
        bed.exec(
            &s,
            &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "br0"],
        );
        bed.sysctl(&s, "net.ipv4.ip_forward", "1");
        for k in ["all", "default", "br0"] {
            bed.sysctl(&s, &format!("net.ipv4.conf.{k}.send_redirects"), "0");
        }
        // Handed-off flows are routed by rules placed before the local table.
        bed.exec(&s, &["ip", "rule", "add", "pref", "100", "lookup", "local"]);
        bed.exec(&s, &["ip", "rule", "del", "pref", "0", "lookup", "local"]);
        bed.exec(
            &s,
            &[
                "ip",
                "route",
                "add",
                &format!("{VIP}/32"),
                "via",
                BACKEND_IP,
                "dev",
                "br0",
                "table",
                "200",
            ],
        );

        let c = bed.client.clone();
        bed.exec(
            &c,
            &[
                "ip",
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                "eth0",
            ],
        );

        let b = bed.backend.clone();
        bed.exec(
            &b,
            &[
                "ip",
                "addr",
                "add",
                &format!("{BACKEND_IP}/24"),
                "dev",
                "eth0",
            ],
        );
        bed.exec(
            &b,
            &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
        );
        for k in ["all", "eth0"] {
            bed.sysctl(&b, &format!("net.ipv4.conf.{k}.arp_ignore"), "1");
            bed.sysctl(&b, &format!("net.ipv4.conf.{k}.arp_announce"), "2");
        }
        bed
    }

    /// Applies TCP option knobs to one host.
    pub fn knobs(&self, ns: &str, k: &TcpKnobs) {
        self.sysctl(
            ns,
            "net.ipv4.tcp_timestamps",
            if k.timestamps { "1" } else { "0" },
        );
        self.sysctl(ns, "net.ipv4.tcp_sack", if k.sack { "1" } else { "0" });
        self.sysctl(
            ns,
            "net.ipv4.tcp_rmem",
            &format!("4096 32768 {}", k.rmem_max),
        );
    }

    /// Makes the client announce this MSS for the VIP (route `advmss`).
    pub fn client_mss(&self, mss: u16) {
        let c = self.client.clone();
        self.exec(
            &c,
            &[
                "ip",
                "route",
                "add",
                &format!("{VIP}/32"),
                "dev",
                "eth0",
                "advmss",
                &mss.to_string(),
            ],
        );
    }

    /// Runs a command inside a namespace, panicking on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Sets a sysctl inside a namespace.
    pub fn sysctl(&self, ns: &str, key: &str, val: &str) {
        self.exec(ns, &["sysctl", "-qw", &format!("{key}={val}")]);
    }

    fn offloads_off(&self, ns: &str, ifname: &str) {
        self.exec(
            ns,
            &[
                "ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                "gro", "off",
            ],
        );
    }

    /// Blackholes one client flow in the switch namespace (no RST while the
    /// connection is in flight).
    pub fn hold_flow(&self, client_port: u16) {
        let s = self.switch.clone();
        let port = client_port.to_string();
        self.exec(
            &s,
            &[
                "ip",
                "rule",
                "add",
                "pref",
                "10",
                "from",
                CLIENT_IP,
                "to",
                VIP,
                "ipproto",
                "tcp",
                "sport",
                &port,
                "blackhole",
            ],
        );
    }

    /// Forwards one client flow to the backend, then lifts the hold.
    pub fn forward_flow(&self, client_port: u16) {
        let s = self.switch.clone();
        let port = client_port.to_string();
        self.exec(
            &s,
            &[
                "ip", "rule", "add", "pref", "9", "from", CLIENT_IP, "to", VIP, "ipproto", "tcp",
                "sport", &port, "lookup", "200",
            ],
        );
        self.exec(
            &s,
            &[
                "ip",
                "rule",
                "del",
                "pref",
                "10",
                "from",
                CLIENT_IP,
                "to",
                VIP,
                "ipproto",
                "tcp",
                "sport",
                &port,
                "blackhole",
            ],
        );
    }

    /// Runs `f` on a thread whose network namespace is `ns`; sockets it makes
    /// (and threads it spawns) live there.
    pub fn in_ns<R: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
        spawn_in_ns(ns, f)
            .join()
            .expect("thread in namespace panicked")
    }
}

/// Spawns a thread inside namespace `ns`.
pub fn spawn_in_ns<R: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on this thread only; the fd is valid for the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in [&self.client, &self.switch, &self.backend] {
            // Processes left in a namespace would keep it alive: kill them first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: plain kill(2) on a process inside our own namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            sh_quiet(&["ip", "netns", "del", ns]);
        }
    }
}
