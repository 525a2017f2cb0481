//! The XDP program on the data interface: loading, attaching, detaching, its
//! maps and counters.
//!
//! The program (`bpf/fastpath.bpf.c`, compiled by `build.rs` with clang and
//! embedded here) relays the ordinary client segments of FORWARDING flows in
//! the kernel and steers every other frame to the AF_XDP socket of its
//! receive queue. It is loaded with aya: pure Rust, on stable, with no libbpf
//! at run time.
//!
//! Lifetime. The program is attached through a BPF link, whose only holder is
//! this process: when the [`XdpProgram`] is dropped, when the switch shuts
//! down, and also when the process dies in any way (a crash, SIGKILL), the
//! kernel closes the link and detaches the program. A dead switch never
//! leaves the interface relaying flows nobody tracks. On kernels without XDP
//! links (before 5.9) aya falls back to the older netlink attach, which
//! outlives the process; the next start finds that program (by its name,
//! `baton_fastpath`) and removes it (see [`XdpProgram::notes`]).
//!
//! One switch per interface. An exclusive `flock` on
//! `/run/baton/xdp-<netns inode>-<interface>.lock`, holding the owner's pid,
//! is taken before anything is attached and kept for the program's lifetime
//! (the kernel releases it when the process dies). A second switch on the
//! same interface is refused with the first one's pid, instead of failing
//! obscurely in the kernel or, worse, detaching the first one's program.
//!
//! An interface that already carries another XDP program is left alone: the
//! error names the program and how to remove it.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::io::af_xdp::config::{AfXdpConfig, FastPath, XdpAttach};
use crate::io::af_xdp::flows::{sys, FlowTable};
use crate::io::port::{FastPathStats, IoError};

/// The fast-path program, compiled from `bpf/fastpath.bpf.c` by `build.rs`.
static FASTPATH_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath.bpf.o"));
/// The drop-everything baseline, compiled from `bpf/drop.bpf.c`.
static DROP_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drop.bpf.o"));
/// The pass-everything program, compiled from `bpf/pass.bpf.c`.
static PASS_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pass.bpf.o"));

/// The ELF object of `baton_pass` (`bpf/pass.bpf.c`), an XDP program that
/// passes every frame. Not used by the switch: on a veth test bed the
/// switch's XDP_TX frames reach the veth's peer only while the peer runs
/// NAPI, which this program, attached to the peer, turns on (for example
/// `ip link set dev <peer> xdpdrv obj <file> sec xdp`).
pub fn pass_program_object() -> &'static [u8] {
    PASS_OBJ
}

/// The fast path's program name, as the kernel shows it (`ip link`,
/// `bpftool`); also how a stale copy from an earlier run is recognised.
pub const PROGRAM_NAME: &str = "baton_fastpath";

/// XDP actions (`enum xdp_action`), as [`XdpProgram::test_run`] returns them.
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
}

/// Indices of the program's `stats` counters.
const FORWARDED_PACKETS: u32 = 0;
const FORWARDED_BYTES: u32 = 1;
const TO_WORKER: u32 = 2;
const PASSED: u32 = 3;
const DROPPED: u32 = 4;
const RETIRED: u32 = 5;

/// `struct config` of the program.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ConfigVal {
    mac: [u8; 6],
    fast_path: u8,
    pad: u8,
}

// SAFETY: plain bytes, no padding, every bit pattern valid.
unsafe impl aya::Pod for ConfigVal {}

/// The fast-path program attached to one interface; dropping it detaches it.
pub struct XdpProgram {
    // Field order is drop order: the link (inside `ebpf`) is closed, which
    // detaches the program, before the interface lock is released.
    ebpf: Mutex<Ebpf>,
    xsks: XskMap<MapData>,
    stats: PerCpuArray<MapData, u64>,
    /// The flow map; every [`FlowTable`] gets a duplicate.
    flows: OwnedFd,
    /// The program itself, for [`XdpProgram::test_run`].
    prog: OwnedFd,
    flow_count: Arc<AtomicU64>,
    fast_path: bool,
    mode: &'static str,
    iface: String,
    queues: u32,
    notes: Vec<String>,
    _lock: InterfaceLock,
}

