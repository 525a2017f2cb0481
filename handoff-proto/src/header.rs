//! The 64-byte common header every THOP frame starts with (spec §4), and
//! [`FrameView`], the checked zero-copy view of a received datagram.
//!
//! ```text
//!  0      2   3   4      6      8          12         16         20         24
//!  +------+---+---+------+------+----------+----------+----------+----------+
//!  |magic |ver|op | flags| blen |  key_id  |  sender  | receiver |   boot   |
//!  +------+---+---+------+------+----------+----------+----------+----------+
//!  24                  32                  40                  48
//!  +-------------------+-------------------+-------------------+
//!  |      conn_id      |      msg_seq      |   timestamp_ms    |
//!  +-------------------+-------------------+-------------------+
//!  48                                                          64
//!  +-----------------------------------------------------------+
//!  |                   tag (16 bytes, keyed BLAKE3)            |
//!  +-----------------------------------------------------------+
//! ```

use crate::error::DecodeError;
use crate::wire::Reader;

/// The UDP port agents and the switch listen on for THOP unless configured.
pub const DEFAULT_PORT: u16 = 9199;
/// `"TH"`: the first two bytes of every frame.
pub const MAGIC: u16 = 0x5448;
/// The protocol version this crate sends.
pub const VERSION: u8 = 1;
/// Every version this crate accepts, lowest first (sent in NACK `UNSUPPORTED_VERSION`).
pub const SUPPORTED_VERSIONS: &[u8] = &[1];
/// Length of the common header, tag included.
pub const HEADER_LEN: usize = 64;
/// Length of the authentication tag (BLAKE3 output truncated).
pub const TAG_LEN: usize = 16;
/// Offset of the tag inside the header.
pub const TAG_OFFSET: usize = 48;
/// Largest frame that fits a 1500-byte IPv4 path MTU (1500 − 20 IPv4 − 8 UDP).
pub const MAX_FRAME_LEN_V4: usize = 1472;
/// Largest frame that fits a 1500-byte IPv6 path MTU (1500 − 40 IPv6 − 8 UDP).
pub const MAX_FRAME_LEN_V6: usize = 1452;
/// The smallest `max_frame_len` a sender may configure (spec §6.3).
pub const MIN_FRAME_LEN: usize = 256;
/// The largest body the 16-bit `body_len` field can describe.
pub const MAX_BODY_LEN: usize = u16::MAX as usize;

/// Field offsets (spec §4); kept private to the codec like smoltcp's `mod field`.
#[allow(dead_code)] // MAGIC documents the layout; parse reads it with a Reader.
pub(crate) mod field {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 2;
    pub const OPCODE: usize = 3;
    pub const FLAGS: usize = 4;
    pub const BODY_LEN: usize = 6;
    pub const KEY_ID: usize = 8;
    pub const SENDER: usize = 12;
    pub const RECEIVER: usize = 16;
    pub const BOOT: usize = 20;
    pub const CONN_ID: usize = 24;
    pub const MSG_SEQ: usize = 32;
    pub const TIMESTAMP: usize = 40;
}

/// Header flag bits (spec §4.3). Bits 0–7 are advisory: a receiver ignores
/// those it does not know. Bits 8–15 are critical: a receiver rejects a frame
/// carrying one it does not know.
pub mod flags {
    /// CREATE: this fragment belongs to a retransmission of the CREATE.
    pub const RETRANSMIT: u16 = 0x0001;
    /// ACK: the connection had been adopted already (answer to a duplicate CREATE).
    pub const DUPLICATE: u16 = 0x0002;
    /// The critical range.
    pub const CRITICAL_MASK: u16 = 0xff00;
    /// Every flag version 1 defines.
    pub const KNOWN: u16 = RETRANSMIT | DUPLICATE;
}

/// What a frame is (spec §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Switch → agent: adopt this TCP connection (one fragment of it).
    Create = 1,
    /// Either way: the CREATE, CLOSE or ABORT with `echo_seq` was accepted.
    Ack = 2,
    /// Agent → switch: the CREATE was refused (THOP_NOTIFYDROP), with a reason.
    Nack = 3,
    /// Agent → switch: the adopted connection ended (THOP_NOTIFYCLS).
    Close = 4,
    /// Switch → agent: forget this connection (client reset, switch gave up).
    Abort = 5,
    /// Agent → switch, periodic: load report and liveness.
    Load = 6,
    /// Switch → agent, periodic: the switch's boot and liveness.
    Hello = 7,
    /// Agent → switch: live connections (after a new switch boot, or answering LOOKUP).
    Flows = 8,
    /// Switch → agent: who holds these flows?
    Lookup = 9,
}

