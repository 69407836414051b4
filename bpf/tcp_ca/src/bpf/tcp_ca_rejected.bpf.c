// SPDX-License-Identifier: GPL-2.0
/*
 * A tcp_congestion_ops the verifier must refuse: its init raises
 * snd_cwnd_clamp, the ceiling the kernel keeps on cwnd (from the route's
 * metrics and TCP_WINDOW_CLAMP). bpf_tcp_ca_btf_struct_access lets a
 * congestion control write only the fields that are its own (snd_cwnd,
 * snd_cwnd_cnt, snd_cwnd_stamp, snd_ssthresh, ecn_flags, app_limited, the
 * pacing fields, icsk_ca_priv, icsk_ack.pending) and answers any other write
 * with "no write support to tcp_sock at off N". Everything else here is a
 * valid implementation, so that write is the only reason to refuse it.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tcp_ca.h"

char _license[] SEC("license") = "GPL";

SEC("struct_ops")
void BPF_PROG(vmtest_clamp_init, struct sock *sk)
{
	tcp_sk(sk)->snd_cwnd_clamp = 0xffff;
}

SEC("struct_ops")
__u32 BPF_PROG(vmtest_clamp_ssthresh, struct sock *sk)
{
	return tcp_sk(sk)->snd_ssthresh;
}

SEC("struct_ops")
void BPF_PROG(vmtest_clamp_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops")
__u32 BPF_PROG(vmtest_clamp_undo_cwnd, struct sock *sk)
{
	return tcp_sk(sk)->snd_cwnd;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops vmtest_clamp = {
	.init = (void *)vmtest_clamp_init,
	.ssthresh = (void *)vmtest_clamp_ssthresh,
	.cong_avoid = (void *)vmtest_clamp_cong_avoid,
	.undo_cwnd = (void *)vmtest_clamp_undo_cwnd,
	.name = "vmtest_clamp",
};