// The control plane polls `stats` from its own thread while the workers run.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<XdpProgram>();
    send_sync::<DropBaseline>();
};

impl XdpProgram {
    /// Loads the program, sizes its maps for `queues` queues and
    /// `cfg.flow_capacity` flows, writes the switch's `mac` into its
    /// configuration and attaches it to `ifindex` (`cfg.iface`) in
    /// `cfg.attach` mode.
    pub fn attach(
        cfg: &AfXdpConfig,
        ifindex: u32,
        queues: u32,
        mac: [u8; 6],
    ) -> Result<XdpProgram, IoError> {
        let iface = cfg.iface.clone();
        if queues == 0 {
            return Err(IoError::Config(format!(
                "{iface}: the XDP program needs at least one queue"
            )));
        }
        if cfg.flow_capacity == 0 && cfg.fast_path == FastPath::Xdp {
            return Err(IoError::Config(format!(
                "{iface}: flow_capacity must be at least 1 with the XDP fast path on"
            )));
        }
        let lock = InterfaceLock::take(&iface)?;
        let mut notes = Vec::new();
        clear_interface(ifindex, &iface, &mut notes)?;

        // The flow map is preallocated (the kernel's default for hash maps):
        // about 100 bytes per entry are reserved now, inserts never allocate
        // and "full" is exact. With the fast path off it holds nothing.
        let fast_path = cfg.fast_path == FastPath::Xdp;
        let flow_entries = if fast_path { cfg.flow_capacity } else { 1 };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("flows", flow_entries)
            .map_max_entries("xsks", queues)
            .load(FASTPATH_OBJ)
            .map_err(|e| load_error(&iface, &e))?;

        {
            let map = ebpf
                .map_mut("config")
                .ok_or_else(|| missing(&iface, "map config"))?;
            let mut config: Array<&mut MapData, ConfigVal> =
                Array::try_from(map).map_err(|e| aya_error(&iface, "opening map config", &e))?;
            let val = ConfigVal {
                mac,
                fast_path: fast_path as u8,
                pad: 0,
            };
            config
                .set(0, val, 0)
                .map_err(|e| aya_error(&iface, "writing map config", &e))?;
        }
        let xsks: XskMap<MapData> = XskMap::try_from(
            ebpf.take_map("xsks")
                .ok_or_else(|| missing(&iface, "map xsks"))?,
        )
        .map_err(|e| aya_error(&iface, "opening map xsks", &e))?;
        let stats: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
            ebpf.take_map("stats")
                .ok_or_else(|| missing(&iface, "map stats"))?,
        )
        .map_err(|e| aya_error(&iface, "opening map stats", &e))?;
        let flows = {
            let map = ebpf
                .map("flows")
                .ok_or_else(|| missing(&iface, "map flows"))?;
            let data = match map {
                aya::maps::Map::HashMap(d) => d,
                _ => return Err(missing(&iface, "hash map flows")),
            };
            dup(data.fd().as_fd(), &iface)?
        };

        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| missing(&iface, "program baton_fastpath"))?
            .try_into()
            .map_err(|e| aya_error(&iface, "opening program baton_fastpath", &e))?;
        program.load().map_err(|e| load_error(&iface, &e))?;
        let prog = dup(
            program
                .fd()
                .map_err(|e| aya_error(&iface, "program fd", &e))?
                .as_fd(),
            &iface,
        )?;
        let mode = attach_in_mode(program, ifindex, &iface, cfg.attach)?;

        Ok(XdpProgram {
            ebpf: Mutex::new(ebpf),
            xsks,
            stats,
            flows,
            prog,
            flow_count: Arc::new(AtomicU64::new(0)),
            fast_path,
            mode,
            iface,
            queues,
            notes,
            _lock: lock,
        })
    }

    /// Sends frames received on `queue` to the AF_XDP socket `fd`.
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), IoError> {
        if queue >= self.queues {
            return Err(IoError::Config(format!(
                "{}: queue {queue} is beyond the {} queues the XDP program was sized for",
                self.iface, self.queues
            )));
        }
        self.xsks.set(queue, fd, 0).map_err(|e| IoError::Os {
            call: "registering the AF_XDP socket in the XDP program's xsks map",
            iface: self.iface.clone(),
            err: io::Error::from_raw_os_error(errno(&e).unwrap_or(libc::EINVAL)),
        })
    }

    /// Stops sending frames of `queue` to a socket (they go to the kernel
    /// stack again); for a worker that closes its socket before the others.
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), IoError> {
        if queue >= self.queues {
            return Ok(());
        }
        match self.xsks.unset(queue) {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(IoError::Os {
                call: "removing the AF_XDP socket from the XDP program's xsks map",
                iface: self.iface.clone(),
                err: io::Error::from_raw_os_error(errno(&e).unwrap_or(libc::EINVAL)),
            }),
        }
    }

    /// A worker's handle on the flow map; `None` when the fast path is off.
    pub fn flows(&self) -> Result<Option<FlowTable>, IoError> {
        if !self.fast_path {
            return Ok(None);
        }
        let fd = dup(self.flows.as_fd(), &self.iface)?;
        Ok(Some(FlowTable::new(fd, Arc::clone(&self.flow_count))))
    }

    /// The program's counters, summed over CPUs.
    pub fn stats(&self) -> FastPathStats {
        let sum = |i: u32| -> u64 {
            self.stats
                .get(&i, 0)
                .map(|v| v.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
                .unwrap_or(0)
        };
        FastPathStats {
            forwarded_packets: sum(FORWARDED_PACKETS),
            forwarded_bytes: sum(FORWARDED_BYTES),
            to_worker: sum(TO_WORKER),
            passed: sum(PASSED),
            dropped: sum(DROPPED),
            retired: sum(RETIRED),
            flows: self.flow_count.load(Ordering::Relaxed),
            mode: self.mode,
        }
    }

    /// The attach mode in use: `"native"` (driver) or `"generic"` (SKB).
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// Things the loader did that the operator should hear of (a stale
    /// program from an earlier run removed); the caller logs them.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Whether the program relays FORWARDING flows itself.
    pub fn fast_path(&self) -> bool {
        self.fast_path
    }

    /// Runs the program once on `frame` without traffic (the kernel's
    /// `BPF_PROG_TEST_RUN`, as on receive queue 0): returns its action (see
    /// [`action`]) and the frame as the program left it. Maps and counters
    /// change as for a received frame; nothing is transmitted or redirected.
    /// For tests and diagnostics.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
        sys::test_run(&self.prog, frame)
    }

    /// The kernel's id of the loaded program (as `ip link` shows it).
    pub fn program_id(&self) -> Option<u32> {
        let ebpf = self.ebpf.lock().unwrap_or_else(|p| p.into_inner());
        let program: &Xdp = ebpf.program(PROGRAM_NAME)?.try_into().ok()?;
        program.info().ok().map(|i| i.id())
    }
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("iface", &self.iface)
            .field("mode", &self.mode)
            .field("fast_path", &self.fast_path)
            .field("queues", &self.queues)
            .finish()
    }
}

