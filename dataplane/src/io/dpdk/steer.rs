//! Software steering: which worker owns a frame when the NIC cannot spread
//! flows over queues itself.
//!
//! A sorted-tuple hash: the two (address, port) endpoints are put in order
//! before hashing, so both directions of a connection hash alike, like the
//! symmetric Toeplitz key used for RSS and the kernel's symmetric fanout hash.
//! Only consistency per flow matters (the worker that receives a SYN owns the
//! connection); the hash is deterministic so tests can predict it. IP frames
//! without ports (ICMP, later fragments) hash on the addresses alone; frames
//! that are not IP (ARP) go to worker 0.

/// The worker of `workers` that owns `frame`.
pub fn flow_worker(frame: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    match flow_hash(frame) {
        Some(h) => ((h as u128 * workers as u128) >> 64) as usize,
        None => 0,
    }
}

/// The symmetric flow hash of an IPv4/IPv6 frame; `None` for other frames.
pub fn flow_hash(frame: &[u8]) -> Option<u64> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    // One VLAN tag, at most.
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        off += 4;
    }
    let l3 = frame.get(off + 2..)?;
    let (src, dst, proto, l4): (&[u8], &[u8], u8, Option<&[u8]>) = match ethertype {
        0x0800 => {
            let ihl = (*l3.first()? & 0x0f) as usize * 4;
            if ihl < 20 || l3.len() < 20 {
                return None;
            }
            // Fragments after the first carry no ports.
            let frag = u16::from_be_bytes([l3[6], l3[7]]);
            let l4 = if frag & 0x1fff == 0 {
                l3.get(ihl..)
            } else {
                None
            };
            (&l3[12..16], &l3[16..20], l3[9], l4)
        }
        0x86dd => {
            if l3.len() < 40 {
                return None;
            }
            (&l3[8..24], &l3[24..40], l3[6], l3.get(40..))
        }
        _ => return None,
    };
    let ports = match (proto, l4) {
        (6 | 17, Some(l4)) if l4.len() >= 4 => Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )),
        _ => None,
    };
    let (sp, dp) = ports.unwrap_or((0, 0));
    let (a, b) = if (src, sp) <= (dst, dp) {
        ((src, sp), (dst, dp))
    } else {
        ((dst, dp), (src, sp))
    };
    // FNV-1a over the ordered tuple, then a 64-bit finaliser (splitmix) to
    // spread the low-entropy inputs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes {
            h ^= x as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(a.0);
    eat(&a.1.to_be_bytes());
    eat(b.0);
    eat(&b.1.to_be_bytes());
    eat(&[proto]);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sp.to_be_bytes());
        f[36..38].copy_from_slice(&dp.to_be_bytes());
        f
    }

    #[test]
    fn both_directions_hash_alike_and_flows_spread() {
        let mut seen = [0usize; 4];
        for p in 0..400u16 {
            let a = v4_tcp([198, 18, 0, 101], 30000 + p, [198, 18, 0, 10], 80);
            let b = v4_tcp([198, 18, 0, 10], 80, [198, 18, 0, 101], 30000 + p);
            assert_eq!(flow_hash(&a), flow_hash(&b));
            seen[flow_worker(&a, 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn non_ip_and_garbage_go_to_worker_zero_without_panic() {
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(flow_worker(&arp, 4), 0);
        for len in 0..60 {
            let f = vec![0x45u8; len];
            let _ = flow_worker(&f, 3);
        }
        let mut short = v4_tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 2);
        short[14] = 0x4f; // IHL beyond the frame
        let _ = flow_worker(&short, 2);
    }
}
