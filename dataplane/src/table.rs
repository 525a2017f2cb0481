//! One worker's connection table: fixed capacity, O(1) lookup, one timer per
//! entry on a timer wheel, no allocation and no locks after start-up.
//!
//! Layout: a slab of [`Entry`] (64 bytes, one cache line) plus a bucket array
//! of `u32` heads (chained hashing through `Entry::next`). Free slots form a
//! list through the same field. Each entry sits on at most one timer-wheel
//! bucket (intrusive doubly linked list, `tprev`/`tnext`), so arming,
//! re-arming and cancelling are O(1).
//!
//! The wheel has [`WHEEL_SLOTS`] buckets of 1 ms. A deadline beyond one
//! rotation goes to its bucket modulo the wheel and is skipped (left in place)
//! until its round comes; idle FORWARDING entries are not moved per packet:
//! `last_seen` is written and the expiry handler re-arms if the entry was
//! active. Times are `u32` milliseconds compared with wrapping arithmetic, so
//! any deadline less than ~24 days ahead is ordered correctly.
//!
//! When the table is full, new connections are refused (the SYN is dropped
//! and counted `table_full`) unless the engine can free a FORWARDING entry
//! that has been idle for `evict_idle_after` (an active one is never
//! evicted: that would silently cut a live handed-off connection).

use std::net::IpAddr;

use crate::hugemem::HugeSlice;

/// "No entry" in links.
pub const NIL: u32 = u32::MAX;
/// `tprev` of an entry whose timer is not armed (an armed entry's `tprev`
/// is a slot or [`NIL`]).
const UNARMED: u32 = u32::MAX - 1;
/// Connection serials wrap at 2^24.
pub const SERIAL_MASK: u32 = (1 << 24) - 1;
/// Timer wheel size (1 ms buckets).
pub const WHEEL_SLOTS: usize = 8192;

/// Milliseconds on the worker's clock (wrapping).
pub type Ms = u32;

/// True when `a` is at or before `b` on the wrapping clock.
#[inline]
pub fn ms_le(a: Ms, b: Ms) -> bool {
    (b.wrapping_sub(a) as i32) >= 0
}

/// The connection key: client address and port plus the service index. The
/// VIP and port follow from the service, so the key stays 20 bytes even with
/// 16-byte (IPv6-ready) client addresses.
#[derive(Debug, Clone, Copy, Eq, Default)]
#[repr(C)]
pub struct FlowKey {
    /// Client address; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`).
    pub client: [u8; 16],
    pub client_port: u16,
    pub service: u16,
}

impl PartialEq for FlowKey {
    /// Word-wise: two u64 loads and one u32 per side instead of a byte compare.
    #[inline]
    fn eq(&self, o: &FlowKey) -> bool {
        let w = |k: &FlowKey| {
            (
                u64::from_ne_bytes(k.client[..8].try_into().unwrap_or([0; 8])),
                u64::from_ne_bytes(k.client[8..].try_into().unwrap_or([0; 8])),
                ((k.client_port as u32) << 16) | k.service as u32,
            )
        };
        w(self) == w(o)
    }
}

impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.client.hash(h);
        self.client_port.hash(h);
        self.service.hash(h);
    }
}

impl FlowKey {
    /// The key for a client and service.
    #[inline]
    pub fn new(client: IpAddr, client_port: u16, service: u16) -> FlowKey {
        let client = match client {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        FlowKey {
            client,
            client_port,
            service,
        }
    }

    /// The client address back as an `IpAddr`.
    pub fn client_ip(&self) -> IpAddr {
        let a = std::net::Ipv6Addr::from(self.client);
        match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        }
    }

    /// Keyed hash for bucket selection (flooding-resistant: the seed is secret).
    #[inline(always)]
    pub fn hash(&self, seed: &[u64; 4]) -> u64 {
        let a = u64::from_le_bytes(self.client[0..8].try_into().unwrap_or([0; 8]));
        let b = u64::from_le_bytes(self.client[8..16].try_into().unwrap_or([0; 8]));
        let c = ((self.client_port as u64) << 16) | self.service as u64;
        mix(mum(a ^ seed[0], b ^ seed[1]) ^ mum(c ^ seed[2], seed[3]))
    }
}