/// A measurement aid, not part of the switch: an XDP program that counts
/// and drops every frame (`bpf/drop.bpf.c`). Attached in place of the fast
/// path, it shows the frame rate the interface and its driver deliver to XDP
/// at all, the bound the fast path's rate is compared with. Detached on drop
/// (and by the kernel if the process dies).
pub struct DropBaseline {
    /// Holds the program and its link (never read: dropping it detaches).
    _ebpf: Mutex<Ebpf>,
    dropped: PerCpuArray<MapData, u64>,
    mode: &'static str,
}

impl DropBaseline {
    /// Loads the drop program and attaches it to `ifindex` in `mode`. Fails
    /// if the interface already carries an XDP program.
    pub fn attach(ifindex: u32, mode: XdpAttach) -> Result<Self, IoError> {
        let iface =
            ifname(ifindex).ok_or_else(|| IoError::NoSuchInterface(format!("#{ifindex}")))?;
        if let Some(att) = netlink::query(ifindex).map_err(|err| IoError::Os {
            call: "querying the interface's XDP program (RTM_GETLINK)",
            iface: iface.clone(),
            err,
        })? {
            return Err(busy(&iface, &att));
        }
        let mut ebpf = Ebpf::load(DROP_OBJ).map_err(|e| load_error(&iface, &e))?;
        let dropped: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
            ebpf.take_map("dropped")
                .ok_or_else(|| missing(&iface, "map dropped"))?,
        )
        .map_err(|e| aya_error(&iface, "opening map dropped", &e))?;
        let program: &mut Xdp = ebpf
            .program_mut("baton_drop")
            .ok_or_else(|| missing(&iface, "program baton_drop"))?
            .try_into()
            .map_err(|e| aya_error(&iface, "opening program baton_drop", &e))?;
        program.load().map_err(|e| load_error(&iface, &e))?;
        let mode = attach_in_mode(program, ifindex, &iface, mode)?;
        Ok(DropBaseline {
            _ebpf: Mutex::new(ebpf),
            dropped,
            mode,
        })
    }

    /// Frames dropped so far, summed over CPUs.
    pub fn packets(&self) -> u64 {
        self.dropped
            .get(&0, 0)
            .map(|v| v.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
            .unwrap_or(0)
    }

    /// The attach mode in use: `"native"` or `"generic"`.
    pub fn mode(&self) -> &'static str {
        self.mode
    }
}

