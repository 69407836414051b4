// SPDX-License-Identifier: GPL-2.0
/*
 * @NAME@: a BPF implementation of the kernel's struct tcp_congestion_ops
 * with a fixed congestion window (cong_avoid leaves it as it is). init and
 * release count their calls in `calls`, which the loader reads back.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tcp_cc.h"

char _license[] SEC("license") = "GPL";

struct @NAME@_calls {
	__u64 init;
	__u64 release;
};

struct @NAME@_calls calls = {};

SEC("struct_ops")
void BPF_PROG(@NAME@_init, struct sock *sk)
{
	__sync_fetch_and_add(&calls.init, 1);
}

SEC("struct_ops")
void BPF_PROG(@NAME@_release, struct sock *sk)
{
	__sync_fetch_and_add(&calls.release, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(@NAME@_ssthresh, struct sock *sk)
{
	__u32 half = tcp_sk(sk)->snd_cwnd >> 1;

	return half > 2 ? half : 2;
}

SEC("struct_ops")
void BPF_PROG(@NAME@_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops")
__u32 BPF_PROG(@NAME@_undo_cwnd, struct sock *sk)
{
	return tcp_sk(sk)->snd_cwnd;
}

/* ssthresh, cong_avoid and undo_cwnd are the members the kernel requires. */
SEC(".struct_ops.link")
struct tcp_congestion_ops @NAME@ = {
	.init = (void *)@NAME@_init,
	.release = (void *)@NAME@_release,
	.ssthresh = (void *)@NAME@_ssthresh,
	.cong_avoid = (void *)@NAME@_cong_avoid,
	.undo_cwnd = (void *)@NAME@_undo_cwnd,
	.name = "@NAME@",
};
