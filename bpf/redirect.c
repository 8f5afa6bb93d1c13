// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tollgate redirect programs.
 *
 * cgroup/connect4 and cgroup/connect6 rewrite the destination of TCP connects
 * made by intercepted workloads to protected targets so that they reach the
 * target's local proxy listener, and stash what the proxy needs to know
 * (original destination, target, the caller's identity) under the socket
 * cookie. A sockops program re-keys the stash by the client's {address, port}
 * at TCP_CONNECT_CB, which runs after the source port is chosen and before the
 * SYN is sent, so the proxy's lookup after accept() can never race it.
 *
 * A destination matches a target by address prefix and port, or, when it is
 * local to this host (loopback, unspecified, or an address of the host), by
 * port alone for targets that are local services: which local address a
 * client picks must not decide whether it is intercepted.
 *
 * Only UAPI context structs are read, so no CO-RE or vmlinux.h is needed.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOL_SOCKET 1
#define SO_MARK 36

/* Context fields must be read as 4-byte loads; without volatile clang may
 * merge neighbouring words into one 8-byte load the verifier rejects. */
#define READ_ONCE_U32(x) (*(volatile __u32 *)&(x))

/* Deepest cgroup level whose ancestors are compared with the workload map. */
#define MAX_CGROUP_LEVEL 32

#define IN_LOOPBACKNET 127         /* first byte of 127.0.0.0/8 */
#define V4MAPPED_WORD 0x0000ffff   /* third word of ::ffff:a.b.c.d, host order */
#define BPF_TCP_LISTEN_STATE 10    /* BPF_TCP_LISTEN */

/* Set from Go before loading (CollectionSpec.Variables). */
volatile const __u32 tollgate_mark = 0;      /* SO_MARK of the daemon's own sockets */
volatile const __u64 host_netns_cookie = 0;  /* only this netns is intercepted (0: any) */
volatile const __be32 listen_ip4 = 0;        /* proxy listener address, network order */

/* An LPM key: the port (network order) then the address, IPv4 stored as
 * ::ffff:a.b.c.d, so one prefix covers port and address bits. */
struct target_key {
	__u32 prefixlen;
	__be16 port;
	__u8 addr[16];
	__u8 pad[2];
};

struct target_value {
	__u32 target_id;
	__be16 listen_port; /* the target's proxy port, network order */
	__u16 pad;
};

/* What the proxy learns about a redirected connection. Kept identical in
 * the cookie stash and in the peer-keyed origin map. */
struct conn_meta {
	__u8 orig_addr[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u16 orig_port;    /* host order */
	__u16 family;       /* socket family of the client: AF_INET or AF_INET6 */
	__u32 target_id;
	__u32 workload_id;
	__u32 pid;          /* tgid in the init pid namespace */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 pad;
	__u64 cgroup_id;    /* cgroup v2 id of the connecting task */
	__u64 netns_cookie;
	__u64 sock_cookie;
	char comm[16];
};

/* A prefix of addresses this host owns (its local routing table), IPv4 as
 * ::ffff:a.b.c.d. */
struct local_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct peer_key {
	__u8 addr[16];  /* client address as the proxy sees it, IPv4 as ::ffff:a.b.c.d */
	__u16 port;     /* client port, host order */
	__u16 pad;
};

/* Counters read by `tollgate status`; indexes are mirrored in Go. */
enum counter {
	COUNTER_REDIRECTED = 0,
	COUNTER_STASH_FAILED,
	COUNTER_ORIGIN_FAILED,
	COUNTER_SKIPPED_MARK,
	COUNTER_NOT_OWNED,
	COUNTER_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct target_key);
	__type(value, struct target_value);
} targets SEC(".maps");

/* The host's own addresses: every prefix of type "local" in its routing
 * tables (interface addresses, AnyIP routes), kept by the daemon. Loopback
 * and the unspecified address are recognised in code, not through this map,
 * so they are local even before the daemon fills it. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct local_key);
	__type(value, __u8);
} local_nets SEC(".maps");

/* Targets that are services of this host, by port (network order). A local
 * service listening on a wildcard is reached through any local address, so
 * such a target matches its port on every local destination. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be16);
	__type(value, struct target_value);
} local_ports SEC(".maps");

/* Workloads selected by cgroup: cgroup id -> workload id. A socket whose
 * task sits in that cgroup or any descendant is intercepted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} workload_cgroups SEC(".maps");

/* Workloads selected by real uid: uid -> workload id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} workload_uids SEC(".maps");

/* Proxy listener ports (network order); a connect to the proxy's own
 * address and one of these ports is never redirected again. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be16);
	__type(value, __u8);
} listeners SEC(".maps");

/* connect() -> TCP_CONNECT_CB hand-over, keyed by socket cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_meta);
} stash SEC(".maps");

/* TCP_CONNECT_CB -> proxy accept(), keyed by the client's address and port.
 * The proxy deletes each entry on lookup; LRU only bounds leaks from connects
 * that never reach it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct peer_key);
	__type(value, struct conn_meta);
} origins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

/* workload returns the id of the workload the calling task belongs to, or 0. */
static __always_inline __u32 workload(void)
{
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u32 *id = bpf_map_lookup_elem(&workload_uids, &uid);
	if (id)
		return *id;

	for (int level = 1; level <= MAX_CGROUP_LEVEL; level++) {
		__u64 cg = bpf_get_current_ancestor_cgroup_id(level);
		if (cg == 0)
			break;
		id = bpf_map_lookup_elem(&workload_cgroups, &cg);
		if (id)
			return *id;
	}
	return 0;
}

static __always_inline int own_socket(struct bpf_sock_addr *ctx)
{
	__u32 mark = 0;
	if (tollgate_mark == 0)
		return 0;
	if (bpf_getsockopt(ctx, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0)
		return 0;
	return mark == tollgate_mark;
}

/* local_dst reports whether Linux delivers a connect to addr (v4-mapped or
 * IPv6) on this host. The unspecified address is local: tcp_v6_connect turns
 * :: into ::1 (or ::ffff:127.0.0.1 on a v4-mapped socket), and
 * ip_route_output_key_hash_rcu turns 0.0.0.0 into the socket's bound
 * address, or 127.0.0.1. The hook runs before either rewrite. */
static __always_inline int local_dst(const __u8 *addr)
{
	__u32 w0, w1, w2, w3;
	__builtin_memcpy(&w0, &addr[0], 4);
	__builtin_memcpy(&w1, &addr[4], 4);
	__builtin_memcpy(&w2, &addr[8], 4);
	__builtin_memcpy(&w3, &addr[12], 4);

	if (w0 == 0 && w1 == 0) {
		if (w2 == 0 && (w3 == 0 || w3 == bpf_htonl(1)))
			return 1; /* :: or ::1 */
		if (w2 == bpf_htonl(V4MAPPED_WORD) &&
		    (w3 == 0 || (bpf_ntohl(w3) >> 24) == IN_LOOPBACKNET))
			return 1; /* 0.0.0.0 or 127.0.0.0/8 */
	}
	struct local_key lk = { .prefixlen = 128 };
	__builtin_memcpy(lk.addr, addr, sizeof(lk.addr));
	return bpf_map_lookup_elem(&local_nets, &lk) != 0;
}

/* proxy_dst reports whether key is exactly one of the proxy's listeners
 * (address and port): those connects are never redirected (no loops). A
 * listener port on any other address is an ordinary destination. */
static __always_inline int proxy_dst(const struct target_key *key)
{
	__u32 w0, w1, w2, w3;

	if (!bpf_map_lookup_elem(&listeners, &key->port))
		return 0;
	__builtin_memcpy(&w0, &key->addr[0], 4);
	__builtin_memcpy(&w1, &key->addr[4], 4);
	__builtin_memcpy(&w2, &key->addr[8], 4);
	__builtin_memcpy(&w3, &key->addr[12], 4);
	if (w0 != 0 || w1 != 0)
		return 0;
	if (w2 == bpf_htonl(V4MAPPED_WORD))
		return w3 == listen_ip4;
	return w2 == 0 && w3 == bpf_htonl(1);
}

/* intercept does everything common to both families once the destination is
 * known as a v4-mapped or IPv6 address. It returns the proxy port (network
 * order) to rewrite to, 0 to leave the connect alone, or -1 to refuse it. */
static __always_inline int intercept(struct bpf_sock_addr *ctx, struct target_key *key, __u16 family)
{
	__be16 dport = key->port;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (host_netns_cookie != 0 && bpf_get_netns_cookie(ctx) != host_netns_cookie)
		return 0;

	/* The proxy's own listeners are never a redirect source: no loops. */
	if (proxy_dst(key))
		return 0;
	struct target_value *tv = bpf_map_lookup_elem(&targets, key);
	if (!tv && local_dst(key->addr))
		tv = bpf_map_lookup_elem(&local_ports, &dport);
	if (!tv)
		return 0;

	__u32 wl = workload();
	if (wl == 0)
		return 0;
	if (own_socket(ctx)) {
		count(COUNTER_SKIPPED_MARK);
		return 0;
	}

	struct conn_meta meta = {};
	__builtin_memcpy(meta.orig_addr, key->addr, sizeof(meta.orig_addr));
	meta.orig_port = bpf_ntohs(dport);
	meta.family = family;
	meta.target_id = tv->target_id;
	meta.workload_id = wl;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	meta.pid = pid_tgid >> 32;
	meta.tid = (__u32)pid_tgid;
	__u64 uid_gid = bpf_get_current_uid_gid();
	meta.uid = (__u32)uid_gid;
	meta.gid = uid_gid >> 32;
	meta.cgroup_id = bpf_get_current_cgroup_id();
	meta.netns_cookie = bpf_get_netns_cookie(ctx);
	meta.sock_cookie = bpf_get_socket_cookie(ctx);
	bpf_get_current_comm(meta.comm, sizeof(meta.comm));

	if (bpf_map_update_elem(&stash, &meta.sock_cookie, &meta, BPF_ANY) != 0) {
		/* Without a stash the proxy could not know the origin: fail
		 * closed rather than let the connection bypass enforcement. */
		count(COUNTER_STASH_FAILED);
		return -1;
	}
	count(COUNTER_REDIRECTED);
	return tv->listen_port;
}

/* proxy_owned reports whether the socket listening on the proxy address is
 * the daemon's: it must carry the daemon's mark, which only a process with
 * CAP_NET_ADMIN can set, and listen on exactly the proxy's address and port
 * (the lookup also returns a listener bound to the wildcard address).
 * Without this check, any local user could bind the port while the daemon
 * is down and receive the redirected traffic. */
static __always_inline int proxy_owned(struct bpf_sock_addr *ctx, int v6, __be16 port)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	__u32 size;

	if (v6) {
		tuple.ipv6.daddr[3] = bpf_htonl(1);
		tuple.ipv6.dport = port;
		size = sizeof(tuple.ipv6);
	} else {
		tuple.ipv4.daddr = listen_ip4;
		tuple.ipv4.dport = port;
		size = sizeof(tuple.ipv4);
	}
	sk = bpf_sk_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	int owned = tollgate_mark != 0 && sk->mark == tollgate_mark &&
		    sk->state == BPF_TCP_LISTEN_STATE && sk->src_port == bpf_ntohs(port);
	if (owned && v6)
		owned = sk->src_ip6[0] == 0 && sk->src_ip6[1] == 0 && sk->src_ip6[2] == 0 &&
			sk->src_ip6[3] == bpf_htonl(1);
	else if (owned)
		owned = sk->src_ip4 == listen_ip4;
	bpf_sk_release(sk);
	return owned;
}

/* unstash forgets what intercept stashed for a connect that is refused. */
static __always_inline void unstash(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	bpf_map_delete_elem(&stash, &cookie);
}

/* refuse makes connect() fail with EPERM: enforcement could not be set up
 * for this connection, so it must not go anywhere. */
static __always_inline int refuse(void)
{
	return 0;
}

SEC("cgroup/connect4")
int tollgate_connect4(struct bpf_sock_addr *ctx)
{
	struct target_key key = {};
	__u32 ip = ctx->user_ip4;
	volatile __u32 port = ctx->user_port;

	key.prefixlen = 16 + 128;
	key.port = (__be16)port;
	key.addr[10] = 0xff;
	key.addr[11] = 0xff;
	__builtin_memcpy(&key.addr[12], &ip, 4);

	int lp = intercept(ctx, &key, AF_INET);
	if (lp < 0)
		return refuse();
	if (lp == 0)
		return 1;
	if (!proxy_owned(ctx, 0, (__be16)lp)) {
		count(COUNTER_NOT_OWNED);
		unstash(ctx);
		return refuse();
	}
	ctx->user_ip4 = listen_ip4;
	ctx->user_port = (__u32)(__be16)lp;
	return 1;
}

SEC("cgroup/connect6")
int tollgate_connect6(struct bpf_sock_addr *ctx)
{
	struct target_key key = {};
	__u32 w0 = READ_ONCE_U32(ctx->user_ip6[0]);
	__u32 w1 = READ_ONCE_U32(ctx->user_ip6[1]);
	__u32 w2 = READ_ONCE_U32(ctx->user_ip6[2]);
	__u32 w3 = READ_ONCE_U32(ctx->user_ip6[3]);
	volatile __u32 port = ctx->user_port;

	key.prefixlen = 16 + 128;
	key.port = (__be16)port;
	__builtin_memcpy(&key.addr[0], &w0, 4);
	__builtin_memcpy(&key.addr[4], &w1, 4);
	__builtin_memcpy(&key.addr[8], &w2, 4);
	__builtin_memcpy(&key.addr[12], &w3, 4);

	/* ::ffff:a.b.c.d is IPv4 on the wire; match and rewrite it as such. So
	 * is :: on a socket bound to a v4-mapped address (tcp_v6_connect then
	 * connects to ::ffff:127.0.0.1). */
	int v4mapped = w0 == 0 && w1 == 0 && w2 == bpf_htonl(V4MAPPED_WORD);
	if (w0 == 0 && w1 == 0 && w2 == 0 && w3 == 0) {
		struct bpf_sock *sk = ctx->sk;
		if (sk && sk->src_ip6[0] == 0 && sk->src_ip6[1] == 0 &&
		    sk->src_ip6[2] == bpf_htonl(V4MAPPED_WORD))
			v4mapped = 1;
	}

	int lp = intercept(ctx, &key, AF_INET6);
	if (lp < 0)
		return refuse();
	if (lp == 0)
		return 1;
	if (!proxy_owned(ctx, !v4mapped, (__be16)lp)) {
		count(COUNTER_NOT_OWNED);
		unstash(ctx);
		return refuse();
	}
	if (v4mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(V4MAPPED_WORD);
		ctx->user_ip6[3] = listen_ip4;
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = (__u32)(__be16)lp;
	return 1;
}

/* Unix sockets. A protected PostgreSQL server is also reached through its
 * unix socket (psql -h /var/run/postgresql). cgroup/connect_unix rewrites a
 * workload's connect to a protected socket path to the daemon's own socket
 * for that target (bpf_sock_addr_set_sun_path) and leaves the origin under
 * the client socket's cookie, which the daemon finds from the accepted
 * connection (sock_diag: the peer's inode, then its cookie). */
#define AF_UNIX 1
#define SOCK_STREAM 1
#define UNIX_PATH_MAX 108            /* sizeof(sun_path) */
#define SUN_PATH_OFFSET 2            /* offsetof(struct sockaddr_un, sun_path) */
#define UNIX_KEY_LEN 112             /* a 108-byte path, its NUL, padding */

/* The kernel's context behind struct bpf_sock_addr; only the fields read
 * are declared (CO-RE relocates them). */
struct sock_common___tg {
	struct {
		__s64 counter;
	} skc_cookie;
} __attribute__((preserve_access_index));

struct sock___tg {
	struct sock_common___tg __sk_common;
} __attribute__((preserve_access_index));

struct unix_sock___tg {
	struct sock___tg *peer;
} __attribute__((preserve_access_index));

struct bpf_sock_addr_kern {
	struct sock___tg *sk;
	void *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern int bpf_sock_addr_set_sun_path(struct bpf_sock_addr_kern *sa_kern, const __u8 *sun_path,
				      __u32 sun_path__sz) __ksym;

/* A socket path as the kernel resolves it: the bytes of sun_path up to the
 * first NUL, zero-filled. */
struct unix_path {
	char path[UNIX_KEY_LEN];
};

struct unix_target {
	__u32 target_id;
	__u32 listen_len;             /* length of listen, without NUL */
	char listen[UNIX_KEY_LEN];    /* the daemon's socket for this target */
};

/* What the daemon learns about a redirected unix connection. */
struct unix_origin {
	struct conn_meta meta;
	struct unix_path dst;         /* the path the client connected to */
};

/* Protected socket paths -> target and the daemon's socket. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct unix_path);
	__type(value, struct unix_target);
} unix_targets SEC(".maps");

/* connect() -> daemon accept(), keyed by the client socket's cookie. The
 * daemon deletes each entry on lookup; LRU only bounds leaks. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct unix_origin);
} unix_origins SEC(".maps");

/* Client socket cookie -> the path it connected to, for getpeername: the
 * client sees the path it asked for, not the daemon's. getpeername runs the
 * program on the peer (the daemon's end), whose peer is the client. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct unix_path);
} unix_peers SEC(".maps");

/* read_sun_path reads the path of the address being connected to, as
 * unix_mkname_bsd will read it: up to the first NUL or the address length.
 * An abstract address (leading NUL) reads as the empty path. */
static __always_inline int read_sun_path(struct bpf_sock_addr_kern *sa, struct unix_path *p)
{
	__u32 len = sa->uaddrlen;
	__u64 uaddr = (__u64)sa->uaddr;

	if (len <= SUN_PATH_OFFSET)
		return -1;
	len -= SUN_PATH_OFFSET;
	if (len > UNIX_PATH_MAX)
		len = UNIX_PATH_MAX;
	/* Reads at most len bytes, stops at a NUL, always terminates. */
	if (bpf_probe_read_kernel_str(p->path, len + 1, (void *)(uaddr + SUN_PATH_OFFSET)) < 0)
		return -1;
	return 0;
}

SEC("cgroup/connect_unix")
int tollgate_connect_unix(struct bpf_sock_addr *ctx)
{
	struct unix_origin o = {};

	if (ctx->type != SOCK_STREAM)
		return 1;
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	if (read_sun_path(sa, &o.dst) < 0 || o.dst.path[0] == 0)
		return 1;
	struct unix_target *ut = bpf_map_lookup_elem(&unix_targets, &o.dst);
	if (!ut)
		return 1;
	__u32 wl = workload();
	if (wl == 0)
		return 1;
	if (own_socket(ctx)) {
		count(COUNTER_SKIPPED_MARK);
		return 1;
	}

	struct conn_meta *meta = &o.meta;
	meta->family = AF_UNIX;
	meta->target_id = ut->target_id;
	meta->workload_id = wl;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	meta->pid = pid_tgid >> 32;
	meta->tid = (__u32)pid_tgid;
	__u64 uid_gid = bpf_get_current_uid_gid();
	meta->uid = (__u32)uid_gid;
	meta->gid = uid_gid >> 32;
	meta->cgroup_id = bpf_get_current_cgroup_id();
	meta->netns_cookie = bpf_get_netns_cookie(ctx);
	meta->sock_cookie = bpf_get_socket_cookie(ctx);
	bpf_get_current_comm(meta->comm, sizeof(meta->comm));

	__u32 n = ut->listen_len;
	if (n == 0 || n > UNIX_PATH_MAX) {
		count(COUNTER_STASH_FAILED);
		return refuse();
	}
	if (bpf_map_update_elem(&unix_origins, &meta->sock_cookie, &o, BPF_ANY) != 0) {
		/* The daemon could not attribute it: fail closed. */
		count(COUNTER_STASH_FAILED);
		return refuse();
	}
	if (bpf_sock_addr_set_sun_path(sa, (const __u8 *)ut->listen, n) != 0) {
		bpf_map_delete_elem(&unix_origins, &meta->sock_cookie);
		count(COUNTER_STASH_FAILED);
		return refuse();
	}
	/* Best effort: only getpeername depends on it. */
	bpf_map_update_elem(&unix_peers, &meta->sock_cookie, &o.dst, BPF_ANY);
	count(COUNTER_REDIRECTED);
	return 1;
}

/* getpeername on a redirected client socket answers the path the client
 * connected to, as it would without tollgate. */
SEC("cgroup/getpeername_unix")
int tollgate_getpeername_unix(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	struct unix_sock___tg *us = (struct unix_sock___tg *)sa->sk;
	struct sock___tg *client = 0;
	__s64 cookie = 0;

	/* The cookie was made by the client's connect (bpf_get_socket_cookie),
	 * so it is set on every socket this map knows. */
	if (bpf_probe_read_kernel(&client, sizeof(client), __builtin_preserve_access_index(&us->peer)) != 0 || !client)
		return 1;
	if (bpf_probe_read_kernel(&cookie, sizeof(cookie),
				  __builtin_preserve_access_index(&client->__sk_common.skc_cookie.counter)) != 0 || cookie == 0)
		return 1;
	struct unix_path *p = bpf_map_lookup_elem(&unix_peers, &cookie);
	if (!p)
		return 1;
	__u32 n = 0;
	for (int i = 0; i < UNIX_PATH_MAX; i++) {
		if (p->path[i] == 0)
			break;
		n++;
	}
	if (n > 0 && n <= UNIX_PATH_MAX)
		bpf_sock_addr_set_sun_path(sa, (const __u8 *)p->path, n);
	return 1;
}

/* Kernel structures read by the cgroup_mkdir tracepoint program. Only the
 * fields used are declared; preserve_access_index makes the loader relocate
 * their offsets against the running kernel's BTF (CO-RE). */
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup_root {
	int hierarchy_id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
	struct cgroup_root *root;
} __attribute__((preserve_access_index));

/* Longest cgroup path (relative to the cgroup2 mount) watched for units. */
#define UNIT_PATH_LEN 256

struct unit_path {
	char path[UNIT_PATH_LEN];
};

/* Cgroup paths of systemd units selected as workloads -> workload id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct unit_path);
	__type(value, __u32);
} unit_paths SEC(".maps");

/* cgroup_mkdir adds a unit's new cgroup to the workloads as the kernel
 * creates it, before systemd can move a process into it: a restarted unit
 * gets a new cgroup (a new id), and without this its first connects would
 * run before the daemon notices. The link is pinned like the others, so this
 * holds while the daemon is down too. */
SEC("tp_btf/cgroup_mkdir")
int tollgate_cgroup_mkdir(__u64 *ctx)
{
	struct cgroup *cgrp = (struct cgroup *)ctx[0];
	const char *path = (const char *)ctx[1];
	struct unit_path key = {};

	/* Hierarchy 0 is cgroup2; v1 hierarchies of hybrid hosts are not ours. */
	if (cgrp->root->hierarchy_id != 0)
		return 0;
	if (bpf_probe_read_kernel_str(key.path, sizeof(key.path), path) < 0)
		return 0;
	__u32 *wl = bpf_map_lookup_elem(&unit_paths, &key);
	if (!wl)
		return 0;
	__u64 id = cgrp->kn->id;
	__u32 v = *wl;
	bpf_map_update_elem(&workload_cgroups, &id, &v, BPF_ANY);
	return 0;
}

/* cgroup_rmdir forgets a unit's cgroup when it goes (ids are never reused,
 * this only keeps the map small). */
SEC("tp_btf/cgroup_rmdir")
int tollgate_cgroup_rmdir(__u64 *ctx)
{
	struct cgroup *cgrp = (struct cgroup *)ctx[0];
	const char *path = (const char *)ctx[1];
	struct unit_path key = {};

	if (cgrp->root->hierarchy_id != 0)
		return 0;
	if (bpf_probe_read_kernel_str(key.path, sizeof(key.path), path) < 0)
		return 0;
	if (!bpf_map_lookup_elem(&unit_paths, &key))
		return 0;
	__u64 id = cgrp->kn->id;
	bpf_map_delete_elem(&workload_cgroups, &id);
	return 0;
}

SEC("sockops")
int tollgate_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;

	__u64 cookie = bpf_get_socket_cookie(skops);
	struct conn_meta *meta = bpf_map_lookup_elem(&stash, &cookie);
	if (!meta)
		return 1;

	struct peer_key key = {};
	if (skops->family == AF_INET) {
		__u32 ip = skops->local_ip4;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip, 4);
	} else {
		__u32 w0 = READ_ONCE_U32(skops->local_ip6[0]);
		__u32 w1 = READ_ONCE_U32(skops->local_ip6[1]);
		__u32 w2 = READ_ONCE_U32(skops->local_ip6[2]);
		__u32 w3 = READ_ONCE_U32(skops->local_ip6[3]);
		__builtin_memcpy(&key.addr[0], &w0, 4);
		__builtin_memcpy(&key.addr[4], &w1, 4);
		__builtin_memcpy(&key.addr[8], &w2, 4);
		__builtin_memcpy(&key.addr[12], &w3, 4);
	}
	key.port = (__u16)skops->local_port;

	/* BPF_ANY: client ports are reused, the newest connect wins. */
	if (bpf_map_update_elem(&origins, &key, meta, BPF_ANY) != 0)
		count(COUNTER_ORIGIN_FAILED);
	bpf_map_delete_elem(&stash, &cookie);
	return 1;
}

char __license[] SEC("license") = "Dual BSD/GPL";
