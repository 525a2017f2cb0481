//! Random bytes for the switch's secrets (SYN cookies, THOP timestamps),
//! its boot identity and its connection serials.
//!
//! A leaf module so that configuration, connection ids and the engine can
//! all draw from it without depending on each other.

/// 16 random bytes from the kernel; falls back to the process' hash seed.
pub fn random_secret() -> [u8; 16] {
    use std::io::Read;
    let mut s = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut s).is_ok() {
            return s;
        }
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    let a = h.finish();
    s[..8].copy_from_slice(&a.to_le_bytes());
    s[8..].copy_from_slice(&a.rotate_left(17).to_le_bytes());
    s
}
