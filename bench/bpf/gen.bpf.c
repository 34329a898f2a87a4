// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Traffic generator for `make bench`: run with BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES on the
// sending host's veth, every repetition of the program transmits the test frame once (the kernel
// turns XDP_TX of a live-frames run into a redirect out of that interface). One vCPU reaches
// ~10 Mpps here, where socket-based generators stop near 0.3 Mpps (testbed-facts.md).
//
// The same program is also kept attached (generic mode) to the sender namespace's loopback, so
// the XDP dispatcher already holds it and a test run does not attach/detach it (two RCU grace
// periods per run). Loopback traffic, if any, is passed untouched.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define LOOPBACK_IFINDEX 1

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	if (ctx->ingress_ifindex == LOOPBACK_IFINDEX)
		return XDP_PASS;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// IGMP report flood for `make bench` (issue 5 §4: the multicast rate while one port floods
// reports). Run with live frames like `bench_gen`, on a template IGMPv3 report built by the bench
// (bench/src/flood.rs): Ethernet, IPv4 with the Router Alert option (24 B header, RFC 3376 §4),
// one group record without sources. Every repetition writes a random group from 239.128.0.0/9
// into the record and recomputes the IGMP checksum over the whole message (RFC 3376 §4.2.3), so
// the switch sees a stream of valid reports, each for a different group. Live frames keep the
// data of a recycled page, so the checksum is computed from scratch, never patched.
//
// Keep the offsets in sync with bench/src/flood.rs (FLOOD_*), whose test checks them against the
// dataplane's own codec.
#define FLOOD_IGMP_OFF 38	// 14 B Ethernet + 24 B IPv4 with Router Alert
#define FLOOD_IGMP_LEN 16	// 8 B report header + one 8 B record, no sources

SEC("xdp")
int bench_flood(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *igmp = (__u8 *)data + FLOOD_IGMP_OFF;
	__u32 group, sum = 0;
	int i;

	if (ctx->ingress_ifindex == LOOPBACK_IFINDEX)
		return XDP_PASS;
	if ((void *)(igmp + FLOOD_IGMP_LEN) > end)
		return XDP_DROP;
	group = bpf_htonl(0xef800000u | (bpf_get_prandom_u32() & 0x007fffffu));
	__builtin_memcpy(igmp + 12, &group, 4);
	igmp[2] = 0;
	igmp[3] = 0;
#pragma unroll
	for (i = 0; i < FLOOD_IGMP_LEN; i += 2)
		sum += ((__u32)igmp[i] << 8) | igmp[i + 1];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	igmp[2] = sum >> 8;
	igmp[3] = sum & 0xff;
	return XDP_TX;
}
