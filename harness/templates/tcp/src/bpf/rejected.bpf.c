// SPDX-License-Identifier: GPL-2.0
/*
 * An implementation the verifier must refuse: it writes snd_cwnd_clamp, a
 * tcp_sock field a BPF congestion control may not write.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tcp_cc.h"

char _license[] SEC("license") = "GPL";

SEC("struct_ops")
void BPF_PROG(rejected_init, struct sock *sk)
{
	tcp_sk(sk)->snd_cwnd_clamp = 0xffff;
}

SEC("struct_ops")
__u32 BPF_PROG(rejected_ssthresh, struct sock *sk)
{
	return tcp_sk(sk)->snd_ssthresh;
}

SEC("struct_ops")
void BPF_PROG(rejected_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops")
__u32 BPF_PROG(rejected_undo_cwnd, struct sock *sk)
{
	return tcp_sk(sk)->snd_cwnd;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops rejected_cc = {
	.init = (void *)rejected_init,
	.ssthresh = (void *)rejected_ssthresh,
	.cong_avoid = (void *)rejected_cong_avoid,
	.undo_cwnd = (void *)rejected_undo_cwnd,
	.name = "rejected_cc",
};
