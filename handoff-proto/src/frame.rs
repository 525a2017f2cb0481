//! Whole frames: [`Body`] (one variant per opcode), [`Frame`] (a decoded,
//! authenticated frame), [`seal`] (encode + tag) and [`open`] (parse + verify
//! + decode), in the order spec §9.3 prescribes for receivers.

use crate::auth::{Key, Keyring};
use crate::control::{Abort, Ack, Close, Load, Nack};
use crate::create::CreateFragment;
use crate::error::DecodeError;
use crate::header::{
    field, flags, FrameView, Header, Opcode, HEADER_LEN, MAGIC, MAX_BODY_LEN, SUPPORTED_VERSIONS,
    VERSION,
};
use crate::reasons::NackReason;
use crate::recovery::{Flows, Hello, Lookup};
use crate::wire::Writer;

/// A frame body, one variant per opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// One CREATE fragment.
    Create(CreateFragment<'a>),
    /// ACK.
    Ack(Ack),
    /// NACK.
    Nack(Nack<'a>),
    /// CLOSE.
    Close(Close),
    /// ABORT.
    Abort(Abort),
    /// LOAD.
    Load(Load),
    /// HELLO.
    Hello(Hello),
    /// FLOWS.
    Flows(Flows<'a>),
    /// LOOKUP.
    Lookup(Lookup<'a>),
}

impl<'a> Body<'a> {
    /// The opcode this body is sent with.
    pub fn opcode(&self) -> Opcode {
        match self {
            Body::Create(_) => Opcode::Create,
            Body::Ack(_) => Opcode::Ack,
            Body::Nack(_) => Opcode::Nack,
            Body::Close(_) => Opcode::Close,
            Body::Abort(_) => Opcode::Abort,
            Body::Load(_) => Opcode::Load,
            Body::Hello(_) => Opcode::Hello,
            Body::Flows(_) => Opcode::Flows,
            Body::Lookup(_) => Opcode::Lookup,
        }
    }

    /// Body length on the wire.
    pub fn encoded_len(&self) -> usize {
        match self {
            Body::Create(c) => c.encoded_len(),
            Body::Ack(_) => Ack::LEN,
            Body::Nack(n) => n.encoded_len(),
            Body::Close(_) => Close::LEN,
            Body::Abort(_) => Abort::LEN,
            Body::Load(_) => Load::LEN,
            Body::Hello(_) => Hello::LEN,
            Body::Flows(f) => f.encoded_len(),
            Body::Lookup(l) => l.encoded_len(),
        }
    }

    fn encode(&self, w: &mut Writer<'_>) {
        match self {
            Body::Create(c) => c.encode(w),
            Body::Ack(a) => a.encode(w),
            Body::Nack(n) => n.encode(w),
            Body::Close(c) => c.encode(w),
            Body::Abort(a) => a.encode(w),
            Body::Load(l) => l.encode(w),
            Body::Hello(h) => h.encode(w),
            Body::Flows(f) => f.encode(w),
            Body::Lookup(l) => l.encode(w),
        }
    }

    /// Decodes the body of an opcode.
    pub fn decode(opcode: Opcode, body: &'a [u8]) -> Result<Body<'a>, DecodeError> {
        Ok(match opcode {
            Opcode::Create => Body::Create(CreateFragment::decode(body)?),
            Opcode::Ack => Body::Ack(Ack::decode(body)?),
            Opcode::Nack => Body::Nack(Nack::decode(body)?),
            Opcode::Close => Body::Close(Close::decode(body)?),
            Opcode::Abort => Body::Abort(Abort::decode(body)?),
            Opcode::Load => Body::Load(Load::decode(body)?),
            Opcode::Hello => Body::Hello(Hello::decode(body)?),
            Opcode::Flows => Body::Flows(Flows::decode(body)?),
            Opcode::Lookup => Body::Lookup(Lookup::decode(body)?),
        })
    }
}

/// A decoded frame whose tag has been verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Protocol version of the frame.
    pub version: u8,
    /// The key id it was tagged with.
    pub key_id: u32,
    /// Header fields.
    pub header: Header,
    /// The body.
    pub body: Body<'a>,
}

impl Header {
    /// The header of a reply to a frame with this header: sender and receiver
    /// swapped, same connection id, no flags, and the replier's own sequence
    /// number and clock (and no boot: set it if the replier has one).
    pub fn reply(&self, msg_seq: u64, timestamp_ms: u64) -> Header {
        Header {
            flags: 0,
            sender: self.receiver,
            receiver: self.sender,
            boot: 0,
            conn_id: self.conn_id,
            msg_seq,
            timestamp_ms,
        }
    }
}

impl core::fmt::Display for Frame<'_> {
    /// One log line: opcode, connection, sequence, and the body's gist.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let h = &self.header;
        write!(
            f,
            "{} v{} conn={:#x} seq={} from={:#010x} to={:#010x}",
            self.body.opcode(),
            self.version,
            h.conn_id,
            h.msg_seq,
            h.sender,
            h.receiver
        )?;
        if h.boot != 0 {
            write!(f, " boot={:#010x}", h.boot)?;
        }
        match &self.body {
            Body::Create(c) => {
                write!(f, " bytes {}+{}/{}", c.offset, c.data.len(), c.total_len)?;
                if let Some(s) = &c.state {
                    write!(f, " {} -> {}", s.client(), s.vip())?;
                }
                Ok(())
            }
            Body::Ack(a) => write!(f, " echo={}", a.echo_seq),
            Body::Nack(n) => write!(
                f,
                " echo={} reason={} versions={:?}",
                n.echo_seq, n.reason, n.versions
            ),
            Body::Close(c) => write!(
                f,
                " reason={} in={} out={}",
                c.reason, c.bytes_from_client, c.bytes_to_client
            ),
            Body::Abort(a) => write!(f, " reason={}", a.reason),
            Body::Load(l) => write!(
                f,
                " active={} adopted/s={} capacity={} interval={}ms",
                l.active_conns, l.adopted_per_sec, l.capacity_hint, l.interval_ms
            ),
            Body::Hello(h) => write!(f, " interval={}ms flags={:#x}", h.interval_ms, h.flags),
            Body::Flows(fl) => {
                write!(f, " flags={:#x} records={}", fl.flags, fl.records.len())?;
                fl.records
                    .iter()
                    .try_for_each(|r| write!(f, " [{:#x} {} -> {}]", r.conn_id, r.client, r.vip))
            }
            Body::Lookup(l) => {
                write!(f, " records={}", l.records.len())?;
                l.records
                    .iter()
                    .try_for_each(|r| write!(f, " [{} -> {}]", r.client, r.vip))
            }
        }
    }
}

/// Length of the frame `body` makes (header included): size `out` for [`seal`] with it.
pub fn frame_len(body: &Body<'_>) -> usize {
    HEADER_LEN + body.encoded_len()
}

/// Encodes a version-1 frame into `out`, tags it with `key`, and returns its length.
///
/// # Panics
/// If `out` is shorter than [`frame_len`] or the body longer than 65535
/// bytes: both are caller bugs (bodies from [`crate::CreateSplitter`] always fit).
pub fn seal(header: &Header, body: &Body<'_>, key: &Key, out: &mut [u8]) -> usize {
    let body_len = body.encoded_len();
    assert!(
        body_len <= MAX_BODY_LEN,
        "THOP body of {body_len} bytes exceeds 65535"
    );
    let len = HEADER_LEN + body_len;
    let out = &mut out[..len];
    let mut w = Writer::new(out);
    w.u16(MAGIC);
    w.u8(VERSION);
    w.u8(body.opcode() as u8);
    w.u16(header.flags);
    w.u16(body_len as u16);
    w.u32(key.id());
    w.u32(header.sender);
    w.u32(header.receiver);
    w.u32(header.boot);
    w.u64(header.conn_id);
    w.u64(header.msg_seq);
    w.u64(header.timestamp_ms);
    w.bytes(&[0u8; 16]);
    debug_assert_eq!(w.pos(), HEADER_LEN);
    body.encode(&mut w);
    debug_assert_eq!(w.pos(), len);
    key.sign_in_place(out);
    len
}

/// Parses, authenticates and decodes one received datagram addressed to
/// `local_node`; returns the frame and any bytes after it (ignored by
/// receivers). Replay protection is the caller's next step
/// ([`crate::ReplayGuard`]), before acting on the frame.
pub fn open<'a>(
    keys: &Keyring,
    local_node: u32,
    buf: &'a [u8],
) -> Result<(Frame<'a>, &'a [u8]), DecodeError> {
    let (view, rest) = FrameView::parse(buf)?;
    keys.verify(&view)?;
    view.check_receiver(local_node)?;
    Ok((view.decode()?, rest))
}

