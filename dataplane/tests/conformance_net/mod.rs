//! Network-namespace plumbing for the packet I/O conformance tests and the
//! `io_pps` benchmark: namespaces and veth pairs that are removed on drop,
//! entering a namespace from a thread, and a raw AF_PACKET socket for the
//! far end of a veth.
//!
//! Names carry the `bpk` prefix, the process id and a counter, so tests that
//! run in parallel (one process each under nextest) and other suites never
//! collide. Interfaces are created directly inside the test's namespace
//! (`ip -n`), never in the root namespace.
#![allow(dead_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name with our prefix: `bpk<pid>x<n>` (≤ 15 characters).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut s = format!("bpk{}{}{}", std::process::id(), tag, n);
    s.truncate(15);
    s
}

/// Runs a command; panics with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command, ignoring failure (clean-up paths).
pub fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// Whether this process may build namespaces (root with CAP_SYS_ADMIN).
pub fn can_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace, deleted (with every interface in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a namespace with loopback up and IPv6 off (no autoconf noise).
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        ns
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        run(&v);
    }

    /// `ip netns exec <ns> <args>`.
    pub fn exec(&self, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        run(&v);
    }

    /// A `Command` that runs inside the namespace.
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    pub fn sysctl(&self, key: &str, val: &str) {
        let kv = format!("{key}={val}");
        self.exec(&["sysctl", "-q", "-w", &kv]);
    }

    /// Moves the calling thread into this namespace (sockets it opens from
    /// now on, and threads it spawns, live there).
    pub fn enter(&self) {
        enter_named(&self.name);
    }

    /// Creates a veth pair `a` (here) ↔ `b` (in `peer`, which may be this
    /// namespace), both up, offloads off.
    pub fn veth(&self, a: &str, peer: &Netns, b: &str) {
        self.ip(&[
            "link", "add", a, "type", "veth", "peer", "name", b, "netns", &peer.name,
        ]);
        for (ns, ifc) in [(self, a), (peer, b)] {
            ns.exec(&[
                "ethtool", "-K", ifc, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro",
                "off",
            ]);
            ns.ip(&["link", "set", ifc, "up"]);
        }
    }

    /// The MAC address of `ifc` in this namespace.
    pub fn mac(&self, ifc: &str) -> [u8; 6] {
        let out = self
            .command("cat")
            .arg(format!("/sys/class/net/{ifc}/address"))
            .output()
            .unwrap();
        parse_mac(String::from_utf8_lossy(&out.stdout).trim())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        run_quiet(&["ip", "netns", "del", &self.name]);
    }
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC {s:?}"));
    }
    m
}

/// A raw AF_PACKET socket bound to one interface (in the thread's current
/// namespace), for injecting and capturing frames at the far end of a veth.
pub struct RawSock {
    fd: OwnedFd,
}

impl RawSock {
    pub fn open(ifc: &str) -> RawSock {
        let name = CString::new(ifc).unwrap();
        // SAFETY: plain syscalls; results checked.
        unsafe {
            let idx = libc::if_nametoindex(name.as_ptr());
            assert!(idx != 0, "no interface {ifc}");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto as i32,
            );
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = idx as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
            // Room for a whole test burst of full-size frames.
            let size: libc::c_int = 32 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
            RawSock { fd }
        }
    }

    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: valid buffer.
        unsafe {
            libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
                == frame.len() as isize
        }
    }

    /// Receives one frame (incoming only), or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = vec![0u8; 9000];
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: sockaddr_ll is plain old data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffers of the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 || sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            buf.truncate(n as usize);
            return Some(buf);
        }
    }
}

/// Test frames: a local-experimental EtherType and a 4-byte sequence number,
/// padded to `len` bytes.
pub const TEST_ETHERTYPE: u16 = 0x88b5;

pub fn test_frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(60));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len.max(60) {
        f.push((f.len() % 251) as u8);
    }
    f
}

/// The sequence number of a test frame, if it is one.
pub fn test_seq(f: &[u8]) -> Option<u32> {
    if f.len() < 18 || f[12..14] != TEST_ETHERTYPE.to_be_bytes() {
        return None;
    }
    Some(u32::from_be_bytes([f[14], f[15], f[16], f[17]]))
}

/// Moves the calling thread into the named namespace.
pub fn enter_named(name: &str) {
    let path = CString::new(format!("/var/run/netns/{name}")).unwrap();
    // SAFETY: valid C string; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(
        fd >= 0,
        "open netns {}: {}",
        name,
        io::Error::last_os_error()
    );
    // SAFETY: fd is a namespace file we just opened.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    let err = io::Error::last_os_error();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "setns {}: {err}", name);
}
