//! The fast path's flow map (`flows` in `bpf/fastpath.bpf.c`) as the engine's
//! [`FlowOffload`].
//!
//! Each worker gets its own [`FlowTable`] from [`XdpProgram::flows`]: a
//! duplicate of the map's file descriptor, so handles are independent and
//! usable from any thread. A handle may outlive the program: the map then
//! lives on, unused, until the last handle closes. Calls are plain `bpf(2)`
//! map operations, a few per connection (insert, read back, look up and
//! delete), never per packet.
//!
//! The engine owns every flow's lifetime: the map is a plain hash, not an LRU,
//! so nothing disappears behind the engine's back, and a full map is refused
//! visibly ([`OffloadError::Full`]) instead of silently evicting another
//! worker's flow. The number of flows is kept beside the map in a counter all
//! handles share (inserts of new keys minus removals of present ones), so
//! [`XdpProgram::stats`] reports it exactly without walking the map.
//!
//! [`XdpProgram::flows`]: crate::io::af_xdp::program::XdpProgram::flows
//! [`XdpProgram::stats`]: crate::io::af_xdp::program::XdpProgram::stats

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::offload::{FlowOffload, OffloadError, OffloadFlow, OffloadKey, OffloadSeen, Removal};

/// `struct flow_key` of the program: every field in network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub client: u32,
    pub vip: u32,
    pub client_port: u16,
    pub port: u16,
}

/// `struct flow_val` of the program (40 bytes, no hidden padding).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowVal {
    pub mac: [u8; 6],
    pub wshift: u8,
    /// Set by the program when a SYN reused the 4-tuple.
    pub retired: u8,
    /// Host order.
    pub rcv_nxt: u32,
    /// The owning connection's tag ([`crate::offload::owner_tag`]).
    pub owner: u32,
    /// `CLOCK_MONOTONIC` nanoseconds (the program's `bpf_ktime_get_ns`).
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(std::mem::size_of::<FlowKey>() == 12);
const _: () = assert!(std::mem::size_of::<FlowVal>() == 40);

impl FlowKey {
    fn of(key: &OffloadKey) -> FlowKey {
        FlowKey {
            client: u32::from_ne_bytes(key.client),
            vip: u32::from_ne_bytes(key.vip),
            client_port: key.client_port.to_be(),
            port: key.port.to_be(),
        }
    }
}

/// One worker's handle on the XDP program's flow map.
pub struct FlowTable {
    fd: OwnedFd,
    count: Arc<AtomicU64>,
}

impl FlowTable {
    /// A handle on the map `fd` (owned: a duplicate made for this handle),
    /// sharing the flow count `count` with the program and other handles.
    pub(crate) fn new(fd: OwnedFd, count: Arc<AtomicU64>) -> FlowTable {
        FlowTable { fd, count }
    }

