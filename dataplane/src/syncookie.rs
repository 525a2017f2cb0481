//! Initial sequence numbers, timestamp offsets and SYN cookies.
//!
//! SYN cookies follow Linux (`net/ipv4/syncookies.c`) so a reader who knows
//! that code knows this one:
//!
//! ```text
//! cookie = H0(saddr,daddr,sport,dport) + sseq + (count << 24)
//!        + ((H1(saddr,daddr,sport,dport,count) + mssind) & 0xffffff)
//! ```
//!
//! where `count` is the minute counter and `mssind` indexes
//! `{536, 1300, 1440, 1460}`. A cookie is valid for [`MAX_AGE`] minutes.
//! Window scale, SACK and ECN travel in the low 6 bits of our TSval
//! (`cookie_init_timestamp`): `wscale` (0xf = none) in bits 0–3, SACK in bit
//! 4, ECN in bit 5. Without timestamps those options are lost, as in Linux.
//!
//! The hash is SipHash-2-4 keyed from the worker secret (Linux uses siphash
//! too). Ordinary ISNs are `F(4-tuple, client ISN, secret)` (RFC 6528 without
//! the clock term: the switch recomputes the ISN instead of storing it, and
//! the client ISN already differs per connection).

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

use crate::table::FlowKey;

/// Linux's MSS table for IPv4 cookies (`msstab` in syncookies.c).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// Linux's MSS table for IPv6 cookies (`msstab` in ipv6/syncookies.c: MTUs
/// of 1280, 1480, 1500 and 9000 less the 60 bytes of IPv6 and TCP headers).
pub const MSS_TABLE_V6: [u16; 4] = [1220, 1420, 1440, 8940];

/// The cookie MSS table for the family of `key`'s client.
fn mss_table(key: &FlowKey) -> &'static [u16; 4] {
    if key.client_ip().is_ipv6() {
        &MSS_TABLE_V6
    } else {
        &MSS_TABLE
    }
}
/// Cookie lifetime in minutes (Linux `MAX_SYNCOOKIE_AGE`).
pub const MAX_AGE: u32 = 2;
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Bits of TSval carrying options.
pub const TS_OPT_BITS: u32 = 6;
const TS_MASK: u32 = (1 << TS_OPT_BITS) - 1;
const TS_NO_WSCALE: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;

/// Options recovered from a valid cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOpts {
    pub mss: u16,
    /// The client's window scale, when it sent one.
    pub window_scale: Option<u8>,
    pub sack: bool,
    /// Timestamps were negotiated.
    pub timestamps: bool,
}

/// Keyed hashes derived from the worker secret.
#[derive(Clone)]
pub struct Secrets {
    k: [(u64, u64); 4],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// Which derived key a hash uses.
#[derive(Clone, Copy)]
enum Use {
    Cookie0 = 0,
    Cookie1 = 1,
    Isn = 2,
    TsOffset = 3,
}

impl Secrets {
    /// Derives the keys from a 16-byte secret.
    pub fn new(secret: [u8; 16]) -> Secrets {
        let a = u64::from_le_bytes(secret[..8].try_into().unwrap_or([0; 8]));
        let b = u64::from_le_bytes(secret[8..].try_into().unwrap_or([0; 8]));
        let derive = |tag: u64| {
            let mut h = SipHasher24::new_with_keys(a, b);
            h.write_u64(tag);
            let x = h.finish();
            h.write_u64(!tag);
            (x, h.finish())
        };
        Secrets {
            k: [derive(1), derive(2), derive(3), derive(4)],
        }
    }

    /// Four words for the table's bucket hash.
    pub fn table_seed(&self) -> [u64; 4] {
        [
            self.k[0].0 ^ 0x5bd1e995,
            self.k[1].1,
            self.k[2].0 ^ self.k[3].1,
            self.k[3].0,
        ]
    }

    fn hash(&self, u: Use, key: &FlowKey, vip: &[u8; 16], vport: u16, extra: u32) -> u32 {
        let (k0, k1) = self.k[u as usize];
        let mut h = SipHasher24::new_with_keys(k0, k1);
        h.write(&key.client);
        h.write(vip);
        h.write_u32(((key.client_port as u32) << 16) | vport as u32);
        h.write_u32(extra);
        h.finish() as u32
    }

    /// Our ISN for a connection whose client ISN is `irs`.
    pub fn isn(&self, key: &FlowKey, vip: &[u8; 16], vport: u16, irs: u32) -> u32 {
        self.hash(Use::Isn, key, vip, vport, irs)
    }

    /// Per-connection TSval offset (hides the switch's uptime, as Linux does).
    pub fn ts_offset(&self, key: &FlowKey, vip: &[u8; 16], vport: u16) -> u32 {
        self.hash(Use::TsOffset, key, vip, vport, 0)
    }

