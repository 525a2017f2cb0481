//! `libbaton_handover.so`: lets an unmodified web server (nginx, lighttpd,
//! Apache httpd, …) accept connections that `baton-agent` adopted with
//! `TCP_REPAIR`, so the server itself reads the request from the client's
//! own socket, writes the response into it, and sees the client's address.
//! No relay, no second TCP connection, no copies.
//!
//! Start the server with
//! `LD_PRELOAD=/usr/lib/baton/libbaton_handover.so BATON_HANDOVER_LISTEN=198.18.0.10:80`.
//! When the server calls `listen` on a socket bound to a listed address, the
//! library puts an `AF_UNIX` datagram socket in the listener's place (same
//! descriptor number, same blocking and close-on-exec flags) and tells the
//! agent (HELLO). From then on the agent sends each adopted connection as a
//! datagram with the descriptor attached; the "listener" is readable in
//! epoll/poll/select exactly while one waits, and `accept`/`accept4` return the
//! descriptor and the client's address, after telling the agent (TAKEN), which
//! only then acknowledges the handoff to the switch. This is the approach of
//! OpenOnload and libvma: interpose the socket calls, leave the server as is.
//!
//! `bind` to a listed address is only recorded (the converted listener never
//! needs the TCP port, and adopted connections hold it: a real bind could
//! fail with `EADDRINUSE` when the server restarts). Every other descriptor
//! and call goes straight to libc. Calls on a converted
//! listener that only make sense for TCP (`setsockopt` at TCP level,
//! `getsockname`, `SO_TYPE`) answer as the TCP listener would have. Because
//! the datagram socket is shared by every process that inherits the listener
//! (nginx's workers, after a `reload` too), the server's own process model
//! balances the load, and a listener survives the agent restarting: the new
//! agent finds it by its abstract name and asks it to say HELLO again.
//!
//! The message layout is `handoff_proto::handover` (shared with the agent).
//! Nothing here may panic or allocate on the accept path.

#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_int, c_void};
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use handoff_proto::handover::{
    ListenSpec, Msg, DEFAULT_SOCKET, ENV_LISTEN, ENV_SOCKET, HANDOVER_VERSION, LISTENER_PREFIX,
    MSG_LEN,
};
use libc::{sockaddr, sockaddr_storage, sockaddr_un, socklen_t};

/// Descriptors below this are tracked in a flat table (one atomic load per
/// `accept`/`close`); a converted listener above it is refused (left as TCP).
const MAX_FD: usize = 1 << 16;

/// The protocol version of this library, checked by the agent at start-up.
#[no_mangle]
pub extern "C" fn baton_handover_version() -> u32 {
    u32::from(HANDOVER_VERSION)
}

// ---------------------------------------------------------------------------
// The real libc functions, found once with dlsym(RTLD_NEXT).
// ---------------------------------------------------------------------------

