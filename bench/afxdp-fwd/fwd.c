// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xsnoop-afxdp-fwd: an AF_XDP copy-mode forwarder in C, the baseline `make bench` measures
// xsnoop's afxdp mode against (issue 7: "afxdp mode at least as fast as the C forwarder").
// It is what a careful AF_XDP engineer writes for static replication on a NIC without
// zero-copy, following the kernel's Documentation/networking/af_xdp.rst and xdp-tools' xdpsock:
//
// - one UMEM shared by one socket per port (xsk_socket__create_shared), each socket with its own
//   fill and completion rings; copy mode (XDP_COPY: veth has no zero-copy), need_wakeup on;
// - libxdp's default program inhibited (XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD): fwd.bpf.c is
//   attached in native mode with libbpf and the ingress socket put into its XSKMAP;
// - rings of 8192 descriptors, batches of 64;
// - frames refcounted: a received frame is posted to every egress TX ring without a copy and
//   goes back to the fill ring when its last completion arrives;
// - one thread. It spins while there is work and sleeps in poll() on the ingress socket when a
//   pass found none (unless --spin): with threaded NAPI on the same CPU, a thread that never
//   sleeps would take the CPU from the NAPI thread that fills its RX ring (under SCHED_FIFO,
//   all of it but the RT throttling's 5%).
//
// No switch logic: every frame received on --in is sent on every port of --out. Like the
// bench's XDP ceiling, it looks at one byte: broadcast destinations (ff:..) go to
// --broadcast-out and unicast ones (group bit clear) to --unicast-out when those are given, so
// one process serves a bed's multicast, unicast and broadcast runs.
//
// Prints "ready" on stdout once the program is attached and the sockets are in its map;
// counters on stdout at exit (SIGINT/SIGTERM). Errors: the failing call and errno text on
// stderr, exit status 1.

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#define RING_SIZE 8192u
#define BATCH 64u
// Frames of 2048 B: a 1518 B frame fits after the kernel's 256 B of copy-mode headroom.
#define FRAME_SHIFT 11u
#define FRAME_SIZE (1u << FRAME_SHIFT)
// Fill ring + RX ring + what waits for TX completions, with room to spare.
#define NUM_FRAMES (4u * RING_SIZE)
#define MAX_PORTS 64
// sendto() in copy mode sends at most 32 frames (the kernel's TX_BATCH_SIZE) and says EAGAIN
// while more wait; a kick repeats while the TX ring drains, up to this many calls.
#define MAX_KICKS (RING_SIZE / 32u + 2u)

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("xsnoop-afxdp-fwd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

// One port: its socket, its rings and what it counted.
struct port {
	char name[IF_NAMESIZE];
	int ifindex;
	struct xsk_socket *xsk;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp;
	uint64_t tx_posted;
	uint64_t tx_completed;
	uint64_t tx_no_slot;
	uint32_t need; // TX slots this batch asks of the port
	uint32_t got; // TX slots reserved this batch
	uint32_t at; // next reserved slot's index
	uint32_t used; // slots filled this batch
};

// A set of egress ports, as indexes into the port table.
struct egress {
	unsigned n;
	unsigned port[MAX_PORTS];
};

struct options {
	const char *in;
	const char *out;
	const char *unicast_out;
	const char *broadcast_out;
	const char *bpf;
	int cpu;
	bool spin;
};

static void usage(FILE *to)
{
	fputs("usage: xsnoop-afxdp-fwd --in IF --out IF[,IF...] [--unicast-out IF[,IF...]]\n"
	      "         [--broadcast-out IF[,IF...]] [--bpf PATH] [--cpu N] [--spin]\n"
	      "Sends every frame received on --in to every port of --out (AF_XDP copy mode, one\n"
	      "shared UMEM, refcounted frames). Unicast / broadcast destinations go to\n"
	      "--unicast-out / --broadcast-out when given. --bpf: the XDP program (default: this\n"
	      "binary's path + .bpf.o). --cpu: pin to that CPU. --spin: never sleep when idle.\n",
	      to);
}

// Parses argv; returns 0, or 1 after printing why (2 for --help).
static int parse_args(int argc, char **argv, struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->cpu = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 2;
		} else if (!strcmp(a, "--spin")) {
			o->spin = true;
			continue;
		} else if (!strcmp(a, "--in")) {
			slot = &o->in;
		} else if (!strcmp(a, "--out")) {
			slot = &o->out;
		} else if (!strcmp(a, "--unicast-out")) {
			slot = &o->unicast_out;
		} else if (!strcmp(a, "--broadcast-out")) {
			slot = &o->broadcast_out;
		} else if (!strcmp(a, "--bpf")) {
			slot = &o->bpf;
		} else if (!strcmp(a, "--cpu")) {
			if (i + 1 >= argc) {
				fail("--cpu needs a value");
				return 1;
			}
			char *end = NULL;
			errno = 0;
			long v = strtol(argv[++i], &end, 10);
			if (errno || !end || *end || v < 0 || v >= CPU_SETSIZE) {
				fail("--cpu %s: not a CPU number", argv[i]);
				return 1;
			}
			o->cpu = (int)v;
			continue;
		} else {
			fail("unknown argument %s", a);
			usage(stderr);
			return 1;
		}
		if (i + 1 >= argc) {
			fail("%s needs a value", a);
			return 1;
		}
		*slot = argv[++i];
	}
	if (!o->in || !o->out) {
		fail("--in and --out are required");
		usage(stderr);
		return 1;
	}
	return 0;
}

