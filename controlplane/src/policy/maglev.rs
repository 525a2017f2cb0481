//! Consistent hashing with a Maglev lookup table (Eisenbud et al., "Maglev:
//! A Fast and Reliable Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! Each backend has a permutation of the table's M slots derived from its
//! *name* (`offset = h1(name) mod M`, `skip = h2(name) mod (M−1) + 1`);
//! backends take turns claiming their next preferred free slot until the
//! table is full. A key maps to `table[hash(key) mod M]`. Removing one of N
//! backends only reassigns its own slots plus a few others, so about 1/N of
//! the keys move. Weights: in each round a backend earns its weight in
//! credit and claims one slot per `max_weight` of credit, so slot shares are
//! proportional to weight.
//!
//! Hashes are SipHash-1-3 with fixed keys, so every switch (and every
//! restart) computes the same table for the same backend names.

use std::hash::Hasher;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

use super::{DispatchPolicy, LocalMode, MemberView, ParamChecks, PickCtx, PolicyParams};
use crate::request::Request;

/// Maglev parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaglevParams {
    /// What is hashed.
    #[serde(default)]
    pub key: HashKey,
    /// Lookup table size; a prime well above 100 × backends.
    #[serde(default = "d_maglev_size")]
    pub table_size: u32,
}

impl Default for MaglevParams {
    fn default() -> Self {
        Self {
            key: HashKey::Url,
            table_size: d_maglev_size(),
        }
    }
}

/// Consistent-hash key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// Path and query.
    #[default]
    Url,
    /// Host header.
    Host,
    /// Client IP address.
    ClientIp,
}

fn d_maglev_size() -> u32 {
    65_537
}

