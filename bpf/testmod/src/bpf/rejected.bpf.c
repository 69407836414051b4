// SPDX-License-Identifier: GPL-2.0
/*
 * An implementation the verifier must refuse: bpf_skb_load_bytes reads a
 * socket buffer, which only networking programs have, so no kernel hands it
 * to struct_ops programs through bpf_base_func_proto (bpf_testmod_ops' whole
 * helper set). A tracing helper would not do: kernels move those into the
 * base set over time (7.x allows bpf_get_current_comm).
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "bpf_testmod.h"

char _license[] SEC("license") = "GPL";

SEC("struct_ops/test_1")
int BPF_PROG(rejected_test_1)
{
	char byte = 0;

	bpf_skb_load_bytes((void *)0, 0, &byte, sizeof(byte));
	return byte;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops rejected_ops = {
	.test_1 = (void *)rejected_test_1,
};
