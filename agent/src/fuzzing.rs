//! The agent's THOP receive path driven by a fuzzer (`fuzz/fuzz_targets/
//! agent_datagram.rs`), behind the `testing` feature.
//!
//! Every datagram the agent receives goes through one function,
//! [`Core::handle_frame`]: source check, structural parse, authentication,
//! receiver and replay checks, then dispatch by opcode (CREATE reassembly and
//! duplicate detection, ABORT, ACK, refusals answered with NACK). A fuzzer
//! that only sends random bytes stops at the tag, so the input is read as a
//! program that can also build frames the agent accepts: a fuzzed body
//! sealed with the agent's key, for this agent, with a fresh sequence number
//! and a current timestamp.
//!
//! The core is the agent's own, configured as the real one is, and driven
//! on a virtual clock (1 ms per operation), so a run is deterministic and
//! needs no socket. It has no service, so a complete CREATE ends at the
//! service lookup with a NACK: adopting a socket with `TCP_REPAIR` changes
//! the kernel's state and is tested in a network namespace by
//! `tests/adopt_kernel.rs`, not here. The actions it asks for (frames to
//! send) are taken and dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff_proto::{seal, Body, Header, Key, Opcode, HEADER_LEN, MAX_FRAME_LEN_V4};

use crate::config::Config;
use crate::engine::keyring;
use crate::handoff::Core;
use crate::metrics::Metrics;

/// The shared key of the harness (id 1).
pub const KEY: [u8; 32] = [7; 32];
/// Most datagrams one input sends.
const MAX_OPS: usize = 64;

const CONFIG: &str = "
thop:
  listen: 127.0.0.1:9199
  # Frames come from 127.0.0.1 in the names of three switches.
  switches: [127.0.0.1, 198.18.0.2, 198.18.0.3, 198.18.0.4]
  # A fixed key, so that seeds sealed with it stay valid across runs.
  allow_sample_keys: true
  keys:
    - id: 1
      key: \"0707070707070707070707070707070707070707070707070707070707070707\"
  max_pending_creates: 4
  max_request_bytes: 8192
services:
  - vip: 198.18.0.10:80
    mode: relay
    upstream: 127.0.0.1:8080
";

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

/// The virtual wall clock at the start of a run (ms since the Unix epoch).
const WALL0: u64 = 1_800_000_000_000;

/// A fresh core and its virtual clock.
struct Bench {
    core: Core,
    metrics: Arc<Metrics>,
    /// The node id the agent answers to (its own THOP address).
    node: u32,
    /// The monotonic origin and the operations run so far (1 ms each).
    start: Instant,
    ticks: u64,
}

impl Bench {
    /// Advances the virtual clock by 1 ms; the new (monotonic, wall) time.
    fn tick(&mut self) -> (Instant, u64) {
        self.ticks += 1;
        (
            self.start + Duration::from_millis(self.ticks),
            WALL0 + self.ticks,
        )
    }

    /// Hands one datagram to the core and drops the actions it asks for.
    fn receive(&mut self, dgram: &[u8], from: SocketAddr) {
        let (now, wall) = self.tick();
        self.core.handle_frame(now, wall, dgram, from);
        self.core.handle_timeout(now);
        while self.core.poll_action().is_some() {}
    }
}

fn bench() -> Bench {
    let mut cfg = Config::parse(CONFIG).expect("the harness configuration is valid");
    // No service: a complete CREATE is refused before adoption.
    cfg.services.clear();
    let metrics = Arc::new(Metrics::new());
    let keys = keyring(&cfg).expect("the harness key is valid");
    let start = Instant::now();
    let core = Core::new(&cfg, keys, Arc::clone(&metrics), start, WALL0);
    let node = handoff_proto::node_id(Ipv4Addr::LOCALHOST.into());
    Bench {
        core,
        metrics,
        node,
        start,
        ticks: 0,
    }
}