#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline(always)]
fn mix(x: u64) -> u64 {
    mum(x, 0x9e37_79b9_7f4a_7c15)
}

/// Per-state data of an entry. The variants are kept small so an entry is
/// one cache line; WAITHEADER and HANDOFF keep their bulky state (request
/// buffer, options) in a separate session pool and hold its index here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Slot {
    /// Not in use.
    #[default]
    Free,
    /// SYN/ACK sent, waiting for the client's ACK. Our ISN is recomputed from
    /// the secret, so it is not stored.
    SynRcvd {
        irs: u32,
        ts_recent: u32,
        mss: u16,
        /// Client's window scale, or 0xff when the client sent none.
        wscale: u8,
        /// Bit 0: SACK permitted; bit 1: timestamps.
        opts: u8,
        mac: [u8; 6],
    },
    /// WAITHEADER, DISPATCH, HANDOFF or CLOSING: state in session `0`.
    Session(u32),
    /// FORWARDING: relay client packets to this backend.
    Forwarding {
        mac: [u8; 6],
        backend: u32,
        /// The client's FIN was relayed (FORWARDING_FIN).
        fin: bool,
        /// The agent reported the backend's socket closed before the
        /// client's FIN (FORWARDING_CLOSED).
        closed: bool,
        /// The client's next sequence number: the highest end of client data
        /// (and FIN) relayed so far. A RST or FIN is judged against it.
        rcv_nxt: u32,
        /// The backend's receive window scale (its window is at most
        /// `65535 << wshift` bytes): the width of the acceptable range.
        wshift: u8,
        /// The in-kernel fast path relays this flow too (its packets may
        /// never reach the worker; `last_seen` and `rcv_nxt` are read back
        /// from it before they are judged).
        offloaded: bool,
    },
    /// The switch closed the connection itself; re-ACK retransmitted FINs.
    TimeWait {
        snd_nxt: u32,
        rcv_nxt: u32,
        ts_recent: u32,
        ts: bool,
        mac: [u8; 6],
    },
}

/// One table entry (64 bytes).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Entry {
    pub key: FlowKey,
    /// Hash chain (or free list) link.
    next: u32,
    /// Timer list links; `tprev` is [`UNARMED`] while no timer is armed.
    tprev: u32,
    tnext: u32,
    /// Timer deadline (valid while armed).
    deadline: Ms,
    /// Last client packet (FORWARDING idle check).
    pub last_seen: Ms,
    /// The worker's connection serial (24 bits, little-endian) when the slot
    /// was taken: tells this connection from earlier users of the slot
    /// (stale decisions and THOP replies) and is part of its THOP connection
    /// id. Three bytes keep the entry at one cache line.
    serial: [u8; 3],
    /// Retransmission count of the current state.
    pub retries: u8,
    pub slot: Slot,
}

impl Entry {
    /// The connection serial of the slot's current (or last) connection.
    #[inline]
    pub fn generation(&self) -> u32 {
        let [a, b, c] = self.serial;
        u32::from_le_bytes([a, b, c, 0])
    }
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            key: FlowKey::default(),
            next: NIL,
            tprev: UNARMED,
            tnext: NIL,
            deadline: 0,
            last_seen: 0,
            serial: [0; 3],
            retries: 0,
            slot: Slot::Free,
        }
    }
}

/// A cache prefetch hint (no effect on other targets).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults and reads nothing
    // the program can observe, and `p` points into a live allocation.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The table was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// A worker's connection table with its timer wheel.
pub struct ConnTable {
    entries: HugeSlice<Entry>,
    buckets: HugeSlice<u32>,
    mask: u64,
    free: u32,
    len: usize,
    seed: [u64; 4],
    wheel: Box<[u32]>,
    /// One bit per non-empty wheel bucket.
    wheel_bits: Box<[u64]>,
    /// The next tick the wheel will process.
    wheel_now: Ms,
    armed: usize,
    /// Serial of the next connection.
    serial: u32,
}

