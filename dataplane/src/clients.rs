//! How many connections each client address has on one worker.
//!
//! Without a bound per address, one client (or one spoofer that completes
//! handshakes) can fill the connection table and the session pool alone and
//! lock everyone else out. The worker keeps, per client address, the number
//! of its table entries (any state) and of its sessions (WAITHEADER to
//! HANDOFF), and refuses a connection beyond `client_max_connections` or
//! `client_max_pending`.
//!
//! The map is touched only when a connection is created or freed, never per
//! forwarded packet. It is an open-addressing table of fixed size (twice the
//! connection table, so at most half full: every counted address has at least
//! one entry), keyed by a 64-bit keyed hash of the address (the seed is
//! secret, so a client cannot aim collisions; two addresses with the same
//! fingerprint would only share a count). Removal shifts the probe chain back,
//! so no tombstones accumulate.

use crate::table::FlowKey;

/// Per-address connection and session counts of one worker.
pub struct ClientCounts {
    /// Address fingerprints; 0 marks an empty slot.
    keys: Box<[u64]>,
    conns: Box<[u32]>,
    pending: Box<[u32]>,
    mask: usize,
    seed: [u64; 4],
}

/// What one address holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientLoad {
    /// Table entries in any state.
    pub conns: u32,
    /// Sessions (WAITHEADER, DISPATCH, HANDOFF, CLOSING).
    pub pending: u32,
}

impl ClientCounts {
    /// Counts for a worker whose table holds at most `entries` connections;
    /// `None` entries (limits off) allocates nothing.
    pub fn new(entries: Option<usize>, seed: [u64; 4]) -> ClientCounts {
        let slots = entries.map_or(0, |n| (n.max(1) * 2).next_power_of_two());
        ClientCounts {
            keys: vec![0; slots].into_boxed_slice(),
            conns: vec![0; slots].into_boxed_slice(),
            pending: vec![0; slots].into_boxed_slice(),
            mask: slots.saturating_sub(1),
            seed,
        }
    }

    /// False when the limits are off (every call is then a no-op).
    #[inline]
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    fn fingerprint(&self, client: &[u8; 16]) -> u64 {
        let k = FlowKey {
            client: *client,
            client_port: 0,
            service: 0,
        };
        k.hash(&self.seed) | 1
    }

    /// The slot holding `fp`, or the empty slot where it would go.
    fn find(&self, fp: u64) -> (usize, bool) {
        let mut i = fp as usize & self.mask;
        loop {
            match self.keys[i] {
                0 => return (i, false),
                k if k == fp => return (i, true),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// What `client` holds now.
    pub fn load(&self, client: &[u8; 16]) -> ClientLoad {
        if !self.enabled() {
            return ClientLoad::default();
        }
        match self.find(self.fingerprint(client)) {
            (i, true) => ClientLoad {
                conns: self.conns[i],
                pending: self.pending[i],
            },
            _ => ClientLoad::default(),
        }
    }

    /// Adds `conns` entries and `pending` sessions (either may be negative)
    /// to `client`'s counts; the address is forgotten when both reach 0.
    pub fn add(&mut self, client: &[u8; 16], conns: i32, pending: i32) {
        if !self.enabled() {
            return;
        }
        let fp = self.fingerprint(client);
        let (i, found) = self.find(fp);
        if !found {
            if conns <= 0 && pending <= 0 {
                return;
            }
            self.keys[i] = fp;
            self.conns[i] = 0;
            self.pending[i] = 0;
        }
        self.conns[i] = self.conns[i].saturating_add_signed(conns);
        self.pending[i] = self.pending[i].saturating_add_signed(pending);
        if self.conns[i] == 0 && self.pending[i] == 0 {
            self.remove_at(i);
        }
    }

    /// Empties slot `i` and moves later members of its probe chain back
    /// (linear probing without tombstones).
    fn remove_at(&mut self, mut hole: usize) {
        self.keys[hole] = 0;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let k = self.keys[j];
            if k == 0 {
                return;
            }
            let home = k as usize & self.mask;
            // Move `j` into the hole unless its home lies in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.keys[hole] = k;
                self.conns[hole] = self.conns[j];
                self.pending[hole] = self.pending[j];
                self.keys[j] = 0;
                hole = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u32) -> [u8; 16] {
        FlowKey::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 + n)),
            0,
            0,
        )
        .client
    }

    #[test]
    fn counts_follow_adds_and_removes_and_match_a_model() {
        let mut c = ClientCounts::new(Some(64), [1, 2, 3, 4]);
        let mut model = std::collections::HashMap::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let a = (rng % 40) as u32;
            let e: &mut (u32, u32) = model.entry(a).or_default();
            match (rng >> 8) % 4 {
                0 if e.0 + e.1 < 64 => {
                    c.add(&addr(a), 1, 0);
                    e.0 += 1;
                }
                1 if e.0 > 0 => {
                    c.add(&addr(a), -1, 0);
                    e.0 -= 1;
                }
                2 if e.1 < 8 => {
                    c.add(&addr(a), 0, 1);
                    e.1 += 1;
                }
                3 if e.1 > 0 => {
                    c.add(&addr(a), 0, -1);
                    e.1 -= 1;
                }
                _ => {}
            }
            for (k, v) in &model {
                let l = c.load(&addr(*k));
                assert_eq!((l.conns, l.pending), *v, "address {k}");
            }
        }
    }

    #[test]
    fn disabled_counts_nothing() {
        let mut c = ClientCounts::new(None, [0; 4]);
        c.add(&addr(1), 1, 1);
        assert_eq!(c.load(&addr(1)), ClientLoad::default());
    }
}
