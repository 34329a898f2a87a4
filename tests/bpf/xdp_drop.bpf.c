// SPDX-License-Identifier: GPL-2.0
// A receiver that drops everything at the driver: test hosts attach it (`ip link set dev IF xdp
// obj ...`) when they only need to absorb traffic, so millions of frames cost the receiving
// host almost nothing on a small machine and the switch under test gets the CPU.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
