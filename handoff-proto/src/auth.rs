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
    /// Key id → the only sender node ids it is accepted from (and the
    /// receivers it is used for). Keys absent here serve every node.
    bound: Vec<(u32, Vec<u32>)>,
}

impl Keyring {
    /// A keyring holding one key, which is current.
    pub fn new(key: Key) -> Keyring {
        Keyring {
            keys: vec![key],
            current: 0,
            bound: Vec::new(),
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

    /// Binds a key to nodes: frames tagged with it are accepted only when
    /// their `sender` is one of `nodes`, and [`Keyring::for_peer`] picks it
    /// for frames to them. A key shared by one switch and one agent then
    /// cannot be used by another agent to speak for that switch, that agent,
    /// or itself under another name (spec §7.3). Binding again adds nodes.
    pub fn bind(&mut self, key_id: u32, nodes: impl IntoIterator<Item = u32>) {
        let at = match self.bound.iter().position(|(id, _)| *id == key_id) {
            Some(i) => i,
            None => {
                self.bound.push((key_id, Vec::new()));
                self.bound.len() - 1
            }
        };
        let list = &mut self.bound[at].1;
        for n in nodes {
            if !list.contains(&n) {
                list.push(n);
            }
        }
    }

    /// Whether a frame from `sender` may be tagged with key `key_id`.
    pub fn allows(&self, key_id: u32, sender: u32) -> bool {
        match self.bound.iter().find(|(id, _)| *id == key_id) {
            Some((_, nodes)) => nodes.contains(&sender),
            None => true,
        }
    }

    /// The key to tag frames for `node` with: the current key when it is
    /// bound to `node` (rotation), else a key bound to `node`, else the
    /// current key.
    pub fn for_peer(&self, node: u32) -> &Key {
        let current = self.current();
        let bound_to_node = |id: u32| {
            self.bound
                .iter()
                .any(|(k, nodes)| *k == id && nodes.contains(&node))
        };
        if bound_to_node(current.id) {
            return current;
        }
        self.bound
            .iter()
            .find(|(_, nodes)| nodes.contains(&node))
            .and_then(|(id, _)| self.get(*id))
            .unwrap_or(current)
    }

    /// Checks the tag of a parsed frame with the key it names, then that the
    /// key may speak for the frame's `sender` ([`Keyring::bind`]).
    pub fn verify(&self, frame: &FrameView<'_>) -> Result<(), DecodeError> {
        let key = self
            .get(frame.key_id())
            .ok_or(DecodeError::UnknownKey(frame.key_id()))?;
        if !key.verify(frame.as_bytes()) {
            return Err(DecodeError::BadTag);
        }
        if !self.allows(frame.key_id(), frame.sender()) {
            return Err(DecodeError::KeyNotForSender {
                key_id: frame.key_id(),
                sender: frame.sender(),
            });
        }
        Ok(())
    }
}

/// Why a key is refused outside a test bed: it is published (a sample from
/// this repository's configurations, documents or tests) or has so little
/// entropy that it may as well be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWeakness {
    /// One of the sample keys shipped with Baton ([`SAMPLE_KEYS`]).
    Sample,
    /// Every byte is the same (e.g. all zero).
    AllSame,
    /// Consecutive bytes differ by a constant (`00 01 02 …`, `ff fe fd …`).
    Sequence,
    /// The key repeats a pattern of at most 16 bytes.
    Repeating(usize),
    /// Fewer than [`MIN_DISTINCT_BYTES`] distinct byte values (a random key
    /// has about 30).
    FewDistinct(usize),
}

/// A key with fewer distinct byte values than this is refused; the chance
/// that 32 random bytes have fewer is below 2^-60.
pub const MIN_DISTINCT_BYTES: usize = 16;

/// Keys published in this repository (configuration samples, documents and
/// tests). Anyone can read them, so a deployment using one is unauthenticated.
pub const SAMPLE_KEYS: &[[u8; KEY_LEN]] = &[
    // configs/agent*.yaml before keys were generated per deployment.
    [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
        0xee, 0xff,
    ],
    // docs/thop.md §10 and Appendix A (test vectors).
    [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f,
    ],
    // configs/base.yaml and the control plane's tests.
    *b"baton-testbed-key-not-for-prod!!",
    // The agent's tests.
    [
        0x62, 0x61, 0x74, 0x6f, 0x6e, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x6b, 0x65, 0x79, 0x2d,
        0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65,
        0x66, 0xaa,
    ],
];

impl fmt::Display for KeyWeakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyWeakness::Sample => f.write_str("is a published sample key"),
            KeyWeakness::AllSame => f.write_str("has the same value in every byte"),
            KeyWeakness::Sequence => f.write_str("is an arithmetic sequence of bytes"),
            KeyWeakness::Repeating(p) => write!(f, "repeats a {p}-byte pattern"),
            KeyWeakness::FewDistinct(n) => write!(
                f,
                "has only {n} distinct byte values (at least {MIN_DISTINCT_BYTES} expected from a random key)"
            ),
        }
    }
}

