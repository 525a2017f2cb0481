//! IPv6 through one engine: what differs from IPv4 and what the scenario
//! scripts (which run in both families) cannot see — the frames' family and
//! checksums, the MSS for IPv6, THOP over IPv6 from the dual-stack address,
//! neighbour discovery, ICMPv6 echo and Packet Too Big, and IPv6 garbage.

mod support;

use std::net::{IpAddr, Ipv6Addr};

use dataplane::config::SynCookieMode;
use dataplane::io::memory::MemBuf;
use dataplane::io::PacketBuf;
use dataplane::wire::ipv6::IPV6_LEN;
use dataplane::wire::nd;
use dataplane::wire::{self, flags, Frame, TcpOpts, Verify, ETH_LEN};
use handoff_proto::{Body, Key, Keyring};
use support::*;

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => panic!("{a} is IPv4"),
    }
}

/// The handshake and a one-line request, acknowledged: the start of most
/// scripts here.
const REQUEST: &str = "0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460>
0.001 < P. 1:28(27) ack 1 win 65535 \"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\"
0.001 > . 1:1(0) ack 28 win 4069
";

fn bed() -> Bed {
    use_ipv6();
    Bed::new(test_config())
}

fn parse(f: &MemBuf) -> Frame {
    wire::parse(f.data(), Verify::Full).unwrap_or_else(|e| panic!("{e:?}: {}", describe(f.data())))
}

/// The decision for the last dispatch request: backend `b`.
fn take_decision(bed: &mut Bed, b: u32) -> dataplane::dispatch::Decision {
    let r = bed.sink.requests.pop().expect("a dispatch request");
    dataplane::dispatch::Decision {
        token: r.token,
        verdict: dataplane::dispatch::Verdict::Backend(target(b)),
        pool: 0,
        header: r.header,
    }
}

fn syn(bed: &Bed, mss: Option<u16>) -> Vec<u8> {
    let opts = TcpOpts {
        mss,
        ..Default::default()
    };
    bed.client_frame(flags::SYN, bed.client_isn, 0, 65535, opts, &[])
}

/// An ICMPv6 message from `src` to `dst` (checksum filled in).
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, src_mac: [u8; 6], msg: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ETH_LEN + IPV6_LEN + msg.len()];
    f[0..6].copy_from_slice(&SWITCH_MAC);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    dataplane::wire::ipv6::emit_header(&mut f[ETH_LEN..], src, dst, 58, msg.len(), hop_limit);
    let m = &mut f[ETH_LEN + IPV6_LEN..];
    m.copy_from_slice(msg);
    m[2] = 0;
    m[3] = 0;
    let ph = dataplane::wire::ipv6::pseudo_header(src, dst, 58, msg.len() as u32);
    let c = !wire::checksum::combine(&[ph, wire::checksum::data(m)]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

/// A neighbour solicitation for `target` from `src` with its MAC as the
/// source link-layer option.
fn solicit(src: Ipv6Addr, mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&mac);
    icmp6(src, nd::solicited_node(target), 255, mac, &m)
}

/// A neighbour advertisement of `target` at `mac`, to `dst`.
fn advert(target: Ipv6Addr, mac: [u8; 6], dst: Ipv6Addr, solicited: bool) -> Vec<u8> {
    let fl = if solicited { 0x60 } else { 0x20 };
    let mut m = vec![136, 0, 0, 0, fl, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&mac);
    icmp6(target, dst, 255, mac, &m)
}

#[test]
fn a_syn_over_ipv6_gets_an_ipv6_syn_ack_with_the_ipv6_mss() {
    let mut bed = bed();
    // The profile's MSS (1,460, sized for IPv4) less IPv6's 20 more bytes.
    bed.engine = dataplane::engine::Engine::new(
        0,
        &dataplane::config::WorkerConfig {
            tcp: Default::default(),
            ..test_config()
        },
        bed.counters.clone(),
        bed.shared.clone(),
    )
    .unwrap();
    let f = syn(&bed, Some(1460));
    bed.inject(&f);
    let out = bed.next_out().expect("SYN/ACK");
    assert_eq!(&out.data()[12..14], &[0x86, 0xdd], "an IPv6 frame");
    let Frame::Tcp(s) = parse(&out) else {
        panic!("{}", describe(out.data()))
    };
    assert!(s.has(flags::SYN | flags::ACK));
    assert_eq!((s.src, s.dst), (vip(), client_ip()));
    assert_eq!(s.opts(out.data()).unwrap().mss, Some(1440));
    assert!(wire::tcp_seg_checksum_ok(out.data(), &s));
}