struct Real(AtomicUsize, &'static [u8]);

impl Real {
    const fn new(name: &'static [u8]) -> Real {
        Real(AtomicUsize::new(0), name)
    }
    /// The next definition of the symbol after this library (libc's).
    fn get(&self) -> usize {
        let p = self.0.load(Ordering::Relaxed);
        if p != 0 {
            return p;
        }
        // SAFETY: the name is NUL-terminated; RTLD_NEXT is valid in a shared object.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.1.as_ptr().cast()) } as usize;
        if p == 0 {
            // libc without the symbol cannot be: abort rather than jump to 0.
            // SAFETY: abort never returns.
            unsafe { libc::abort() }
        }
        self.0.store(p, Ordering::Relaxed);
        p
    }
}

static REAL_BIND: Real = Real::new(b"bind\0");
static REAL_LISTEN: Real = Real::new(b"listen\0");
static REAL_ACCEPT: Real = Real::new(b"accept\0");
static REAL_ACCEPT4: Real = Real::new(b"accept4\0");
static REAL_CLOSE: Real = Real::new(b"close\0");
static REAL_GETSOCKNAME: Real = Real::new(b"getsockname\0");
static REAL_GETSOCKOPT: Real = Real::new(b"getsockopt\0");
static REAL_SETSOCKOPT: Real = Real::new(b"setsockopt\0");

type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type SockNameFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type GetOptFn = unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int;
type SetOptFn = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;

macro_rules! call_real {
    ($real:ident as $ty:ty) => {{
        let p = $real.get();
        // SAFETY: the pointer is libc's definition of this very symbol.
        #[allow(unused_unsafe)]
        let f = unsafe { std::mem::transmute::<usize, $ty>(p) };
        f
    }};
}

fn real_close(fd: c_int) -> c_int {
    // SAFETY: plain close(2) through libc.
    unsafe { call_real!(REAL_CLOSE as CloseFn)(fd) }
}

// ---------------------------------------------------------------------------
// Configuration (environment, read once) and the converted listeners.
// ---------------------------------------------------------------------------

struct Config {
    listen: Vec<ListenSpec>,
    agent: sockaddr_un,
    agent_len: socklen_t,
    agent_path: String,
}

fn config() -> Option<&'static Config> {
    static CFG: OnceLock<Option<Config>> = OnceLock::new();
    CFG.get_or_init(|| {
        let spec = std::env::var(ENV_LISTEN).ok()?;
        let listen = match ListenSpec::parse_list(&spec) {
            Ok(l) if !l.is_empty() => l,
            Ok(_) => return None,
            Err(e) => {
                warn(&format!("{ENV_LISTEN}: {e}; no listener is converted"));
                return None;
            }
        };
        let path = std::env::var(ENV_SOCKET).unwrap_or_else(|_| DEFAULT_SOCKET.into());
        let Some((agent, agent_len)) = unix_addr(path.as_bytes(), false) else {
            warn(&format!(
                "{ENV_SOCKET}: `{path}` is too long for a unix socket"
            ));
            return None;
        };
        Some(Config {
            listen,
            agent,
            agent_len,
            agent_path: path,
        })
    })
    .as_ref()
}

fn warn(msg: &str) {
    eprintln!("baton-handover[{}]: {msg}", std::process::id());
}

/// What the library did to a descriptor: nothing, a listed address bound
/// virtually (`bind`), or a converted listener (`listen`).
static STATE: [AtomicU8; MAX_FD] = [const { AtomicU8::new(NONE) }; MAX_FD];
const NONE: u8 = 0;
const BOUND: u8 = 1;
const CONVERTED: u8 = 2;
/// The TCP address each bound or converted descriptor stands for (for
/// `getsockname` and HELLO). Touched only on `bind`/`listen`/`close` of
/// such descriptors and on PING.
static LISTENERS: Mutex<Vec<(c_int, SocketAddr)>> = Mutex::new(Vec::new());
/// Makes abstract names unique within a process.
static SERIAL: AtomicU32 = AtomicU32::new(0);

fn state(fd: c_int) -> u8 {
    usize::try_from(fd)
        .ok()
        .and_then(|i| STATE.get(i))
        .map_or(NONE, |f| f.load(Ordering::Acquire))
}

fn is_converted(fd: c_int) -> bool {
    state(fd) == CONVERTED
}

/// Sets `fd`'s state; `addr` is what it stands for (None: forget it).
fn set_state(fd: c_int, st: u8, addr: Option<SocketAddr>) {
    if let Some(f) = usize::try_from(fd).ok().and_then(|i| STATE.get(i)) {
        f.store(st, Ordering::Release);
    }
    let mut l = LISTENERS.lock().unwrap_or_else(|p| p.into_inner());
    l.retain(|(f, _)| *f != fd);
    if let Some(a) = addr {
        l.push((fd, a));
    }
}

fn listener_addr(fd: c_int) -> Option<SocketAddr> {
    let l = LISTENERS.lock().unwrap_or_else(|p| p.into_inner());
    l.iter().find(|(f, _)| *f == fd).map(|(_, a)| *a)
}

// ---------------------------------------------------------------------------
// Address helpers.
// ---------------------------------------------------------------------------

