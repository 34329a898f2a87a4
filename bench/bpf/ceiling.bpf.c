// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The XDP ceiling for `make bench`: the least work any switch can do to replicate a frame to its
// members on this kernel. Attached to the sender-facing switch port, it sends every arriving
// frame to each port in `members` (broadcast frames: in `everyone`; unicast: a plain redirect to
// the first member) by in-kernel devmap broadcast (one clone per entry, the ingress
// port excluded). It makes no decision at all: it is the bound xsnoop and the Linux bridge are
// measured against, not a switch (fastpath-facts.md: keep non-members out of the map, since every
// entry costs a clone).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_MEMBERS 64

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, MAX_MEMBERS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct bpf_devmap_val));
} members SEC(".maps");

// Every port but the sender's: the ceiling for broadcast frames.
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, MAX_MEMBERS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct bpf_devmap_val));
} everyone SEC(".maps");

SEC("xdp")
int bench_ceiling(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	// The two tests it makes, on the first octet of the destination: broadcast (ff) goes to
	// every port, so the broadcast benchmark has a ceiling too; unicast (group bit clear) is
	// one plain redirect to the first member, the least an L2 switch can do with a known MAC.
	if ((void *)(data + 1) > end)
		return XDP_DROP;
	if (data[0] == 0xff)
		return bpf_redirect_map(&everyone, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
	if (!(data[0] & 1))
		return bpf_redirect_map(&members, 0, 0);
	return bpf_redirect_map(&members, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
