// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xsnoop's XDP program: runs on every switch port, counts each frame by class (per port, per
// CPU) and either replicates it in the kernel (the fast path, below) or redirects it into the
// port's AF_XDP socket, where the userspace dataplane forwards it. The kernel stack never sees a
// switch port's frames while a socket is installed; an interface that userspace did not register
// (no slot) passes untouched.
//
// Parsing is bounded: Ethernet, at most one 802.1Q tag, the IPv4 header, the first bytes of IGMP.
// Userspace re-parses everything it acts on; the class here is for counters, and is also handed
// over in front of each redirected frame as metadata (XSNOOP_META_MAGIC). Measured on Linux 6.18
// with veth: the metadata reaches the AF_XDP socket in copy mode with native and generic XDP
// (tests/tests/xdp_afxdp.rs asserts it).
//
// The fast path (dataplane/src/fastpath programs its maps) is gated per VLAN by FP_ON in
// `fp_vlans`; a VLAN without it (every VLAN, unless userspace enabled it) behaves exactly as
// before: every frame to the AF_XDP socket. With it, well-formed IPv4 multicast data (and
// 224.0.0.0/24 link-local traffic) is replicated here with one devmap broadcast to exactly the
// egress ports that userspace computed from the snooping table (RFC 4541 §2.1.2); IGMP, PIM,
// everything unusual and everything else still goes to userspace.
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
#define CTR_FAST (NUM_CLASSES + 2)          // replicated in the kernel by the fast path
#define CTR_FAST_DROP (NUM_CLASSES + 3)     // fast path VLAN, but no egress map for the frame
#define SLOT_STRIDE (NUM_CLASSES + 4)

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

// ---------------------------------------------------------------------------------------------
// The in-kernel fast path. Userspace (dataplane/src/fastpath) computes every map below from the
// snooping engine's ForwardingTable and the port VLAN map, and changes only what differs.

#define MAX_VLANS 4096
// Outer keys (VLAN, kind, group, source): groups, (S,G) entries, one flood and one unregistered
// entry per VLAN. 131072 so that 100 000 groups (issue 5's table-scale point) plus their (S,G)
// keys stay in the kernel. A preallocated HASH: its memory is taken at load time whether used or
// not (measured: see FP_MAX_KEYS in dataplane/src/xdp/abi.rs).
#define FP_MAX_KEYS 131072
// Replication lists (inner devmaps): one live list per distinct egress set (keys with the same
// set share it), plus lists that no key uses any more but a frame in flight may still hold
// (quarantined until a grace period passed). Only the array slots are reserved here (8 B each);
// the lists themselves are created on demand, each a descriptor in the switch process.
#define FP_MAX_LISTS 32768
// Per-(VLAN, S, G) counters: an LRU, so at most this many flows are counted at a time (the
// least recently seen flow is evicted; forwarding never depends on it).
#define FP_MAX_FLOWS 16384

// fp_ports[slot].mode
#define FP_PORT_NONE 0
#define FP_PORT_ACCESS 1
#define FP_PORT_TRUNK 2

// fp_vlans[vid].flags
#define FP_ON 1       // the fast path forwards this VLAN's multicast data
#define FP_SNOOPING 2 // snooping on; off = all multicast flooded (RFC 4541 §2 is optional)
#define FP_TAGGED 4   // some egress entry pushes a tag: ingress puts the VLAN in front as metadata
#define FP_UNICAST 8  // known unicast and broadcast in the kernel too; every fast-path frame then
		      // needs a source MAC learned on its ingress port (else: to userspace, which
		      // learns it), so learning and ageing keep one owner
#define FP_SOURCES 16 // some group has an (S,G) key: without it only (*,G) keys are looked up

// Learned stations (written by userspace from its FDB) and unicast egress entries.
#define FP_MAX_FDB 16384
#define FP_MAX_UNICAST 8192