fn is_prime(n: u32) -> bool {
    let n = u64::from(n);
    n >= 2 && (2u64..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

impl PolicyParams for MaglevParams {
    fn key(&self) -> &'static str {
        "maglev"
    }
    fn build(&self, names: &[String]) -> Box<dyn DispatchPolicy> {
        Box::new(Maglev::new(self, names))
    }
    fn check(&self, n_backends: usize, out: &mut ParamChecks) {
        if !is_prime(self.table_size) {
            out.err(
                self.key(),
                "table_size",
                format!("{} is not prime (try 65537 or 655373)", self.table_size),
            );
        } else if (self.table_size as usize) < 100 * n_backends.max(1) {
            out.err(
                self.key(),
                "table_size",
                "must be at least 100 × the pool's backends for an even spread",
            );
        }
    }
    fn local_mode(&self) -> LocalMode {
        LocalMode::Shared
    }
}

const K_OFFSET: (u64, u64) = (0x6261_746f_6e2d_6d61, 0x676c_6576_2d6f_6666);
const K_SKIP: (u64, u64) = (0x6261_746f_6e2d_6d61, 0x676c_6576_2d73_6b70);
const K_KEY: (u64, u64) = (0x6261_746f_6e2d_6b65, 0x792d_6861_7368_2121);

fn sip(keys: (u64, u64), data: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(keys.0, keys.1);
    h.write(data);
    h.finish()
}

/// The hash of a request key (URL, host or client address).
pub fn key_hash(data: &[u8]) -> u64 {
    sip(K_KEY, data)
}

/// A Maglev lookup table over a pool.
#[derive(Debug)]
pub struct Maglev {
    key: HashKey,
    m: usize,
    offset: Vec<u64>,
    skip: Vec<u64>,
    /// Members in the table when it was built (usable or only excluded), with weights.
    built_for: Vec<(bool, u32)>,
    table: Vec<u32>,
}

impl Maglev {
    /// `names` are the pool's backend names in pool order.
    pub fn new(p: &MaglevParams, names: &[String]) -> Self {
        Self::with_size(p.key, p.table_size as usize, names)
    }

    /// A table of `m` slots (m prime).
    pub fn with_size(key: HashKey, m: usize, names: &[String]) -> Self {
        let m = m.max(2);
        let offset = names
            .iter()
            .map(|n| sip(K_OFFSET, n.as_bytes()) % m as u64)
            .collect();
        let skip = names
            .iter()
            .map(|n| sip(K_SKIP, n.as_bytes()) % (m as u64 - 1) + 1)
            .collect();
        Self {
            key,
            m,
            offset,
            skip,
            built_for: Vec::new(),
            table: Vec::new(),
        }
    }

    /// True when the table was built for exactly these members (present:
    /// usable or only excluded, and their weights). Compares in place: the
    /// check runs per request, on workers too.
    fn built_for(&self, members: &[MemberView]) -> bool {
        !self.table.is_empty()
            && self.built_for.len() == members.len()
            && self
                .built_for
                .iter()
                .zip(members)
                .all(|(&(p, w), m)| p == (m.usable || m.excluded) && w == m.weight)
    }

    /// Rebuilds the table when the set of members in it (or their weights) changed.
    pub(crate) fn ensure(&mut self, members: &[MemberView]) {
        if self.built_for(members) {
            return;
        }
        let want: Vec<(bool, u32)> = members
            .iter()
            .map(|m| (m.usable || m.excluded, m.weight))
            .collect();
        self.table = populate(self.m, &self.offset, &self.skip, &want);
        self.built_for = want;
    }

    /// The member for a key hash, or `None` when no member is usable. A slot
    /// whose member is excluded for this request falls through to the next
    /// slots, so other keys keep their members.
    pub fn pick_hash(&mut self, members: &[MemberView], h: u64) -> Option<usize> {
        if members.len() != self.offset.len() {
            return None;
        }
        self.ensure(members);
        self.lookup(members, h)
    }

    /// [`Maglev::pick_hash`] on the table as built, without rebuilding:
    /// `None` when it was built for other members (the caller must not
    /// decide then), else the pick.
    pub(crate) fn pick_hash_built(&self, members: &[MemberView], h: u64) -> Option<Option<usize>> {
        (members.len() == self.offset.len() && self.built_for(members))
            .then(|| self.lookup(members, h))
    }

    fn lookup(&self, members: &[MemberView], h: u64) -> Option<usize> {
        let start = (h % self.m as u64) as usize;
        for k in 0..self.m {
            let slot = self.table[(start + k) % self.m];
            if slot == u32::MAX {
                return None;
            }
            if members[slot as usize].usable {
                return Some(slot as usize);
            }
        }
        None
    }

    fn key_of<'a>(&self, req: &'a Request<'_>, ctx: &PickCtx, buf: &'a mut [u8; 16]) -> &'a [u8] {
        match self.key {
            HashKey::Url => req.target.as_bytes(),
            HashKey::Host => req.host.as_bytes(),
            HashKey::ClientIp => match ctx.client {
                std::net::IpAddr::V4(a) => {
                    buf[..4].copy_from_slice(&a.octets());
                    &buf[..4]
                }
                std::net::IpAddr::V6(a) => {
                    buf.copy_from_slice(&a.octets());
                    &buf[..]
                }
            },
        }
    }
}

/// Fills `m` slots from the members marked present, weighted.
fn populate(m: usize, offset: &[u64], skip: &[u64], members: &[(bool, u32)]) -> Vec<u32> {
    let mut table = vec![u32::MAX; m];
    let present: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].0 && members[i].1 > 0)
        .collect();
    if present.is_empty() {
        return table;
    }
    let max_w = present.iter().map(|&i| members[i].1).max().unwrap_or(1) as u64;
    let mut next = vec![0u64; members.len()];
    let mut credit = vec![0u64; members.len()];
    let mut filled = 0;
    while filled < m {
        for &i in &present {
            credit[i] += members[i].1 as u64;
            while credit[i] >= max_w {
                credit[i] -= max_w;
                // Next preferred slot of member i that is still free.
                let mut c = (offset[i] + next[i] * skip[i]) % m as u64;
                while table[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset[i] + next[i] * skip[i]) % m as u64;
                }
                table[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    return table;
                }
            }
        }
    }
    table
}