/// A unix address for `name` (abstract: a leading NUL is added).
fn unix_addr(name: &[u8], abstract_name: bool) -> Option<(sockaddr_un, socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is valid.
    let mut a: sockaddr_un = unsafe { zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let off = usize::from(abstract_name);
    if name.len() + off >= a.sun_path.len() {
        return None;
    }
    for (i, b) in name.iter().enumerate() {
        a.sun_path[i + off] = *b as libc::c_char;
    }
    let base = std::mem::offset_of!(sockaddr_un, sun_path);
    let len = if abstract_name {
        base + 1 + name.len()
    } else {
        base + name.len() + 1
    };
    Some((a, len as socklen_t))
}

fn to_socket_addr(ss: &sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    match c_int::from(ss.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` the way getsockname(2) would: truncated to `*len`, `*len`
/// set to the full size.
unsafe fn write_sockaddr(addr: SocketAddr, out: *mut sockaddr, len: *mut socklen_t) {
    // SAFETY: zeroed storage is valid; we fill the family's fields.
    let mut ss: sockaddr_storage = unsafe { zeroed() };
    let n = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: storage is large enough and suitably aligned for sockaddr_in.
            let s = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let s = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_addr.s6_addr = a.ip().octets();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    if out.is_null() || len.is_null() {
        return;
    }
    // SAFETY: the caller gave `*len` writable bytes at `out`.
    unsafe {
        let room = (*len as usize).min(n);
        std::ptr::copy_nonoverlapping(&ss as *const _ as *const u8, out.cast::<u8>(), room);
        *len = n as socklen_t;
    }
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Sends one message to the agent, never blocking.
fn send_agent(cfg: &Config, sock: c_int, msg: Msg) -> bool {
    let b = msg.encode();
    // SAFETY: valid buffer and address of the lengths given.
    let n = unsafe {
        libc::sendto(
            sock,
            b.as_ptr().cast(),
            MSG_LEN,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            (&cfg.agent as *const sockaddr_un).cast(),
            cfg.agent_len,
        )
    };
    n == MSG_LEN as isize
}

fn hello(cfg: &Config, fd: c_int) -> bool {
    let Some(addr) = listener_addr(fd) else {
        return false;
    };
    let pid = std::process::id();
    send_agent(
        cfg,
        fd,
        Msg::Hello {
            pid,
            listener: addr,
        },
    )
}

// ---------------------------------------------------------------------------
// bind: a listed address is bound virtually.
// ---------------------------------------------------------------------------

/// Interposed `bind(2)`. A stream socket bound to a listed address is only
/// recorded, not bound: it becomes a converted listener at `listen` and never
/// needs the TCP port. Binding it for real could fail: on a handover backend
/// the adopted connections hold VIP:port (after `TCP_REPAIR` is switched off
/// they count as plain bound sockets, which even `SO_REUSEADDR` does not
/// pass), so a server restarted while they live would get `EADDRINUSE`.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if let Some(a) = listed(fd, addr, len) {
        set_state(fd, BOUND, Some(a));
        return 0;
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { call_real!(REAL_BIND as BindFn)(fd, addr, len) }
}

/// Whether `fd` is a stream socket (asked through libc's own getsockopt).
fn is_stream(fd: c_int) -> bool {
    let mut ty: c_int = 0;
    let mut tl = size_of::<c_int>() as socklen_t;
    // SAFETY: reads an int option into a live int.
    let rc = unsafe {
        call_real!(REAL_GETSOCKOPT as GetOptFn)(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut c_int).cast(),
            &mut tl,
        )
    };
    rc == 0 && ty == libc::SOCK_STREAM
}

/// The address `addr` when it is listed and `fd` is a TCP socket.
fn listed(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    let cfg = config()?;
    if addr.is_null()
        || len as usize > size_of::<sockaddr_storage>()
        || fd < 0
        || fd as usize >= MAX_FD
    {
        return None;
    }
    // SAFETY: zeroed storage; we copy the `len` bytes the caller gave.
    let mut ss: sockaddr_storage = unsafe { zeroed() };
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.cast::<u8>(),
            (&mut ss as *mut sockaddr_storage).cast::<u8>(),
            len as usize,
        )
    };
    let a = to_socket_addr(&ss, len)?;
    if !cfg.listen.iter().any(|s| s.matches(a)) || a.port() == 0 {
        return None;
    }
    is_stream(fd).then_some(a)
}

// ---------------------------------------------------------------------------
// listen: convert a listed TCP listener.
// ---------------------------------------------------------------------------

/// Interposed `listen(2)`.
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let real = call_real!(REAL_LISTEN as ListenFn);
    if is_converted(fd) {
        // nginx calls listen() again to apply a new backlog: already done.
        return 0;
    }
    let Some(cfg) = config() else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(fd, backlog) };
    };
    let known = (state(fd) == BOUND).then(|| listener_addr(fd)).flatten();
    match convert(cfg, fd, known) {
        Some(true) => 0,
        // SAFETY: forwarding the caller's arguments.
        _ => unsafe { real(fd, backlog) },
    }
}

/// Puts a datagram socket in place of TCP listener `fd` when its address is
/// listed (`known`: bound virtually to it; else its real address is asked).
/// `Some(true)`: converted; `None`/`Some(false)`: leave it alone.
fn convert(cfg: &Config, fd: c_int, known: Option<SocketAddr>) -> Option<bool> {
    if fd < 0 || fd as usize >= MAX_FD {
        return None;
    }
    if let Some(addr) = known {
        return install(cfg, fd, addr);
    }
    // SAFETY: zeroed storage is a valid out-buffer of the given length.
    let mut ss: sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<sockaddr_storage>() as socklen_t;
    // SAFETY: real getsockname into our buffer.
    let rc = unsafe {
        call_real!(REAL_GETSOCKNAME as SockNameFn)(
            fd,
            (&mut ss as *mut sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    let addr = to_socket_addr(&ss, len)?;
    if !cfg.listen.iter().any(|s| s.matches(addr)) {
        return Some(false);
    }
    if !is_stream(fd) {
        return None;
    }
    install(cfg, fd, addr)
}

/// Whether `fd` is an IPv6 socket that would also accept IPv4 connections
/// (`IPV6_V6ONLY` off, the kernel's default unless `net.ipv6.bindv6only`).
fn dual_stack(fd: c_int) -> bool {
    let mut v: c_int = 1;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: reads an int option into a live int, through libc.
    let rc = unsafe {
        call_real!(REAL_GETSOCKOPT as GetOptFn)(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&mut v as *mut c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && v == 0
}

/// Puts the datagram socket in place of `fd` (same number and flags) and
/// announces it; `addr` is the TCP address it stands for.
///
/// IPv6 listeners are converted like IPv4 ones: on the VIP
/// (`[2001:2::10]:80`) or on the wildcard (`[::]:80`, which the agent gives
/// the IPv6 VIPs' connections of that port). A dual-stack wildcard listener
/// is converted too but still gets IPv6 connections only (the agent hands
/// an IPv4 connection over as an `AF_INET` socket, to an IPv4 listener):
/// the server is told so once.
fn install(cfg: &Config, fd: c_int, addr: SocketAddr) -> Option<bool> {
    if matches!(addr, SocketAddr::V6(a) if a.ip().is_unspecified()) && dual_stack(fd) {
        warn(&format!(
            "{addr} is dual-stack (IPV6_V6ONLY off): connections to IPv4 VIPs are not handed \
             to it, only IPv6 ones; listen on the IPv4 VIP or 0.0.0.0:{} as well (nginx: \
             `listen {};` beside `listen [::]:{} ipv6only=on;`)",
            addr.port(),
            addr.port(),
            addr.port()
        ));
    }
    // SAFETY: plain fcntl/socket/bind/dup3 calls on descriptors we own or
    // were given; every failure is checked.
    unsafe {
        let status = libc::fcntl(fd, libc::F_GETFL);
        let fdflags = libc::fcntl(fd, libc::F_GETFD);
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            warn(&format!(
                "socket(AF_UNIX): errno {}; {addr} stays TCP",
                errno()
            ));
            return None;
        }
        let name = format!(
            "{LISTENER_PREFIX}{}.{}.{}",
            std::process::id(),
            fd,
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let ok = match unix_addr(name.as_bytes(), true) {
            Some((ua, ul)) => libc::bind(s, (&ua as *const sockaddr_un).cast(), ul) == 0,
            None => false,
        };
        if !ok {
            warn(&format!(
                "bind @{name}: errno {}; {addr} stays TCP",
                errno()
            ));
            real_close(s);
            return None;
        }
        if status >= 0 && status & libc::O_NONBLOCK != 0 {
            libc::fcntl(s, libc::F_SETFL, libc::O_NONBLOCK);
        }
        let cloexec = if fdflags >= 0 && fdflags & libc::FD_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        if libc::dup3(s, fd, cloexec) < 0 {
            warn(&format!("dup3: errno {}; {addr} stays TCP", errno()));
            real_close(s);
            return None;
        }
        real_close(s);
    }
    set_state(fd, CONVERTED, Some(addr));
    if !hello(cfg, fd) {
        warn(&format!(
            "{addr}: agent socket {} not reachable (errno {}); it will find this listener when it starts",
            cfg.agent_path,
            errno()
        ));
    }
    Some(true)
}

// ---------------------------------------------------------------------------
// accept: take one adopted connection.
// ---------------------------------------------------------------------------

/// Interposed `accept(2)`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if is_converted(fd) {
        if let Some(cfg) = config() {
            // SAFETY: the caller's buffers, passed on unchanged.
            return unsafe { take(cfg, fd, addr, len, 0) };
        }
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { call_real!(REAL_ACCEPT as AcceptFn)(fd, addr, len) }
}

/// Interposed `accept4(2)`.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    if is_converted(fd) {
        if let Some(cfg) = config() {
            // SAFETY: the caller's buffers, passed on unchanged.
            return unsafe { take(cfg, fd, addr, len, flags) };
        }
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { call_real!(REAL_ACCEPT4 as Accept4Fn)(fd, addr, len, flags) }
}

/// Control-message room for the one descriptor a CONN carries (and a few
/// more, which are closed: a message never legitimately carries them).
const CMSG_ROOM: usize = 64;

/// Receives datagrams until one is a CONN from the agent; returns its
/// descriptor. Errors (EAGAIN on a non-blocking listener, EINTR) are returned
/// as `accept` would.
unsafe fn take(
    cfg: &Config,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    loop {
        let mut buf = [0u8; MSG_LEN + 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cmsg = [0u64; CMSG_ROOM / 8];
        // SAFETY: zeroed sockaddr_un / msghdr are valid.
        let mut from: sockaddr_un = unsafe { zeroed() };
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut sockaddr_un).cast();
        msg.msg_namelen = size_of::<sockaddr_un>() as socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_ROOM as _;
        let rflags = if flags & libc::SOCK_CLOEXEC != 0 {
            libc::MSG_CMSG_CLOEXEC
        } else {
            0
        };
        // SAFETY: msg points at live buffers of the lengths given.
        let n = unsafe { libc::recvmsg(fd, &mut msg, rflags) };
        if n < 0 {
            let e = errno();
            if matches!(e, libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EINVAL) {
                // Not our socket any more (the number was reused without a
                // close we saw): forget it and behave like libc.
                set_state(fd, NONE, None);
                set_errno(0);
                // SAFETY: forwarding the caller's arguments.
                return unsafe { call_real!(REAL_ACCEPT4 as Accept4Fn)(fd, addr, len, flags) };
            }
            set_errno(e);
            return -1;
        }
        let mut got = [-1 as c_int; CMSG_ROOM / 4];
        let mut ngot = 0;
        // SAFETY: walking the control buffer the kernel filled, with the
        // kernel's own lengths; every descriptor found is ours to use or close.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c) as *const c_int;
                    let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                    for i in 0..count {
                        if ngot < got.len() {
                            got[ngot] = std::ptr::read_unaligned(data.add(i));
                            ngot += 1;
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let from_agent =
            msg.msg_namelen == cfg.agent_len && from.sun_path[..] == cfg.agent.sun_path[..];
        let decoded = if from_agent {
            Msg::decode(&buf[..n as usize]).ok()
        } else {
            None
        };
        match decoded {
            Some(Msg::Conn { token }) if ngot == 1 => {
                let c = got[0];
                if flags & libc::SOCK_NONBLOCK != 0 {
                    // SAFETY: fcntl on the descriptor we just received.
                    unsafe {
                        let fl = libc::fcntl(c, libc::F_GETFL);
                        libc::fcntl(c, libc::F_SETFL, fl.max(0) | libc::O_NONBLOCK);
                    }
                }
                let taken = Msg::Taken {
                    token,
                    pid: std::process::id(),
                    fd: c,
                };
                // Not delivered (agent gone): the agent gives up on the token
                // and silences the socket; the server then sees it fail.
                send_agent(cfg, fd, taken);
                if !addr.is_null() && !len.is_null() {
                    // SAFETY: the caller's address buffer of `*len` bytes.
                    unsafe { libc::getpeername(c, addr, len) };
                }
                return c;
            }
            Some(Msg::Ping) => {
                hello(cfg, fd);
            }
            _ => {}
        }
        // Anything else carries nothing the server may see: close what came.
        for &g in &got[..ngot] {
            real_close(g);
        }
    }
}

// ---------------------------------------------------------------------------
// Calls that must keep answering as for the TCP listener.
// ---------------------------------------------------------------------------

/// Interposed `close(2)`: forgets a converted listener.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if state(fd) != NONE {
        set_state(fd, NONE, None);
    }
    real_close(fd)
}

/// Interposed `getsockname(2)`: a converted listener reports its TCP address.
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if state(fd) != NONE {
        if let Some(a) = listener_addr(fd) {
            // SAFETY: the caller's buffer of `*len` bytes.
            unsafe { write_sockaddr(a, addr, len) };
            return 0;
        }
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { call_real!(REAL_GETSOCKNAME as SockNameFn)(fd, addr, len) }
}

/// Interposed `setsockopt(2)`: TCP-level options on a converted listener
/// (TCP_DEFER_ACCEPT, TCP_FASTOPEN, …) are accepted and have no effect.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    if level != libc::SOL_SOCKET && is_converted(fd) {
        return 0;
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { call_real!(REAL_SETSOCKOPT as SetOptFn)(fd, level, name, val, len) }
}

/// Interposed `getsockopt(2)`: a converted listener answers `SO_TYPE`,
/// `SO_DOMAIN`, `SO_PROTOCOL` and `SO_ACCEPTCONN` as a TCP listener, and
/// TCP-level queries with 0.
#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    if is_converted(fd) && !val.is_null() && !len.is_null() {
        let fake = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_TYPE) => Some(libc::SOCK_STREAM),
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => Some(match listener_addr(fd) {
                Some(SocketAddr::V6(_)) => libc::AF_INET6,
                _ => libc::AF_INET,
            }),
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => Some(libc::IPPROTO_TCP),
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => Some(1),
            (libc::SOL_SOCKET, _) => None,
            _ => Some(0),
        };
        if let Some(v) = fake {
            // SAFETY: the caller gave `*len` writable bytes at `val`.
            unsafe {
                if (*len as usize) >= size_of::<c_int>() {
                    std::ptr::write_unaligned(val.cast::<c_int>(), v);
                    *len = size_of::<c_int>() as socklen_t;
                    return 0;
                }
            }
            set_errno(libc::EINVAL);
            return -1;
        }
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { call_real!(REAL_GETSOCKOPT as GetOptFn)(fd, level, name, val, len) }
}
