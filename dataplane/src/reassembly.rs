//! WAITHEADER request reassembly: one contiguous buffer per connection, with
//! out-of-order segments written in place.
//!
//! The buffer holds the client's byte stream from the first byte after the
//! SYN (offset 0 = IRS + 1). In-order bytes extend the contiguous prefix;
//! out-of-order bytes within the buffer (= the window we advertise) are
//! written at their offset and remembered as up to [`MAX_HOLES`] disjoint
//! ranges. Bytes already received are never overwritten ("first copy wins"),
//! so a client cannot show the switch one request and the backend another by
//! resending overlapping segments with different content. Everything here is
//! allocation-free after the buffer is sized.

/// Most out-of-order ranges kept; a segment that would need more is dropped
/// (the client retransmits it once the holes fill).
pub const MAX_HOLES: usize = 8;

/// Why a segment was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It would need more than [`MAX_HOLES`] out-of-order ranges.
    TooManyHoles,
}

/// Reassembly state of one connection.
#[derive(Debug, Clone)]
pub struct Reassembly {
    buf: Vec<u8>,
    cap: usize,
    contig: usize,
    holes: [(u32, u32); MAX_HOLES],
    n: usize,
}

impl Reassembly {
    /// A reassembly buffer of `cap` bytes (allocated now, once).
    pub fn new(cap: usize) -> Reassembly {
        Reassembly {
            buf: vec![0; cap],
            cap,
            contig: 0,
            holes: [(0, 0); MAX_HOLES],
            n: 0,
        }
    }

    /// Empties it for a new connection (keeps the allocation).
    pub fn reset(&mut self) {
        self.contig = 0;
        self.n = 0;
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Length of the in-order prefix.
    pub fn contiguous(&self) -> usize {
        self.contig
    }

    /// The in-order bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.contig]
    }

    /// Free space after the in-order prefix (the receive window).
    pub fn window(&self) -> usize {
        self.cap - self.contig
    }

    /// True when out-of-order data is waiting.
    pub fn has_holes(&self) -> bool {
        self.n > 0
    }

    /// The out-of-order ranges held (offsets), for SACK blocks.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.holes[..self.n]
    }

    /// Takes `data` at stream offset `offset`. Bytes before the in-order
    /// prefix, bytes already held and bytes beyond the capacity are ignored.
    /// Returns how far the in-order prefix advanced.
    pub fn insert(&mut self, offset: usize, data: &[u8]) -> Result<usize, Refused> {
        let start = offset.max(self.contig);
        let end = offset.saturating_add(data.len()).min(self.cap);
        if start >= end {
            return Ok(0);
        }
        // The merged range list, computed before any byte is written.
        let mut merged = [(0u32, 0u32); MAX_HOLES + 1];
        let mut m = 0;
        let (mut ns, mut ne) = (start as u32, end as u32);
        let mut placed = false;
        for &(s, e) in &self.holes[..self.n] {
            if e < ns {
                merged[m] = (s, e);
                m += 1;
            } else if s > ne {
                if !placed {
                    merged[m] = (ns, ne);
                    m += 1;
                    placed = true;
                }
                merged[m] = (s, e);
                m += 1;
            } else {
                ns = ns.min(s);
                ne = ne.max(e);
            }
            if m > MAX_HOLES {
                break;
            }
        }
        if !placed && m <= MAX_HOLES {
            merged[m] = (ns, ne);
            m += 1;
        }
        // A range starting at the prefix is not a hole: it is merged below.
        let holes_after = if merged[0].0 as usize == self.contig {
            m - 1
        } else {
            m
        };
        if m > MAX_HOLES + 1 || holes_after > MAX_HOLES {
            return Err(Refused::TooManyHoles);
        }
        // Write only the gaps of [start, end) (first copy wins).
        let mut pos = start;
        for &(s, e) in &self.holes[..self.n] {
            let (s, e) = (s as usize, e as usize);
            if e <= pos {
                continue;
            }
            if s >= end {
                break;
            }
            if s > pos {
                self.buf[pos..s].copy_from_slice(&data[pos - offset..s - offset]);
            }
            pos = pos.max(e);
        }
        if pos < end {
            self.buf[pos..end].copy_from_slice(&data[pos - offset..end - offset]);
        }
        // Commit the ranges and advance the prefix.
        let before = self.contig;
        let mut k = 0;
        if merged[0].0 as usize == self.contig {
            self.contig = merged[0].1 as usize;
            k = 1;
        }
        self.n = 0;
        for &r in &merged[k..m] {
            self.holes[self.n] = r;
            self.n += 1;
        }
        Ok(self.contig - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_out_of_order_and_duplicates() {
        let mut r = Reassembly::new(16);
        assert_eq!(r.insert(4, b"efgh"), Ok(0));
        assert_eq!(r.ranges(), &[(4, 8)]);
        assert_eq!(r.insert(0, b"abcd"), Ok(8));
        assert_eq!(r.data(), b"abcdefgh");
        assert_eq!(r.insert(2, b"XXXXXXij"), Ok(2));
        assert_eq!(r.data(), b"abcdefghij");
        assert_eq!(r.insert(14, b"opqrstuvwxyz"), Ok(0));
        assert_eq!(r.ranges(), &[(14, 16)]);
        assert_eq!(r.window(), 6);
    }

    #[test]
    fn too_many_holes_is_refused_without_writing() {
        let mut r = Reassembly::new(100);
        for i in 0..MAX_HOLES {
            r.insert(2 + i * 4, b"x").unwrap();
        }
        assert_eq!(r.insert(90, b"y"), Err(Refused::TooManyHoles));
        assert_eq!(r.ranges().len(), MAX_HOLES);
        // Filling the first hole still works and merges.
        assert_eq!(r.insert(0, b"ab"), Ok(3));
    }

    proptest! {
        /// Against a byte-map model: same prefix, same bytes, first copy wins.
        #[test]
        fn matches_reference_model(
            cap in 1usize..200,
            segs in proptest::collection::vec((0usize..250, proptest::collection::vec(any::<u8>(), 0..60)), 0..40),
        ) {
            let mut r = Reassembly::new(cap);
            let mut model: Vec<Option<u8>> = vec![None; cap];
            for (off, data) in segs {
                let before = r.contiguous();
                match r.insert(off, &data) {
                    Ok(adv) => {
                        let model_before = model.iter().position(|b| b.is_none()).unwrap_or(cap);
                        for (i, b) in data.iter().enumerate() {
                            let p = off + i;
                            if p < cap && p >= model_before && model[p].is_none() {
                                model[p] = Some(*b);
                            }
                        }
                        let contig = model.iter().position(|b| b.is_none()).unwrap_or(cap);
                        prop_assert_eq!(r.contiguous(), contig);
                        prop_assert_eq!(adv, contig - before);
                    }
                    Err(Refused::TooManyHoles) => prop_assert!(r.ranges().len() >= MAX_HOLES - 1),
                }
                let contig = r.contiguous();
                let want: Vec<u8> = model[..contig].iter().map(|b| b.unwrap()).collect();
                prop_assert_eq!(r.data(), &want[..]);
                for &(s, e) in r.ranges() {
                    prop_assert!(s as usize > contig && s < e && e as usize <= cap);
                    for p in s..e {
                        prop_assert!(model[p as usize].is_some());
                    }
                }
                prop_assert!(r.ranges().windows(2).all(|w| w[0].1 < w[1].0));
            }
        }
    }
}
