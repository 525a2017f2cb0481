//! Start-up: the THOP socket, the keyring, the services, the handover socket
//! and the core.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff_proto::Keyring;
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Waker};

use super::{wall_ms, Agent, StartError, Target, DESTROY, HANDOVER, RX_BUF, UDP, WAKER};
use crate::config::{Config, Mode};
use crate::handoff::{Core, LogLimiter};
use crate::handover::Handover;
use crate::listener::{LoopTx, Shared};
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::replay_state::ReplayState;
use crate::sockdiag::DestroyWatch;

/// Receive buffer of the THOP socket: a burst of CREATE fragments must not
/// overflow it while the loop is busy adopting.
const UDP_RCVBUF: libc::c_int = 4 << 20;

/// The keyring of the configuration (key files are read here), with the
/// send key chosen and keys bound to their switches.
pub fn keyring(cfg: &Config) -> Result<Keyring, StartError> {
    let mut keys: Option<Keyring> = None;
    for key in cfg
        .thop_keys()
        .map_err(|e| StartError::Key(e.to_string()))?
    {
        match keys.as_mut() {
            None => keys = Some(Keyring::new(key)),
            Some(ring) => ring.insert(key),
        }
    }
    let mut keys = keys.ok_or_else(|| StartError::Key("no key".into()))?;
    if let Some(id) = cfg.thop.send_key {
        keys.set_current(id);
    }
    for (id, nodes) in cfg.key_bindings() {
        keys.bind(id, nodes);
    }
    Ok(keys)
}

impl Agent {
    /// Binds the THOP socket and prepares every service. Start-up checks
    /// (capabilities, VIP on `lo`) are [`crate::checks`]' job, run before.
    pub fn new(cfg: Config, metrics: Arc<Metrics>) -> Result<Agent, StartError> {
        let poll = Poll::new()?;
        let addr = cfg.thop.listen;
        let mut udp = UdpSocket::bind(addr).map_err(|err| StartError::Bind { addr, err })?;
        grow_rcvbuf(&udp, UDP_RCVBUF);
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = channel();
        let tx = LoopTx { tx, waker };
        let keys = keyring(&cfg)?;

        let mut services = HashMap::new();
        for s in &cfg.services {
            let t = match s.mode {
                Mode::Relay => Target::Relay,
                Mode::Handover => Target::Handover,
                Mode::Listener => {
                    Target::Listener(Shared::new(s.vip, cfg.limits.backlog as usize)?)
                }
            };
            services.insert(s.vip, t);
        }
        let (handover, destroy) = if cfg.services.iter().any(|s| s.mode == Mode::Handover) {
            let (ho, dw) = handover(&cfg, &poll)?;
            (Some(ho), Some(dw))
        } else {
            (None, None)
        };
        let mut core = Core::new(&cfg, keys, Arc::clone(&metrics), Instant::now(), wall_ms());
        // After the bind: holding the address, this process is the only
        // agent that can want this state file.
        let state_path = cfg.replay_state_path();
        let state = ReplayState::open(&state_path)
            .map_err(|e| StartError::Io(io::Error::other(format!("thop.replay_state: {e}"))))?;
        let resumed = core.keep_replay_state(state);
        tracing::debug!(path = %state_path.display(), resumed, "THOP replay state");
        Ok(Agent {
            core,
            relay: Relay::new(Duration::from_secs(cfg.limits.idle_timeout_s.max(1))),
            services,
            handover,
            destroy,
            held: HashMap::new(),
            offered: HashMap::new(),
            by_cookie: HashMap::new(),
            rx_more: false,
            rejects: LogLimiter::default(),
            last_unserved_warn: None,
            stop_now: false,
            stopped: false,
            buf: vec![0; RX_BUF],
            cfg,
            metrics,
            poll,
            udp,
            rx,
            tx,
        })
    }
}

/// The handover socket and the socket-destroy notifications, registered.
fn handover(cfg: &Config, poll: &Poll) -> Result<(Handover, DestroyWatch), StartError> {
    let h = &cfg.handover;
    let group = match &h.group {
        None => None,
        Some(g) => Some(group_id(g).ok_or_else(|| {
            StartError::Io(io::Error::other(format!("handover.group: no group {g}")))
        })?),
    };
    let mut ho = Handover::bind(
        &h.socket,
        group,
        Duration::from_millis(h.accept_timeout_ms),
        cfg.limits.backlog,
    )
    .map_err(|e| {
        StartError::Io(io::Error::other(format!(
            "handover.socket {}: {e}",
            h.socket.display()
        )))
    })?;
    poll.registry()
        .register(&mut SourceFd(&ho.raw_fd()), HANDOVER, Interest::READABLE)?;
    let dw = DestroyWatch::open().map_err(|e| {
        StartError::Io(io::Error::other(format!(
            "socket-destroy notifications (NETLINK_SOCK_DIAG): {e}"
        )))
    })?;
    poll.registry()
        .register(&mut SourceFd(&dw.raw_fd()), DESTROY, Interest::READABLE)?;
    let found = ho.discover();
    if found > 0 {
        tracing::info!(
            found,
            "asked running servers' handover listeners to announce themselves"
        );
    }
    Ok((ho, dw))
}

/// Raises the socket's receive buffer beyond `net.core.rmem_max` when the
/// capability allows (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which we have).
fn grow_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) {
    let fd = sock.as_raw_fd();
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `bytes` is a live c_int; the fd is our socket.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &bytes as *const _ as *const libc::c_void,
                4,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// A group's id from its name or number.
fn group_id(g: &str) -> Option<u32> {
    if let Ok(n) = g.parse() {
        return Some(n);
    }
    let c = std::ffi::CString::new(g).ok()?;
    // SAFETY: getgrnam with a NUL-terminated name; the result is read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: non-null getgrnam results point at a valid struct group.
    (!gr.is_null()).then(|| unsafe { (*gr).gr_gid })
}
