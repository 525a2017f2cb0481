//! The small frames: ACK, NACK, CLOSE, ABORT and LOAD (spec §5). Each body is
//! a fixed list of fields; bytes after them are ignored, so a later version
//! can append fields without breaking version-1 receivers (spec §8.3).

use crate::error::DecodeError;
use crate::reasons::{AbortReason, CloseReason, NackReason};
use crate::wire::{Reader, Writer};

/// ACK body: the `msg_seq` of the frame it answers (a CREATE fragment, CLOSE or ABORT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ack {
    /// `msg_seq` of the frame being acknowledged (lets the sender measure RTT).
    pub echo_seq: u64,
}

impl Ack {
    /// Body length on the wire.
    pub const LEN: usize = 8;

    /// Decodes an ACK body.
    pub fn decode(body: &[u8]) -> Result<Ack, DecodeError> {
        let mut r = Reader::new(body);
        Ok(Ack {
            echo_seq: r.u64("ack: echo_seq")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.echo_seq);
    }
}

/// NACK body: a refused CREATE (or a frame of an unsupported version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nack<'a> {
    /// `msg_seq` of the frame being refused.
    pub echo_seq: u64,
    /// Why.
    pub reason: NackReason,
    /// The versions the sender of the NACK speaks; non-empty for
    /// `UNSUPPORTED_VERSION`, usually empty otherwise.
    pub versions: &'a [u8],
}

impl<'a> Nack<'a> {
    /// Length of the fields before the version list.
    pub const FIXED_LEN: usize = 11;

    /// Body length on the wire.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_LEN + self.versions.len().min(255)
    }

    /// Decodes a NACK body.
    pub fn decode(body: &'a [u8]) -> Result<Nack<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let echo_seq = r.u64("nack: echo_seq")?;
        let reason = NackReason::from_u16(r.u16("nack: reason")?);
        let n = r.u8("nack: version_count")? as usize;
        let versions = r.bytes(n, "nack: versions")?;
        Ok(Nack {
            echo_seq,
            reason,
            versions,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        // At most 255 versions are sent; the count is one byte.
        let versions = &self.versions[..self.versions.len().min(255)];
        w.u64(self.echo_seq);
        w.u16(self.reason.to_u16());
        w.u8(versions.len() as u8);
        w.bytes(versions);
    }
}

/// CLOSE body: an adopted connection ended, and what it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Close {
    /// Why it ended.
    pub reason: CloseReason,
    /// Bytes the backend received from the client after adoption.
    pub bytes_from_client: u64,
    /// Bytes the backend sent to the client (the switch never sees them).
    pub bytes_to_client: u64,
}

impl Close {
    /// Body length on the wire.
    pub const LEN: usize = 20;

    /// Decodes a CLOSE body.
    pub fn decode(body: &[u8]) -> Result<Close, DecodeError> {
        let mut r = Reader::new(body);
        let reason = CloseReason::from_u16(r.u16("close: reason")?);
        let _reserved = r.u16("close: reserved")?;
        let bytes_from_client = r.u64("close: bytes_from_client")?;
        let bytes_to_client = r.u64("close: bytes_to_client")?;
        Ok(Close {
            reason,
            bytes_from_client,
            bytes_to_client,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.reason.to_u16());
        w.u16(0);
        w.u64(self.bytes_from_client);
        w.u64(self.bytes_to_client);
    }
}

/// ABORT body: the switch asks the agent to forget (or reset) a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Abort {
    /// Why.
    pub reason: AbortReason,
}

impl Abort {
    /// Body length on the wire.
    pub const LEN: usize = 4;

    /// Decodes an ABORT body.
    pub fn decode(body: &[u8]) -> Result<Abort, DecodeError> {
        let mut r = Reader::new(body);
        let reason = AbortReason::from_u16(r.u16("abort: reason")?);
        let _reserved = r.u16("abort: reserved")?;
        Ok(Abort { reason })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.reason.to_u16());
        w.u16(0);
    }
}

/// LOAD body: the agent's periodic load report; its arrival is also the
/// agent's liveness signal (spec §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Load {
    /// Connections currently adopted and open.
    pub active_conns: u32,
    /// Connections adopted per second over the last interval.
    pub adopted_per_sec: u32,
    /// How many more connections the agent would accept now (0: none;
    /// `u32::MAX`: no limit known).
    pub capacity_hint: u32,
    /// The agent's reporting interval in ms; the switch declares the agent
    /// dead after missing three.
    pub interval_ms: u32,
}

impl Load {
    /// Body length on the wire.
    pub const LEN: usize = 16;

    /// Decodes a LOAD body.
    pub fn decode(body: &[u8]) -> Result<Load, DecodeError> {
        let mut r = Reader::new(body);
        Ok(Load {
            active_conns: r.u32("load: active_conns")?,
            adopted_per_sec: r.u32("load: adopted_per_sec")?,
            capacity_hint: r.u32("load: capacity_hint")?,
            interval_ms: r.u32("load: interval_ms")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.active_conns);
        w.u32(self.adopted_per_sec);
        w.u32(self.capacity_hint);
        w.u32(self.interval_ms);
    }
}
