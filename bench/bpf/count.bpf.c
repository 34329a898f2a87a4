// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Receiver for `make bench`: on each receiving host's interface, counts and drops the benchmark's
// frames (IPv4 UDP to BENCH_UDP_PORT, multicast or unicast) so the host stack is never the
// bottleneck, and
// passes everything else, so the host's kernel still answers IGMP queries (RFC 2236 §3 /
// RFC 3376 §5) and its memberships do not expire during a run. Counters are per CPU; userspace
// sums them.
//
// Two attach points, one classification: `bench_count` (XDP) and `bench_count_tc` (tc ingress).
// On a veth an XDP program makes the driver copy every arriving skb into a page-pool page
// (~1 us per frame here), which would make the receivers the bottleneck for switches that forward
// skbs (the bridge, AF_XDP copy mode); tc ingress sees those skbs without a copy.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Keep in sync with bench/src/bpf.rs.
#define BENCH_UDP_PORT 47000
#define CTR_FRAMES 0
#define CTR_BYTES 1
#define CTR_OTHER 2
#define NUM_CTRS 3

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_CTRS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void bump(__u32 idx, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &idx);
	if (v)
		*v += by;
}

// Counts the frame in [data, end); returns 1 for a benchmark frame (to be dropped).
static __always_inline int count_frame(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto other;
	if (ip->protocol != IPPROTO_UDP || ip->ihl < 5)
		goto other;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(BENCH_UDP_PORT))
		goto other;
	bump(CTR_FRAMES, 1);
	bump(CTR_BYTES, end - data);
	return 1;
other:
	bump(CTR_OTHER, 1);
	return 0;
}

SEC("xdp")
int bench_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	return count_frame(data, end) ? XDP_DROP : XDP_PASS;
}

// tc ingress: the program sees the frame from its Ethernet header; only the linear part is
// parsed, which holds the headers of every frame the bench sends.
SEC("classifier")
int bench_count_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	return count_frame(data, end) ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