impl ConnTable {
    /// A table of `capacity` entries (allocated and touched now, so the
    /// packet path never faults pages in). `seed` keys the bucket hash.
    pub fn new(capacity: usize, seed: [u64; 4], now: Ms) -> ConnTable {
        let capacity = capacity.clamp(1, (UNARMED - 1) as usize);
        let mut entries = HugeSlice::new(capacity, Entry::default());
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < capacity {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        let nb = capacity.next_power_of_two();
        ConnTable {
            entries,
            buckets: HugeSlice::new(nb, NIL),
            mask: (nb - 1) as u64,
            free: 0,
            len: 0,
            seed,
            wheel: vec![NIL; WHEEL_SLOTS].into_boxed_slice(),
            wheel_bits: vec![0u64; WHEEL_SLOTS / 64].into_boxed_slice(),
            wheel_now: now,
            armed: 0,
            serial: 0,
        }
    }

    /// Numbers connections from `start` on (the serial part of the
    /// connection ids, see [`crate::connid`]).
    pub fn set_serial(&mut self, start: u32) {
        self.serial = start & SERIAL_MASK;
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Fixed capacity.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }
    /// Bytes of memory per entry, bucket array included.
    pub fn bytes_per_entry(&self) -> f64 {
        (std::mem::size_of::<Entry>() * self.entries.len() + 4 * self.buckets.len()) as f64
            / self.entries.len() as f64
    }

    /// The bucket hash of `key` (compute once per packet).
    #[inline(always)]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        key.hash(&self.seed)
    }

