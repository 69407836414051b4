// SPDX-License-Identifier: GPL-2.0
/*
 * An implementation the verifier must refuse: bpf_get_current_comm is a
 * tracing helper, not one of the base helpers bpf_testmod_ops hands out
 * (bpf_base_func_proto).
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "bpf_testmod.h"

char _license[] SEC("license") = "GPL";

SEC("struct_ops/test_1")
int BPF_PROG(rejected_test_1)
{
	char comm[16];

	bpf_get_current_comm(comm, sizeof(comm));
	return comm[0];
}

SEC(".struct_ops.link")
struct bpf_testmod_ops rejected_ops = {
	.test_1 = (void *)rejected_test_1,
};