    /// The cookie ISN for a SYN with client ISN `sseq` and MSS `mss`, at
    /// minute `count`.
    pub fn cookie(
        &self,
        key: &FlowKey,
        vip: &[u8; 16],
        vport: u16,
        sseq: u32,
        mss: u16,
        count: u32,
    ) -> u32 {
        let mssind = mss_table(key).iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
        self.hash(Use::Cookie0, key, vip, vport, 0)
            .wrapping_add(sseq)
            .wrapping_add(count << COOKIE_BITS)
            .wrapping_add(
                self.hash(Use::Cookie1, key, vip, vport, count)
                    .wrapping_add(mssind)
                    & COOKIE_MASK,
            )
    }

    /// Checks an ACK's cookie (`ack - 1`) against client ISN `sseq` (`seq - 1`)
    /// at minute `count`; returns the MSS on success.
    pub fn check_cookie(
        &self,
        key: &FlowKey,
        vip: &[u8; 16],
        vport: u16,
        cookie: u32,
        sseq: u32,
        count: u32,
    ) -> Option<u16> {
        let c = cookie.wrapping_sub(
            self.hash(Use::Cookie0, key, vip, vport, 0)
                .wrapping_add(sseq),
        );
        let diff = count.wrapping_sub(c >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
        if diff >= MAX_AGE {
            return None;
        }
        let issued = count.wrapping_sub(diff);
        let mssind = c.wrapping_sub(self.hash(Use::Cookie1, key, vip, vport, issued)) & COOKIE_MASK;
        mss_table(key).get(mssind as usize).copied()
    }
}

/// Our TSval for a cookie SYN/ACK: `ts_now` with its low bits carrying the
/// client's options, never ahead of `ts_now` (Linux `cookie_init_timestamp`).
pub fn cookie_tsval(ts_now: u32, client_wscale: Option<u8>, sack: bool) -> u32 {
    let mut opts = client_wscale.map_or(TS_NO_WSCALE, |w| w.min(14) as u32);
    if sack {
        opts |= TS_SACK;
    }
    let ts = (ts_now & !TS_MASK) | opts;
    if (ts.wrapping_sub(ts_now) as i32) > 0 {
        ts.wrapping_sub(1 << TS_OPT_BITS)
    } else {
        ts
    }
}

/// Recovers the client's options from the TSecr of the completing ACK
/// (Linux `cookie_timestamp_decode`); None when the bits are invalid.
pub fn decode_tsecr(tsecr: u32) -> Option<(Option<u8>, bool)> {
    let ws = tsecr & TS_NO_WSCALE;
    let sack = tsecr & TS_SACK != 0;
    if ws == TS_NO_WSCALE {
        return Some((None, sack));
    }
    if ws > 14 {
        return None;
    }
    Some((Some(ws as u8), sack))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn key() -> (FlowKey, [u8; 16]) {
        let k = FlowKey::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 101)), 40000, 0);
        (k, Ipv4Addr::new(198, 18, 0, 10).to_ipv6_mapped().octets())
    }

    #[test]
    fn cookie_round_trip_and_ageing() {
        let s = Secrets::new([7; 16]);
        let (k, vip) = key();
        for (mss, want) in [
            (1460, 1460),
            (1500, 1460),
            (1440, 1440),
            (1400, 1300),
            (600, 536),
            (100, 536),
        ] {
            let c = s.cookie(&k, &vip, 80, 1000, mss, 50);
            assert_eq!(s.check_cookie(&k, &vip, 80, c, 1000, 50), Some(want));
            assert_eq!(s.check_cookie(&k, &vip, 80, c, 1000, 51), Some(want));
            assert_eq!(s.check_cookie(&k, &vip, 80, c, 1000, 52), None, "expired");
            assert_eq!(
                s.check_cookie(&k, &vip, 80, c, 1000 + 77_777, 50),
                None,
                "other client ISN"
            );
            assert_eq!(
                s.check_cookie(&k, &vip, 81, c, 1000, 50),
                None,
                "other port"
            );
            assert_eq!(
                s.check_cookie(&k, &vip, 80, c ^ 0x100, 1000, 50),
                None,
                "forged"
            );
        }
        let other = Secrets::new([8; 16]);
        let c = s.cookie(&k, &vip, 80, 1000, 1460, 50);
        assert_eq!(other.check_cookie(&k, &vip, 80, c, 1000, 50), None);
    }

    #[test]
    fn tsval_carries_options_and_never_runs_ahead() {
        for now in [0u32, 5, 63, 64, 1_000_000, u32::MAX] {
            for ws in [None, Some(0), Some(7), Some(14)] {
                for sack in [false, true] {
                    let ts = cookie_tsval(now, ws, sack);
                    assert!((now.wrapping_sub(ts) as i32) >= 0 && now.wrapping_sub(ts) < 64);
                    assert_eq!(decode_tsecr(ts), Some((ws, sack)));
                }
            }
        }
        assert_eq!(decode_tsecr(0xf), Some((None, false)));
    }
}