/// Attaches `program` to `ifindex` in `want` mode; returns the mode used.
fn attach_in_mode(
    program: &mut Xdp,
    ifindex: u32,
    iface: &str,
    want: XdpAttach,
) -> Result<&'static str, IoError> {
    let try_mode = |program: &mut Xdp, mode: XdpMode| {
        program
            .attach_to_if_index(ifindex, mode)
            .map(|_| ())
            .map_err(|e| (errno(&e), render(&e)))
    };
    let result = match want {
        XdpAttach::Native => try_mode(program, XdpMode::Driver).map(|()| "native"),
        XdpAttach::Generic => try_mode(program, XdpMode::Skb).map(|()| "generic"),
        XdpAttach::Auto => match try_mode(program, XdpMode::Driver) {
            Ok(()) => Ok("native"),
            // Generic mode would fail the same way.
            Err(e @ (Some(libc::EPERM | libc::EBUSY | libc::EEXIST), _)) => Err(e),
            Err(_) => try_mode(program, XdpMode::Skb).map(|()| "generic"),
        },
    };
    result.map_err(|(code, msg)| match code {
        Some(libc::EPERM) => IoError::Permission {
            what: format!(
                "attaching the XDP program to {iface} needs CAP_NET_ADMIN and CAP_BPF: {msg}"
            ),
        },
        Some(libc::EBUSY | libc::EEXIST) => match netlink::query(ifindex) {
            Ok(Some(att)) => busy(iface, &att),
            _ => IoError::Config(format!(
                "{iface} already has an XDP program attached ({msg}); \
                 remove it with `ip link set dev {iface} xdp off`"
            )),
        },
        Some(libc::EOPNOTSUPP) if want == XdpAttach::Native => IoError::Config(format!(
            "the driver of {iface} has no native XDP mode ({msg}); \
             set io.af_xdp.mode to generic (or auto)"
        )),
        _ => IoError::Config(format!(
            "attaching the XDP program to {iface} failed: {msg}"
        )),
    })
}