    /// Flows in the map now, as counted by all handles.
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// True when no flow is offloaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map's raw value for `key` (what the program last wrote).
    pub(crate) fn lookup(&self, key: &OffloadKey) -> io::Result<Option<FlowVal>> {
        let k = FlowKey::of(key);
        let mut v = FlowVal::default();
        match sys::map_lookup(&self.fd, &k, &mut v) {
            Ok(()) => Ok(Some(v)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn full_or_os(e: io::Error) -> OffloadError {
        match e.raw_os_error() {
            // A hash map at max_entries refuses new keys with E2BIG; ENOMEM
            // when the kernel cannot allocate an element.
            Some(libc::E2BIG) | Some(libc::ENOMEM) => OffloadError::Full,
            _ => OffloadError::Os(e),
        }
    }
}

impl FlowOffload for FlowTable {
    fn insert(&mut self, key: &OffloadKey, flow: &OffloadFlow) -> Result<(), OffloadError> {
        let k = FlowKey::of(key);
        let v = FlowVal {
            mac: flow.backend_mac,
            wshift: flow.wshift,
            rcv_nxt: flow.rcv_nxt,
            owner: flow.owner,
            last_seen_ns: monotonic_ns(),
            ..FlowVal::default()
        };
        // A new key is counted; an existing one is updated in place. The
        // retry covers a removal by another handle between the two calls.
        for _ in 0..2 {
            match sys::map_update(&self.fd, &k, &v, sys::BPF_NOEXIST) {
                Ok(()) => {
                    self.count.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(Self::full_or_os(e)),
            }
            match sys::map_update(&self.fd, &k, &v, sys::BPF_EXIST) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(Self::full_or_os(e)),
            }
        }
        Err(OffloadError::Os(io::Error::other(
            "the flow was inserted and removed concurrently",
        )))
    }

    fn remove(&mut self, key: &OffloadKey, owner: u32) -> Removal {
        // Look, then delete: another worker replaces a key only after a SYN
        // retired it, and its owner removes it only when its own entry goes,
        // so the two calls racing a replacement needs a new connection on
        // the 4-tuple to reach FORWARDING in the microseconds between them.
        // Should it happen, the new flow loses only the fast path.
        match self.lookup(key) {
            Ok(Some(v)) if v.owner != owner => return Removal::TakenOver,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Removal::Failed,
        }
        let k = FlowKey::of(key);
        if sys::map_delete(&self.fd, &k).is_ok() {
            // Never below zero, even if a count was lost to a kernel error.
            let _ = self
                .count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
            Removal::Removed
        } else {
            Removal::Failed
        }
    }

    fn read(&mut self, key: &OffloadKey, owner: u32) -> Option<OffloadSeen> {
        let v = self.lookup(key).ok()??;
        if v.owner != owner {
            return None;
        }
        Some(OffloadSeen {
            idle: Duration::from_nanos(monotonic_ns().saturating_sub(v.last_seen_ns)),
            rcv_nxt: v.rcv_nxt,
            packets: v.packets,
            retired: v.retired != 0,
        })
    }
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("fd", &self.fd.as_raw_fd())
            .field("flows", &self.len())
            .finish()
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the program's
/// `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The few `bpf(2)` commands used directly (aya covers loading and attaching;
/// these are the per-connection map operations, with the exact errno the
/// callers decide on, and the test run).
pub(crate) mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};

    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
    const BPF_PROG_TEST_RUN: libc::c_long = 10;

    pub const BPF_NOEXIST: u64 = 1;
    pub const BPF_EXIST: u64 = 2;

    /// `union bpf_attr` for the map element commands.
    #[repr(C)]
    #[derive(Default)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }

    /// `union bpf_attr` for `BPF_PROG_TEST_RUN`.
    #[repr(C)]
    #[derive(Default)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }

    fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
        // SAFETY: `attr` is a properly laid out prefix of `union bpf_attr`
        // whose pointers (if any) the caller made valid for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *mut A as *mut libc::c_void,
                std::mem::size_of::<A>() as libc::c_uint,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    pub fn map_lookup<K, V>(fd: &OwnedFd, key: &K, value: &mut V) -> io::Result<()> {
        let mut attr = MapElemAttr {
            map_fd: fd.as_raw_fd() as u32,
            key: key as *const K as u64,
            value: value as *mut V as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(|_| ())
    }

    pub fn map_update<K, V>(fd: &OwnedFd, key: &K, value: &V, flags: u64) -> io::Result<()> {
        let mut attr = MapElemAttr {
            map_fd: fd.as_raw_fd() as u32,
            key: key as *const K as u64,
            value: value as *const V as u64,
            flags,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }

    pub fn map_delete<K>(fd: &OwnedFd, key: &K) -> io::Result<()> {
        let mut attr = MapElemAttr {
            map_fd: fd.as_raw_fd() as u32,
            key: key as *const K as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(|_| ())
    }

    /// Runs the XDP program `prog` once on `frame`; returns its action and
    /// the frame as it left it.
    pub fn test_run(prog: &OwnedFd, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
        // XDP may grow the frame at the tail; leave room.
        let mut out = vec![0u8; frame.len() + 4096];
        let mut attr = TestRunAttr {
            prog_fd: prog.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        out.truncate(attr.data_size_out as usize);
        Ok((attr.retval, out))
    }
}
