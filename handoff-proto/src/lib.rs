//! THOP, the TCP handoff protocol between the Baton switch and its backend
//! agents. The specification is `docs/thop.md`; section numbers (§) in this
//! crate refer to it.
//!
//! The crate is a codec and nothing else: no sockets, no clock (time is an
//! argument), no allocation on the switch's send path, `#![forbid(unsafe_code)]`.
//! Any byte string given to the decoder yields a value or a typed
//! [`DecodeError`], never a panic.
//!
//! Sending (switch, CREATE of one connection):
//! ```
//! # use handoff_proto::*;
//! # use std::net::SocketAddr;
//! let key = Key::new(1, [7; 32]);
//! let state = TcpState {
//!     endpoints: Endpoints::new("198.18.0.101:40000".parse().unwrap(), "198.18.0.10:80".parse().unwrap()).unwrap(),
//!     client_isn: 1000, client_next: 1000 + 1 + 18, server_isn: 5000, server_next: 5001,
//!     client_window: 65535, server_window: 65535, mss: 1460,
//!     window_scale: Some(WindowScale { client: 7, server: 7 }), sack_permitted: true,
//!     timestamps: Some(Timestamps { recent: 1, next_val: 2 }),
//! };
//! let request = b"GET / HTTP/1.1\r\n\r\n";
//! let split = CreateSplitter::new(state, request, MAX_FRAME_LEN_V4).unwrap();
//! let seq = SeqCounter::starting_at(1);
//! let mut buf = [0u8; MAX_FRAME_LEN_V4];
//! for i in 0..split.fragment_count() {
//!     let hdr = Header { flags: 0, sender: 0xc612_0002, receiver: 0xc612_000b, boot: 0, conn_id: 42,
//!                        msg_seq: seq.next(), timestamp_ms: 1_800_000_000_000 };
//!     let len = split.write(i, &hdr, &key, &mut buf);
//!     // send &buf[..len] over UDP to the agent …
//!
//!     // Receiving (agent): authenticate, check replay, decode, reassemble.
//!     let keys = Keyring::new(key.clone());
//!     let mut replay = ReplayGuards::default();
//!     let mut reasm = Reassembler::new(ReassemblyConfig::default());
//!     let (frame, _) = open(&keys, 0xc612_000b, &buf[..len]).unwrap();
//!     replay.accept(&frame.header, 1_800_000_000_000).unwrap();
//!     if let Body::Create(frag) = frame.body {
//!         let done = reasm.push(frame.header.sender, frame.header.conn_id, &frag, 0).unwrap();
//!         assert_eq!(done.unwrap().request, request);
//!     }
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod control;
mod create;
mod error;
mod frame;
pub mod handover;
mod header;
mod node;
mod reasons;
mod reassembly;
mod recovery;
mod replay;
mod split;
mod wire;

pub use auth::{
    key_weakness, read_key_file, Key, KeyError, KeyWeakness, Keyring, KEY_LEN, MIN_DISTINCT_BYTES,
    PASSPHRASE_CONTEXT, SAMPLE_KEYS,
};
pub use control::{Abort, Ack, Close, Load, Nack};
pub use create::{
    tcp_opt, CreateFragment, Endpoints, TcpState, Timestamps, WindowScale, CREATE_FIXED_LEN,
    MAX_REQUEST_LEN, MAX_WSCALE, MIN_MSS, STATE_LEN_V4, STATE_LEN_V6,
};
pub use error::DecodeError;
pub use frame::{frame_len, open, seal, Body, Frame, FLAGS_OFFSET, OPCODE_OFFSET, VERSION_OFFSET};
pub use header::{
    flags, FrameView, Header, Opcode, DEFAULT_PORT, HEADER_LEN, MAGIC, MAX_BODY_LEN,
    MAX_FRAME_LEN_V4, MAX_FRAME_LEN_V6, MIN_FRAME_LEN, SUPPORTED_VERSIONS, TAG_LEN, TAG_OFFSET,
    VERSION,
};
pub use node::{initial_msg_seq, node_id, SeqCounter};
pub use reasons::{AbortReason, CloseReason, NackReason};
pub use reassembly::{Assembled, Reassembler, ReassemblyConfig, ReassemblyError, MAX_RANGES};
pub use recovery::{FlowRecord, Flows, Hello, Lookup, Records};
pub use replay::{
    Now, ReplayError, ReplayGuard, ReplayGuards, DEFAULT_MAX_SKEW_MS, NOT_BEFORE_SLACK_MS,
    REPLAY_WINDOW,
};
pub use split::{CreateSplitter, SplitError, MAX_UDP_FRAME_LEN};
