// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xsnoop's XDP classifier: runs on every switch port, counts each frame by class (per port, per
// CPU) and redirects it into the port's AF_XDP socket, where the userspace dataplane forwards it.
// The kernel stack never sees a switch port's frames while a socket is installed; an interface
// that userspace did not register (no slot) passes untouched.
//
// Parsing is bounded: Ethernet, at most one 802.1Q tag, the IPv4 header, the first bytes of IGMP.
// Userspace re-parses everything it acts on; the class here is for counters, and is also handed
// over in front of each redirected frame as metadata (XSNOOP_META_MAGIC). Measured on Linux 6.18
// with veth: the metadata reaches the AF_XDP socket in copy mode with native and generic XDP
// (tests/tests/xdp_afxdp.rs asserts it).
//
// Build: clang -O2 -g -target bpf -I/usr/include/$(gcc -dumpmachine) -c xsnoop.bpf.c
// (dataplane/build.rs does this). Keep the constants below in sync with dataplane/src/xdp/abi.rs.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Port slots (index of a switch port in the maps); the dataplane's PortSet holds 128 ports.
#define MAX_SLOTS 128
// RX queues per port that can have an AF_XDP socket.
#define MAX_QUEUES 64

// Frame classes (counter index within a slot's block).
enum xsnoop_class {
	CLASS_IGMP = 0,        // IPv4 protocol 2 (RFC 2236 / RFC 3376)
	CLASS_PIM = 1,         // IPv4 protocol 103: a multicast router port (RFC 4541 §2.1.1)
	CLASS_MCAST_DATA = 2,  // IPv4 to 224.0.0.0/4 outside 224.0.0.0/24: snooped data
	CLASS_LINK_LOCAL = 3,  // IPv4 to 224.0.0.0/24, not IGMP/PIM: always flooded (RFC 4541 §2.1.2 (2))
	CLASS_OTHER_MCAST = 4, // group MAC bit set, not IPv4 multicast: flooded
	CLASS_BROADCAST = 5,   // ff:ff:ff:ff:ff:ff
	CLASS_UNICAST = 6,     // individual destination MAC
	CLASS_MALFORMED = 7,   // too short / bad IPv4 header / truncated IGMP
	NUM_CLASSES = 8,
};

// Counters after the classes in each slot's block.
#define CTR_REDIRECTED NUM_CLASSES          // handed to an AF_XDP socket
#define CTR_REDIRECT_FAIL (NUM_CLASSES + 1) // no socket for (slot, queue), or redirect refused
#define SLOT_STRIDE (NUM_CLASSES + 2)

// Metadata put in front of a redirected frame (bpf_xdp_adjust_meta), so userspace can take the
// class and port slot from it instead of recomputing them (AfXdp::rx_meta reads it).
#define XSNOOP_META_MAGIC 0x58534e50 // "XSNP"
struct xsnoop_meta {
	__u32 magic;
	__u16 class;
	__u16 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);   // ifindex
	__type(value, __u32); // port slot
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_SLOTS * MAX_QUEUES);
	__type(key, __u32); // slot * MAX_QUEUES + rx_queue_index
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SLOTS * SLOT_STRIDE);
	__type(key, __u32); // slot * SLOT_STRIDE + counter
	__type(value, __u64);
} counters SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 inner_proto;
};

static __always_inline void count(__u32 slot, __u32 ctr)
{
	__u32 key = slot * SLOT_STRIDE + ctr;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);
	if (v)
		*v += 1;
}

// Classifies the frame in [data, end), `len` octets long. Every access is bounds-checked
// against `end`. Packet pointers only ever move by constants: a variable offset is pointer
// arithmetic the verifier refuses without CAP_PERFMON, and xsnoop runs with CAP_BPF,
// CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK only. Lengths are compared as scalars instead.
static __always_inline __u32 classify(void *data, void *end, __u64 len)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return CLASS_MALFORMED;

	__u16 proto = eth->h_proto;
	void *l3 = eth + 1;
	__u64 l3_off = sizeof(*eth);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;
		if ((void *)(vh + 1) > end)
			return CLASS_MALFORMED;
		proto = vh->inner_proto;
		l3 = vh + 1;
		l3_off += sizeof(*vh);
	}

	if (!(eth->h_dest[0] & 1))
		return CLASS_UNICAST;
	if ((eth->h_dest[0] & eth->h_dest[1] & eth->h_dest[2] & eth->h_dest[3] & eth->h_dest[4] &
	     eth->h_dest[5]) == 0xff)
		return CLASS_BROADCAST;
	if (proto != bpf_htons(ETH_P_IP))
		return CLASS_OTHER_MCAST;

	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return CLASS_MALFORMED;
	__u32 ihl = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl || l3_off + tot > len)
		return CLASS_MALFORMED;

	__u32 daddr = bpf_ntohl(ip->daddr);
	if ((daddr & 0xf0000000) != 0xe0000000)
		return CLASS_OTHER_MCAST; // group MAC, but not an IPv4 multicast destination
	if (ip->protocol == IPPROTO_IGMP) {
		// Every IGMP message is at least 8 octets (RFC 2236 §2, RFC 3376 §4).
		if (tot < ihl + 8)
			return CLASS_MALFORMED;
		return CLASS_IGMP;
	}
	if (ip->protocol == IPPROTO_PIM)
		return CLASS_PIM;
	if ((daddr & 0xffffff00) == 0xe0000000)
		return CLASS_LINK_LOCAL; // 224.0.0.0/24 (RFC 4541 §2.1.2 (2))
	return CLASS_MCAST_DATA;
}

SEC("xdp")
int xsnoop_port(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *slotp = bpf_map_lookup_elem(&ports, &ifindex);
	if (!slotp)
		return XDP_PASS; // not a switch port
	__u32 slot = *slotp;
	if (slot >= MAX_SLOTS)
		return XDP_PASS;

	__u32 class = classify((void *)(long)ctx->data, (void *)(long)ctx->data_end,
			       bpf_xdp_get_buff_len(ctx));
	count(slot, class);

	__u32 queue = ctx->rx_queue_index;
	if (queue >= MAX_QUEUES) {
		count(slot, CTR_REDIRECT_FAIL);
		return XDP_PASS;
	}
	__u32 key = slot * MAX_QUEUES + queue;
	if (!bpf_map_lookup_elem(&xsks, &key)) {
		count(slot, CTR_REDIRECT_FAIL);
		return XDP_PASS;
	}

	// Best effort: a driver without metadata support refuses, and the frame goes without it.
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct xsnoop_meta)) == 0) {
		struct xsnoop_meta *meta = (void *)(long)ctx->data_meta;
		if ((void *)(meta + 1) <= (void *)(long)ctx->data) {
			meta->magic = XSNOOP_META_MAGIC;
			meta->class = class;
			meta->slot = slot;
		}
	}

	int act = bpf_redirect_map(&xsks, key, XDP_PASS);
	count(slot, act == XDP_REDIRECT ? CTR_REDIRECTED : CTR_REDIRECT_FAIL);
	return act;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
