//! A fake backend agent that speaks THOP over UDP: it authenticates and
//! reassembles THOP_CREATE, records each adopted connection (endpoints and
//! request) and answers THOP_ACK, with no TCP behind it.
//!
//! The dataplane's switch conformance tests and the control plane's
//! end-to-end test use it to see what the switch hands off, and to which
//! backend, without running the real agent.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use handoff_proto::{Ack, Body, Key, Keyring, Reassembler, ReassemblyConfig, SeqCounter};

/// One connection the fake agent adopted.
#[derive(Debug, Clone)]
pub struct Adopted {
    /// The client's address, from the CREATE's TCP state.
    pub client: SocketAddr,
    /// The VIP the client connected to.
    pub vip: SocketAddr,
    /// The request bytes the switch handed over.
    pub request: Vec<u8>,
    /// Where the CREATE came from (the switch's THOP address).
    pub from: SocketAddr,
}

impl Adopted {
    /// The request line's path (`GET /a HTTP/1.1` → `/a`), or "".
    pub fn path(&self) -> String {
        let text = String::from_utf8_lossy(&self.request);
        text.split_whitespace().nth(1).unwrap_or("").to_string()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The agent's THOP endpoint.
pub struct FakeAgent {
    sock: UdpSocket,
    keys: Keyring,
    key: Key,
    me: u32,
    seq: SeqCounter,
    reasm: Reassembler,
    adopted: HashSet<(u32, u64)>,
    strict: bool,
    buf: Vec<u8>,
}

impl FakeAgent {
    /// An agent on `sock` (bound to the agent's THOP address, `me`) that
    /// accepts frames sealed with `key` and seals its ACKs with it.
    pub fn new(sock: UdpSocket, me: IpAddr, key: Key) -> FakeAgent {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("UDP read timeout");
        FakeAgent {
            sock,
            keys: Keyring::new(key.clone()),
            key,
            me: handoff_proto::node_id(me),
            seq: SeqCounter::new(unix_ms()),
            reasm: Reassembler::new(ReassemblyConfig::default()),
            adopted: HashSet::new(),
            strict: false,
            buf: vec![0u8; 65536],
        }
    }

    /// Panics on a frame that does not verify or a CREATE that does not
    /// reassemble (the switch under test is the only sender).
    pub fn strict(mut self) -> FakeAgent {
        self.strict = true;
        self
    }

    /// Handles one datagram (waiting up to 50 ms for it). Every copy of a
    /// CREATE of an adopted connection is acknowledged (a retransmission
    /// means the ACK was lost); returns the connection the first time its
    /// CREATE is complete.
    pub fn poll(&mut self) -> Option<Adopted> {
        let (n, from) = self.sock.recv_from(&mut self.buf).ok()?;
        let frame = match handoff_proto::open(&self.keys, self.me, &self.buf[..n]) {
            Ok((frame, _)) => frame,
            Err(e) if self.strict => {
                panic!("the switch sent a THOP frame that does not verify: {e:?}")
            }
            Err(_) => return None,
        };
        let Body::Create(frag) = frame.body else {
            return None;
        };
        let h = frame.header;
        let done = match self.reasm.push(h.sender, h.conn_id, &frag, unix_ms()) {
            Ok(done) => done,
            Err(e) if self.strict => panic!("CREATE fragments do not reassemble: {e:?}"),
            Err(_) => None,
        };
        let mut new = None;
        if let Some(a) = done {
            if self.adopted.insert((h.sender, h.conn_id)) {
                new = Some(Adopted {
                    client: a.state.endpoints.client(),
                    vip: a.state.endpoints.vip(),
                    request: a.request,
                    from,
                });
            }
        }
        if self.adopted.contains(&(h.sender, h.conn_id)) {
            let hdr = h.reply(self.seq.next(), unix_ms());
            let ack = Body::Ack(Ack {
                echo_seq: h.msg_seq,
            });
            let mut wire = [0u8; 256];
            let len = handoff_proto::seal(&hdr, &ack, &self.key, &mut wire);
            let _ = self.sock.send_to(&wire[..len], from);
        }
        new
    }

    /// Adopts connections until `n` were adopted or `timeout` passed.
    pub fn collect(&mut self, n: usize, timeout: Duration) -> Vec<Adopted> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            out.extend(self.poll());
        }
        out
    }

    /// Serves until `stop` is set, handing each adopted connection to `f`.
    pub fn serve(&mut self, stop: &AtomicBool, mut f: impl FnMut(Adopted)) {
        while !stop.load(Ordering::Relaxed) {
            if let Some(a) = self.poll() {
                f(a);
            }
        }
    }
}