#[test]
fn a_handoff_over_ipv6_sends_the_create_over_ipv6_from_the_switchs_ipv6_address() {
    let mut bed = bed();
    // `> create` checks the CREATE's addresses (from 2001:2::2, the
    // switch's IPv6 address, to the agent's) and its TCP state (the IPv6
    // client and VIP); the agent's ACK is addressed to the switch's IPv6
    // node id and must be taken as such.
    bed.run_script(&format!(
        "{REQUEST}0.002 decide 2
0.002 > create 2
0.003 < ack 2
0.003 state FORWARDING
0.004 < . 28:28(0) ack 1 win 65535
0.004 > fwd 2 . 28:28(0) ack 1
"
    ));
    let (_, _, _, req) = bed.creates.last().unwrap();
    assert_eq!(req, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(switch_ip(), "2001:2::2".parse::<IpAddr>().unwrap());
}

#[test]
fn syn_cookies_over_ipv6_use_the_ipv6_mss_table() {
    use_ipv6();
    let mut cfg = test_config();
    cfg.syncookie_mode = SynCookieMode::Always;
    let mut bed = Bed::new(cfg);
    bed.run_script(REQUEST);
    let d = take_decision(&mut bed, 1);
    bed.engine.handle_decision(bed.now, d, &mut bed.sink);
    let f = bed.next_out().expect("CREATE");
    let Frame::Udp(u) = parse(&f) else { panic!() };
    let payload = &f.data()[u.payload.0..u.payload.0 + u.payload.1];
    let keys = Keyring::new(Key::new(1, KEY));
    let (frame, _) =
        handoff_proto::open(&keys, handoff_proto::node_id(backend_ip(1)), payload).unwrap();
    assert_eq!(frame.header.sender, handoff_proto::node_id(switch_ip()));
    let Body::Create(c) = frame.body else {
        panic!()
    };
    // 1,460 is not in the IPv6 table: the cookie carries the next lower, 1,440.
    assert_eq!(c.state.unwrap().mss, 1440);
}

#[test]
fn neighbour_solicitations_for_the_switchs_addresses_are_answered() {
    let mut bed = bed();
    let peer: Ipv6Addr = "2001:2::99".parse().unwrap();
    let peer_mac = [2, 0, 0, 0, 0, 0x99];
    let link_local = nd::link_local(SWITCH_MAC);
    for target in [v6(vip()), v6(switch_ip()), link_local] {
        bed.inject(&solicit(peer, peer_mac, target));
        let out = bed
            .next_out()
            .unwrap_or_else(|| panic!("no answer for {target}"));
        let Frame::Nd(n) = parse(&out) else {
            panic!("{}", describe(out.data()))
        };
        assert!(!n.solicit && n.solicited && n.override_);
        assert_eq!((n.src, n.dst, n.target), (target, peer, target));
        assert_eq!(n.lladdr, Some(SWITCH_MAC));
        assert_eq!(&out.data()[0..6], &peer_mac);
    }
    // Someone else's address: no answer.
    bed.inject(&solicit(peer, peer_mac, "2001:2::77".parse().unwrap()));
    assert!(bed.next_out().is_none());
    assert_eq!(drops(&bed.counters, "ignored"), 1);
    // Hop limit 64: could come from off-link; named and dropped.
    let mut f = solicit(peer, peer_mac, v6(vip()));
    f[ETH_LEN + 7] = 64;
    bed.inject(&f);
    assert!(bed.next_out().is_none());
    assert_eq!(drops(&bed.counters, "nd_invalid"), 1);
    assert_eq!(bed.counters.snapshot().get("nd_adverts_sent"), 3);
}

#[test]
fn a_backend_without_a_known_mac_is_solicited_and_learnt_from_its_advertisement() {
    use_ipv6();
    let mut cfg = test_config();
    cfg.static_macs.clear();
    let mut bed = Bed::new(cfg);
    bed.run_script(REQUEST);
    let d = take_decision(&mut bed, 1);
    bed.engine.handle_decision(bed.now, d, &mut bed.sink);
    let b1 = v6(backend_ip(1));
    let out = bed.next_out().expect("a solicitation");
    let Frame::Nd(n) = parse(&out) else {
        panic!("{}", describe(out.data()))
    };
    assert!(n.solicit);
    assert_eq!(n.target, b1);
    assert_eq!(n.dst, nd::solicited_node(b1));
    assert_eq!(n.src, v6(switch_ip()));
    assert_eq!(
        &out.data()[0..6],
        &nd::multicast_mac(nd::solicited_node(b1))
    );
    assert!(bed.next_out().is_none());
    // An unsolicited advertisement (to all nodes) does not set the MAC.
    bed.inject(&advert(b1, [6; 6], nd::ALL_NODES, false));
    assert!(bed.next_out().is_none());
    assert_eq!(drops(&bed.counters, "arp_unsolicited"), 1);
    // The solicited answer does, and the waiting CREATE goes out to it.
    bed.inject(&advert(b1, backend_mac(1), v6(switch_ip()), true));
    let f = bed.next_out().expect("the CREATE");
    assert_eq!(&f.data()[0..6], &backend_mac(1));
    assert!(matches!(parse(&f), Frame::Udp(_)));
}

#[test]
fn the_switch_announces_its_ipv6_addresses_at_start() {
    use_ipv6();
    let mut cfg = test_config();
    cfg.gratuitous_arp = true;
    let bed = Bed::new(cfg);
    let mut arp = 0;
    let mut targets = vec![];
    let mut reports = 0;
    for f in &bed.sink.out {
        match wire::parse(f.data(), Verify::Full) {
            Ok(Frame::Arp(_)) => arp += 1,
            Ok(Frame::Nd(n)) => {
                assert!(!n.solicit && !n.solicited && n.override_);
                assert_eq!(n.dst, nd::ALL_NODES);
                targets.push(n.target);
            }
            // An MLD report (valid, and ignored by the switch itself).
            Err(dataplane::counters::DropReason::Ignored) => {
                assert_eq!(&f.data()[0..6], &[0x33, 0x33, 0, 0, 0, 0x16]);
                reports += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(arp, 1, "the IPv4 data address");
    assert_eq!(reports, 2, "the solicited-node groups joined, twice");
    targets.sort();
    let mut want = vec![nd::link_local(SWITCH_MAC), v6(vip()), v6(switch_ip())];
    want.sort();
    assert_eq!(targets, want);
}

#[test]
fn icmpv6_echo_to_the_vip_is_answered_and_to_others_not() {
    let mut bed = bed();
    let client = v6(client_ip());
    let echo = [128, 0, 0, 0, 0, 7, 0, 1, b'h', b'i'];
    bed.inject(&icmp6(client, v6(vip()), 64, CLIENT_MAC, &echo));
    let out = bed.next_out().expect("echo reply");
    let d = out.data();
    assert_eq!(d[ETH_LEN + IPV6_LEN], 129);
    assert_eq!(&d[0..6], &CLIENT_MAC);
    assert!(dataplane::wire::ipv6::l4_checksum_ok(
        v6(vip()),
        client,
        58,
        &d[ETH_LEN + IPV6_LEN..]
    ));
    bed.inject(&icmp6(
        client,
        "2001:2::77".parse().unwrap(),
        64,
        CLIENT_MAC,
        &echo,
    ));
    assert!(bed.next_out().is_none());
    assert_eq!(drops(&bed.counters, "not_for_us"), 1);
}

/// A Packet Too Big about a segment from the VIP to the client.
fn too_big(bed: &Bed, mtu: u32) -> Vec<u8> {
    let mut inner = vec![0u8; IPV6_LEN + 20];
    dataplane::wire::ipv6::emit_header(&mut inner, v6(vip()), v6(client_ip()), 6, 20, 64);
    inner[IPV6_LEN..IPV6_LEN + 2].copy_from_slice(&80u16.to_be_bytes());
    inner[IPV6_LEN + 2..IPV6_LEN + 4].copy_from_slice(&bed.client_port.to_be_bytes());
    let mut m = vec![2, 0, 0, 0];
    m.extend_from_slice(&mtu.to_be_bytes());
    m.extend_from_slice(&inner);
    // From a router on the path.
    icmp6("2001:2::1".parse().unwrap(), v6(vip()), 64, CLIENT_MAC, &m)
}

#[test]
fn packet_too_big_for_a_handed_off_connection_goes_to_its_backend() {
    let mut bed = bed();
    bed.run_script(&format!(
        "{REQUEST}0.002 decide 3
0.002 > create 3
0.003 < ack 3
0.003 state FORWARDING
"
    ));
    let f = too_big(&bed, 1280);
    bed.inject(&f);
    let out = bed.next_out().expect("relayed");
    assert_eq!(&out.data()[0..6], &backend_mac(3));
    assert_eq!(&out.data()[6..12], &SWITCH_MAC);
    assert_eq!(
        &out.data()[12..],
        &f[12..],
        "relayed unchanged but for the MACs"
    );
    // For a connection the switch does not hold: counted, not relayed.
    bed.client_port += 1;
    bed.inject(&too_big(&bed, 1280));
    assert!(bed.next_out().is_none());
    assert_eq!(drops(&bed.counters, "no_flow"), 1);
}

#[test]
fn ipv6_garbage_is_counted_by_name() {
    let mut bed = bed();
    let good = syn(&bed, Some(1460));
    // A Fragment header in front of TCP.
    let mut frag = good.clone();
    let nh_at = ETH_LEN + 6;
    let mut f = frag[..ETH_LEN + IPV6_LEN].to_vec();
    f[nh_at] = 44;
    f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&frag[ETH_LEN + IPV6_LEN..]);
    let plen = u16::from_be_bytes([f[ETH_LEN + 4], f[ETH_LEN + 5]]) + 8;
    f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&plen.to_be_bytes());
    bed.inject(&f);
    assert_eq!(drops(&bed.counters, "fragment"), 1);
    // Hop-by-Hop after a Destination Options header.
    let mut f = good[..ETH_LEN + IPV6_LEN].to_vec();
    f[nh_at] = 60;
    f.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&good[ETH_LEN + IPV6_LEN..]);
    let plen = u16::from_be_bytes([f[ETH_LEN + 4], f[ETH_LEN + 5]]) + 16;
    f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&plen.to_be_bytes());
    bed.inject(&f);
    assert_eq!(drops(&bed.counters, "ipv6_ext_chain"), 1);
    // Every truncation of a good SYN.
    for cut in 0..good.len() {
        bed.inject(&good[..cut]);
    }
    assert!(drops(&bed.counters, "malformed") >= (good.len() - ETH_LEN) as u64 - 1);
    // A wrong TCP checksum on a SYN.
    frag = good.clone();
    let n = frag.len();
    frag[n - 1] ^= 0xff;
    bed.inject(&frag);
    assert_eq!(drops(&bed.counters, "bad_checksum"), 1);
    assert!(bed.next_out().is_none(), "{}", bed.pending_desc());
}

