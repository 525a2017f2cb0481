//! The test bed: one [`Core`] on a virtual clock, a switch that seals frames
//! for it, and a record of every action the core asked for.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::config::{Config, Mode};
use agent::handoff::{Action, AdoptOrder, ConnKey, Core};
use agent::metrics::Metrics;
use handoff_proto::{
    node_id, open, seal, Body, Close, CloseReason, CreateSplitter, FlowRecord, Header, Key,
    Keyring, Load, NackReason, TcpState, MAX_FRAME_LEN_V4,
};

/// The key the switch and the agent share.
pub const KEY: [u8; 32] = [0x42; 32];
/// Another key under the same id: frames tagged with it fail the tag check.
pub const FORGED: [u8; 32] = [0x24; 32];
/// The wall clock at time 0 of a script (ms since the Unix epoch).
pub const WALL0: u64 = 1_800_000_000_000;
/// The switch's address.
pub const SWITCH: &str = "198.18.0.2:9199";
/// The agent's boot identity: every frame it sends must carry it.
pub const AGENT_BOOT: u32 = 0xa6e7_b007;
/// How far a switch's `msg_seq` jumps when it restarts (a new `boot=`):
/// the numbers in between were never sent, room for `late=` frames.
pub const RESTART_SEQ_JUMP: u64 = 100;

/// The configuration scripts run with: one service of each mode, no LOAD.
pub const CONFIG: &str = "
thop:
  listen: 198.18.0.20:9199
  switches: [198.18.0.2, 198.18.0.3:9199]
  allow_sample_keys: true
  keys:
    - id: 1
      key: \"4242424242424242424242424242424242424242424242424242424242424242\"
services:
  - vip: 198.18.0.10:80
    mode: relay
    upstream: 127.0.0.1:8080
  - vip: 198.18.0.10:81
    mode: listener
  - vip: 198.18.0.10:82
    mode: handover
load:
  period_ms: 0
";

/// Something the core asked for, decoded.
#[derive(Debug)]
pub enum Out {
    Ack {
        conn_id: u64,
        echo_seq: u64,
        flags: u16,
    },
    Nack {
        conn_id: u64,
        echo_seq: u64,
        reason: NackReason,
    },
    Close {
        to: SocketAddr,
        conn_id: u64,
        msg_seq: u64,
        close: Close,
    },
    Load(Load),
    Flows {
        to: SocketAddr,
        flags: u16,
        records: Vec<FlowRecord>,
    },
    /// A frame the switch could not open, or an unexpected opcode.
    Other(String),
    Adopt(Box<AdoptOrder>),
    Silence {
        conn: ConnKey,
        mode: Mode,
    },
    ResetAll,
    Stopped,
}

/// One core, its clock, and the switch's side.
pub struct Bed {
    pub core: Core,
    pub metrics: Arc<Metrics>,
    start: Instant,
    /// Time since the start of the script.
    pub t: Duration,
    pub key: Key,
    pub switch_keys: Keyring,
    pub switch: SocketAddr,
    pub switch_node: u32,
    pub agent_node: u32,
    pub seq: u64,
    /// Outputs not yet matched, with the time they were emitted.
    pub out: VecDeque<(Duration, Out)>,
    /// The last datagram sent to the core (for `< REPLAY`).
    pub last_dgram: Vec<u8>,
    /// `msg_seq` of every frame the switch sent, per connection id.
    pub sent: std::collections::HashMap<u64, Vec<u64>>,
    /// `msg_seq` of the last CLOSE received, per (receiving switch node,
    /// connection id).
    pub closes: std::collections::HashMap<(u32, u64), u64>,
    /// The boot each switch node puts in its frames (0: not reported).
    pub boots: std::collections::HashMap<u32, u32>,
    /// The next frame is numbered this far below the last one (0: next).
    pub late: u64,
    /// The connection of the last ADOPT matched.
    pub last_adopt: Option<ConnKey>,
}