impl Opcode {
    /// Every opcode of version 1.
    pub const ALL: [Opcode; 9] = [
        Opcode::Create,
        Opcode::Ack,
        Opcode::Nack,
        Opcode::Close,
        Opcode::Abort,
        Opcode::Load,
        Opcode::Hello,
        Opcode::Flows,
        Opcode::Lookup,
    ];

    /// The opcode for a wire value, `None` for values version 1 does not define.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Opcode::ALL.into_iter().find(|o| *o as u8 == v)
    }

    /// The spec's name (`"CREATE"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Create => "CREATE",
            Opcode::Ack => "ACK",
            Opcode::Nack => "NACK",
            Opcode::Close => "CLOSE",
            Opcode::Abort => "ABORT",
            Opcode::Load => "LOAD",
            Opcode::Hello => "HELLO",
            Opcode::Flows => "FLOWS",
            Opcode::Lookup => "LOOKUP",
        }
    }
}

impl core::fmt::Display for Opcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The per-frame header fields a sender chooses (the opcode comes from the
/// body; magic, version, body length, key id and tag are filled by `seal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Flag bits ([`flags`]).
    pub flags: u16,
    /// Node id of the sender (spec §4.2; default [`crate::node_id`] of its address).
    pub sender: u32,
    /// Node id of the receiver the frame is meant for.
    pub receiver: u32,
    /// The sender's boot identity (spec §4.2): random and non-zero per start
    /// of the sender's process; 0 when the sender does not report one.
    pub boot: u32,
    /// The connection this frame is about (0 for LOAD).
    pub conn_id: u64,
    /// Per-sender message sequence number, fresh for every frame sent
    /// (retransmissions included).
    pub msg_seq: u64,
    /// Sender's wall clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// A checked view of one received frame: magic, version ≠ 0 and lengths have
/// been validated, so no accessor can panic. Nothing in it is authenticated
/// until [`Keyring::verify`](crate::Keyring::verify) succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameView<'a> {
    /// Exactly header + body.
    bytes: &'a [u8],
}