/// Makes sure nothing is attached to the interface before the switch
/// attaches: removes a stale `baton_fastpath` left by an earlier run through
/// the legacy netlink attach (the caller holds the interface lock, so no
/// live switch owns it); refuses anything else.
fn clear_interface(ifindex: u32, iface: &str, notes: &mut Vec<String>) -> Result<(), IoError> {
    let query = |ifindex| {
        netlink::query(ifindex).map_err(|err| match err.raw_os_error() {
            Some(libc::ENODEV) => IoError::NoSuchInterface(iface.to_string()),
            _ => IoError::Os {
                call: "querying the interface's XDP program (RTM_GETLINK)",
                iface: iface.to_string(),
                err,
            },
        })
    };
    let Some(att) = query(ifindex)? else {
        return Ok(());
    };
    if att.name.as_deref() != Some(PROGRAM_NAME) {
        return Err(busy(iface, &att));
    }
    match netlink::detach(ifindex, att.mode_flags()) {
        Ok(()) => {
            notes.push(format!(
                "removed a stale {PROGRAM_NAME} (program id {}) that an earlier run left attached to {iface}",
                att.prog_id
            ));
            Ok(())
        }
        // The program is held by a BPF link of a live process that does not
        // hold our lock (another mount namespace, another /run).
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(IoError::Config(format!(
            "{iface} already carries {PROGRAM_NAME} (program id {}) through a BPF link of another \
             process that does not hold {}: another switch runs on it",
            att.prog_id,
            InterfaceLock::path(iface)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "the interface lock".into())
        ))),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(IoError::Permission {
            what: format!("removing a stale {PROGRAM_NAME} from {iface} needs CAP_NET_ADMIN: {e}"),
        }),
        Err(err) => Err(IoError::Os {
            call: "removing a stale baton_fastpath (RTM_SETLINK)",
            iface: iface.to_string(),
            err,
        }),
    }
}

/// The error for an interface that carries another XDP program.
fn busy(iface: &str, att: &netlink::Attached) -> IoError {
    let name = att
        .name
        .as_deref()
        .map(|n| format!("{n:?}, "))
        .unwrap_or_default();
    IoError::Config(format!(
        "{iface} already has an XDP program attached ({name}id {}, {} mode); baton does not \
         replace it: remove it with `ip link set dev {iface} xdp off` (a program attached \
         through a BPF link goes away when the process holding it exits)",
        att.prog_id,
        att.mode_name()
    ))
}

fn missing(iface: &str, what: &str) -> IoError {
    IoError::Config(format!(
        "{iface}: the embedded XDP object has no {what} (build mismatch)"
    ))
}

/// The first OS error code in `e`'s chain of sources.
fn errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

/// `e` and its sources, each once.
fn render(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let t = err.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = err.source();
    }
    s
}