// fp_key.kind
#define FP_KIND_SOURCE 1 // (VLAN, G, S): a source some port names in an INCLUDE/EXCLUDE list
#define FP_KIND_ANY 2    // (VLAN, G): every other source of a registered group
#define FP_KIND_FLOOD 3  // (VLAN): every port of the VLAN (snooping off, 224.0.0.0/24, overflow)
#define FP_KIND_UNREG 4  // (VLAN): mrouter + flood_unregistered ports (RFC 4541 §2.1.2 (3))

// Metadata in front of a fast-path frame whose VLAN has tagged egress ports; the devmap egress
// programs consume and remove it, so it never reaches a wire or a receiver.
#define XSNOOP_FP_META_MAGIC 0x58534650 // "XSFP"

struct fp_port {
	__u16 pvid; // VLAN of untagged frames (access VLAN, trunk native VLAN), 0 = none
	__u8 mode;  // FP_PORT_*
	__u8 pad;
};

struct fp_vlan {
	__u32 flags;      // FP_*
	__u32 pad;
	__u64 members[2]; // slots that carry the VLAN (bit i = slot i): tagged ingress admission
};

struct fp_key {
	__u16 vlan;
	__u16 kind;    // FP_KIND_*
	__be32 group;  // network order, 0 for FLOOD/UNREG
	__be32 source; // network order, 0 unless FP_KIND_SOURCE
};

struct fp_count {
	__u64 packets;
	__u64 bytes;
};

struct fp_fdb_key {
	__u16 vlan;
	__u8 mac[6];
};

struct fp_fdb_val {
	__u32 slot;         // the port the station was learned on
	__u32 seen_jiffies; // low 32 bits of jiffies when `seen_ns` was last written (0 from userspace)
	__u64 seen_ns;      // bpf_ktime_get_ns of a recent frame from it (see FP_SEEN_JIFFIES)
};

// A station's `seen_ns` is rewritten once jiffies moved this far since the last write: 64 ms at
// HZ=1000, 0.64 s at HZ=100, well inside the ageing rules' one-second resolution. Reading
// jiffies is one load (the verifier inlines bpf_jiffies64); reading the clock every frame was a
// quarter of the unicast fast path's cost here (rdtsc in a VM, measured with BPF_PROG_RUN).
#define FP_SEEN_JIFFIES 64

struct fp_meta {
	__u32 magic;
	__u16 tci; // VID of the frame's VLAN, with the PCP/DEI bits of its ingress tag (0 if none)
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32); // slot
	__type(value, struct fp_port);
} fp_ports SEC(".maps");

// An ARRAY never misses: an unset VLAN reads as flags 0, i.e. the fast path off.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VLANS);
	__type(key, __u32); // VID
	__type(value, struct fp_vlan);
} fp_vlans SEC(".maps");

// A replication list holds exactly the egress ports of its keys (key = port slot, value = ifindex
// and an optional egress program), so one broadcast redirect replicates at the devmap ceiling.
// key_size/value_size spelled out: aya does not widen an inner template, and clang 14 can emit
// struct bpf_devmap_val as a forward declaration.
struct fp_devmap {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, MAX_SLOTS);
	__uint(key_size, 4);
	__uint(value_size, 8);
};

// Keys → replication lists, like an ASIC's multicast-group index: `fp_groups` maps each key to
// the id of a list in `fp_lists`, and keys with the same egress entries share one list. Why two
// levels: every update or delete of a map-in-map makes the kernel wait for an RCU grace period
// (~10 ms here), while a plain hash update does not and is atomic for a reader. So userspace
// creates lists ahead of need (a pool inserted into `fp_lists` in batches, one grace period per
// batch), fills a free one in place when a new set appears, and then only re-points keys: a new
// group forwards after a few microsecond-scale syscalls (dataplane/src/fastpath/lists.rs).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_KEYS);
	__type(key, struct fp_key);
	__type(value, __u32); // list id: index into fp_lists
} fp_groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, FP_MAX_LISTS);
	__type(key, __u32);
	__array(values, struct fp_devmap);
} fp_lists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_FDB);
	__type(key, struct fp_fdb_key);
	__type(value, struct fp_fdb_val);
} fp_fdb SEC(".maps");

