// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * `baton_pass`: passes every frame to the kernel stack. Not part of the
 * switch: a veth accepts the frames its peer's XDP program transmits
 * (XDP_TX) only while it runs NAPI, and an XDP program is what turns NAPI
 * on reliably (GRO does too, but then coalesces the relayed ACKs and the
 * senders stall). Test beds attach it to the hub end of the switch's veth.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int baton_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
