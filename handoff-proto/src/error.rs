//! Typed errors. Every rejection of received bytes is one variant with a
//! stable metric label ([`DecodeError::label`]) and a human reason
//! ([`DecodeError::reason`]), so a receiver can count and log it without
//! string formatting on the hot path. Spec: `docs/thop.md` §9.3 (receive processing).

use core::fmt;

/// Why a received datagram was not accepted as a THOP frame.
///
/// The action for every variant is *drop and count*, except
/// [`DecodeError::UnsupportedVersion`], which an authenticated peer is answered
/// with NACK `UNSUPPORTED_VERSION` (spec §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended while reading the named field.
    Truncated(&'static str),
    /// The first two bytes are not `0x5448` ("TH"): not THOP at all.
    BadMagic(u16),
    /// Version 0 is never valid.
    BadVersion(u8),
    /// An authenticated frame of a version this implementation does not speak.
    UnsupportedVersion(u8),
    /// The frame names a key id the receiver's keyring does not hold.
    UnknownKey(u32),
    /// The authentication tag does not match: forged, corrupted or wrong key.
    BadTag,
    /// The tag is right, but the key is bound to other nodes than the
    /// frame's `sender`: a peer holding the key speaks for someone else.
    KeyNotForSender {
        /// The key id in the frame.
        key_id: u32,
        /// The sender node id the frame claims.
        sender: u32,
    },
    /// Authentic, but addressed to another node id.
    WrongReceiver {
        /// The node id this receiver answers to.
        expected: u32,
        /// The node id in the frame.
        got: u32,
    },
    /// An opcode this version does not define.
    UnknownOpcode(u8),
    /// A flag in the critical range (bits 8–15) this version does not define.
    UnknownCriticalFlags(u16),
    /// A field holds a value the spec forbids; the text names the field.
    Invalid(&'static str),
}

impl DecodeError {
    /// Every value [`DecodeError::label`] can return, so exporters can
    /// register each counter at zero before the first drop.
    pub const LABELS: &'static [&'static str] = &[
        "truncated",
        "bad_magic",
        "bad_version",
        "unsupported_version",
        "unknown_key",
        "bad_tag",
        "key_not_for_sender",
        "wrong_receiver",
        "unknown_opcode",
        "unknown_critical_flags",
        "invalid_field",
    ];

    /// A stable snake_case name for metrics (`thop_rx_dropped_total{reason=…}`).
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::Truncated(_) => "truncated",
            DecodeError::BadMagic(_) => "bad_magic",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::UnknownKey(_) => "unknown_key",
            DecodeError::BadTag => "bad_tag",
            DecodeError::KeyNotForSender { .. } => "key_not_for_sender",
            DecodeError::WrongReceiver { .. } => "wrong_receiver",
            DecodeError::UnknownOpcode(_) => "unknown_opcode",
            DecodeError::UnknownCriticalFlags(_) => "unknown_critical_flags",
            DecodeError::Invalid(_) => "invalid_field",
        }
    }

    /// A static human-readable reason (names the field where there is one).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated(what) => what,
            DecodeError::BadMagic(_) => "magic is not 0x5448",
            DecodeError::BadVersion(_) => "version 0 is invalid",
            DecodeError::UnsupportedVersion(_) => "version newer than this implementation",
            DecodeError::UnknownKey(_) => "key id not in keyring",
            DecodeError::BadTag => "authentication tag mismatch",
            DecodeError::KeyNotForSender { .. } => "key not bound to the sender node",
            DecodeError::WrongReceiver { .. } => "frame addressed to another node",
            DecodeError::UnknownOpcode(_) => "unknown opcode",
            DecodeError::UnknownCriticalFlags(_) => "unknown critical flag set",
            DecodeError::Invalid(what) => what,
        }
    }

    /// True for failures of authentication (tag or key), which the spec says
    /// to count separately from malformed frames.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            DecodeError::UnknownKey(_) | DecodeError::BadTag | DecodeError::KeyNotForSender { .. }
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated(what) => write!(f, "truncated frame: {what}"),
            DecodeError::BadMagic(m) => write!(f, "bad magic {m:#06x}"),
            DecodeError::BadVersion(v) => write!(f, "bad version {v}"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            DecodeError::UnknownKey(k) => write!(f, "unknown key id {k}"),
            DecodeError::BadTag => f.write_str("authentication tag mismatch"),
            DecodeError::KeyNotForSender { key_id, sender } => {
                write!(f, "key id {key_id} may not be used by node {sender:#010x}")
            }
            DecodeError::WrongReceiver { expected, got } => {
                write!(
                    f,
                    "frame for node {got:#010x}, this node is {expected:#010x}"
                )
            }
            DecodeError::UnknownOpcode(o) => write!(f, "unknown opcode {o}"),
            DecodeError::UnknownCriticalFlags(fl) => write!(f, "unknown critical flags {fl:#06x}"),
            DecodeError::Invalid(what) => write!(f, "invalid field: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}
