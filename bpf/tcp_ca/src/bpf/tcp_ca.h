/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types a BPF struct tcp_congestion_ops needs, written by hand
 * instead of a generated vmlinux.h, the way the kernel selftests' old
 * bpf_tcp_helpers.h did. Only names and types have to match the kernel
 * (include/net/sock.h, include/linux/tcp.h and include/net/tcp.h of 6.12):
 * preserve_access_index makes clang record every field access as a CO-RE
 * relocation, which libbpf rewrites to the running kernel's offsets, so the
 * fields left out and the order of those kept do not matter.
 */
#ifndef VMTEST_TCP_CA_H
#define VMTEST_TCP_CA_H

#include <linux/types.h>

#define TCP_CA_NAME_MAX 16

/* The 16-bit local port sits in an anonymous struct in the kernel; libbpf
 * finds a field through anonymous members, so it can be declared flat. */
struct sock_common {
	__u16 skc_num;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 snd_cwnd;
	__u32 snd_cwnd_cnt;
	__u32 snd_cwnd_clamp;
	__u32 snd_ssthresh;
	__u32 prior_cwnd;
	__u32 max_packets_out;
	/* A bitfield: read it with BPF_CORE_READ_BITFIELD, which relocates
	 * its bit offset and width too. */
	__u8 is_cwnd_limited : 1;
} __attribute__((preserve_access_index));

/* Passed by pointer only; never dereferenced here. */
struct ack_sample;
struct rate_sample;

/*
 * libbpf matches the members of a .struct_ops variable to the kernel's
 * struct tcp_congestion_ops by name, so this lists the callbacks and the
 * two data members (name, flags) a BPF implementation may set, and leaves
 * out those the kernel fills in itself (owner, list, key).
 */
struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	void (*set_state)(struct sock *sk, __u8 new_state);
	void (*cwnd_event)(struct sock *sk, int ev);
	void (*in_ack_event)(struct sock *sk, __u32 flags);
	void (*pkts_acked)(struct sock *sk, const struct ack_sample *sample);
	__u32 (*min_tso_segs)(struct sock *sk);
	void (*cong_control)(struct sock *sk, __u32 ack, int flag,
			     const struct rate_sample *rs);
	__u32 (*undo_cwnd)(struct sock *sk);
	__u32 (*sndbuf_expand)(struct sock *sk);
	/* A member a BPF implementation may not provide: the kernel refuses a
	 * program for it (contract.bpf.c checks that it does). */
	__u64 (*get_info)(struct sock *sk, __u32 ext, int *attr, void *info);
	char name[TCP_CA_NAME_MAX];
	__u32 flags;
	void (*init)(struct sock *sk);
	void (*release)(struct sock *sk);
};

static __always_inline struct tcp_sock *tcp_sk(const struct sock *sk)
{
	/* struct tcp_sock begins with struct sock, as in the kernel. */
	return (struct tcp_sock *)sk;
}

#endif /* VMTEST_TCP_CA_H */
