// SPDX-License-Identifier: GPL-2.0
/*
 * Implementations of tcp_congestion_ops that check the contract between the
 * kernel's type and BPF implementations of it, one struct_ops map per case,
 * as the kernel's bpf_tcp_ca selftests do (update_ca, update_wrong,
 * link_replace, multi_links, incompl_cong_ops, unsupp_cong_op). The loader
 * creates only the maps a case names. Congestion control itself is the
 * kernel's Reno, called through the kfuncs it exports to tcp_ca programs.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tcp_ca.h"

char _license[] SEC("license") = "GPL";

extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

SEC("struct_ops")
__u32 BPF_PROG(reno_ssthresh, struct sock *sk)
{
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops")
void BPF_PROG(reno_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	tcp_reno_cong_avoid(sk, ack, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(reno_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

/* Each implementation's own init: its run count is its connections. */
SEC("struct_ops")
void BPF_PROG(update_1_init, struct sock *sk)
{
}

SEC("struct_ops")
void BPF_PROG(update_2_init, struct sock *sk)
{
}

SEC("struct_ops")
void BPF_PROG(unlinked_init, struct sock *sk)
{
}

/* Two implementations under one name, which a link switches between. */
SEC(".struct_ops.link")
struct tcp_congestion_ops ca_update_1 = {
	.init = (void *)update_1_init,
	.ssthresh = (void *)reno_ssthresh,
	.cong_avoid = (void *)reno_cong_avoid,
	.undo_cwnd = (void *)reno_undo_cwnd,
	.name = "vmtest_update",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops ca_update_2 = {
	.init = (void *)update_2_init,
	.ssthresh = (void *)reno_ssthresh,
	.cong_avoid = (void *)reno_cong_avoid,
	.undo_cwnd = (void *)reno_undo_cwnd,
	.name = "vmtest_update",
};

/* Declared without a link: a link cannot be switched to it. */
SEC(".struct_ops")
struct tcp_congestion_ops ca_unlinked = {
	.init = (void *)unlinked_init,
	.ssthresh = (void *)reno_ssthresh,
	.cong_avoid = (void *)reno_cong_avoid,
	.undo_cwnd = (void *)reno_undo_cwnd,
	.name = "vmtest_update",
};

/* No ssthresh and no undo_cwnd, which the kernel requires: refused at attach. */
SEC(".struct_ops.link")
struct tcp_congestion_ops ca_incomplete = {
	.cong_avoid = (void *)reno_cong_avoid,
	.name = "vmtest_incompl",
};

/* get_info is a member BPF may not implement: refused at load. */
SEC("struct_ops")
__u64 BPF_PROG(unsupp_get_info, struct sock *sk, __u32 ext, int *attr, void *info)
{
	return 0;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops ca_unsupported = {
	.ssthresh = (void *)reno_ssthresh,
	.cong_avoid = (void *)reno_cong_avoid,
	.undo_cwnd = (void *)reno_undo_cwnd,
	.get_info = (void *)unsupp_get_info,
	.name = "vmtest_unsupp",
};
