//! The switch's neighbour cache for backend data addresses, shared by all
//! workers: ARP fills it for IPv4, neighbour discovery ([`crate::wire::nd`]) for
//! IPv6 (an IPv4 address is kept IPv4-mapped, so one slot layout serves both).
//!
//! ARP replies reach whichever worker the NIC picks, while the MAC is needed
//! by the worker that hands a connection off; so the cache is one fixed array
//! shared through an `Arc`, each slot guarded by a seqlock (readers never
//! block; writers are rare: one ARP reply per backend per refresh interval).
//! It is consulted once per handoff, never per forwarded packet: a FORWARDING
//! entry stores its backend's MAC.
//!
//! To resist cache poisoning and flooding, a MAC is learned only for an
//! address the switch asked about (the backends and agents it hands off to),
//! and static entries from the config are never overwritten. A known MAC is
//! replaced only by a reply to the switch's own request still outstanding
//! (asked after the last confirmation, at most [`ANSWER_MS`] ago): any other
//! ARP naming a different MAC (gratuitous, unsolicited, late) is refused and
//! counted, so a host on the segment cannot silently retarget a backend.
//! ARP carrying the MAC already known only confirms it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::wire::Mac;

/// Slots in the cache (backends per switch are far fewer).
pub const SLOTS: usize = 1024;
const PROBE: usize = 16;
const VALID: u64 = 1 << 63;
const STATIC: u64 = 1 << 62;
const PENDING: u64 = 1 << 61;
/// How long after a request its reply may change a known MAC.
pub const ANSWER_MS: u64 = 3_000;

/// What one ARP packet did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Not an address the switch asked about, or a static one.
    Ignored,
    /// The MAC already known: confirmed (its age restarts).
    Confirmed,
    /// The first MAC for an address the switch asked about.
    Resolved,
    /// A new MAC, from a reply to the switch's outstanding request.
    Changed,
    /// A different MAC the switch did not ask for: not taken.
    Refused,
}

#[derive(Default)]
struct Slot {
    seq: AtomicU32,
    /// The address, IPv4-mapped for IPv4: high and low 64 bits.
    ip_hi: AtomicU64,
    ip_lo: AtomicU64,
    /// MAC in the low 48 bits, flags above.
    mac: AtomicU64,
    /// Last confirmation (ms on the workers' clock).
    updated: AtomicU64,
    /// Last request sent (ms).
    requested: AtomicU64,
}

/// What the cache knows about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A confirmed MAC.
    Fresh(Mac),
    /// A MAC older than the refresh interval: use it, and send a request.
    Stale(Mac),
    /// No usable MAC.
    Missing,
}

/// The shared cache.
pub struct ArpCache {
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for ArpCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArpCache").finish_non_exhaustive()
    }
}

impl Default for ArpCache {
    fn default() -> Self {
        Self::new()
    }
}

fn pack(m: Mac) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

