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

#define LOOPBACK_IFINDEX 1

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	if (ctx->ingress_ifindex == LOOPBACK_IFINDEX)
		return XDP_PASS;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
