//! Frame authentication (spec §7): keyed BLAKE3 over the header without its
//! tag field and the body, truncated to 16 bytes, compared in constant time.
//! Key ids let operators rotate keys: a [`Keyring`] holds several keys, a
//! sender tags with the current one, a receiver accepts any it holds.

use core::fmt;

use crate::error::DecodeError;
use crate::header::{field, FrameView, HEADER_LEN, TAG_LEN, TAG_OFFSET};

/// Length of a THOP key.
pub const KEY_LEN: usize = 32;

/// BLAKE3 `derive_key` context for keys made from operator pass-phrases.
pub const PASSPHRASE_CONTEXT: &str = "Baton THOP v1 2026-11-26 frame key from passphrase";

/// One 32-byte key and the id frames name it by. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    id: u32,
    bytes: [u8; KEY_LEN],
}

/// Why a key given in configuration was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Hex keys are exactly 64 hex digits.
    BadHexLength(usize),
    /// A character that is not a hex digit.
    NotHex,
    /// A pass-phrase shorter than 16 bytes (too guessable to be a key).
    PassphraseTooShort(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadHexLength(n) => {
                write!(f, "hex key must be 64 hex digits, got {n} characters")
            }
            KeyError::NotHex => f.write_str("hex key contains a non-hex character"),
            KeyError::PassphraseTooShort(n) => {
                write!(f, "pass-phrase must be at least 16 bytes, got {n}")
            }
        }
    }
}

impl std::error::Error for KeyError {}

impl Key {
    /// A key from its raw bytes.
    pub fn new(id: u32, bytes: [u8; KEY_LEN]) -> Key {
        Key { id, bytes }
    }

    /// A key from 64 hex digits (as written in YAML configuration).
    pub fn from_hex(id: u32, hex: &str) -> Result<Key, KeyError> {
        let hex = hex.trim();
        if hex.len() != 2 * KEY_LEN {
            return Err(KeyError::BadHexLength(hex.len()));
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(KeyError::NotHex)?;
            let lo = hex_val(pair[1]).ok_or(KeyError::NotHex)?;
            bytes[i] = hi << 4 | lo;
        }
        Ok(Key { id, bytes })
    }

    /// A key derived from a pass-phrase of at least 16 bytes with BLAKE3's
    /// key-derivation mode ([`PASSPHRASE_CONTEXT`]). Both ends must use the
    /// same pass-phrase and id.
    pub fn from_passphrase(id: u32, passphrase: &[u8]) -> Result<Key, KeyError> {
        if passphrase.len() < 16 {
            return Err(KeyError::PassphraseTooShort(passphrase.len()));
        }
        Ok(Key {
            id,
            bytes: blake3::derive_key(PASSPHRASE_CONTEXT, passphrase),
        })
    }

    /// The key id carried in frames tagged with this key.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The tag of `frame` (header + body; the tag field's content is ignored).
    ///
    /// # Panics
    /// If `frame` is shorter than [`HEADER_LEN`]: a caller bug, since every
    /// frame this crate builds or accepts is at least that long.
    pub fn tag(&self, frame: &[u8]) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.bytes);
        h.update(&frame[..TAG_OFFSET]);
        h.update(&frame[HEADER_LEN..]);
        let mut out = [0u8; TAG_LEN];
        h.finalize_xof().fill(&mut out);
        out
    }

    /// Writes this key's id and the tag into a complete frame.
    ///
    /// # Panics
    /// If `frame` is shorter than [`HEADER_LEN`] (caller bug).
    pub fn sign_in_place(&self, frame: &mut [u8]) {
        frame[field::KEY_ID..field::KEY_ID + 4].copy_from_slice(&self.id.to_be_bytes());
        let tag = self.tag(frame);
        frame[TAG_OFFSET..HEADER_LEN].copy_from_slice(&tag);
    }

    /// True when `frame`'s tag is this key's tag, compared in constant time.
    pub fn verify(&self, frame: &[u8]) -> bool {
        if frame.len() < HEADER_LEN {
            return false;
        }
        let want = self.tag(frame);
        let mut got = [0u8; TAG_LEN];
        got.copy_from_slice(&frame[TAG_OFFSET..HEADER_LEN]);
        constant_time_eq::constant_time_eq_16(&want, &got)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The keys a node holds: the current one for sending, all of them for
/// receiving. Rotation (spec §7.3): add the new key everywhere, then make it
/// current on senders, then remove the old one.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Key>,
    current: usize,
}

impl Keyring {
    /// A keyring holding one key, which is current.
    pub fn new(key: Key) -> Keyring {
        Keyring {
            keys: vec![key],
            current: 0,
        }
    }

    /// Adds a key for receiving (or replaces the key with the same id).
    pub fn insert(&mut self, key: Key) {
        match self.keys.iter().position(|k| k.id == key.id) {
            Some(i) => self.keys[i] = key,
            None => self.keys.push(key),
        }
    }

    /// Makes the key with this id the one senders use; false if absent.
    pub fn set_current(&mut self, id: u32) -> bool {
        match self.keys.iter().position(|k| k.id == id) {
            Some(i) => {
                self.current = i;
                true
            }
            None => false,
        }
    }

    /// Removes a key; the current key cannot be removed (false).
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(i) = self.keys.iter().position(|k| k.id == id) else {
            return false;
        };
        if i == self.current {
            return false;
        }
        self.keys.remove(i);
        if i < self.current {
            self.current -= 1;
        }
        true
    }

    /// The key senders tag with.
    pub fn current(&self) -> &Key {
        &self.keys[self.current]
    }

    /// The key with this id.
    pub fn get(&self, id: u32) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Ids of every key held.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    /// Checks the tag of a parsed frame with the key it names.
    pub fn verify(&self, frame: &FrameView<'_>) -> Result<(), DecodeError> {
        let key = self
            .get(frame.key_id())
            .ok_or(DecodeError::UnknownKey(frame.key_id()))?;
        if key.verify(frame.as_bytes()) {
            Ok(())
        } else {
            Err(DecodeError::BadTag)
        }
    }
}