#[test]
fn forwarding_over_ipv6_takes_plain_segments_and_ones_with_extension_headers_alike() {
    let mut bed = bed();
    bed.run_script(&format!(
        "{REQUEST}0.002 decide 1
0.002 > create 1
0.003 < ack 1
0.003 state FORWARDING
"
    ));
    let iss = bed.iss.unwrap();
    let seg = |bed: &Bed, seq: u32| {
        bed.client_frame(
            flags::ACK | flags::PSH,
            bed.client_isn + seq,
            iss + 1,
            65535,
            TcpOpts::default(),
            b"more",
        )
    };
    // A plain segment (the fixed-offset path) is relayed unchanged.
    let f = seg(&bed, 28);
    bed.inject(&f);
    let out = bed.next_out().expect("relayed");
    assert_eq!(&out.data()[0..6], &backend_mac(1));
    assert_eq!(&out.data()[12..], &f[12..]);
    // The same behind a Destination Options header (the general path).
    let f = seg(&bed, 32);
    let mut g = f[..ETH_LEN + IPV6_LEN].to_vec();
    g[ETH_LEN + 6] = 60;
    g.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    g.extend_from_slice(&f[ETH_LEN + IPV6_LEN..]);
    let plen = u16::from_be_bytes([g[ETH_LEN + 4], g[ETH_LEN + 5]]) + 8;
    g[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&plen.to_be_bytes());
    bed.inject(&g);
    let out = bed.next_out().expect("relayed");
    assert_eq!(&out.data()[0..6], &backend_mac(1));
    assert_eq!(&out.data()[12..], &g[12..]);
    // A payload length past the frame: neither path relays it.
    let mut h = seg(&bed, 36);
    h[ETH_LEN + 5] += 1;
    bed.inject(&h);
    assert!(bed.next_out().is_none());
    assert_eq!(drops(&bed.counters, "malformed"), 1);
    assert_eq!(bed.counters.snapshot().get("forwarded"), 2);
}

