// SPDX-License-Identifier: GPL-2.0
/*
 * An implementation the verifier must refuse: it writes its own context,
 * the arguments the kernel called test_2 with. The module's
 * is_valid_access allows reads of the arguments only, as the kernel's own
 * struct_ops types do.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "bpf_testmod.h"

char _license[] SEC("license") = "GPL";

SEC("struct_ops/test_2")
int BPF_PROG(ctx_write_test_2, int a, int b)
{
	/* BPF_PROG's raw context: one u64 per argument. */
	ctx[0] = 0;
	return a + b;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ctx_write_ops = {
	.test_2 = (void *)ctx_write_test_2,
};