struct fwd {
	void *area;
	struct xsk_umem *umem;
	struct port ports[MAX_PORTS + 1]; // [0] = ingress
	unsigned nports;
	struct egress multicast, unicast, broadcast;
	uint16_t refs[NUM_FRAMES];
	uint32_t free_frames[NUM_FRAMES];
	uint32_t nfree;
	uint32_t in_flight; // frames posted to a TX ring whose last completion has not come
	uint64_t rx;
	struct bpf_object *obj;
	int ifindex_attached;
	uint32_t attach_flags;
};

// The port table index of `name`, adding it if new; -1 if the table is full or the name bad.
static int port_index(struct fwd *f, const char *name)
{
	for (unsigned i = 0; i < f->nports; i++)
		if (!strcmp(f->ports[i].name, name))
			return (int)i;
	if (f->nports >= MAX_PORTS + 1) {
		fail("more than %d ports", MAX_PORTS);
		return -1;
	}
	if (strlen(name) == 0 || strlen(name) >= IF_NAMESIZE) {
		fail("%s: not an interface name", name);
		return -1;
	}
	unsigned ifindex = if_nametoindex(name);
	if (!ifindex) {
		fail("if_nametoindex(%s): %s", name, strerror(errno));
		return -1;
	}
	struct port *p = &f->ports[f->nports];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->ifindex = (int)ifindex;
	return (int)f->nports++;
}

// Fills `set` from a comma-separated list of interfaces; 0 or -1.
static int parse_egress(struct fwd *f, const char *list, struct egress *set)
{
	char buf[4096];
	if (strlen(list) >= sizeof(buf)) {
		fail("port list too long");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", list);
	set->n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int idx = port_index(f, tok);
		if (idx < 0)
			return -1;
		if (idx == 0) {
			fail("%s is the ingress port: it cannot also be an egress port", tok);
			return -1;
		}
		for (unsigned i = 0; i < set->n; i++)
			if (set->port[i] == (unsigned)idx) {
				fail("%s named twice in one list", tok);
				return -1;
			}
		if (set->n >= MAX_PORTS) {
			fail("more than %d egress ports", MAX_PORTS);
			return -1;
		}
		set->port[set->n++] = (unsigned)idx;
	}
	if (set->n == 0) {
		fail("empty port list %s", list);
		return -1;
	}
	return 0;
}

static inline void free_frame(struct fwd *f, uint32_t frame)
{
	if (f->nfree < NUM_FRAMES)
		f->free_frames[f->nfree++] = frame;
}

// Hands free frames to the ingress port's fill ring (RX in copy mode needs no wakeup).
static void refill(struct fwd *f)
{
	struct port *in = &f->ports[0];
	uint32_t n = f->nfree;
	if (n == 0)
		return;
	uint32_t room = xsk_prod_nb_free(&in->fill, n);
	if (n > room)
		n = room;
	uint32_t idx;
	if (n == 0 || xsk_ring_prod__reserve(&in->fill, n, &idx) != n)
		return;
	for (uint32_t i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&in->fill, idx + i) =
			(uint64_t)f->free_frames[--f->nfree] << FRAME_SHIFT;
	xsk_ring_prod__submit(&in->fill, n);
}