impl Bed {
    pub fn new(cfg: &Config) -> Bed {
        let key = Key::new(1, KEY);
        let metrics = Arc::new(Metrics::new());
        let keys = agent::engine::keyring(cfg).expect("script key");
        let start = Instant::now();
        let core = Core::new(cfg, keys, Arc::clone(&metrics), start, WALL0).with_boot(AGENT_BOOT);
        let switch: SocketAddr = SWITCH.parse().unwrap();
        Bed {
            agent_node: core.local_node(),
            core,
            metrics,
            start,
            t: Duration::ZERO,
            switch_keys: Keyring::new(key.clone()),
            key,
            switch,
            switch_node: node_id(switch.ip()),
            seq: WALL0,
            out: VecDeque::new(),
            last_dgram: Vec::new(),
            sent: Default::default(),
            closes: Default::default(),
            boots: Default::default(),
            late: 0,
            last_adopt: None,
        }
    }

    pub fn now(&self) -> Instant {
        self.start + self.t
    }

    pub fn wall(&self) -> u64 {
        WALL0 + self.t.as_millis() as u64
    }

    pub fn conn(&self, conn_id: u64) -> ConnKey {
        ConnKey {
            sender: self.switch_node,
            conn_id,
        }
    }

    /// Moves the clock to `to`, firing every timer due on the way at its
    /// own time.
    pub fn advance(&mut self, to: Duration) {
        assert!(to >= self.t, "time goes backwards: {to:?} < {:?}", self.t);
        for _ in 0..100_000 {
            match self.core.poll_timeout() {
                Some(at) if at <= self.start + to => {
                    self.t = self.t.max(at.saturating_duration_since(self.start));
                    self.core.handle_timeout(self.now());
                    self.collect();
                }
                _ => break,
            }
        }
        self.t = to;
    }

    /// Records the core's actions (`Forget` is bookkeeping, not recorded).
    pub fn collect(&mut self) {
        while let Some(a) = self.core.poll_action() {
            let out = match a {
                Action::Send { to, frame, .. } => self.decode(&frame, to),
                Action::Adopt(o) => Out::Adopt(o),
                Action::Silence { conn, mode } => Out::Silence { conn, mode },
                Action::Forget { .. } => continue,
                Action::ResetAll => Out::ResetAll,
                Action::Stopped => Out::Stopped,
            };
            if let Out::Close {
                to,
                conn_id,
                msg_seq,
                ..
            } = &out
            {
                self.closes.insert((node_id(to.ip()), *conn_id), *msg_seq);
            }
            self.out.push_back((self.t, out));
        }
    }

    /// Opens a frame sent to `to` as that switch does.
    fn decode(&self, frame: &[u8], to: SocketAddr) -> Out {
        let (f, _) = match open(&self.switch_keys, node_id(to.ip()), frame) {
            Ok(x) => x,
            Err(e) => return Out::Other(format!("undecodable: {e:?}")),
        };
        let h = f.header;
        if h.boot != AGENT_BOOT {
            return Out::Other(format!("{:?} with boot {:#x}", f.body.opcode(), h.boot));
        }
        match f.body {
            Body::Ack(a) => Out::Ack {
                conn_id: h.conn_id,
                echo_seq: a.echo_seq,
                flags: h.flags,
            },
            Body::Nack(n) => Out::Nack {
                conn_id: h.conn_id,
                echo_seq: n.echo_seq,
                reason: n.reason,
            },
            Body::Close(c) => Out::Close {
                to,
                conn_id: h.conn_id,
                msg_seq: h.msg_seq,
                close: c,
            },
            Body::Load(l) => Out::Load(l),
            Body::Flows(fl) => Out::Flows {
                to,
                flags: fl.flags,
                records: fl.records.iter().collect(),
            },
            other => Out::Other(format!("{:?}", other.opcode())),
        }
    }

