// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The XDP half of the AF_XDP C forwarder (bench/afxdp-fwd/fwd.c): attached in native (driver)
// mode to the forwarder's ingress port, it hands every frame to the AF_XDP socket bound to the
// queue the frame arrived on. It makes no decision at all: the forwarder is a baseline that
// measures what an AF_XDP copy-mode switch costs on this kernel, not a switch. A queue with no
// socket in the map passes its frames to the stack (the low bits of bpf_redirect_map's flags
// are the action when the key has no entry), so the port keeps working while nothing listens.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// One entry per receive queue; the forwarder binds queue 0 (a veth has one by default).
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} xsks SEC(".maps");

SEC("xdp")
int afxdp_fwd(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