// Drops one reference of every frame whose transmission completed; returns how many.
static uint32_t reap(struct fwd *f)
{
	uint32_t total = 0;
	for (unsigned i = 1; i < f->nports; i++) {
		struct port *p = &f->ports[i];
		uint32_t idx;
		uint32_t n = xsk_ring_cons__peek(&p->comp, RING_SIZE, &idx);
		for (uint32_t k = 0; k < n; k++) {
			uint32_t frame = (uint32_t)(*xsk_ring_cons__comp_addr(&p->comp, idx + k) >>
						    FRAME_SHIFT);
			if (frame < NUM_FRAMES && f->refs[frame] > 0 && --f->refs[frame] == 0) {
				f->in_flight--;
				free_frame(f, frame);
			}
		}
		if (n)
			xsk_ring_cons__release(&p->comp, n);
		p->tx_completed += n;
		total += n;
	}
	return total;
}

// Descriptors in `p`'s TX ring that the kernel has not consumed yet.
static uint32_t tx_waiting(struct port *p)
{
	return p->tx.size - xsk_prod_nb_free(&p->tx, p->tx.size);
}

// Makes the kernel transmit what `p`'s TX ring holds (copy mode: sendto() does the work, 32
// frames per call).
static void kick(struct port *p)
{
	if (!xsk_ring_prod__needs_wakeup(&p->tx))
		return;
	for (unsigned k = 0; k < MAX_KICKS; k++) {
		uint32_t before = tx_waiting(p);
		if (before == 0)
			return;
		if (sendto(xsk_socket__fd(p->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
			return;
		if (errno != EAGAIN && errno != EBUSY && errno != ENOBUFS && errno != ENETDOWN) {
			fail("sendto(%s): %s", p->name, strerror(errno));
			stop_requested = 1;
			return;
		}
		// EAGAIN because the completion ring is full, or ENOBUFS: no progress to be had now.
		if (errno != EAGAIN || tx_waiting(p) >= before)
			return;
	}
}

static const struct egress *egress_of(const struct fwd *f, const uint8_t *frame, uint32_t len)
{
	if (len == 0)
		return &f->multicast;
	if (frame[0] == 0xff)
		return &f->broadcast;
	if (!(frame[0] & 1))
		return &f->unicast;
	return &f->multicast;
}

// One pass: completions, refill, one RX batch posted to the egress TX rings, kicks. Returns
// whether anything happened.
static bool pass(struct fwd *f)
{
	struct port *in = &f->ports[0];
	bool busy = reap(f) > 0;
	refill(f);

	uint32_t ridx;
	uint32_t n = xsk_ring_cons__peek(&in->rx, BATCH, &ridx);
	if (n) {
		const struct egress *sets[BATCH];
		for (unsigned i = 1; i < f->nports; i++)
			f->ports[i].need = 0;
		for (uint32_t k = 0; k < n; k++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&in->rx, ridx + k);
			const uint8_t *data = xsk_umem__get_data(f->area, d->addr);
			sets[k] = egress_of(f, data, d->len);
			for (unsigned j = 0; j < sets[k]->n; j++)
				f->ports[sets[k]->port[j]].need++;
		}
		for (unsigned i = 1; i < f->nports; i++) {
			struct port *p = &f->ports[i];
			p->used = 0;
			p->got = 0;
			if (!p->need)
				continue;
			uint32_t room = xsk_prod_nb_free(&p->tx, p->need);
			uint32_t want = p->need < room ? p->need : room;
			if (want && xsk_ring_prod__reserve(&p->tx, want, &p->at) == want)
				p->got = want;
		}
		for (uint32_t k = 0; k < n; k++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&in->rx, ridx + k);
			uint32_t frame = (uint32_t)(d->addr >> FRAME_SHIFT);
			uint16_t refs = 0;
			for (unsigned j = 0; j < sets[k]->n; j++) {
				struct port *p = &f->ports[sets[k]->port[j]];
				if (p->used == p->got) {
					p->tx_no_slot++;
					continue;
				}
				struct xdp_desc *t = xsk_ring_prod__tx_desc(&p->tx, p->at + p->used++);
				t->addr = d->addr;
				t->len = d->len;
				t->options = 0;
				refs++;
			}
			if (frame < NUM_FRAMES) {
				f->refs[frame] = refs;
				if (refs == 0)
					free_frame(f, frame);
				else
					f->in_flight++;
			}
		}
		xsk_ring_cons__release(&in->rx, n);
		f->rx += n;
		for (unsigned i = 1; i < f->nports; i++) {
			struct port *p = &f->ports[i];
			if (p->used) {
				xsk_ring_prod__submit(&p->tx, p->used);
				p->tx_posted += p->used;
			}
		}
		busy = true;
	}
	for (unsigned i = 1; i < f->nports; i++)
		kick(&f->ports[i]);
	return busy;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

// Opens, loads and attaches the XDP program (native mode) to the ingress port; returns the
// XSKMAP's fd or -1.
static int attach_program(struct fwd *f, const char *path)
{
	struct port *in = &f->ports[0];
	f->obj = bpf_object__open_file(path, NULL);
	if (!f->obj) {
		fail("bpf_object__open_file(%s): %s (build it with `make bench-fwd`)", path,
		     strerror(errno));
		return -1;
	}
	int err = bpf_object__load(f->obj);
	if (err) {
		fail("bpf_object__load(%s): %s", path, strerror(-err));
		return -1;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(f->obj, "afxdp_fwd");
	if (!prog) {
		fail("%s has no program afxdp_fwd", path);
		return -1;
	}
	int map_fd = bpf_object__find_map_fd_by_name(f->obj, "xsks");
	if (map_fd < 0) {
		fail("%s has no map xsks", path);
		return -1;
	}
	f->attach_flags = XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST;
	err = bpf_xdp_attach(in->ifindex, bpf_program__fd(prog), f->attach_flags, NULL);
	if (err) {
		fail("bpf_xdp_attach(%s, native): %s", in->name, strerror(-err));
		return -1;
	}
	f->ifindex_attached = in->ifindex;
	return map_fd;
}

static int create_socket(struct fwd *f, struct port *p, bool rx)
{
	struct xsk_socket_config cfg = {
		.rx_size = RING_SIZE,
		.tx_size = RING_SIZE,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	int err = xsk_socket__create_shared(&p->xsk, p->name, 0, f->umem, rx ? &p->rx : NULL,
					    rx ? NULL : &p->tx, &p->fill, &p->comp, &cfg);
	if (err) {
		fail("xsk_socket__create_shared(%s, queue 0, copy mode): %s", p->name,
		     strerror(-err));
		p->xsk = NULL;
		return -1;
	}
	return 0;
}

static int setup(struct fwd *f, const struct options *o)
{
	f->ifindex_attached = -1;
	if (port_index(f, o->in) != 0)
		return -1;
	if (parse_egress(f, o->out, &f->multicast))
		return -1;
	if (parse_egress(f, o->unicast_out ? o->unicast_out : o->out, &f->unicast))
		return -1;
	if (parse_egress(f, o->broadcast_out ? o->broadcast_out : o->out, &f->broadcast))
		return -1;

	size_t size = (size_t)NUM_FRAMES * FRAME_SIZE;
	f->area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);
	if (f->area == MAP_FAILED) {
		f->area = NULL;
		fail("mmap(%zu bytes of UMEM): %s", size, strerror(errno));
		return -1;
	}
	struct xsk_umem_config ucfg = {
		.fill_size = RING_SIZE,
		.comp_size = RING_SIZE,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
		.flags = 0,
	};
	struct port *in = &f->ports[0];
	int err = xsk_umem__create(&f->umem, f->area, size, &in->fill, &in->comp, &ucfg);
	if (err) {
		fail("xsk_umem__create(%zu bytes): %s", size, strerror(-err));
		f->umem = NULL;
		return -1;
	}
	// The ingress socket first: it owns the UMEM's own fill and completion rings.
	if (create_socket(f, in, true))
		return -1;
	for (unsigned i = 1; i < f->nports; i++)
		if (create_socket(f, &f->ports[i], false))
			return -1;

	for (uint32_t k = NUM_FRAMES; k > 0; k--)
		free_frame(f, k - 1);
	refill(f);

	const char *path = o->bpf;
	char buf[PATH_MAX];
	if (!path) {
		ssize_t len = readlink("/proc/self/exe", buf, sizeof(buf) - 8);
		if (len < 0) {
			fail("readlink(/proc/self/exe): %s", strerror(errno));
			return -1;
		}
		memcpy(buf + len, ".bpf.o", 7);
		path = buf;
	}
	int map_fd = attach_program(f, path);
	if (map_fd < 0)
		return -1;
	err = xsk_socket__update_xskmap(in->xsk, map_fd);
	if (err) {
		fail("xsk_socket__update_xskmap(%s): %s", in->name, strerror(-err));
		return -1;
	}
	return 0;
}

static void teardown(struct fwd *f)
{
	if (f->ifindex_attached >= 0) {
		int err = bpf_xdp_detach(f->ifindex_attached, XDP_FLAGS_DRV_MODE, NULL);
		if (err)
			fail("bpf_xdp_detach(%s): %s", f->ports[0].name, strerror(-err));
	}
	for (unsigned i = f->nports; i > 0; i--)
		if (f->ports[i - 1].xsk)
			xsk_socket__delete(f->ports[i - 1].xsk);
	if (f->umem) {
		int err = xsk_umem__delete(f->umem);
		if (err)
			fail("xsk_umem__delete: %s", strerror(-err));
	}
	if (f->obj)
		bpf_object__close(f->obj);
	if (f->area)
		munmap(f->area, (size_t)NUM_FRAMES * FRAME_SIZE);
}

static void print_counters(const struct fwd *f)
{
	uint64_t posted = 0, completed = 0, no_slot = 0;
	for (unsigned i = 1; i < f->nports; i++) {
		posted += f->ports[i].tx_posted;
		completed += f->ports[i].tx_completed;
		no_slot += f->ports[i].tx_no_slot;
	}
	struct xdp_statistics st = {0};
	socklen_t len = sizeof(st);
	if (f->ports[0].xsk &&
	    getsockopt(xsk_socket__fd(f->ports[0].xsk), SOL_XDP, XDP_STATISTICS, &st, &len))
		fail("getsockopt(XDP_STATISTICS): %s", strerror(errno));
	printf("counters: rx %llu tx %llu tx_completed %llu tx_drops_no_slot %llu "
	       "kernel_rx_dropped %llu kernel_rx_ring_full %llu kernel_fill_ring_empty %llu\n",
	       (unsigned long long)f->rx, (unsigned long long)posted,
	       (unsigned long long)completed, (unsigned long long)no_slot,
	       (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_ring_full,
	       (unsigned long long)st.rx_fill_ring_empty_descs);
	for (unsigned i = 1; i < f->nports; i++)
		printf("port %s: tx %llu tx_drops_no_slot %llu\n", f->ports[i].name,
		       (unsigned long long)f->ports[i].tx_posted,
		       (unsigned long long)f->ports[i].tx_no_slot);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct options o;
	int rc = parse_args(argc, argv, &o);
	if (rc)
		return rc == 2 ? 0 : 1;

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) {
		fail("sigaction: %s", strerror(errno));
		return 1;
	}
	if (o.cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			fail("sched_setaffinity(cpu %d): %s", o.cpu, strerror(errno));
			return 1;
		}
	}
	libbpf_set_print(libbpf_quiet);

	static struct fwd f; // ~200 KiB of frame bookkeeping: not on the stack
	if (setup(&f, &o)) {
		teardown(&f);
		return 1;
	}
	printf("ready: in %s, %u egress ports, rings %u, batch %u, %u frames of %u B\n",
	       f.ports[0].name, f.nports - 1, RING_SIZE, BATCH, NUM_FRAMES, FRAME_SIZE);
	fflush(stdout);

	struct pollfd pfd = { .fd = xsk_socket__fd(f.ports[0].xsk), .events = POLLIN };
	while (!stop_requested) {
		if (pass(&f) || o.spin)
			continue;
		// Idle: sleep until the ingress socket has frames. Frames still in flight come back
		// without a wakeup, so check for them every millisecond meanwhile.
		int timeout = f.in_flight ? 1 : 100;
		if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
			fail("poll(%s): %s", f.ports[0].name, strerror(errno));
			teardown(&f);
			return 1;
		}
	}
	print_counters(&f);
	teardown(&f);
	return 0;
}