    /// A header from the switch (`sender`, default this switch) at the
    /// current time plus `skew_ms`, with that switch's boot; numbered next,
    /// or [`Bed::late`] below the last frame.
    pub fn header(&mut self, conn_id: u64, sender: Option<u32>, skew_ms: i64) -> Header {
        let msg_seq = if self.late > 0 {
            self.seq.saturating_sub(self.late)
        } else {
            self.seq += 1;
            self.seq
        };
        let sender = sender.unwrap_or(self.switch_node);
        Header {
            flags: 0,
            sender,
            receiver: self.agent_node,
            boot: self.boots.get(&sender).copied().unwrap_or(0),
            conn_id,
            msg_seq,
            timestamp_ms: self.wall().saturating_add_signed(skew_ms),
        }
    }

    /// Delivers one datagram to the core.
    pub fn deliver(&mut self, dgram: Vec<u8>, from: SocketAddr) {
        self.core
            .handle_frame(self.now(), self.wall(), &dgram, from);
        self.last_dgram = dgram;
        self.collect();
    }

    /// Seals and delivers one frame.
    pub fn send(&mut self, h: &Header, body: &Body<'_>, key: &Key, from: SocketAddr) {
        let mut buf = vec![0u8; handoff_proto::frame_len(body)];
        let n = seal(h, body, key, &mut buf);
        buf.truncate(n);
        self.sent.entry(h.conn_id).or_default().push(h.msg_seq);
        self.deliver(buf, from);
    }

    /// True when the switch sent frame `msg_seq` about `conn_id`.
    pub fn echoes(&self, conn_id: u64, msg_seq: u64) -> bool {
        self.sent
            .get(&conn_id)
            .is_some_and(|v| v.contains(&msg_seq))
    }

    /// The fragments of a CREATE, each sealed under a fresh header.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        conn_id: u64,
        st: &TcpState,
        req: &[u8],
        mtu: Option<usize>,
        only: Option<usize>,
        sender: Option<u32>,
        skew_ms: i64,
        key: &Key,
        from: SocketAddr,
    ) {
        let mtu = mtu.unwrap_or(MAX_FRAME_LEN_V4);
        let split = CreateSplitter::new(*st, req, mtu).expect("split CREATE");
        for i in 0..split.fragment_count() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let h = self.header(conn_id, sender, skew_ms);
            let mut buf = vec![0u8; mtu];
            let n = split.write(i, &h, key, &mut buf);
            buf.truncate(n);
            self.sent.entry(conn_id).or_default().push(h.msg_seq);
            self.deliver(buf, from);
        }
    }

    /// The counter or gauge a script names (`dropped.bad_tag`, `active` …).
    pub fn metric(&self, name: &str) -> i64 {
        let m = &self.metrics;
        let (base, label) = name.split_once('.').unwrap_or((name, ""));
        let vec = match base {
            "dropped" => &m.thop_dropped,
            "refused" => &m.refused,
            "rx" => &m.thop_rx,
            "closed" => &m.closed,
            "adopted" => &m.adopted,
            "duplicate_creates" => return m.duplicate_creates.get() as i64,
            "aborts" => return m.aborts.get() as i64,
            "close_retransmits" => return m.close_retransmits.get() as i64,
            "active" => return m.active.get(),
            "switch_restarts" => return m.switch_restarts.get() as i64,
            "resyncs" => return m.resyncs.get() as i64,
            "resync_flows" => return m.resync_flows.get() as i64,
            "holders" => return m.holders.get(),
            "lookups" => &m.lookups,
            "reassembly_pending" => return m.reassembly_pending.get(),
            _ => panic!("unknown counter {name}"),
        };
        vec.with_label_values(&[label]).get() as i64
    }
}

/// A client's TCP state for a CREATE (IPv4, every option negotiated).
pub use testkit::tcp_state::between as tcp_state;

/// A close reason by label.
pub fn close_reason(label: &str) -> CloseReason {
    (1..=8)
        .map(CloseReason::from_u16)
        .find(|r| r.label() == label)
        .unwrap_or_else(|| panic!("unknown close reason {label}"))
}

/// A NACK reason by label.
pub fn nack_reason(label: &str) -> NackReason {
    (1..=12)
        .map(NackReason::from_u16)
        .find(|r| r.label() == label)
        .unwrap_or_else(|| panic!("unknown NACK reason {label}"))
}