impl DispatchPolicy for Maglev {
    fn pick(&mut self, members: &[MemberView], req: &Request<'_>, ctx: &PickCtx) -> Option<usize> {
        let mut buf = [0u8; 16];
        let h = key_hash(self.key_of(req, ctx, &mut buf));
        self.pick_hash(members, h)
    }

    fn pick_shared(
        &self,
        members: &[MemberView],
        req: &Request<'_>,
        ctx: &PickCtx,
    ) -> Option<Option<usize>> {
        let mut buf = [0u8; 16];
        let h = key_hash(self.key_of(req, ctx, &mut buf));
        self.pick_hash_built(members, h)
    }

    fn prepare(&mut self, members: &[MemberView]) {
        if members.len() == self.offset.len() {
            self.ensure(members);
        }
    }

    fn kind(&self) -> &'static str {
        "maglev"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("backend-{i}")).collect()
    }

    fn assign(p: &mut Maglev, m: &[MemberView], keys: usize) -> Vec<usize> {
        (0..keys)
            .map(|k| {
                p.pick_hash(m, key_hash(format!("/obj/{k}").as_bytes()))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_the_keys() {
        for n in [3usize, 5, 10] {
            let mut p = Maglev::with_size(HashKey::Url, 65537, &names(n));
            let mut m = members(n);
            let before = assign(&mut p, &m, 20_000);
            m[1].usable = false;
            let after = assign(&mut p, &m, 20_000);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / 20_000.0;
            let moved_elsewhere = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| **a != 1 && a != b)
                .count() as f64
                / 20_000.0;
            let ideal = 1.0 / n as f64;
            assert!(
                moved < ideal * 1.3,
                "n={n}: moved {moved:.3}, ideal {ideal:.3}"
            );
            assert!(
                moved_elsewhere < 0.03,
                "n={n}: {moved_elsewhere:.3} of keys not on the removed backend moved"
            );
            assert!(after.iter().all(|&b| b != 1));
        }
    }

    #[test]
    fn slot_shares_follow_weights() {
        let mut p = Maglev::with_size(HashKey::Url, 65537, &names(3));
        let mut m = members(3);
        m[0].weight = 1;
        m[1].weight = 2;
        m[2].weight = 5;
        let got = assign(&mut p, &m, 40_000);
        for (i, w) in [(0usize, 1.0), (1, 2.0), (2, 5.0)] {
            let share = got.iter().filter(|&&b| b == i).count() as f64 / 40_000.0;
            let want = w / 8.0;
            assert!(
                (share - want).abs() < 0.02,
                "backend {i}: share {share:.3}, want {want:.3}"
            );
        }
    }

    #[test]
    fn same_key_same_backend_and_excluded_retries_do_not_reshuffle() {
        let mut p = Maglev::with_size(HashKey::Url, 65537, &names(4));
        let mut m = members(4);
        let before = assign(&mut p, &m, 5_000);
        assert_eq!(before, assign(&mut p, &m, 5_000));
        // A retry for one request that excludes backend 2 goes elsewhere...
        let k = before.iter().position(|&b| b == 2).unwrap();
        m[2].usable = false;
        m[2].excluded = true;
        let h = key_hash(format!("/obj/{k}").as_bytes());
        assert_ne!(p.pick_hash(&m, h), Some(2));
        // ...and every key not on backend 2 keeps its backend.
        let during = assign(&mut p, &m, 5_000);
        assert!(before.iter().zip(&during).all(|(a, b)| *a == 2 || a == b));
    }

    #[test]
    fn two_switches_agree() {
        let mut a = Maglev::with_size(HashKey::Url, 65537, &names(5));
        let mut b = Maglev::with_size(HashKey::Url, 65537, &names(5));
        let m = members(5);
        assert_eq!(assign(&mut a, &m, 2000), assign(&mut b, &m, 2000));
    }

    #[test]
    fn no_usable_member_is_none() {
        let mut p = Maglev::with_size(HashKey::Url, 65537, &names(2));
        let mut m = members(2);
        m[0].usable = false;
        m[1].usable = false;
        assert_eq!(p.pick_hash(&m, 42), None);
    }
}