impl<'a> FrameView<'a> {
    /// Checks the receiver node id (after [`Keyring::verify`]).
    pub fn check_receiver(&self, local_node: u32) -> Result<(), DecodeError> {
        if self.receiver() == local_node {
            Ok(())
        } else {
            Err(DecodeError::WrongReceiver {
                expected: local_node,
                got: self.receiver(),
            })
        }
    }

    /// Checks version, opcode and flags, then decodes the body. Call it only
    /// after [`Keyring::verify`]: it trusts nothing, but acting on the result
    /// of an unauthenticated frame would.
    pub fn decode(&self) -> Result<Frame<'a>, DecodeError> {
        let version = self.version();
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let opcode = Opcode::from_u8(self.opcode_raw())
            .ok_or(DecodeError::UnknownOpcode(self.opcode_raw()))?;
        let fl = self.flags();
        let unknown_critical = fl & flags::CRITICAL_MASK & !flags::KNOWN;
        if unknown_critical != 0 {
            return Err(DecodeError::UnknownCriticalFlags(unknown_critical));
        }
        let header = self.header();
        if opcode == Opcode::Create && header.conn_id == 0 {
            return Err(DecodeError::Invalid("create: conn_id 0"));
        }
        let body = Body::decode(opcode, self.body())?;
        Ok(Frame {
            version,
            key_id: self.key_id(),
            header,
            body,
        })
    }

    /// The NACK `UNSUPPORTED_VERSION` that answers this frame (spec §8.1):
    /// returns the reply header (fill in nothing more) and body. Answer only
    /// frames that passed [`Keyring::verify`], [`Self::check_receiver`] and
    /// the replay check, and never a NACK (opcode 3 in every version).
    pub fn version_nack(&self, msg_seq: u64, timestamp_ms: u64) -> (Header, Nack<'static>) {
        let header = self.header().reply(msg_seq, timestamp_ms);
        let nack = Nack {
            echo_seq: self.msg_seq(),
            reason: NackReason::UnsupportedVersion,
            versions: SUPPORTED_VERSIONS,
        };
        (header, nack)
    }
}

/// Offset of the opcode byte: exposed so tests and tools can build frames of
/// unknown opcodes or versions (then re-tag with [`Key::sign_in_place`]).
pub const OPCODE_OFFSET: usize = field::OPCODE;
/// Offset of the version byte (see [`OPCODE_OFFSET`]).
pub const VERSION_OFFSET: usize = field::VERSION;
/// Offset of the flags field (see [`OPCODE_OFFSET`]).
pub const FLAGS_OFFSET: usize = field::FLAGS;