fn aya_error(iface: &str, what: &str, e: &(dyn std::error::Error + 'static)) -> IoError {
    if errno(e) == Some(libc::EPERM) {
        return IoError::Permission {
            what: format!(
                "{what} on {iface} needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN: {}",
                render(e)
            ),
        };
    }
    IoError::Config(format!("{iface}: {what} failed: {}", render(e)))
}

/// The error for a failed load (maps, BTF, the verifier).
fn load_error(iface: &str, e: &(dyn std::error::Error + 'static)) -> IoError {
    let msg = render(e);
    match errno(e) {
        Some(libc::EPERM) => IoError::Permission {
            what: format!(
                "loading the XDP program for {iface} needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (run as root): {msg}"
            ),
        },
        Some(libc::ENOSYS) => IoError::Config(format!(
            "the kernel has no BPF system call (CONFIG_BPF_SYSCALL), which the af_xdp backend needs: {msg}"
        )),
        Some(libc::EINVAL | libc::EOPNOTSUPP) if msg.contains("xsks") => IoError::Config(format!(
            "the kernel cannot create the XDP socket map: it lacks AF_XDP (CONFIG_XDP_SOCKETS), \
             which the af_xdp backend needs ({iface}): {msg}"
        )),
        _ => IoError::Config(format!("loading the XDP program for {iface} failed: {msg}")),
    }
}

/// A close-on-exec duplicate of `fd`.
fn dup(fd: std::os::fd::BorrowedFd<'_>, iface: &str) -> Result<OwnedFd, IoError> {
    fd.try_clone_to_owned().map_err(|err| IoError::Os {
        call: "dup of a BPF object fd",
        iface: iface.to_string(),
        err,
    })
}

/// The name of interface `ifindex` in the calling thread's namespace.
fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer has IF_NAMESIZE bytes, as if_indextoname needs.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// The exclusive claim of one switch on one interface: an exclusive `flock`
/// on a file named after the interface, holding the owner's pid. The kernel
/// drops the lock when the process dies; a clean drop also removes the file
/// (while still holding the lock: a competitor that opened it just before
/// finds, once it gets the lock, that the path no longer names its file, and
/// starts over).
struct InterfaceLock {
    file: File,
    path: PathBuf,
}

impl InterfaceLock {
    const DIR: &'static str = "/run/baton";

    /// `/run/baton/xdp-<netns inode>-<iface>.lock`, for the calling thread's
    /// network namespace (a thread may have entered another one than the
    /// process's first thread, hence `thread-self`).
    fn path(iface: &str) -> io::Result<PathBuf> {
        let ns = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
        Ok(PathBuf::from(Self::DIR).join(format!("xdp-{ns}-{iface}.lock")))
    }

    fn take(iface: &str) -> Result<InterfaceLock, IoError> {
        let os = |call: &'static str| {
            let iface = iface.to_string();
            move |err: io::Error| match err.kind() {
                io::ErrorKind::PermissionDenied => IoError::Permission {
                    what: format!("{call} for {iface}: {err} (the switch runs as root)"),
                },
                _ => IoError::Os { call, iface, err },
            }
        };
        let path = Self::path(iface).map_err(os("reading the network namespace"))?;
        std::fs::create_dir_all(Self::DIR).map_err(os("creating /run/baton"))?;
        for _ in 0..8 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(os("opening the interface lock"))?;
            // SAFETY: flock on a file we hold open.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(os("locking the interface")(err));
                }
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = match text.trim() {
                    "" => "unknown".to_string(),
                    p => p.to_string(),
                };
                return Err(IoError::Config(format!(
                    "interface {iface} is already served by baton (pid {pid}); it holds {}",
                    path.display()
                )));
            }
            // The holder before us may have removed the file on its way out.
            let same = match (std::fs::metadata(&path), file.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let write = |file: &mut File| -> io::Result<()> {
                file.set_len(0)?;
                file.seek(io::SeekFrom::Start(0))?;
                writeln!(file, "{}", std::process::id())
            };
            write(&mut file).map_err(os("writing the interface lock"))?;
            return Ok(InterfaceLock { file, path });
        }
        Err(IoError::Config(format!(
            "interface {iface}: could not take {} (it keeps being replaced)",
            path.display()
        )))
    }
}