fn unpack(v: u64) -> Mac {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn home(ip: u128) -> usize {
    let x = (ip as u64) ^ ((ip >> 64) as u64).rotate_left(17);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % SLOTS
}

fn slot_ip(s: &Slot) -> u128 {
    (u128::from(s.ip_hi.load(Ordering::Relaxed)) << 64)
        | u128::from(s.ip_lo.load(Ordering::Relaxed))
}

fn set_slot_ip(s: &Slot, ip: u128) {
    s.ip_hi.store((ip >> 64) as u64, Ordering::Relaxed);
    s.ip_lo.store(ip as u64, Ordering::Relaxed);
}

impl ArpCache {
    /// An empty cache.
    pub fn new() -> ArpCache {
        ArpCache {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    fn read(&self, s: &Slot) -> (u128, u64, u64, u64) {
        loop {
            let a = s.seq.load(Ordering::Acquire);
            if a & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let v = (
                slot_ip(s),
                s.mac.load(Ordering::Relaxed),
                s.updated.load(Ordering::Relaxed),
                s.requested.load(Ordering::Relaxed),
            );
            std::sync::atomic::fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) == a {
                return v;
            }
        }
    }

    fn write(&self, s: &Slot, f: impl FnOnce(&Slot)) {
        loop {
            let a = s.seq.load(Ordering::Relaxed);
            if a & 1 == 0
                && s.seq
                    .compare_exchange_weak(a, a + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                f(s);
                s.seq.store(a + 2, Ordering::Release);
                return;
            }
            std::hint::spin_loop();
        }
    }

    fn find(&self, ip: u128) -> Option<&Slot> {
        let h = home(ip);
        (0..PROBE).map(|k| &self.slots[(h + k) % SLOTS]).find(|s| {
            let (sip, flags, _, _) = self.read(s);
            sip == ip && flags & (VALID | PENDING) != 0
        })
    }

    fn find_or_claim(&self, ip: u128) -> Option<&Slot> {
        if let Some(s) = self.find(ip) {
            return Some(s);
        }
        let h = home(ip);
        (0..PROBE).map(|k| &self.slots[(h + k) % SLOTS]).find(|s| {
            let (_, flags, _, _) = self.read(s);
            flags & (VALID | PENDING) == 0
        })
    }

    /// Records a static MAC (never expires, never overwritten by ARP).
    pub fn set_static(&self, ip: IpAddr, mac: Mac) -> bool {
        let ip = key(ip);
        let Some(s) = self.find_or_claim(ip) else {
            return false;
        };
        self.write(s, |s| {
            set_slot_ip(s, ip);
            s.mac.store(pack(mac) | VALID | STATIC, Ordering::Relaxed);
        });
        true
    }

    /// What is known about `ip` at `now_ms`.
    pub fn lookup(&self, ip: IpAddr, now_ms: u64, refresh_ms: u64, timeout_ms: u64) -> Lookup {
        let Some(s) = self.find(key(ip)) else {
            return Lookup::Missing;
        };
        let (_, v, updated, _) = self.read(s);
        if v & VALID == 0 {
            return Lookup::Missing;
        }
        let age = now_ms.saturating_sub(updated);
        if v & STATIC != 0 || age < refresh_ms {
            Lookup::Fresh(unpack(v))
        } else if age < timeout_ms {
            Lookup::Stale(unpack(v))
        } else {
            Lookup::Missing
        }
    }

    /// Notes that the switch wants `ip`; true when a request should go out
    /// now (at most one per `retry_ms` per address across all workers).
    pub fn want(&self, ip: IpAddr, now_ms: u64, retry_ms: u64) -> bool {
        let ip = key(ip);
        let Some(s) = self.find_or_claim(ip) else {
            return false;
        };
        let mut send = false;
        self.write(s, |s| {
            let v = s.mac.load(Ordering::Relaxed);
            if slot_ip(s) != ip || v & (VALID | PENDING) == 0 {
                set_slot_ip(s, ip);
                s.mac.store(PENDING, Ordering::Relaxed);
                s.requested.store(now_ms, Ordering::Relaxed);
                send = true;
                return;
            }
            if v & STATIC != 0 {
                return;
            }
            let last = s.requested.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= retry_ms || last > now_ms {
                s.requested.store(now_ms, Ordering::Relaxed);
                send = true;
            }
        });
        send
    }

    /// Learns `ip → mac` from an ARP packet. `reply_to_us`: the packet is an
    /// ARP reply addressed to the switch's data address (only such a reply,
    /// to a request still outstanding, may set or change a MAC).
    pub fn learn(&self, ip: IpAddr, mac: Mac, now_ms: u64, reply_to_us: bool) -> Learned {
        let ip = key(ip);
        let Some(s) = self.find(ip) else {
            return Learned::Ignored;
        };
        let mut out = Learned::Ignored;
        self.write(s, |s| {
            let v = s.mac.load(Ordering::Relaxed);
            if slot_ip(s) != ip || v & STATIC != 0 {
                return;
            }
            let known = v & VALID != 0;
            if known && unpack(v) == mac {
                s.updated.store(now_ms, Ordering::Relaxed);
                out = Learned::Confirmed;
                return;
            }
            let asked = s.requested.load(Ordering::Relaxed);
            let outstanding = (!known || asked > s.updated.load(Ordering::Relaxed))
                && now_ms.saturating_sub(asked) <= ANSWER_MS;
            if !reply_to_us || !outstanding {
                out = Learned::Refused;
                return;
            }
            s.mac.store(pack(mac) | VALID, Ordering::Relaxed);
            s.updated.store(now_ms, Ordering::Relaxed);
            out = if known {
                Learned::Changed
            } else {
                Learned::Resolved
            };
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_only_what_it_asked_for_and_ages() {
        let c = ArpCache::new();
        let ip = IpAddr::from([198, 18, 0, 11]);
        let mac = [2, 0, 0, 0, 0, 11];
        assert_eq!(c.learn(ip, mac, 0, true), Learned::Ignored, "unsolicited");
        assert_eq!(c.lookup(ip, 0, 1000, 5000), Lookup::Missing);
        assert!(c.want(ip, 0, 100));
        assert!(!c.want(ip, 50, 100), "rate limited");
        assert_eq!(c.learn(ip, mac, 60, false), Learned::Refused, "not a reply");
        assert_eq!(c.learn(ip, mac, 60, true), Learned::Resolved);
        assert_eq!(c.lookup(ip, 100, 1000, 5000), Lookup::Fresh(mac));
        assert_eq!(c.lookup(ip, 2000, 1000, 5000), Lookup::Stale(mac));
        assert_eq!(c.lookup(ip, 9000, 1000, 5000), Lookup::Missing);
        let s = IpAddr::from([198, 18, 0, 12]);
        assert!(c.set_static(s, [9; 6]));
        assert_eq!(c.learn(s, [1; 6], 10, true), Learned::Ignored);
        assert_eq!(c.lookup(s, 1 << 40, 1, 1), Lookup::Fresh([9; 6]));
    }

    #[test]
    fn ipv6_and_ipv4_addresses_share_the_cache_without_meeting() {
        let c = ArpCache::new();
        let v4 = IpAddr::from([198, 18, 0, 11]);
        let v6: IpAddr = "2001:2::11".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.18.0.11".parse().unwrap();
        assert!(c.want(v6, 0, 100));
        assert_eq!(c.learn(v6, [6; 6], 1, true), Learned::Resolved);
        assert_eq!(c.lookup(v4, 2, 1000, 5000), Lookup::Missing);
        assert!(c.want(v4, 0, 100));
        assert_eq!(c.learn(v4, [4; 6], 1, true), Learned::Resolved);
        assert_eq!(c.lookup(v6, 2, 1000, 5000), Lookup::Fresh([6; 6]));
        assert_eq!(c.lookup(v4, 2, 1000, 5000), Lookup::Fresh([4; 6]));
        // The mapped form is the IPv4 address's key: the same entry.
        assert_eq!(c.lookup(mapped, 2, 1000, 5000), Lookup::Fresh([4; 6]));
    }

    #[test]
    fn a_known_mac_changes_only_on_a_reply_to_an_outstanding_request() {
        let c = ArpCache::new();
        let ip = IpAddr::from([198, 18, 0, 11]);
        let (real, evil, new) = (
            [2, 0, 0, 0, 0, 11],
            [2, 0xee, 0, 0, 0, 1],
            [2, 0, 0, 0, 1, 11],
        );
        assert!(c.want(ip, 0, 100));
        assert_eq!(c.learn(ip, real, 1, true), Learned::Resolved);
        assert_eq!(
            c.learn(ip, evil, 2, true),
            Learned::Refused,
            "answered already"
        );
        assert_eq!(c.learn(ip, evil, 2, false), Learned::Refused);
        assert_eq!(c.learn(ip, real, 3, false), Learned::Confirmed);
        assert_eq!(c.lookup(ip, 4, 1000, 5000), Lookup::Fresh(real));
        // The entry ages; the switch asks again and the backend moved.
        assert!(c.want(ip, 2000, 100));
        assert_eq!(c.learn(ip, new, 2001, true), Learned::Changed);
        assert_eq!(c.lookup(ip, 2002, 1000, 5000), Lookup::Fresh(new));
        // A request long unanswered does not let a late reply in.
        assert!(c.want(ip, 4000, 100));
        assert_eq!(
            c.learn(ip, evil, 4000 + ANSWER_MS + 1, true),
            Learned::Refused
        );
    }
}