/// How far one program's datagrams went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Frames that passed authentication and the replay check.
    pub accepted: u64,
    /// Frames dropped before dispatch (any reason).
    pub dropped: u64,
    /// CREATEs refused with a NACK.
    pub refused: u64,
    /// CREATEs recognised as duplicates.
    pub duplicates: u64,
}

fn total(v: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    v.collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Runs one program; any panic is a bug.
///
/// Operations, each starting with a selector byte (its low two bits):
/// - `0`: raw datagram `[len u16][bytes]` from the switch;
/// - `1`: a frame the agent accepts: `[opcode u8][flags u16][conn u8]
///   [sender u8][seq step u8][clock offset i8][len u16][body]`, the body
///   decoded for that opcode and sealed with the key (skipped if it does
///   not decode);
/// - `2`: raw bytes made to pass authentication: `[len u16][bytes]` with
///   magic, receiver and timestamp set and the tag recomputed, so what comes
///   after the tag (version, opcode, lengths, body) is reached as fuzzed;
/// - `3`: raw datagram from a source that is not an allowed switch.
pub fn run(data: &[u8]) -> Reached {
    let mut b = bench();
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 9199));
    let stranger = SocketAddr::from(([127, 0, 0, 2], 9199));
    let key = Key::new(1, KEY);
    let mut input = Input(data);
    let mut seq = WALL0;
    let mut frame = vec![0u8; 65_536 + HEADER_LEN];
    for _ in 0..MAX_OPS {
        let Some(op) = input.u8() else { break };
        match op & 3 {
            0 => {
                let len = usize::from(input.u16().unwrap_or(0));
                let dgram = input.bytes(len).to_vec();
                b.receive(&dgram, from);
            }
            1 => {
                let (Some(opcode), Some(flags), Some(conn), Some(sender), Some(step), Some(skew)) = (
                    input.u8(),
                    input.u16(),
                    input.u8(),
                    input.u8(),
                    input.u8(),
                    input.u8(),
                ) else {
                    break;
                };
                let len = usize::from(input.u16().unwrap_or(0)).min(MAX_FRAME_LEN_V4);
                let body = input.bytes(len);
                let Some(opcode) = Opcode::from_u8(opcode % 8) else {
                    continue;
                };
                let Ok(body) = Body::decode(opcode, body) else {
                    continue;
                };
                // Mostly forward; a step of 0 repeats the last number (replay).
                seq += u64::from(step % 4);
                let h = Header {
                    flags,
                    // A few switches, so per-sender state is shared and separate.
                    sender: 0xc612_0002 + u32::from(sender % 3),
                    receiver: b.node,
                    boot: 0,
                    conn_id: u64::from(conn % 8) + 1,
                    msg_seq: seq,
                    timestamp_ms: (WALL0 + b.ticks)
                        .saturating_add_signed(i64::from(skew as i8) * 1000),
                };
                let n = seal(&h, &body, &key, &mut frame);
                b.receive(&frame[..n], from);
            }
            2 => {
                let len = usize::from(input.u16().unwrap_or(0));
                let raw = input.bytes(len);
                if raw.len() < HEADER_LEN {
                    b.receive(raw, from);
                    continue;
                }
                let f = &mut frame[..raw.len()];
                f.copy_from_slice(raw);
                f[0..2].copy_from_slice(&handoff_proto::MAGIC.to_be_bytes());
                f[16..20].copy_from_slice(&b.node.to_be_bytes());
                seq += 1;
                f[32..40].copy_from_slice(&seq.to_be_bytes());
                f[40..48].copy_from_slice(&(WALL0 + b.ticks).to_be_bytes());
                key.sign_in_place(f);
                b.receive(f, from);
            }
            _ => {
                let len = usize::from(input.u16().unwrap_or(0));
                let dgram = input.bytes(len).to_vec();
                b.receive(&dgram, stranger);
            }
        }
    }
    let m = &b.metrics;
    Reached {
        accepted: total(&m.thop_rx),
        dropped: total(&m.thop_dropped),
        refused: total(&m.refused),
        duplicates: m.duplicate_creates.get(),
    }
}