/// The groups in an MLDv2 report frame.
fn report_groups(f: &[u8]) -> Vec<Ipv6Addr> {
    let icmp = &f[ETH_LEN + IPV6_LEN + 8..];
    assert_eq!(icmp[0], 143, "an MLDv2 report");
    let n = u16::from_be_bytes([icmp[6], icmp[7]]) as usize;
    (0..n)
        .map(|k| {
            let r = &icmp[8 + 20 * k..8 + 20 * (k + 1)];
            Ipv6Addr::from(<[u8; 16]>::try_from(&r[4..20]).unwrap())
        })
        .collect()
}

/// An MLD query from a router's link-local address, with the Router Alert
/// Hop-by-Hop header it carries.
fn mld_query(hop_limit: u8) -> Vec<u8> {
    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let dst = nd::ALL_NODES;
    let mut q = vec![130u8, 0, 0, 0, 0, 10, 0, 0];
    q.extend_from_slice(&[0; 16]);
    q.extend_from_slice(&[2, 125, 0, 0]);
    let mut f = icmp6(src, dst, hop_limit, [2, 0, 0, 0, 0, 1], &q);
    // Insert the Hop-by-Hop header (Router Alert: MLD).
    let at = ETH_LEN + IPV6_LEN;
    f.splice(at..at, [58u8, 0, 5, 2, 0, 0, 1, 0]);
    f[ETH_LEN + 6] = 0;
    let plen = (q.len() + 8) as u16;
    f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&plen.to_be_bytes());
    f
}