    /// Starts loading the bucket of `hash` into the cache.
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u64) {
        prefetch(&self.buckets[(hash & self.mask) as usize] as *const u32 as *const u8);
    }

    /// Starts loading the first entry of the chain of `hash` (its bucket
    /// should be cached by now).
    #[inline(always)]
    pub fn prefetch_head(&self, hash: u64) {
        let i = self.buckets[(hash & self.mask) as usize];
        if let Some(e) = self.entries.get(i as usize) {
            prefetch(e as *const Entry as *const u8);
        }
    }

    /// The slot holding `key`.
    #[inline(always)]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let mut i = self.buckets[(hash & self.mask) as usize];
        while i != NIL {
            let e = &self.entries[i as usize];
            if e.key == *key {
                return Some(i);
            }
            i = e.next;
        }
        None
    }

    /// Takes a free slot for `key` (caller checked it is absent) in state
    /// `slot` (not `Slot::Free`), with no timer armed.
    pub fn insert(&mut self, key: FlowKey, hash: u64, slot: Slot) -> Result<u32, TableFull> {
        if self.free == NIL {
            return Err(TableFull);
        }
        let i = self.free;
        let b = (hash & self.mask) as usize;
        let head = self.buckets[b];
        let e = &mut self.entries[i as usize];
        self.free = e.next;
        e.key = key;
        e.next = head;
        e.retries = 0;
        e.slot = slot;
        let [s0, s1, s2, _] = self.serial.to_le_bytes();
        e.serial = [s0, s1, s2];
        self.serial = self.serial.wrapping_add(1) & SERIAL_MASK;
        self.buckets[b] = i;
        self.len += 1;
        Ok(i)
    }

    /// Frees slot `i`: unlinks it from its chain and its timer.
    pub fn remove(&mut self, i: u32) {
        if self
            .entries
            .get(i as usize)
            .is_none_or(|e| e.slot == Slot::Free)
        {
            return;
        }
        self.disarm(i);
        let key = self.entries[i as usize].key;
        let b = (self.hash(&key) & self.mask) as usize;
        let mut prev = NIL;
        let mut cur = self.buckets[b];
        while cur != NIL && cur != i {
            prev = cur;
            cur = self.entries[cur as usize].next;
        }
        if cur == i {
            let nx = self.entries[i as usize].next;
            if prev == NIL {
                self.buckets[b] = nx;
            } else {
                self.entries[prev as usize].next = nx;
            }
            self.len -= 1;
        }
        let e = &mut self.entries[i as usize];
        e.slot = Slot::Free;
        e.next = self.free;
        self.free = i;
    }

    /// The entry in slot `i`.
    #[inline]
    pub fn get(&self, i: u32) -> &Entry {
        &self.entries[i as usize]
    }

    /// The entry in slot `i`, writable.
    #[inline(always)]
    pub fn get_mut(&mut self, i: u32) -> &mut Entry {
        &mut self.entries[i as usize]
    }

    /// The entry in slot `i` if it is in use with this generation.
    pub fn get_checked(&self, i: u32, generation: u32) -> Option<&Entry> {
        self.entries
            .get(i as usize)
            .filter(|e| e.generation() == generation && e.slot != Slot::Free)
    }

    /// Arms (or re-arms) slot `i`'s timer for `deadline`.
    pub fn arm(&mut self, i: u32, deadline: Ms) {
        self.disarm(i);
        // A deadline already past fires on the next tick.
        let d = if ms_le(deadline, self.wheel_now) {
            self.wheel_now
        } else {
            deadline
        };
        let b = d as usize % WHEEL_SLOTS;
        let head = self.wheel[b];
        {
            let e = &mut self.entries[i as usize];
            e.deadline = d;
            e.tprev = NIL;
            e.tnext = head;
        }
        if head != NIL {
            self.entries[head as usize].tprev = i;
        }
        self.wheel[b] = i;
        self.wheel_bits[b / 64] |= 1 << (b % 64);
        self.armed += 1;
    }

    /// Cancels slot `i`'s timer.
    pub fn disarm(&mut self, i: u32) {
        let e = self.entries[i as usize];
        if e.tprev == UNARMED {
            return;
        }
        let b = e.deadline as usize % WHEEL_SLOTS;
        if e.tprev == NIL {
            self.wheel[b] = e.tnext;
            if e.tnext == NIL {
                self.wheel_bits[b / 64] &= !(1 << (b % 64));
            }
        } else {
            self.entries[e.tprev as usize].tnext = e.tnext;
        }
        if e.tnext != NIL {
            self.entries[e.tnext as usize].tprev = e.tprev;
        }
        let e = &mut self.entries[i as usize];
        e.tprev = UNARMED;
        e.tnext = NIL;
        self.armed -= 1;
    }

    /// The deadline of slot `i`, if armed.
    pub fn deadline(&self, i: u32) -> Option<Ms> {
        let e = &self.entries[i as usize];
        (e.tprev != UNARMED).then_some(e.deadline)
    }

    /// The earliest tick that may have an expiry (a lower bound), or None when
    /// no timer is armed.
    pub fn next_expiry(&self) -> Option<Ms> {
        if self.armed == 0 {
            return None;
        }
        let start = self.wheel_now as usize % WHEEL_SLOTS;
        let words = WHEEL_SLOTS / 64;
        for k in 0..=words {
            let w = (start / 64 + k) % words;
            let mut bits = self.wheel_bits[w];
            if k == 0 {
                bits &= !0u64 << (start % 64);
            }
            if k == words {
                bits &= !(!0u64 << (start % 64));
            }
            if bits != 0 {
                let b = w * 64 + bits.trailing_zeros() as usize;
                let ahead = (b + WHEEL_SLOTS - start) % WHEEL_SLOTS;
                return Some(self.wheel_now.wrapping_add(ahead as u32));
            }
        }
        Some(self.wheel_now)
    }

    /// Takes every slot whose deadline is at or before `now` off the wheel
    /// and appends it to `out` (at most `limit`, so one call is bounded; the
    /// rest come on the next call).
    pub fn expire(&mut self, now: Ms, out: &mut Vec<u32>, limit: usize) {
        let mut steps = 0usize;
        while ms_le(self.wheel_now, now) && steps <= WHEEL_SLOTS {
            let b = self.wheel_now as usize % WHEEL_SLOTS;
            if self.wheel_bits[b / 64] & (1 << (b % 64)) != 0 {
                let mut i = self.wheel[b];
                while i != NIL {
                    let e = self.entries[i as usize];
                    if ms_le(e.deadline, now) {
                        if out.len() >= limit {
                            return;
                        }
                        self.disarm(i);
                        out.push(i);
                    }
                    i = e.tnext;
                }
            }
            if self.wheel_now == now {
                break;
            }
            self.wheel_now = self.wheel_now.wrapping_add(1);
            steps += 1;
        }
        if steps > WHEEL_SLOTS {
            // Idle for more than a rotation: every bucket was visited once.
            self.wheel_now = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> FlowKey {
        FlowKey::new(
            IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 + n)),
            (n % 60000) as u16,
            0,
        )
    }

    #[test]
    fn a_reused_slot_gets_a_new_serial_every_time() {
        let mut t = ConnTable::new(16, [0; 4], 0);
        t.set_serial(SERIAL_MASK - 2);
        let mut seen = std::collections::HashSet::new();
        for n in 0..100_000u32 {
            let h = t.hash(&key(n));
            let i = t.insert(key(n), h, Slot::Session(0)).unwrap();
            assert!(
                seen.insert(t.get(i).generation()),
                "serial repeated after {n}"
            );
            assert!(t.get_checked(i, t.get(i).generation()).is_some());
            t.remove(i);
            assert!(t.get_checked(i, t.get(i).generation()).is_none());
        }
        // Wrapped at 2^24 and went on counting.
        assert!(seen.contains(&0) && seen.contains(&SERIAL_MASK));
    }

    #[test]
    fn entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn insert_lookup_remove_and_full() {
        let mut t = ConnTable::new(100, [1, 2, 3, 4], 0);
        let mut slots = vec![];
        for n in 0..100 {
            let k = key(n);
            let h = t.hash(&k);
            assert_eq!(t.lookup(&k, h), None);
            let i = t.insert(k, h, Slot::Session(n)).unwrap();
            slots.push(i);
        }
        assert_eq!(t.insert(key(1000), 0, Slot::Session(0)), Err(TableFull));
        for n in (0..100).step_by(2) {
            let k = key(n);
            let i = t.lookup(&k, t.hash(&k)).unwrap();
            t.remove(i);
        }
        assert_eq!(t.len(), 50);
        for n in 0..100 {
            let k = key(n);
            assert_eq!(t.lookup(&k, t.hash(&k)).is_some(), n % 2 == 1);
        }
        let k = key(5000);
        assert!(t.insert(k, t.hash(&k), Slot::Session(0)).is_ok());
    }

    #[test]
    fn timers_fire_in_order_across_rotations() {
        let mut t = ConnTable::new(10, [0; 4], 0);
        let deadlines = [5u32, 1, 9000, 20_000, 3, 8191, 8192];
        for (n, d) in deadlines.iter().enumerate() {
            let k = key(n as u32);
            let i = t.insert(k, t.hash(&k), Slot::Session(0)).unwrap();
            t.arm(i, *d);
        }
        let mut fired = vec![];
        let mut now = 0u32;
        while fired.len() < deadlines.len() {
            let mut out = vec![];
            t.expire(now, &mut out, 100);
            for i in out {
                fired.push((now, deadlines[i as usize]));
            }
            now += 1;
            assert!(now < 30_000);
        }
        for (at, d) in fired {
            assert_eq!(at, d);
        }
    }

    #[test]
    fn disarm_and_rearm() {
        let mut t = ConnTable::new(4, [0; 4], 100);
        let k = key(1);
        let i = t.insert(k, t.hash(&k), Slot::Session(0)).unwrap();
        t.arm(i, 110);
        t.arm(i, 120);
        let mut out = vec![];
        t.expire(115, &mut out, 10);
        assert!(out.is_empty());
        assert_eq!(t.next_expiry(), Some(120));
        t.disarm(i);
        assert_eq!(t.next_expiry(), None);
        t.expire(200, &mut out, 10);
        assert!(out.is_empty());
    }
}
