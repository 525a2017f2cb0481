// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * `baton_drop`: counts every frame and drops it. A measurement aid, not part
 * of the switch: attached in place of the fast path, it shows how many
 * frames per second the interface and its driver deliver to XDP at all, the
 * bound the fast path's own rate is compared with.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} dropped SEC(".maps");

SEC("xdp")
int baton_drop(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&dropped, &zero);

	if (c)
		*c += 1;
	return XDP_DROP;
}