#[test]
fn an_mld_query_is_answered_with_the_solicited_node_groups_at_most_twice_a_second() {
    let mut bed = bed();
    bed.inject(&mld_query(1));
    let out = bed.next_out().expect("a report");
    let mut groups = report_groups(out.data());
    groups.sort();
    let mut want: Vec<Ipv6Addr> = [nd::link_local(SWITCH_MAC), v6(vip()), v6(switch_ip())]
        .into_iter()
        .map(nd::solicited_node)
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(groups, want);
    // A second query at once: not answered again.
    bed.inject(&mld_query(1));
    assert!(bed.next_out().is_none());
    bed.advance_to(bed.now + 600_000_000);
    bed.inject(&mld_query(1));
    assert!(bed.next_out().is_some());
    // A query that could come from off-link (hop limit 64): ignored.
    bed.advance_to(bed.now + 600_000_000);
    bed.inject(&mld_query(64));
    assert!(bed.next_out().is_none());
    assert_eq!(bed.counters.snapshot().get("mld_reports_sent"), 2);
}

#[test]
fn an_ipv4_only_switch_sends_no_ipv6_at_all() {
    let mut cfg = test_config();
    cfg.gratuitous_arp = true;
    let mut bed = Bed::new(cfg);
    assert!(bed
        .sink
        .out
        .iter()
        .all(|f| f.data()[12..14] == [0x08, 0x06]));
    bed.sink.out.clear();
    bed.inject(&mld_query(1));
    assert!(bed.next_out().is_none());
}
