//! The switch's THOP side: CREATE fragments out, ACK/NACK/CLOSE/LOAD in,
//! from the switch's data address in the switch namespace.

use super::bed::{Bed, BACKEND_IP, BACKEND_IP6, SWITCH_IP, SWITCH_IP6};
use handoff_proto::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const KEY_ID: u32 = 7;

/// The THOP key of this test process: fresh random bytes, as an operator
/// generates them (the agent refuses published and low-entropy keys).
pub fn key_hex() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use std::io::Read;
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .expect("/dev/urandom");
        b.iter().map(|x| format!("{x:02x}")).collect()
    })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A received frame, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Rx {
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
        conn_id: u64,
        close: Close,
    },
    Load(Load),
    Other(String),
}

pub struct SwitchThop {
    pub sock: UdpSocket,
    pub key: Key,
    pub keys: Keyring,
    pub seq: SeqCounter,
    pub agent: SocketAddr,
    pub node: u32,
    pub agent_node: u32,
    /// Largest datagram sent (1472 over IPv4, 1452 over IPv6).
    pub max_frame: usize,
    /// Frames read but not yet consumed by a waiter.
    backlog: Vec<Rx>,
}

impl SwitchThop {
    /// Binds 198.18.0.2:9199 in the switch namespace.
    pub fn new(bed: &Bed) -> SwitchThop {
        SwitchThop::on(bed, SWITCH_IP, BACKEND_IP, MAX_FRAME_LEN_V4)
    }

    /// THOP over IPv6: binds [2001:2::2]:9199, speaks to [2001:2::11]:9199,
    /// node ids derived from those IPv6 addresses.
    pub fn new_v6(bed: &Bed) -> SwitchThop {
        SwitchThop::on(bed, SWITCH_IP6, BACKEND_IP6, MAX_FRAME_LEN_V6)
    }

    fn on(bed: &Bed, switch: &'static str, agent: &str, max_frame: usize) -> SwitchThop {
        let sock = bed.in_ns(&bed.switch, move || {
            UdpSocket::bind((switch, 9199)).expect("bind THOP in switch ns")
        });
        let switch_ip: std::net::IpAddr = switch.parse().unwrap();
        let agent_ip: std::net::IpAddr = agent.parse().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let key = Key::from_hex(KEY_ID, key_hex()).unwrap();
        SwitchThop {
            sock,
            keys: Keyring::new(key.clone()),
            key,
            seq: SeqCounter::new(now_ms()),
            agent: SocketAddr::new(agent_ip, 9199),
            node: node_id(switch_ip),
            agent_node: node_id(agent_ip),
            max_frame,
            backlog: Vec::new(),
        }
    }

    /// Sends a CREATE in fragments of at most `max_frame` bytes, signed with
    /// `key` (the right one unless forging); returns the last fragment's seq.
    pub fn create_with(
        &self,
        conn_id: u64,
        st: &TcpState,
        req: &[u8],
        max_frame: usize,
        key: &Key,
    ) -> u64 {
        let split = CreateSplitter::new(*st, req, max_frame).expect("split CREATE");
        let mut buf = vec![0u8; max_frame];
        let mut last = 0;
        for i in 0..split.fragment_count() {
            last = self.seq.next();
            let h = Header {
                flags: 0,
                sender: self.node,
                receiver: self.agent_node,
                boot: 0,
                conn_id,
                msg_seq: last,
                timestamp_ms: now_ms(),
            };
            let n = split.write(i, &h, key, &mut buf);
            self.sock.send_to(&buf[..n], self.agent).unwrap();
        }
        last
    }

    pub fn create(&self, conn_id: u64, st: &TcpState, req: &[u8]) -> u64 {
        self.create_with(conn_id, st, req, self.max_frame, &self.key)
    }

    /// Sends any body (ABORT, ACK of a CLOSE …).
    pub fn send(&self, conn_id: u64, body: &Body<'_>) -> u64 {
        let seq = self.seq.next();
        let h = Header {
            flags: 0,
            sender: self.node,
            receiver: self.agent_node,
            boot: 0,
            conn_id,
            msg_seq: seq,
            timestamp_ms: now_ms(),
        };
        let mut buf = vec![0u8; frame_len(body)];
        let n = seal(&h, body, &self.key, &mut buf);
        self.sock.send_to(&buf[..n], self.agent).unwrap();
        seq
    }

    fn read_one(&mut self) -> Option<Rx> {
        let mut buf = [0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        let (f, _) = match open(&self.keys, self.node, &buf[..n]) {
            Ok(x) => x,
            Err(e) => return Some(Rx::Other(format!("undecodable: {e:?}"))),
        };
        let h = f.header;
        Some(match f.body {
            Body::Ack(a) => Rx::Ack {
                conn_id: h.conn_id,
                echo_seq: a.echo_seq,
                flags: h.flags,
            },
            Body::Nack(n) => Rx::Nack {
                conn_id: h.conn_id,
                echo_seq: n.echo_seq,
                reason: n.reason,
            },
            Body::Close(c) => {
                // Acknowledge, as the switch does.
                self.send(
                    h.conn_id,
                    &Body::Ack(Ack {
                        echo_seq: h.msg_seq,
                    }),
                );
                Rx::Close {
                    conn_id: h.conn_id,
                    close: c,
                }
            }
            Body::Load(l) => Rx::Load(l),
            other => Rx::Other(format!("{:?}", other.opcode())),
        })
    }

    /// Waits (bounded) for a frame matching `pred`; others are kept.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Rx) -> bool) -> Rx {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(rx) = self.read_one() {
                if pred(&rx) {
                    return rx;
                }
                self.backlog.push(rx);
            }
        }
        panic!(
            "no {what} from the agent within {timeout:?}; other frames: {:?}",
            self.backlog
        );
    }

    /// Collects frames for `d` and returns those matching `pred`.
    pub fn collect(&mut self, d: Duration, pred: impl Fn(&Rx) -> bool) -> Vec<Rx> {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            if let Some(rx) = self.read_one() {
                self.backlog.push(rx);
            }
        }
        let (hit, keep): (Vec<Rx>, Vec<Rx>) = std::mem::take(&mut self.backlog)
            .into_iter()
            .partition(|r| pred(r));
        self.backlog = keep;
        hit
    }

    pub fn wait_ack(&mut self, conn_id: u64) -> Rx {
        self.wait_for("ACK/NACK", Duration::from_secs(10), |r| {
            matches!(r, Rx::Ack { conn_id: c, .. } | Rx::Nack { conn_id: c, .. } if *c == conn_id)
        })
    }

    pub fn wait_close(&mut self, conn_id: u64) -> Close {
        match self.wait_for(
            "CLOSE",
            Duration::from_secs(20),
            |r| matches!(r, Rx::Close { conn_id: c, .. } if *c == conn_id),
        ) {
            Rx::Close { close, .. } => close,
            _ => unreachable!(),
        }
    }
}
