// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Baton's XDP fast path (program `baton_fastpath`), attached to the data
 * interface by the AF_XDP backend (program.rs).
 *
 * It relays the client segments of FORWARDING connections in the kernel, the
 * way the worker's own fast path does (engine/forward.rs: `forward_fast`):
 * an IPv4 TCP segment without IP options, not a fragment, without SYN, FIN
 * or RST, with a correct IPv4 header checksum, whose (client, VIP, client
 * port, port) is in `flows` and not retired, gets its Ethernet destination
 * set to the backend's MAC and its source to the switch's, and goes back out
 * of the interface it came in on (XDP_TX). IP and TCP are untouched. The
 * flow's `last_seen_ns`, `rcv_nxt` and counters move as the worker's entry
 * would.
 *
 * Every other frame goes to the AF_XDP socket of its receive queue (the
 * worker decides), or to the kernel stack when that queue has no socket.
 * The program never drops: frames too short to parse go to the worker,
 * which counts malformed frames itself. The DROPPED counter exists for a
 * program that must drop one day and stays 0.
 *
 * The user-space side owns the flows: it inserts them when a connection
 * enters FORWARDING and removes them when the entry goes (flows.rs); the map
 * is a plain hash, never evicting on its own.
 *
 * A SYN whose 4-tuple is in `flows` retires the flow: the program stops
 * relaying it and leaves the entry for its worker to remove. A client that
 * reuses its 4-tuple for a new connection sends that SYN, and the new
 * connection may be answered by another worker than the old one (which
 * worker gets a frame follows the receive queue, and a queue is picked per
 * socket, not per 4-tuple, by some senders, veth among them); the old
 * flow's entry must not carry the new connection's segments to the old
 * backend. Each entry names its owner (worker and connection serial), so a
 * worker removing its old flow never removes the new connection's.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A flow's identity; every field in network byte order, as on the wire. */
struct flow_key {
	__u32 client;
	__u32 vip;
	__u16 client_port;
	__u16 port;
};

/* What the program needs to relay a flow, and what it saw of it. */
struct flow_val {
	__u8 mac[6];       /* the backend's MAC: new destination */
	__u8 wshift;       /* the backend's window scale */
	__u8 retired;      /* a SYN reused the 4-tuple: relay no more */
	__u32 rcv_nxt;     /* the client's next sequence number, host order */
	__u32 owner;       /* worker (top 8 bits) and connection serial */
	__u64 last_seen_ns; /* CLOCK_MONOTONIC of the last relayed segment */
	__u64 packets;     /* segments relayed */
	__u64 bytes;       /* their frame bytes */
};

/* The switch's side: its MAC (new source) and whether to relay at all. */
struct config {
	__u8 mac[6];
	__u8 fast_path;
	__u8 pad;
};

enum {
	FORWARDED_PACKETS = 0,
	FORWARDED_BYTES = 1,
	TO_WORKER = 2,
	PASSED = 3,
	DROPPED = 4,
	RETIRED = 5,
	N_STATS = 6,
};

/* max_entries of `flows` and `xsks` are set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
	__uint(max_entries, 1);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct config);
	__uint(max_entries, 1);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, N_STATS);
} stats SEC(".maps");

/* Per-CPU counters: a plain add is exact (XDP runs without migration). */
static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &which);

	if (c)
		*c += n;
}

/* 65535 << min(wshift, 14): the backend's largest window (RFC 7323). */
static __always_inline __u32 max_window(__u8 wshift)
{
	return 65535u << (wshift < 14 ? wshift : 14);
}

/*
 * `advance()` of engine/forward.rs: `end` replaces `rcv_nxt` only when it
 * lies ahead within the backend's window; retransmissions, reordering and
 * numbers far away leave it.
 */
static __always_inline __u32 advance(__u32 rcv_nxt, __u32 end, __u8 wshift)
{
	__u32 ahead = end - rcv_nxt;

	return ahead != 0 && ahead <= max_window(wshift) ? end : rcv_nxt;
}

/* The IPv4 header (20 bytes, no options) sums to 0xffff. */
static __always_inline int ipv4_csum_ok(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/*
 * Relays the frame if it is an ordinary segment of an offloaded flow;
 * returns 0 (frame untouched) otherwise.
 */
static __always_inline int relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || !cfg->fast_path)
		return 0;

	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct tcphdr *tcp = (void *)ip + sizeof(*ip);

	/* One check covers Ethernet, a 20-byte IPv4 header and a 20-byte TCP one. */
	if ((void *)(tcp + 1) > data_end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	/* Version 4, IHL 5 (no options). */
	if (*(__u8 *)ip != 0x45 || ip->protocol != IPPROTO_TCP)
		return 0;
	/* Neither MF nor a fragment offset. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return 0;

	__u32 frame_len = data_end - data;
	__u32 total = bpf_ntohs(ip->tot_len);
	__u32 tcp_hl = (__u32)tcp->doff * 4;

	/* The IPv4 length fits the frame (Ethernet padding may follow). */
	if (total < sizeof(*ip) + sizeof(*tcp) || total + sizeof(*eth) > frame_len)
		return 0;
	if (tcp_hl < sizeof(*tcp) || tcp_hl + sizeof(*ip) > total)
		return 0;
	if (tcp->fin || tcp->rst)
		return 0;
	if (!ipv4_csum_ok(ip))
		return 0;

	struct flow_key key = {
		.client = ip->saddr,
		.vip = ip->daddr,
		.client_port = tcp->source,
		.port = tcp->dest,
	};
	struct flow_val *f = bpf_map_lookup_elem(&flows, &key);

	if (!f)
		return 0;
	if (tcp->syn) {
		/* A new connection on this 4-tuple, or a stray SYN: either way the
		 * worker judges it, and the old flow is relayed no more (a stray SYN
		 * costs the flow only the fast path; its worker still forwards it). */
		if (!f->retired) {
			f->retired = 1;
			count(RETIRED, 1);
		}
		return 0;
	}
	if (f->retired)
		return 0;

	__builtin_memcpy(eth->h_dest, f->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->mac, ETH_ALEN);

	/*
	 * The flow's fields are updated in place without a lock. Its segments
	 * normally arrive on one queue (RSS hashes the 4-tuple), hence one
	 * CPU; should two CPUs relay the same flow at once, `rcv_nxt` or
	 * `last_seen_ns` may take either segment's value, which is harmless:
	 * both are within the window, and both are "just now". The counters
	 * use atomic adds.
	 */
	__u32 end = bpf_ntohl(tcp->seq) + (total - sizeof(*ip) - tcp_hl);

	f->rcv_nxt = advance(f->rcv_nxt, end, f->wshift);
	f->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&f->packets, 1);
	__sync_fetch_and_add(&f->bytes, frame_len);

	count(FORWARDED_PACKETS, 1);
	count(FORWARDED_BYTES, frame_len);
	return 1;
}

SEC("xdp")
int baton_fastpath(struct xdp_md *ctx)
{
	if (relay(ctx))
		return XDP_TX;

	__u32 q = ctx->rx_queue_index;

	if (bpf_map_lookup_elem(&xsks, &q)) {
		count(TO_WORKER, 1);
		return bpf_redirect_map(&xsks, q, XDP_PASS);
	}
	count(PASSED, 1);
	return XDP_PASS;
}