impl Drop for InterfaceLock {
    fn drop(&mut self) {
        // Still locked here; the lock goes with the file descriptor.
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

/// Just enough rtnetlink to see and remove an interface's XDP program (what
/// `ip link` and libbpf's `bpf_xdp_query` do), which aya does not offer.
mod netlink {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const RTM_NEWLINK: u16 = 16;
    const RTM_GETLINK: u16 = 18;
    const RTM_SETLINK: u16 = 19;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const IFLA_XDP: u16 = 43;
    const IFLA_EXT_MASK: u16 = 29;
    const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
    const NLA_F_NESTED: u16 = 1 << 15;
    const NLA_TYPE_MASK: u16 = 0x3fff;
    const IFLA_XDP_FD: u16 = 1;
    const IFLA_XDP_ATTACHED: u16 = 2;
    const IFLA_XDP_FLAGS: u16 = 3;
    const IFLA_XDP_PROG_ID: u16 = 4;
    const XDP_ATTACHED_DRV: u8 = 1;
    const XDP_ATTACHED_SKB: u8 = 2;
    const XDP_ATTACHED_HW: u8 = 3;
    const XDP_FLAGS_SKB_MODE: u32 = 2;
    const XDP_FLAGS_DRV_MODE: u32 = 4;
    const XDP_FLAGS_HW_MODE: u32 = 8;

    /// The XDP program an interface carries.
    #[derive(Debug, Clone)]
    pub struct Attached {
        pub prog_id: u32,
        /// `XDP_ATTACHED_*`.
        pub mode: u8,
        /// The program's name, when the kernel still lists it.
        pub name: Option<String>,
    }

    impl Attached {
        pub fn mode_flags(&self) -> u32 {
            match self.mode {
                XDP_ATTACHED_SKB => XDP_FLAGS_SKB_MODE,
                XDP_ATTACHED_HW => XDP_FLAGS_HW_MODE,
                _ => XDP_FLAGS_DRV_MODE,
            }
        }

        pub fn mode_name(&self) -> &'static str {
            match self.mode {
                XDP_ATTACHED_DRV => "native",
                XDP_ATTACHED_SKB => "generic",
                XDP_ATTACHED_HW => "offloaded",
                _ => "multiple",
            }
        }
    }

    fn socket() -> io::Result<OwnedFd> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// A request: header, `struct ifinfomsg` for `ifindex`, then `attrs`.
    fn request(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
        let len = 16 + 16 + attrs.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes()); // seq
        m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
                                                  // struct ifinfomsg: family, pad, type, index, flags, change.
        m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(attrs);
        m
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len();
        let mut a = Vec::with_capacity((len + 3) & !3);
        a.extend_from_slice(&(len as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    /// Sends `req` and returns the first reply message (type, payload).
    fn exchange(req: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let sock = socket()?;
        // SAFETY: sockaddr_nl is plain old data.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address of the sizes passed.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: a buffer of the size passed.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let n = n as usize;
            if n < 16 {
                return Err(io::Error::other("short netlink reply"));
            }
            let len = (u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize).min(n);
            let kind = u16::from_ne_bytes([buf[4], buf[5]]);
            if len < 16 {
                return Err(io::Error::other("malformed netlink reply"));
            }
            if kind == NLMSG_ERROR {
                if len < 20 {
                    return Err(io::Error::other("short netlink error"));
                }
                let code = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
                if code == 0 {
                    return Ok((kind, Vec::new()));
                }
                return Err(io::Error::from_raw_os_error(-code));
            }
            return Ok((kind, buf[16..len].to_vec()));
        }
    }

    /// Walks the attributes in `b`, calling `f(type, payload)`.
    fn attrs(mut b: &[u8], mut f: impl FnMut(u16, &[u8])) {
        while b.len() >= 4 {
            let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
            let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
            if len < 4 || len > b.len() {
                break;
            }
            f(kind, &b[4..len]);
            let step = ((len + 3) & !3).min(b.len());
            b = &b[step..];
        }
    }

    /// The XDP program attached to `ifindex` in the calling thread's
    /// namespace, if any.
    pub fn query(ifindex: u32) -> io::Result<Option<Attached>> {
        let mask = attr(IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
        let req = request(RTM_GETLINK, NLM_F_REQUEST, ifindex, &mask);
        let (kind, payload) = exchange(&req)?;
        if kind != RTM_NEWLINK || payload.len() < 16 {
            return Err(io::Error::other("unexpected reply to RTM_GETLINK"));
        }
        let mut attached = 0u8;
        let mut prog_id = 0u32;
        attrs(&payload[16..], |kind, p| {
            if kind == IFLA_XDP {
                attrs(p, |k, v| match k {
                    IFLA_XDP_ATTACHED if !v.is_empty() => attached = v[0],
                    IFLA_XDP_PROG_ID if v.len() >= 4 => {
                        prog_id = u32::from_ne_bytes(v[..4].try_into().unwrap())
                    }
                    _ => {}
                });
            }
        });
        if attached == 0 {
            return Ok(None);
        }
        let name = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == prog_id)
            .and_then(|p| p.name_as_str().map(str::to_string));
        Ok(Some(Attached {
            prog_id,
            mode: attached,
            name,
        }))
    }

    /// Removes the program attached in mode `flags` the legacy way (fails
    /// with EBUSY when a BPF link holds it).
    pub fn detach(ifindex: u32, flags: u32) -> io::Result<()> {
        let mut xdp = attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        xdp.extend(attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes()));
        let nested = attr(IFLA_XDP | NLA_F_NESTED, &xdp);
        let req = request(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, ifindex, &nested);
        exchange(&req).map(|_| ())
    }
}
