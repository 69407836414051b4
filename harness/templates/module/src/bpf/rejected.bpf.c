// SPDX-License-Identifier: GPL-2.0
/*
 * An implementation the verifier must refuse: bpf_skb_load_bytes reads a
 * socket buffer, a helper struct @NAME@_ops does not hand out (its
 * get_func_proto gives the base helpers only).
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "@NAME@.h"

char _license[] SEC("license") = "GPL";

SEC("struct_ops/op_1")
int BPF_PROG(rejected_op_1)
{
	char byte = 0;

	bpf_skb_load_bytes((void *)0, 0, &byte, sizeof(byte));
	return byte;
}

SEC(".struct_ops.link")
struct @NAME@_ops rejected_impl = {
	.op_1 = (void *)rejected_op_1,
};
