// SPDX-License-Identifier: GPL-2.0
/* The BPF implementation of struct @NAME@_ops (kmod/@NAME@/@NAME@.h). */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "@NAME@.h"

char _license[] SEC("license") = "GPL";

SEC("struct_ops/op_1")
int BPF_PROG(@NAME@_op_1)
{
	bpf_printk("@NAME@ op_1 called\n");
	return 42;
}

SEC("struct_ops/op_2")
int BPF_PROG(@NAME@_op_2, int a, int b)
{
	bpf_printk("@NAME@ op_2 called: %d + %d\n", a, b);
	return a + b;
}

/* The variable's type, struct @NAME@_ops, is what libbpf looks up in the module's BTF. */
SEC(".struct_ops.link")
struct @NAME@_ops @NAME@_impl = {
	.op_1 = (void *)@NAME@_op_1,
	.op_2 = (void *)@NAME@_op_2,
};
