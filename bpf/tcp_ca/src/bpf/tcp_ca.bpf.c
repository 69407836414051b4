// SPDX-License-Identifier: GPL-2.0
/*
 * vmtest_reno: TCP NewReno as a BPF implementation of the kernel's own
 * struct tcp_congestion_ops, so it needs no module. Attaching the map
 * registers the algorithm under that name; sockets then select it with
 * setsockopt(TCP_CONGESTION). The arithmetic is tcp_reno_ssthresh,
 * tcp_reno_cong_avoid, tcp_slow_start, tcp_cong_avoid_ai and
 * tcp_reno_undo_cwnd of net/ipv4/tcp_cong.c (6.12), written out so that the
 * writes to snd_cwnd, snd_cwnd_cnt and snd_ssthresh go through the checks
 * bpf_tcp_ca_btf_struct_access applies to them.
 *
 * Every callback counts its calls in `calls`, which the loader reads back
 * from the skeleton's .bss. Nothing is printed: init and release run in
 * softirq context, under whichever task was current (ksoftirqd, under
 * load), so a trace line would land in a scenario's timeline some runs and
 * not others; the counts are exact every time.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "tcp_ca.h"

char _license[] SEC("license") = "GPL";

/* One counter per callback; the field names are what the loader reports. */
struct vmtest_reno_calls {
	__u64 init;
	__u64 release;
	__u64 ssthresh;
	__u64 cong_avoid;
	__u64 undo_cwnd;
	__u64 set_state;
	__u64 cwnd_event;
	__u64 in_ack_event;
	__u64 pkts_acked;
};

struct vmtest_reno_calls calls = {};

/* The local port of the socket init last ran for: the loader checks that
 * it is the port of the connection it made. */
__u32 init_port = 0;

/* Callbacks of different sockets run on different CPUs at once. */
#define COUNT(field) __sync_fetch_and_add(&calls.field, 1)

static __always_inline __u32 min_u32(__u32 a, __u32 b)
{
	return a < b ? a : b;
}

static __always_inline __u32 max_u32(__u32 a, __u32 b)
{
	return a > b ? a : b;
}

static __always_inline bool in_slow_start(const struct tcp_sock *tp)
{
	return tp->snd_cwnd < tp->snd_ssthresh;
}

static __always_inline bool is_cwnd_limited(const struct tcp_sock *tp)
{
	/* In slow start, let cwnd grow to twice what was in flight. */
	if (in_slow_start(tp))
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited);
}

/* tcp_slow_start: grow by what was acked, up to ssthresh; returns the rest. */
static __always_inline __u32 slow_start(struct tcp_sock *tp, __u32 acked)
{
	__u32 cwnd = min_u32(tp->snd_cwnd + acked, tp->snd_ssthresh);

	acked -= cwnd - tp->snd_cwnd;
	tp->snd_cwnd = min_u32(cwnd, tp->snd_cwnd_clamp);
	return acked;
}

/* tcp_cong_avoid_ai: one more segment of cwnd per w segments acked. */
static __always_inline void cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked)
{
	/* Credits accumulated at a higher w are applied gently now. */
	if (tp->snd_cwnd_cnt >= w) {
		tp->snd_cwnd_cnt = 0;
		tp->snd_cwnd += 1;
	}
	tp->snd_cwnd_cnt += acked;
	if (tp->snd_cwnd_cnt >= w) {
		/* w is cwnd, never 0 here; the guard keeps the verifier and
		 * a reader from having to know that. */
		__u32 delta = w ? tp->snd_cwnd_cnt / w : 0;

		tp->snd_cwnd_cnt -= delta * w;
		tp->snd_cwnd += delta;
	}
	tp->snd_cwnd = min_u32(tp->snd_cwnd, tp->snd_cwnd_clamp);
}

SEC("struct_ops")
void BPF_PROG(vmtest_reno_init, struct sock *sk)
{
	COUNT(init);
	init_port = sk->__sk_common.skc_num;
}

SEC("struct_ops")
void BPF_PROG(vmtest_reno_release, struct sock *sk)
{
	COUNT(release);
}

SEC("struct_ops")
__u32 BPF_PROG(vmtest_reno_ssthresh, struct sock *sk)
{
	COUNT(ssthresh);
	/* Halve the window on loss, never below 2 segments. */
	return max_u32(tcp_sk(sk)->snd_cwnd >> 1, 2);
}

SEC("struct_ops")
void BPF_PROG(vmtest_reno_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);

	COUNT(cong_avoid);
	if (!is_cwnd_limited(tp))
		return;
	if (in_slow_start(tp)) {
		acked = slow_start(tp, acked);
		if (!acked)
			return;
	}
	cong_avoid_ai(tp, tp->snd_cwnd, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(vmtest_reno_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	COUNT(undo_cwnd);
	/* A loss that was not one: back to the window before it. */
	return max_u32(tp->snd_cwnd, tp->prior_cwnd);
}

/* The optional callbacks Reno does without, implemented only to count. */
SEC("struct_ops")
void BPF_PROG(vmtest_reno_set_state, struct sock *sk, __u8 new_state)
{
	COUNT(set_state);
}

SEC("struct_ops")
void BPF_PROG(vmtest_reno_cwnd_event, struct sock *sk, int ev)
{
	COUNT(cwnd_event);
}

SEC("struct_ops")
void BPF_PROG(vmtest_reno_in_ack_event, struct sock *sk, __u32 flags)
{
	COUNT(in_ack_event);
}

SEC("struct_ops")
void BPF_PROG(vmtest_reno_pkts_acked, struct sock *sk, const struct ack_sample *sample)
{
	COUNT(pkts_acked);
}

/* The map's type name, tcp_congestion_ops, is what libbpf looks up in
 * vmlinux's BTF; .name is the algorithm's name for TCP_CONGESTION and
 * guest_agent::subjects::tcp_ca::contract::ALGORITHM. */
SEC(".struct_ops.link")
struct tcp_congestion_ops vmtest_reno = {
	.init = (void *)vmtest_reno_init,
	.release = (void *)vmtest_reno_release,
	.ssthresh = (void *)vmtest_reno_ssthresh,
	.cong_avoid = (void *)vmtest_reno_cong_avoid,
	.undo_cwnd = (void *)vmtest_reno_undo_cwnd,
	.set_state = (void *)vmtest_reno_set_state,
	.cwnd_event = (void *)vmtest_reno_cwnd_event,
	.in_ack_event = (void *)vmtest_reno_in_ack_event,
	.pkts_acked = (void *)vmtest_reno_pkts_acked,
	.name = "vmtest_reno",
};