impl<'a> FrameView<'a> {
    /// Checks the structure of `buf` and returns the view and the bytes after
    /// the frame (a UDP datagram carries one frame; receivers ignore the rest).
    pub fn parse(buf: &'a [u8]) -> Result<(FrameView<'a>, &'a [u8]), DecodeError> {
        let mut r = Reader::new(buf);
        let magic = r.u16("header: magic")?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let version = r.u8("header: version")?;
        if version == 0 {
            return Err(DecodeError::BadVersion(version));
        }
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated("header"));
        }
        let body_len =
            u16::from_be_bytes([buf[field::BODY_LEN], buf[field::BODY_LEN + 1]]) as usize;
        let total = HEADER_LEN + body_len;
        if buf.len() < total {
            return Err(DecodeError::Truncated("body shorter than body_len"));
        }
        let (bytes, rest) = buf.split_at(total);
        Ok((FrameView { bytes }, rest))
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn be32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[at..at + 4]);
        u32::from_be_bytes(b)
    }

    fn be64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[at..at + 8]);
        u64::from_be_bytes(b)
    }

    /// The whole frame, header and body.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The protocol version byte.
    pub fn version(&self) -> u8 {
        self.bytes[field::VERSION]
    }

    /// The raw opcode byte.
    pub fn opcode_raw(&self) -> u8 {
        self.bytes[field::OPCODE]
    }

    /// The flag bits.
    pub fn flags(&self) -> u16 {
        self.be16(field::FLAGS)
    }

    /// The key id the tag claims to be computed with.
    pub fn key_id(&self) -> u32 {
        self.be32(field::KEY_ID)
    }

    /// The sender's node id.
    pub fn sender(&self) -> u32 {
        self.be32(field::SENDER)
    }

    /// The receiver's node id.
    pub fn receiver(&self) -> u32 {
        self.be32(field::RECEIVER)
    }

    /// The sender's boot identity (0: not reported).
    pub fn boot(&self) -> u32 {
        self.be32(field::BOOT)
    }

    /// The connection id.
    pub fn conn_id(&self) -> u64 {
        self.be64(field::CONN_ID)
    }

    /// The sender's message sequence number.
    pub fn msg_seq(&self) -> u64 {
        self.be64(field::MSG_SEQ)
    }

    /// The sender's timestamp (ms since the Unix epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.be64(field::TIMESTAMP)
    }

    /// The authentication tag as received.
    pub fn tag(&self) -> &'a [u8] {
        &self.bytes[TAG_OFFSET..HEADER_LEN]
    }

    /// The body bytes (`body_len` of them).
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The header fields as a [`Header`] (unauthenticated until verified).
    pub fn header(&self) -> Header {
        Header {
            flags: self.flags(),
            sender: self.sender(),
            receiver: self.receiver(),
            boot: self.boot(),
            conn_id: self.conn_id(),
            msg_seq: self.msg_seq(),
            timestamp_ms: self.timestamp_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{seal, Ack, Body, Key};

    /// An ACK built field by field, then read back through the view.
    #[rustfmt::skip]
    const ACK: [u8; 72] = [
        0x54, 0x48, 0x01, 0x02, 0x00, 0x02, 0x00, 0x08, // magic, version, opcode, flags, body_len
        0x00, 0x00, 0x00, 0x07,                         // key_id
        0xc6, 0x12, 0x00, 0x0b,                         // sender
        0xc6, 0x12, 0x00, 0x02,                         // receiver
        0x00, 0x00, 0x00, 0x00,                         // boot
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // conn_id
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // msg_seq
        0x00, 0x00, 0x01, 0xa3, 0x18, 0x5c, 0x50, 0x00, // timestamp_ms
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // tag (filled below)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, // echo_seq
    ];

    #[test]
    fn construct_and_deconstruct() {
        let key = Key::new(7, [9; 32]);
        let mut want = ACK;
        key.sign_in_place(&mut want);
        let header = Header {
            flags: flags::DUPLICATE,
            sender: 0xc612_000b,
            receiver: 0xc612_0002,
            boot: 0,
            conn_id: 42,
            msg_seq: 5,
            timestamp_ms: 1_800_000_000_000,
        };
        let mut got = [0u8; 72];
        assert_eq!(
            seal(&header, &Body::Ack(Ack { echo_seq: 4 }), &key, &mut got),
            72
        );
        assert_eq!(got, want);

        let (view, rest) = FrameView::parse(&want).unwrap();
        assert!(rest.is_empty());
        assert_eq!((view.version(), view.opcode_raw(), view.flags()), (1, 2, 2));
        assert_eq!(
            (view.key_id(), view.sender(), view.receiver(), view.boot()),
            (7, 0xc612_000b, 0xc612_0002, 0)
        );
        assert_eq!(
            (view.conn_id(), view.msg_seq(), view.timestamp_ms()),
            (42, 5, 1_800_000_000_000)
        );
        assert_eq!(view.header(), header);
        assert_eq!(view.body(), &[0, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(view.tag(), &want[TAG_OFFSET..HEADER_LEN]);
    }

    #[test]
    fn structural_errors_name_the_problem() {
        assert_eq!(
            FrameView::parse(&[]),
            Err(DecodeError::Truncated("header: magic"))
        );
        assert_eq!(
            FrameView::parse(&[0x54, 0x48]),
            Err(DecodeError::Truncated("header: version"))
        );
        assert_eq!(
            FrameView::parse(&[0x54, 0x49, 1]),
            Err(DecodeError::BadMagic(0x5449))
        );
        assert_eq!(
            FrameView::parse(&[0x54, 0x48, 0]),
            Err(DecodeError::BadVersion(0))
        );
        assert_eq!(
            FrameView::parse(&ACK[..63]),
            Err(DecodeError::Truncated("header"))
        );
        assert_eq!(
            FrameView::parse(&ACK[..71]),
            Err(DecodeError::Truncated("body shorter than body_len"))
        );
        let mut longer = ACK.to_vec();
        longer.extend_from_slice(b"xyz");
        assert_eq!(FrameView::parse(&longer).unwrap().1, b"xyz");
    }
}
