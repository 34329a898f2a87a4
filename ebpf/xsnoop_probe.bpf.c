// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Helper XDP programs for rate probes of the fast path (tests/tests/fastpath_xdp.rs), never
// attached to switch ports:
// - probe_tx: returns XDP_TX; run with BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES on a sender's
//   veth it transmits the test frame at ~10 Mpps from one CPU (trafgen/pktgen cannot here);
// - probe_count: counts and drops on a receiver (so receivers cost almost nothing);
// - probe_pass: XDP_PASS, kept attached on the sender namespace's lo so every BPF_PROG_RUN does
//   not re-attach the XDP dispatcher (two RCU grace periods per call otherwise).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_counts SEC(".maps");

SEC("xdp")
int probe_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

SEC("xdp")
int probe_count(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&probe_counts, &k);
	if (v)
		*v += 1;
	return XDP_DROP;
}

SEC("xdp")
int probe_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
