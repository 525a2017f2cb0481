//! Multicast Listener Discovery (MLDv2, RFC 3810): the reports that keep
//! neighbour solicitations flowing to the switch through snooping switches.
//!
//! Neighbour solicitations for the switch's IPv6 addresses are sent to
//! their solicited-node multicast groups. An Ethernet switch with MLD
//! snooping and an active querier forwards a group only to ports that
//! reported listening to it; a host's kernel reports its groups, but the
//! kernel has no address on a port the switch owns. So the switch reports
//! the solicited-node groups of its own addresses itself: twice at start
//! (the unsolicited reports of §6.1) and whenever a query arrives. It never
//! leaves a group: a stopped switch stops answering anyway, and the
//! snooping switch's listener timer removes the port.

use std::net::Ipv6Addr;

use crate::wire::ip6::{emit_header, pseudo_header, IPV6_LEN};
use crate::wire::nd::multicast_mac;
use crate::wire::{checksum, Mac, ETH_LEN};

/// ICMPv6 types of MLD.
pub mod types {
    pub const QUERY: u8 = 130;
    pub const REPORT_V2: u8 = 143;
}

/// All MLDv2-capable routers (where version 2 reports go).
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
/// Record type: the listener excludes no source, i.e. listens (§5.2.12).
/// `MODE_IS_EXCLUDE` answers a query; `CHANGE_TO_EXCLUDE_MODE` joins.
pub const MODE_IS_EXCLUDE: u8 = 2;
pub const CHANGE_TO_EXCLUDE: u8 = 4;
/// Groups per report (a 1,280-byte link carries far more; the switch has
/// a handful).
pub const MAX_GROUPS: usize = 32;
/// Hop-by-Hop header with the Router Alert option (MLD, RFC 2711) and PadN.
const HOP_BY_HOP: [u8; 8] = [58, 0, 5, 2, 0, 0, 1, 0];
const RECORD_LEN: usize = 20;

/// Frame length of a report of `n` groups.
pub fn report_len(n: usize) -> usize {
    ETH_LEN + IPV6_LEN + HOP_BY_HOP.len() + 8 + RECORD_LEN * n.min(MAX_GROUPS)
}

/// Writes an MLDv2 report of `groups` (at most [`MAX_GROUPS`]) with
/// `record` as every record's type, from the link-local `src`; returns the
/// frame length, or None when `buf` is too small.
pub fn emit_report(
    buf: &mut [u8],
    mac: Mac,
    src: Ipv6Addr,
    groups: &[Ipv6Addr],
    record: u8,
) -> Option<usize> {
    let groups = &groups[..groups.len().min(MAX_GROUPS)];
    let len = report_len(groups.len());
    let b = buf.get_mut(..len)?;
    b[0..6].copy_from_slice(&multicast_mac(ALL_MLDV2_ROUTERS));
    b[6..12].copy_from_slice(&mac);
    b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let icmp_len = 8 + RECORD_LEN * groups.len();
    // Next header 0 (Hop-by-Hop), hop limit 1 (§5.2.13).
    emit_header(
        &mut b[ETH_LEN..],
        src,
        ALL_MLDV2_ROUTERS,
        0,
        HOP_BY_HOP.len() + icmp_len,
        1,
    );
    let at = ETH_LEN + IPV6_LEN;
    b[at..at + 8].copy_from_slice(&HOP_BY_HOP);
    let m = &mut b[at + 8..];
    m.fill(0);
    m[0] = types::REPORT_V2;
    m[6..8].copy_from_slice(&(groups.len() as u16).to_be_bytes());
    for (k, g) in groups.iter().enumerate() {
        let r = &mut m[8 + RECORD_LEN * k..8 + RECORD_LEN * (k + 1)];
        r[0] = record;
        r[4..20].copy_from_slice(&g.octets());
    }
    let ph = pseudo_header(src, ALL_MLDV2_ROUTERS, 58, icmp_len as u32);
    let c = !checksum::combine(&[ph, checksum::data(m)]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::nd::{link_local, solicited_node};

    #[test]
    fn a_report_is_well_formed() {
        let mac = [2, 0, 0, 0, 0, 2];
        let src = link_local(mac);
        let groups = [
            solicited_node("2001:2::2".parse().unwrap()),
            solicited_node("2001:2::10".parse().unwrap()),
        ];
        let mut f = [0u8; 256];
        let n = emit_report(&mut f, mac, src, &groups, CHANGE_TO_EXCLUDE).unwrap();
        assert_eq!(n, report_len(2));
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 0x16]);
        let ip = &f[ETH_LEN..n];
        assert_eq!((ip[6], ip[7]), (0, 1), "Hop-by-Hop first, hop limit 1");
        let icmp = &ip[IPV6_LEN + 8..];
        assert_eq!(icmp[0], types::REPORT_V2);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 2);
        assert_eq!(&icmp[8 + 4..8 + 20], &groups[0].octets());
        assert!(crate::wire::ip6::l4_checksum_ok(
            src,
            ALL_MLDV2_ROUTERS,
            58,
            icmp
        ));
        // The switch's own parser reads it as valid (and ignores it).
        assert_eq!(
            crate::wire::parse(&f[..n], crate::wire::Verify::Full),
            Err(crate::counters::DropReason::Ignored)
        );
    }
}