/// Why `bytes` must not be used as a key in production, or `None` when it
/// looks random. Generate keys with `head -c32 /dev/urandom | xxd -p -c64`.
pub fn key_weakness(bytes: &[u8; KEY_LEN]) -> Option<KeyWeakness> {
    if SAMPLE_KEYS.contains(bytes) {
        return Some(KeyWeakness::Sample);
    }
    if bytes.iter().all(|b| *b == bytes[0]) {
        return Some(KeyWeakness::AllSame);
    }
    let step = bytes[1].wrapping_sub(bytes[0]);
    if bytes.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
        return Some(KeyWeakness::Sequence);
    }
    if let Some(p) = (1..=KEY_LEN / 2).find(|p| (*p..KEY_LEN).all(|i| bytes[i] == bytes[i - p])) {
        return Some(KeyWeakness::Repeating(p));
    }
    let mut seen = [false; 256];
    for b in bytes {
        seen[*b as usize] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    (distinct < MIN_DISTINCT_BYTES).then_some(KeyWeakness::FewDistinct(distinct))
}

/// Reads a key file: 64 hex digits (surrounding white space ignored). The
/// file must not be readable by group or others, since a key anyone on the
/// host can read authenticates nothing.
pub fn read_key_file(path: &std::path::Path) -> Result<[u8; KEY_LEN], String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        return Err(format!(
            "{} has mode {mode:04o}: a key file must not be readable by group or others (chmod 600)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = Key::from_hex(0, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key.bytes)
}

impl Key {
    /// Why this key must not be used outside a test bed ([`key_weakness`]).
    pub fn weakness(&self) -> Option<KeyWeakness> {
        key_weakness(&self.bytes)
    }
}

#[cfg(test)]
mod strength_tests {
    use super::*;

    fn hex(s: &str) -> [u8; KEY_LEN] {
        Key::from_hex(0, s).unwrap().bytes
    }

    #[test]
    fn published_and_patterned_keys_are_weak() {
        for k in SAMPLE_KEYS {
            assert_eq!(key_weakness(k), Some(KeyWeakness::Sample));
        }
        assert_eq!(key_weakness(&[0; 32]), Some(KeyWeakness::AllSame));
        assert_eq!(key_weakness(&[0x42; 32]), Some(KeyWeakness::AllSame));
        let mut asc = [0u8; 32];
        for (i, b) in asc.iter_mut().enumerate() {
            *b = 0x20 + i as u8;
        }
        assert_eq!(key_weakness(&asc), Some(KeyWeakness::Sequence));
        let mut desc = [0u8; 32];
        for (i, b) in desc.iter_mut().enumerate() {
            *b = 0xff - 3 * i as u8;
        }
        assert_eq!(key_weakness(&desc), Some(KeyWeakness::Sequence));
        let rep = hex("0123456789abcdef02468ace13579bdf0123456789abcdef02468ace13579bdf");
        assert_eq!(key_weakness(&rep), Some(KeyWeakness::Repeating(16)));
        let few = *b"correct horse battery staple!!!!";
        assert!(matches!(
            key_weakness(&few),
            Some(KeyWeakness::FewDistinct(_))
        ));
    }

    #[test]
    fn random_keys_are_accepted() {
        // Keys as `head -c32 /dev/urandom | xxd -p -c64` prints them.
        for k in [
            "3f1c9a7be20d44c58e61b0f29d7a3c11e5b8047f6d92ac30b1e4f8a7256c0d9e",
            "a4d7c2e19f3b6058172cde94b0fa8e6d3c5f0b21e7d4986a1f3c5e7092b4d6f8",
        ] {
            assert_eq!(key_weakness(&hex(k)), None, "{k}");
        }
        let derived = Key::from_passphrase(1, b"a long operator pass-phrase").unwrap();
        assert_eq!(derived.weakness(), None);
    }

    #[test]
    fn key_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("thop-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let k = "3f1c9a7be20d44c58e61b0f29d7a3c11e5b8047f6d92ac30b1e4f8a7256c0d9e\n";
        std::fs::write(&path, k).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_key_file(&path).unwrap_err();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&path), Ok(hex(k.trim())));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