// Unicast egress: key VLAN * MAX_SLOTS + slot, one entry per port of each unicast VLAN, with the
// egress program its tagging in that VLAN needs.
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, FP_MAX_UNICAST);
	__uint(key_size, 4);
	__uint(value_size, 8);
} fp_unicast SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, FP_MAX_FLOWS);
	__type(key, struct fp_key); // kind 0: (VLAN, group, source)
	__type(value, struct fp_count);
} fp_flows SEC(".maps");

// RFC 4541 §2.1.2 (6) asks a snooping switch to verify the IPv4 header before acting on it; a
// header without options is verified here, anything else goes to userspace.
static __always_inline int ipv4_csum_ok(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

// The replication list (inner devmap) of `key`, or NULL if the key is absent. The id is read
// once; a list id a reader holds is never given another egress set before an RCU grace period
// has passed (userspace quarantines it), so the frame goes to the key's old or new set.
static __always_inline void *fp_list(struct fp_key *key)
{
	__u32 *id = bpf_map_lookup_elem(&fp_groups, key);
	if (!id)
		return 0;
	__u32 list = *(volatile __u32 *)id;
	return bpf_map_lookup_elem(&fp_lists, &list);
}

static __always_inline void fp_count_flow(struct fp_key *k, __u64 len)
{
	struct fp_key fk = { .vlan = k->vlan, .kind = 0, .group = k->group, .source = k->source };
	struct fp_count *c = bpf_map_lookup_elem(&fp_flows, &fk);
	if (c) {
		c->packets += 1;
		c->bytes += len;
		return;
	}
	struct fp_count init = { .packets = 1, .bytes = len };
	bpf_map_update_elem(&fp_flows, &fk, &init, BPF_NOEXIST);
}

// The fast path for a frame of class `class` on `slot`; `tagged` is a constant after inlining,
// so every packet offset is a constant. Returns an XDP action, or -1: not handled here, to
// userspace as before.
static __always_inline int fast_path(struct xdp_md *ctx, __u32 slot, __u32 class, const int tagged)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	const __u32 l2 = tagged ? sizeof(struct ethhdr) + sizeof(struct vlan_hdr)
				: sizeof(struct ethhdr);
	if (data + l2 > end)
		return -1;
	struct ethhdr *eth = data;
	struct vlan_hdr *vh = (void *)(eth + 1);

	struct fp_port *port = bpf_map_lookup_elem(&fp_ports, &slot);
	if (!port || port->mode == FP_PORT_NONE)
		return -1;
	__u16 tci = 0;
	__u32 vid;
	__u16 proto = eth->h_proto;
	if (tagged) {
		if (eth->h_proto != bpf_htons(ETH_P_8021Q))
			return -1; // 802.1ad (QinQ) is userspace's to refuse
		tci = bpf_ntohs(vh->tci);
		vid = tci & 0x0fff;
		proto = vh->inner_proto;
		// Priority-tagged frames and tags on access ports: userspace (IEEE 802.1Q §6.9).
		if (vid == 0 || port->mode != FP_PORT_TRUNK)
			return -1;
	} else {
		vid = port->pvid;
		if (vid == 0)
			return -1;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return -1; // a second tag: userspace refuses QinQ
	struct fp_vlan *v = bpf_map_lookup_elem(&fp_vlans, &vid);
	if (!v || !(v->flags & FP_ON))
		return -1;
	if (slot >= MAX_SLOTS || !((v->members[(slot >> 6) & 1] >> (slot & 63)) & 1))
		return -1; // the port does not carry the VLAN: userspace drops and counts it

	// A station source MAC only (never learned nor forwarded otherwise).
	__u8 *src = eth->h_source;
	if ((src[0] & 1) || !(src[0] | src[1] | src[2] | src[3] | src[4] | src[5]))
		return -1;
	// IPv4 in any class: a header without options, with a good checksum and a total length
	// inside the frame (RFC 4541 §2.1.2 (6); userspace drops broken headers even in unicast).
	struct iphdr *ip = data + l2;
	int is_ip = proto == bpf_htons(ETH_P_IP);
	if (is_ip) {
		if ((void *)(ip + 1) > end)
			return -1;
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (ip->version != 4 || ip->ihl != 5 || tot < sizeof(*ip) ||
		    l2 + tot > bpf_xdp_get_buff_len(ctx) || !ipv4_csum_ok(ip))
			return -1;
	}
	int mcast = class == CLASS_MCAST_DATA || class == CLASS_LINK_LOCAL;
	if (mcast && !is_ip)
		return -1;

	if (v->flags & FP_UNICAST) {
		// Learning stays in userspace: a source it has not learned on this port goes there.
		struct fp_fdb_key sk = { .vlan = vid };
		__builtin_memcpy(sk.mac, eth->h_source, 6);
		struct fp_fdb_val *sv = bpf_map_lookup_elem(&fp_fdb, &sk);
		if (!sv || sv->slot != slot)
			return -1;
		__u32 j = (__u32)bpf_jiffies64();
		if (j - sv->seen_jiffies >= FP_SEEN_JIFFIES) {
			sv->seen_jiffies = j;
			sv->seen_ns = bpf_ktime_get_ns();
		}
	}

	struct fp_key key = { .vlan = vid };
	void *inner = 0;
	int unicast = 0;
	if (class == CLASS_UNICAST || class == CLASS_BROADCAST) {
		if (!(v->flags & FP_UNICAST))
			return -1;
		if (class == CLASS_BROADCAST) {
			key.kind = FP_KIND_FLOOD;
			inner = fp_list(&key);
		} else {
			// Known unicast: the learned port, if it carries the VLAN; unknown → userspace,
			// which floods it; back out of the ingress port → userspace, which drops it.
			struct fp_fdb_key dk = { .vlan = vid };
			__builtin_memcpy(dk.mac, eth->h_dest, 6);
			struct fp_fdb_val *dv = bpf_map_lookup_elem(&fp_fdb, &dk);
			if (!dv || dv->slot == slot || dv->slot >= MAX_SLOTS)
				return -1;
			__u32 ukey = vid * MAX_SLOTS + dv->slot;
			// The port's unicast entry, or userspace if it has none (it is leaving the
			// VLAN): the redirect's own lookup decides, with XDP_PASS as "absent". Only
			// the last redirect a program sets takes effect, so the XDP_DROP exits below
			// and the AF_XDP redirect stay correct.
			if (bpf_redirect_map(&fp_unicast, ukey, XDP_PASS) != XDP_REDIRECT)
				return -1;
			unicast = 1;
		}
	} else if (!mcast) {
		return -1;
	} else {
		// An IANA IPv4 multicast MAC (RFC 1112 §6.4).
		if (eth->h_dest[0] != 0x01 || eth->h_dest[1] != 0x00 || eth->h_dest[2] != 0x5e)
			return -1;
		if (class == CLASS_LINK_LOCAL || !(v->flags & FP_SNOOPING)) {
			// 224.0.0.0/24 is never snooped (RFC 4541 §2.1.2 (2)); snooping off floods.
			key.kind = FP_KIND_FLOOD;
			inner = fp_list(&key);
		} else {
			// RFC 4541 §2.1.2 (1), (7): the members whose source filter admits the source,
			// plus the mrouter ports; a source nobody lists uses the any-source entry.
			key.group = ip->daddr;
			if (v->flags & FP_SOURCES) {
				key.kind = FP_KIND_SOURCE;
				key.source = ip->saddr;
				inner = fp_list(&key);
			}
			if (!inner) {
				key.kind = FP_KIND_ANY;
				key.source = 0;
				inner = fp_list(&key);
			}
			if (!inner) {
				// Unregistered (RFC 4541 §2.1.2 (3)).
				struct fp_key u = { .vlan = vid, .kind = FP_KIND_UNREG };
				inner = fp_list(&u);
			}
		}
		struct fp_key flow = { .vlan = vid, .group = ip->daddr, .source = ip->saddr };
		if (inner)
			fp_count_flow(&flow, bpf_xdp_get_buff_len(ctx));
	}
	if (!unicast && !inner) {
		count(slot, CTR_FAST_DROP);
		return XDP_DROP;
	}

	if (tagged) {
		// Every frame leaves the ingress program untagged; egress programs push tags.
		__u8 macs[12];
		__builtin_memcpy(macs, data, 12);
		if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct vlan_hdr)))
			return XDP_DROP;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		if (data + 12 > end)
			return XDP_DROP;
		__builtin_memcpy(data, macs, 12);
	}
	if (v->flags & FP_TAGGED) {
		if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct fp_meta)))
			return XDP_DROP; // no metadata: a tagged egress would not know the VLAN
		struct fp_meta *m = (void *)(long)ctx->data_meta;
		if ((void *)(m + 1) > (void *)(long)ctx->data)
			return XDP_DROP;
		m->magic = XSNOOP_FP_META_MAGIC;
		m->tci = (tci & 0xf000) | (__u16)vid;
		m->pad = 0;
	}
	count(slot, CTR_FAST);
	if (unicast)
		return XDP_REDIRECT; // set up above
	return bpf_redirect_map(inner, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
}

// Takes the fast-path metadata off a clone; returns the TCI it carried, or -1 without it.
static __always_inline int take_meta(struct xdp_md *ctx)
{
	struct fp_meta *m = (void *)(long)ctx->data_meta;
	void *data = (void *)(long)ctx->data;
	if ((void *)(m + 1) > data)
		return -1;
	int tci = -1;
	if (m->magic == XSNOOP_FP_META_MAGIC)
		tci = m->tci;
	bpf_xdp_adjust_meta(ctx, (int)sizeof(struct fp_meta));
	return tci;
}

// Devmap egress program on entries of ports that send the VLAN tagged (IEEE 802.1Q §8.8.2):
// pushes the tag named by the metadata, keeping the ingress PCP/DEI (a pushed tag on an untagged
// frame carries PCP 0).
SEC("xdp/devmap")
int xsnoop_egress_tag(struct xdp_md *ctx)
{
	int tci = take_meta(ctx);
	if (tci < 0)
		return XDP_DROP; // never send a frame untagged out of a tagged port
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + 14 > end)
		return XDP_DROP;
	__u8 macs[12];
	__builtin_memcpy(macs, data, 12);
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct vlan_hdr)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct vlan_hdr *vh = (void *)(eth + 1);
	if ((void *)(vh + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(data, macs, 12);
	eth->h_proto = bpf_htons(ETH_P_8021Q);
	vh->tci = bpf_htons((__u16)tci);
	// vh->inner_proto already holds the original EtherType (the untagged frame's h_proto).
	return XDP_PASS;
}

// Devmap egress program on the untagged entries of a VLAN that also has tagged ones: only takes
// the metadata off, so no receiver ever sees it.
SEC("xdp/devmap")
int xsnoop_egress_untagged(struct xdp_md *ctx)
{
	take_meta(ctx);
	return XDP_PASS;
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

	if (class == CLASS_MCAST_DATA || class == CLASS_LINK_LOCAL || class == CLASS_UNICAST ||
	    class == CLASS_BROADCAST) {
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		struct ethhdr *eth = data;
		if ((void *)(eth + 1) <= end) {
			int tagged = eth->h_proto == bpf_htons(ETH_P_8021Q) ||
				     eth->h_proto == bpf_htons(ETH_P_8021AD);
			int act = tagged ? fast_path(ctx, slot, class, 1)
					 : fast_path(ctx, slot, class, 0);
			if (act >= 0)
				return act;
		}
	}

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
